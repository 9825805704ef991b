#!/usr/bin/env python
"""SAC cost analysis: the FLOPs of one update, the time per update and the fraction of the
machine's float32 matmul throughput it reaches; and diagnostics of the compiled loop.

Run from the repository root (set-up in benchmarks/README.md):

    .venv-bench/bin/python benchmarks/sac_flops.py                       # FLOPs / time per update / matmul peak
    .venv-bench/bin/python benchmarks/sac_flops.py --iterations 40 --scan-length 20 --out /tmp/flops.json   # smoke
    .venv-bench/bin/python benchmarks/sac_flops.py diagnose              # compiled loop: warm-up, carry donation
    .venv-bench/bin/python benchmarks/sac_flops.py --table benchmarks/results/sac_flops.json

**cost** (the default) -- XLA's cost analysis of one `update` (reparam's SAC update, names from
`sac_common.rl()`) at paper sizes (Pendulum: obs 3, action 1, batch 256, 256x256), the time per
update both as one jitted call per update and as a `lax.scan` of `--scan-length` updates in one call
(the training kernel both loops call, `sac.gradient_steps`: batch sampling from a 20,000-row buffer + update, no
dispatch), and the measured float32 matmul throughput (2048x2048 and 256x256 matmuls under jit):
achieved GFLOP/s and the fraction of that peak. Writes a JSON (`--out`) and prints the tables.

**diagnose** -- two facts about `compiled_run` that the scaling tables lean on: (1) the warm-up
chunk's time vmapped over one seed (as `reparam sac` runs it) vs unvmapped; (2) the memory XLA plans
for a K-seed `advance` with the carry donated or not. Printed only.
"""

from __future__ import annotations

import statistics
import sys
import time

import common
import sac_common
from sac_common import ENV_JAX, RESULTS, rl


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, (list, tuple)) else cost


def flops(args) -> None:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    R = rl()
    data = sac_common.header("flops")
    print(f"# SAC update FLOPs, {data['started']}; {data['uptime_start']}", flush=True)
    print(f"machine: {data['machine']}\ncommand: {data['command']}", flush=True)
    obs_dim, action_dim, batch_size = 3, 1, 256  # Pendulum, paper sizes
    config = R.SACConfig()
    bounds = R.ActionBounds(jnp.full((action_dim,), -2.0), jnp.full((action_dim,), 2.0))
    k = jax.random.split(jax.random.key(0), 6)
    state = R.init_sac(k[0], obs_dim, action_dim, config)

    def rows(key, n):
        return R.Transition(
            jax.random.normal(key, (n, obs_dim)),
            jax.random.uniform(key, (n, action_dim), minval=-2, maxval=2),
            -jax.random.uniform(key, (n,)) * 10,
            jax.random.normal(jax.random.fold_in(key, 1), (n, obs_dim)),
            jnp.zeros((n,)),
        )

    batch = rows(k[1], batch_size)

    # 1. one update per jitted call
    step = eqx.filter_jit(R.update)
    compiled = step.lower(state, batch, k[2], config, bounds).compile()
    cost = _cost(compiled.compiled)
    update_flops = float(cost["flops"])
    s = state

    def call():
        nonlocal s
        s, m = compiled(s, batch, k[2], config, bounds)
        jax.block_until_ready(m)

    per_call = common.time_calls(call, args.iterations, warmup=1)

    # 2. the host loop's training kernel: lax.scan of L x (sample a batch from a 20,000-row buffer + update)
    buffer = R.add_batch(R.init_buffer(jax.tree.map(lambda x: x[0], rows(k[3], 1)), 20_000), rows(k[3], 20_000))
    scan_config = R.SACConfig(gradient_steps=args.scan_length)
    params, static = eqx.partition(state, eqx.is_array)

    def kernel(params, buffer, key):
        key, sub = jax.random.split(key)
        new, metrics = R.gradient_steps(eqx.combine(params, static), buffer, sub, scan_config, bounds)
        return eqx.filter(new, eqx.is_array), metrics, key

    kernel_c = jax.jit(kernel).lower(params, buffer, k[4]).compile()
    scan_flops = float(_cost(kernel_c)["flops"])
    p, key = params, k[4]

    def scan_call():
        nonlocal p, key
        p, m, key = kernel_c(p, buffer, key)
        jax.block_until_ready(m)

    per_scan = common.time_calls(scan_call, max(3, args.iterations * 2 // args.scan_length), warmup=1)

    # 3. float32 matmul throughput under jit
    peaks = {}
    for m_, n_, k_ in ((2048, 2048, 2048), (256, 256, 256)):
        a = jax.random.normal(k[5], (m_, k_), jnp.float32)
        b = jax.random.normal(k[5], (k_, n_), jnp.float32)
        mm = jax.jit(jnp.matmul).lower(a, b).compile()
        reps = max(5, int(2e10 // (2 * m_ * n_ * k_)))
        times = common.time_calls(lambda mm=mm, a=a, b=b: jax.block_until_ready(mm(a, b)), reps, warmup=1)
        work = 2 * m_ * n_ * k_
        peaks[f"{m_}x{k_} @ {k_}x{n_}"] = dict(
            flops=work,
            median_s=statistics.median(times),
            best_s=min(times),
            gflops_median=work / statistics.median(times) / 1e9,
            gflops_best=work / min(times) / 1e9,
        )
    peak = peaks["2048x2048 @ 2048x2048"]["gflops_best"]
    t_call, t_scan = statistics.median(per_call), statistics.median(per_scan) / args.scan_length
    data.update(
        update_flops=update_flops,
        update_bytes_accessed=float(cost.get("bytes accessed", float("nan"))),
        scan_length=args.scan_length,
        scan_flops_per_update=scan_flops,  # XLA counts a loop body once
        per_call_s=per_call,
        per_scan_s=per_scan,
        update_s_per_call=t_call,
        update_s_in_scan=t_scan,
        matmul=peaks,
        peak_gflops=peak,
        uptime_end=common.uptime(),
        achieved_gflops_per_call=update_flops / t_call / 1e9,
        achieved_gflops_in_scan=update_flops / t_scan / 1e9,
    )
    common.write_json(args.out, data)
    print(table(data))


def table(d: dict) -> str:
    matmul = [[name, f"{m['gflops_best']:.1f}", f"{m['gflops_median']:.1f}"] for name, m in d["matmul"].items()]
    updates = [
        [
            f"one jitted `update` call per update ({len(d['per_call_s'])} calls)",
            f"{d['update_s_per_call'] * 1e3:.2f}",
            f"{d['achieved_gflops_per_call']:.1f}",
            f"{d['achieved_gflops_per_call'] / d['peak_gflops']:.0%}",
        ],
        [
            f"`lax.scan` of {d['scan_length']} (sample + update), host loop's kernel ({len(d['per_scan_s'])} calls)",
            f"{d['update_s_in_scan'] * 1e3:.2f}",
            f"{d['achieved_gflops_in_scan']:.1f}",
            f"{d['achieved_gflops_in_scan'] / d['peak_gflops']:.0%}",
        ],
    ]
    return "\n".join(
        [
            f"FLOPs of one update (XLA cost analysis, Pendulum, batch 256, 256x256): "
            f"{d['update_flops'] / 1e9:.3f} GFLOP "
            f"(the host loop's scan kernel, batch sampling included, whose loop body XLA counts once: "
            f"{d['scan_flops_per_update'] / 1e9:.3f} GFLOP per update)",
            "",
            common.markdown_table(["float32 matmul under jit", "GFLOP/s (best)", "GFLOP/s (median)"], matmul),
            "",
            common.markdown_table(
                ["update", "ms per update (median)", "achieved GFLOP/s", "fraction of the 2048 matmul peak"], updates
            ),
            "",
            f"{d['uptime_start']} (start); {d['uptime_end']} (end)",
        ]
    )


def diagnose(args) -> None:
    """See the module docstring."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    R = rl()
    print(f"# compiled-loop diagnostics; {common.uptime()}", flush=True)
    print(f"machine: {common.machine()}\ncommand: {common.command_line()}", flush=True)
    ls = args.learning_starts
    spec = R.RunSpec(args.total_steps, ls, 10)
    compiled, init, advance = R.compiled_run(R.SACConfig(learning_starts=ls), ENV_JAX, spec)
    keys = jax.random.split(jax.random.key(0), 1)
    key0 = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    unbatch = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    chunk = jnp.int32(0)
    for name, fn, batched in (
        ("vmapped over 1 seed (reparam sac)", advance, True),
        ("not vmapped", eqx.filter_jit(compiled.advance), False),
    ):
        prepare = (
            (lambda: (init(keys), jnp.array(key0, copy=True)))
            if batched
            else (lambda: (unbatch(init(keys)), jnp.array(key0[0], copy=True)))
        )
        fn_c = fn.lower(*prepare(), chunk).compile()
        for _ in range(args.repeats):
            carry, key = jax.block_until_ready(prepare())
            t = time.perf_counter()
            jax.block_until_ready(fn_c(carry, key, jnp.int32(0)))  # donated: a fresh chunk index
            print(
                f"warm-up chunk ({ls} uniform-random steps, 1 gradient step, 10-episode evaluation), {name}: "
                f"{time.perf_counter() - t:.2f} s",
                flush=True,
            )
    keys = jax.random.split(jax.random.key(0), args.seeds_memory)
    carry, key = init(keys), jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    for donate in ("all-except-first", "all"):
        vmapped = eqx.filter_vmap(compiled.advance, in_axes=(0, 0, None))
        m = eqx.filter_jit(vmapped, donate=donate).lower(carry, key, chunk).compile().compiled.memory_analysis()
        what = "carry donated, as compiled_run" if donate == "all" else "carry not donated"
        mib = {name: getattr(m, f"{name}_size_in_bytes") / 2**20 for name in ("argument", "output", "alias", "temp")}
        print(
            f"{args.seeds_memory} seeds, donate={donate!r} ({what}): XLA plans arguments {mib['argument']:.0f} MiB, "
            f"outputs {mib['output']:.0f}, aliased {mib['alias']:.0f}, temporaries {mib['temp']:.0f}",
            flush=True,
        )
    print()
    common.print_load("end")


def main(argv=None) -> None:
    p = sac_common.parser(__doc__, "sac_flops.py")
    p.add_argument(
        "what",
        nargs="?",
        default="cost",
        choices=["cost", "diagnose"],
        help="cost: FLOPs, time per update, matmul peak (default); diagnose: compiled-loop diagnostics",
    )
    g = p.add_argument_group("cost")
    g.add_argument("--iterations", type=int, default=300, help="timed update calls (default 300)")
    g.add_argument("--scan-length", type=int, default=100, help="updates per scanned call (default 100)")
    g.add_argument("--out", default=str(RESULTS / "sac_flops.json"))
    g = p.add_argument_group("diagnose")
    sac_common.add_run_options(g)
    g.add_argument("--repeats", type=int, default=2)
    g.add_argument("--seeds-memory", type=int, default=64)
    sac_common.dispatch(p, argv, study=lambda args: (diagnose if args.what == "diagnose" else flops)(args), table=table)


if __name__ == "__main__":
    sys.exit(main())

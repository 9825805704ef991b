#!/usr/bin/env python
"""SAC compiled-loop scaling: training-phase throughput with K seeds vmapped.

Run from the repository root (set-up in benchmarks/README.md):

    .venv-bench/bin/python benchmarks/sac_scaling.py                                  # 1, 8, 64, 256 seeds vmapped
    .venv-bench/bin/python benchmarks/sac_scaling.py --num-seeds 1 8 --timed-steps 16 8 --chunks 2 --out /tmp/s.json
    .venv-bench/bin/python benchmarks/sac_scaling.py --table benchmarks/results/sac_scaling.json

The compiled loop with K seeds vmapped (K in `--num-seeds`, default 1 8 64 256), paper sizes, gymnax
Pendulum-v1, `advance` vmapped and jitted by `compiled_run` (carry donated; names from
`sac_common.rl()`). Each K runs in its own process. The training phase is timed: the carry first
goes through the 1,000-step warm-up (one vmapped chunk of 1,000 steps, timed with its compilation as
`warmup_s`; the learn/skip `lax.cond` keeps its branch under `vmap`), then `--chunks` chunks of T env
steps each (T from `--timed-steps`, default shrinking with K because one env step costs K updates)
are timed after an ahead-of-time compile. Each chunk ends with a 1-episode evaluation per seed (200
actor steps, well under 1% of a chunk's FLOPs). Reported: compile time, aggregate and per-seed env
steps/s (median chunk), XLA's planned memory (`memory_analysis()`: arguments, outputs, temporaries)
and the process's peak RSS, and whether every seed's metrics and every parameter are finite. The
JSON (`--out`) is written after every K.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import common
import sac_common
from sac_common import ENV_JAX, RESULTS, rl

DEFAULT_TIMED_STEPS = {1: 256, 8: 64, 64: 16, 256: 8}


def scaling_one(args) -> None:
    """One seed count in its own process: warm-up, ahead-of-time compile, timed training chunks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    R = rl()
    k, steps, ls = args.seeds_one, args.timed_steps_one, args.learning_starts
    config = R.SACConfig(learning_starts=ls)
    # Same total_steps, hence the same buffer capacity and carry: the warm-up runs as one chunk of
    # `ls` steps (no gradient steps: the learn/skip cond keeps its branch under vmap), its compile
    # included in warmup_s; the timed chunks start at the first whole chunk after it.
    _, _, warm_advance = R.compiled_run(config, ENV_JAX, R.RunSpec(args.total_steps, ls, 1))
    compiled, init, advance = R.compiled_run(config, ENV_JAX, R.RunSpec(args.total_steps, steps, 1))
    keys = jax.random.split(jax.random.key(0), k)
    fold = lambda i: jax.vmap(lambda key: jax.random.fold_in(key, i))(keys)  # noqa: E731
    carry = init(keys)
    t = time.perf_counter()
    carry, _ = warm_advance(carry, fold(0), jnp.int32(0))
    jax.block_until_ready(carry)
    warmup_s = time.perf_counter() - t
    warm_chunks = -(-ls // steps)
    t = time.perf_counter()
    advance_c = advance.lower(carry, fold(warm_chunks), jnp.int32(warm_chunks)).compile()  # ahead of time
    compile_s = time.perf_counter() - t
    mem = advance_c.memory_analysis()
    names = ("argument", "output", "temp", "alias")
    memory = {name: getattr(mem, name + "_size_in_bytes", None) / 2**20 for name in names} if mem else {}
    chunk_s, finite = [], True
    for i in range(warm_chunks, warm_chunks + args.chunks):
        ck = jax.block_until_ready(fold(i))
        t = time.perf_counter()
        carry, metrics = advance_c(carry, ck, jnp.int32(i))
        jax.block_until_ready((carry, metrics))
        chunk_s.append(time.perf_counter() - t)
        finite &= all(bool(np.all(np.isfinite(np.asarray(v)))) for v in metrics.values())
    median = statistics.median(chunk_s)
    result = dict(
        num_seeds=k,
        timed_steps_per_chunk=steps,
        chunks=args.chunks,
        chunk_s=chunk_s,
        steps_timed_per_seed=steps * args.chunks,
        first_step=warm_chunks * steps + 1,
        aggregate_steps_per_second=k * steps / median,
        per_seed_steps_per_second=steps / median,
        best_aggregate_steps_per_second=k * steps / min(chunk_s),
        warmup_s=warmup_s,
        compile_s=compile_s,
        xla_memory_mib=memory,
        peak_rss_mib=common.peak_rss_mib(),
        metrics_finite=finite,
        params_finite=sac_common.all_finite(carry.params),
        last_eval_return=[float(x) for x in np.asarray(metrics["eval_return"])],
        device=str(jax.devices()[0]),
    )
    common.write_json(args.json, result)


def scaling(args) -> None:
    out = Path(args.out)
    data = sac_common.header(
        "scaling", total_steps=args.total_steps, learning_starts=args.learning_starts, chunks=args.chunks
    )
    data["runs"] = []
    print(f"# SAC compiled-loop scaling, {data['started']}; {data['uptime_start']}", flush=True)
    print(f"machine: {data['machine']}\ncommand: {data['command']}", flush=True)
    for i, k in enumerate(args.num_seeds):
        steps = (
            args.timed_steps[i]
            if args.timed_steps and len(args.timed_steps) > 1
            else (args.timed_steps[0] if args.timed_steps else DEFAULT_TIMED_STEPS.get(k, max(4, 2048 // k)))
        )
        result, info = common.run_child(
            [
                __file__,
                "--_one",
                "--seeds-one",
                k,
                "--timed-steps-one",
                steps,
                "--chunks",
                args.chunks,
                "--total-steps",
                args.total_steps,
                "--learning-starts",
                args.learning_starts,
            ],
            out.with_name(f"{out.stem}.{k}.tmp.json"),
        )
        if "error" in result:
            result = dict(num_seeds=k, **result)
        result.update(load_before=info["load_before"], load_after=info["load_after"])
        data["runs"].append(result)
        common.write_json(out, data)
        print(
            f"{k} seeds: "
            + (
                result.get("error")
                or f"{result['aggregate_steps_per_second']:.1f} steps/s aggregate, "
                f"{result['per_seed_steps_per_second']:.2f} per seed, "
                f"finite={result['metrics_finite'] and result['params_finite']}"
            ),
            flush=True,
        )
    data.update(finished=common.now(), uptime_end=common.uptime())
    common.write_json(out, data)
    print(table(data))


def table(data: dict) -> str:
    header = [
        "seeds",
        "env steps timed per seed (chunks x steps)",
        "aggregate env steps/s (median chunk)",
        "per seed",
        "best chunk, aggregate",
        "compile s",
        "warm-up s",
        "XLA memory MiB (args + out + temp)",
        "peak RSS MiB",
        "all finite",
        "load before -> after",
    ]
    rows = []
    for r in data["runs"]:
        if "error" in r:
            rows.append([str(r["num_seeds"]), r["error"]] + [""] * 9)
            continue
        m = r["xla_memory_mib"]
        mem = f"{m['argument']:.0f} + {m['output']:.0f} + {m['temp']:.0f}" if m else "-"
        rows.append(
            [
                str(r["num_seeds"]),
                f"{r['steps_timed_per_seed']} ({r['chunks']} x {r['timed_steps_per_chunk']})",
                f"{r['aggregate_steps_per_second']:.1f}",
                f"{r['per_seed_steps_per_second']:.2f}",
                f"{r['best_aggregate_steps_per_second']:.1f}",
                f"{r['compile_s']:.1f}",
                f"{r['warmup_s']:.1f}",
                mem,
                f"{r['peak_rss_mib']:.0f}",
                "yes" if r["metrics_finite"] and r["params_finite"] else "NO",
                f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}",
            ]
        )
    return "\n".join(
        [
            common.markdown_table(header, rows),
            "",
            f"Device: {data['runs'][0].get('device', '?') if data['runs'] else '?'}; "
            f"{data['uptime_start']} (start); {data.get('uptime_end', '?')} (end)",
        ]
    )


def main(argv=None) -> None:
    p = sac_common.parser(__doc__, "sac_scaling.py")
    sac_common.add_run_options(p)
    p.add_argument("--num-seeds", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument(
        "--timed-steps",
        type=int,
        nargs="+",
        default=None,
        help=f"env steps per timed chunk, one value or one per seed count (default {DEFAULT_TIMED_STEPS})",
    )
    p.add_argument("--chunks", type=int, default=3, help="timed chunks per seed count (the median is reported)")
    p.add_argument("--out", default=str(RESULTS / "sac_scaling.json"))
    # Internal (--_one): one seed count in this process.
    p.add_argument("--seeds-one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--timed-steps-one", type=int, help=argparse.SUPPRESS)
    sac_common.dispatch(p, argv, study=scaling, table=table, one=scaling_one)


if __name__ == "__main__":
    sys.exit(main())

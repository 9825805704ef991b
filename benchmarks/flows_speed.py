"""Flow speed side by side with flowjax (issue 13): the same flows at the same sizes in both libraries,
density (`log_prob` of a batch) and sampling (`sample` of a batch), jitted and warm.

    .venv-flowjax/bin/python benchmarks/flows_speed.py [--quick] [--rounds 5] [--json PATH] [--markdown PATH]

Needs flowjax next to reparam: `python3.11 -m venv .venv-flowjax && .venv-flowjax/bin/pip install -e .
flowjax` (flowjax 19.1.2 keeps jax 0.10.2). Both libraries run in this one process, on one jax.

Method. Flows (`LAYERS` units each, conditioners two ReLU hidden layers of `WIDTH`):
- RealNVP: affine coupling, first `d // 2` coordinates kept, then a permutation (reversal at d = 2, a
  random one otherwise). reparam `make_flow("realnvp")`; flowjax `coupling_flow` (default affine
  transformer, `invert=True`).
- MAF: MADE-conditioned affine autoregressive layers, then a permutation; density in one MADE pass
  per layer, sampling in d passes. reparam `make_flow("maf")`; flowjax `masked_autoregressive_flow`
  (`invert=True`, its fast-density direction).
- NSF: rational-quadratic spline coupling, `BINS` bins on `[-BOUND, BOUND]`, linear (identity) tails.
  reparam `make_flow("nsf")`; flowjax `coupling_flow(transformer=RationalQuadraticSpline(knots=BINS,
  interval=BOUND))`.
Each (flow, d in {2, 64}, op in {log_prob, sample}, batch in {1024, 65536}) cell compiles one program
per library ahead of time (`jax.jit(fn).lower(...).compile()`, the flow's arrays an argument; "compile
s" is tracing + compiling), calls it once to warm up, then times calls with `jax.block_until_ready` in
`--rounds` interleaved rounds (reparam, flowjax, reparam, ...; each round gives each library about the
same wall time), so load drifts hit both alike. (The `SplineCoupling` change that `--proposed` used
to time, conditioner and spline on the transformed coordinates only, is in the library since
2026-12-02 11:00, with `Transformed.log_prob` skipping the support check of `onto` flows.) Reported: the median call
time of each and the ratio reparam / flowjax (< 1: reparam faster), and XLA's own memory estimate of
each compiled program (temporaries + outputs, from `compiled.memory_analysis()`): the peak a call
needs beyond its inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import common

LAYERS = 8
WIDTH = 64
DEPTH = 2
BINS = 8
BOUND = 4.0
FLOWS = ("realnvp", "maf", "nsf")
DIMS = (2, 64)
OPS = ("log_prob", "sample")
BATCHES = (1024, 65536)


def reparam_flow(name: str, dim: int, key):
    """reparam's flow of `name` on R^dim."""
    from reparam.models.flows import make_flow

    return make_flow(name, dim, LAYERS, key=key, hidden_sizes=(WIDTH,) * DEPTH, num_bins=BINS, bound=BOUND)


def flowjax_flow(name: str, dim: int, key):
    """flowjax's flow of `name` on R^dim, as its factory builds it."""
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow, masked_autoregressive_flow

    base = Normal(jnp.zeros(dim, jnp.float32))
    common_args = dict(base_dist=base, flow_layers=LAYERS, nn_width=WIDTH, nn_depth=DEPTH)
    if name == "realnvp":
        return coupling_flow(key, **common_args)
    if name == "nsf":
        return coupling_flow(key, transformer=RationalQuadraticSpline(knots=BINS, interval=BOUND), **common_args)
    return masked_autoregressive_flow(key, **common_args)


def programs(flow, op: str, batch: int, dim: int):
    """`(call, compiled, compile_s)`: a no-argument blocking call of the op compiled ahead of time
    (`jax.jit(...).lower(...).compile()`, the flow's arrays an argument), the compiled program and the
    seconds tracing + compiling took."""
    params, static = eqx.partition(flow, eqx.is_array)
    if op == "log_prob":
        fn = jax.jit(lambda p, v: eqx.combine(p, static).log_prob(v))
        args = (params, jax.random.normal(jax.random.key(1), (batch, dim), jnp.float32))
    else:
        fn = jax.jit(lambda p, k: eqx.combine(p, static).sample(k, (batch,)))
        args = (params, jax.random.key(2))
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    return (lambda: jax.block_until_ready(compiled(*args))), compiled, compile_s


def memory_mib(compiled) -> float | None:
    """XLA's estimate of a compiled call's peak extra memory: temporaries + outputs (MiB)."""
    try:
        analysis = compiled.memory_analysis()
        return (analysis.temp_size_in_bytes + analysis.output_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def time_cell(calls: dict, rounds: int, round_s: float) -> dict:
    """A warm-up call, a probe call (skipped when the warm-up took over 2 s: then at most 3 rounds of
    one call), then `rounds` interleaved rounds of about `round_s` seconds per contender."""
    out = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        out[name] = {"first_call_s": time.perf_counter() - t0, "times_s": []}
        if out[name]["first_call_s"] < 2.0:
            t0 = time.perf_counter()
            call()
            out[name]["probe_s"] = time.perf_counter() - t0
        else:
            out[name]["probe_s"] = out[name]["first_call_s"]
    heavy = max(t["probe_s"] for t in out.values()) > 2.0
    for _ in range(min(rounds, 3) if heavy else rounds):
        for name, call in calls.items():
            n = max(1, min(200, round(round_s / max(out[name]["probe_s"], 1e-6))))
            for _ in range(n):
                t0 = time.perf_counter()
                call()
                out[name]["times_s"].append(time.perf_counter() - t0)
    for timing in out.values():
        timing["median_ms"] = 1e3 * statistics.median(timing["times_s"])
    return out


def run(cells, rounds: int, round_s: float) -> list[dict]:
    """Time every cell, reparam and flowjax interleaved."""
    rows = []
    for flow_name, dim, op, batch in cells:
        built = {
            "reparam": programs(reparam_flow(flow_name, dim, jax.random.key(0)), op, batch, dim),
            "flowjax": programs(flowjax_flow(flow_name, dim, jax.random.key(0)), op, batch, dim),
        }
        load = common.loadavg()[0]
        timing = time_cell({lib: b[0] for lib, b in built.items()}, rounds, round_s)
        row = {"flow": flow_name, "dim": dim, "op": op, "batch": batch, "load_1min": load}
        for lib, (_, compiled, compile_s) in built.items():
            row[lib] = {**timing[lib], "compile_s": compile_s, "memory_mib": memory_mib(compiled)}
        row["ratio"] = row["reparam"]["median_ms"] / row["flowjax"]["median_ms"]
        rows.append(row)
        print(
            f"{flow_name:8s} d={dim:<3d} {op:9s} n={batch:<6d} reparam {row['reparam']['median_ms']:9.2f} ms "
            f"flowjax {row['flowjax']['median_ms']:9.2f} ms ratio {row['ratio']:.2f} | compile "
            f"{row['reparam']['compile_s']:.1f} / {row['flowjax']['compile_s']:.1f} s | load {load:.1f}",
            flush=True,
        )
    return rows


def markdown(rows: list[dict]) -> str:
    def mem(v):
        return "-" if v is None else f"{v:,.1f}"

    body = [
        [
            r["flow"],
            str(r["dim"]),
            r["op"],
            f"{r['batch']:,}",
            f"{r['reparam']['median_ms']:,.2f}",
            f"{r['flowjax']['median_ms']:,.2f}",
            f"**{r['ratio']:.2f}**" if r["ratio"] > 1.0 else f"{r['ratio']:.2f}",
            f"{r['reparam']['compile_s']:.2f} / {r['flowjax']['compile_s']:.2f}",
            f"{mem(r['reparam']['memory_mib'])} / {mem(r['flowjax']['memory_mib'])}",
        ]
        for r in rows
    ]
    header = [
        "flow",
        "d",
        "op",
        "batch",
        "reparam ms",
        "flowjax ms",
        "ratio reparam/flowjax",
        "compile s (reparam / flowjax)",
        "XLA temp+out MiB (reparam / flowjax)",
    ]
    return common.markdown_table(header, body) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per cell")
    parser.add_argument("--round-s", type=float, default=0.3, help="seconds per library per round (about)")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 1024 only, 2 rounds")
    parser.add_argument("--only", nargs="+", default=None, help="flows to run (default all)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="dimensions to run")
    parser.add_argument("--ops", nargs="+", default=list(OPS), help="ops to run")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes to run")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    versions = common.versions("jax", "jaxlib", "equinox", "flowjax", "reparam")
    started = common.announce("reparam vs flowjax: flow speed", versions)
    batches = args.batches or ((1024,) if args.quick else BATCHES)
    rounds = 2 if args.quick else args.rounds
    cells = [(f, d, op, b) for f in (args.only or FLOWS) for d in args.dims for op in args.ops for b in batches]
    jax.block_until_ready(jax.jit(jnp.sin)(jnp.ones(3)))  # the process's one-time compile set-up, not a cell's
    rows = run(cells, rounds, args.round_s)
    table = markdown(rows)
    common.finish(started)
    print(f"\n{table}")
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        common.write_json(
            args.json,
            common.record(
                versions, layers=LAYERS, width=WIDTH, depth=DEPTH, bins=BINS, bound=BOUND, rounds=rounds, rows=rows
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

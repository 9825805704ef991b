#!/usr/bin/env python
"""Side-by-side benchmark of reparameterized distributions: reparam vs distrax vs TFP-JAX vs torch.

Run (from the repository root, in the benchmark venv; see benchmarks/README.md):

    .venv-bench/bin/python benchmarks/distributions.py            # full run, ~2-4 minutes
    .venv-bench/bin/python benchmarks/distributions.py --quick    # smoke run, well under a minute

A full run times every route, then measures peak memory (distributions_memory.py) and the float32
accuracy of the tanh-Normal log-density (distributions_accuracy.py); each of those also runs alone.

What is timed, on CPU in float32, at each size: the routes of distributions_common.py -- Normal and
tanh-Normal `rsample + log_prob` and `value_and_grad` of `mean(rsample^2)` for reparam, distrax,
TFP-JAX, torch (eager, 2 threads) and the Stable-Baselines3 tanh formula (in jax).

Method: jax functions are jitted, take the PRNG key and the parameters as arguments (nothing to
constant-fold), are called once to compile, then timed call by call with `block_until_ready`.
torch runs eagerly with `torch.set_num_threads(2)`, under `torch.no_grad()` for rows 1 and 2 only,
with its default argument validation (as reparam's default validation is on). Every library of a row
is timed in interleaved rounds (so slow drifts of a noisy machine hit all of them alike) until each
has had about `--target-s` seconds (`common.time_interleaved`); the tables show the median
wall-clock ms per call and the fastest call (the floor, least sensitive to other processes), each
with the ratio other / reparam (above 1: reparam is faster). `--json` also keeps every call's wall
and process CPU time. The column "reparam validate=False" is a diagnostic: reparam without its
default parameter validation.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import distributions_common as dc  # first: it sets JAX_PLATFORMS=cpu before jax loads

# isort: split
import jax

import common
import distributions_accuracy
import distributions_memory
from distributions_common import LIBS, WORKS, torch


def time_all(
    sizes: dict[str, tuple[int, ...]], target_s: float, rounds: int, min_calls: int, started: float
) -> dict[tuple[str, str], dict[str, common.Timing]]:
    routes = dc.jax_routes()
    results = {}
    for size, shape in sizes.items():
        cells = dc.build_cells(shape, routes)
        for work in WORKS:
            calls = {lib: cells[lib, work].run for lib in LIBS if (lib, work) in cells}
            results[size, work] = common.time_interleaved(calls, target_s, rounds, min_calls)
            row = results[size, work]
            msg = ", ".join(f"{lib} {t.median_ms:.3f} ms ({len(t.times)} calls)" for lib, t in row.items())
            print(f"  [{time.perf_counter() - started:6.1f} s] {size} {work}: {msg}", flush=True)
        del cells
        gc.collect()
    print()
    return results


def timing_table(results, sizes, stat="median_ms"):
    """Rows of strings: work, size, then per library 'ms (ratio x)'."""

    def show(lib, timing, row):
        base, ms = getattr(row["reparam"], stat), getattr(timing, stat)
        return f"{common.fmt_ms(base)} ms" if lib == "reparam" else f"{common.fmt_ms(ms)} ms ({ms / base:.2f}x)"

    return dc.cell_table(results, list(sizes), sizes, show)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: ~0.1 s per cell, fewer draws")
    p.add_argument(
        "--sizes",
        default="sac,1e6",
        help="comma list of 'sac' (256x6), '1e6' (1000000) or a shape like 4096x6 (default: sac,1e6)",
    )
    p.add_argument(
        "--target-s", type=float, default=None, help="seconds of timed calls per cell (default 1.5, quick 0.1)"
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 10, quick 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy section")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables as markdown to PATH")
    p.add_argument("--json", metavar="PATH", help="also write raw results (all per-call times) to PATH")
    args = p.parse_args(argv)

    sizes = dc.parse_sizes(args.sizes)
    target_s = args.target_s if args.target_s is not None else (0.1 if args.quick else 1.5)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 10)
    min_calls = 3 if args.quick else 10
    n_draws = 100 if args.quick else 10_000

    versions = dc.versions()
    started = common.announce("reparam distributions benchmark", versions)
    print(f"jax devices: {jax.devices()}; torch threads: {torch.get_num_threads() if torch else '-'}")
    print(f"timing: ~{target_s} s of calls per cell in {rounds} interleaved rounds (>= {min_calls} calls), median")
    print(
        "sizes: params loc, scale of shape "
        + ", ".join(f"{n} = {s}" for n, s in sizes.items())
        + "; sample_shape = () everywhere\n"
    )

    results = time_all(sizes, target_s, rounds, min_calls, started)
    md = []
    header, body = timing_table(results, sizes)
    common.print_table("ms per call, median (ratio = other / reparam; > 1 means reparam is faster)", header, body)
    md += ["### Timings (ms per call, median; ratio = other / reparam)", "", common.markdown_table(header, body), ""]
    header, body = timing_table(results, sizes, "min_ms")
    title = "ms per call, fastest call (the floor each library reaches; least sensitive to other load)"
    common.print_table(title, header, body)
    md += ["### Timings, fastest call (ms; ratio = other / reparam)", "", common.markdown_table(header, body), ""]

    if not args.no_memory:
        md += distributions_memory.section(sizes)[0]
    if not args.no_accuracy:
        md += distributions_accuracy.section(n_draws)[0]

    common.finish(started)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(md) + "\n")
    if args.json:
        raw = {f"{s}|{w}|{lib}": t.summary() for (s, w), row in results.items() for lib, t in row.items()}
        common.write_json(args.json, common.record(versions, timings=raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Peak memory of one call of each distribution route: reparam vs distrax vs TFP-JAX vs torch.

    .venv-bench/bin/python benchmarks/distributions_memory.py                # sizes with >= 1e5 elements
    .venv-bench/bin/python benchmarks/distributions_memory.py --sizes 1e6,4096x64 --markdown /tmp/mem.md

Also part of a full `benchmarks/distributions.py` run (`--no-memory` skips it there). The routes
are those of distributions_common.py.

Method: in a separate process started with glibc's `MALLOC_MMAP_THRESHOLD_=131072` (so every
buffer over 128 KiB is its own mapping and is returned to the OS when freed), after a warm-up call,
the peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident set just before
one more call: the memory that call touches, outputs included. For the jax routes XLA's own plan
(temporaries + outputs, from `compiled.memory_analysis()`) is shown beside it. Only sizes with at
least 1e5 elements are measured; smaller ones are noise.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
from pathlib import Path

import common
import distributions_common as dc

MIN_ELEMENTS = 100_000
TITLE = (
    "MiB: peak RSS increase during one steady-state call, outputs included (separate process, "
    "MALLOC_MMAP_THRESHOLD_=128 KiB); (XLA n) = XLA's planned temporaries + outputs"
)


def big_sizes(sizes: dict[str, tuple[int, ...]]) -> list[str]:
    return [s for s, shape in sizes.items() if math.prod(shape) >= MIN_ELEMENTS]


def worker(sizes: dict[str, tuple[int, ...]]) -> dict:
    """In the child process: {'size|lib|work': {'rss_delta_mib', 'xla_mib'}} for every route."""
    routes = dc.jax_routes()
    out = {}
    for size, shape in sizes.items():
        cells = dc.build_cells(shape, routes)
        for (lib, work), cell in cells.items():
            cell.run()
            gc.collect()
            common.reset_peak_rss()
            before = common.proc_status_kib("VmRSS")
            result = cell.run()
            peak = common.proc_status_kib("VmHWM")
            del result
            entry = {"rss_delta_mib": (peak - before) / 1024}
            if cell.jitted is not None:
                ma = cell.jitted.lower(*cell.args).compile().memory_analysis()
                if ma is not None:
                    entry["xla_mib"] = (ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2**20
            out[f"{size}|{lib}|{work}"] = entry
            gc.collect()
    return out


def measure(size_names: list[str]) -> dict:
    """Run the worker in a fresh process with the malloc settings of the module docstring."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = common.run_child(
            [os.path.abspath(__file__), "--_worker", "--sizes", ",".join(size_names)],
            Path(tmp) / "memory.json",
            env=env,
        )
    if "error" in result:
        print(f"memory worker failed ({result['error']})", file=sys.stderr)
        return {}
    return result


def table(mem: dict, sizes: dict, size_names: list[str]):
    rows = {}
    for key, entry in mem.items():
        size, lib, work = key.split("|")
        rows.setdefault((size, work), {})[lib] = entry

    def show(lib, e, row):
        return f"{e['rss_delta_mib']:.1f}" + (f" (XLA {e['xla_mib']:.1f})" if "xla_mib" in e else "")

    return dc.cell_table(rows, size_names, sizes, show)


def section(sizes: dict[str, tuple[int, ...]]) -> tuple[list[str], dict]:
    """Measure, print the table; returns its markdown lines and the raw measurements."""
    big = big_sizes(sizes)
    if not big:
        print("memory: skipped (only measured at sizes with >= 1e5 elements; smaller ones are noise)\n")
        return [], {}
    mem = measure(big)
    header, body = table(mem, sizes, big)
    common.print_table(TITLE, header, body)
    return ["### Memory (MiB)", "", TITLE, "", common.markdown_table(header, body), ""], mem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        default="sac,1e6",
        help="comma list of 'sac' (256x6), '1e6' (1000000) or a shape like 4096x6; only those with "
        ">= 1e5 elements are measured (default: sac,1e6)",
    )
    p.add_argument("--markdown", metavar="PATH", help="also write the table as markdown to PATH")
    p.add_argument("--json", metavar="PATH", help="also write the measurements to PATH")
    p.add_argument("--_worker", dest="worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = dc.parse_sizes(args.sizes)
    if args.worker:
        common.write_json(args.json, worker(sizes))
    else:
        title = "reparam distributions memory benchmark"
        dc.run_alone(title, lambda: section(sizes), "memory", args.markdown, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

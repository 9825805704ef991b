#!/usr/bin/env python
"""The compiled loop at the paper's 1e6 replay buffer (issue 16): the buffer is updated in place,
never copied. Two measurements of `reparam sac`'s compiled `advance` (one seed, paper sizes, gymnax
Pendulum-v1, `compiled_program` as the command builds it):

1. XLA's memory analysis of `advance` with a 20,000-row and a 1,000,000-row buffer: arguments,
   outputs, the part of the outputs aliased to (donated) arguments, and temporaries. An in-place
   buffer shows as aliased bytes that grow with the buffer and temporaries that do not.
2. The time of learning chunks with each buffer (after a warm-up chunk that compiles): a per-step
   copy of a 36 MB buffer would cost milliseconds per step; in place, the rates match.

    .venv/bin/python benchmarks/sac_buffer.py                 # 20k and 1e6 rows, 3 timed chunks of 2,000 steps
    .venv/bin/python benchmarks/sac_buffer.py --chunks 1 --eval-every 500
"""

from __future__ import annotations

import argparse
import statistics
import time

import common


def measure(capacity: int, eval_every: int, chunks: int) -> dict:
    """Memory analysis and chunk times of `advance` with a `capacity`-row buffer."""
    import jax
    import jax.numpy as jnp

    from reparam.commands.sac import compiled_program
    from reparam.rl.compiled import RunSpec
    from reparam.rl.sac import SACConfig

    # the command sizes the buffer min(buffer_size, total_steps): total_steps = capacity gives it
    spec = RunSpec(capacity, eval_every, 10)
    run, init, advance = compiled_program(SACConfig(learning_starts=eval_every // 2), "gymnax:Pendulum-v1", spec, 1)
    keys = jax.random.split(jax.random.key(0), 1)
    carry = init(keys)
    chunk_keys = lambda c: jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, c)
    analysis = advance.lower(carry, chunk_keys(0), jnp.int32(0)).compile().memory_analysis()
    mib = lambda b: b / 2**20
    times = []
    for c in range(chunks + 1):
        start = time.perf_counter()
        carry, metrics = advance(carry, chunk_keys(c), jnp.int32(c))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    buffer_mib = mib(sum(x.nbytes for x in jax.tree.leaves(carry.buffer)))
    return dict(
        capacity=capacity,
        buffer_mib=buffer_mib,
        argument_mib=mib(analysis.argument_size_in_bytes),
        output_mib=mib(analysis.output_size_in_bytes),
        alias_mib=mib(analysis.alias_size_in_bytes),
        temp_mib=mib(analysis.temp_size_in_bytes),
        steps_per_second=eval_every / statistics.median(times[1:]),
        chunk_s=times,
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--capacities", type=int, nargs="+", default=[20_000, 1_000_000])
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    versions = common.versions("jax", "jaxlib", "equinox", "reparam")
    started = common.announce("SAC compiled loop: replay buffer in place", versions)
    rows = [measure(c, args.eval_every, args.chunks) for c in args.capacities]
    header = ["buffer rows", "buffer MiB", "arguments MiB", "outputs MiB", "aliased MiB", "temporaries MiB", "steps/s"]
    table = common.markdown_table(
        header,
        [
            [f"{r['capacity']:,}", f"{r['buffer_mib']:.1f}", f"{r['argument_mib']:.1f}", f"{r['output_mib']:.1f}"]
            + [f"{r['alias_mib']:.1f}", f"{r['temp_mib']:.1f}", f"{r['steps_per_second']:,.0f}"]
            for r in rows
        ],
    )
    print(table)
    if args.json:
        common.write_json(args.json, common.record(versions, rows=rows))
    common.finish(started)


if __name__ == "__main__":
    main()

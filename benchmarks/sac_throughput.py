#!/usr/bin/env python
"""SAC throughput (issue 16): `reparam sac` against rejax (compiled) and SBX (host loop) on the same
work, interleaved rounds in fresh processes, every rate also as a fraction of the float32 matmul peak
measured in the same sitting.

    .venv/bin/python benchmarks/sac_throughput.py                          # 3 rounds, compiled contenders
    .venv/bin/python benchmarks/sac_throughput.py --contenders compiled rejax sbx host --rounds 3
    .venv/bin/python benchmarks/sac_throughput.py --contenders host sbx --env InvertedPendulum-v5 --total-steps 30000
    .venv/bin/python benchmarks/sac_throughput.py --table benchmarks/results/sac_throughput.json

Peers run in their own venvs (rejax 0.1.3 needs gymnax 0.0.9, which conflicts with our pin):
`python3.11 -m venv .venv-rejax && .venv-rejax/bin/pip install rejax==0.1.3 gymnax==0.0.9`;
SBX in `.venv-bench` (benchmarks/README.md). A contender whose venv is missing is skipped, said so.

The work (paper settings): `--total-steps` env steps (20,000), `--learning-starts` (1,000) steps before
learning, then 1 gradient step per env step, batch 256, 256x256 ReLU networks, Adam 3e-4, gamma 0.99,
tau 0.005 (rejax `polyak = 0.995`), learned temperature from 1, target entropy -dim(A), one seed.
- `compiled`: `reparam sac --env gymnax:Pendulum-v1` as the command runs it (`compiled_job` driven by
  `runs.drive`: checkpoints, metric rows, progress bar and an evaluation of 10 episodes every
  `--eval-every` steps, all included); buffer min(1e6, total steps) as the command sizes it. Rate:
  the steps of chunks 1.. over the time from the start of chunk 1 to the end of the last chunk's
  checkpoint (chunk 0 compiles; it holds the warm-up, so every timed step learns).
- `rejax`: rejax 0.1.3 `SAC` on gymnax Pendulum-v1 (`num_envs=1`, `fill_buffer` = learning starts,
  `buffer_size` = total steps, relu, the same 10-episode evaluation every `--eval-every` steps via its
  `eval_callback`); its first `--eval-every` steps (warm-up, compile) as one `train` call, then the
  rest as `train(train_state=...)` compiled ahead of time and timed: the same steps as `compiled`'s rate.
- `host` / `sbx`: `reparam sac --env ENV` (host loop) and SBX 0.28 on a Gymnasium id; rate: the
  training phase (from `sac_side_by_side.py`'s runners: steps after learning starts + 10).
- `peak`: a float32 2048x2048 and 256x256 matmul under jit (best of repeats), and XLA's FLOP count of
  one SAC update at these sizes, so each rate is also `rate x update FLOPs / peak`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parent.parent
VENVS = {
    "compiled": ROOT / ".venv",
    "host": ROOT / ".venv-bench",
    "peak": ROOT / ".venv",
    "rejax": ROOT / ".venv-rejax",
    "sbx": ROOT / ".venv-bench",
}
LABELS = {
    "compiled": "`reparam sac --env gymnax:Pendulum-v1` (compiled)",
    "rejax": "rejax 0.1.3 SAC (compiled, gymnax 0.0.9)",
    "host": "`reparam sac --env ENV` (host loop)",
    "sbx": "SBX 0.28 SAC (host loop)",
}
RESULTS = ROOT / "benchmarks" / "results" / "sac_throughput.json"


# --- workers (each runs in its contender's venv, prints one JSON line) --------------------------------


def work_compiled(args) -> dict:
    import jax
    from rich.console import Console

    from reparam.commands.sac import SACCommand, compiled_job
    from reparam.rl.sac import SACConfig
    from reparam.runs import drive, open_run

    with tempfile.TemporaryDirectory() as folder:
        config = SACCommand(
            env="gymnax:Pendulum-v1",
            total_steps=args.total_steps,
            eval_every=args.eval_every,
            seed=args.seed,
            out=Path(folder) / "run",
            sac=SACConfig(learning_starts=args.learning_starts),
        )
        config.check()
        job = compiled_job(config)
        starts: list[float] = []
        finished: list[float] = []

        def advance(state, chunk):
            starts.append(time.perf_counter())
            return job.advance(state, chunk)

        def finish(state, rows):
            finished.append(time.perf_counter())
            return job.finish(state, rows)

        timed = dataclasses.replace(job, advance=advance, finish=finish)
        begun = time.perf_counter()
        rows = drive(timed, open_run("sac", config), Console(file=io.StringIO()))
        wall = time.perf_counter() - begun
    returns = [r["eval_return"] for r in rows if "eval_return" in r]
    return dict(
        steps_per_second=(len(starts) - 1) * args.eval_every / (finished[0] - starts[1]),
        compile_and_first_chunk_s=starts[1] - starts[0],
        wall_s=wall,
        final_return=returns[-1],
        devices=str(jax.devices()),
    )


def work_rejax(args) -> dict:
    import jax
    from rejax import SAC
    from rejax.evaluate import evaluate

    algo = SAC.create(
        env="Pendulum-v1",
        num_envs=1,
        buffer_size=args.total_steps,
        fill_buffer=args.learning_starts,
        batch_size=256,
        learning_rate=3e-4,
        num_epochs=1,
        total_timesteps=args.total_steps,
        eval_freq=args.eval_every,
        gamma=0.99,
        polyak=0.995,
        hidden_layer_sizes=(256, 256),
        agent_kwargs={"activation": "relu"},
        skip_initial_evaluation=True,
    )

    def ten_episodes(algo, ts, rng):
        steps = algo.env_params.max_steps_in_episode
        return evaluate(algo.make_act(ts), rng, algo.env, algo.env_params, 10, steps)

    algo = algo.replace(eval_callback=ten_episodes)
    key = jax.random.key(args.seed) if hasattr(jax.random, "key") else jax.random.PRNGKey(args.seed)
    # As for `compiled`: the first chunk (warm-up and compile) apart, the rate over the rest.
    first = algo.replace(total_timesteps=args.eval_every)
    rest = algo.replace(total_timesteps=args.total_steps - args.eval_every)
    begun = time.perf_counter()
    ts, _ = jax.block_until_ready(jax.jit(first.train)(key))
    compiled = jax.jit(lambda ts: rest.train(train_state=ts)).lower(ts).compile()
    compile_s = time.perf_counter() - begun
    start = time.perf_counter()
    _, (_, returns) = jax.block_until_ready(compiled(ts))
    run_s = time.perf_counter() - start
    return dict(
        steps_per_second=(args.total_steps - args.eval_every) / run_s,
        compile_and_first_chunk_s=compile_s,
        wall_s=time.perf_counter() - begun,
        final_return=float(returns[-1].mean()),
        devices=str(jax.devices()),
    )


def work_host_or_sbx(args) -> dict:
    import sac_side_by_side as sbs

    sbs.ENV_GYM = args.env  # the runners read the module's environment id
    import sac_common

    sac_common.ENV_GYM = args.env
    if args.worker == "sbx":
        result = sbs.run_peer("sbx", args.seed, args.total_steps, args.learning_starts, 10)
    else:
        result = sbs.run_host(args.seed, args.total_steps, args.learning_starts, 10)
    return dict(
        steps_per_second=result["train_steps_per_second"],
        wall_s=result["wall_s"],
        final_return=result["eval_return"],
    )


def work_peak(args) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from reparam.rl.envs import ActionBounds
    from reparam.rl.replay import Transition
    from reparam.rl.sac import SACConfig, init_sac, update

    peaks = {}
    key = jax.random.key(0)
    for size in (2048, 256):
        a = jax.random.normal(key, (size, size), jnp.float32)
        mm = jax.jit(jnp.matmul).lower(a, a).compile()
        reps = max(5, int(2e10 // (2 * size**3)))
        times = common.time_calls(lambda mm=mm, a=a: jax.block_until_ready(mm(a, a)), reps, warmup=1)
        peaks[size] = 2 * size**3 / min(times) / 1e9
    config = SACConfig()
    bounds = ActionBounds(jnp.full((1,), -2.0), jnp.full((1,), 2.0))
    state = init_sac(key, 3, 1, config)
    batch = Transition(jnp.ones((256, 3)), jnp.zeros((256, 1)), jnp.zeros(256), jnp.ones((256, 3)), jnp.zeros(256))
    cost = eqx.filter_jit(update).lower(state, batch, key, config, bounds).compile().compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return dict(gflops_2048=peaks[2048], gflops_256=peaks[256], update_gflop=float(cost["flops"]) / 1e9)


WORKERS = {
    "compiled": work_compiled,
    "rejax": work_rejax,
    "host": work_host_or_sbx,
    "sbx": work_host_or_sbx,
    "peak": work_peak,
}


# --- the driver ------------------------------------------------------------------------------------------


def run_worker(name: str, args) -> dict:
    """`name`'s worker in a fresh process of its venv; its JSON line, or {'error': ...}."""
    python = VENVS[name] / "bin" / "python"
    if not python.exists():
        return dict(error=f"{VENVS[name].name} missing")
    argv = [str(python), __file__, "--worker", name, "--seed", str(args.seed), "--env", args.env]
    argv += ["--total-steps", str(args.total_steps), "--learning-starts", str(args.learning_starts)]
    argv += ["--eval-every", str(args.eval_every)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    load = common.loadavg()
    result = common.run_worker_json(argv, env=env)
    return result if "error" in result else {**result, "load_before": load}


def summarise(data: dict) -> str:
    """Medians over rounds, ratios to reparam, fractions of the same-sitting matmul peak."""
    peaks = [r for r in data["peak"] if "error" not in r]
    peak = statistics.median(r["gflops_2048"] for r in peaks) if peaks else float("nan")
    flop = peaks[0]["update_gflop"] if peaks else float("nan")
    lines = [
        f"matmul peak (best of repeats, median over rounds): 2048: {peak:,.0f} GFLOP/s, "
        f"256: {statistics.median(r['gflops_256'] for r in peaks) if peaks else float('nan'):,.0f} GFLOP/s; "
        f"one SAC update {flop:.3f} GFLOP (XLA), so the update roofline is {peak / flop:,.0f} updates/s",
        "",
        "| contender | steps/s per round | median | fraction of 2048 peak | final return per round |",
        "|---|---|---|---|---|",
    ]
    medians = {}
    for name, runs in data["runs"].items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {LABELS.get(name, name)} | {'; '.join(r['error'] for r in runs)} | - | - | - |")
            continue
        rates = [r["steps_per_second"] for r in ok]
        medians[name] = statistics.median(rates)
        fraction = medians[name] * flop / peak
        returns = " / ".join(f"{r['final_return']:.0f}" for r in ok)
        label = LABELS.get(name, name).replace("ENV", data["settings"]["env"])
        shown = " / ".join(f"{v:,.0f}" for v in rates)
        lines.append(f"| {label} | {shown} | **{medians[name]:,.0f}** | {fraction:.0%} | {returns} |")
    lines.append("")
    for ours, peer in (("compiled", "rejax"), ("host", "sbx")):
        if ours in medians and peer in medians:
            lines.append(f"- {ours} / {peer}: **{medians[ours] / medians[peer]:.2f}x** (medians)")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--contenders", nargs="+", default=["compiled", "rejax"], choices=[k for k in WORKERS if k != "peak"]
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--env", default="Pendulum-v1", help="Gymnasium id of the host-loop contenders")
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(RESULTS))
    p.add_argument("--table", help="re-print the table of this --json file")
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)), flush=True)
        return
    if args.table:
        print(summarise(common.read_json(args.table)))
        return
    versions = common.versions("jax", "jaxlib", "equinox", "optax", "reparam")
    started = common.announce("SAC throughput: reparam vs rejax / SBX", versions)
    data = dict(
        settings=dict(vars(args)),
        runs={name: [] for name in args.contenders},
        peak=[],
        record=common.record(versions, load_start=common.loadavg()),
    )
    for round_ in range(args.rounds):
        order = args.contenders[round_ % len(args.contenders) :] + args.contenders[: round_ % len(args.contenders)]
        data["peak"].append(run_worker("peak", args))
        for name in order:
            result = run_worker(name, args)
            data["runs"][name].append(result)
            shown = (
                result.get("error") or f"{result['steps_per_second']:,.0f} steps/s, return {result['final_return']:.0f}"
            )
            print(f"round {round_ + 1} {name}: {shown}", flush=True)
            common.write_json(args.json, data)
    data["record"]["load_end"] = common.loadavg()
    common.write_json(args.json, data)
    print(summarise(data))
    common.finish(started)


if __name__ == "__main__":
    main()

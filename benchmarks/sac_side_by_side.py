#!/usr/bin/env python
"""SAC side by side: reparam's host loop and compiled loop next to Stable-Baselines3 and SBX, the
same work for every contender, interleaved per seed.

Run from the repository root in the benchmark venv (set-up in benchmarks/README.md):

    .venv-bench/bin/python benchmarks/sac_side_by_side.py              # 3 seeds x 20,000 steps, ~45 min on 2 CPU cores
    .venv-bench/bin/python benchmarks/sac_side_by_side.py --total-steps 1500 --learning-starts 500 --seeds 0   # smoke
    .venv-bench/bin/python benchmarks/sac_side_by_side.py --table benchmarks/results/sac_side_by_side.json

It prints its tables (markdown) and writes a JSON under benchmarks/results/ (`--out`) after every
run, so a killed run keeps what it finished. Nothing here is CPU-specific: on a GPU machine reparam
and SBX run on the GPU (SB3 stays on the CPU, `device="cpu"`).

The work: Gymnasium Pendulum-v1 (reparam's compiled loop: gymnax Pendulum-v1, the same dynamics),
`--total-steps` 20,000 env steps, 1 gradient step per env step after `--learning-starts` 1,000
uniform-random warm-up steps, batch 256, 256x256 ReLU MLPs for the actor and both critics, gamma
0.99, tau 0.005, Adam 3e-4, learned temperature (initial 1, target entropy -dim(A)), buffer 1e6, no
gSDE. Contenders: `sb3` (SB3 2.9.2 SAC, torch, 2 threads, CPU), `sbx` (SBX 0.28 SAC, jax), `host`
(reparam's host loop `train_host` on Gymnasium Pendulum-v1) and `compiled` (reparam's compiled loop
on gymnax Pendulum-v1, vmapped and jitted exactly as `reparam sac` does, via `compiled_run`; the
reparam names come from `sac_common.rl()`). For each seed the four run back to back, each in its own
fresh process, so that a noisy shared machine loads them alike; the load average is recorded before
and after each run. Per run:
- *wall*: from building the agent (imports excluded) to the end of training, compilation included;
  the host loop's includes its own final 10-episode evaluation (~0.2 s), the compiled loop's its
  in-loop evaluations (one per 1,000-step chunk, vmapped, a few ms each).
- *train steps/s*: the training phase only. SB3, SBX: a per-step callback (SB3 `BaseCallback`)
  timestamps every env step; host: `train_host(progress=..., marks=...)` timestamps the steps named
  below only, running straight through between them as the command's chunks do (stopping at every
  step would add a dispatch per step that `reparam sac` does not pay); the rate is `(b - a) / (t_b - t_a)` with
  `a = learning_starts + 10` (the first ten gradient steps, in which SBX and reparam compile, are
  left out) and `b = total_steps - 1` (the host loop's final evaluation is left out). Compiled: the
  program is compiled ahead of time (`.lower().compile()`, timed separately as *compile*), chunk 0
  (steps 1..1,000) is the warm-up, and the rate is the steps of chunks 1.. divided by their time.
  For the host loop the loop's own training-phase rate (`steps_per_second` of the adapter's
  result, which also leaves out compiling steps) is kept as `host_internal_steps_per_second`.
- *return*: the final policy's deterministic action on a fresh Gymnasium Pendulum-v1, 10 episodes
  with reset seeds `EVAL_SEED + i` -- the same episodes for every contender and seed. SB3 and SBX
  through `model.predict(obs, deterministic=True)`, reparam through `tanh(mu)` rescaled to the bounds
  (the agent's `act`, via `sac_common.rl().acting`). reparam's own final evaluations are kept too.
- peak RSS of the process (`ru_maxrss`).
The SB3 process runs with `OMP_WAIT_POLICY=PASSIVE` (`--sb3-omp-wait-policy`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import common
import sac_common
from common import fmt, markdown_table
from sac_common import ENV_GYM, ENV_JAX, RESULTS, rl

CONTENDERS = ("sb3", "sbx", "host", "compiled")
LABELS = {
    "sb3": "SB3 2.9.2 (torch)",
    "sbx": "SBX 0.28 (jax)",
    "host": "reparam host loop",
    "compiled": "reparam compiled loop (gymnax)",
}
SKIP_TRAIN_STEPS = 10
"""Gradient steps at the start of the training phase left out of the rate (JIT compilation)."""


def training_rate(times, a: int, b: int) -> float:
    """Env steps per second between the timestamps of steps `a` and `b`."""
    return (b - a) / (times[b] - times[a])


# --- one contender, one seed (each in its own process) --------------------------------------------


def run_peer(kind: str, seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """SB3 (torch, 2 threads, CPU) or SBX SAC with the benchmark's settings."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    if kind == "sb3":
        import torch
        from stable_baselines3 import SAC

        torch.set_num_threads(2)
        extra = dict(device="cpu")
    else:
        from sbx import SAC

        extra = {}
    times = np.full(total + 1, np.nan)

    class Stamp(BaseCallback):
        def _on_step(self) -> bool:
            times[self.num_timesteps] = time.perf_counter()
            return True

    start = time.perf_counter()
    model = SAC(
        "MlpPolicy",
        gym.make(ENV_GYM),
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=learning_starts,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto",
        target_entropy="auto",
        use_sde=False,
        policy_kwargs=dict(net_arch=[256, 256]),
        seed=seed,
        verbose=0,
        **extra,
    )
    model.learn(total_timesteps=total, callback=Stamp())
    end = time.perf_counter()
    a, b = learning_starts + SKIP_TRAIN_STEPS, total - 1
    returns = sac_common.evaluate_gym(lambda obs: model.predict(obs, deterministic=True)[0], episodes)
    return dict(
        wall_s=end - start,
        train_steps_per_second=training_rate(times, a, b),
        timed_steps=[a, b],
        warmup_s=float(times[learning_starts - 1] - start),
        compile_s=None,
        eval_returns=returns,
        eval_return=statistics.fmean(returns),
        own_eval_return=None,
    )


def run_host(seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """reparam's Gymnasium host loop (`train_host`)."""
    import numpy as np

    R = rl()
    times = np.full(total + 1, np.nan)

    def progress(done, _total):
        times[done] = time.perf_counter()

    start = time.perf_counter()
    result = R.train_host(
        ENV_GYM,
        R.SACConfig(learning_starts=learning_starts),
        total,
        seed,
        eval_every=total,
        eval_episodes=episodes,
        progress=progress,
        marks=(learning_starts - 1, learning_starts + SKIP_TRAIN_STEPS, total - 1),
    )
    end = time.perf_counter()
    a, b = learning_starts + SKIP_TRAIN_STEPS, total - 1
    returns = sac_common.evaluate_actor(result.act, episodes)
    return dict(
        wall_s=end - start,
        train_steps_per_second=training_rate(times, a, b),
        timed_steps=[a, b],
        host_internal_steps_per_second=result.steps_per_second,
        warmup_s=float(times[learning_starts - 1] - start),
        compile_s=None,
        eval_returns=returns,
        eval_return=statistics.fmean(returns),
        own_eval_return=result.metrics[-1]["eval_return"],
        own_metrics=result.metrics[-1],
    )


def run_compiled(seed: int, total: int, learning_starts: int, episodes: int) -> dict:
    """reparam's compiled loop on gymnax Pendulum-v1, as `reparam sac --num-seeds 1 --seed SEED
    --eval-every LEARNING_STARTS` runs it (vmapped over one seed), compiled ahead of time."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    R = rl()
    if total % learning_starts:
        raise SystemExit("compiled: --total-steps must be a multiple of --learning-starts (one chunk each)")
    start = time.perf_counter()
    spec = R.RunSpec(total, learning_starts, episodes)  # chunk 0 is exactly the warm-up
    compiled, init, advance = R.compiled_run(R.SACConfig(learning_starts=learning_starts), ENV_JAX, spec)
    keys = jax.random.split(jax.random.key(seed), 1)
    chunk_keys = [jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys) for i in range(spec.num_evals)]
    init_c = init.lower(keys).compile()
    carry = init_c(keys)
    advance_c = advance.lower(carry, chunk_keys[0], jnp.int32(0)).compile()
    jax.block_until_ready(carry)
    compile_s = time.perf_counter() - start
    chunk_s, rows = [], []
    for i, ck in enumerate(chunk_keys):
        t = time.perf_counter()
        carry, metrics = advance_c(carry, ck, jnp.int32(i))
        jax.block_until_ready((carry, metrics))
        chunk_s.append(time.perf_counter() - t)
        rows.append({k: float(np.asarray(v)[0]) for k, v in metrics.items()})
    end = time.perf_counter()
    finite = all(np.isfinite(v) for r in rows for v in r.values()) and sac_common.all_finite(carry.params)
    act = R.acting(compiled.agent, jax.tree.map(lambda x: x[0], carry.params))
    returns = sac_common.evaluate_actor(act, episodes)
    train_steps = (spec.num_evals - 1) * spec.eval_every
    return dict(
        wall_s=end - start,
        train_steps_per_second=train_steps / sum(chunk_s[1:]),
        timed_steps=[learning_starts, total],
        compile_s=compile_s,
        warmup_s=chunk_s[0],
        chunk_s=chunk_s,
        eval_returns=returns,
        eval_return=statistics.fmean(returns),
        own_eval_return=rows[-1]["eval_return"],
        own_metrics=rows[-1],
        finite=finite,
    )


def one(args) -> None:
    runner = {
        "sb3": lambda *a: run_peer("sb3", *a),
        "sbx": lambda *a: run_peer("sbx", *a),
        "host": run_host,
        "compiled": run_compiled,
    }[args.contender]
    result = runner(args.seed, args.total_steps, args.learning_starts, args.eval_episodes)
    result.update(contender=args.contender, seed=args.seed, peak_rss_mib=common.peak_rss_mib())
    common.write_json(args.json, result)


# --- the orchestrator -------------------------------------------------------------------------------


def side_by_side(args) -> None:
    out = Path(args.out)
    data = sac_common.header(
        "side-by-side",
        total_steps=args.total_steps,
        learning_starts=args.learning_starts,
        eval_episodes=args.eval_episodes,
        sb3_omp_wait_policy=args.sb3_omp_wait_policy,
        seeds=args.seeds,
        contenders=args.contenders,
        eval_seed=sac_common.EVAL_SEED,
        skip_train_steps=SKIP_TRAIN_STEPS,
    )
    data["runs"] = []
    print(f"# SAC side by side, {data['started']}; {data['uptime_start']}", flush=True)
    print(f"machine: {data['machine']}\ncommand: {data['command']}", flush=True)
    for seed in args.seeds:
        for contender in args.contenders:
            env = dict(os.environ)
            if contender == "sb3" and args.sb3_omp_wait_policy != "default":
                env["OMP_WAIT_POLICY"] = args.sb3_omp_wait_policy
            result, info = common.run_child(
                [
                    __file__,
                    "--_one",
                    "--contender",
                    contender,
                    "--seed",
                    seed,
                    "--total-steps",
                    args.total_steps,
                    "--learning-starts",
                    args.learning_starts,
                    "--eval-episodes",
                    args.eval_episodes,
                ],
                out.with_name(f"{out.stem}.{contender}.{seed}.tmp.json"),
                env=env,
            )
            if "error" in result:
                result.update(contender=contender, seed=seed)
            result.update(info)
            data["runs"].append(result)
            common.write_json(out, data)
            before = info["load_before"]
            print(
                f"seed {seed} {contender:9s}: "
                + (
                    result.get("error")
                    or f"{result['train_steps_per_second']:.1f} train steps/s, wall {result['wall_s']:.0f} s, "
                    f"return {result['eval_return']:.1f}, load {before[0]:.2f} -> {result['load_after'][0]:.2f}"
                ),
                flush=True,
            )
    data.update(finished=common.now(), uptime_end=common.uptime())
    common.write_json(out, data)
    print(tables(data))


PER_RUN = [
    "seed",
    "contender",
    "train env steps/s",
    "wall s",
    "compile s",
    "warm-up s",
    "final return",
    "reparam's own eval",
    "load 1-min before -> after",
    "peak RSS MiB",
]
SUMMARY = ["contender", "train env steps/s", "wall s", "final return, mean", "final returns per seed"]


def tables(data: dict) -> str:
    runs = [r for r in data["runs"] if "error" not in r]
    seeds = sorted({r["seed"] for r in runs})
    present = [c for c in CONTENDERS if any(r["contender"] == c for r in runs)]
    get = {(r["contender"], r["seed"]): r for r in runs}
    per_run = []
    for seed in seeds:
        for c in present:
            r = get.get((c, seed))
            if r is not None:
                per_run.append(
                    [
                        str(seed),
                        LABELS[c],
                        f"{r['train_steps_per_second']:.1f}",
                        f"{r['wall_s']:.0f}",
                        fmt(r.get("compile_s")),
                        f"{r['warmup_s']:.1f}",
                        f"{r['eval_return']:.1f}",
                        fmt(r.get("own_eval_return")),
                        f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}",
                        f"{r['peak_rss_mib']:.0f}",
                    ]
                )
    lines = [
        f"Settings: {data['settings']}",
        "",
        "Per run (return: deterministic policy, 10 fresh Gymnasium "
        "Pendulum-v1 episodes, the same for every contender):",
        "",
        markdown_table(PER_RUN, per_run),
    ]
    mean = lambda c, k: statistics.fmean(get[(c, s)][k] for s in seeds if (c, s) in get)  # noqa: E731
    summary = [
        [
            LABELS[c],
            f"{mean(c, 'train_steps_per_second'):.1f}",
            f"{mean(c, 'wall_s'):.0f}",
            f"{mean(c, 'eval_return'):.1f}",
            ", ".join(f"{get[(c, s)]['eval_return']:.0f}" for s in seeds if (c, s) in get),
        ]
        for c in present
    ]
    lines += ["", "Summary (mean over seeds; returns per seed in seed order):", "", markdown_table(SUMMARY, summary)]
    pairs = [(a, b) for a in ("host", "compiled") for b in ("sb3", "sbx") if a in present and b in present]
    if pairs:
        ratio_rows = []
        for a, b in pairs:
            both = [s for s in seeds if (a, s) in get and (b, s) in get]
            ratios = [get[(a, s)]["train_steps_per_second"] / get[(b, s)]["train_steps_per_second"] for s in both]
            walls = [get[(b, s)]["wall_s"] / get[(a, s)]["wall_s"] for s in both]
            ratio_rows.append(
                [
                    f"{LABELS[a]} / {LABELS[b]}",
                    *(f"{x:.2f}x" for x in ratios),
                    f"{statistics.fmean(ratios):.2f}x",
                    f"{statistics.fmean(walls):.2f}x",
                ]
            )
        lines += [
            "",
            "Ratios, paired by seed (interleaved runs): training-phase env steps/s reparam / peer, "
            "and wall time peer / reparam (above 1, reparam is faster):",
            "",
            markdown_table(["ratio", *(f"seed {s}" for s in seeds), "mean", "wall-time ratio, mean"], ratio_rows),
        ]
    errors = [r for r in data["runs"] if "error" in r]
    if errors:
        lines += ["", "Failed runs: " + ", ".join(f"{r['contender']} seed {r['seed']} ({r['error']})" for r in errors)]
    if any(r.get("finite") is False for r in runs):
        bad = [r["seed"] for r in runs if r.get("finite") is False]
        lines += ["", "NON-FINITE values in a compiled run: " + str(bad)]
    lines += [
        "",
        f"Machine: {data['versions'].get('cpus')} CPUs; {data['uptime_start']} (start); "
        f"{data.get('uptime_end', '?')} (end)",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = sac_common.parser(__doc__, "sac_side_by_side.py")
    sac_common.add_run_options(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--sb3-omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "default"],
        help="OMP_WAIT_POLICY of the SB3 (torch) process (default PASSIVE: on a shared machine torch's "
        "spinning OpenMP threads can slow SB3 several-fold; 'default' leaves the variable unset)",
    )
    p.add_argument("--out", default=str(RESULTS / "sac_side_by_side.json"))
    # Internal (--_one): one contender and seed in this process.
    p.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    sac_common.dispatch(p, argv, study=side_by_side, table=tables, one=one)


if __name__ == "__main__":
    sys.exit(main())

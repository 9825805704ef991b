#!/usr/bin/env python
"""Where a host-loop SAC step goes, ours against SBX's (issue 16): the compiled update alone against
the whole step, in the same sitting, so a training-phase ratio can be split into "XLA" and "host".

    .venv-bench/bin/python benchmarks/sac_host_breakdown.py --env HalfCheetah-v5 --rounds 3

Each round runs two fresh processes (ours, then SBX; the order alternates), both from `.venv-bench`
(SBX 0.28 and reparam in one venv; benchmarks/README.md). Each does `--learning-starts` uniform steps,
`--compile-steps` learning steps (compiling and settling: the first few hundred learning steps of a
process run slower than the rest), then timed blocks of `--steps`:
- ours: `loop` = `HostLoop.run_to` over `--steps` env steps (ms per step, as `reparam sac` runs);
  `xla` = the loop's fused `Kernels.step` called `--steps` times on one fixed transition, each call
  waited for (dispatch + XLA, no environment, no Python bookkeeping).
- SBX: `loop` = `model.learn` over `--steps` env steps; `xla` = its jitted `SAC._train` on one fixed
  batch, each call waited for (dispatch + XLA); also `train` = `model.train(1, 256)` (its replay sampling,
  host-to-device batch, `_train` and four `.item()` reads).
Per contender the table gives medians over rounds; `host` is `loop - xla`, the per-step cost that is
not the compiled update. Paper settings as in `sac_throughput.py` (256x256, batch 256, buffer 20k).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-bench" / "bin" / "python"


def timed_ms(fn, n: int) -> float:
    """Milliseconds per call of `fn()` over `n` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def work_ours(args) -> dict:
    import jax
    import numpy as np

    from reparam.rl.agent import sac_agent
    from reparam.rl.host import make_host_loop, pack_step
    from reparam.rl.sac import SACConfig

    agent = sac_agent(SACConfig(learning_starts=args.learning_starts, buffer_size=args.buffer_size))
    total = args.learning_starts + args.compile_steps + 2 * args.steps
    loop = make_host_loop(agent, args.env, total_steps=total, eval_every=total)
    state = loop.run_to(loop.init(args.seed), args.learning_starts + args.compile_steps)
    start = time.perf_counter()
    state = loop.run_to(state, state.vector_step + args.steps)
    loop_ms = (time.perf_counter() - start) / args.steps * 1e3

    kernels = loop.kernels
    leaves, key_data = kernels.flat(state.params, state.key)
    action = np.zeros((1, *state.envs.train.single_action_space.shape), np.float32)
    packed = pack_step(state.obs, action, np.zeros(1), state.obs, np.zeros(1), state.obs)
    carry = [leaves, state.buffer, key_data]

    def call():
        carry[0], carry[1], _, carry[2], (next_action, _) = kernels.step(*carry, packed)
        jax.block_until_ready(next_action)

    call()
    loop.close(state)
    return dict(loop_ms=loop_ms, xla_ms=timed_ms(call, args.steps))


def work_sbx(args) -> dict:
    import gymnasium as gym
    import jax
    import numpy as np
    from sbx import SAC
    from sbx.common.type_aliases import ReplayBufferSamplesNp

    model = SAC(
        "MlpPolicy",
        gym.make(args.env),
        learning_rate=3e-4,
        buffer_size=args.buffer_size,
        learning_starts=args.learning_starts,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=dict(net_arch=[256, 256]),
        seed=args.seed,
        verbose=0,
    )
    model.learn(total_timesteps=args.learning_starts + args.compile_steps)
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
    loop_ms = (time.perf_counter() - start) / args.steps * 1e3
    train_ms = timed_ms(lambda: model.train(gradient_steps=1, batch_size=256), args.steps)

    data = model.replay_buffer.sample(256)
    batch = ReplayBufferSamplesNp(
        data.observations.numpy(),
        data.actions.numpy(),
        data.next_observations.numpy(),
        data.dones.numpy().flatten(),
        data.rewards.numpy().flatten(),
        np.full((256,), model.gamma, np.float32),
    )
    p = model.policy
    carry = [p.qf_state, p.actor_state, model.ent_coef_state, model.key]

    def call():
        out = model._train(model.tau, model.target_entropy, 1, batch, 1, 0, *carry)
        carry[:] = out[:4]
        jax.block_until_ready(out)

    call()
    return dict(loop_ms=loop_ms, xla_ms=timed_ms(call, args.steps), train_ms=train_ms)


WORKERS = {"ours": work_ours, "sbx": work_sbx}
LABELS = {"ours": "`reparam` host loop", "sbx": "SBX 0.28"}


def run_worker(name: str, args) -> dict:
    argv = [str(PYTHON), __file__, "--worker", name, "--env", args.env, "--steps", str(args.steps)]
    argv += ["--learning-starts", str(args.learning_starts), "--compile-steps", str(args.compile_steps)]
    argv += ["--buffer-size", str(args.buffer_size), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    return common.run_worker_json(argv, env=env)


def summarise(data: dict) -> str:
    lines = [
        "| contender | loop ms/step per round | xla ms/call per round | median loop | median xla | host = loop - xla |",
        "|---|---|---|---|---|---|",
    ]
    medians = {}
    for name, runs in data["runs"].items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {LABELS[name]} | {'; '.join(r['error'] for r in runs)} | - | - | - | - |")
            continue
        loop = statistics.median(r["loop_ms"] for r in ok)
        xla = statistics.median(r["xla_ms"] for r in ok)
        medians[name] = (loop, xla)
        loops, xlas = (" / ".join(f"{r[key]:.2f}" for r in ok) for key in ("loop_ms", "xla_ms"))
        lines.append(f"| {LABELS[name]} | {loops} | {xlas} | {loop:.2f} | {xla:.2f} | {loop - xla:.2f} |")
    sbx_train = [r["train_ms"] for r in data["runs"].get("sbx", []) if "train_ms" in r]
    lines.append("")
    if sbx_train:
        lines.append(f"- SBX `model.train(1, 256)`: {statistics.median(sbx_train):.2f} ms per call (median)")
    if len(medians) == 2:
        (ours_loop, ours_xla), (sbx_loop, sbx_xla) = medians["ours"], medians["sbx"]
        lines.append(
            f"- loop ratio sbx / ours: **{sbx_loop / ours_loop:.2f}x**; compiled update alone: "
            f"{sbx_xla / ours_xla:.2f}x; with no host cost at all ours would be {sbx_loop / ours_xla:.2f}x"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="HalfCheetah-v5", help="Gymnasium id")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=500, help="steps (calls) per timed block")
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--compile-steps", type=int, default=1_000)
    p.add_argument("--buffer-size", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)), flush=True)
        return
    if not PYTHON.exists():
        raise SystemExit(f"sac_host_breakdown: {PYTHON.parent.parent.name} is missing (benchmarks/README.md)")
    versions = common.versions("jax", "jaxlib", "reparam")
    started = common.announce("SAC host-loop step breakdown: reparam vs SBX", versions)
    data = dict(settings=dict(vars(args)), runs={"ours": [], "sbx": []}, record=common.record(versions))
    for round_ in range(args.rounds):
        for name in ("ours", "sbx") if round_ % 2 == 0 else ("sbx", "ours"):
            result = run_worker(name, args)
            data["runs"][name].append(result)
            shown = result.get("error") or f"loop {result['loop_ms']:.2f} ms/step, xla {result['xla_ms']:.2f} ms/call"
            print(f"round {round_ + 1} {name}: {shown}", flush=True)
    if args.json:
        common.write_json(args.json, data)
    print(summarise(data))
    common.finish(started)


if __name__ == "__main__":
    main()

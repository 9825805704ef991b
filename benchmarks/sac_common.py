"""What the SAC studies (sac_side_by_side.py, sac_scaling.py, sac_flops.py) share: the adapter to
reparam's RL modules, the versions they record, the common evaluation on Gymnasium Pendulum-v1,
the shared command-line options and the results folder.

Nothing here imports jax, torch or reparam at module level: a child process that runs SB3 must
not load jax (its peak RSS and threads are measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path
from types import SimpleNamespace

import common

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).resolve().parent / "results"
ENV_GYM = "Pendulum-v1"
ENV_JAX = "gymnax:Pendulum-v1"
EVAL_SEED = 10_000
"""Evaluation episode i of every contender and seed starts from `reset(seed=EVAL_SEED + i)`."""
PACKAGES = ("jax", "jaxlib", "equinox", "optax", "flax", "torch", "stable_baselines3", "sbx", "gymnasium", "gymnax")


# --- the adapter: every name the SAC benchmarks take from reparam.rl --------------------------------


def rl() -> SimpleNamespace:
    """reparam's RL pieces, imported on first use. The only place the SAC benchmarks import from
    `reparam.rl` (or `reparam.commands`): when those modules move, fix the imports here.

    host loop: `train_host(env_id, config, total_steps, seed, *, eval_every, eval_episodes,
    progress, marks)` -> result with `.act` (the final deterministic policy, batched obs -> action),
    `.steps_per_second` (the loop's own training-phase rate), `.metrics` (its rows); built on
    `make_host_loop`: `run_to` each of `marks` (env steps) and each chunk's end, then
    `progress(steps_done, total)`. Only at marks: stopping `run_to` at every step would cost each
    step a second dispatch (the fused step's next action is dropped at `run_to`'s end), which the
    command (`advance`, chunk by chunk) does not pay.
    compiled loop: `compiled_run(sac_config, env, RunSpec(total_steps, eval_every, eval_episodes))`
    -> (run with `.agent` and the unvmapped `.advance`, vmapped+jitted `init(keys)`, `advance(carry,
    keys, chunk)` with the carry donated; `carry.params` holds the agents' arrays), as `reparam sac`.
    `acting(agent, params)`: the jitted deterministic action of one agent's params.
    SAC: `SACConfig`, `ActionBounds`, `init_sac`, `update`, `gradient_steps(state, buffer, key,
    config, bounds) -> (state, metrics)`; replay: `Transition`, `add_batch`, `init_buffer`.
    """
    import functools

    import jax

    from reparam.commands.sac import compiled_program as compiled_run
    from reparam.rl.agent import sac_agent
    from reparam.rl.compiled import RunSpec
    from reparam.rl.host import make_host_loop
    from reparam.rl.replay import Transition, add_batch, init_buffer
    from reparam.rl.sac import ActionBounds, SACConfig, gradient_steps, init_sac, update

    def acting(agent, params):
        return jax.jit(functools.partial(agent.act, agent.policy(params)))

    def train_host(env_id, config, total_steps, seed, *, eval_every, eval_episodes, progress=None, marks=None):
        loop = make_host_loop(
            sac_agent(config), env_id, total_steps=total_steps, eval_every=eval_every, eval_episodes=eval_episodes
        )
        state, rows = loop.init(seed), []
        marks = sorted({m // loop.num_envs for m in marks or ()})
        for chunk, end in enumerate(loop.ends):
            for t in [m for m in marks if state.vector_step < m <= end] + [end]:
                state = loop.run_to(state, t)  # straight through: the loop's fused step, as `advance` runs it
                if progress is not None:
                    progress(t * loop.num_envs, total_steps)
            state, row = loop.advance(state, chunk)
            rows.append(row)
        loop.close(state)
        return SimpleNamespace(
            act=acting(loop.agent, state.params),
            metrics=rows,
            steps_per_second=rows[-1].get("training_steps_per_second", float("nan")),
        )

    return SimpleNamespace(
        train_host=train_host,
        acting=acting,
        Transition=Transition,
        add_batch=add_batch,
        init_buffer=init_buffer,
        compiled_run=compiled_run,
        ActionBounds=ActionBounds,
        SACConfig=SACConfig,
        init_sac=init_sac,
        update=update,
        gradient_steps=gradient_steps,
        RunSpec=RunSpec,
    )


# --- shared by the studies -------------------------------------------------------------------------


def versions() -> dict:
    """Python, the machine's architecture and CPU count, the packages that import, jax's devices."""
    out = common.versions(*PACKAGES, missing="skip")
    out = {"python": out.pop("python"), "machine": platform.machine(), "cpus": os.cpu_count(), **out}
    try:
        import jax

        out["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:
        pass
    return out


def header(kind: str, **settings) -> dict:
    """The start of a results file: `common.record` (date, machine, versions, command) and the
    kind, start time, `uptime` line and settings."""
    return common.record(
        versions(),
        kind=kind,
        started=common.now(),
        uptime_start=common.uptime(),
        **({"settings": settings} if settings else {}),
    )


def evaluate_gym(act, episodes: int = 10) -> list[float]:
    """Undiscounted returns of `episodes` Pendulum-v1 episodes with `act(obs) -> action`, episode i
    reset with seed EVAL_SEED + i: the same episodes for every contender and seed."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(ENV_GYM)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            action = np.asarray(act(obs), np.float32).reshape(env.action_space.shape)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def evaluate_actor(act, episodes: int) -> list[float]:
    """`evaluate_gym` with reparam's deterministic action `act` (`rl().acting`: `tanh(mu)` rescaled to
    Pendulum's bounds, batched obs -> action)."""
    import jax.numpy as jnp

    return evaluate_gym(lambda obs: act(jnp.asarray(obs, jnp.float32)[None])[0], episodes)


def all_finite(tree) -> bool:
    """Every floating-point leaf of `tree` is finite."""
    import jax
    import jax.numpy as jnp

    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating))


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--total-steps", type=int, default=20_000, help="env steps per run (default 20,000)")
    p.add_argument("--learning-starts", type=int, default=1_000, help="uniform-random warm-up steps (default 1,000)")


def dispatch(p: argparse.ArgumentParser, argv, *, study, table, one=None) -> None:
    """Parse and run: `--table JSON` re-prints a results file, the internal `--_one ... --json PATH`
    runs `one(args)` in a child process, anything else `study(args)`."""
    if one is not None:
        p.add_argument("--_one", dest="one", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.table:
        print(table(common.read_json(args.table)))
    elif getattr(args, "one", False):
        one(args)
    else:
        study(args)


def parser(doc: str, script: str) -> argparse.ArgumentParser:
    """The study's parser: description from the docstring, `--table JSON` to re-print a results file."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"See the module docstring (head -n 60 benchmarks/{script}) for the method.",
    )
    p.add_argument("--table", metavar="JSON", help="only re-print the tables of a results file written by this script")
    return p

"""`reparam sac`: train Soft Actor-Critic on the run layer. JAX-native environments (gymnax, Brax) run
the compiled loop, every seed at once (vmapped), one chunk = `eval_every` steps of all seeds;
Gymnasium ids run the host loop, seed after seed, the chunk index spanning the seeds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from rich.console import Console

from ..rl.agent import Agent, sac_agent
from ..rl.compiled import RunSpec, make_train, rows, shard_seeds
from ..rl.envs import check_env_name, is_jax_env
from ..rl.host import HostState, make_host_loop
from ..rl.sac import SACConfig
from ..runs import Job, compile_once, drive, open_run, pyplot, resolve_config, save_figure, serialise, write_atomic


@dataclass(frozen=True)
class SACCommand:
    """Train Soft Actor-Critic; JAX-native environments run fully compiled, many seeds at once."""

    env: str = "gymnax:Pendulum-v1"
    """Environment: gymnax:Pendulum-v1, gymnax:MountainCarContinuous-v0 or brax:<name> (compiled loop), or a
    Gymnasium id such as Pendulum-v1, MountainCarContinuous-v0, HalfCheetah-v5 (host loop)."""
    total_steps: int = 20_000
    """Environment steps per seed."""
    num_seeds: int = 1
    """Seeds: trained at once in the compiled loop (vmapped; sharded over devices when there are several),
    one after another in the host loop."""
    seed: int = 0
    """First random seed (seeds seed, seed + 1, ...)."""
    eval_every: int = 2_000
    """Environment steps between deterministic evaluations (one chunk)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    num_envs: int = 1
    """Vectorised Gymnasium environments (host loop only)."""
    checkpoint_every: int = 1
    """Chunks between atomic checkpoints."""
    out: Path = Path("runs/sac")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint: exactly for the compiled loop; the host
    loop restores agent, optimizers, buffer, keys and counters, and starts new episodes."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""
    sac: Annotated[SACConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SACConfig)
    """Algorithm hyperparameters (paper defaults)."""

    def check(self) -> None:
        """One-line errors for sizes that cannot run and unknown environment names."""
        check_run(self)


def check_run(config, **counts: int) -> None:
    """One-line errors for the run fields of `SACCommand` (and of commands built on its jobs): sizes
    that cannot run (also any of `counts`, `--flag=value` pairs that must be >= 1), unknown environments."""
    counts = {
        "--total-steps": config.total_steps,
        "--eval-every": config.eval_every,
        "--eval-episodes": config.eval_episodes,
        "--num-seeds": config.num_seeds,
        "--num-envs": config.num_envs,
        "--checkpoint-every": config.checkpoint_every,
        **counts,
    }
    for flag, value in counts.items():
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    total, every = config.total_steps, config.eval_every
    starts, batch = config.sac.learning_starts, config.sac.batch_size
    if total % every:
        raise ValueError(f"--total-steps ({total}) must be a multiple of --eval-every ({every})")
    if starts >= total:
        raise ValueError(f"--learning-starts ({starts}) must be below --total-steps ({total})")
    check_env_name(config.env)
    if is_jax_env(config.env) and starts < batch:
        raise ValueError(f"--learning-starts ({starts}) must be >= --batch-size ({batch}) in the compiled loop")


MakeAgent = Callable[[Any], Agent]
"""`agent_config -> Agent` (a module-level function, so programs are cached by it: `sac_agent`)."""


@compile_once
def agent_program(make_agent: MakeAgent, agent_config, env: str, spec: RunSpec, num_seeds: int | None = None):
    """The compiled run of `make_agent(agent_config)` with its jitted `init(keys)` and `advance(carry,
    keys, chunk)` over a leading seed axis (the carry donated: every seed's replay buffer and agent
    are updated in place). `num_seeds=1` builds the same interface without `vmap` (a seed axis of one
    added and removed around the unbatched program, which XLA compiles without the batching), so
    one seed pays nothing for the seed axis; any other value (or None) vmaps."""
    run = make_train(make_agent(agent_config), env, spec)
    if num_seeds != 1:
        return run, jax.jit(jax.vmap(run.init)), jax.jit(jax.vmap(run.advance, in_axes=(0, 0, None)), donate_argnums=0)
    add_axis = functools.partial(jax.tree.map, lambda x: x[None])
    drop_axis = functools.partial(jax.tree.map, lambda x: x[0])

    def init(keys):
        return add_axis(run.init(keys[0]))

    def advance(carry, keys, chunk):
        return add_axis(run.advance(drop_axis(carry), keys[0], chunk))

    return run, jax.jit(init), jax.jit(advance, donate_argnums=0)


def compiled_program(sac: SACConfig, env: str, spec: RunSpec, num_seeds: int | None = None):
    """SAC's compiled run (`agent_program` of `sac_agent`)."""
    return agent_program(sac_agent, sac, env, spec, num_seeds)


@compile_once
def host_program(
    sac: SACConfig,
    env: str,
    total_steps: int,
    num_envs: int,
    eval_every: int,
    eval_episodes: int,
    make_agent: MakeAgent = sac_agent,
):
    """The host loop of `make_agent(sac)` (SAC by default) with its compiled agent calls."""
    return make_host_loop(
        make_agent(sac),
        env,
        total_steps=total_steps,
        num_envs=num_envs,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
    )


class Finish(NamedTuple):
    """How a job built here ends: `lines(config, policies, params, rows)` writes the command's files
    and returns the summary (`params`: the agent params of every seed in the compiled loop, stacked,
    or of the last seed in the host loop), `label` heads the progress bar, `files` are those written."""

    lines: Callable
    label: str
    files: tuple[str, ...]


def sac_finish() -> Finish:
    """SAC's end: `finished` (policies and the learning curve)."""
    return Finish(
        lambda config, policies, params, rows: finished(config, policies, rows),
        "SAC",
        ("learning_curve.png", "policy.eqx"),
    )


def main(config: SACCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Train (or resume) a SAC run, writing its folder; returns the metric rows."""
    config = resolve_config("sac", config)  # on --resume, every option comes from the run's own folder
    config.check()
    job = compiled_job(config) if is_jax_env(config.env) else host_job(config)  # bad envs fail before the folder
    run = open_run("sac", config, resume=config.resume)
    return drive(job, run, console, tensorboard=config.tensorboard, stop_after=stop_after)


def compiled_job(
    config: SACCommand, make_agent: MakeAgent = sac_agent, agent_config=None, end: Finish | None = None
) -> Job:
    """The compiled loop as a run-layer job: all seeds at once, one chunk = `eval_every` steps.
    `make_agent(agent_config)` is the agent (SAC, `config.sac`, by default); `end` how it ends.
    `config` needs `SACCommand`'s run fields (env, sizes, seeds, out, checkpoint_every)."""
    end = end or sac_finish()
    agent_config = config.sac if agent_config is None else agent_config
    spec = RunSpec(config.total_steps, config.eval_every, config.eval_episodes)
    run, init, advance = agent_program(make_agent, agent_config, config.env, spec, config.num_seeds)
    keys = shard_seeds(jax.random.split(jax.random.key(config.seed), config.num_seeds))

    def step(carry, chunk: int):
        carry, metrics = advance(carry, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, chunk), jnp.int32(chunk))
        return carry, rows(run.agent, metrics, config.seed)

    def finish(carry, all_rows: list[dict]) -> list[str]:
        return end.lines(config, run.agent.policy(carry.params), carry.params, all_rows)

    return Job(
        lambda: init(keys),
        step,
        finish,
        run.spec.num_evals,
        f"{end.label} {config.env}",
        unit="steps",
        units_per_chunk=config.eval_every,
        rate_per_chunk=config.eval_every * config.num_seeds,
        rate_unit="steps/s (all seeds)",
        shown=("eval_return", "return"),
        restored=lambda fresh, saved: jax.tree.map(lambda f, s: jax.device_put(s, f.sharding), fresh, saved),
        checkpoint_every=config.checkpoint_every,
        files=end.files,
    )


class Seeds(NamedTuple):
    """The host job's state: the seed in progress, and the policies of finished seeds, stacked
    (`num_seeds` rows, zeros until a seed finishes: a fixed shape, so one checkpoint template)."""

    loop: HostState
    policies: Any


def host_job(
    config: SACCommand, make_agent: MakeAgent = sac_agent, agent_config=None, end: Finish | None = None
) -> Job:
    """The Gymnasium host loop as a run-layer job: seed after seed, the chunk index spanning them
    (agent and end as `compiled_job`'s)."""
    end = end or sac_finish()
    agent_config = config.sac if agent_config is None else agent_config
    loop = host_program(
        agent_config,
        config.env,
        config.total_steps,
        config.num_envs,
        config.eval_every,
        config.eval_episodes,
        make_agent,
    )
    policy = loop.agent.policy

    def init() -> Seeds:
        state = loop.init(config.seed)
        stack = lambda x: jnp.zeros((config.num_seeds, *x.shape), x.dtype)
        return Seeds(state, jax.tree.map(stack, policy(state.params)))

    def step(state: Seeds, chunk: int) -> tuple[Seeds, list[dict]]:
        s, i = divmod(chunk, loop.chunks)
        current = state.loop
        if i == 0 and s > 0:  # the previous seed has finished
            loop.close(current)
            current = loop.init(config.seed + s)
        current, row = loop.advance(current, i)
        policies = state.policies
        if i == loop.chunks - 1:
            policies = jax.tree.map(lambda stacked, p: stacked.at[s].set(p), policies, policy(current.params))
        return Seeds(current, policies), [row]

    def finish(state: Seeds, all_rows: list[dict]) -> list[str]:
        loop.close(state.loop)
        rates = [
            f"seed {r['seed']}: {r['training_steps_per_second']:,.1f}"
            for r in all_rows
            if "training_steps_per_second" in r
        ]
        lines = [f"Training-phase env steps/s (compiling calls excluded): {'; '.join(rates)}"] if rates else []
        return lines + end.lines(config, state.policies, state.loop.params, all_rows)

    return Job(
        init,
        step,
        finish,
        loop.chunks * config.num_seeds,
        f"{end.label} {config.env}",
        unit="steps (all seeds)",
        units_per_chunk=config.eval_every,
        rate_unit="steps/s",
        shown=("eval_return", "return"),
        saved=lambda state: (loop.saved(state.loop), state.policies),
        restored=lambda state, saved: Seeds(loop.restored(state.loop, saved[0]), jax.tree.map(jnp.asarray, saved[1])),
        checkpoint_every=config.checkpoint_every,
        files=end.files,
    )


def returns_by_step(all_rows: list[dict]) -> tuple[list[int], np.ndarray]:
    """The evaluation steps and the returns there, `(steps, seeds)`."""
    steps = sorted({r["step"] for r in all_rows})
    return steps, np.array([[r["eval_return"] for r in all_rows if r["step"] == s] for s in steps])


def finished(
    config: SACCommand, policies, all_rows: list[dict], *, title: str = "SAC", beside: dict | None = None
) -> list[str]:
    """Both loops' end: `policy.eqx` (every seed's policy, stacked), `learning_curve.png` (with the
    curves of `beside`, `{label: rows}` of other runs, drawn beside it), the summary."""
    write_atomic(Path(config.out) / "policy.eqx", serialise(policies))
    steps, by_step = returns_by_step(all_rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {title: (steps, by_step), **{label: returns_by_step(rows) for label, rows in (beside or {}).items()}}
    for i, (label, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y.mean(1), color=f"C{i}", label=f"{label}: mean of {y.shape[1]} seed(s)")
        ax.fill_between(x, y.min(1), y.max(1), color=f"C{i}", alpha=0.2, label=f"{label}: min-max")
    ax.set(xlabel="environment steps", ylabel="evaluation return (deterministic policy)")
    ax.set_title(f"{title} on {config.env}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, Path(config.out) / "learning_curve.png")
    final = by_step[-1]
    return [
        f"Final evaluation return {final.mean():.1f} (min {final.min():.1f}, max {final.max():.1f}) over "
        f"{len(final)} seed(s) after {steps[-1]:,} steps"
    ]


COMMAND = ("sac", SACCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

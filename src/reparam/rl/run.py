"""`reparam sac` and `reparam evaluate`: run folders, progress, checkpoints and exact resume for
the compiled loop (JAX-native environments), the Gymnasium host loop for everything else."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import tyro
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..runs import load_serialised, serialise, start_run, write_atomic, write_csv, write_json
from .envs import JAX_ENVS, is_jax_env, make_jax_env
from .sac import SACConfig, init_sac
from .train import RunSpec, evaluate, make_train, shard_seeds


@dataclass
class SACRunConfig:
    """Train Soft Actor-Critic; `gymnax:` environments run fully compiled, many seeds at once."""

    env: str = "gymnax:Pendulum-v1"
    """Environment: gymnax:Pendulum-v1, gymnax:MountainCarContinuous-v0 or brax:<name> (compiled loop), or a
    Gymnasium id such as Pendulum-v1, MountainCarContinuous-v0, HalfCheetah-v5 (host loop)."""
    total_steps: int = 20_000
    """Environment steps per seed."""
    num_seeds: int = 1
    """Seeds trained at once (vmapped; sharded over devices when several are present)."""
    seed: int = 0
    """Base random seed."""
    eval_every: int = 2_000
    """Environment steps between deterministic evaluations (one compiled chunk)."""
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
    sac: SACConfig = field(default_factory=SACConfig)
    """Algorithm hyperparameters (paper defaults)."""

    def validate(self) -> None:
        if self.total_steps < 1 or self.eval_every < 1 or self.eval_episodes < 1 or self.num_seeds < 1:
            raise ValueError("--total-steps, --eval-every, --eval-episodes and --num-seeds must be >= 1")
        if self.total_steps % self.eval_every:
            raise ValueError(f"--total-steps ({self.total_steps}) must be a multiple of --eval-every ({self.eval_every})")
        if self.sac.learning_starts >= self.total_steps:
            raise ValueError(f"--sac.learning-starts ({self.sac.learning_starts}) must be below --total-steps ({self.total_steps})")
        if self.env.startswith("gymnax:") and self.env not in JAX_ENVS:
            raise ValueError(f"unknown JAX-native environment {self.env!r}; supported: {', '.join(JAX_ENVS)}, brax:<name>")
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be >= 1, got {self.num_envs}")
        if not is_jax_env(self.env):  # an unknown id or a discrete action space fails here, before any output
            from .host import make_gym_env

            make_gym_env(self.env, 1, 0)[0].close()


@functools.lru_cache(maxsize=8)
def compiled_run(sac: SACConfig, env: str, spec: RunSpec):
    """The run's pieces with their vmapped, jitted `init` and `advance`, cached so that runs with the
    same settings in one process (a resume, a notebook, the tests) compile once."""
    compiled = make_train(sac, env, spec)
    init = eqx.filter_jit(eqx.filter_vmap(compiled.init))
    # The carry (replay buffers and agents of every seed) is donated: XLA updates it in place.
    advance = eqx.filter_jit(eqx.filter_vmap(compiled.advance, in_axes=(0, 0, None)), donate="all")
    return compiled, init, advance


def save_checkpoint(out: Path, carry, chunk: int) -> None:
    """Carry first, then the small marker that names it: a crash between the two leaves the old pair."""
    write_atomic(out / "checkpoint.eqx", serialise(carry))
    write_json(out / "checkpoint.json", {"chunk": chunk})


def _load_config(folder: Path) -> SACRunConfig:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} is not a run folder (no config.json)") from None
    raw["sac"] = SACConfig(**{**raw["sac"], "hidden_sizes": tuple(raw["sac"]["hidden_sizes"])})
    raw["out"], raw["resume"] = Path(raw["out"]), None
    return SACRunConfig(**raw)


def _rows(metrics: dict, seed0: int) -> list[dict]:
    values = {k: np.asarray(v) for k, v in metrics.items()}
    return [{"seed": seed0 + s, **{k: (int(v[s]) if k == "step" else float(v[s])) for k, v in values.items()}}
            for s in range(len(values["step"]))]


def plot_learning_curve(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted({r["step"] for r in rows})
    by_step = np.array([[r["eval_return"] for r in rows if r["step"] == s] for s in steps])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, by_step.mean(1), color="C0", label=f"mean of {by_step.shape[1]} seed(s)")
    ax.fill_between(steps, by_step.min(1), by_step.max(1), color="C0", alpha=0.2, label="min-max")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (deterministic policy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: SACRunConfig, console: Console | None = None, *, max_chunks: int | None = None) -> list[dict]:
    """Train, writing the run folder. `max_chunks` stops early as if the process were killed after
    that many chunks (tests use it to check resume)."""
    console = console or Console()
    resuming = config.resume is not None
    if resuming:  # everything but the folder comes from the run's own config.json
        config = dataclasses.replace(_load_config(Path(config.resume)), out=Path(config.resume))
    config.validate()
    if not is_jax_env(config.env):
        return run_host(config, console, resuming=resuming, max_chunks=max_chunks)
    spec = RunSpec(config.total_steps, config.eval_every, config.eval_episodes)
    compiled, init, advance = compiled_run(config.sac, config.env, spec)
    out = Path(config.out)
    keys = shard_seeds(jax.random.split(jax.random.key(config.seed), config.num_seeds))
    if resuming:
        like = eqx.filter_eval_shape(eqx.filter_vmap(compiled.init), keys)
        carry = load_serialised(out / "checkpoint.eqx", like)
        start = _read_json(out / "checkpoint.json")["chunk"]
        rows = [r for r in _read_rows(out) if r["step"] <= start * spec.eval_every]
        console.print(f"Resuming {out} at step {start * spec.eval_every:,}")
    else:
        start_run(out, config)
        carry, start, rows = init(keys), 0, []
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    columns = [TextColumn("[bold]SAC {task.fields[env]}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
               TextColumn("{task.fields[rate]}"), TextColumn("return {task.fields[ret]}"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn()]
    timed_steps, timed_seconds = 0, 0.0  # the first chunk of a process compiles: not in the rate
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sac", total=spec.total_steps, completed=start * spec.eval_every, env=config.env,
                                 rate="compiling", ret="-")
        for chunk in range(start, spec.num_evals if max_chunks is None else min(spec.num_evals, max_chunks)):
            begun = time.perf_counter()
            chunk_keys = jax.vmap(lambda k: jax.random.fold_in(k, chunk))(keys)
            carry, metrics = advance(carry, chunk_keys, jnp.asarray(chunk, jnp.int32))
            new = _rows(metrics, config.seed)
            if any(not np.isfinite(r["eval_return"]) or not np.isfinite(r["critic_loss"]) for r in new):
                raise FloatingPointError(f"a seed produced a non-finite value at step {new[0]['step']}: {new}")
            rows += new
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in new))
            if (chunk + 1) % config.checkpoint_every == 0 or chunk + 1 == spec.num_evals:
                save_checkpoint(out, carry, chunk + 1)
            if chunk > start:
                timed_steps += spec.eval_every * config.num_seeds
                timed_seconds += time.perf_counter() - begun
            rate = f"{timed_steps / timed_seconds:,.0f} steps/s (all seeds)" if timed_seconds else "compiled"
            progress.update(task, completed=(chunk + 1) * spec.eval_every, rate=rate,
                            ret=f"{np.mean([r['eval_return'] for r in new]):.1f}")

    if max_chunks is not None and max_chunks < spec.num_evals:
        return rows
    finish(out, rows, config, eqx.combine(carry.sac, compiled.static).actor, console)
    console.print("Wrote learning_curve.png, policy.eqx, metrics.jsonl, metrics.csv, checkpoint.eqx, config.json")
    return rows


def finish(out: Path, rows: list[dict], config: SACRunConfig, actors, console: Console) -> None:
    """metrics.csv, learning_curve.png, policy.eqx and the closing summary (both loops)."""
    write_csv(out / "metrics.csv", rows)
    plot_learning_curve(rows, out / "learning_curve.png", f"SAC on {config.env}")
    write_atomic(out / "policy.eqx", serialise(eqx.filter(actors, eqx.is_array)))
    last = max(r["step"] for r in rows)
    final = [r["eval_return"] for r in rows if r["step"] == last]
    console.print(f"Final evaluation return {np.mean(final):.1f} (min {np.min(final):.1f}, max {np.max(final):.1f}) "
                  f"over {len(final)} seed(s) after {last:,} steps")
    console.print(f"Run folder: {out}", soft_wrap=True)


class _Stopped(Exception):
    """Raised inside the host loop when `max_chunks` checkpoints are written (a simulated kill)."""


def run_host(config: SACRunConfig, console: Console, *, resuming: bool = False, max_chunks: int | None = None) -> list[dict]:
    """The Gymnasium host loop, one seed after another, checkpointed after every `checkpoint_every`
    evaluations. A resume restores the agent, optimizers, buffer, key and counters of the seed in
    progress exactly (the environments start new episodes, see `host.HostCheckpoint`); finished
    seeds are kept from their `policy_seed<S>.eqx`."""
    from .host import train_host

    out = Path(config.out)
    if resuming:
        marker = _read_json(out / "checkpoint.json")
        first, resume_step = marker["seed_index"], marker["step"]
        rows = [r for r in _read_rows(out) if r["seed"] < config.seed + first
                or (r["seed"] == config.seed + first and r["step"] <= resume_step)]
        console.print(f"Resuming {out} at seed {config.seed + first}, step {resume_step:,}")
    else:
        start_run(out, config)
        first, resume_step, rows = 0, 0, []
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    actors = [_load_actor(out, config, config.seed + s) for s in range(first)]
    checkpoints = 0

    columns = [TextColumn("[bold]SAC {task.fields[env]} seed {task.fields[seed]}"), BarColumn(),
               TextColumn("{task.completed:,}/{task.total:,} steps"), TextColumn("return {task.fields[ret]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        for s in range(first, config.num_seeds):
            seed = config.seed + s
            task = progress.add_task("sac", total=config.total_steps, env=config.env, seed=seed, ret="-")

            def on_eval(step, metrics, seed=seed, task=task):
                row = {"seed": seed, **metrics, "step": int(step)}
                if not np.isfinite(row["eval_return"]) or (row["gradient_steps"] and not np.isfinite(row["critic_loss"])):
                    raise FloatingPointError(f"seed {seed} produced a non-finite value at step {row['step']}: {row}")
                rows.append(row)
                with open(out / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                progress.update(task, ret=f"{metrics['eval_return']:.1f}")

            def on_checkpoint(checkpoint, s=s):
                nonlocal checkpoints
                step = int(checkpoint.vector_step) * config.num_envs
                if step // config.eval_every % config.checkpoint_every and step < config.total_steps:
                    return
                write_atomic(out / "checkpoint.eqx", serialise(checkpoint))
                write_json(out / "checkpoint.json", {"seed_index": s, "step": step})
                checkpoints += 1
                if max_chunks is not None and checkpoints >= max_chunks:
                    raise _Stopped

            restore = None
            if s == first and resume_step > 0:
                restore = lambda like: load_serialised(out / "checkpoint.eqx", like)
            try:
                result = train_host(config.env, config.sac, config.total_steps, seed, num_envs=config.num_envs,
                                    eval_every=config.eval_every, eval_episodes=config.eval_episodes, on_eval=on_eval,
                                    progress=lambda done, total, task=task: progress.update(task, completed=done),
                                    on_checkpoint=on_checkpoint, restore=restore)
            except _Stopped:
                return rows
            actors.append(eqx.filter(result.state.actor, eqx.is_array))
            write_atomic(out / f"policy_seed{seed}.eqx", serialise(actors[-1]))
            write_json(out / "checkpoint.json", {"seed_index": s + 1, "step": 0})
            console.print(f"seed {seed}: {result.steps_per_second:.1f} env steps/s in the training phase")
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *actors)
    finish(out, rows, config, stacked, console)
    console.print("Wrote learning_curve.png, policy.eqx, metrics.jsonl, metrics.csv, checkpoint.eqx, config.json")
    return rows


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint marker at {path}: nothing to resume") from None
    except json.JSONDecodeError:
        raise ValueError(f"corrupt checkpoint marker {path}") from None


def _read_rows(out: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{out} has no metrics.jsonl") from None
    except json.JSONDecodeError:
        raise ValueError(f"corrupt {out / 'metrics.jsonl'}") from None


def _actor_template(config: SACRunConfig, num_seeds: int | None = None):
    """The array half of an actor for the run's environment, stacked over `num_seeds` if given."""
    if is_jax_env(config.env):
        jenv = make_jax_env(config.env)
        obs_dim, action_dim = jenv.obs_dim, jenv.bounds.low.shape[0]
    else:
        from .host import make_gym_env

        env, obs = make_gym_env(config.env, 1, 0)
        obs_dim, action_dim = obs.shape[-1], env.single_action_space.shape[0]
        env.close()
    make = lambda k: init_sac(k, obs_dim, action_dim, config.sac).actor
    if num_seeds is None:
        return eqx.partition(make(jax.random.key(0)), eqx.is_array)
    return eqx.partition(eqx.filter_vmap(make)(jax.random.split(jax.random.key(0), num_seeds)), eqx.is_array)


def _load_actor(out: Path, config: SACRunConfig, seed: int):
    params, _ = _actor_template(config)
    return load_serialised(out / f"policy_seed{seed}.eqx", params)


@dataclass
class EvaluateConfig:
    """Evaluate the saved policy of a `reparam sac` run (deterministic actions)."""

    run_dir: tyro.conf.Positional[Path]
    """The run folder written by `reparam sac`."""
    episodes: int = 10
    """Episodes per seed."""
    seed: int = 123
    """Random seed of the evaluation episodes."""


def evaluate_run(config: EvaluateConfig, console: Console | None = None) -> list[float]:
    """Mean return of `episodes` deterministic-policy episodes per seed of a saved run (either loop)."""
    console = console or Console()
    if config.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {config.episodes}")
    run_config = _load_config(Path(config.run_dir))
    params, static = _actor_template(run_config, run_config.num_seeds)
    actors = eqx.combine(load_serialised(Path(config.run_dir) / "policy.eqx", params), static)
    if is_jax_env(run_config.env):
        jenv = make_jax_env(run_config.env)
        eval_keys = jax.random.split(jax.random.key(config.seed), run_config.num_seeds)
        returns = eqx.filter_jit(eqx.filter_vmap(lambda a, k: evaluate(a, jenv, k, config.episodes)))(actors, eval_keys)
    else:
        returns = _evaluate_host(run_config.env, actors, run_config.num_seeds, config.episodes, config.seed)
    returns = [float(r) for r in returns]
    console.print(f"{run_config.env}: mean return over {config.episodes} episodes per seed: "
                  + ", ".join(f"{r:.1f}" for r in returns))
    return returns


def _evaluate_host(env_id: str, actors, num_seeds: int, episodes: int, seed: int) -> list[float]:
    from .host import deterministic_action, evaluate as evaluate_host, make_gym_env
    from .sac import ActionBounds

    env, _ = make_gym_env(env_id, episodes, seed)
    space = env.single_action_space
    bounds = ActionBounds(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32))
    act = eqx.filter_jit(lambda actor, obs: deterministic_action(actor, obs, bounds))
    try:
        returns = []
        for s in range(num_seeds):
            actor = jax.tree_util.tree_map(lambda x: x[s] if eqx.is_array(x) else x, actors)
            returns.append(float(np.mean(evaluate_host(env, lambda obs: act(actor, obs)))))
        return returns
    finally:
        env.close()

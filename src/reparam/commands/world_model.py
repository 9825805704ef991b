"""`reparam world-model`: a model-based agent (`svg`: actor gradients through imagined rollouts of a
learned dynamics ensemble; `mbpo`: SAC on real and model rollouts) on the run layer, through SAC's
two jobs: JAX-native environments run the compiled loop (seeds vmapped), Gymnasium ids the host loop.
Rows carry the model's held-out NLL and MSE; the run ends with the learning curve (beside a `reparam
sac` run's, if given) and the model's open-loop prediction of a fresh episode against the truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import tyro
from rich.console import Console

from ..rl.agent import Agent
from ..rl.dynamics import DynamicsConfig, open_loop, termination_for
from ..rl.envs import is_jax_env, make_jax_env
from ..rl.imagination import check_estimator
from ..rl.model_based import AGENTS, ModelBasedConfig, ensemble_of, model_based_agent
from ..rl.sac import SACConfig
from ..runs import drive, open_run, pyplot, read_rows, resolve_config, save_figure
from .sac import Finish, check_run, compiled_job, finished, host_job

PREDICTION_PARTICLES = 20
"""Model rollouts per ensemble member in the open-loop picture."""


@dataclass(frozen=True)
class WorldModelCommand:
    """Train a model-based agent (svg or mbpo) with a learned probabilistic dynamics ensemble."""

    agent: str = "svg"
    """svg (actor gradient through H-step imagined rollouts of the model) or mbpo (SAC on real and
    model rollouts)."""
    env: str = "gymnax:Pendulum-v1"
    """Environment: gymnax:Pendulum-v1, gymnax:MountainCarContinuous-v0 (compiled loop), or a Gymnasium
    id with a known termination function such as Pendulum-v1, Hopper-v5 (host loop; an unknown id's
    error lists them all)."""
    total_steps: int = 10_000
    """Environment steps per seed."""
    horizon: int = 3
    """Model steps: svg's imagination horizon H, mbpo's longest rollout."""
    ensemble: int = 5
    """Members of the dynamics ensemble."""
    elites: int = 3
    """Members imagination samples from (lowest held-out error), 1..ensemble."""
    imagination_gradient: str = "pathwise"
    """svg's actor-gradient estimator through the rollouts: pathwise or score."""
    num_seeds: int = 1
    """Seeds: trained at once in the compiled loop (vmapped), one after another in the host loop."""
    seed: int = 0
    """First random seed (seeds seed, seed + 1, ...)."""
    eval_every: int = 1_000
    """Environment steps between deterministic evaluations (one chunk)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    num_envs: int = 1
    """Vectorised Gymnasium environments (host loop only)."""
    checkpoint_every: int = 1
    """Chunks between atomic checkpoints."""
    model_hidden_sizes: tuple[int, ...] = (200, 200)
    """Hidden SiLU layer widths of every ensemble member."""
    model_learning_rate: float = 1e-3
    """AdamW step size of the model."""
    model_steps: int = 1
    """Model gradient steps per training phase."""
    rollout_batch: int = 256
    """mbpo: model rollouts started per training phase."""
    real_ratio: float = 0.05
    """mbpo: fraction of real transitions in each SAC batch."""
    model_buffer_size: int = 50_000
    """mbpo: capacity of the model-transition buffer."""
    rollout_ramp: int = 5_000
    """mbpo: training phases over which the rollout length grows from 1 to --horizon."""
    prediction_steps: int = 50
    """Steps of the fresh episode the final open-loop picture predicts."""
    sac_run: Path | None = None
    """A `reparam sac` run folder whose learning curve is drawn beside this run's."""
    out: Path = Path("runs/world-model")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly in the compiled loop)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""
    sac: Annotated[SACConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SACConfig)
    """SAC's hyperparameters (critics, temperature, warm-up, replay; --actor-gradient applies to mbpo)."""

    def model_based(self) -> ModelBasedConfig:
        """The agent's settings (one-line ValueErrors for impossible ones)."""
        dynamics = DynamicsConfig(
            ensemble_size=self.ensemble,
            num_elites=self.elites,
            hidden_sizes=self.model_hidden_sizes,
            learning_rate=self.model_learning_rate,
            model_steps=self.model_steps,
        )
        return ModelBasedConfig(
            sac=self.sac,
            dynamics=dynamics,
            horizon=self.horizon,
            imagination_gradient=self.imagination_gradient,
            rollout_batch=self.rollout_batch,
            real_ratio=self.real_ratio,
            model_buffer_size=self.model_buffer_size,
            rollout_ramp=self.rollout_ramp,
        )

    def check(self) -> None:
        """One-line errors for unknown agents and environments and sizes that cannot run."""
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose svg or mbpo")
        check_estimator(self.imagination_gradient)
        self.model_based()
        check_run(self, **{"--prediction-steps": self.prediction_steps})
        termination_for(self.env)
        if self.sac_run is not None and not (Path(self.sac_run) / "metrics.jsonl").is_file():
            raise ValueError(f"--sac-run {self.sac_run} is not a run folder (no metrics.jsonl)")


class AgentSpec(NamedTuple):
    """What builds the agent (hashable: compiled programs are cached by it)."""

    name: str
    config: ModelBasedConfig
    env: str


def world_model_agent(spec: AgentSpec) -> Agent:
    """The `svg` or `mbpo` agent with the environment's termination function."""
    return model_based_agent(spec.name, spec.config, termination_for(spec.env))


def main(config: WorldModelCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Train (or resume) a model-based run, writing its folder; returns the metric rows."""
    config = resolve_config("world-model", config)
    config.check()
    spec = AgentSpec(config.agent, config.model_based(), config.env)
    end = Finish(
        lambda c, policies, params, rows: ending(config, spec, policies, params, rows),
        config.agent,
        ("learning_curve.png", "open_loop_prediction.png", "policy.eqx"),
    )
    make_job = compiled_job if is_jax_env(config.env) else host_job
    job = make_job(config, world_model_agent, spec, end)
    run = open_run("world-model", config, resume=config.resume)
    return drive(job, run, console, tensorboard=config.tensorboard, stop_after=stop_after)


def ending(config: WorldModelCommand, spec: AgentSpec, policies, params, rows: list[dict]) -> list[str]:
    """The run's end: policies and learning curve (`sac.finished`, SAC's curve beside it with
    `--sac-run`), and the open-loop prediction picture of the first (compiled) or last (host) seed's model."""
    beside = None if config.sac_run is None else {"SAC": read_rows(Path(config.sac_run))}
    lines = finished(config, policies, rows, title=config.agent, beside=beside)
    if np.ndim(params.learn_calls) == 1:  # stacked over seeds (compiled loop): the first seed's
        params = jax.tree.map(lambda x: x[0], params)
    agent = world_model_agent(spec)
    return lines + [prediction_picture(config, agent, spec, params)]


def true_episode(env: str, act, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fresh episode of `steps` steps (or until it ends) with the deterministic policy `act(obs)`:
    observations `(T + 1, obs_dim)`, actions `(T, action_dim)`, rewards `(T,)`."""
    obs_list, actions, rewards = [], [], []
    if is_jax_env(env):
        jenv = make_jax_env(env)
        k_reset, k_steps = jax.random.split(jax.random.key(seed))
        obs, state = jenv.env.reset(k_reset, jenv.params)
        step = jax.jit(lambda k, s, a: jenv.env.step(k, s, a, jenv.params))
        for k in jax.random.split(k_steps, steps):
            action = np.asarray(act(jnp.asarray(obs, jnp.float32)[None]))[0]
            obs_list.append(np.asarray(obs, np.float32))
            obs, state, reward, terminated, truncated, info = step(k, state, action)
            actions.append(action)
            rewards.append(float(reward))
            if bool(terminated) or bool(truncated):
                obs = info["final_observation"]
                break
    else:
        gym_env = gym.make(env)
        try:
            obs, _ = gym_env.reset(seed=seed)
            for _ in range(steps):
                action = np.asarray(act(jnp.asarray(obs, jnp.float32)[None]))[0]
                obs_list.append(np.asarray(obs, np.float32))
                obs, reward, terminated, truncated, _ = gym_env.step(action)
                actions.append(action)
                rewards.append(float(reward))
                if terminated or truncated:
                    break
        finally:
            gym_env.close()
    obs_list.append(np.asarray(obs, np.float32))
    return np.stack(obs_list), np.stack(actions), np.asarray(rewards, np.float32)


PREDICTION_SEED = 2_000_003
"""Environment seed of the held-out episode the open-loop picture predicts (no training episode uses it)."""


def prediction_picture(config: WorldModelCommand, agent: Agent, spec: AgentSpec, params) -> str:
    """`open_loop_prediction.png`: the true states and rewards of a fresh episode (deterministic policy)
    against the model's open-loop prediction from its first state under the same actions (median and
    5-95% band of `PREDICTION_PARTICLES` draws per member); returns the summary line with the share of
    true values inside the band."""
    act = jax.jit(lambda obs: agent.act(agent.policy(params), obs))
    truth, actions, rewards = true_episode(config.env, act, config.prediction_steps, PREDICTION_SEED + config.seed)
    ensemble = ensemble_of(params, truth.shape[-1], actions.shape[-1], spec.config.dynamics)
    predict = jax.jit(lambda o, a, k: open_loop(ensemble, params.model.scaling, o, a, k, PREDICTION_PARTICLES))
    states, model_rewards = predict(jnp.asarray(truth[0]), jnp.asarray(actions), jax.random.key(config.seed))
    series = [(f"obs[{i}]", truth[:, i], np.asarray(states[..., i])) for i in range(truth.shape[-1])]
    series.append(("reward", rewards, np.asarray(model_rewards)))
    plt = pyplot()
    fig, axes = plt.subplots(len(series), 1, figsize=(6, 1.8 * len(series)), sharex=True, squeeze=False)
    inside = []
    for ax, (name, true, predicted) in zip(axes[:, 0], series, strict=True):
        low, mid, high = np.percentile(predicted, [5, 50, 95], axis=1)
        t = np.arange(len(true))
        ax.fill_between(t, low, high, color="C1", alpha=0.3, label="model 5-95%")
        ax.plot(t, mid, color="C1", label="model median")
        ax.plot(t, true, color="k", lw=1.2, label="truth")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        inside.append((true >= low) & (true <= high))
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("steps ahead (open loop, same actions)")
    # the top panel's title, not fig.suptitle: tight_layout then keeps it clear of that panel's legend
    axes[0, 0].set_title(f"{config.agent} model: open-loop prediction\nof a fresh {config.env} episode", fontsize=10)
    save_figure(fig, Path(config.out) / "open_loop_prediction.png")
    share = float(np.mean(np.concatenate(inside)))
    return (
        f"Open-loop prediction of a fresh episode ({len(rewards)} steps, {spec.config.dynamics.ensemble_size} "
        f"members x {PREDICTION_PARTICLES} draws): {100 * share:.0f}% of true values inside the 5-95% band"
    )


COMMAND = ("world-model", WorldModelCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

"""Two model-based agents on SAC's pieces, as `Agent` values, so both loops (`compiled.make_train`,
`host.make_host_loop`) run them unchanged: the dynamics ensemble (`dynamics.py`) is trained on the
replay buffer inside `learn`, and everything else the agent needs rides in its params.

- `svg`: SAC whose actor minimises the H-step imagined soft return through the model (`imagination.py`:
  each step a reparameterized draw from a random elite member) plus `gamma^H` times the soft value
  `min_i Q_i - alpha log pi` at the end; critics and temperature trained as in SAC on real data
  (`sac.gradient_steps` with the imagined-return `actor_objective`).
- `mbpo` (Janner et al. 2019): every `learn` call rolls the current policy through the model from
  `rollout_batch` replay states for the scheduled length (1 growing to `horizon`) into a second
  buffer held in the params; SAC's update on a mix of real (`real_ratio`) and model transitions.

    agent = model_based_agent("svg", ModelBasedConfig(), termination_for("Pendulum-v1"))
    run = make_train(agent, "gymnax:Pendulum-v1", RunSpec(10_000, 1_000, 10))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .agent import Agent, SACParams, sac_agent
from .dynamics import (
    DynamicsConfig,
    Ensemble,
    ModelState,
    elites,
    init_model,
    never_terminates,
    sample_step,
    train_model,
)
from .envs import ActionBounds
from .imagination import check_estimator, imagine, svg_loss
from .replay import ReplayBuffer, Transition, add_batch, init_buffer, make_transition, sample
from .sac import METRICS, Actor, SACConfig, SACState, TwinCritic, gradient_steps, init_sac, policy

AGENTS = ("svg", "mbpo")
MODEL_METRICS = ("model_loss", "model_nll", "model_mse")
"""What every model-based `learn` adds to SAC's metrics: the model's training loss per member and its
held-out NLL and MSE (original units)."""
Termination = Callable[[Array, Array, Array], Array]


@dataclass(frozen=True)
class ModelBasedConfig:
    """A model-based agent's settings: SAC's, the ensemble's, and the imagination's."""

    sac: SACConfig = field(default_factory=SACConfig)
    """SAC's hyperparameters (critics, temperature, actor optimizer, warm-up, replay)."""
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    """The ensemble's sizes and training."""
    horizon: int = 3
    """Model steps: svg's imagination horizon H; mbpo's longest rollout."""
    imagination_gradient: Literal["pathwise", "score"] = "pathwise"
    """svg's actor-gradient estimator through the imagined rollouts."""
    rollout_batch: int = 256
    """mbpo: model rollouts started per `learn` call (from uniform replay states)."""
    real_ratio: float = 0.05
    """mbpo: fraction of each SAC batch drawn from real transitions (the rest from the model buffer)."""
    model_buffer_size: int = 50_000
    """mbpo: capacity of the model-transition buffer (the newest rows are kept)."""
    rollout_ramp: int = 5_000
    """mbpo: `learn` calls over which the rollout length grows linearly from 1 to `horizon`."""

    def __post_init__(self):
        checks = [
            (self.horizon >= 1, f"--horizon must be >= 1, got {self.horizon}"),
            (self.rollout_batch >= 1, f"--rollout-batch must be >= 1, got {self.rollout_batch}"),
            (0 <= self.real_ratio <= 1, f"--real-ratio must be in [0, 1], got {self.real_ratio}"),
            (
                self.model_buffer_size >= max(self.rollout_batch, self.sac.batch_size),
                f"--model-buffer-size ({self.model_buffer_size}) must hold a rollout batch and a SAC batch",
            ),
            (self.rollout_ramp >= 1, f"--rollout-ramp must be >= 1, got {self.rollout_ramp}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_estimator(self.imagination_gradient)


class ModelBasedParams(NamedTuple):
    """A model-based agent as arrays: SAC's params (networks, optimizers, bounds), the model's state,
    the model-transition buffer (mbpo; `None` for svg) and the `learn` calls so far (int32)."""

    sac: SACParams
    model: ModelState
    model_buffer: ReplayBuffer | None
    learn_calls: Array


def model_step_fn(ensemble: Ensemble, model: ModelState, num_elites: int, termination: Termination) -> Callable:
    """`step_fn(obs, action, key) -> (next_obs, reward, terminated)`: each row a reparameterized draw
    from a uniformly chosen elite member; `terminated` from the environment's termination function."""
    chosen = elites(model, num_elites)

    def step_fn(obs: Array, action: Array, key: PRNGKeyArray):
        k_member, k_noise = jax.random.split(key)
        member = chosen[jax.random.randint(k_member, obs.shape[:-1], 0, num_elites)]
        next_obs, reward = sample_step(ensemble, model.scaling, member, obs, action, k_noise)
        return next_obs, reward, termination(obs, action, next_obs)

    return step_fn


def soft_values(actor: Actor, critic: TwinCritic, obs: Array, bounds: ActionBounds, alpha: Array, key) -> Array:
    """`V(s) = min_i Q_i(s, a) - alpha log pi(a|s)`, `a ~ pi(.|s)` by `rsample` (differentiable in `s`
    and the actor), for `obs (..., obs_dim)` -> `(...)`."""
    flat = obs.reshape(-1, obs.shape[-1])
    action, log_prob = policy(actor, flat, bounds).rsample_and_log_prob(key)
    return (jnp.min(critic(flat, action), axis=0) - alpha * log_prob).reshape(obs.shape[:-1])


def svg_objective(step_fn: Callable, horizon: int, gamma: float, estimator: str):
    """svg's actor objective with `sac.actor_loss`'s signature: `svg_loss` of an `imagine`d rollout from
    the batch's real states, the terminal (and, for the score estimator, baseline) values from
    `soft_values`; also returns the mean `log pi` at the real states (for the temperature)."""

    def objective(actor: Actor, critic: TwinCritic, log_alpha: Array, obs: Array, bounds: ActionBounds, key):
        alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
        k_roll, k_value = jax.random.split(key)
        rollout = imagine(lambda s: policy(actor, s, bounds), step_fn, obs, k_roll, horizon, estimator)
        states = rollout.obs if estimator == "score" else rollout.obs[-1:]
        values = soft_values(actor, critic, states, bounds, alpha, k_value)
        return svg_loss(rollout, values, gamma, alpha, estimator), jnp.mean(rollout.log_prob[0])

    return objective


def add_where(buffer: ReplayBuffer, transitions: Transition, keep: Array) -> ReplayBuffer:
    """`add_batch(buffer, transitions)` if `keep` (a scalar bool), else `buffer` unchanged (its rows are
    written back as they were): a write without a branch, so it stays cheap under `vmap`."""
    rows = (buffer.position + jnp.arange(jax.tree.leaves(transitions)[0].shape[0], dtype=jnp.int32)) % buffer.capacity
    old = jax.tree.map(lambda d: d[rows], buffer.data)
    written = add_batch(buffer, jax.tree.map(lambda new, o: jnp.where(keep, new, o), transitions, old))
    return ReplayBuffer(
        written.data,
        jnp.where(keep, written.position, buffer.position),
        jnp.where(keep, written.size, buffer.size),
    )


def rollout_length(learn_calls: Array, horizon: int, ramp: int) -> Array:
    """mbpo's schedule: `1 + floor((horizon - 1) min(learn_calls / ramp, 1))` (int32)."""
    fraction = jnp.minimum(learn_calls.astype(jnp.float32) / ramp, 1.0)
    return 1 + jnp.floor((horizon - 1) * fraction).astype(jnp.int32)


def model_rollouts(
    model_buffer: ReplayBuffer,
    real: ReplayBuffer,
    explore: Callable[[Array, PRNGKeyArray], Array],
    step_fn: Callable,
    key: PRNGKeyArray,
    length: Array,
    horizon: int,
    batch: int,
) -> ReplayBuffer:
    """mbpo's data: `batch` rollouts of the stochastic policy `explore(obs, key)` through `step_fn`
    from uniform replay states; step `j < length` of every rollout is stored in `model_buffer`
    (`horizon` steps are computed, the later ones not stored). A rollout that terminates restarts
    from a fresh replay state, so nothing after a termination is stored."""

    def step(carry, inputs):
        buffer, obs = carry
        j, k = inputs
        k_act, k_model, k_restart = jax.random.split(k, 3)
        action = explore(obs, k_act)
        next_obs, reward, terminated = step_fn(obs, action, k_model)
        buffer = add_where(buffer, make_transition(obs, action, reward, next_obs, terminated), j < length)
        fresh = sample(real, k_restart, batch).obs
        return (buffer, jnp.where(terminated[:, None] > 0, fresh, next_obs)), None

    k_start, k_steps = jax.random.split(key)
    start = sample(real, k_start, batch).obs
    steps = (jnp.arange(horizon, dtype=jnp.int32), jax.random.split(k_steps, horizon))
    (model_buffer, _), _ = jax.lax.scan(step, (model_buffer, start), steps)
    return model_buffer


def mixed_draw(real_ratio: float) -> Callable:
    """`draw((real, model), key, batch_size)`: `round(real_ratio * batch_size)` uniform rows of the real
    buffer and the rest from the model buffer, concatenated (`sac.gradient_steps`'s `draw`)."""

    def draw(buffers: tuple[ReplayBuffer, ReplayBuffer], key: PRNGKeyArray, batch_size: int) -> Transition:
        real, model = buffers
        n_real = int(round(real_ratio * batch_size))
        k_real, k_model = jax.random.split(key)
        parts = []
        if n_real > 0:
            parts.append(sample(real, k_real, n_real))
        if batch_size - n_real > 0:
            parts.append(sample(model, k_model, batch_size - n_real))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    return draw


def model_based_agent(name: str, config: ModelBasedConfig, termination: Termination = never_terminates) -> Agent:
    """The `svg` or `mbpo` agent (see the module docstring) as an `Agent`; acting is SAC's (`sac_agent`).

    Metrics: SAC's `METRICS`, `MODEL_METRICS`, `gradient_steps`, and for mbpo `rollout_length` and
    `model_rows` (rows in the model buffer)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose svg or mbpo")
    base = sac_agent(config.sac)
    dyn = config.dynamics
    statics: dict[tuple[int, int], tuple[SACState, Ensemble]] = {}

    def static(obs_dim: int, action_dim: int) -> tuple[SACState, Ensemble]:
        """The networks' non-array halves for these sizes, read off an abstract init (nothing runs)."""
        if (obs_dim, action_dim) not in statics:
            sac_shapes = eqx.filter_eval_shape(lambda: init_sac(jax.random.key(0), obs_dim, action_dim, config.sac))
            ens_shapes = eqx.filter_eval_shape(lambda: init_model(jax.random.key(0), obs_dim, action_dim, dyn)[1])
            is_shape = lambda x: isinstance(x, jax.ShapeDtypeStruct)
            statics[obs_dim, action_dim] = (
                eqx.partition(sac_shapes, is_shape)[1],
                eqx.partition(ens_shapes, is_shape)[1],
            )
        return statics[obs_dim, action_dim]

    def init(key: PRNGKeyArray, obs_dim: int, bounds: ActionBounds) -> ModelBasedParams:
        k_sac, k_model = jax.random.split(key)
        sac_params = base.init(k_sac, obs_dim, bounds)
        action_dim = sac_params.bounds.low.shape[-1]
        model, _ = init_model(k_model, obs_dim, action_dim, dyn)
        model_buffer = None
        if name == "mbpo":
            zeros = jnp.zeros((obs_dim,), jnp.float32)
            example = make_transition(zeros, jnp.zeros((action_dim,), jnp.float32), 0.0, zeros, 0.0)
            model_buffer = init_buffer(example, config.model_buffer_size)
        return ModelBasedParams(sac_params, model, model_buffer, jnp.zeros((), jnp.int32))

    def learn(params: ModelBasedParams, buffer: ReplayBuffer, key: PRNGKeyArray):
        bounds = params.sac.bounds
        sac_static, ens_static = static(buffer.data.obs.shape[-1], bounds.low.shape[-1])
        k_model, k_roll, k_sac = jax.random.split(key, 3)
        model, model_metrics = train_model(params.model, ens_static, buffer, k_model, dyn)
        ensemble = eqx.combine(model.train.params, ens_static)
        step_fn = model_step_fn(ensemble, model, dyn.num_elites, termination)
        full = eqx.combine(params.sac.state, sac_static)
        extra: dict[str, Array] = {}
        model_buffer = params.model_buffer
        if name == "svg":
            objective = svg_objective(step_fn, config.horizon, config.sac.gamma, config.imagination_gradient)
            full, metrics = gradient_steps(full, buffer, k_sac, config.sac, bounds, actor_objective=objective)
        else:
            length = rollout_length(params.learn_calls, config.horizon, config.rollout_ramp)
            explore = lambda obs, k: policy(full.actor, obs, bounds).sample(k)
            model_buffer = model_rollouts(
                model_buffer, buffer, explore, step_fn, k_roll, length, config.horizon, config.rollout_batch
            )
            full, metrics = gradient_steps(
                full, (buffer, model_buffer), k_sac, config.sac, bounds, draw=mixed_draw(config.real_ratio)
            )
            extra = {"rollout_length": length, "model_rows": model_buffer.size}
        sac_params = SACParams(eqx.filter(full, eqx.is_array), bounds)
        metrics = {**metrics, **model_metrics, "gradient_steps": full.gradient_steps, **extra}
        return ModelBasedParams(sac_params, model, model_buffer, params.learn_calls + 1), metrics

    extra_names = ("rollout_length", "model_rows") if name == "mbpo" else ()
    return Agent(
        init=init,
        policy=lambda params: base.policy(params.sac),
        explore=base.explore,
        act=base.act,
        learn=learn,
        metric_names=(*METRICS, *MODEL_METRICS, "gradient_steps", *extra_names),
        learning_starts=config.sac.learning_starts,
        train_freq=config.sac.train_freq,
        buffer_size=config.sac.buffer_size,
    )


def ensemble_of(params: ModelBasedParams, obs_dim: int, action_dim: int, config: DynamicsConfig) -> Ensemble:
    """The trained ensemble module of a (single-seed) agent's params."""
    _, shell = eqx.filter_eval_shape(lambda: init_model(jax.random.key(0), obs_dim, action_dim, config))
    static = eqx.partition(shell, lambda x: isinstance(x, jax.ShapeDtypeStruct))[1]
    return eqx.combine(params.model.train.params, static)

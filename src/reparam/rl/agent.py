"""The agent as pure functions, the one thing both training loops take, and what both loops share
about it: the warm-up schedule and its uniform action, the learning schedule, its metrics in a row.

    agent = sac_agent(SACConfig())
    params = agent.init(key, obs_dim, bounds)                 # arrays only: a scan carry, a checkpoint
    action = agent.explore(agent.policy(params), obs, key)    # stochastic, while training
    action = agent.act(agent.policy(params), obs)             # deterministic, for evaluation
    params, metrics = agent.learn(params, buffer, key)        # one training phase

Another agent (a model-based one) is another `Agent` value: the loops never look inside `params`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .envs import ActionBounds, env_spec
from .replay import ReplayBuffer
from .sac import METRICS, Actor, SACConfig, SACState, gradient_steps, init_sac, policy

Params = Any
Policy = Any


class Agent(NamedTuple):
    """An agent for the compiled loop (`compiled.make_train`) and the host loop (`host.make_host_loop`).

    All functions are pure and compile under `jit` and `vmap`; observations are float32
    `(..., obs_dim)`, actions float32 `(..., action_dim)` inside the bounds given to `init`."""

    init: Callable[[PRNGKeyArray, int, ActionBounds], Params]
    """`(key, obs_dim, bounds) -> params`: a fresh agent, array leaves only (`obs_dim` static)."""
    policy: Callable[[Params], Policy]
    """`params -> policy`: the leaves acting reads (a selection, no computation, so it also works
    on params stacked over seeds); a run's `policy.eqx` holds it."""
    explore: Callable[[Policy, Array, PRNGKeyArray], Array]
    """`(policy, obs, key) -> action`: a stochastic action, while training."""
    act: Callable[[Policy, Array], Array]
    """`(policy, obs) -> action`: the deterministic action, for evaluation."""
    learn: Callable[[Params, ReplayBuffer, PRNGKeyArray], tuple[Params, dict[str, Array]]]
    """`(params, buffer, key) -> (params, metrics)`: one training phase on the replay buffer;
    metrics are scalars named `metric_names`."""
    metric_names: tuple[str, ...]
    learning_starts: int
    """Environment steps of uniform random actions (`uniform_action`) before `learn` is first called."""
    train_freq: int
    """Steps between `learn` calls (environment steps in the compiled loop, vector steps in the host loop)."""
    buffer_size: int
    """Replay rows the agent wants (a loop allocates no more than its run can fill)."""


# --- what both loops share --------------------------------------------------------------------------


def uniform_action(key: PRNGKeyArray, bounds: ActionBounds, batch_shape: tuple[int, ...] = ()) -> Array:
    """The warm-up action: uniform in `[low, high]`, float32 `batch_shape + (action_dim,)`."""
    return jax.random.uniform(key, tuple(batch_shape) + bounds.low.shape, jnp.float32, bounds.low, bounds.high)


def warming_up(agent: Agent, step, num_envs: int = 1):
    """Whether vector step `step` (1-based; `num_envs` transitions each) acts with `uniform_action`:
    fewer than `agent.learning_starts` transitions were stored before it. Python ints or arrays."""
    return (step - 1) * num_envs < agent.learning_starts


def learns(agent: Agent, step, num_envs: int = 1):
    """Whether `agent.learn` runs after vector step `step` stored its transitions: at least
    `agent.learning_starts` are stored, and `step` is a multiple of `agent.train_freq`."""
    return (step * num_envs >= agent.learning_starts) & (step % agent.train_freq == 0)


def training_metrics(agent: Agent, learn_calls, metrics: dict) -> dict[str, float | int]:
    """The latest `learn` call's metrics as row entries (Python numbers), or none at all before
    the first call: a metric row holds measured values only, never placeholders."""
    if int(learn_calls) == 0:
        return {}
    return {name: np.asarray(metrics[name]).item() for name in agent.metric_names}


# --- SAC ------------------------------------------------------------------------------------------------


class SACParams(NamedTuple):
    """SAC's agent as arrays: `SACState`'s array half (networks, temperature, optimizer states,
    gradient-step count) and the action bounds it acts in."""

    state: SACState
    bounds: ActionBounds


class SACPolicy(NamedTuple):
    """What SAC acts with: the actor's array half and the action bounds."""

    actor: Actor
    bounds: ActionBounds


def sac_agent(config: SACConfig) -> Agent:
    """SAC (`sac.py`) as an `Agent`: explore samples the tanh-squashed Gaussian, act is its mode
    `low + (tanh(mu) + 1)(high - low)/2`, learn is `sac.gradient_steps` (the metrics: `METRICS`
    averaged over the phase, and `gradient_steps`, the agent's total after it)."""
    structures: dict[tuple[int, int], SACState] = {}

    def static(obs_dim: int, action_dim: int) -> SACState:
        """The networks' non-array half for these sizes, read off an abstract init (nothing runs)."""
        if (obs_dim, action_dim) not in structures:
            shapes = eqx.filter_eval_shape(lambda: init_sac(jax.random.key(0), obs_dim, action_dim, config))
            structures[obs_dim, action_dim] = eqx.partition(shapes, lambda x: isinstance(x, jax.ShapeDtypeStruct))[1]
        return structures[obs_dim, action_dim]

    def init(key: PRNGKeyArray, obs_dim: int, bounds: ActionBounds) -> SACParams:
        bounds = ActionBounds(jnp.asarray(bounds.low, jnp.float32), jnp.asarray(bounds.high, jnp.float32))
        state = init_sac(key, obs_dim, bounds.low.shape[-1], config)
        return SACParams(eqx.filter(state, eqx.is_array), bounds)

    def actor(p: SACPolicy, obs: Array) -> Actor:
        return eqx.combine(p.actor, static(obs.shape[-1], p.bounds.low.shape[-1]).actor)

    def learn(params: SACParams, buffer: ReplayBuffer, key: PRNGKeyArray) -> tuple[SACParams, dict[str, Array]]:
        full = eqx.combine(params.state, static(buffer.data.obs.shape[-1], params.bounds.low.shape[-1]))
        full, metrics = gradient_steps(full, buffer, key, config, params.bounds)
        metrics = {**metrics, "gradient_steps": full.gradient_steps}
        return SACParams(eqx.filter(full, eqx.is_array), params.bounds), metrics

    return Agent(
        init=init,
        policy=lambda params: SACPolicy(params.state.actor, params.bounds),
        explore=lambda p, obs, key: policy(actor(p, obs), obs, p.bounds).sample(key),
        act=lambda p, obs: policy(actor(p, obs), obs, p.bounds).mode(),
        learn=learn,
        metric_names=(*METRICS, "gradient_steps"),
        learning_starts=config.learning_starts,
        train_freq=config.train_freq,
        buffer_size=config.buffer_size,
    )


def policy_template(agent: Agent, env_name: str, num_seeds: int):
    """The shapes of `num_seeds` stacked policies of `agent` on `env_name` (what a run's `policy.eqx`
    holds), to read them with `runs.load_serialised`; nothing is computed."""
    obs_dim, bounds = env_spec(env_name)
    one = lambda key: agent.policy(agent.init(key, obs_dim, bounds))
    return jax.eval_shape(jax.vmap(one), jax.random.split(jax.random.key(0), num_seeds))

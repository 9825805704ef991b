"""JAX-native environments for the compiled SAC loop: gymnax (`gymnax:<id>`) and, when the optional
`brax` extra is installed, Brax (`brax:<name>`), both behind gymnax's functional interface."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .sac import ActionBounds

JAX_ENVS = ("gymnax:Pendulum-v1", "gymnax:MountainCarContinuous-v0")
BRAX_EPISODE_LENGTH = 1000
"""Brax environments have no time limit of their own; episodes are truncated here (bootstrapped)."""


class JaxEnv(NamedTuple):
    """A functional environment with its parameters and the facts the learner needs.

    `env.reset(key, params) -> (obs, state)` and `env.step(key, state, action, params) -> (obs,
    state, reward, terminated, truncated, info)` with same-step autoreset and the true last
    observation of a finished episode in `info["final_observation"]` (gymnax's interface)."""

    env: Any
    params: Any
    obs_dim: int
    bounds: ActionBounds
    max_episode_steps: int


def is_jax_env(name: str) -> bool:
    """Whether `name` runs in the compiled loop (a JAX-native environment)."""
    return name in JAX_ENVS or name.startswith("brax:")


def make_jax_env(name: str) -> JaxEnv:
    """`gymnax:Pendulum-v1`, `gymnax:MountainCarContinuous-v0` or `brax:<name>` (e.g. `brax:halfcheetah`,
    needs `pip install reparam[brax]`); anything else is a one-line ValueError."""
    if name.startswith("brax:"):
        return _make_brax_env(name.split(":", 1)[1])
    if name not in JAX_ENVS:
        raise ValueError(f"unknown JAX-native environment {name!r}; supported: {', '.join(JAX_ENVS)}, brax:<name>")
    import gymnax

    env, params = gymnax.make(name.split(":", 1)[1])
    space = env.action_space(params)
    shape = tuple(space.shape) or (1,)
    bounds = ActionBounds(jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape),
                          jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape))
    obs_dim = int(env.observation_space(params).shape[0])
    return JaxEnv(env, params, obs_dim, bounds, int(params.max_steps_in_episode))


class BraxState(NamedTuple):
    brax: Any  # brax.envs.State
    time: jax.Array  # int32 steps into the episode


class BraxAsGymnax:
    """A Brax environment behind gymnax's functional interface: `done` from Brax is a termination
    (no bootstrap); reaching `episode_length` steps is a truncation (bootstrapped); a finished
    episode is replaced by a fresh reset in the same step."""

    def __init__(self, env: Any, episode_length: int):
        self.brax_env, self.episode_length = env, episode_length

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, BraxState]:
        state = self.brax_env.reset(key)
        return state.obs, BraxState(state, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: BraxState, action: jax.Array, params: Any = None):
        after = self.brax_env.step(state.brax, action)
        time = state.time + 1
        terminated = jnp.asarray(after.done) > 0
        truncated = jnp.logical_and(time >= self.episode_length, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        _, fresh = self.reset(key)
        pick = lambda new, old: jnp.where(done, new, old)  # done is a scalar: broadcasts to every leaf
        next_state = jax.tree.map(pick, fresh, BraxState(after, time))
        info = {"final_observation": after.obs}
        reward = jnp.asarray(after.reward, jnp.float32)  # some Brax envs give a Python float
        return next_state.brax.obs, next_state, reward, terminated, truncated, info


def _make_brax_env(env_name: str) -> JaxEnv:
    try:
        from brax import envs
    except ImportError:
        raise ValueError(f"brax:{env_name} needs the optional Brax extra: pip install 'reparam[brax]'") from None
    if env_name not in envs._envs:
        raise ValueError(f"unknown Brax environment {env_name!r}; supported: {', '.join(sorted(envs._envs))}")
    env = envs.get_environment(env_name)
    ones = jnp.ones(env.action_size, jnp.float32)
    return JaxEnv(BraxAsGymnax(env, BRAX_EPISODE_LENGTH), None, int(env.observation_size),
                  ActionBounds(-ones, ones), BRAX_EPISODE_LENGTH)

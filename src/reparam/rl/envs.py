"""JAX-native environments for the compiled SAC loop (gymnax), named `gymnax:<id>`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from .sac import ActionBounds

JAX_ENVS = ("gymnax:Pendulum-v1", "gymnax:MountainCarContinuous-v0")


class JaxEnv(NamedTuple):
    """A gymnax environment with its parameters and the facts the learner needs."""

    env: Any
    params: Any
    obs_dim: int
    bounds: ActionBounds
    max_episode_steps: int


def make_jax_env(name: str) -> JaxEnv:
    """`gymnax:Pendulum-v1` or `gymnax:MountainCarContinuous-v0`; anything else is a ValueError."""
    if name not in JAX_ENVS:
        raise ValueError(f"unknown JAX-native environment {name!r}; supported: {', '.join(JAX_ENVS)}")
    import gymnax

    env, params = gymnax.make(name.split(":", 1)[1])
    space = env.action_space(params)
    shape = tuple(space.shape) or (1,)
    bounds = ActionBounds(jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape),
                          jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape))
    obs_dim = int(env.observation_space(params).shape[0])
    return JaxEnv(env, params, obs_dim, bounds, int(params.max_steps_in_episode))

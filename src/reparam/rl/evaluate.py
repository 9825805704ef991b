"""Evaluation with the deterministic action `act(obs) -> action`: one function per environment kind,
and the scores of saved policies (one per seed) for `reparam evaluate`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .agent import Agent
from .envs import JaxEnv, is_jax_env, make_gym_env, make_jax_env


def evaluate_jax(act: Callable[[Array], Array], jenv: JaxEnv, key: PRNGKeyArray, episodes: int) -> Array:
    """Mean undiscounted return of `episodes` full episodes, run side by side for the environment's
    longest episode (`max_episode_steps`; rewards after an episode's end are ignored). `act` maps
    observations `(episodes, obs_dim)` to actions. Pure: compile it (the compiled loop runs it
    inside its chunk)."""
    env, params = jenv.env, jenv.params
    k_reset, k_steps = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), params)

    def step(carry, k):
        obs, state, total, alive = carry
        obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, episodes), state, act(obs), params
        )
        total = total + alive * reward
        alive = alive * (1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32))
        return (obs, state, total, alive), None

    init = (obs, state, jnp.zeros(episodes, jnp.float32), jnp.ones(episodes, jnp.float32))
    (_, _, total, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, jenv.max_episode_steps))
    return jnp.mean(total)


def evaluate_gym(act: Callable[[np.ndarray], Array], env: gym.vector.VectorEnv) -> np.ndarray:
    """One full episode per sub-env of `env` (same-step autoreset; the env's next episodes) with
    `act(obs) -> action`, `(num_envs, obs_dim) -> (num_envs, action_dim)`; returns the undiscounted
    returns `(num_envs,)`. Sub-envs that finish early keep stepping (rewards ignored) until the
    longest episode ends."""
    obs, _ = env.reset()
    returns = np.zeros(env.num_envs)
    done = np.zeros(env.num_envs, bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(act(np.asarray(obs, np.float32))))
        returns += np.where(done, 0.0, reward)
        done |= np.logical_or(terminated, truncated)
    return returns


def evaluate_policies(agent: Agent, env_name: str, policies, episodes: int, seed: int) -> list[float]:
    """Mean return of `episodes` deterministic episodes for each of a stack of policies (leading
    axis: seeds): JAX-native environments all seeds at once (key `seed`, one per policy), Gymnasium
    ones seed after seed on `episodes` environments seeded `seed + i`."""
    num = jax.tree.leaves(policies)[0].shape[0]
    if is_jax_env(env_name):
        jenv = make_jax_env(env_name)
        run = lambda p, k: evaluate_jax(functools.partial(agent.act, p), jenv, k, episodes)
        return [float(r) for r in jax.jit(jax.vmap(run))(policies, jax.random.split(jax.random.key(seed), num))]
    env, _ = make_gym_env(env_name, episodes, seed)
    act = jax.jit(agent.act)
    try:
        one = lambda s: functools.partial(act, jax.tree.map(lambda x: x[s], policies))
        return [float(np.mean(evaluate_gym(one(s), env))) for s in range(num)]
    finally:
        env.close()

"""Evaluation with the deterministic action: the JAX-native and the Gymnasium evaluation against
hand-run episodes, and the scores of a stack of saved policies."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.rl.envs import make_gym_env, make_jax_env
from reparam.rl.evaluate import evaluate_gym, evaluate_jax

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def test_evaluate_gym_returns_full_episode_returns():
    """Two evaluation episodes of Pendulum with the zero action equal hand-run episodes."""
    env, _ = make_gym_env("Pendulum-v1", 2, seed=5)
    returns = evaluate_gym(lambda obs: np.zeros((len(obs), 1), np.float32), env)
    for i in range(2):
        single = gym.make("Pendulum-v1")
        single.reset(seed=5 + i)
        single.reset()  # evaluate starts from the env's next episode
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = single.step(np.zeros(1, np.float32))
            total, done = total + reward, terminated or truncated
        np.testing.assert_allclose(returns[i], total, rtol=1e-12)


def test_evaluate_jax_is_the_mean_of_hand_run_episodes():
    """Three gymnax Pendulum episodes with a state-dependent action: the compiled evaluation equals
    the mean of the same episodes stepped one at a time (reset keys `split(split(key)[0], 3)`)."""
    jenv = make_jax_env("gymnax:Pendulum-v1")
    act = lambda obs: jnp.clip(-obs[..., 2:3], -2.0, 2.0)  # push against the angular velocity
    key = jax.random.key(4)
    got = jax.jit(lambda k: evaluate_jax(act, jenv, k, 3))(key)
    reset = jax.jit(jenv.env.reset)
    step = jax.jit(lambda k, s, a: jenv.env.step(k, s, a, jenv.params))
    totals = []
    for k in jax.random.split(jax.random.split(key)[0], 3):
        obs, state = reset(k, jenv.params)
        total = 0.0
        for _ in range(jenv.max_episode_steps):
            obs, state, reward, terminated, truncated, _ = step(jax.random.key(0), state, act(obs))
            total += float(reward)
            if bool(terminated) or bool(truncated):
                break
        totals.append(total)
    np.testing.assert_allclose(got, np.mean(totals), rtol=1e-5)

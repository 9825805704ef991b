"""SAC as an `Agent`: both loops' learning calls report the same quantity (the mean over the phase's
gradient steps), the deterministic and stochastic actions, the warm-up and learning schedules
both loops share, metric rows without placeholders (the saved-policy template is used by tests/test_command_sac.py)."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from reparam.rl.agent import learns, sac_agent, training_metrics, uniform_action, warming_up
from reparam.rl.compiled import learn_or_skip
from reparam.rl.envs import ActionBounds
from reparam.rl.host import make_kernels
from reparam.rl.replay import Transition, add_batch, init_buffer, sample
from reparam.rl.sac import METRICS, Actor, SACConfig, init_sac, update


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam mixes a Python float with its int32 step count, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


OBS, ACT = 3, 2
CONFIG = SACConfig(hidden_sizes=(8, 8), batch_size=4, buffer_size=16, gradient_steps=3)
BOUNDS = ActionBounds(jnp.array([-2.0, 0.0], jnp.float32), jnp.array([2.0, 1.0], jnp.float32))


def filled_buffer(rows=10, seed=0):
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.normal(size=(rows, *shape)).astype(np.float32)
    data = Transition(
        f32(OBS),
        rng.uniform(0, 1, (rows, ACT)).astype(np.float32),
        f32(),
        f32(OBS),
        (rng.uniform(size=rows) < 0.2).astype(np.float32),
    )
    return add_batch(init_buffer(jax.tree.map(lambda x: x[0], data), 16), data)


def test_both_loops_learn_the_mean_of_the_phase():
    """With gradient_steps=3 the compiled loop's learn call (a `lax.cond` branch) and the host loop's
    donated learn kernel return identical metrics and params for the same params, buffer and key,
    and the metrics are the mean of three manual sample-then-update steps (whose state they reach)."""
    agent = sac_agent(CONFIG)
    params = jax.jit(agent.init, static_argnums=1)(jax.random.key(0), OBS, BOUNDS)
    buffer, key = filled_buffer(), jax.random.key(7)
    learn_key = jax.random.split(key)[1]  # the host kernel splits its key and learns with the second half
    last = {name: jnp.zeros((), jnp.float32) for name in METRICS} | {"gradient_steps": jnp.zeros((), jnp.int32)}

    compiled_learn = jax.jit(lambda p, b, k: learn_or_skip(agent, jnp.bool_(True), p, b, k, last))
    compiled_params, compiled = compiled_learn(params, buffer, learn_key)
    own = jax.tree.map(lambda x: jnp.array(x, copy=True), params)  # the kernel donates its params and key
    host_params, host, _ = make_kernels(agent, OBS, BOUNDS).learn(own, buffer, key)
    assert set(host) == set(compiled) == set(METRICS) | {"gradient_steps"}
    for name in host:
        np.testing.assert_array_equal(host[name], compiled[name], err_msg=name)
    for a, b in zip(jax.tree.leaves(host_params), jax.tree.leaves(compiled_params), strict=True):
        np.testing.assert_array_equal(a, b)

    # agent.init is init_sac (under jit): the same state, rebuilt from its arrays and its structure.
    shapes = eqx.filter_eval_shape(init_sac, jax.random.key(0), OBS, ACT, CONFIG)
    state = eqx.combine(params.state, eqx.partition(shapes, lambda x: isinstance(x, jax.ShapeDtypeStruct))[1])
    # `update` reads no gradient_steps; with it at 1 this is tests/test_sac.py's config (one compile).
    one_step = dataclasses.replace(CONFIG, gradient_steps=1)
    step = eqx.filter_jit(update)
    manual = []
    for k in jax.random.split(learn_key, CONFIG.gradient_steps):
        k_batch, k_update = jax.random.split(k)
        state, m = step(state, sample(buffer, k_batch, CONFIG.batch_size), k_update, one_step, BOUNDS)
        manual.append(m)
    assert int(compiled["gradient_steps"]) == int(state.gradient_steps) == 3
    for name in METRICS:
        np.testing.assert_allclose(
            compiled[name], np.mean([float(m[name]) for m in manual]), rtol=2e-5, atol=1e-6, err_msg=name
        )
    for a, b in zip(
        jax.tree.leaves(compiled_params.state), jax.tree.leaves(eqx.filter(state, eqx.is_array)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_act_is_the_rescaled_tanh_of_the_mean_and_explore_stays_in_bounds():
    agent = sac_agent(CONFIG)
    params = jax.jit(agent.init, static_argnums=1)(jax.random.key(1), OBS, BOUNDS)
    policy = agent.policy(params)
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    actor = eqx.combine(
        policy.actor, eqx.filter(Actor(OBS, ACT, CONFIG, key=jax.random.key(0)), eqx.is_array, inverse=True)
    )
    mean, _ = actor(obs)
    low, high = np.asarray(BOUNDS.low), np.asarray(BOUNDS.high)
    expected = low + (np.tanh(np.asarray(mean)) + 1) * (high - low) / 2
    np.testing.assert_allclose(jax.jit(agent.act)(policy, obs), expected, rtol=1e-5, atol=1e-6)
    actions = np.asarray(jax.jit(agent.explore)(policy, np.repeat(obs, 200, axis=0), jax.random.key(2)))
    assert actions.shape == (1000, ACT) and np.all(actions >= low) and np.all(actions <= high)
    assert actions.std(0).min() > 0.01  # stochastic


def test_warm_up_action_is_uniform_in_the_bounds():
    actions = np.asarray(uniform_action(jax.random.key(3), BOUNDS, (2000,)))
    assert actions.shape == (2000, ACT) and actions.dtype == np.float32
    for d in range(ACT):
        low, width = float(BOUNDS.low[d]), float(BOUNDS.high[d] - BOUNDS.low[d])
        assert stats.kstest(actions[:, d], stats.uniform(low, width).cdf).pvalue > 1e-3


@pytest.mark.parametrize("num_envs", [1, 3])
def test_schedules_count_transitions(num_envs):
    """Warm-up while fewer than learning_starts transitions were stored before the step; learning once
    learning_starts are stored, every train_freq vector steps. Python ints and arrays alike."""
    agent = sac_agent(SACConfig(learning_starts=10, train_freq=2))
    for t in range(1, 12):
        warm, learn = (t - 1) * num_envs < 10, t * num_envs >= 10 and t % 2 == 0
        assert warming_up(agent, t, num_envs) == warm and bool(learns(agent, t, num_envs)) == learn, t
        assert bool(warming_up(agent, jnp.int32(t), num_envs)) == warm
        assert bool(learns(agent, jnp.int32(t), num_envs)) == learn


def test_training_metrics_are_omitted_before_the_first_learn_call():
    agent = sac_agent(CONFIG)
    metrics = {name: np.float32(0.5) for name in METRICS} | {"gradient_steps": np.int32(6)}
    assert training_metrics(agent, 0, metrics) == {}
    row = training_metrics(agent, np.int32(2), metrics)
    assert row["critic_loss"] == 0.5 and row["gradient_steps"] == 6 and isinstance(row["gradient_steps"], int)

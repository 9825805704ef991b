"""SAC building blocks: the losses against hand-computed values, bootstrap on truncation but not on
termination, the Polyak update, the temperature steering the entropy to its target, one update."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.rl.replay import Transition
from reparam.rl.sac import (
    ActionBounds,
    Actor,
    SACConfig,
    TwinCritic,
    actor_loss,
    alpha_loss,
    critic_loss,
    critic_target,
    init_sac,
    polyak,
    score_actor_loss,
    update,
)


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam mixes a Python float with its int32 step count, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


CONFIG = SACConfig(hidden_sizes=(8, 8), batch_size=4, buffer_size=16)
OBS, ACT = 3, 2
BOUNDS = ActionBounds(jnp.array([-2.0, 0.0], jnp.float32), jnp.array([2.0, 1.0], jnp.float32))


def constant_output(module, bias, path):
    """Zero the last layer's weights and set its bias: the network then outputs `bias` everywhere."""
    last = path(module)
    new = (jnp.zeros_like(last.weight), jnp.asarray(bias, last.bias.dtype))
    return eqx.tree_at(lambda m: (path(m).weight, path(m).bias), module, new)


def constant_actor(mean, raw_log_std):
    actor = Actor(OBS, ACT, CONFIG, key=jax.random.key(0))
    return constant_output(actor, np.concatenate([mean, raw_log_std]), lambda a: a.net.layers[-1])


def constant_critic(values):
    critic = TwinCritic(OBS, ACT, CONFIG, key=jax.random.key(1))
    return constant_output(critic, np.asarray(values, np.float32).reshape(2, 1), lambda c: c.nets.layers[-1])


def batch_of(n=4, terminated=None, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(
        obs=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(n, ACT)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        terminated=jnp.asarray(np.zeros(n) if terminated is None else terminated, jnp.float32),
    )


def hand_log_prob(mean, raw, eps):
    """log pi(a|s) of `a = low + (tanh(u) + 1)(high - low)/2`, `u = mean + std eps`, in float64."""
    log_std = CONFIG.log_std_min + 0.5 * (CONFIG.log_std_max - CONFIG.log_std_min) * (np.tanh(raw) + 1)
    u = mean + np.exp(log_std) * eps
    half_width = (np.asarray(BOUNDS.high) - np.asarray(BOUNDS.low)) / 2
    per_dim = -0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log1p(-(np.tanh(u) ** 2)) - np.log(half_width)
    return per_dim.sum(-1)


MEAN, RAW = np.array([0.3, -0.2]), np.array([-0.5, 0.4])


def test_critic_target_bootstraps_on_truncation_but_not_on_termination():
    actor, target = constant_actor(MEAN, RAW), constant_critic([1.5, 0.7])
    batch = batch_of(terminated=[1.0, 0.0, 1.0, 0.0])
    key, log_alpha = jax.random.key(5), jnp.log(jnp.float32(0.2))
    y = np.asarray(critic_target(actor, target, log_alpha, batch, BOUNDS, key, 0.99))
    eps = np.asarray(jax.random.normal(key, (4, ACT), jnp.float32), np.float64)
    log_prob = hand_log_prob(MEAN, RAW, eps)
    expected = np.asarray(batch.reward) + 0.99 * (1 - np.asarray(batch.terminated)) * (0.7 - 0.2 * log_prob)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[[0, 2]], np.asarray(batch.reward)[[0, 2]])  # terminated: y = r exactly


def test_critic_loss_by_hand():
    batch, y = batch_of(), jnp.array([0.5, -1.0, 2.0, 0.0], jnp.float32)
    loss = critic_loss(constant_critic([1.5, 0.7]), batch, y)
    expected = sum(0.5 * np.mean((q - np.asarray(y)) ** 2) for q in (1.5, 0.7))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_actor_loss_by_hand():
    key, log_alpha = jax.random.key(9), jnp.log(jnp.float32(0.3))
    batch = batch_of()
    actor, critic = constant_actor(MEAN, RAW), constant_critic([1.5, 0.7])
    loss, mean_log_prob = actor_loss(actor, critic, log_alpha, batch.obs, BOUNDS, key)
    eps = np.asarray(jax.random.normal(key, (4, ACT), jnp.float32), np.float64)
    log_prob = hand_log_prob(MEAN, RAW, eps)
    np.testing.assert_allclose(loss, np.mean(0.3 * log_prob - 0.7), rtol=1e-5)
    np.testing.assert_allclose(mean_log_prob, log_prob.mean(), rtol=1e-5)


def test_alpha_gradient_pushes_entropy_toward_the_target():
    log_alpha, target = jnp.float32(0.0), -2.0
    grad_low_entropy = jax.grad(alpha_loss)(log_alpha, jnp.float32(3.0), target)  # entropy -3 < -2
    grad_high_entropy = jax.grad(alpha_loss)(log_alpha, jnp.float32(0.5), target)  # entropy -0.5 > -2
    assert grad_low_entropy < 0 < grad_high_entropy  # descent raises alpha when entropy is too low


class PreferredActionCritic(eqx.Module):
    """Q(s, a) = -|a - a*|^2 for both critics: a fixed critic for the temperature test."""

    def __call__(self, obs, action):
        q = -jnp.sum(jnp.square(action - 0.5), -1)
        return jnp.stack([q, q])


@pytest.mark.parametrize("target_entropy", [-2.0, -1.0])
def test_learned_temperature_drives_the_policy_entropy_to_its_target(target_entropy):
    """Actor and temperature trained together against a fixed critic: the policy entropy settles at
    the target (the defining property of SAC's automatic temperature)."""
    import optax

    bounds = ActionBounds(-jnp.ones(ACT, jnp.float32), jnp.ones(ACT, jnp.float32))
    actor = Actor(OBS, ACT, SACConfig(hidden_sizes=(16, 16)), key=jax.random.key(2))
    opt = optax.adam(3e-3)
    params, static = eqx.partition((actor, jnp.float32(0.0)), eqx.is_array)  # scan carries arrays only
    opt_state = opt.init(params)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(256, OBS)), jnp.float32)

    def step(carry, key):
        params, opt_state = carry
        actor, log_alpha = eqx.combine(params, static)
        (loss, mean_log_prob), g_actor = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
            actor, PreferredActionCritic(), log_alpha, obs, bounds, key
        )
        g_alpha = jax.grad(alpha_loss)(log_alpha, mean_log_prob, target_entropy)
        updates, opt_state = opt.update((g_actor, g_alpha), opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), -mean_log_prob

    keys = jax.random.split(jax.random.key(3), 8000)
    (_, _), entropies = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))((params, opt_state), keys)
    start, final = float(jnp.mean(entropies[:100])), float(jnp.mean(entropies[-1000:]))
    assert start > 0.5  # far from the target at first
    assert abs(final - target_entropy) < 0.2, (final, target_entropy)


def test_polyak():
    a, b = {"w": jnp.array([0.0, 2.0])}, {"w": jnp.array([1.0, 4.0])}
    np.testing.assert_allclose(polyak(a, b, 0.25)["w"], [0.25, 2.5])
    np.testing.assert_allclose(polyak(a, b, 1.0)["w"], b["w"])


def test_update_runs_jitted_and_moves_the_target_by_tau():
    state = init_sac(jax.random.key(0), OBS, ACT, CONFIG)
    step = eqx.filter_jit(update)
    new, metrics = step(state, batch_of(), jax.random.key(1), CONFIG, BOUNDS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(new.gradient_steps) == 1
    expected = polyak(state.target_critic, new.critic, CONFIG.tau)
    arrays = lambda m: jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array))
    for got, want in zip(arrays(new.target_critic), arrays(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(arrays(state.actor), arrays(new.actor), strict=True))
    assert not np.allclose(arrays(new.target_critic)[0], arrays(state.target_critic)[0])
    assert float(new.log_alpha) != float(state.log_alpha)


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match=r"batch_size \(512\) exceeds buffer_size \(100\)"):
        SACConfig(batch_size=512, buffer_size=100)
    with pytest.raises(ValueError, match="gamma must be in"):
        SACConfig(gamma=1.5)


def test_score_actor_gradient_is_unbiased_and_noisier_than_the_pathwise_one():
    """At fixed states and critic, the likelihood-ratio actor gradient (with its baseline) averages to
    the pathwise one, coordinate by coordinate within 5 standard errors, with a larger total variance;
    its value is the same objective (`mean(alpha log pi - min Q)`) as `actor_loss`'s."""
    state = init_sac(jax.random.key(0), OBS, ACT, CONFIG)
    obs = batch_of(n=16).obs
    arrays, static = eqx.partition(state.actor, eqx.is_array)
    repeats = 400

    def estimates(loss):
        grad = jax.grad(lambda a, k: loss(eqx.combine(a, static), state.critic, state.log_alpha, obs, BOUNDS, k)[0])
        return jax.jit(jax.vmap(lambda k: grad(arrays, k)))(jax.random.split(jax.random.key(2), repeats))

    stacked = lambda tree: np.concatenate(
        [np.asarray(x, np.float64).reshape(repeats, -1) for x in jax.tree.leaves(tree)], 1
    )
    path, score = stacked(estimates(actor_loss)), stacked(estimates(score_actor_loss))
    standard_error = np.sqrt(path.var(0, ddof=1) / repeats + score.var(0, ddof=1) / repeats)
    moving = standard_error > 0
    assert np.all(np.abs(score.mean(0) - path.mean(0))[moving] < 5 * standard_error[moving])
    assert score.var(0).sum() > 3 * path.var(0).sum()
    key = jax.random.key(3)
    value = score_actor_loss(state.actor, state.critic, state.log_alpha, obs, BOUNDS, key)[0]
    # the same draw: the score route's action is rsample's with gradients stopped
    np.testing.assert_allclose(
        value,
        actor_loss(state.actor, state.critic, state.log_alpha, obs, BOUNDS, jax.random.split(key)[0])[0],
        rtol=1e-5,
    )


def test_update_with_the_score_actor_gradient_runs_jitted():
    config = SACConfig(hidden_sizes=(8, 8), batch_size=4, buffer_size=16, actor_gradient="score")
    state = init_sac(jax.random.key(0), OBS, ACT, config)
    new, metrics = eqx.filter_jit(update)(state, batch_of(), jax.random.key(1), config, BOUNDS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    leaves = lambda m: jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array))
    assert any(not np.allclose(a, b) for a, b in zip(leaves(state.actor), leaves(new.actor), strict=True))
    with pytest.raises(ValueError, match="actor_gradient must be pathwise or score, got 'reinforce'"):
        SACConfig(actor_gradient="reinforce")

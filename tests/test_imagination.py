"""Imagined rollouts and the SVG actor loss: the pathwise gradient of a rollout equals finite
differences (float64, fixed noise); on a linear-quadratic problem both estimators are unbiased
against the closed-form gradient, and the score function's variance (measured with the estimators
lab's `summarize`) is higher; terminations stop rewards and the terminal value; the score route
scores a tanh-squashed action at its pre-squash draw."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.distributions import Independent, Normal, TanhNormal
from reparam.estimators.variance import summarize
from reparam.rl.imagination import imagine, returns_to_go, score_sample_and_log_prob, svg_loss

A, B, W, Q, R, P, V0 = 0.9, 0.5, 0.3, 1.0, 0.1, 2.0, 1.0
"""The scalar linear-quadratic system: `s' = A s + B a + W eps`, `r = -(Q s^2 + R a^2)`, terminal
value `-P s^2`, start states `s_0 ~ N(0, V0)`; the policy `a ~ N(k s, sigma^2)`."""


def linear_policy(params):
    return lambda s: Independent(Normal(params["k"] * s, jnp.broadcast_to(params["sigma"], s.shape)), 1)


def linear_step(s, a, key):
    noise = jax.random.normal(key, s.shape, s.dtype)
    reward = -(Q * s[:, 0] ** 2 + R * a[:, 0] ** 2)
    return A * s + B * a + W * noise, reward, jnp.zeros(s.shape[0], s.dtype)


def lq_loss(params, key, horizon, estimator, batch, gamma=1.0, alpha=0.0):
    """The svg loss `-J` of one batch of start states drawn from `key`."""
    k_start, k_roll = jax.random.split(key)
    s0 = jnp.sqrt(V0) * jax.random.normal(k_start, (batch, 1), jnp.float64)
    rollout = imagine(linear_policy(params), linear_step, s0, k_roll, horizon, estimator)
    values = -P * rollout.obs[..., 0] ** 2
    return svg_loss(rollout, values, gamma, jnp.asarray(alpha, jnp.float64), estimator)


def closed_form_objective(params, horizon):
    """`J(k, sigma) = sum_t E r_t - P E s_H^2` with `m_{t+1} = (A + B k)^2 m_t + B^2 sigma^2 + W^2`."""
    k, sigma = params["k"], params["sigma"]
    m, total = V0, 0.0
    for _ in range(horizon):
        total = total - (Q + R * k**2) * m - R * sigma**2
        m = (A + B * k) ** 2 * m + B**2 * sigma**2 + W**2
    return total - P * m


PARAMS = {"k": jnp.asarray(-0.4, jnp.float64), "sigma": jnp.asarray(0.6, jnp.float64)}


def test_pathwise_rollout_gradient_equals_finite_differences():
    """Fixed noise makes the imagined soft return a smooth function of the policy: its gradient
    (through dynamics, reward, entropy and terminal value) matches central differences."""
    key = jax.random.key(3)
    loss = jax.jit(lambda p: lq_loss(p, key, horizon=4, estimator="pathwise", batch=8, gamma=0.9, alpha=0.2))
    grads = jax.grad(loss)(PARAMS)
    h = 1e-6
    for name in PARAMS:
        up = {**PARAMS, name: PARAMS[name] + h}
        down = {**PARAMS, name: PARAMS[name] - h}
        numeric = (loss(up) - loss(down)) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("horizon", [1, 3])
def test_both_estimators_are_unbiased_on_linear_quadratic_and_score_has_more_variance(horizon):
    exact = jax.grad(lambda p: -closed_form_objective(p, horizon))(PARAMS)
    repeats, batch = 400, 64

    def estimates(estimator):
        grad = jax.grad(lambda p, k: lq_loss(p, k, horizon, estimator, batch))
        return jax.jit(jax.vmap(lambda k: grad(PARAMS, k)))(jax.random.split(jax.random.key(horizon), repeats))

    stats = {name: summarize(estimates(name), exact) for name in ("pathwise", "score")}
    for name, s in stats.items():
        for p in PARAMS:
            standard_error = float(jnp.sqrt(s.variance[p] / repeats))
            assert abs(float(s.bias[p])) < 5 * standard_error, (name, p, s.bias[p], standard_error)
    for p in PARAMS:
        assert float(stats["score"].variance[p]) > 2 * float(stats["pathwise"].variance[p]), p


def test_termination_stops_rewards_and_the_terminal_value():
    """`s' = s + 1`, reward 1, terminated once `s' >= 2`: from `s = 0`, steps 0 and 1 count (the
    terminating step keeps its reward), nothing after, and the terminal value is dropped."""

    def step(s, a, key):
        nxt = s + 1.0
        return nxt, jnp.ones(s.shape[0], s.dtype), (nxt[:, 0] >= 2.0).astype(s.dtype)

    policy = lambda s: Independent(Normal(jnp.zeros_like(s), jnp.ones_like(s)), 1)
    rollout = imagine(policy, step, jnp.zeros((2, 1), jnp.float64), jax.random.key(0), 4)
    np.testing.assert_array_equal(rollout.alive[:, 0], [1, 1, 0, 0, 0])
    returns = returns_to_go(rollout, jnp.full((2,), 100.0, jnp.float64), 1.0, jnp.asarray(0.0, jnp.float64))
    np.testing.assert_allclose(returns[:, 0], [2.0, 1.0, 0.0, 0.0, 0.0])


def test_score_route_scores_the_pre_squash_draw():
    """For a tanh-squashed policy the score route returns the same action as `rsample` (gradient
    stopped) and `log pi` equal to the fused log-density, with the gradient of the Normal's score."""
    loc, scale = jnp.asarray([[0.3, -9.0]], jnp.float64), jnp.asarray([[0.5, 0.2]], jnp.float64)
    dist = lambda loc: Independent(TanhNormal(loc, scale, -2.0, 2.0), 1)
    key = jax.random.key(1)
    a, log_prob = score_sample_and_log_prob(dist(loc), key)
    a_ref, log_prob_ref = dist(loc).rsample_and_log_prob(key)
    np.testing.assert_allclose(a, a_ref)
    np.testing.assert_allclose(log_prob, log_prob_ref, rtol=1e-10)
    u = Normal(loc, scale).sample(key)  # the pre-squash draw (the same noise)
    np.testing.assert_allclose(jnp.arctanh(a_ref[0, 0] / 2.0), u[0, 0], rtol=1e-10)
    grad = jax.grad(lambda m: jnp.sum(score_sample_and_log_prob(dist(m), key)[1]))(loc)
    # d/d loc log N(u; loc, scale) = (u - loc) / scale^2, also where tanh(u) has saturated (u near -9)
    np.testing.assert_allclose(grad, (u - loc) / scale**2, rtol=1e-8)


def test_bad_horizon_and_estimator_are_one_line_errors():
    policy = linear_policy(PARAMS)
    s0 = jnp.zeros((1, 1), jnp.float64)
    with pytest.raises(ValueError, match="--horizon must be >= 1, got 0"):
        imagine(policy, linear_step, s0, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="unknown actor-gradient estimator 'reinforce'"):
        imagine(policy, linear_step, s0, jax.random.key(0), 1, "reinforce")

"""Imagined rollouts through a model and the stochastic-value-gradient actor loss (Heess et al. 2015;
SAC-SVG(H), Amos et al. 2021), by the pathwise (reparameterized) or the score-function estimator.

Generic over the policy and the model, both given as functions:

    policy_fn(obs (B, obs_dim)) -> a distribution over action vectors, batch_shape (B,)
    step_fn(obs, action, key) -> (next_obs (B, obs_dim), reward (B,), terminated (B,))

    rollout = imagine(policy_fn, step_fn, obs, key, horizon, "pathwise")
    loss = svg_loss(rollout, values, gamma, alpha, "pathwise")    # minimise: -J

The objective is the soft H-step return `J = E[sum_t gamma^t m_t (r_t - alpha log pi(a_t|s_t)) +
gamma^H m_H V(s_H)]`, `m_t` = 1 until a termination (a terminated step keeps its reward, nothing after
it counts). Pathwise: every action an `rsample`, every model step a reparameterized draw, so
`grad J` flows through dynamics, reward, policy and the terminal value. Score function: actions drawn
with gradients stopped (states then carry no gradient), `grad J = E[sum_t m_t grad log pi(a_t|s_t)
(R_t - b_t)] - alpha E[sum_t gamma^t m_t grad log pi(a_t|s_t)]`, `R_t` the discounted return from `t`
on (discounted to time 0) and the baseline `b_t = gamma^t m_t V(s_t)`, which does not depend on `a_t`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..distributions.base import Distribution
from ..distributions.transformed import Independent, Transformed

ESTIMATORS = ("pathwise", "score")
Estimator = Literal["pathwise", "score"]


def check_estimator(estimator: str) -> None:
    """A one-line ValueError unless `estimator` is one of `ESTIMATORS`."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown actor-gradient estimator {estimator!r}; choose pathwise or score")


def score_sample_and_log_prob(dist: Distribution, key: PRNGKeyArray) -> tuple[Array, Array]:
    """`(a, log pi(a))` for the score-function route: `a` with gradients stopped, `log pi(a)`
    differentiable in the parameters. For `Independent(Transformed(...))` (the tanh-squashed policy)
    `a` is scored at its pre-transform draw `u` (`log p_base(u) - log|det J(u)|`), exact where
    inverting a saturated `a` would not be; otherwise `dist.sample_and_log_prob`."""
    inner = dist.distribution if isinstance(dist, Independent) else None
    if not isinstance(inner, Transformed):
        return dist.sample_and_log_prob(key)
    u = inner.base.sample(key)  # the same draw as rsample's, gradients stopped
    a, log_det = inner.bijector.forward_and_log_det(u)
    log_prob = inner.base.log_prob(u) - inner._reduce_log_det(log_det)
    axes = tuple(range(-dist.reinterpreted_batch_ndims, 0))
    return jax.lax.stop_gradient(a), jnp.sum(log_prob, axis=axes)


def draw_action(dist: Distribution, key: PRNGKeyArray, estimator: str) -> tuple[Array, Array]:
    """`(a, log pi(a))`: `rsample_and_log_prob` (pathwise) or `score_sample_and_log_prob` (score)."""
    return dist.rsample_and_log_prob(key) if estimator == "pathwise" else score_sample_and_log_prob(dist, key)


class Rollout(NamedTuple):
    """An imagined rollout of `H` steps from `B` start states."""

    obs: Array  # (H + 1, B, obs_dim): s_0 ... s_H
    action: Array  # (H, B, action_dim)
    log_prob: Array  # (H, B): log pi(a_t|s_t), differentiable in the policy's parameters
    reward: Array  # (H, B)
    alive: Array  # (H + 1, B): m_t, 1 until a termination (the terminating step itself counts)


def imagine(
    policy_fn: Callable[[Array], Distribution],
    step_fn: Callable[[Array, Array, PRNGKeyArray], tuple[Array, Array, Array]],
    obs: Array,
    key: PRNGKeyArray,
    horizon: int,
    estimator: str = "pathwise",
) -> Rollout:
    """Roll `policy_fn` through `step_fn` for `horizon` steps from `obs (B, obs_dim)` in one `lax.scan`
    (step `t` uses `split(key, horizon)[t]`, split into the action and the model key). Pathwise: actions
    by `rsample`, gradients through everything; score: actions with gradients stopped (so the states
    carry none) and `log pi` differentiable."""
    if horizon < 1:
        raise ValueError(f"--horizon must be >= 1, got {horizon}")
    check_estimator(estimator)

    def step(carry, k):
        s, alive = carry
        k_act, k_model = jax.random.split(k)
        a, log_prob = draw_action(policy_fn(s), k_act, estimator)
        s_next, r, terminated = step_fn(s, a, k_model)
        return (s_next, alive * (1.0 - terminated)), (s, a, log_prob, r, alive)

    alive0 = jnp.ones(obs.shape[:-1], obs.dtype)
    (last, alive_last), (s, a, log_prob, r, alive) = jax.lax.scan(step, (obs, alive0), jax.random.split(key, horizon))
    return Rollout(jnp.concatenate([s, last[None]]), a, log_prob, r, jnp.concatenate([alive, alive_last[None]]))


def returns_to_go(rollout: Rollout, terminal_value: Array, gamma: float, alpha: Array) -> Array:
    """`R_t = sum_{k >= t} gamma^k m_k (r_k - alpha log pi_k) + gamma^H m_H V(s_H)`, `(H + 1, B)`
    (discounted to time 0; `R_H` is the terminal term alone), for `terminal_value = V(s_H)` `(B,)`."""
    horizon = rollout.reward.shape[0]
    discount = gamma ** jnp.arange(horizon + 1, dtype=rollout.reward.dtype)
    soft = discount[:-1, None] * rollout.alive[:-1] * (rollout.reward - alpha * rollout.log_prob)
    tail = discount[-1] * rollout.alive[-1] * terminal_value
    # reverse cumulative sum of the per-step terms, then the terminal term on every row
    per_step = jnp.flip(jnp.cumsum(jnp.flip(soft, 0), 0), 0)
    return jnp.concatenate([per_step + tail, tail[None]])


def svg_loss(rollout: Rollout, values: Array, gamma: float, alpha: Array, estimator: str) -> Array:
    """The actor loss `-J` (minimise) whose gradient is the chosen estimator of `-grad J`.

    `values (H + 1, B)`: soft state values `V(s_t)` (e.g. `min_i Q_i(s, a') - alpha log pi(a'|s)`,
    `a' ~ pi`); the pathwise loss reads only `V(s_H)` (differentiable), the score one uses all of
    them, gradients stopped, as its baseline. Mean over the `B` start states."""
    check_estimator(estimator)
    returns = returns_to_go(rollout, values[-1], gamma, alpha)
    if estimator == "pathwise":
        return -jnp.mean(returns[0])
    horizon = rollout.reward.shape[0]
    discount = gamma ** jnp.arange(horizon, dtype=rollout.reward.dtype)
    baseline = discount[:, None] * rollout.alive[:-1] * values[:-1]
    advantage = jax.lax.stop_gradient(returns[:-1] - baseline)
    score = jnp.sum(rollout.log_prob * advantage, axis=0)
    direct = -alpha * jnp.sum(discount[:, None] * jax.lax.stop_gradient(rollout.alive[:-1]) * rollout.log_prob, axis=0)
    return -jnp.mean(score + direct)

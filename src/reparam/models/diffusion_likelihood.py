"""Diffusion likelihoods, reported as terms: the discrete-time variational bound (prior `L_T`, the KL
terms, the decoder `L_0`) and the exact log-likelihood of the probability-flow ODE (exact Jacobian
trace, no Hutchinson noise), with chunked evaluators for whole data sets.

Conventions are those of `reparam.models.diffusion`. All results are negative log-likelihoods (or
bounds on them) in nats per example, `(B,)`, summed over the event; `bits_per_dim` converts.

The bound on `-log p(x)` over the levels `t_0 < ... < t_K = 1` (`time_levels`), lowest level
`t_l` (`l = 1` discrete, `0` continuous):

    L = KL(q(z_1 | x) || N(0, I))                                         prior
      + sum_{k > l} E_q KL(q(z_{t_{k-1}} | z_{t_k}, x) || p(z_{t_{k-1}} | z_{t_k}))   diffusion
      + E_q [-log p(x | z_{t_l})]                                            decoder

with `p(z_s | z_t) = q(z_s | z_t, x0_hat(z_t))`, so each KL is `1/2 expm1(lambda_s - lambda_t)
||eps - eps_hat||^2` (VDM eq. 13), estimated with one `z_t` per example and term. Decoders, all with
mean `x0_hat = x0_hat(z_{t_l})` and scale `s = sigma / alpha` at `t_l` (Ho's `sigma_1 = sqrt(beta_1)`):
`gaussian` `N(x; x0_hat, s^2)` (continuous data); `bernoulli` for `x` in `{-1, +1}`:
`P(x) = Phi(x x0_hat / s)`, the two-level discretized Gaussian (a bound on the discrete
log-likelihood); `discretized` (Ho et al.) for `x` on `L` levels `2k/(L-1) - 1` in `[-1, 1]`: the
mass of `N(x0_hat, s^2)` on the level's cell, the end cells open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions import Normal, kl_divergence
from ..training import map_batches
from .diffusion import (
    Predict,
    Prediction,
    Schedule,
    _as_float,
    _sum_event,
    alpha_sigma,
    call,
    check_prediction,
    forward,
    split_prediction,
    time_levels,
)

__all__ = [
    "DECODERS",
    "bound_times",
    "decoder_nll",
    "decoder_term",
    "evaluate_bound",
    "evaluate_ode",
    "ode_bound",
    "ode_log_likelihood",
    "variational_bound",
]

DECODERS = ("gaussian", "bernoulli", "discretized")
Decoder = Literal["gaussian", "bernoulli", "discretized"]


def bound_times(schedule: Schedule, steps: int | None = None) -> np.ndarray:
    """The times `t_k`, `k > l`, of the bound's KL terms (the upper time of each pair), ascending."""
    return time_levels(schedule, steps)[schedule.lowest + 1 :]


def decoder_nll(x: Array, x0_hat: Array, scale: Array, decoder: Decoder, levels: int = 17) -> Array:
    """`-log p(x | z_{t_l})` per example `(B,)` for the decoder's mean `x0_hat` and scale (see the module)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    if decoder == "gaussian":
        return -_sum_event(Normal(x0_hat, jnp.broadcast_to(scale, x0_hat.shape), validate=False).log_prob(x))
    if decoder == "bernoulli":
        return -_sum_event(log_ndtr(x * x0_hat / scale))
    if not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"discretized decoder: levels must be an integer >= 2, got {levels!r}")
    half = 1.0 / (levels - 1)
    upper = (x + half - x0_hat) / scale
    lower = (x - half - x0_hat) / scale
    top, bottom = x > 1 - half, x < -1 + half
    return -_sum_event(_log_normal_mass(lower, upper, bottom, top))


def decoder_term(
    predict: Predict,
    schedule: Schedule,
    x: Array,
    z: Array,
    t: Array,
    prediction: Prediction,
    decoder: Decoder,
    levels: int,
    context: Array | None = None,
) -> Array:
    """`-log p(x | z_t)` `(B,)`: `decoder_nll` with the network's `x0_hat(z, t)` and scale `sigma_t / alpha_t`."""
    alpha, sigma, lam = alpha_sigma(schedule, t, x)
    x0_hat, _ = split_prediction(call(predict, z, t, context), z, alpha, sigma, prediction)
    return decoder_nll(x, x0_hat, jnp.exp(-0.5 * lam), decoder, levels)


def _log_normal_mass(lower: Array, upper: Array, open_below: Array, open_above: Array) -> Array:
    """`log(Phi(upper) - Phi(lower))`, with `lower = -inf` where `open_below` and `upper = +inf` where
    `open_above`; computed in the tail where the mass is small (right of zero from the upper tails
    `Phi(-lower) - Phi(-upper)`), so it stays finite far from the cell. Infinite ends never reach
    `log_ndtr`, so gradients stay finite too."""
    right = (lower > 0) & ~open_below
    big = jnp.where(right, -lower, upper)  # log Phi(big) is the larger term
    small = jnp.where(right, -upper, lower)
    big_infinite = ~right & open_above
    small_infinite = jnp.where(right, open_above, open_below)
    log_big = jnp.where(big_infinite, 0.0, log_ndtr(jnp.where(big_infinite, 0.0, big)))
    log_small = jnp.where(small_infinite, -jnp.inf, log_ndtr(jnp.where(small_infinite, 0.0, small)))
    return log_big + jnp.log1p(-jnp.exp(log_small - log_big))


def variational_bound(
    predict: Predict,
    schedule: Schedule,
    x: Array,
    key: PRNGKeyArray,
    *,
    prediction: Prediction = "eps",
    decoder: Decoder = "gaussian",
    steps: int | None = None,
    levels: int = 17,
    context: Array | None = None,
) -> dict[str, Array]:
    """The bound's terms per example (nats): `prior`, `diffusion` (their sum), `decoder`, `total` `(B,)`
    and `terms` `(B, n)`, the KL terms at `bound_times(schedule, steps)`.

    `x` `(B, *event)`; `steps` levels (default the schedule's `T`; at most `T` for discrete ones).
    One network call per term and one for the decoder, the terms in a `lax.scan`. `context`
    `(B, ...)` goes to a conditional `predict(z, t, context)`.
    """
    check_prediction(prediction)
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    x = _as_float(x)
    times = time_levels(schedule, steps)
    lowest = schedule.lowest
    batch = x.shape[:1]
    k_dec, k_terms = jax.random.split(key)

    # Prior L_T: KL(q(z_1 | x) || N(0, I)).
    q_1 = forward(schedule, x, jnp.ones(batch, x.dtype), validate=False)
    prior = _sum_event(kl_divergence(q_1, Normal(jnp.zeros((), x.dtype), jnp.ones((), x.dtype))))

    # KL terms between consecutive levels above the lowest.
    def term(_, inputs):
        s, t, k = inputs
        tb = jnp.full(batch, t, x.dtype)
        q = forward(schedule, x, tb, validate=False)
        z = q.rsample(k)
        alpha, sigma, lam_t = alpha_sigma(schedule, tb, x)
        _, eps_hat = split_prediction(call(predict, z, tb, context), z, alpha, sigma, prediction)
        weight = 0.5 * jnp.expm1(schedule.log_snr(s) - lam_t.reshape(-1))
        return None, weight * _sum_event(jnp.square(eps_hat - q.standardize(z)))

    pairs = (
        jnp.asarray(times[lowest:-1], x.dtype),
        jnp.asarray(times[lowest + 1 :], x.dtype),
        jax.random.split(k_terms, len(times) - lowest - 1),
    )
    _, terms = jax.lax.scan(term, None, pairs)
    terms = terms.T  # (B, n)

    # Decoder L_0 at the lowest level.
    t_low = jnp.full(batch, times[lowest], x.dtype)
    z = forward(schedule, x, t_low, validate=False).rsample(k_dec)
    dec = decoder_term(predict, schedule, x, z, t_low, prediction, decoder, levels, context)

    diffusion = jnp.sum(terms, axis=1)
    return {"prior": prior, "diffusion": diffusion, "decoder": dec, "total": prior + diffusion + dec, "terms": terms}


def ode_log_likelihood(
    predict: Predict,
    schedule: Schedule,
    z: Array,
    *,
    prediction: Prediction = "eps",
    steps: int = 100,
    t_start: float | None = None,
    prior_log_prob: Callable[[Array], Array] | None = None,
    context: Array | None = None,
) -> Array:
    """`log p(z_{t_start} = z)` per example `(B,)` under the probability-flow ODE from the prior at `t = 1`.

    With `lambda` as the clock the ODE is `dz/dlambda = f = -sigma (eps_hat(z, t(lambda)) - sigma z) / 2`
    (`sigma^2 = sigmoid(-lambda)`; Song et al. 2021's VP ODE, `t(lambda)` = `schedule.time_at`), and
    `d log p(z)/dlambda = -tr(df/dz)`, so `log p(z_start) = log p_1(z_1) + int_{start}^{1} tr(df/dz) dlambda`.
    The trace is exact (`jacfwd` per example: `D` forward-mode passes). Heun with `steps` equal steps
    in `lambda` from `lambda(t_start)` to `lambda(1)`: equal steps in log-SNR keep the drift smooth at
    both ends of any schedule (with equal steps in `t`, the cosine schedule's last level alone
    spans 7 units of `lambda`). `t_start` defaults to the lowest level (`1/T` discrete, 0
    continuous). `prior_log_prob(z_1) -> (B,)` defaults to the standard normal. Accuracy, measured
    with exact networks: Gaussian data, 80 steps: 1e-3 nats; binary data (4 dims, where the density
    of `z` at low noise is a mixture of narrow bumps): 0.03 nats too high at 100 steps, 0.005 at 400,
    so use a few hundred steps for discrete data. `context` `(B, ...)`
    goes to a conditional `predict(z, t, context)`, one example at a time.
    """
    check_prediction(prediction)
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"ode_log_likelihood: steps must be a positive integer, got {steps!r}")
    z = _as_float(z)
    t_start = schedule.lowest / schedule.steps if t_start is None else float(t_start)
    if not 0.0 <= t_start < 1.0 or (schedule.discrete and t_start <= 0.0):
        raise ValueError(
            f"ode_log_likelihood: t_start must be in [0, 1) (above 0 for discrete schedules), got {t_start}"
        )
    dim = int(np.prod(z.shape[1:]))

    def drift_and_trace(z: Array, lam: Array) -> tuple[Array, Array]:
        """`f` `(B, ...)` and `tr(df/dz)` `(B,)` at the scalar log-SNR `lam`."""
        alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
        t = jnp.full((1,), schedule.time_at(lam), z.dtype)

        def eps_one(z_flat: Array, context_one) -> Array:
            z_one = z_flat.reshape((1,) + z.shape[1:])
            context_one = None if context_one is None else context_one[None]
            _, eps_hat = split_prediction(call(predict, z_one, t, context_one), z_one, alpha, sigma, prediction)
            return eps_hat.reshape(-1)

        def one(z_flat: Array, context_one) -> tuple[Array, Array]:
            twice = lambda z_flat: (eps_one(z_flat, context_one),) * 2  # noqa: E731  (the value rides as aux)
            jacobian, eps_hat = jax.jacfwd(twice, has_aux=True)(z_flat)
            return -0.5 * sigma * (eps_hat - sigma * z_flat), -0.5 * sigma * (jnp.trace(jacobian) - sigma * dim)

        f, tr = jax.vmap(one)(z.reshape(z.shape[0], -1), context)
        return f.reshape(z.shape), tr

    def heun(carry, inputs):
        z, log_det = carry
        lam, h = inputs
        f1, tr1 = drift_and_trace(z, lam)
        f2, tr2 = drift_and_trace(z + h * f1, lam + h)
        return (z + 0.5 * h * (f1 + f2), log_det + 0.5 * h * (tr1 + tr2)), None

    lam_start = schedule.log_snr(jnp.asarray(t_start, z.dtype))
    h = (schedule.log_snr(jnp.ones((), z.dtype)) - lam_start) / steps
    inputs = (lam_start + h * jnp.arange(steps, dtype=z.dtype), jnp.full((steps,), h))
    (z_1, log_det), _ = jax.lax.scan(heun, (z, jnp.zeros(z.shape[:1], z.dtype)), inputs)
    if prior_log_prob is None:
        return _sum_event(Normal(jnp.zeros((), z.dtype), jnp.ones((), z.dtype)).log_prob(z_1)) + log_det
    return prior_log_prob(z_1) + log_det


def ode_bound(
    predict: Predict,
    schedule: Schedule,
    x: Array,
    key: PRNGKeyArray,
    *,
    prediction: Prediction = "eps",
    decoder: Decoder = "gaussian",
    steps: int = 100,
    levels: int = 17,
    context: Array | None = None,
) -> dict[str, Array]:
    """A bound on `-log p(x)` with the ODE as the latent model, per example (nats):
    `-log p(x) <= E_{q(z_l | x)}[-log p(x | z_l) - log p_ode(z_l) + log q(z_l | x)]`, one `z_l` each.

    Returns `decoder`, `ode` (`-log p_ode(z_l)`), `entropy` (`-log q(z_l | x)`, subtracted) and
    `total` `(B,)`. For discrete data (bernoulli, discretized decoders) this is a bound on the
    discrete log-likelihood, comparable with `variational_bound`; for continuous data at a small
    lowest noise, `ode_log_likelihood(x)` itself is the usual report.
    """
    check_prediction(prediction)
    x = _as_float(x)
    t_low = schedule.lowest / schedule.steps
    tb = jnp.full(x.shape[:1], t_low, x.dtype)
    q = forward(schedule, x, tb, validate=False)
    z, log_q = q.rsample_and_log_prob(key)
    dec = decoder_term(predict, schedule, x, z, tb, prediction, decoder, levels, context)
    ode = -ode_log_likelihood(predict, schedule, z, prediction=prediction, steps=steps, t_start=t_low, context=context)
    entropy = -_sum_event(log_q)
    return {"decoder": dec, "ode": ode, "entropy": entropy, "total": dec + ode - entropy}


def _split(batch: PyTree) -> tuple[Array, Array | None]:
    """`(x, context)` from `batch = x` (context None) or `batch = (x, context)`."""
    if isinstance(batch, (tuple, list)):
        x, context = batch
        return x, context
    return batch, None


def evaluate_bound(
    predict: Callable[..., Array], schedule: Schedule, data: PyTree, key: PRNGKeyArray, *, batch_size: int, **options
) -> dict[str, Array]:
    """`variational_bound` over a data set in chunks of `batch_size` (`map_batches`): per-example terms `(N, ...)`.

    `data`: `x` `(N, *event)` with `predict(z, t)`, or `(x, context)` with `predict(z, t, context)`.
    `options` go to `variational_bound` (prediction, decoder, steps, levels).
    """

    def chunk(batch, k):
        x, context = _split(batch)
        return variational_bound(predict, schedule, x, k, context=context, **options)

    return map_batches(chunk, data, key, batch_size)


def evaluate_ode(
    predict: Callable[..., Array],
    schedule: Schedule,
    data: PyTree,
    key: PRNGKeyArray,
    *,
    batch_size: int,
    decoder: Decoder | None = None,
    **options,
) -> dict[str, Array]:
    """The ODE likelihood over a data set in chunks: `{"nll": -ode_log_likelihood(x)}` `(N,)` when
    `decoder` is None (continuous data, `x` read as `z` at the lowest level), else `ode_bound`'s terms.

    `data` as in `evaluate_bound`; `options` go on (prediction, steps, levels).
    """

    def chunk(batch, k):
        x, context = _split(batch)
        if decoder is None:
            return {"nll": -ode_log_likelihood(predict, schedule, x, context=context, **options)}
        return ode_bound(predict, schedule, x, k, decoder=decoder, context=context, **options)

    return map_batches(chunk, data, key, batch_size)

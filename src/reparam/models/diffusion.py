"""Diffusion models as reparameterized noising (Ho et al. 2020; Kingma et al. 2021, VDM): schedules,
the forward process, the eps / x0 / v parameterizations, the training loss and classifier-free
guidance. Schedules live in `diffusion_schedules` (re-exported here), samplers in
`diffusion_sampling`, likelihoods in `diffusion_likelihood`.

Conventions (one for discrete and continuous time):

- **Time** is continuous, `t` in `[0, 1]`; `t = 1` is pure noise. Every schedule is its log
  signal-to-noise ratio `lambda(t) = log(alpha_t^2 / sigma_t^2)`, decreasing in `t`, and the process
  is variance preserving: `alpha_t^2 = sigmoid(lambda)`, `sigma_t^2 = sigmoid(-lambda)`,
  `alpha_bar_t = alpha_t^2`.
- A **discrete** schedule with `T` steps (Ho et al.'s `linear`, Nichol & Dhariwal's `cosine`) lives
  on the levels `t_i = i / T`, `i = 0..T`: level 0 is the data (`alpha_bar = 1`, `lambda = +inf`),
  levels `1..T` are Ho's `x_1..x_T`. Between levels, `log alpha_bar` is interpolated linearly (the
  probability-flow ODE needs a continuous `lambda`). A **continuous** schedule (`vdm`: `lambda`
  linear in `t`, from `lambda_max` at 0 to `lambda_min` at 1) has finite `lambda(0)`; its `steps`
  is the default number of levels `t_i = i / T` for the bound and the samplers.
- The **lowest level** is the least noisy latent the decoder reads: `t = 1/T` for discrete
  schedules (Ho's `x_1`), `t = 0` for continuous ones (VDM's `z_0`).
- A **network** is any callable `predict(z, t) -> output`: `z` of shape `(B, *event)`, `t` of shape
  `(B,)`, output of `z`'s shape holding the parameterization's target (`eps`, `x0` or `v`). A
  conditional network takes the context as a third argument, `predict(z, t, context)` with
  `context` `(B, ...)`: every function here takes `context=None` and passes it on when given
  (`make_loss_fn` and the chunked evaluators take it from `(x, context)` data). For discrete data,
  `logits_denoiser` turns a network of per-coordinate logits into such a `predict`, with the exact
  likelihood of `z_t` built in.
- **Shapes**: data `x` is `(B, *event)`; per-example results are `(B,)`, summed over the event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from ..distributions import Normal
from .diffusion_schedules import (
    SCHEDULES,
    ContinuousSchedule,
    DiscreteSchedule,
    Schedule,
    _as_float,
    make_schedule,
    time_levels,
)

__all__ = [
    "PREDICTIONS",
    "SCHEDULES",
    "WEIGHTINGS",
    "ContinuousSchedule",
    "DiscreteSchedule",
    "Schedule",
    "alpha_sigma",
    "call",
    "check_prediction",
    "convert_prediction",
    "diffusion_loss",
    "discrete_denoiser",
    "discrete_posterior_mean",
    "forward",
    "gaussian_denoiser",
    "guided",
    "logits_denoiser",
    "make_loss_fn",
    "make_schedule",
    "posterior",
    "prediction_target",
    "split_prediction",
    "time_levels",
]

PREDICTIONS = ("eps", "x0", "v")
WEIGHTINGS = ("simple", "elbo")

Prediction = Literal["eps", "x0", "v"]
Predict = Callable[..., Array]


def alpha_sigma(schedule: Schedule, t: ArrayLike, like: Array) -> tuple[Array, Array, Array]:
    """`(alpha_t, sigma_t, lambda_t)` for times `t` of shape `(B,)`, reshaped to broadcast against `like` `(B, ...)`."""
    lam = _expand(schedule.log_snr(jnp.asarray(t, like.dtype)), like)
    return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam)), lam


# --------------------------------------------------------------------------------- forward and posterior
def forward(schedule: Schedule, x0: Array, t: ArrayLike, *, validate: bool = True) -> Normal:
    """`q(z_t | x) = N(alpha_t x, sigma_t^2 I)`: batch `x0.shape`; `t` is `(B,)` (or a scalar).

    Its `rsample(key)` is the training input `z_t = alpha_t x + sigma_t eps`; `standardize(z_t)` gives
    back `eps`. `t` must be above 0 for discrete schedules (`sigma_0 = 0`).
    """
    x0 = _as_float(x0)
    alpha, sigma, _ = alpha_sigma(schedule, jnp.broadcast_to(jnp.asarray(t, x0.dtype), x0.shape[:1]), x0)
    return Normal(alpha * x0, jnp.broadcast_to(sigma, x0.shape), validate=validate)


def posterior_coefficients(lam_s: Array, lam_t: Array) -> tuple[Array, Array, Array]:
    """`(a, b, var)` with `q(z_s | z_t, x) = N(a z_t + b x, var)` for `s < t` (VDM appendix A).

    With `r = -expm1(lambda_t - lambda_s)` (in [0, 1]): `a = exp(lambda_t - lambda_s) alpha_s / alpha_t`,
    `b = alpha_s r`, `var = sigma_s^2 r`. Exact also at `lambda_s = +inf` (data level: `a = 0`,
    `b = 1`, `var = 0`).
    """
    r = -jnp.expm1(lam_t - lam_s)
    alpha_s, alpha_t = jnp.sqrt(jax.nn.sigmoid(lam_s)), jnp.sqrt(jax.nn.sigmoid(lam_t))
    a = jnp.exp(lam_t - lam_s) * alpha_s / alpha_t
    return a, alpha_s * r, jax.nn.sigmoid(-lam_s) * r


def posterior(
    schedule: Schedule, z_t: Array, x0: Array, s: ArrayLike, t: ArrayLike, *, validate: bool = True
) -> Normal:
    """`q(z_s | z_t, x) = N(a z_t + b x, var)` in closed form (Bayes' rule on two Gaussians), `s < t`.

    `z_t`, `x0` are `(B, ...)`, `s`, `t` are `(B,)` or scalars; see `posterior_coefficients`. `s` must
    be above 0 for discrete schedules (the posterior is a point mass at the data there).
    """
    z_t = _as_float(z_t)
    lam_s = _expand(schedule.log_snr(jnp.broadcast_to(jnp.asarray(s, z_t.dtype), z_t.shape[:1])), z_t)
    lam_t = _expand(schedule.log_snr(jnp.broadcast_to(jnp.asarray(t, z_t.dtype), z_t.shape[:1])), z_t)
    a, b, var = posterior_coefficients(lam_s, lam_t)
    return Normal(
        a * z_t + b * jnp.asarray(x0, z_t.dtype), jnp.broadcast_to(jnp.sqrt(var), z_t.shape), validate=validate
    )


# ---------------------------------------------------------------------------------------- parameterizations
def check_prediction(prediction: str) -> None:
    """One-line ValueError unless `prediction` is one of `PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def split_prediction(
    output: Array, z: Array, alpha: Array, sigma: Array, prediction: Prediction
) -> tuple[Array, Array]:
    """`(x0_hat, eps_hat)` from a network `output` at `z = alpha x0 + sigma eps`.

    eps: `x0 = (z - sigma eps) / alpha`. x0: `eps = (z - alpha x0) / sigma`. v (Salimans & Ho 2022,
    `v = alpha eps - sigma x0`): `x0 = alpha z - sigma v`, `eps = sigma z + alpha v`.
    """
    check_prediction(prediction)
    if prediction == "eps":
        return (z - sigma * output) / alpha, output
    if prediction == "x0":
        return output, (z - alpha * output) / sigma
    return alpha * z - sigma * output, sigma * z + alpha * output


def prediction_target(x0: Array, eps: Array, alpha: Array, sigma: Array, prediction: Prediction) -> Array:
    """What a `prediction` network should output for `z = alpha x0 + sigma eps`: eps, x0 or `alpha eps - sigma x0`."""
    check_prediction(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return alpha * eps - sigma * x0


def convert_prediction(
    output: Array, z: Array, alpha: Array, sigma: Array, *, source: Prediction, target: Prediction
) -> Array:
    """A `source`-parameterized output re-expressed as the `target` parameterization at the same `z`."""
    x0, eps = split_prediction(output, z, alpha, sigma, source)
    return prediction_target(x0, eps, alpha, sigma, target)


# ------------------------------------------------------------------------------------------------ training
def sample_times(schedule: Schedule, key: PRNGKeyArray, batch: int, dtype) -> Array:
    """Training times `(B,)`: `t = i / T`, `i ~ U{1..T}` for discrete schedules; `t ~ U(0, 1)` otherwise."""
    if schedule.discrete:
        i = jax.random.randint(key, (batch,), 1, schedule.steps + 1)
        return i.astype(dtype) / schedule.steps
    return jax.random.uniform(key, (batch,), dtype)


def elbo_weights(schedule: Schedule, t: Array) -> Array:
    """Per-example weight `w(t)` on `||eps - eps_hat||^2` (summed over the event) that gives the bound.

    Discrete: `T/2 expm1(lambda_{i-1} - lambda_i)` (`T` times the KL term between levels `i-1` and
    `i`, `i ~ U{1..T}`), and `T/2` at `i = 1` (the Gaussian decoder's quadratic term). Continuous
    (VDM eq. 17): `-lambda'(t) / 2`.
    """
    if schedule.discrete:
        steps = schedule.steps
        lam_t = schedule.log_snr(t)
        lam_s = schedule.log_snr(jnp.maximum(t - 1 / steps, 1 / steps))
        kl = 0.5 * steps * jnp.expm1(lam_s - lam_t)
        return jnp.where(t * steps < 1.5, jnp.asarray(0.5 * steps, t.dtype), kl)
    _, slope = jax.jvp(schedule.log_snr, (t,), (jnp.ones_like(t),))
    return -0.5 * slope


def diffusion_loss(
    predict: Predict,
    schedule: Schedule,
    x0: Array,
    key: PRNGKeyArray,
    *,
    prediction: Prediction = "eps",
    weighting: Literal["simple", "elbo"] = "simple",
    context: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """The denoising loss on a batch `x0` `(B, *event)`: `(scalar loss, {"mse_eps": ...})`.

    Draws `t` (`sample_times`) and `z_t = alpha_t x0 + sigma_t eps` from `forward(...).rsample`.
    `simple` (Ho et al.): the mean over batch and event of `(output - target)^2` in the
    parameterization's own target. `elbo`: the mean over the batch of `w(t) ||eps - eps_hat||^2`
    (`elbo_weights`), an unbiased estimate of the bound's network-dependent part in nats (discrete: the
    KL terms and the Gaussian decoder's quadratic; continuous: VDM's diffusion loss), without the
    prior and the decoder's constants.
    """
    check_prediction(prediction)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    x0 = _as_float(x0)
    k_t, k_eps = jax.random.split(key)
    t = sample_times(schedule, k_t, x0.shape[0], x0.dtype)
    q = forward(schedule, x0, t, validate=False)
    z = q.rsample(k_eps)
    eps = q.standardize(z)
    alpha, sigma, _ = alpha_sigma(schedule, t, x0)
    output = call(predict, z, t, context)
    _, eps_hat = split_prediction(output, z, alpha, sigma, prediction)
    eps_error = _sum_event(jnp.square(eps_hat - eps))
    metrics = {"mse_eps": jnp.mean(eps_error) / _event_size(x0)}
    if weighting == "simple":
        target = prediction_target(x0, eps, alpha, sigma, prediction)
        return jnp.mean(jnp.square(output - target)), metrics
    return jnp.mean(elbo_weights(schedule, t) * eps_error), metrics


def make_loss_fn(
    apply: Callable[..., Array],
    schedule: Schedule,
    *,
    prediction: Prediction = "eps",
    weighting: Literal["simple", "elbo"] = "simple",
    null_context: ArrayLike | None = None,
    drop_probability: float = 0.0,
) -> Callable:
    """`loss_fn(params, batch, key, state) -> (loss, metrics)` for `reparam.training`, from `diffusion_loss`.

    `apply(params, z, t)` for unconditional data (`batch = x`); `apply(params, z, t, context)` when
    `batch = (x, context)`. With `drop_probability > 0` each example's context is replaced by
    `null_context` with that probability (classifier-free guidance training, Ho & Salimans 2022).
    """
    check_prediction(prediction)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if not 0.0 <= drop_probability < 1.0:
        raise ValueError(f"drop_probability must be in [0, 1), got {drop_probability}")
    if drop_probability > 0 and null_context is None:
        raise ValueError("drop_probability > 0 needs a null_context (the context that means 'no condition')")

    def loss_fn(params: PyTree, batch: PyTree, key: PRNGKeyArray, state) -> tuple[Array, dict[str, Array]]:
        predict = functools.partial(apply, params)
        if not isinstance(batch, (tuple, list)):
            return diffusion_loss(predict, schedule, batch, key, prediction=prediction, weighting=weighting)
        x, context = batch
        k_drop, key = jax.random.split(key)
        if drop_probability > 0:
            drop = jax.random.bernoulli(k_drop, drop_probability, context.shape[:1])
            null = jnp.broadcast_to(jnp.asarray(null_context, context.dtype), context.shape)
            context = jnp.where(_expand(drop, context), null, context)
        return diffusion_loss(predict, schedule, x, key, prediction=prediction, weighting=weighting, context=context)

    return loss_fn


# ------------------------------------------------------------------------------------------------ guidance
def guided(predict: Predict, w: float, null_context: ArrayLike) -> Predict:
    """Classifier-free guidance: `predict_w(z, t, context) = (1 + w) predict(z, t, c) - w predict(z, t, null)`.

    `predict(z, t, context)` is a conditional network trained with context dropout (`make_loss_fn`);
    `null_context` is the context that means "unconditional" (for class labels `0..K-1` the
    convention here is the extra label `K`), broadcast to each example. `w = 0` is the conditional
    model. The combination is affine with weights summing to one, so it is the same in eps, x0 and v.
    Both predictions come from one network call on the doubled batch.
    """

    def predict_w(z: Array, t: Array, context: Array) -> Array:
        context = jnp.asarray(context)
        null = jnp.broadcast_to(jnp.asarray(null_context, context.dtype), context.shape)
        both = predict(jnp.concatenate([z, z]), jnp.concatenate([t, t]), jnp.concatenate([context, null]))
        conditional, unconditional = both[: z.shape[0]], both[z.shape[0] :]
        return (1 + w) * conditional - w * unconditional

    return predict_w


# -------------------------------------------------------------------------------------------------- oracle
def gaussian_denoiser(
    mean: ArrayLike, cov: ArrayLike, schedule: Schedule, *, prediction: Prediction = "eps"
) -> Predict:
    """The optimal network for data `x ~ N(mean, cov)` on `(D,)` events: `predict(z, t)` exact.

    `q(z_t) = N(alpha m, alpha^2 S + sigma^2 I)`, so `eps_hat = E[eps | z_t] = sigma (alpha^2 S +
    sigma^2 I)^{-1} (z_t - alpha m)`, linear in `z_t`; converted to `prediction`. A test oracle and a
    sanity row for benchmarks (its bound and ODE likelihood have closed forms).
    """
    check_prediction(prediction)
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    values, vectors = jnp.linalg.eigh(cov)

    def predict(z: Array, t: Array) -> Array:
        alpha, sigma, _ = alpha_sigma(schedule, t, z)
        variances = alpha**2 * values + sigma**2  # (B, D): eigenvalues of Sigma_t
        centred = (z - alpha * mean) @ vectors
        eps = sigma * (centred / variances) @ vectors.T
        x0 = mean + ((alpha * values / variances) * centred) @ vectors.T
        return prediction_target(x0, eps, alpha, sigma, prediction)

    return predict


def discrete_denoiser(
    values: ArrayLike, log_probs: ArrayLike, schedule: Schedule, *, prediction: Prediction = "eps"
) -> Predict:
    """The optimal network for data with independent coordinates on the grid `values` `(L,)`, each
    value `v_k` drawn with probability `exp(log_probs[..., k])` (`log_probs` `(L,)` for all
    coordinates alike or `(*event, L)` per coordinate): `predict(z, t)` exact.

    Per coordinate `x0_hat = E[x | z_t] = sum_k v_k softmax_k(log pi_k - (z - alpha v_k)^2 / (2 sigma^2))`,
    converted to `prediction` (binarized data: `values = (-1, 1)`; 17 grey levels: `linspace(-1, 1, 17)`).
    The oracle of the Bernoulli and discretized decoders: its bound sits just above the exact
    `-sum_d log pi_{x_d}`.
    """
    check_prediction(prediction)
    values, log_probs = jnp.asarray(values), jnp.asarray(log_probs)

    def predict(z: Array, t: Array) -> Array:
        alpha, sigma, _ = alpha_sigma(schedule, t, z)
        x0 = discrete_posterior_mean(z, alpha, sigma, values, log_probs)
        return prediction_target(x0, (z - alpha * x0) / sigma, alpha, sigma, prediction)

    return predict


def logits_denoiser(
    logits_fn: Callable[..., Array], values: ArrayLike, schedule: Schedule, *, prediction: Prediction = "eps"
) -> Predict:
    """A network for discrete data from one that outputs per-coordinate prior logits over the grid
    `values` `(L,)`: `logits_fn(z, t[, context])` `(B, *event, L)`.

    `x0_hat = E[x | z_t]` as in `discrete_denoiser`, with the network's logits in place of the
    independent prior's `log pi` (`discrete_posterior_mean`): the likelihood term `(alpha z v -
    alpha^2 v^2 / 2) / sigma^2` is exact, so the network learns only what the other coordinates (and
    the context) say about each one, and `x0_hat` stays inside the grid's range. Returned in the
    `prediction` parameterization, so losses, bounds and samplers use it like any network.
    """
    check_prediction(prediction)
    values = jnp.asarray(values)

    def predict(z: Array, t: Array, *context: Array) -> Array:
        alpha, sigma, _ = alpha_sigma(schedule, t, z)
        x0 = discrete_posterior_mean(z, alpha, sigma, values, logits_fn(z, t, *context))
        return prediction_target(x0, (z - alpha * x0) / sigma, alpha, sigma, prediction)

    return predict


def discrete_posterior_mean(z: Array, alpha: Array, sigma: Array, values: Array, log_probs: Array) -> Array:
    """`E[x | z]` per coordinate for `z = alpha x + sigma eps`, `x` on the grid `values` `(L,)` with
    prior log-probabilities `log_probs` (`(L,)` or `(*z.shape, L)`): `sum_k v_k softmax_k(log pi_k +
    (alpha z v_k - alpha^2 v_k^2 / 2) / sigma^2)`. `alpha`, `sigma` broadcast against `z`."""
    alpha, sigma = jnp.broadcast_to(alpha, z.shape), jnp.broadcast_to(sigma, z.shape)
    # -(z - alpha v)^2 / (2 sigma^2) up to terms constant in v: (alpha z v - alpha^2 v^2 / 2) / sigma^2.
    scaled = (z[..., None] * values - 0.5 * alpha[..., None] * values**2) * (alpha / sigma**2)[..., None]
    return jnp.sum(jax.nn.softmax(log_probs + scaled, axis=-1) * values, axis=-1)


# --------------------------------------------------------------------------------------------------- helpers
def call(predict: Predict, z: Array, t: Array, context: Array | None = None) -> Array:
    """`predict(z, t)`, or `predict(z, t, context)` when a context is given."""
    return predict(z, t) if context is None else predict(z, t, context)


def _expand(v: Array, like: Array) -> Array:
    """`v` `(B,)` (or scalar) reshaped to `(B, 1, ..., 1)` to broadcast against `like` `(B, ...)`."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def _sum_event(v: Array) -> Array:
    """Sum over every axis but the first: `(B, ...)` -> `(B,)`."""
    return jnp.sum(v.reshape(v.shape[0], -1), axis=1)


def _event_size(x: Array) -> int:
    return int(np.prod(x.shape[1:]))

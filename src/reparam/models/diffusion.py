"""Diffusion models as reparameterized noising (Ho et al. 2020; Kingma et al. 2021, VDM): schedules,
the forward process, the eps / x0 / v parameterizations, the training loss and classifier-free
guidance. Samplers live in `diffusion_sampling`, likelihoods in `diffusion_likelihood`.

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
  (`make_loss_fn` and the chunked evaluators take it from `(x, context)` data).
- **Shapes**: data `x` is `(B, *event)`; per-example results are `(B,)`, summed over the event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from ..distributions import Normal

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
    "forward",
    "gaussian_denoiser",
    "guided",
    "make_loss_fn",
    "make_schedule",
    "posterior",
    "prediction_target",
    "split_prediction",
    "time_levels",
]

SCHEDULES = ("linear", "cosine", "vdm")
PREDICTIONS = ("eps", "x0", "v")
WEIGHTINGS = ("simple", "elbo")

Prediction = Literal["eps", "x0", "v"]
Predict = Callable[..., Array]


# ----------------------------------------------------------------------------------------------- schedules
class Schedule(eqx.Module):
    """A noise schedule: `log_snr(t)` for `t` in `[0, 1]`; `steps` levels; `discrete` or continuous time."""

    steps: int = eqx.field(static=True)

    @property
    def discrete(self) -> bool:
        """True for a schedule defined on `T` steps (sampling steps may not exceed `T`)."""
        raise NotImplementedError

    @property
    def lowest(self) -> int:
        """Index of the lowest level the decoder reads: 1 for discrete schedules (Ho's `x_1`), 0 otherwise."""
        return 1 if self.discrete else 0

    def log_snr(self, t: ArrayLike) -> Array:
        """`lambda(t) = log(alpha_t^2 / sigma_t^2)`, elementwise, in `t`'s float dtype."""
        raise NotImplementedError

    def time_at(self, log_snr: ArrayLike) -> Array:
        """The inverse of `log_snr`: the time `t` with `lambda(t) = log_snr`, elementwise (clipped to `[0, 1]`)."""
        raise NotImplementedError

    def alpha_bar(self, t: ArrayLike) -> Array:
        """`alpha_bar_t = alpha_t^2 = sigmoid(lambda(t))`."""
        return jax.nn.sigmoid(self.log_snr(t))

    def sigma(self, t: ArrayLike) -> Array:
        """`sigma_t = sqrt(sigmoid(-lambda(t)))`, the noise scale of `q(z_t | x)`."""
        return jnp.sqrt(jax.nn.sigmoid(-self.log_snr(t)))


class DiscreteSchedule(Schedule):
    """`T`-step schedule from `beta_1..beta_T`: `alpha_bar_i = prod_{j <= i} (1 - beta_j)` at `t = i / T`.

    `log_alpha_bar` holds `log alpha_bar_i` for `i = 0..T` (`0` at `i = 0`), in float64 numpy;
    `log alpha_bar(t)` is its linear interpolation in `t T`, and
    `lambda(t) = log alpha_bar - log(1 - alpha_bar)` (`+inf` at `t = 0`).
    """

    log_alpha_bar: np.ndarray
    name: str = eqx.field(static=True)

    def __init__(self, betas: ArrayLike, name: str = "discrete"):
        betas = np.asarray(betas, np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError(f"DiscreteSchedule: betas must be a non-empty vector, got shape {betas.shape}")
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError("DiscreteSchedule: every beta must lie in (0, 1)")
        self.steps = int(betas.size)
        self.log_alpha_bar = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
        self.name = name

    @property
    def discrete(self) -> bool:
        """Always True."""
        return True

    def log_snr(self, t: ArrayLike) -> Array:
        """`log alpha_bar - log(1 - alpha_bar)` of the interpolated `log alpha_bar(t)`; `+inf` at `t = 0`."""
        t = _as_float(t)
        table = jnp.asarray(self.log_alpha_bar, t.dtype)
        grid = jnp.arange(self.steps + 1, dtype=t.dtype)
        log_ab = jnp.interp(t * self.steps, grid, table)
        return log_ab - jnp.log(-jnp.expm1(log_ab))

    def time_at(self, log_snr: ArrayLike) -> Array:
        """`t` with `log alpha_bar(t) = log sigmoid(log_snr)`, inverting the interpolation."""
        lam = _as_float(log_snr)
        table = jnp.asarray(self.log_alpha_bar[::-1], lam.dtype)
        index = jnp.interp(jax.nn.log_sigmoid(lam), table, jnp.arange(self.steps, -1, -1, dtype=lam.dtype))
        return index / self.steps


class ContinuousSchedule(Schedule):
    """VDM's fixed schedule: `lambda(t) = lambda_max + (lambda_min - lambda_max) t` (Kingma et al. 2021).

    Defaults from VDM (`gamma_min = -13.3`, `gamma_max = 5`, `lambda = -gamma`): at `t = 0` the noise
    scale is `sigma / alpha = exp(-6.65) = 1.3e-3`, at `t = 1` `alpha^2 = sigmoid(-5) = 6.7e-3`.
    `steps` is the default number of levels for the bound and the samplers.
    """

    log_snr_max: float = eqx.field(static=True)
    log_snr_min: float = eqx.field(static=True)

    def __init__(self, steps: int, log_snr_max: float = 13.3, log_snr_min: float = -5.0):
        if not log_snr_max > log_snr_min:
            raise ValueError(
                f"ContinuousSchedule: log_snr_max must exceed log_snr_min, got {log_snr_max} <= {log_snr_min}"
            )
        self.steps = _check_steps("ContinuousSchedule", steps)
        self.log_snr_max = float(log_snr_max)
        self.log_snr_min = float(log_snr_min)

    @property
    def discrete(self) -> bool:
        """Always False."""
        return False

    def log_snr(self, t: ArrayLike) -> Array:
        """`lambda_max + (lambda_min - lambda_max) t`."""
        t = _as_float(t)
        return self.log_snr_max + (self.log_snr_min - self.log_snr_max) * t

    def time_at(self, log_snr: ArrayLike) -> Array:
        """`(lambda_max - log_snr) / (lambda_max - lambda_min)`, clipped to `[0, 1]`."""
        lam = _as_float(log_snr)
        return jnp.clip((self.log_snr_max - lam) / (self.log_snr_max - self.log_snr_min), 0.0, 1.0)


def linear_betas(steps: int) -> np.ndarray:
    """Ho et al.'s `beta_i = linspace(1e-4, 0.02, T)` at `T = 1000`, scaled by `1000 / T` for other `T`
    (Nichol & Dhariwal's rule, so `alpha_bar_T` stays small), clipped at 0.999."""
    scale = 1000.0 / steps
    return np.clip(np.linspace(scale * 1e-4, scale * 0.02, steps), 0.0, 0.999)


def cosine_betas(steps: int, offset: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's `alpha_bar(t) = f(t) / f(0)`, `f(t) = cos((t + s) / (1 + s) pi / 2)^2`,
    `s = 0.008`, as betas `1 - alpha_bar_i / alpha_bar_{i-1}` clipped at 0.999."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + offset) / (1 + offset) * np.pi / 2) ** 2
    return np.clip(1 - f[1:] / f[:-1], 1e-12, 0.999)


def make_schedule(name: str, steps: int) -> Schedule:
    """The schedule `name` (`SCHEDULES`: linear, cosine, vdm) with `steps` levels (`T >= 1`)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    steps = _check_steps("make_schedule", steps)
    if name == "linear":
        return DiscreteSchedule(linear_betas(steps), "linear")
    if name == "cosine":
        return DiscreteSchedule(cosine_betas(steps), "cosine")
    return ContinuousSchedule(steps)


def time_levels(schedule: Schedule, steps: int | None = None) -> np.ndarray:
    """The `K + 1` times `0 = t_0 < ... < t_K = 1` a `K`-step sampler or bound visits (float64 numpy).

    Continuous schedules: `t_k = k / K`. Discrete ones: `t_k = round(k T / K) / T`, a subset of the
    `T` training levels, so `K <= T` (`K = T` visits every level). `steps=None` means `K = T`.
    """
    steps = schedule.steps if steps is None else _check_steps("sampling", steps)
    if schedule.discrete:
        if steps > schedule.steps:
            raise ValueError(
                f"sample steps must not exceed the {schedule.steps} training steps of a discrete schedule, got {steps}"
            )
        return np.round(np.arange(steps + 1) * schedule.steps / steps) / schedule.steps
    return np.arange(steps + 1, dtype=np.float64) / steps


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


# --------------------------------------------------------------------------------------------------- helpers
def call(predict: Predict, z: Array, t: Array, context: Array | None = None) -> Array:
    """`predict(z, t)`, or `predict(z, t, context)` when a context is given."""
    return predict(z, t) if context is None else predict(z, t, context)


def _as_float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _expand(v: Array, like: Array) -> Array:
    """`v` `(B,)` (or scalar) reshaped to `(B, 1, ..., 1)` to broadcast against `like` `(B, ...)`."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def _sum_event(v: Array) -> Array:
    """Sum over every axis but the first: `(B, ...)` -> `(B,)`."""
    return jnp.sum(v.reshape(v.shape[0], -1), axis=1)


def _event_size(x: Array) -> int:
    return int(np.prod(x.shape[1:]))


def _check_steps(owner: str, steps: int) -> int:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{owner}: steps must be a positive integer, got {steps!r}")
    return int(steps)

"""Diffusion noise schedules on one time convention (see `reparam.models.diffusion`): Ho et al.'s
`linear` and Nichol & Dhariwal's `cosine` on `T` discrete steps, and VDM's continuous-time `vdm`
(Kingma et al. 2021), each given by its log signal-to-noise ratio `lambda(t)`, `t` in `[0, 1]`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

__all__ = [
    "SCHEDULES",
    "ContinuousSchedule",
    "DiscreteSchedule",
    "Schedule",
    "cosine_betas",
    "linear_betas",
    "make_schedule",
    "time_levels",
]

SCHEDULES = ("linear", "cosine", "vdm")


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
    `steps` is the default number of levels for the bound and the samplers. At `lambda_min = -5`
    the prior `N(0, I)` is not quite `q(z_1)`: deterministic samplers (DDIM at eta 0, the ODE) carry
    that mismatch to the data (measured on `N((0.5, -1), S)`: mean -0.94 for -1 with the exact
    network); lower `log_snr_min` for toys where it shows.
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


def make_schedule(
    name: str, steps: int, *, log_snr_max: float | None = None, log_snr_min: float | None = None
) -> Schedule:
    """The schedule `name` (`SCHEDULES`: linear, cosine, vdm) with `steps` levels (`T >= 1`).

    `log_snr_max` / `log_snr_min` bound vdm's linear log-SNR (defaults VDM's 13.3 and -5; finite,
    max above min); linear and cosine fix their own ends, so giving either bound there is an error.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    steps = _check_steps("make_schedule", steps)
    if name != "vdm":
        if log_snr_max is not None or log_snr_min is not None:
            raise ValueError(f"make_schedule: log_snr_max and log_snr_min set the vdm schedule; {name} fixes its own")
        return DiscreteSchedule(linear_betas(steps) if name == "linear" else cosine_betas(steps), name)
    bounds = {"log_snr_max": log_snr_max, "log_snr_min": log_snr_min}
    for key, value in bounds.items():
        if value is not None and not (isinstance(value, (int, float, np.number)) and np.isfinite(value)):
            raise ValueError(f"make_schedule: {key} must be a finite number, got {value!r}")
    return ContinuousSchedule(steps, **{k: float(v) for k, v in bounds.items() if v is not None})


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


def _as_float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_steps(owner: str, steps: int) -> int:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{owner}: steps must be a positive integer, got {steps!r}")
    return int(steps)

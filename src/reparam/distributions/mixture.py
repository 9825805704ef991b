"""The scale mixture of two zero-mean Normals, Blundell et al.'s (2015) prior for weight uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..validation import broadcast_params, check, check_positive
from .base import HALF_LOG_2PI, Distribution, NotReparameterizedError, Shape


class ScaleMixtureNormal(Distribution):
    """`p(x) = pi N(x; 0, sigma1^2) + (1 - pi) N(x; 0, sigma2^2)`, elementwise.

    The prior of "Weight Uncertainty in Neural Networks" (Blundell et al. 2015): a wide component
    (`sigma1`) and a narrow one (`sigma2`, e.g. `exp(-7)`) give a spike-and-slab-like prior that
    stays a density. Shapes: `pi`, `sigma1`, `sigma2` broadcast to `batch_shape`;
    `event_shape = ()`. Needs `0 < pi < 1` and `sigma1, sigma2 > 0` (one-line `ValueError`, or an
    `equinox.error_if` under `jit`, unless `validate=False`).

    `log_prob` works in log space, `logaddexp(log pi + log N(x; 0, sigma1^2),
    log(1 - pi) + log N(x; 0, sigma2^2))`, so it stays finite where either density underflows
    (tiny `sigma2`, large `|x|`). No pathwise sampler: the component choice is discrete, so `pi` has
    no pathwise gradient and `rsample` raises `NotReparameterizedError`; `sample` draws the
    component, then the Normal. No closed-form entropy (Monte Carlo with a key) and no closed-form
    KL: `kl_divergence(q, ScaleMixtureNormal(...), key=...)` uses the Monte Carlo fallback.
    """

    reparameterized = False
    pi: Array
    sigma1: Array
    sigma2: Array

    def __init__(self, pi: ArrayLike, sigma1: ArrayLike, sigma2: ArrayLike, *, validate: bool = True):
        name = type(self).__name__
        pi, sigma1, sigma2 = broadcast_params(name, pi=pi, sigma1=sigma1, sigma2=sigma2)
        bad = ~(jnp.isfinite(pi) & (pi > 0) & (pi < 1))
        self.pi = check(pi, bad, f"{name}: pi must lie in (0, 1)", validate)
        self.sigma1 = check_positive(name, "sigma1", sigma1, validate)
        self.sigma2 = check_positive(name, "sigma2", sigma2, validate)

    @property
    def batch_shape(self) -> Shape:
        """The broadcast shape of `pi`, `sigma1` and `sigma2`."""
        return self.pi.shape

    def _draw(self, key, sample_shape):
        """Component `c ~ Bernoulli(pi)`, then `x = sigma_c * eps`, `eps ~ N(0, 1)`."""
        shape = sample_shape + self.batch_shape
        component_key, noise_key = jax.random.split(key)
        first = jax.random.uniform(component_key, shape, self.pi.dtype) < self.pi
        eps = jax.random.normal(noise_key, shape, self.pi.dtype)
        return jnp.where(first, self.sigma1, self.sigma2) * eps

    def rsample(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> Array:
        """Raises `NotReparameterizedError`: the discrete component choice gives `pi` no pathwise
        gradient. Use `sample` (gradients stopped) with a score-function estimator, or keep the
        mixture as a fixed prior scored by `log_prob`."""
        raise NotReparameterizedError(
            "ScaleMixtureNormal has no pathwise sampler (rsample): the component choice is discrete, so "
            "pi has no pathwise gradient. Use sample() with a score-function estimator, or use the mixture "
            "as a fixed prior scored by log_prob (kl_divergence(q, mixture, key=...) samples q)."
        )

    def _component_log_probs(self, value: ArrayLike) -> tuple[Array, Array]:
        """`log pi + log N(x; 0, sigma1^2)` and `log(1 - pi) + log N(x; 0, sigma2^2)`."""
        x = jnp.asarray(value, self.pi.dtype)
        first = jnp.log(self.pi) - jnp.log(self.sigma1) - HALF_LOG_2PI - 0.5 * jnp.square(x / self.sigma1)
        second = jnp.log1p(-self.pi) - jnp.log(self.sigma2) - HALF_LOG_2PI - 0.5 * jnp.square(x / self.sigma2)
        return first, second

    def log_prob(self, value) -> Array:
        """`logaddexp(log pi + log N(x; 0, sigma1^2), log(1 - pi) + log N(x; 0, sigma2^2))`, in log
        space throughout: finite wherever one component's density underflows; `-inf` only at
        `|x| = inf`."""
        return jnp.logaddexp(*self._component_log_probs(value))

    def cdf(self, value) -> Array:
        """`pi Phi(x / sigma1) + (1 - pi) Phi(x / sigma2)`."""
        x = jnp.asarray(value, self.pi.dtype)
        return self.pi * ndtr(x / self.sigma1) + (1 - self.pi) * ndtr(x / self.sigma2)

    def entropy(self, key: PRNGKeyArray | None = None, num_samples: int = 1024) -> Array:
        """No closed form: the Monte Carlo estimate `-mean_i log p(x_i)`, `x_i ~ p`, from
        `num_samples` draws with `key` (required: ValueError without). Shape `batch_shape`. An
        estimate of the value only: gradients are stopped (there is no pathwise sampler)."""
        if key is None:
            raise ValueError(
                "ScaleMixtureNormal.entropy() has no closed form; pass key=jax.random.key(...) for a Monte "
                "Carlo estimate (and num_samples=... to set its size)."
            )
        x = self.sample(key, num_samples)
        return jax.lax.stop_gradient(-jnp.mean(self.log_prob(x), axis=0))

    def mean(self) -> Array:
        """`0`."""
        return jnp.zeros(self.batch_shape, self.pi.dtype)

    def mode(self) -> Array:
        """`0` (both components peak there; the mixture is unimodal)."""
        return jnp.zeros(self.batch_shape, self.pi.dtype)

    def variance(self) -> Array:
        """`pi sigma1^2 + (1 - pi) sigma2^2`."""
        return self.pi * jnp.square(self.sigma1) + (1 - self.pi) * jnp.square(self.sigma2)

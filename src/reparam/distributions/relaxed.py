"""Continuous relaxations of discrete variables: Gumbel-Softmax / Concrete and straight-through.

Jang et al. 2017 and Maddison et al. 2017: `y = softmax((logits + g) / temperature)` with
`g ~ Gumbel(0, 1)`; as the temperature goes to 0 the sample approaches a one-hot draw from
`Categorical(logits)`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, logsumexp
from jaxtyping import Array, ArrayLike

from ..bijectors.sigmoid import Sigmoid
from ..validation import broadcast_params, check_positive, float_dtype
from .base import Distribution, Shape, as_shape, where_supported
from .categorical import check_logits
from .logistic import Logistic
from .transformed import Transformed


def hard_forward_soft_gradient(soft: Array, hard: Array) -> Array:
    """Forward value `hard`, gradient that of `soft`: `soft + stop_gradient(hard - soft)`."""
    return soft + jax.lax.stop_gradient(hard - soft)


def one_hot_argmax(soft: Array) -> Array:
    """The one-hot vector of `argmax` over the last axis, in `soft`'s dtype."""
    return jax.nn.one_hot(jnp.argmax(soft, -1), soft.shape[-1], dtype=soft.dtype)


class RelaxedOneHotCategorical(Distribution):
    """Concrete / Gumbel-Softmax over the simplex, `event_shape = (K,)`, with the exact density

    `log p(y) = lgamma(K) + (K - 1) log T + sum_k (logits_k - (T + 1) log y_k)
                - K logsumexp_k(logits_k - T log y_k)`

    (with respect to Lebesgue measure on the first K - 1 coordinates). With
    `straight_through=True`, samples are one-hot in the forward pass and carry the relaxed
    gradient; their log-density is that of the relaxed sample they came from.
    """

    temperature: Array
    logits: Array
    straight_through: bool = eqx.field(static=True)

    def __init__(
        self, temperature: ArrayLike, logits: ArrayLike, *, straight_through: bool = False, validate: bool = True
    ):
        logits = check_logits("RelaxedOneHotCategorical", logits, validate)
        if logits.ndim < 1 or logits.shape[-1] < 2:
            raise ValueError(
                f"RelaxedOneHotCategorical: logits need a last axis of K >= 2 categories, got shape {logits.shape}"
            )
        temperature = jnp.asarray(temperature, float_dtype(temperature, logits))
        temperature = check_positive("RelaxedOneHotCategorical", "temperature", temperature, validate)
        batch = jnp.broadcast_shapes(temperature.shape, logits.shape[:-1])
        self.temperature = jnp.broadcast_to(temperature, batch)
        self.logits = jnp.broadcast_to(logits.astype(self.temperature.dtype), batch + logits.shape[-1:])
        self.straight_through = straight_through

    @property
    def batch_shape(self) -> Shape:
        """The broadcast shape of `temperature` and `logits` without its last axis."""
        return self.temperature.shape

    @property
    def event_shape(self) -> Shape:
        """`(K,)`."""
        return self.logits.shape[-1:]

    def _draw_log(self, key, sample_shape: Shape) -> Array:
        gumbel = jax.random.gumbel(key, sample_shape + self.logits.shape, self.logits.dtype)
        return jax.nn.log_softmax((self.logits + gumbel) / self.temperature[..., None], axis=-1)

    def _finish(self, soft: Array) -> Array:
        return hard_forward_soft_gradient(soft, one_hot_argmax(soft)) if self.straight_through else soft

    def _draw(self, key, sample_shape):
        return self._finish(jnp.exp(self._draw_log(key, sample_shape)))

    def _log_prob_from_log(self, log_y: Array) -> Array:
        """The Concrete density over the categories with finite logits: a masked (`-inf`) category
        is always 0 and drops out, leaving a density over the remaining K' categories."""
        t = self.temperature
        live = jnp.isfinite(self.logits)
        k = jnp.sum(live, -1).astype(t.dtype)
        logits, log_y = jnp.where(live, self.logits, 0.0), jnp.where(live, log_y, 0.0)
        return (
            gammaln(k)
            + (k - 1) * jnp.log(t)
            + jnp.sum(jnp.where(live, logits - (t[..., None] + 1) * log_y, 0.0), -1)
            - k * logsumexp(jnp.where(live, logits - t[..., None] * log_y, -jnp.inf), -1)
        )

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: scores the draw from `log y` as drawn (accurate when components underflow)."""
        log_y = self._draw_log(key, as_shape(sample_shape))
        return self._finish(jnp.exp(log_y)), self._log_prob_from_log(log_y)

    def log_prob(self, value) -> Array:
        """`-inf` where some `y_k` is outside (0, 1]; the sum to one is not checked."""
        y = jnp.asarray(value, self.dtype)
        inside = jnp.all((y > 0) & (y <= 1), -1)
        y = jnp.where(inside[..., None], y, 1.0 / y.shape[-1])
        return where_supported(inside, self._log_prob_from_log(jnp.log(y)))


class RelaxedBernoulli(Transformed):
    """Binary Concrete: `y = sigmoid((logits + L) / T)`, `L ~ Logistic(0, 1)`; that is, the sigmoid
    of a `Logistic(logits / T, 1 / T)`, so its density comes from `Transformed`. With
    `straight_through=True` the forward value is `round(y)` and the gradient that of `y`."""

    straight_through: bool = eqx.field(static=True)

    def __init__(
        self, temperature: ArrayLike, logits: ArrayLike, *, straight_through: bool = False, validate: bool = True
    ):
        temperature, logits = broadcast_params("RelaxedBernoulli", temperature=temperature, logits=logits)
        temperature = check_positive("RelaxedBernoulli", "temperature", temperature, validate)
        super().__init__(Logistic(logits / temperature, 1.0 / temperature, validate=validate), Sigmoid())
        self.straight_through = straight_through

    @property
    def temperature(self) -> Array:
        """`T`, shape `batch_shape`."""
        return 1.0 / self.base.scale

    @property
    def logits(self) -> Array:
        """The logits of the Bernoulli being relaxed, shape `batch_shape`."""
        return self.base.loc / self.base.scale

    def _finish(self, soft: Array) -> Array:
        return hard_forward_soft_gradient(soft, jnp.round(soft)) if self.straight_through else soft

    def _draw(self, key, sample_shape):
        return self._finish(super()._draw(key, sample_shape))

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused through `Transformed` (sigmoid of a Logistic); the log-density is that of the
        relaxed sample even when `straight_through=True` rounds it."""
        soft, log_prob = super().rsample_and_log_prob(key, sample_shape)
        return self._finish(soft), log_prob

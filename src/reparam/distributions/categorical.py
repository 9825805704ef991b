"""Discrete distributions: Categorical and Bernoulli (not reparameterizable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..validation import check, check_finite, float_dtype
from .base import Distribution, Shape, where_supported


def check_logits(owner: str, logits: ArrayLike, validate: bool) -> Array:
    """Logits may be `-inf` (a masked category) but never NaN or `+inf`."""
    logits = jnp.asarray(logits, float_dtype(logits))
    bad = jnp.isnan(logits) | (logits == jnp.inf)
    return check(logits, bad, f"{owner}: logits must not be NaN or +inf", validate)


class Categorical(Distribution):
    """Categorical over `{0, ..., K-1}` with `p = softmax(logits)`; `event_shape = ()`.

    No pathwise sampler: `rsample` raises `NotReparameterizedError`. Use a score-function
    estimator with `sample`, or `RelaxedOneHotCategorical` (Gumbel-Softmax / straight-through).
    """

    reparameterized = False
    logits: Array

    def __init__(self, logits: ArrayLike, *, validate: bool = True):
        logits = check_logits("Categorical", logits, validate)
        if logits.ndim < 1:
            raise ValueError("Categorical: logits need a last axis of categories, got a scalar")
        self.logits = jax.nn.log_softmax(logits, axis=-1)

    @property
    def batch_shape(self) -> Shape:
        """The shape of `logits` without its last (category) axis."""
        return self.logits.shape[:-1]

    @property
    def num_categories(self) -> int:
        """`K`, the size of the last axis of `logits`."""
        return self.logits.shape[-1]

    @property
    def probs(self) -> Array:
        """`softmax(logits)`, shape `batch_shape + (K,)`."""
        return jnp.exp(self.logits)

    def _draw(self, key, sample_shape):
        return jax.random.categorical(key, self.logits, shape=sample_shape + self.batch_shape)

    def log_prob(self, value) -> Array:
        """`log p_k` for integer `k`; `-inf` outside `{0, ..., K-1}` or for non-integers."""
        k = jnp.asarray(value)
        k = jnp.broadcast_to(k, jnp.broadcast_shapes(k.shape, self.batch_shape))
        inside = (k >= 0) & (k < self.num_categories) & (k == jnp.floor(k))
        index = jnp.where(inside, k, 0).astype(jnp.int32)
        logits = jnp.broadcast_to(self.logits, index.shape + (self.num_categories,))
        picked = jnp.take_along_axis(logits, index[..., None], axis=-1)[..., 0]
        return where_supported(inside, picked)

    def entropy(self) -> Array:
        """`-sum_k p_k log p_k`; masked (`-inf` logit) categories contribute 0."""
        p = self.probs  # masked (-inf) categories contribute 0, with finite gradients (double where)
        return -jnp.sum(p * jnp.where(p > 0, self.logits, 0.0), -1)

    def mode(self) -> Array:
        """`argmax_k logits_k` (the first on ties), an integer of shape `batch_shape`."""
        return jnp.argmax(self.logits, -1)


class Bernoulli(Distribution):
    """Bernoulli on `{0, 1}` with `p = sigmoid(logits)`; not reparameterizable (see Categorical)."""

    reparameterized = False
    logits: Array

    def __init__(self, logits: ArrayLike, *, validate: bool = True):
        logits = jnp.asarray(logits, float_dtype(logits))
        self.logits = check_finite("Bernoulli", "logits", logits, validate)

    @property
    def batch_shape(self) -> Shape:
        """The shape of `logits`."""
        return self.logits.shape

    @property
    def probs(self) -> Array:
        """`p = sigmoid(logits)`, shape `batch_shape`."""
        return jax.nn.sigmoid(self.logits)

    def _draw(self, key, sample_shape):
        u = jax.random.uniform(key, sample_shape + self.batch_shape, self.logits.dtype)
        return (u < self.probs).astype(self.logits.dtype)

    def log_prob(self, value) -> Array:
        """`x log p + (1 - x) log(1 - p)` for `x` in {0, 1}; `-inf` for any other value."""
        x = jnp.asarray(value, self.logits.dtype)
        inside = (x == 0) | (x == 1)
        log_prob = jnp.where(x == 1, -jax.nn.softplus(-self.logits), -jax.nn.softplus(self.logits))
        return where_supported(inside, log_prob)

    def cdf(self, value) -> Array:
        """0 below 0, `1 - p` on [0, 1), 1 from 1 on."""
        x = jnp.asarray(value, self.logits.dtype)
        return jnp.where(x < 0, 0.0, jnp.where(x < 1, jax.nn.sigmoid(-self.logits), 1.0))

    def entropy(self) -> Array:
        """`-p log p - (1 - p) log(1 - p)`, from the logits with softplus (no `log 0`)."""
        p = self.probs
        return p * jax.nn.softplus(-self.logits) + (1 - p) * jax.nn.softplus(self.logits)

    def mean(self) -> Array:
        """`p`."""
        return self.probs

    def mode(self) -> Array:
        """1 where `p > 1/2`, else 0."""
        return (self.logits > 0).astype(self.logits.dtype)

    def variance(self) -> Array:
        """`p (1 - p)`."""
        return jax.nn.sigmoid(self.logits) * jax.nn.sigmoid(-self.logits)  # p (1 - p), no cancellation


class OneHotCategorical(Categorical):
    """Categorical whose values are one-hot vectors, `event_shape = (K,)`: the discrete
    counterpart of `RelaxedOneHotCategorical`, so one function `f(one_hot)` serves the exact,
    score-function and relaxed estimators alike."""

    @property
    def event_shape(self) -> Shape:
        """`(K,)`."""
        return self.logits.shape[-1:]

    def _draw(self, key, sample_shape):
        index = super()._draw(key, sample_shape)
        return jax.nn.one_hot(index, self.num_categories, dtype=self.logits.dtype)

    def log_prob(self, value) -> Array:
        """`sum_k x_k log p_k` for one-hot `x`; `-inf` for anything that is not one-hot."""
        x = jnp.asarray(value, self.logits.dtype)
        inside = jnp.all((x == 0) | (x == 1), -1) & (jnp.sum(x, -1) == 1)
        picked = jnp.sum(jnp.where(x == 1, self.logits, 0.0), -1)
        return where_supported(inside, picked)

    def mode(self) -> Array:
        """The one-hot vector of `argmax_k logits_k`, shape `batch_shape + (K,)`."""
        return jax.nn.one_hot(jnp.argmax(self.logits, -1), self.num_categories, dtype=self.logits.dtype)

    def mean(self) -> Array:
        """`p = softmax(logits)`, shape `batch_shape + (K,)`."""
        return self.probs

    def variance(self) -> Array:
        """`p_k (1 - p_k)` per coordinate."""
        return self.probs * (1 - self.probs)

"""Beta distribution with implicit reparameterization."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, digamma, xlog1py, xlogy
from jaxtyping import Array, ArrayLike

from ..validation import broadcast_params, check_positive
from .base import Distribution, Shape, as_shape, log_beta, where_supported


class Beta(Distribution):
    """Beta(a, b): `log p(x) = (a - 1) log x + (b - 1) log(1 - x) - log B(a, b)` on [0, 1].

    Drawn as `x = X / (X + Y)` with `X ~ Gamma(a)`, `Y ~ Gamma(b)` in log space, each gamma
    implicitly reparameterized (Figurnov et al. 2018), so gradients reach `a` and `b`.
    """

    a: Array
    b: Array

    def __init__(self, a: ArrayLike, b: ArrayLike, *, validate: bool = True):
        a, b = broadcast_params("Beta", a=a, b=b)
        self.a = check_positive("Beta", "a", a, validate)
        self.b = check_positive("Beta", "b", b, validate)

    @property
    def batch_shape(self) -> Shape:
        """The broadcast shape of `a` and `b`."""
        return self.a.shape

    def _draw_logs(self, key, sample_shape: Shape) -> tuple[Array, Array]:
        """`(log x, log(1 - x))`, both accurate near 0 and 1."""
        key_a, key_b = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        log_ga = jax.random.loggamma(key_a, jnp.broadcast_to(self.a, shape), dtype=self.a.dtype)
        log_gb = jax.random.loggamma(key_b, jnp.broadcast_to(self.b, shape), dtype=self.b.dtype)
        return -jax.nn.softplus(log_gb - log_ga), -jax.nn.softplus(log_ga - log_gb)

    def _draw(self, key, sample_shape):
        log_x, _ = self._draw_logs(key, sample_shape)
        return jnp.exp(log_x)

    def rsample_and_log_prob(self, key, sample_shape=()):
        """Fused: scores the draw from `log x` and `log(1 - x)` as drawn, accurate near 0 and 1."""
        log_x, log1m_x = self._draw_logs(key, as_shape(sample_shape))
        log_prob = (self.a - 1) * log_x + (self.b - 1) * log1m_x - log_beta(self.a, self.b)
        return jnp.exp(log_x), log_prob

    def log_prob(self, value) -> Array:
        """`(a - 1) log x + (b - 1) log(1 - x) - log B(a, b)` on [0, 1], `-inf` outside."""
        x = jnp.asarray(value, self.a.dtype)
        inside = (x >= 0) & (x <= 1)
        x = jnp.where(inside, x, 0.5)
        log_prob = xlogy(self.a - 1, x) + xlog1py(self.b - 1, -x) - log_beta(self.a, self.b)
        return where_supported(inside, log_prob)

    def cdf(self, value) -> Array:
        """The regularised incomplete beta function `I_x(a, b)`, with `x` clipped to [0, 1]."""
        x = jnp.clip(jnp.asarray(value, self.a.dtype), 0.0, 1.0)
        return betainc(self.a, self.b, x)

    def entropy(self) -> Array:
        """`log B(a, b) - (a - 1) psi(a) - (b - 1) psi(b) + (a + b - 2) psi(a + b)`."""
        a, b = self.a, self.b
        return log_beta(a, b) - (a - 1) * digamma(a) - (b - 1) * digamma(b) + (a + b - 2) * digamma(a + b)

    def mean(self) -> Array:
        """`a / (a + b)`."""
        return self.a / (self.a + self.b)

    def mode(self) -> Array:
        """`(a - 1) / (a + b - 2)` for `a, b > 1`; 0 or 1 at an unbounded end; 0.5 for `a = b = 1`;
        for `a, b < 1` (two modes, 0 and 1) returns 0."""
        a, b = self.a, self.b
        interior = (a - 1) / jnp.where((a > 1) & (b > 1), a + b - 2, 1.0)
        edge = jnp.where((a <= 1) & (b > 1), 0.0, jnp.where((a > 1) & (b <= 1), 1.0, 0.0))
        edge = jnp.where((a == 1) & (b == 1), 0.5, edge)
        return jnp.where((a > 1) & (b > 1), interior, edge)

    def variance(self) -> Array:
        """`a b / ((a + b)^2 (a + b + 1))`."""
        total = self.a + self.b
        return self.a * self.b / (jnp.square(total) * (total + 1))

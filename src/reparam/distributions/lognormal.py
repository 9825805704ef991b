"""Log-normal distribution: `exp` of a Normal."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import ndtr
from jaxtyping import Array, ArrayLike

from ..bijectors.exp import Exp
from .base import HALF_LOG_2PI
from .normal import Normal
from .transformed import Transformed


class LogNormal(Transformed):
    """`z = exp(loc + scale * eps)`; `loc`, `scale` are those of the underlying Normal."""

    def __init__(self, loc: ArrayLike, scale: ArrayLike, *, validate: bool = True):
        super().__init__(Normal(loc, scale, validate=validate), Exp())

    @property
    def loc(self) -> Array:
        """Mean of `log z`."""
        return self.base.loc

    @property
    def scale(self) -> Array:
        """Standard deviation of `log z`."""
        return self.base.scale

    def cdf(self, value) -> Array:
        """`Phi((log x - loc) / scale)` for `x > 0`, else 0."""
        x = jnp.asarray(value, self.dtype)
        positive = x > 0
        z = (jnp.log(jnp.where(positive, x, 1.0)) - self.loc) / self.scale
        return jnp.where(positive, ndtr(z), 0.0)

    def entropy(self) -> Array:
        """`loc + (1 + log(2 pi)) / 2 + log(scale)`."""
        return self.loc + 0.5 + HALF_LOG_2PI + jnp.log(self.scale)

    def mean(self) -> Array:
        """`exp(loc + scale^2 / 2)`."""
        return jnp.exp(self.loc + 0.5 * jnp.square(self.scale))

    def mode(self) -> Array:
        """`exp(loc - scale^2)`."""
        return jnp.exp(self.loc - jnp.square(self.scale))

    def variance(self) -> Array:
        """`(exp(scale^2) - 1) exp(2 loc + scale^2)`, with `expm1` for small scales."""
        s2 = jnp.square(self.scale)
        return jnp.expm1(s2) * jnp.exp(2 * self.loc + s2)

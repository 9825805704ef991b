"""The distribution contract shared by every distribution in reparam.

Shapes follow one rule: a draw with `sample_shape` has shape
`sample_shape + batch_shape + event_shape`, and `log_prob` of it has `sample_shape + batch_shape`.

Each distribution implements one sampling primitive, `_draw(key, sample_shape)`. For a
reparameterized distribution it is a differentiable function `g_phi(eps)` of parameter-free noise,
so `rsample` carries gradients to every parameter; `sample` is the same draw with gradients stopped.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, gammaln
from jaxtyping import Array, ArrayLike, PRNGKeyArray

Shape = tuple[int, ...]

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
EULER_GAMMA = 0.5772156649015329


class NotReparameterizedError(TypeError):
    """Raised by `rsample` on a distribution that has no pathwise sampler."""


def as_shape(sample_shape: int | Sequence[int]) -> Shape:
    """Normalise `sample_shape` (an int or a sequence of ints) to a tuple."""
    if isinstance(sample_shape, (int, np.integer)):
        return (int(sample_shape),)
    return tuple(int(n) for n in sample_shape)


class Distribution(eqx.Module):
    """Base class: subclasses set the parameters, `batch_shape`, `event_shape` and `_draw`."""

    reparameterized: ClassVar[bool] = True

    @property
    def batch_shape(self) -> Shape:
        raise NotImplementedError

    @property
    def event_shape(self) -> Shape:
        return ()

    @property
    def dtype(self) -> jnp.dtype:
        """The floating dtype of the parameters (what samples and log-densities use)."""
        for leaf in jax.tree_util.tree_leaves(self):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                return jnp.result_type(leaf)
        return jnp.result_type(float)

    def _draw(self, key: PRNGKeyArray, sample_shape: Shape) -> Array:
        """The one sampling primitive: `sample_shape + batch_shape + event_shape`."""
        raise NotImplementedError

    # --- sampling -------------------------------------------------------------------------
    def rsample(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> Array:
        """Pathwise sample `z = g_phi(eps)`: gradients flow to the parameters."""
        if not self.reparameterized:
            raise NotReparameterizedError(
                f"{type(self).__name__} has no pathwise sampler (rsample). Use a score-function "
                "estimator (reparam.estimators.score_function, REINFORCE with a baseline) with "
                "`sample`, or a relaxation: RelaxedOneHotCategorical / RelaxedBernoulli "
                "(Gumbel-Softmax), optionally with straight_through=True."
            )
        return self._draw(key, as_shape(sample_shape))

    def sample(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> Array:
        """The same draw as `rsample` with gradients stopped (what score-function needs)."""
        return jax.lax.stop_gradient(self._draw(key, as_shape(sample_shape)))

    def rsample_and_log_prob(
        self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()
    ) -> tuple[Array, Array]:
        """Fused pathwise sample and its log-density (overridden to reuse the noise)."""
        x = self.rsample(key, sample_shape)
        return x, self.log_prob(x)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()
    ) -> tuple[Array, Array]:
        """A stopped sample and its log-density, differentiable in the parameters."""
        x = self.sample(key, sample_shape)
        return x, self.log_prob(x)

    # --- densities and moments ------------------------------------------------------------
    def log_prob(self, value: ArrayLike) -> Array:
        raise self._missing("log_prob")

    def cdf(self, value: ArrayLike) -> Array:
        raise self._missing("cdf")

    def entropy(self) -> Array:
        raise self._missing("entropy")

    def mean(self) -> Array:
        raise self._missing("mean")

    def mode(self) -> Array:
        raise self._missing("mode")

    def variance(self) -> Array:
        raise self._missing("variance")

    def stddev(self) -> Array:
        return jnp.sqrt(self.variance())

    def _missing(self, method: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not implement {method}().")


def log_beta(a: Array, b: Array) -> Array:
    """`log B(a, b)`. In float64 `lgamma(a) + lgamma(b) - lgamma(a + b)` (jax's `betaln` is off
    by up to 1e-6 there); in lower precision jax's `betaln`, which avoids the cancellation."""
    if jnp.result_type(a, b) == jnp.float64:
        return gammaln(a) + gammaln(b) - gammaln(a + b)
    return betaln(a, b)


def where_supported(inside: Array, log_prob: Array) -> Array:
    """`log_prob` where `inside`, else `-inf` (never NaN)."""
    return jnp.where(inside, log_prob, -jnp.inf)

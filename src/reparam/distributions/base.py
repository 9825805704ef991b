"""The distribution contract shared by every distribution in reparam.

Shapes follow one rule: a draw with `sample_shape` has shape
`sample_shape + batch_shape + event_shape`, and `log_prob` of it has `sample_shape + batch_shape`.

Each distribution implements one sampling primitive, `_draw(key, sample_shape)`. For a
reparameterized distribution it is a differentiable function `g_phi(eps)` of parameter-free noise,
so `rsample` carries gradients to every parameter; `sample` is the same draw with gradients stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, gammaln
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..bijectors.base import inherit_docstrings

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
    """Base class of every distribution: an `equinox.Module` (a pytree) holding its parameters.

    Subclasses set the parameters, `batch_shape`, `event_shape` and the one sampling primitive
    `_draw(key, sample_shape)`; `rsample`, `sample` and the fused `*_and_log_prob` are built here
    from it. Shapes: a draw has `sample_shape + batch_shape + event_shape`, its log-density
    `sample_shape + batch_shape`; moments (`mean`, `mode`, `variance`, `stddev`) have
    `batch_shape + event_shape`, `entropy` has `batch_shape`.

    `reparameterized` is True when `rsample` is pathwise (`z = g_phi(eps)`); when False, `rsample`
    raises `NotReparameterizedError` and `sample` with a score-function estimator is the route.
    """

    reparameterized: ClassVar[bool] = True
    """True when `rsample` is a pathwise sampler; False for discrete distributions."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherit_docstrings(cls)

    @property
    def batch_shape(self) -> Shape:
        """Shape of a batch of independent distributions (the broadcast shape of the parameters)."""
        raise NotImplementedError

    @property
    def event_shape(self) -> Shape:
        """Shape of one draw of one distribution: `()` for scalars, `(d,)` for vectors."""
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
        """Pathwise sample `z = g_phi(eps)`, `eps ~ p(eps)` parameter-free: gradients flow to the
        parameters. Shape `sample_shape + batch_shape + event_shape` (an int `sample_shape` means
        `(n,)`). Raises `NotReparameterizedError` when the distribution has no pathwise sampler."""
        if not self.reparameterized:
            raise NotReparameterizedError(
                f"{type(self).__name__} has no pathwise sampler (rsample). Use a score-function "
                "estimator (reparam.estimators.score_function, REINFORCE with a baseline) with "
                "`sample`, or a relaxation: RelaxedOneHotCategorical / RelaxedBernoulli "
                "(Gumbel-Softmax), optionally with straight_through=True."
            )
        return self._draw(key, as_shape(sample_shape))

    def sample(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> Array:
        """The same draw as `rsample` with gradients stopped (what score-function needs).

        Shape `sample_shape + batch_shape + event_shape`; the same key gives the same value as
        `rsample`. Works for every distribution, reparameterized or not."""
        return jax.lax.stop_gradient(self._draw(key, as_shape(sample_shape)))

    def rsample_and_log_prob(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> tuple[Array, Array]:
        """`(z, log p(z))` with `z = rsample(key, sample_shape)`, shapes
        `sample_shape + batch_shape + event_shape` and `sample_shape + batch_shape`.

        Subclasses override it to score the sample from its noise `eps` (or a pre-transform value)
        instead of from `z`, which is cheaper and exact where inverting `z` is not (e.g. a
        saturated `tanh`). Differentiable in the parameters through both outputs."""
        x = self.rsample(key, sample_shape)
        return x, self.log_prob(x)

    def sample_and_log_prob(self, key: PRNGKeyArray, sample_shape: int | Sequence[int] = ()) -> tuple[Array, Array]:
        """`(z, log p(z))` with `z = sample(key, sample_shape)` (gradients stopped); `log p(z)` is
        differentiable in the parameters (the score-function route). Shapes as
        `rsample_and_log_prob`."""
        x = self.sample(key, sample_shape)
        return x, self.log_prob(x)

    # --- densities and moments ------------------------------------------------------------
    def log_prob(self, value: ArrayLike) -> Array:
        """`log p(value)`, the log-density (or log-mass for discrete distributions).

        `value` has shape `sample_shape + batch_shape + event_shape` (or broadcasts to it); the
        result has `sample_shape + batch_shape`. Values outside the support give `-inf`, not NaN.
        """
        raise self._missing("log_prob")

    def cdf(self, value: ArrayLike) -> Array:
        """`P(X <= value)` elementwise, shape `sample_shape + batch_shape`; only where it is cheap
        (scalar events), otherwise `NotImplementedError`."""
        raise self._missing("cdf")

    def entropy(self) -> Array:
        """`H[p] = -E_p[log p(x)]` in nats, shape `batch_shape` (closed form where one exists)."""
        raise self._missing("entropy")

    def mean(self) -> Array:
        """`E_p[x]`, shape `batch_shape + event_shape`."""
        raise self._missing("mean")

    def mode(self) -> Array:
        """`argmax_x p(x)`, shape `batch_shape + event_shape` (subclasses say how ties and
        unbounded densities are resolved)."""
        raise self._missing("mode")

    def variance(self) -> Array:
        """`Var_p[x] = E_p[(x - E_p[x])^2]` elementwise, shape `batch_shape + event_shape`."""
        raise self._missing("variance")

    def stddev(self) -> Array:
        """`sqrt(variance())`, shape `batch_shape + event_shape`."""
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

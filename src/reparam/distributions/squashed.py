"""The tanh-squashed Normal of Soft Actor-Critic, rescaled to any action bounds."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import ndtr
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..bijectors.affine import Affine
from ..bijectors.chain import Chain
from ..bijectors.tanh import Tanh, clipped_atanh
from ..validation import broadcast_params, check
from .normal import Normal
from .transformed import Transformed


class TanhNormal(Transformed):
    """`a = low + (tanh(u) + 1) (high - low) / 2`, `u = loc + scale * eps`, `eps ~ N(0, 1)`.

    `log p(a) = log N(u; loc, scale) - log(1 - tanh(u)^2) - log((high - low) / 2)` per dimension,
    with `log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))` (exact in float32, no epsilon).
    `rsample_and_log_prob` scores from `u` and is exact for every `u`; `log_prob(a)` of a given
    action inverts it with a clipped atanh, exact until tanh saturates in the dtype (|u| ~ 8 in
    float32). Elementwise: `batch_shape` is the broadcast shape of the parameters; wrap in
    `Independent(..., 1)` to score whole action vectors.
    """

    def __init__(
        self,
        loc: ArrayLike,
        scale: ArrayLike,
        low: ArrayLike = -1.0,
        high: ArrayLike = 1.0,
        *,
        validate: bool = True,
    ):
        loc, scale, low, high = broadcast_params("TanhNormal", loc=loc, scale=scale, low=low, high=high)
        bad = ~(jnp.isfinite(low) & jnp.isfinite(high) & (low < high))
        low = check(low, bad, "TanhNormal: need finite low < high", validate)
        rescale = Affine(0.5 * (low + high), 0.5 * (high - low), validate=False)
        super().__init__(Normal(loc, scale, validate=validate), Chain([rescale, Tanh()]))

    @property
    def loc(self) -> Array:
        """Mean of the pre-squash Normal `u`."""
        return self.base.loc

    @property
    def scale(self) -> Array:
        """Standard deviation of the pre-squash Normal `u`."""
        return self.base.scale

    @property
    def low(self) -> Array:
        """Lower action bound."""
        rescale = self.bijector.bijectors[0]
        return rescale.shift - rescale.scale

    @property
    def high(self) -> Array:
        """Upper action bound."""
        rescale = self.bijector.bijectors[0]
        return rescale.shift + rescale.scale

    def mode(self) -> Array:
        """The deterministic action `low + (tanh(loc) + 1) (high - low) / 2` (what SAC evaluates).
        It is the image of the Normal's mode, not in general the mode of the squashed density."""
        return self.bijector.forward(self.loc)

    def cdf(self, value) -> Array:
        """`Phi((atanh(t) - loc) / scale)` with `t = (2a - low - high) / (high - low)`; 0 and 1 outside."""
        rescale = self.bijector.bijectors[0]
        t = (jnp.asarray(value, self.dtype) - rescale.shift) / rescale.scale
        inner = ndtr((clipped_atanh(t) - self.loc) / self.scale)
        return jnp.where(t <= -1, 0.0, jnp.where(t >= 1, 1.0, inner))

    def entropy(self, key: PRNGKeyArray | None = None, num_samples: int = 1024) -> Array:
        """No closed form: the Monte Carlo estimate `-mean_i log p(a_i)`, `a_i ~ p`, from
        `num_samples` draws with `key` (required: ValueError without). Shape `batch_shape`;
        pathwise-differentiable in the parameters."""
        _, log_prob = self.rsample_and_log_prob(_need_key(key, "entropy"), num_samples)
        return -jnp.mean(log_prob, axis=0)

    def mean(self, key: PRNGKeyArray | None = None, num_samples: int = 1024) -> Array:
        """No closed form: the Monte Carlo estimate `mean_i a_i`, `a_i ~ p`, from `num_samples`
        draws with `key` (required: ValueError without). Shape `batch_shape`."""
        return jnp.mean(self.rsample(_need_key(key, "mean"), num_samples), axis=0)


def _need_key(key, method: str):
    """`key`, or a ValueError saying that `method` needs one (no closed form)."""
    if key is None:
        raise ValueError(
            f"TanhNormal.{method}() has no closed form; pass key=jax.random.key(...) for a Monte "
            "Carlo estimate (and num_samples=... to set its size)."
        )
    return key

"""Composition of bijectors."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from .base import Bijector, sum_rightmost


class Chain(Bijector):
    """`Chain([f, g, h])(x) = f(g(h(x)))`: the last bijector is applied first (function order).

    The log-det is the sum of the parts, each reduced to the chain's `event_ndims`.
    """

    bijectors: tuple[Bijector, ...]

    def __init__(self, bijectors: Sequence[Bijector]):
        if not bijectors:
            raise ValueError("Chain: give at least one bijector")
        self.bijectors = tuple(bijectors)

    @property
    def event_ndims(self) -> int:  # type: ignore[override]
        """The largest `event_ndims` of the parts."""
        return max(b.event_ndims for b in self.bijectors)

    @property
    def onto(self) -> bool:  # type: ignore[override]
        """True when every part is onto `R^d`."""
        return all(b.onto for b in self.bijectors)

    @property
    def range_point(self):  # type: ignore[override]
        """The innermost range point pushed through the elementwise stages."""
        point = jnp.asarray(self.bijectors[-1].range_point)
        for b in reversed(self.bijectors[:-1]):
            if b.event_ndims == 0:
                point = b.forward(point)
        return point

    def forward_and_log_det(self, x):
        """Applies the parts last to first, summing their log-dets (each reduced to the chain's
        `event_ndims`)."""
        total = 0.0
        for b in reversed(self.bijectors):
            x, log_det = b.forward_and_log_det(x)
            total = total + sum_rightmost(log_det, self.event_ndims - b.event_ndims)
        return x, total

    def inverse_and_log_det(self, y):
        """Inverts the parts first to last, summing their inverse log-dets."""
        total = 0.0
        for b in self.bijectors:
            y, log_det = b.inverse_and_log_det(y)
            total = total + sum_rightmost(log_det, self.event_ndims - b.event_ndims)
        return y, total

    def forward(self, x):
        """`f(g(h(x)))` for `Chain([f, g, h])`."""
        for b in reversed(self.bijectors):
            x = b.forward(x)
        return x

    def inverse(self, y):
        """`h^-1(g^-1(f^-1(y)))` for `Chain([f, g, h])`."""
        for b in self.bijectors:
            y = b.inverse(y)
        return y

    def forward_log_det_jacobian(self, x):
        """The sum of the parts' log-dets along the forward pass."""
        return self.forward_and_log_det(x)[1]

    def in_range(self, y):
        """Checked stage by stage on the inverse pass (out-of-range values replaced by a safe point);
        `onto` parts need no check, and the inverse pass stops after the last part that does."""
        inside = jnp.ones(jnp.shape(y), bool)
        checked = [not b.onto for b in self.bijectors]
        for i, b in enumerate(self.bijectors):
            if not any(checked[i:]):
                break
            ok = jnp.ones(jnp.shape(y), bool) if b.onto else b.in_range(y)
            inside = inside & ok
            y = b.inverse(y if b.onto else jnp.where(ok, y, b.range_point))
        return inside

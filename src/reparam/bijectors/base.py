"""The bijector contract: an invertible map with its log-det-Jacobian.

`forward_log_det_jacobian(x) = log |det dy/dx|`. Elementwise bijectors (`event_ndims = 0`) return
it per element; a bijector acting on vectors (`event_ndims = 1`) returns it per vector.
`in_range(y)` tells where `inverse` is defined; `range_point` is a value inside the range, used to
keep gradients finite where a caller masks out-of-range values. `onto = True` marks a bijector onto
all of `R^d` (`in_range` is all True), so callers skip the support check.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array


def sum_rightmost(x: Array, ndims: int) -> Array:
    """Sum the last `ndims` axes of `x` (`x` itself when `ndims == 0`)."""
    return jnp.sum(x, axis=tuple(range(-ndims, 0))) if ndims > 0 else x


def inherit_docstrings(cls: type) -> None:
    """Give each public method and property that `cls` overrides without a docstring the docstring
    of the nearest base class that has one.

    `inspect.getdoc(Class.method)` already falls back to the base class; this makes
    `help(instance.method)` show the contract as well (equinox's bound methods copy the
    function's own `__doc__`). Called from `__init_subclass__` of `Bijector` and `Distribution`.
    """
    for name, attr in list(vars(cls).items()):
        if name.startswith("_") or not (inspect.isfunction(attr) or isinstance(attr, property)):
            continue
        if attr.__doc__:
            continue
        for base in cls.__mro__[1:]:
            doc = getattr(base.__dict__.get(name), "__doc__", None)
            if doc:
                attr.__doc__ = doc  # a function's or a property's, both writable
                break


class Bijector(eqx.Module):
    """Base class of every bijector: an invertible, differentiable map `y = f(x)`.

    Subclasses implement `forward`, `inverse` and `forward_log_det_jacobian`, and override the
    fused `forward_and_log_det` / `inverse_and_log_det` where sharing work pays. Shapes: `forward`
    and `inverse` keep the shape of their input; the log-dets have the input's shape with the
    last `event_ndims` axes summed away. A bijector is callable: `b(x) == b.forward(x)`.

    Class attributes: `event_ndims` (0: elementwise; 1: acts on vectors along the last axis),
    `range_point` (a point inside the range of `forward`, substituted for out-of-range values) and
    `onto` (True when `forward` maps onto all of `R^d`: no value is out of range).
    """

    event_ndims: ClassVar[int] = 0
    """Number of rightmost axes `f` acts on jointly (0: elementwise); the log-dets sum them."""
    range_point: ClassVar[float] = 0.0
    """A value inside the range of `forward`, substituted for out-of-range inputs to `inverse`."""
    onto: ClassVar[bool] = False
    """True when `forward` maps onto all of `R^d` (`in_range` is all True): `Transformed.log_prob`
    then skips the support check (a constant all-True mask XLA would fold at every batch size).
    False (the safe default) for maps onto a part, e.g. `Exp`, `Sigmoid`, `Tanh`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherit_docstrings(cls)

    def forward(self, x: Array) -> Array:
        """`y = f(x)`, same shape as `x`."""
        raise NotImplementedError

    def inverse(self, y: Array) -> Array:
        """`x = f^-1(y)`, same shape as `y`; defined where `in_range(y)` holds."""
        raise NotImplementedError

    def forward_log_det_jacobian(self, x: Array) -> Array:
        """`log |det df/dx|` at `x`: shape `x.shape` for `event_ndims = 0` (elementwise
        `log |f'(x)|`), `x.shape[:-event_ndims]` otherwise."""
        raise NotImplementedError

    def inverse_log_det_jacobian(self, y: Array) -> Array:
        """`log |det df^-1/dy| = -log |det df/dx|` at `x = f^-1(y)`; shape as
        `forward_log_det_jacobian`."""
        return -self.forward_log_det_jacobian(self.inverse(y))

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        """`(f(x), log |det df/dx|)` in one pass: what a transformed distribution uses to score its
        own samples without inverting them."""
        return self.forward(x), self.forward_log_det_jacobian(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        """`(f^-1(y), log |det df^-1/dy|)` in one pass, the second `-log |det df/dx|` at
        `x = f^-1(y)`; what `Transformed.log_prob` uses to score a given value."""
        x = self.inverse(y)
        return x, -self.forward_log_det_jacobian(x)

    def in_range(self, y: Array) -> Array:
        """Boolean mask, shape `y.shape`, of values the forward map can reach (all True by
        default). Elementwise even for `event_ndims > 0`; callers reduce over event axes. Callers
        may skip it when `onto` is True."""
        return jnp.ones(jnp.shape(y), bool)

    def __call__(self, x: Array) -> Array:
        """`forward(x)`."""
        return self.forward(x)


class FusedBijector(Bijector):
    """A bijector written as its two fused maps: subclasses implement `forward_and_log_det` and
    `inverse_and_log_det` (the work is shared, e.g. one conditioner pass); `forward`, `inverse` and
    both log-dets are read off them."""

    def forward(self, x: Array) -> Array:
        return self.forward_and_log_det(x)[0]

    def inverse(self, y: Array) -> Array:
        return self.inverse_and_log_det(y)[0]

    def forward_log_det_jacobian(self, x: Array) -> Array:
        return self.forward_and_log_det(x)[1]

    def inverse_log_det_jacobian(self, y: Array) -> Array:
        return self.inverse_and_log_det(y)[1]

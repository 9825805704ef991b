"""RealNVP-style affine coupling (Dinh et al. 2017) for normalizing flows.

With a binary `mask` over the last axis, the masked part passes through unchanged and conditions
an affine map of the rest:
`y = mask * x + (1 - mask) * (x * exp(log_scale(mask * x)) + shift(mask * x))`,
`log|det dy/dx| = sum((1 - mask) * log_scale)`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..nn import mlp, over_leading_axes
from .base import Bijector, FusedBijector

Conditioner = Callable[[Array], tuple[Array, Array]]


class CouplingMLP(eqx.Module):
    """Conditioner `x_masked -> (shift, log_scale)`: an MLP whose last layer starts at zero (the
    coupling starts as the identity) and whose `log_scale` is bounded to (-bound, bound) by tanh.

    Without `mask` the MLP maps all `dim` coordinates (the masked ones zero) to `2 dim` outputs. With
    the coupling's `mask` `(dim,)` (True: kept) it reads only the kept coordinates and outputs only
    the free ones' parameters, `len(kept) -> 2 len(free)`, zeros elsewhere: the same map with about
    half the work and memory (what `make_flow("realnvp")` builds).
    """

    net: eqx.nn.Sequential
    bound: float = eqx.field(static=True)
    kept: tuple[int, ...] | None = eqx.field(static=True)
    free: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        *,
        key: PRNGKeyArray,
        bound: float = 3.0,
        mask: ArrayLike | None = None,
        hidden_sizes: tuple[int, ...] | None = None,
    ):
        """`hidden_sizes` (default `(width,) * depth`) sets unequal hidden widths."""
        hidden = tuple(hidden_sizes) if hidden_sizes is not None else (width,) * depth
        if mask is None:
            self.kept = self.free = None
            sizes = (dim, 2 * dim)
        else:
            mask = checked_mask("CouplingMLP", mask)
            if mask.shape != (dim,):
                raise ValueError(f"CouplingMLP: mask must have shape ({dim},), got {mask.shape}")
            self.kept = tuple(int(i) for i in np.flatnonzero(mask))
            self.free = tuple(int(i) for i in np.flatnonzero(~mask))
            sizes = (len(self.kept), 2 * len(self.free))
        self.net = mlp(*sizes, hidden, activation=jax.nn.relu, zero_output=True, key=key)
        self.bound = bound

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """`x` `(dim,)` (masked) -> `(shift, log_scale)`, each `(dim,)`."""
        if self.kept is None:
            shift, raw = jnp.split(self.net(x), 2)
            return shift, self.bound * jnp.tanh(raw / self.bound)
        shift, raw = jnp.split(self.net(take_coordinates(x, self.kept)), 2)
        zeros = jnp.zeros(len(self.kept), shift.dtype)
        log_scale = self.bound * jnp.tanh(raw / self.bound)
        return tuple(merge_coordinates(zeros, part, self.kept, self.free) for part in (shift, log_scale))


class MaskedCoupling(FusedBijector):
    """Affine coupling on vectors (`event_ndims = 1`); `conditioner(v) -> (shift, log_scale)`."""

    event_ndims = 1
    onto = True  # an affine map of the free coordinates, scale exp(log_scale) > 0
    mask: Array
    conditioner: Conditioner

    def __init__(self, mask: ArrayLike, conditioner: Conditioner):
        """`mask` `(d,)` of zeros and ones or booleans (1 / True: kept), checked in numpy so the layer
        can be built under `jit` / `eval_shape`; `conditioner(v) -> (shift, log_scale)`, each `(d,)`."""
        self.mask = jnp.asarray(checked_mask("MaskedCoupling", mask))
        self.conditioner = conditioner

    def _params(self, x: Array) -> tuple[Array, Array]:
        kept = jnp.where(self.mask, x, 0.0)
        shift, log_scale = over_leading_axes(self.conditioner, kept)
        free = ~self.mask
        return jnp.where(free, shift, 0.0), jnp.where(free, log_scale, 0.0)

    def forward_and_log_det(self, x):
        shift, log_scale = self._params(x)
        return x * jnp.exp(log_scale) + shift, jnp.sum(log_scale, -1)

    def inverse_and_log_det(self, y):
        shift, log_scale = self._params(y)  # the masked part of y equals that of x
        return (y - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, -1)


class SplineCoupling(Bijector):
    """Coupling with a rational-quadratic spline (Durkan et al. 2019) of the free part
    (`event_ndims = 1`).

    With a binary `mask` over the last axis of size `dim`, the masked (kept) coordinates pass
    through unchanged; each free (transformed) coordinate goes through its own
    `RationalQuadraticSpline` with `num_bins` bins on `[-bound, bound]` (identity outside), whose
    `3 num_bins - 1` unconstrained parameters come from an MLP (`reparam.nn.mlp`, relu, `depth`
    hidden layers of `width`) of the kept coordinates concatenated with an optional context vector:
    `len(kept) + context_size` inputs, `len(transformed) * (3 num_bins - 1)` outputs. Only the
    transformed coordinates are evaluated; their indices are static tuples read off the numpy mask,
    so layers built with one mask stack under `Scan`. The MLP's last layer starts at zero, so a fresh
    layer is the identity (all-zero spline parameters). `log|det dy/dx|` is the sum of the
    transformed coordinates' `log dy_i/dx_i`.

    Conditional flows: build with `context_size > 0`, then `condition(c)` returns the layer bound
    to `c` `(context_size,)` or `(..., context_size)`, a field whose leading axes broadcast against
    those of `x`; `forward(x)` etc. keep the Bijector signature, so Chain, Scan and Transformed work
    unchanged and `autoregressive.condition(flow, c)` sets `c` on every such layer of a flow.
    Every input and parameter must share one dtype (float32 as built; cast the tree for float64).
    """

    event_ndims = 1
    onto = True  # monotone splines of [-bound, bound] onto itself, identity tails
    net: eqx.nn.Sequential
    context: Array | None
    kept: tuple[int, ...] = eqx.field(static=True)
    transformed: tuple[int, ...] = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)

    def __init__(
        self,
        mask: ArrayLike,
        *,
        key: PRNGKeyArray,
        num_bins: int = 8,
        bound: float = 3.0,
        width: int = 64,
        depth: int = 2,
        context_size: int = 0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        from .spline import check_spline_sizes

        mask = checked_mask("SplineCoupling", mask)  # in numpy: the layer can be built under jit
        check_spline_sizes("SplineCoupling", num_bins, float(bound), min_bin_width, min_bin_height, min_derivative)
        if int(context_size) != context_size or context_size < 0:
            raise ValueError(f"SplineCoupling: context_size must be a non-negative integer, got {context_size}")
        self.kept = tuple(int(i) for i in np.flatnonzero(mask))
        self.transformed = tuple(int(i) for i in np.flatnonzero(~mask))
        self.net = mlp(
            len(self.kept) + context_size,
            len(self.transformed) * (3 * num_bins - 1),
            (width,) * depth,
            activation=jax.nn.relu,
            zero_output=True,
            key=key,
        )
        self.context = None
        self.num_bins = int(num_bins)
        self.bound = float(bound)
        self.context_size = int(context_size)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)

    @property
    def dim(self) -> int:
        """The event size `d`."""
        return len(self.kept) + len(self.transformed)

    @property
    def mask(self) -> np.ndarray:
        """The boolean mask `(d,)`: True where a coordinate is kept (numpy, static)."""
        mask = np.zeros(self.dim, bool)
        mask[list(self.kept)] = True
        return mask

    def condition(self, context: ArrayLike) -> SplineCoupling:
        """This layer with its context set to `context` `(context_size,)` or `(..., context_size)`."""
        context = jnp.asarray(context)
        if self.context_size == 0 or context.ndim == 0 or context.shape[-1] != self.context_size:
            raise ValueError(
                f"SplineCoupling: context must have shape (..., {self.context_size}), got {context.shape}"
                + (" (this layer was built with context_size=0)" if self.context_size == 0 else "")
            )
        return eqx.tree_at(lambda b: b.context, self, context, is_leaf=lambda v: v is None)

    def _spline(self, x: Array, inverse: bool) -> tuple[Array, Array]:
        from .spline import rational_quadratic_spline

        dim = self.dim
        if x.ndim == 0 or x.shape[-1] != dim:
            raise ValueError(f"SplineCoupling: x must have shape (..., {dim}), got {x.shape}")
        kept, free = take_coordinates(x, self.kept), take_coordinates(x, self.transformed)
        inputs = kept
        if self.context_size:
            if self.context is None:
                raise ValueError("SplineCoupling: built with context_size > 0; call condition(context) first")
            lead = jnp.broadcast_shapes(x.shape[:-1], self.context.shape[:-1])
            kept = jnp.broadcast_to(kept, lead + kept.shape[-1:])
            free = jnp.broadcast_to(free, lead + free.shape[-1:])
            context = jnp.broadcast_to(self.context, lead + (self.context_size,))
            inputs = jnp.concatenate([kept, context], axis=-1)
        raw = over_leading_axes(self.net, inputs).reshape(free.shape + (3 * self.num_bins - 1,))
        widths, heights, derivatives = jnp.split(raw, [self.num_bins, 2 * self.num_bins], axis=-1)
        out, log_det = rational_quadratic_spline(
            free,
            widths,
            heights,
            derivatives,
            bound=self.bound,
            inverse=inverse,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )
        return merge_coordinates(kept, out, self.kept, self.transformed), jnp.sum(log_det, axis=-1)

    def forward_and_log_det(self, x):
        return self._spline(x, inverse=False)

    def inverse_and_log_det(self, y):
        return self._spline(y, inverse=True)  # the masked part of y equals that of x

    def forward(self, x):
        return self._spline(x, inverse=False)[0]

    def inverse(self, y):
        return self._spline(y, inverse=True)[0]

    def forward_log_det_jacobian(self, x):
        return self._spline(x, inverse=False)[1]

    def inverse_log_det_jacobian(self, y):
        return self._spline(y, inverse=True)[1]


def checked_mask(owner: str, mask: ArrayLike) -> np.ndarray:
    """`mask` as a numpy boolean `(d,)` array (True: kept), checked in numpy so a layer can be built
    under `jit` / `eval_shape`: a non-empty 1-D array of zeros and ones or booleans, else a one-line
    ValueError naming `owner`."""
    if isinstance(mask, jax.core.Tracer):
        raise ValueError(f"{owner}: mask must be a concrete array (numpy or a list), not a traced value")
    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.shape[0] < 1 or not np.all((mask == 0) | (mask == 1)):
        raise ValueError(
            f"{owner}: mask must be a non-empty 1-D array of zeros and ones (or booleans), got shape {mask.shape}"
        )
    return mask.astype(bool)


def take_coordinates(x: Array, indices: tuple[int, ...]) -> Array:
    """`x[..., indices]` for static `indices`: a slice when they are contiguous, else a gather."""
    if indices and indices == tuple(range(indices[0], indices[0] + len(indices))):
        return x[..., indices[0] : indices[0] + len(indices)]
    return x[..., np.asarray(indices, np.int32)]


def merge_coordinates(first: Array, second: Array, first_at: tuple[int, ...], second_at: tuple[int, ...]) -> Array:
    """The vector whose coordinates `first_at` are `first` and `second_at` are `second` (static
    indices that together cover `0..d-1` once): one concatenate, then a static permutation unless
    the order is already `0..d-1`."""
    order = first_at + second_at
    lead = jnp.broadcast_shapes(first.shape[:-1], second.shape[:-1])
    joined = jnp.concatenate(
        [jnp.broadcast_to(first, lead + first.shape[-1:]), jnp.broadcast_to(second, lead + second.shape[-1:])], -1
    )
    if order == tuple(range(len(order))):
        return joined
    return joined[..., np.argsort(np.asarray(order)).astype(np.int32)]

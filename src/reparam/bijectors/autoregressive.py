"""Masked autoregressive flows: MADE (Germain et al. 2015) and the affine autoregressive bijector
in its MAF (Papamakarios et al. 2017) and IAF (Kingma et al. 2016) directions.

MADE is an MLP whose weights are masked so that output `i` depends only on inputs `x_<i` (the
ordering is the index order; put a `Permute` between layers to change it). It outputs
`(shift, log_scale)`, each `(d,)`, with `log_scale` bounded to `(-bound, bound)` by
`bound * tanh(raw / bound)` as `CouplingMLP` does, and its last layer starts at zero, so a fresh
layer is the identity. An optional context vector enters every layer unmasked (conditional flows).

`MaskedAutoregressiveAffine` with `mode="maf"` (forward = the sampling direction of a
`Transformed`):

    forward  y_i = x_i * exp(log_scale_i(y_<i)) + shift_i(y_<i)    d MADE passes (lax.fori_loop)
    inverse  x   = (y - shift(y)) * exp(-log_scale(y))              one MADE pass

so the density (`Transformed.log_prob`, which inverts) costs one pass and sampling costs `d`.
`mode="iaf"` conditions on the input instead:

    forward  y   = x * exp(log_scale(x)) + shift(x)                  one MADE pass
    inverse  x_i = (y_i - shift_i(x_<i)) * exp(-log_scale_i(x_<i))   d MADE passes

so sampling (and `rsample_and_log_prob`, which scores its own samples) costs one pass and the
density of a given value costs `d`. Either way `log |det dy/dx| = sum(log_scale)` (the Jacobian
is triangular with diagonal `exp(log_scale)`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, PRNGKeyArray

from ..nn.mlp import Activation, matvec
from .base import Bijector, FusedBijector

NARROW_BATCH = 8192
"""Batches (flattened leading axes) from which a MADE's 1-2 wide first layer runs elementwise
(`nn.matvec`): measured on a 2-core CPU, a 2-D MAF's density at batch 65,536 took 0.53x flowjax's time
elementwise and 1.0x as a matmul, at batch 1,024 1.14x elementwise and ~1.0x as a matmul."""


def made_degrees(dim: int, hidden_sizes: Sequence[int]) -> list[np.ndarray]:
    """MADE degrees: inputs `1..dim`, hidden units cycling through `1..max(dim - 1, 1)`.

    A hidden unit of degree `k` may see inputs of degree `<= k`; output `i` (degree `i + 1`) may
    see hidden units of degree `<= i`, so it depends on `x_<i` only.
    """
    degrees = [np.arange(1, dim + 1)]
    for size in hidden_sizes:
        degrees.append(1 + np.arange(size) % max(dim - 1, 1))
    return degrees


def made_masks(dim: int, hidden_sizes: Sequence[int]) -> list[np.ndarray]:
    """Boolean masks `(out, in)` of each layer, the output layer's `(2 * dim, in)` (shift rows
    then log-scale rows, both with output degrees `1..dim`)."""
    degrees = made_degrees(dim, hidden_sizes)
    masks = [later[:, None] >= earlier[None, :] for earlier, later in zip(degrees[:-1], degrees[1:], strict=True)]
    out = np.tile(np.arange(1, dim + 1), 2)
    masks.append(out[:, None] > degrees[-1][None, :])
    return masks


class MADE(eqx.Module):
    """Masked autoencoder for distribution estimation: `x (dim,) -> (shift, log_scale)`, each
    `(dim,)`, output `i` a function of `x_<i` (and of the context) only.

    Layers `dim -> hidden_sizes... -> 2 * dim`, `activation` between them, weights masked by
    `made_masks` (stored as boolean arrays, so `eqx.is_inexact_array` filters leave them out of
    training). A context of size `context_dim` is concatenated, unmasked, to the input of every
    layer, the output layer included, so it reaches every output (output 0 has no masked inputs at
    all). Initialisation as `reparam.nn.mlp`: uniform on `+-1/sqrt(fan_in)` from one random draw,
    the last layer zero (`shift = log_scale = 0`: the flow layer starts as the identity).
    `log_scale = bound * tanh(raw / bound)` lies in `(-bound, bound)`.
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    masks: tuple[Array, ...]
    dim: int = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        context_dim: int = 0,
        bound: float = 3.0,
        activation: Activation = jax.nn.relu,
    ):
        hidden_sizes = tuple(hidden_sizes)
        if dim < 1 or context_dim < 0 or any(h < 1 for h in hidden_sizes) or not bound > 0:
            raise ValueError(
                f"MADE: need dim >= 1, hidden sizes >= 1, context_dim >= 0 and bound > 0, got dim {dim}, "
                f"hidden {hidden_sizes}, context_dim {context_dim}, bound {bound}"
            )
        masks = made_masks(dim, hidden_sizes)
        shapes = [(m.shape[0], m.shape[1] + context_dim) for m in masks]
        counts = [(a + 1) * b for b, a in shapes]
        noise = jax.random.uniform(key, (sum(counts),), jnp.float32, -1.0, 1.0)
        weights, biases, start = [], [], 0
        for i, (b, a) in enumerate(shapes):
            w = noise[start : start + a * b].reshape(b, a) / math.sqrt(a)
            bias = noise[start + a * b : start + (a + 1) * b] / math.sqrt(a)
            start += (a + 1) * b
            if i == len(shapes) - 1:
                w, bias = jnp.zeros_like(w), jnp.zeros_like(bias)
            weights.append(w)
            biases.append(bias)
        self.masks = tuple(jnp.asarray(np.concatenate([m, np.ones((m.shape[0], context_dim), bool)], 1)) for m in masks)
        self.weights = tuple(weights)
        self.biases = tuple(biases)
        self.dim = dim
        self.context_dim = context_dim
        self.bound = bound
        self.activation = activation

    def __call__(self, x: Array, context: Array | None = None, *, narrow: bool = True) -> tuple[Array, Array]:
        """`x` `(dim,)`, `context` `(context_dim,)` -> `(shift, log_scale)`, each `(dim,)`. `narrow=False`
        keeps a 1-2 wide first layer a matmul (`matvec`'s elementwise form pays off over large batches only)."""
        if x.shape != (self.dim,):
            raise ValueError(f"MADE: expected an input of shape ({self.dim},), got {x.shape}")
        if (context is None) != (self.context_dim == 0):
            raise ValueError(
                f"MADE: this network takes a context of size {self.context_dim}, got "
                f"{'none' if context is None else 'one of shape ' + str(context.shape)}"
            )
        if context is not None and context.shape != (self.context_dim,):
            raise ValueError(f"MADE: expected a context of shape ({self.context_dim},), got {context.shape}")
        h = x
        last = len(self.weights) - 1
        for i, (w, b, m) in enumerate(zip(self.weights, self.biases, self.masks, strict=True)):
            inputs = h if context is None else jnp.concatenate([h, context])
            h = (matvec(jnp.where(m, w, 0), inputs) if narrow else jnp.where(m, w, 0) @ inputs) + b
            if i < last:
                h = self.activation(h)
        shift, raw = h[: self.dim], h[self.dim :]
        return shift, self.bound * jnp.tanh(raw / self.bound)


class MaskedAutoregressiveAffine(FusedBijector):
    """Affine autoregressive bijector on vectors (`event_ndims = 1`), conditioner a `MADE`.

    `mode="maf"`: `y_i = x_i * exp(log_scale_i(y_<i)) + shift_i(y_<i)`; the inverse (density
    direction) is one MADE pass, the forward (sampling direction) `d` passes in a `lax.fori_loop`.
    `mode="iaf"`: `y_i = x_i * exp(log_scale_i(x_<i)) + shift_i(x_<i)`; the forward (sampling, and
    scoring one's own samples) is one pass, the inverse (density of a given value) `d` passes.
    `log |det dy/dx| = sum(log_scale)` in both. Inputs `(..., d)`; a conditional layer (a MADE with
    `context_dim > 0`) needs a context, set with `condition(context)`: shape `(context_dim,)` or
    `(..., context_dim)` broadcasting against the leading axes of the input.
    """

    event_ndims = 1
    onto = True  # affine in each coordinate given the previous ones, scale exp(.) > 0
    made: MADE
    context: Array | None
    mode: Literal["maf", "iaf"] = eqx.field(static=True)

    def __init__(self, made: MADE, *, mode: Literal["maf", "iaf"] = "maf", context: Array | None = None):
        if mode not in ("maf", "iaf"):
            raise ValueError(f"MaskedAutoregressiveAffine: mode must be 'maf' or 'iaf', got {mode!r}")
        self.made = made
        self.mode = mode
        self.context = None if context is None else jnp.asarray(context)

    def condition(self, context: Array) -> MaskedAutoregressiveAffine:
        """The same layer with its context set to `context` (`(context_dim,)` or
        `(..., context_dim)`)."""
        return MaskedAutoregressiveAffine(self.made, mode=self.mode, context=context)

    def _params(self, v: Array) -> tuple[Array, Array]:
        """`(shift, log_scale)` of the MADE at every vector of `v` `(..., d)`."""
        d = self.made.dim
        if v.ndim < 1 or v.shape[-1] != d:
            raise ValueError(f"MaskedAutoregressiveAffine: expected inputs of shape (..., {d}), got {v.shape}")
        lead = v.shape[:-1]
        flat = v.reshape((-1, d))
        made = functools.partial(self.made, narrow=flat.shape[0] >= NARROW_BATCH)
        if self.context is None:
            if self.made.context_dim:
                raise ValueError(
                    f"MaskedAutoregressiveAffine: the MADE takes a context of size {self.made.context_dim}; "
                    "set one with .condition(context)"
                )
            shift, log_scale = jax.vmap(made)(flat)
        else:
            c = self.context.shape[-1] if self.context.ndim else 0
            try:
                context = jnp.broadcast_to(self.context, lead + (c,))
            except ValueError:
                raise ValueError(
                    f"MaskedAutoregressiveAffine: context of shape {self.context.shape} does not broadcast "
                    f"against inputs of shape {v.shape}"
                ) from None
            shift, log_scale = jax.vmap(made)(flat, context.reshape((-1, c)))
        return shift.reshape(v.shape), log_scale.reshape(v.shape)

    def _one_pass(self, v: Array, conditioning: Array, sign: int) -> tuple[Array, Array]:
        shift, log_scale = self._params(conditioning)
        if sign > 0:
            return v * jnp.exp(log_scale) + shift, jnp.sum(log_scale, -1)
        return (v - shift) * jnp.exp(-log_scale), -jnp.sum(log_scale, -1)

    def _d_passes(self, v: Array, sign: int) -> tuple[Array, Array]:
        """Solve `u = v * exp(log_scale(u)) + shift(u)` (sign +1) or
        `u = (v - shift(u)) * exp(-log_scale(u))` (sign -1) coordinate by coordinate: after pass
        `k` the first `k` coordinates of `u` are exact, so `d` passes give all of them, and the
        log-scales of the last pass are those at the solution."""
        if v.ndim < 1 or v.shape[-1] != self.made.dim:
            raise ValueError(
                f"MaskedAutoregressiveAffine: expected inputs of shape (..., {self.made.dim}), got {v.shape}"
            )

        def body(_, carry):
            u, _ = carry
            shift, log_scale = self._params(u)
            u = v * jnp.exp(log_scale) + shift if sign > 0 else (v - shift) * jnp.exp(-log_scale)
            return u, log_scale

        u, log_scale = lax.fori_loop(0, self.made.dim, body, (v, jnp.zeros_like(v)))
        return u, sign * jnp.sum(log_scale, -1)

    def forward_and_log_det(self, x):
        """One MADE pass for `mode="iaf"`, `d` passes for `mode="maf"`."""
        if self.mode == "iaf":
            return self._one_pass(x, x, +1)
        return self._d_passes(x, +1)

    def inverse_and_log_det(self, y):
        """One MADE pass for `mode="maf"`, `d` passes for `mode="iaf"`."""
        if self.mode == "maf":
            return self._one_pass(y, y, -1)
        return self._d_passes(y, -1)

    def forward_log_det_jacobian(self, x):
        """`sum(log_scale)`; for `mode="maf"` at `y = f(x)`, so this runs the `d` passes."""
        return self.forward_and_log_det(x)[1]


def condition(bijector: Bijector, context: Array) -> Bijector:
    """`bijector` with `context` set on every conditional layer inside it (every module with a
    `condition(context)` method: `MaskedAutoregressiveAffine`, `Scan`), e.g. a `Chain` of them or a
    `Scan` of stacked ones. `context` is `(context_dim,)` or `(..., context_dim)`, broadcasting
    against the leading axes of the input."""
    context = jnp.asarray(context)
    return jax.tree_util.tree_map(
        lambda node: node.condition(context) if _is_conditional(node) else node,
        bijector,
        is_leaf=_is_conditional,
    )


def _is_conditional(node) -> bool:
    return isinstance(node, Bijector) and callable(getattr(node, "condition", None))

"""The one MLP builder and one way to map a per-example network over leading axes.

    net = mlp(4, 2, (64, 64), activation=jax.nn.relu, key=key)   # R^4 -> R^2
    y = over_leading_axes(net, x)                                 # x (..., 4) -> y (..., 2)

Networks are `equinox` modules holding float32 arrays; activations are part of the static structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

Activation = Callable[[Array], Array]

NARROW_INPUT = 2
"""Layers with at most this many inputs multiply and add elementwise instead of calling a matmul."""


def matvec(weight: Array, x: Array) -> Array:
    """`weight @ x` for `weight` `(out, in)` and `x` `(in,)`; with at most `NARROW_INPUT` inputs as a
    broadcast multiply and a sum over them (XLA's CPU matmul with a contraction of 1 or 2 runs ~15x
    slower over a batch: 65,536 x (1 -> 64) took 4.9 ms as a dot, 0.3 ms elementwise)."""
    if x.shape[-1] <= NARROW_INPUT:
        return jnp.sum(weight.T * x[:, None], axis=0)
    return weight @ x


class NarrowLinear(eqx.nn.Linear):
    """`eqx.nn.Linear` (same fields, so the same parameters and checkpoints) for `in_features <=
    NARROW_INPUT`, computed by `matvec`'s elementwise form: the first layer of a 2-D coupling
    conditioner."""

    def __call__(self, x: Array, *, key: PRNGKeyArray | None = None) -> Array:
        """`x` `(in_features,)` -> `(out_features,)`."""
        y = matvec(self.weight, x)
        return y + self.bias if self.bias is not None else y


def mlp(
    in_size: int,
    out_size: int,
    hidden_sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    activation: Activation = jax.nn.relu,
    zero_output: bool = False,
) -> eqx.nn.Sequential:
    """`in -> hidden_sizes... -> out`, affine layers with `activation` between them, float32.

    `hidden_sizes=()` is one affine layer. Weights and biases are initialised as `eqx.nn.Linear`
    initialises them, uniform on `+-1/sqrt(fan_in)`, but from one random draw for the whole network
    (each random call site costs compilation time on a small CPU; a layer-by-layer init has two per
    layer). `zero_output=True` starts the last layer at zero, so the network starts as the constant 0
    (a coupling layer then starts as the identity). Maps one vector `(in_size,)` to `(out_size,)`;
    use `over_leading_axes` for batches.
    """
    sizes = (in_size, *hidden_sizes, out_size)
    if min(sizes) < 1:
        raise ValueError(f"mlp: sizes must be >= 1, got in {in_size}, hidden {tuple(hidden_sizes)}, out {out_size}")
    counts = [(a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    noise = jax.random.uniform(key, (sum(counts),), jnp.float32, -1.0, 1.0)
    layers: list[eqx.Module] = []
    start = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weight = noise[start : start + a * b].reshape(b, a) / math.sqrt(a)
        bias = noise[start + a * b : start + (a + 1) * b] / math.sqrt(a)
        start += (a + 1) * b
        last = i == len(sizes) - 2
        if last and zero_output:
            weight, bias = jnp.zeros_like(weight), jnp.zeros_like(bias)
        kind = NarrowLinear if a <= NARROW_INPUT else eqx.nn.Linear
        shape = eqx.filter_eval_shape(kind, a, b, dtype=jnp.float32, key=key)  # structure only, no draw
        layers.append(eqx.tree_at(lambda linear: (linear.weight, linear.bias), shape, (weight, bias)))
        if not last:
            layers.append(eqx.nn.Lambda(activation))
    return eqx.nn.Sequential(layers)


def over_leading_axes(fn: Callable[[Array], PyTree], x: Array) -> PyTree:
    """Apply `fn`, a function of one vector `(d,)`, to every vector of `x` `(..., d)`.

    Every leaf `o` of `fn`'s output gains the leading axes of `x`: `(...,) + o.shape`. One `vmap`
    over the flattened leading axes, so any number of them (including none) compiles one program.
    """
    flat = x.reshape((-1, x.shape[-1]))
    out = _batched_mlp(fn, flat) if _is_plain_mlp(fn) else jax.vmap(fn)(flat)
    return jax.tree_util.tree_map(lambda o: o.reshape(x.shape[:-1] + o.shape[1:]), out)


def _is_plain_mlp(fn) -> bool:
    """Whether `fn` is an `eqx.nn.Sequential` of vector `Linear` layers and `Lambda` activations."""
    if not isinstance(fn, eqx.nn.Sequential):
        return False
    return all(
        isinstance(layer, eqx.nn.Lambda)
        or (type(layer) in (eqx.nn.Linear, NarrowLinear) and "scalar" not in (layer.in_features, layer.out_features))
        for layer in fn.layers
    )


def _batched_mlp(net: eqx.nn.Sequential, x: Array) -> Array:
    """`jax.vmap(net)(x)` for a plain MLP and `x` `(n, in)`, written as one `(n, in) @ (in, out)` matmul
    per layer: `vmap` of `weight @ v` lowers to a dot whose output XLA transposes back, and on CPU the
    transposes cost about a quarter of a SAC update (measured: 290 -> 380-450 updates/s)."""
    for layer in net.layers:
        if isinstance(layer, eqx.nn.Lambda):
            x = layer.fn(x)
            continue
        if isinstance(layer, NarrowLinear):
            x = jax.vmap(layer)(x)  # elementwise already (`matvec`): no matmul to batch
            continue
        x = x @ layer.weight.T
        if layer.bias is not None:
            x = x + layer.bias
    return x

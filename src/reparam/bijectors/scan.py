"""Stacked identical layers applied with `lax.scan`: a deep flow compiles one layer.

    def make(key):
        k1, k2 = jax.random.split(key)
        return Chain([MaskedAutoregressiveAffine(MADE(d, (64,), key=k2)), Permute.random(k1, d)])

    flow = Scan(stack_layers(make, jax.random.split(key, 16)))

`layers` is ONE bijector whose array leaves carry a leading stack axis of size `n` (built with
`eqx.filter_vmap(make)(keys)`, as flowjax does). `Scan(layers)` applies `layers[0]` first in the
forward direction and `layers[n - 1]` first in the inverse, so it equals
`Chain([layers[n - 1], ..., layers[1], layers[0]])` (Chain's function order: its last bijector is
applied first); `Scan.to_chain()` builds exactly that Chain.

Conditional flows: `Scan.condition(context)` (or `autoregressive.condition(flow, context)`) sets one
context, shared by every layer, on each conditional layer as the scan applies it.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, PRNGKeyArray

from .autoregressive import condition
from .base import Bijector
from .chain import Chain


def stack_layers(make: Callable[[PRNGKeyArray], Bijector], keys: PRNGKeyArray) -> Bijector:
    """`eqx.filter_vmap(make)(keys)`: one bijector whose array leaves have a leading axis of size
    `len(keys)`, layer `i` built from `keys[i]`. `make` must build the same structure for every key
    (shapes and static fields alike); arrays it builds without the key are repeated."""
    if jnp.ndim(keys) != 1 and not (jnp.ndim(keys) == 2 and keys.dtype == jnp.uint32):
        raise ValueError(
            f"stack_layers: keys must be a 1-D array of keys (jax.random.split(key, n)), got shape {keys.shape}"
        )
    return eqx.filter_vmap(make)(keys)


def _stack_size(layers: Bijector) -> int:
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(layers) if eqx.is_array(leaf)]
    if not leaves:
        raise ValueError(
            "Scan: the layers have no array leaves to stack over; build them with stack_layers(make, keys)"
        )
    sizes = sorted({leaf.shape[0] if leaf.ndim else -1 for leaf in leaves})
    if len(sizes) != 1 or sizes[0] < 1:
        raise ValueError(
            f"Scan: every array leaf of the layers needs one leading stack axis of one size >= 1, got leading sizes "
            f"{sizes} (-1: a scalar leaf); build them with stack_layers(make, keys)"
        )
    return sizes[0]


def unstack_layers(layers: Bijector) -> list[Bijector]:
    """The individual layers of a stack, `[layers[0], ..., layers[n - 1]]` (Python, for reference
    and inspection; `Scan` never unstacks)."""
    n = _stack_size(layers)
    params, static = eqx.partition(layers, eqx.is_array)
    return [eqx.combine(jax.tree_util.tree_map(lambda a, i=i: a[i], params), static) for i in range(n)]


class Scan(Bijector):
    """`n` stacked layers as one bijector, each pass one `lax.scan` over the stack: the layer is
    traced and compiled once, whatever `n`.

    Forward applies `layers[0]` first; `Scan(layers) == Chain(unstack_layers(layers)[::-1])`.
    Log-dets are summed over the layers. `event_ndims` is that of the layer.
    """

    layers: Bijector
    context: Array | None
    num_layers: int = eqx.field(static=True)

    def __init__(self, layers: Bijector, *, context: Array | None = None):
        if not isinstance(layers, Bijector):
            raise ValueError(
                f"Scan: layers must be one stacked Bijector (stack_layers(make, keys)), got {type(layers).__name__}"
            )
        self.num_layers = _stack_size(layers)
        self.layers = layers
        self.context = None if context is None else jnp.asarray(context)

    def condition(self, context: Array) -> Scan:
        """The same stack with `context` (unstacked: shared by every layer) set on each
        conditional layer as it is applied (`autoregressive.condition`)."""
        return Scan(self.layers, context=context)

    def _layer(self, params, static) -> Bijector:
        layer = eqx.combine(params, static)
        return layer if self.context is None else condition(layer, self.context)

    @property
    def event_ndims(self) -> int:  # type: ignore[override]
        """That of the layer."""
        return self.layers.event_ndims

    @property
    def onto(self) -> bool:  # type: ignore[override]
        """That of the layer."""
        return self.layers.onto

    @property
    def range_point(self):  # type: ignore[override]
        """The first layer's range point, pushed forward through the other layers when they are
        elementwise (`event_ndims = 0`); for vector layers the first layer's."""
        params, static = eqx.partition(self.layers, eqx.is_array)
        first = self._layer(jax.tree_util.tree_map(lambda a: a[0], params), static)
        point = jnp.asarray(first.range_point)
        if self.event_ndims == 0 and self.num_layers > 1:
            rest = jax.tree_util.tree_map(lambda a: a[1:], params)
            point, _ = lax.scan(lambda p, q: (self._layer(q, static).forward(p), None), point, rest)
        return point

    def to_chain(self) -> Chain:
        """The equivalent `Chain` of the unstacked layers (`layers[n - 1]` first in its list)."""
        layers = unstack_layers(self.layers)[::-1]
        return Chain(layers if self.context is None else [condition(layer, self.context) for layer in layers])

    def _scan(self, step, init, *, reverse: bool):
        params, static = eqx.partition(self.layers, eqx.is_array)
        return lax.scan(lambda carry, p: (step(self._layer(p, static), carry), None), init, params, reverse=reverse)[0]

    def _zeros(self, v: Array) -> Array:
        return jnp.zeros(v.shape[: v.ndim - self.event_ndims], v.dtype)

    def forward(self, x):
        """`layers[n-1](...layers[1](layers[0](x)))`: one `lax.scan`."""
        return self._scan(lambda layer, v: layer.forward(v), x, reverse=False)

    def inverse(self, y):
        """`layers[0]^-1(...layers[n-1]^-1(y))`: one reversed `lax.scan`."""
        return self._scan(lambda layer, v: layer.inverse(v), y, reverse=True)

    def forward_and_log_det(self, x):
        """The layers' fused forward passes, log-dets summed in the carry."""

        def step(layer, carry):
            v, total = carry
            v, log_det = layer.forward_and_log_det(v)
            return v, total + log_det

        return self._scan(step, (x, self._zeros(x)), reverse=False)

    def inverse_and_log_det(self, y):
        """The layers' fused inverse passes in reverse order, inverse log-dets summed."""

        def step(layer, carry):
            v, total = carry
            v, log_det = layer.inverse_and_log_det(v)
            return v, total + log_det

        return self._scan(step, (y, self._zeros(y)), reverse=True)

    def forward_log_det_jacobian(self, x):
        return self.forward_and_log_det(x)[1]

    def in_range(self, y):
        """Checked layer by layer along the inverse pass (out-of-range values replaced by the
        layer's range point), as `Chain` does; all True without a pass when the layer is `onto`."""
        if self.onto:
            return jnp.ones(jnp.shape(y), bool)

        def step(layer, carry):
            v, inside = carry
            ok = layer.in_range(v)
            return layer.inverse(jnp.where(ok, v, layer.range_point)), inside & ok

        return self._scan(step, (y, jnp.ones(jnp.shape(y), bool)), reverse=True)[1]

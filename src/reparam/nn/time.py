"""Time-conditioned networks for diffusion models: a sinusoidal embedding of the noise level, an MLP
for 2-D toys and a residual MLP for 8x8 images, each optionally class-conditioned with a null class
(classifier-free guidance).

    net = TimeMLP(2, (128, 128, 128), key=key)                      # toys: (x (2,), t) -> (2,)
    net = ResidualMLP(64, 256, 3, key=key, num_classes=10)          # digits: (x (64,), t, y) -> (64,)
    out = net(x, t, label)          # one example; `jax.vmap(net)(xs, ts, labels)` for a batch

Time `t` is continuous in `[0, 1]` (a discrete step `i` of `T` enters as `i / T`); the embedding
sees `time_scale * t` (1000 by default, so frequencies match DDPM's integer steps). A `label` is an
integer in `0..num_classes - 1`, or `num_classes` itself: the null class, "no label", which the
unconditional half of classifier-free guidance uses (Ho & Salimans 2022). Unconditional networks
(`num_classes=0`) ignore `label`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .mlp import Activation, mlp

__all__ = ["ResidualMLP", "TimeEmbedding", "TimeMLP", "sinusoidal_embedding"]


def sinusoidal_embedding(t: ArrayLike, dim: int, *, max_period: float = 10_000.0) -> Array:
    """The Transformer / DDPM embedding of a scalar: `[sin(t w_0), .., sin(t w_{h-1}), cos(t w_0), ..]`.

    `w_i = max_period^(-i / h)`, `h = dim // 2` (geometric frequencies from 1 down to
    `1 / max_period`); an odd `dim` gets a trailing zero. `t` has any shape `(...)`; the result is
    `(..., dim)` in t's float dtype (float32 for integer `t`).
    """
    if int(dim) < 2:
        raise ValueError(f"sinusoidal_embedding: dim must be >= 2, got {dim}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    half = int(dim) // 2
    freqs = jnp.exp(jnp.arange(half, dtype=t.dtype) * jnp.asarray(-math.log(max_period) / half, t.dtype))
    angles = t[..., None] * freqs
    out = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if int(dim) % 2:
        out = jnp.concatenate([out, jnp.zeros(out.shape[:-1] + (1,), t.dtype)], axis=-1)
    return out


def _check_classes(owner: str, num_classes: int) -> int:
    if int(num_classes) < 0:
        raise ValueError(f"{owner}: num_classes must be >= 0 (0: unconditional), got {num_classes}")
    return int(num_classes)


class TimeEmbedding(eqx.Module):
    """`(t, label) -> (dim,)`: `mlp(sinusoidal(time_scale t))` plus a learned class vector.

    The class table has `num_classes + 1` rows: row `num_classes` is the null class. It starts at
    zero, so a fresh conditional network equals the unconditional one. `num_classes=0`: no table,
    `label` ignored.
    """

    net: eqx.nn.Sequential
    classes: Array | None
    dim: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        num_classes: int = 0,
        time_scale: float = 1000.0,
        activation: Activation = jax.nn.silu,
    ):
        if int(dim) < 2:
            raise ValueError(f"TimeEmbedding: dim must be >= 2, got {dim}")
        self.num_classes = _check_classes("TimeEmbedding", num_classes)
        self.dim = int(dim)
        self.time_scale = float(time_scale)
        self.net = mlp(self.dim, self.dim, (self.dim,), key=key, activation=activation)
        self.classes = jnp.zeros((self.num_classes + 1, self.dim), jnp.float32) if self.num_classes else None

    def __call__(self, t: ArrayLike, label: ArrayLike | None = None) -> Array:
        """The embedding `(dim,)` of a scalar time `t` in `[0, 1]` and an integer `label`
        (`0..num_classes`, `num_classes` = null; `None` means null)."""
        e = self.net(sinusoidal_embedding(jnp.asarray(t, jnp.float32) * jnp.float32(self.time_scale), self.dim))
        if self.classes is None:
            return e
        label = self.num_classes if label is None else label
        return e + self.classes[jnp.asarray(label, jnp.int32)]


class TimeMLP(eqx.Module):
    """A denoiser for low-dimensional data: `mlp([x, embed(t, label)])`, `(d,) -> (d,)`.

    `hidden_sizes` are the widths of the `activation` (SiLU) layers; the last layer starts at zero,
    so the untrained network predicts 0 (for epsilon prediction: the prior's guess).
    """

    embed: TimeEmbedding
    net: eqx.nn.Sequential
    data_dim: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        hidden_sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        embedding_dim: int = 32,
        num_classes: int = 0,
        activation: Activation = jax.nn.silu,
    ):
        if int(data_dim) < 1 or not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(
                f"TimeMLP: need data_dim >= 1 and one or more positive hidden sizes, got {data_dim}, {hidden_sizes}"
            )
        k_embed, k_net = jax.random.split(key)
        self.data_dim = int(data_dim)
        self.embed = TimeEmbedding(embedding_dim, key=k_embed, num_classes=num_classes, activation=activation)
        self.net = mlp(
            self.data_dim + int(embedding_dim),
            self.data_dim,
            tuple(hidden_sizes),
            key=k_net,
            activation=activation,
            zero_output=True,
        )

    @property
    def num_classes(self) -> int:
        """Classes of the conditional network (0: unconditional)."""
        return self.embed.num_classes

    def __call__(self, x: Array, t: ArrayLike, label: ArrayLike | None = None) -> Array:
        """The network's output `(d,)` at one point `x` `(d,)`, time `t` in `[0, 1]`, `label`."""
        return self.net(jnp.concatenate([x, self.embed(t, label)]))


class ResidualMLP(eqx.Module):
    """A denoiser for flattened images: `x -> width -> num_blocks residual blocks -> out_dim` (default `d`).

    Block: `h <- h + mlp([layer_norm(h), e], hidden width)`, with `e` the time (and class)
    embedding; each block's last layer starts at zero (the block starts as the identity) and so
    does the output layer. The blocks are built with one `filter_vmap` and applied with a
    `lax.scan`, so a deep network compiles one block.
    """

    embed: TimeEmbedding
    inp: eqx.nn.Linear
    blocks: eqx.nn.Sequential
    out: eqx.nn.Linear
    data_dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        width: int,
        num_blocks: int,
        *,
        key: PRNGKeyArray,
        embedding_dim: int = 64,
        num_classes: int = 0,
        activation: Activation = jax.nn.silu,
        out_dim: int | None = None,
    ):
        if min(int(data_dim), int(width), int(num_blocks), int(out_dim or data_dim)) < 1:
            raise ValueError(
                f"ResidualMLP: data_dim, width, num_blocks and out_dim must be >= 1, got {data_dim}, {width}, "
                f"{num_blocks}, {out_dim}"
            )
        k_embed, k_in, k_blocks, k_out = jax.random.split(key, 4)
        self.data_dim, self.width = int(data_dim), int(width)
        self.embed = TimeEmbedding(embedding_dim, key=k_embed, num_classes=num_classes, activation=activation)
        (self.inp,) = mlp(self.data_dim, self.width, (), key=k_in).layers
        make_block = lambda k: mlp(
            self.width + int(embedding_dim), self.width, (self.width,), key=k, activation=activation, zero_output=True
        )
        self.blocks = eqx.filter_vmap(make_block)(jax.random.split(k_blocks, int(num_blocks)))
        (self.out,) = mlp(self.width, int(out_dim or data_dim), (), key=k_out, zero_output=True).layers

    @property
    def num_classes(self) -> int:
        """Classes of the conditional network (0: unconditional)."""
        return self.embed.num_classes

    def __call__(self, x: Array, t: ArrayLike, label: ArrayLike | None = None) -> Array:
        """The network's output `(out_dim,)` at one image `x` `(d,)`, time `t` in `[0, 1]`, `label`."""
        e = self.embed(t, label)
        arrays, static = eqx.partition(self.blocks, eqx.is_array)

        def block(h, params):
            net = eqx.combine(params, static)
            return h + net(jnp.concatenate([_layer_norm(h), e])), None

        h, _ = jax.lax.scan(block, self.inp(x), arrays)
        return self.out(jax.nn.silu(h))


def _layer_norm(h: Array) -> Array:
    """`(h - mean) / sqrt(var + 1e-5)` over the vector (no learned scale: the next layer has one)."""
    centred = h - jnp.mean(h)
    return centred * jax.lax.rsqrt(jnp.mean(jnp.square(centred)) + jnp.asarray(1e-5, h.dtype))

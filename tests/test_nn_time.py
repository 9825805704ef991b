"""reparam.nn.time: the sinusoidal embedding's closed form, the denoisers' shapes and starting
output (zero), class conditioning with a null class, one compiled block for any depth, bad sizes."""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.nn.time import ResidualMLP, TimeEmbedding, TimeMLP, sinusoidal_embedding


def perturbed(net, key, scale):
    """`net` with Normal(0, scale) noise added to every array (so zero-started layers are not zero);
    one draw for all arrays (a draw per array compiles a program per shape)."""
    arrays, static = eqx.partition(net, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    noise = np.asarray(jax.random.normal(key, (sum(leaf.size for leaf in leaves),), jnp.float32)) * scale
    cuts = np.cumsum([leaf.size for leaf in leaves])[:-1]
    noisy = [leaf + part.reshape(leaf.shape) for leaf, part in zip(leaves, np.split(noise, cuts), strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, noisy), static)


def test_sinusoidal_embedding_closed_form():
    t = jnp.asarray([0.0, 1.5, 700.0], jnp.float64)
    e = np.asarray(sinusoidal_embedding(t, 6, max_period=100.0))
    w = 100.0 ** (-np.arange(3) / 3)
    expected = np.concatenate([np.sin(np.asarray(t)[:, None] * w), np.cos(np.asarray(t)[:, None] * w)], axis=1)
    np.testing.assert_allclose(e, expected, rtol=1e-12, atol=1e-12)
    odd = sinusoidal_embedding(jnp.asarray(2.0, jnp.float32), 7)
    assert odd.shape == (7,) and odd.dtype == jnp.float32 and float(odd[-1]) == 0.0
    assert sinusoidal_embedding(jnp.zeros((4, 5), jnp.int32), 8).shape == (4, 5, 8)


def test_time_mlp_starts_at_zero_and_depends_on_time_after_a_change():
    net = TimeMLP(2, (16, 16), key=jax.random.key(0))
    x = jnp.ones((5, 2), jnp.float32)
    t = jnp.linspace(0, 1, 5, dtype=jnp.float32)
    out = jax.vmap(net)(x, t)
    assert out.shape == (5, 2) and out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out))) == 0.0  # zero output layer: eps prediction starts at 0
    last = net.net.layers[-1]
    nudged = eqx.tree_at(lambda n: n.net.layers[-1].weight, net, last.weight + 0.1)
    out = jax.vmap(nudged)(x, t)
    assert float(jnp.std(out[:, 0])) > 1e-3  # the embedding reaches the output: it varies with t


def test_residual_mlp_shapes_and_class_conditioning():
    net = ResidualMLP(64, 32, 3, key=jax.random.key(1), embedding_dim=16, num_classes=10)
    assert net.num_classes == 10 and net.embed.classes.shape == (11, 16)
    x = jax.random.normal(jax.random.key(2), (4, 64), jnp.float32)
    t = jnp.full((4,), 0.3, jnp.float32)
    labels = jnp.asarray([0, 3, 9, 10], jnp.int32)
    assert jax.vmap(net)(x, t, labels).shape == (4, 64)
    # give blocks and classes non-zero weights: the output then depends on the label
    noisy = perturbed(net, jax.random.key(3), 0.1)
    same_x = jnp.broadcast_to(x[0], (4, 64))
    out = jax.vmap(noisy)(same_x, t, labels)
    assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-3
    # None means the null class
    np.testing.assert_array_equal(noisy(x[0], 0.3), noisy(x[0], 0.3, 10))


def test_residual_mlp_equals_its_blocks_applied_in_order():
    """The scan over stacked blocks is the plain loop h <- h + block([ln(h), e])."""
    net = ResidualMLP(5, 8, 2, key=jax.random.key(4), embedding_dim=4)
    net = perturbed(net, jax.random.key(5), 0.2)
    x, t = jnp.arange(5, dtype=jnp.float32) / 5, 0.7
    e = net.embed(t)
    h = net.inp(x)
    arrays, static = eqx.partition(net.blocks, eqx.is_array)
    for i in range(2):
        block = eqx.combine(jax.tree.map(lambda a, i=i: a[i], arrays), static)
        c = h - h.mean()
        h = h + block(jnp.concatenate([c / jnp.sqrt(jnp.mean(c**2) + 1e-5), e]))
    np.testing.assert_allclose(net(x, t), net.out(jax.nn.silu(h)), rtol=1e-5, atol=1e-6)


def test_time_embedding_unconditional_ignores_the_label():
    embed = TimeEmbedding(8, key=jax.random.key(6))
    np.testing.assert_array_equal(embed(0.5), embed(0.5, 3))
    assert not math.isclose(float(jnp.sum(embed(0.1))), float(jnp.sum(embed(0.9))))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sinusoidal_embedding(1.0, 1), "dim must be >= 2"),
        (lambda: TimeMLP(2, (), key=jax.random.key(0)), "one or more positive hidden sizes"),
        (lambda: ResidualMLP(64, 0, 2, key=jax.random.key(0)), "must be >= 1"),
        (lambda: TimeEmbedding(8, key=jax.random.key(0), num_classes=-1), "num_classes must be >= 0"),
    ],
)
def test_bad_sizes_are_one_line_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        call()
    assert "\n" not in str(info.value)

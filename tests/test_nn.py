"""`reparam.nn`: the one MLP builder and `over_leading_axes`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from reparam.nn import mlp, over_leading_axes


def linears(net):
    return [layer for layer in net.layers if isinstance(layer, eqx.nn.Linear)]


def test_sizes_activation_and_float32():
    net = mlp(3, 2, (5, 7), activation=jnp.tanh, key=jax.random.key(0))
    shapes = [(layer.weight.shape, layer.bias.shape) for layer in linears(net)]
    assert shapes == [((5, 3), (5,)), ((7, 5), (7,)), ((2, 7), (2,))]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(eqx.filter(net, eqx.is_array)))
    x = jnp.arange(3, dtype=jnp.float32)
    a, b, c = linears(net)
    expected = c.weight @ jnp.tanh(b.weight @ jnp.tanh(a.weight @ x + a.bias) + b.bias) + c.bias
    np.testing.assert_allclose(net(x), expected, rtol=1e-6)


@pytest.mark.parametrize("in_size", [1, 2, 3])
def test_narrow_first_layer_is_the_same_affine_map(in_size):
    """Layers with at most NARROW_INPUT inputs are `NarrowLinear` (elementwise, no tiny matmul): the
    same fields and the same values and gradients as `eqx.nn.Linear`'s matmul, batched or not."""
    from reparam.nn.mlp import NARROW_INPUT, NarrowLinear

    net = mlp(in_size, 2, (16,), key=jax.random.key(7))
    first = net.layers[0]
    assert isinstance(first, NarrowLinear) == (in_size <= NARROW_INPUT)
    plain = eqx.nn.Linear(in_size, 16, key=jax.random.key(0))
    plain = eqx.tree_at(lambda m: (m.weight, m.bias), plain, (first.weight, first.bias))
    x = jax.random.normal(jax.random.key(8), (32, in_size), jnp.float32)
    np.testing.assert_allclose(over_leading_axes(first, x), jax.vmap(plain)(x), rtol=1e-6, atol=1e-6)
    grad = lambda layer: jax.grad(lambda m: jnp.sum(jnp.sin(jax.vmap(m)(x))))(layer)
    np.testing.assert_allclose(grad(first).weight, grad(plain).weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_size", [1, 5])
def test_over_leading_axes_batches_plain_mlps_as_matmuls(in_size):
    """A plain MLP goes through `over_leading_axes` as one matmul per layer: the same values and
    gradients as `vmap` of the per-vector network (narrow first layers included)."""
    net = mlp(in_size, 3, (16, 16), activation=jnp.tanh, key=jax.random.key(9))
    x = jax.random.normal(jax.random.key(10), (4, 6, in_size), jnp.float32)
    want = jax.vmap(jax.vmap(net))(x)
    np.testing.assert_allclose(over_leading_axes(net, x), want, rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda m: jnp.sum(jnp.sin(f(m)))
    got = eqx.filter_grad(loss(lambda m: over_leading_axes(m, x)))(net)
    ref = eqx.filter_grad(loss(lambda m: jax.vmap(jax.vmap(m))(x)))(net)
    for a, b in zip(
        jax.tree.leaves(eqx.filter(got, eqx.is_array)), jax.tree.leaves(eqx.filter(ref, eqx.is_array)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_no_hidden_layer_is_one_affine_map():
    net = mlp(4, 3, (), key=jax.random.key(1))
    assert len(net.layers) == 1 and net.layers[0].weight.shape == (3, 4)


def test_init_is_uniform_on_inverse_sqrt_fan_in():
    """Every weight of a layer with fan-in a is U(-1/sqrt(a), 1/sqrt(a)): KS test on 64 x 256 draws."""
    net = mlp(256, 64, (64,), key=jax.random.key(2))
    for layer in linears(net):
        bound = 1 / np.sqrt(layer.weight.shape[1])
        w = np.asarray(layer.weight).ravel()
        assert np.abs(w).max() <= bound
        assert stats.kstest(w, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


def test_zero_output_starts_at_zero_and_layers_differ():
    net = mlp(3, 4, (8,), zero_output=True, key=jax.random.key(3))
    np.testing.assert_array_equal(net(jnp.ones(3, jnp.float32)), np.zeros(4))
    first, last = linears(net)
    assert np.all(np.asarray(last.weight) == 0) and np.any(np.asarray(first.weight) != 0)


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        mlp(3, 2, (0,), key=jax.random.key(0))


def test_over_leading_axes_any_number_of_them_and_pytree_outputs():
    net = mlp(3, 2, (4,), key=jax.random.key(4))
    fn = lambda v: (net(v), jnp.sum(v))
    x = jax.random.normal(jax.random.key(5), (2, 5, 3), jnp.float32)
    y, s = over_leading_axes(fn, x)
    assert y.shape == (2, 5, 2) and s.shape == (2, 5)
    np.testing.assert_allclose(y[1, 3], net(x[1, 3]), rtol=1e-6)
    single, total = over_leading_axes(fn, x[0, 0])
    assert single.shape == (2,) and total.shape == ()

"""Scan: stacked identical layers applied with lax.scan equal the Chain of the unstacked layers,
compile one layer whatever the depth, and make a normalised density in a Transformed."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from reparam.bijectors import Affine, Chain, Tanh
from reparam.bijectors.actnorm import ActNorm
from reparam.bijectors.autoregressive import MADE, MaskedAutoregressiveAffine, condition
from reparam.bijectors.permute import Permute
from reparam.bijectors.scan import Scan, stack_layers, unstack_layers
from reparam.distributions import Independent, Normal, Transformed


def randomize(tree, seed, dtype, scale=0.5):
    """Every floating leaf (weights, biases, actnorm parameters; stacked or not) replaced by uniform
    draws on `+-scale * sqrt(3 / last axis)` in `dtype`; masks and permutations untouched."""
    rng = np.random.default_rng(seed)

    def fill(a):
        if not eqx.is_inexact_array(a):
            return a
        return jnp.asarray((scale * np.sqrt(3.0 / a.shape[-1]) * rng.uniform(-1, 1, a.shape)).astype(dtype))

    return jax.tree_util.tree_map(fill, tree)


def draws(shape, seed, dtype="float64"):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def maf_step(dim, mode="maf"):
    return lambda key: MaskedAutoregressiveAffine(MADE(dim, (8,), key=key, activation=jnp.tanh), mode=mode)


def permute_maf_step(dim, mode="maf"):
    def make(key):
        k1, k2 = jax.random.split(key)
        return Chain(
            [
                MaskedAutoregressiveAffine(MADE(dim, (8,), key=k2, activation=jnp.tanh), mode=mode),
                Permute.random(k1, dim),
            ]
        )

    return make


def actnorm_permute_maf_step(dim):
    return lambda key: Chain([ActNorm(dim), Permute.reverse(dim), maf_step(dim)(key)])


STEPS = {
    "maf": maf_step(3),
    "iaf": maf_step(3, "iaf"),
    "permute-maf": permute_maf_step(3),
    "permute-iaf": permute_maf_step(3, "iaf"),
    "actnorm-permute-maf": actnorm_permute_maf_step(3),
}


@eqx.filter_jit
def report(bij, x):
    y, fldj = bij.forward_and_log_det(x)
    back, ildj = bij.inverse_and_log_det(y)
    grad = jax.grad(lambda v: jnp.sum(bij.forward_and_log_det(v)[0] ** 2) + jnp.sum(bij.forward_log_det_jacobian(v)))(x)
    return dict(y=y, fldj=fldj, back=back, ildj=ildj, forward=bij.forward(x), inverse=bij.inverse(y), grad=grad)


@pytest.mark.parametrize("name", list(STEPS))
def test_scan_equals_chain_of_unstacked_layers(name):
    n = 4
    layers = randomize(stack_layers(STEPS[name], jax.random.split(jax.random.key(1), n)), 2, "float64")
    scan = Scan(layers)
    assert scan.num_layers == n and scan.event_ndims == 1
    unstacked = unstack_layers(layers)
    x = draws((5, 3), 3)
    got = report(scan, x)
    # the Chain with the function order spelled out: layers[0] is applied first, so it is last
    want = report(Chain(unstacked[::-1]), x)
    chain = report(scan.to_chain(), x)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(chain[key], want[key], rtol=0, atol=0, err_msg=key)
    # and by hand, one layer after another
    v, total = x, 0.0
    for layer in unstacked:
        v, ld = layer.forward_and_log_det(v)
        total = total + ld
    np.testing.assert_allclose(got["y"], v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["fldj"], total, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["back"], x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got["ildj"], -got["fldj"], rtol=1e-10, atol=1e-10)
    assert np.max(np.abs(np.asarray(got["fldj"]))) > 0.05  # the stack is not trivial
    assert got["y"].shape == (5, 3) and got["fldj"].shape == (5,)


def test_layer_order_matters():
    """The check above could not tell the orders apart if the layers commuted: they do not."""
    layers = randomize(stack_layers(permute_maf_step(3), jax.random.split(jax.random.key(1), 3)), 2, "float64")
    x = draws((5, 3), 3)
    scan_y = eqx.filter_jit(lambda b, v: b.forward(v))(Scan(layers), x)
    wrong_y = eqx.filter_jit(lambda b, v: b.forward(v))(Chain(unstack_layers(layers)), x)
    assert np.max(np.abs(np.asarray(scan_y - wrong_y))) > 1e-3


def count_primitive(fn, x, name):
    return str(jax.make_jaxpr(fn)(x)).count(name)


@pytest.mark.parametrize("mode", ["maf", "iaf"])
def test_scan_traces_one_layer_whatever_the_depth(mode):
    """The jaxpr of a 16-layer Scan holds the layer's matmuls once, as a 2-layer Scan does; the
    16-layer Chain holds them 16 times. (Counting equations in the jaxpr, not timing: robust.)"""

    def stack(n):
        return stack_layers(permute_maf_step(4, mode), jax.random.split(jax.random.key(0), n))

    x = jnp.zeros((2, 4), jnp.float32)
    scan2, scan16 = Scan(stack(2)), Scan(stack(16))
    chain16 = scan16.to_chain()
    for method in ("forward_and_log_det", "inverse_and_log_det"):
        counts = [count_primitive(getattr(b, method), x, "dot_general") for b in (scan2, scan16, chain16)]
        assert counts[0] == counts[1] > 0, (method, counts)
        assert counts[2] == 16 * counts[1], (method, counts)


def flow(mode, seed, n=4, dim=2, scale=0.6):
    layers = randomize(
        stack_layers(permute_maf_step(dim, mode), jax.random.split(jax.random.key(seed), n)), seed, "float64", scale
    )
    base = Independent(Normal(np.zeros(dim), np.ones(dim)), 1)
    return Transformed(base, Scan(layers))


@pytest.mark.parametrize("mode", ["maf", "iaf"])
def test_scan_flow_density_integrates_to_one_in_2d(mode):
    dist = flow(mode, 11)
    g = np.linspace(-10.0, 10.0, 401)  # spacing 0.05
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1)
    dens = np.exp(np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, grid)))
    assert np.all(np.isfinite(dens))
    total = np.trapezoid(np.trapezoid(dens, g, axis=1), g)
    assert abs(total - 1.0) < 1e-3, total
    assert np.max(np.abs(dens - scipy.stats.norm.pdf(grid).prod(-1))) > 1e-2  # not the base density


def test_scan_flow_scores_its_samples_as_log_prob_does():
    dist = flow("iaf", 12, dim=3)
    y, lp, lp_again = eqx.filter_jit(
        lambda d, k: (lambda s: (*s, d.log_prob(s[0])))(d.rsample_and_log_prob(k, (200,)))
    )(dist, jax.random.key(13))
    assert y.shape == (200, 3) and lp.shape == (200,)
    np.testing.assert_allclose(lp_again, lp, rtol=1e-10, atol=1e-10)


def test_scan_of_elementwise_layers_in_range():
    """`in_range` and `range_point` follow Chain for elementwise layers."""
    layers = stack_layers(
        lambda k: Chain([Affine(jax.random.uniform(k, (), jnp.float32, 0.5, 1.0), 2.0), Tanh()]),
        jax.random.split(jax.random.key(0), 3),
    )
    scan = Scan(layers)
    chain = scan.to_chain()
    y = jnp.linspace(-2.0, 5.0, 15, dtype=jnp.float32)
    np.testing.assert_array_equal(scan.in_range(y), chain.in_range(y))
    np.testing.assert_allclose(scan.range_point, chain.range_point, rtol=1e-6)


def test_scan_errors():
    with pytest.raises(ValueError, match="Scan: layers must be one stacked Bijector"):
        Scan(jnp.zeros(3))
    with pytest.raises(ValueError, match="Scan: every array leaf of the layers needs one leading stack axis"):
        Scan(maf_step(3)(jax.random.key(0)))  # one layer, not a stack
    with pytest.raises(ValueError, match="Scan: the layers have no array leaves"):
        Scan(Tanh())
    with pytest.raises(ValueError, match="stack_layers: keys must be a 1-D array of keys"):
        stack_layers(maf_step(3), jax.random.split(jax.random.key(0), (2, 2)))


def conditional_step(key):
    k1, k2 = jax.random.split(key)
    made = MADE(3, (8,), key=k2, context_dim=2, activation=jnp.tanh)
    return Chain([MaskedAutoregressiveAffine(made), Permute.random(k1, 3)])


def test_conditional_scan_equals_conditional_chain_and_depends_on_context():
    layers = randomize(stack_layers(conditional_step, jax.random.split(jax.random.key(5), 3)), 6, "float64")
    x = draws((4, 3), 7)
    ctx_a, ctx_b = draws((2,), 8), draws((4, 2), 9)  # one shared context; one per vector
    for ctx in (ctx_a, ctx_b):
        scan = condition(Scan(layers), ctx)
        assert scan.context is not None
        got = report(scan, x)
        want = report(condition(Chain(unstack_layers(layers)[::-1]), ctx), x)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(got["back"], x, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(report(scan.to_chain(), x)["y"], got["y"], rtol=1e-12, atol=1e-12)
    ya = report(Scan(layers).condition(ctx_a), x)
    yb = report(Scan(layers).condition(ctx_b), x)
    assert np.max(np.abs(np.asarray(ya["y"] - yb["y"]))) > 1e-3
    assert np.max(np.abs(np.asarray(ya["fldj"] - yb["fldj"]))) > 1e-3
    with pytest.raises(ValueError, match="set one with .condition"):
        Scan(layers).forward(x)


def test_scan_flow_float32_matches_float64():
    """The same flow in float32 stays float32 and agrees with float64 to 1e-4 (relative + absolute:
    4 layers of |log_scale| <= 3)."""
    layers = randomize(stack_layers(permute_maf_step(3), jax.random.split(jax.random.key(3), 4)), 4, "float64")
    f32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, layers)
    x = draws((6, 3), 5)
    r64 = report(Scan(layers), x)
    r32 = report(Scan(f32), x.astype(jnp.float32))
    for key in r64:
        assert r32[key].dtype == jnp.float32, key
        np.testing.assert_allclose(r32[key], r64[key], rtol=1e-4, atol=1e-4, err_msg=key)

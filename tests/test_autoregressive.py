"""MADE, the masked autoregressive affine bijector (MAF / IAF), Permute and ActNorm.

References are independent of the code under test: Jacobians by forward-mode autodiff of the
maps themselves (`jax.jacfwd`, `slogdet`), numpy statistics, closed forms.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.bijectors.actnorm import ActNorm, actnorm_init
from reparam.bijectors.autoregressive import MADE, MaskedAutoregressiveAffine, made_masks
from reparam.bijectors.permute import Permute, Reverse

# float64: agreement to rounding; float32: the log-det of a 5-D map with |log_scale| <= 3 against
# slogdet of the autodiff Jacobian (LU in float32), and round trips through d sequential passes.
TOL = {"float32": dict(rtol=1e-4, atol=1e-4), "float64": dict(rtol=1e-10, atol=1e-10)}


def randomize(tree, seed, dtype, scale=0.8):
    """Every floating leaf replaced by uniform draws on `+-scale * sqrt(3 / fan_in)` (fan-in the last
    axis; biases 0.3 * U(-1, 1)), in `dtype`: a network far from its zero-initialised last layer.
    Boolean masks and integer permutations are left alone."""
    rng = np.random.default_rng(seed)

    def fill(a):
        if not eqx.is_inexact_array(a):
            return a
        if a.ndim >= 2:
            draw = scale * np.sqrt(3.0 / a.shape[-1]) * rng.uniform(-1, 1, a.shape)
        else:
            draw = 0.3 * rng.uniform(-1, 1, a.shape)
        return jnp.asarray(draw.astype(dtype))

    return jax.tree_util.tree_map(fill, tree)


def made(dim, hidden, seed, dtype="float64", context_dim=0, activation=jnp.tanh):
    net = MADE(dim, hidden, key=jax.random.key(seed), context_dim=context_dim, activation=activation)
    return randomize(net, seed, dtype)


def draws(shape, seed, dtype, scale=1.0):
    return jnp.asarray((scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype))


made_jacobian = eqx.filter_jit(lambda net, x: jax.jacfwd(lambda v: jnp.concatenate(net(v)))(x))
made_context_jacobian = eqx.filter_jit(lambda net, x, c: jax.jacfwd(lambda u: jnp.concatenate(net(x, u)))(c))


# MADE.


@pytest.mark.parametrize(
    "dim, hidden",
    [(1, (8,)), (2, ()), (3, (5,)), (5, (16,)), (6, (32, 32)), (7, (12, 20, 9)), (4, (2,))],
)
def test_made_jacobian_is_strictly_lower_triangular(dim, hidden):
    """Output i of shift and of log_scale depends only on x_<i; with enough hidden units
    (>= dim - 1 per layer) on every one of them."""
    net = made(dim, hidden, seed=dim)
    strict_lower = np.tril(np.ones((dim, dim)), -1).astype(bool)
    seen = np.zeros((2 * dim, dim), bool)
    for seed in range(3):
        jac = np.asarray(made_jacobian(net, draws((dim,), 100 + seed, "float64")))
        assert jac.shape == (2 * dim, dim)
        for block in (jac[:dim], jac[dim:]):
            assert np.all(block[~strict_lower] == 0.0)  # exactly zero: masked, not small
        seen |= jac != 0
    if all(h >= dim - 1 for h in hidden):
        np.testing.assert_array_equal(seen, np.concatenate([strict_lower, strict_lower]))


def test_made_masks_are_the_degree_rule():
    masks = made_masks(3, (4,))
    # inputs degrees 1,2,3; hidden degrees 1,2,1,2; outputs 1,2,3 twice
    np.testing.assert_array_equal(masks[0], [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(masks[1], np.tile([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]], (2, 1)))


@pytest.mark.parametrize("hidden", [(), (8,), (8, 8)])
def test_made_context_enters_every_output(hidden):
    dim, c = 4, 3
    net = made(dim, hidden, seed=7, context_dim=c)
    x, ctx = draws((dim,), 1, "float64"), draws((c,), 2, "float64")
    jac_x = np.asarray(made_jacobian_with_context(net, x, ctx))
    strict_lower = np.tril(np.ones((dim, dim)), -1).astype(bool)
    assert np.all(jac_x[:dim][~strict_lower] == 0) and np.all(jac_x[dim:][~strict_lower] == 0)
    jac_c = np.asarray(made_context_jacobian(net, x, ctx))
    assert jac_c.shape == (2 * dim, c)
    assert np.all(np.abs(jac_c).sum(1) > 1e-6)  # every shift and log_scale, output 0 included


made_jacobian_with_context = eqx.filter_jit(lambda net, x, c: jax.jacfwd(lambda v: jnp.concatenate(net(v, c)))(x))


def test_fresh_made_outputs_zero_and_log_scale_is_bounded():
    net = eqx.filter_jit(lambda k: MADE(3, (8,), key=k, bound=2.0))(jax.random.key(0))
    x = draws((3,), 0, "float32")
    shift, log_scale = net(x)
    assert shift.dtype == jnp.float32
    np.testing.assert_array_equal(shift, 0.0)
    np.testing.assert_array_equal(log_scale, 0.0)
    big = randomize(net, 1, "float32", scale=200.0)
    _, log_scale = big(100.0 * x)
    assert np.all(np.abs(np.asarray(log_scale)) <= 2.0) and np.max(np.abs(np.asarray(log_scale))) > 1.5


@pytest.mark.parametrize(
    "kwargs",
    [dict(dim=0, hidden_sizes=(4,)), dict(dim=3, hidden_sizes=(0,)), dict(dim=3, hidden_sizes=(4,), context_dim=-1)],
)
def test_made_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError, match="MADE: need dim >= 1"):
        MADE(**kwargs, key=jax.random.key(0))


def test_made_call_errors():
    net = MADE(3, (4,), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected an input of shape \(3,\)"):
        net(jnp.zeros(4, jnp.float32))
    with pytest.raises(ValueError, match="takes a context of size 0"):
        net(jnp.zeros(3, jnp.float32), jnp.zeros(2, jnp.float32))
    cond = MADE(3, (4,), key=jax.random.key(0), context_dim=2)
    with pytest.raises(ValueError, match="takes a context of size 2, got none"):
        cond(jnp.zeros(3, jnp.float32))
    with pytest.raises(ValueError, match=r"expected a context of shape \(2,\)"):
        cond(jnp.zeros(3, jnp.float32), jnp.zeros(5, jnp.float32))


# MaskedAutoregressiveAffine (MAF and IAF).


@eqx.filter_jit
def affine_report(bij, x):
    """Everything the MAF / IAF tests compare, in one compiled call."""
    y, fldj = bij.forward_and_log_det(x)
    x_back, ildj = bij.inverse_and_log_det(y)
    jac = jax.vmap(jax.jacfwd(bij.forward))(x)
    return dict(
        y=y,
        fldj=fldj,
        x_back=x_back,
        ildj=ildj,
        forward=bij.forward(x),
        inverse=bij.inverse(y),
        fldj_alone=bij.forward_log_det_jacobian(x),
        ildj_alone=bij.inverse_log_det_jacobian(y),
        jac=jac,
        slogdet=jnp.linalg.slogdet(jac)[1],
    )


@pytest.mark.parametrize("mode", ["maf", "iaf"])
def test_autoregressive_affine_round_trip_log_det_and_triangular_jacobian(mode, dtype):
    dim = 5
    bij = MaskedAutoregressiveAffine(made(dim, (16, 16), seed=3, dtype=dtype), mode=mode)
    x = draws((6, dim), 4, dtype)
    r = affine_report(bij, x)
    tol = TOL[dtype]
    assert r["y"].dtype == np.dtype(dtype) and r["fldj"].shape == (6,) and r["fldj"].dtype == np.dtype(dtype)
    np.testing.assert_allclose(r["x_back"], x, **tol)
    np.testing.assert_allclose(r["inverse"], x, **tol)
    np.testing.assert_allclose(r["forward"], r["y"], **tol)
    np.testing.assert_allclose(r["fldj"], r["slogdet"], **tol)
    np.testing.assert_allclose(r["fldj_alone"], r["fldj"], **tol)
    np.testing.assert_allclose(r["ildj"], -r["fldj"], **tol)
    np.testing.assert_allclose(r["ildj_alone"], -r["fldj"], **tol)
    jac = np.asarray(r["jac"])
    upper = np.triu(np.ones((dim, dim)), 1).astype(bool)
    assert np.all(jac[:, upper] == 0.0)  # triangular: y_i depends on x_<=i only
    assert np.max(np.abs(jac[:, ~upper & ~np.eye(dim, dtype=bool)])) > 0.1  # and really on x_<i
    assert np.max(np.abs(np.asarray(r["fldj"]))) > 0.1  # not volume preserving
    np.testing.assert_allclose(np.log(np.abs(np.diagonal(jac, 0, 1, 2))).sum(-1), r["fldj"], **tol)


def test_one_pass_directions_are_the_documented_formulas():
    """MAF inverse: x = (y - shift(y)) * exp(-log_scale(y)); IAF forward: y = x * exp(log_scale(x)) + shift(x)
    (the MADE applied by hand, one vector at a time)."""
    net = made(4, (12,), seed=5)
    maf, iaf = MaskedAutoregressiveAffine(net, mode="maf"), MaskedAutoregressiveAffine(net, mode="iaf")
    v = draws((3, 4), 6, "float64")
    maf_inverse, iaf_forward = eqx.filter_jit(lambda a, b, u: (a.inverse(u), b.forward(u)))(maf, iaf, v)
    for row, got_maf, got_iaf in zip(np.asarray(v), np.asarray(maf_inverse), np.asarray(iaf_forward), strict=True):
        shift, log_scale = (np.asarray(o) for o in net(jnp.asarray(row)))
        np.testing.assert_allclose(got_maf, (row - shift) * np.exp(-log_scale), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_iaf, row * np.exp(log_scale) + shift, rtol=1e-12, atol=1e-12)


def test_one_pass_direction_makes_one_made_call():
    """The fast direction is one MADE pass (no loop in its jaxpr); the slow one is a loop of d."""
    bij = MaskedAutoregressiveAffine(made(4, (8,), seed=1, dtype="float32"))
    x = jnp.zeros((2, 4), jnp.float32)
    inverse = str(jax.make_jaxpr(lambda v: bij.inverse_and_log_det(v))(x))
    forward = str(jax.make_jaxpr(lambda v: bij.forward_and_log_det(v))(x))
    assert "while" not in inverse and "scan" not in inverse
    assert "while" in forward or "scan" in forward


@pytest.mark.parametrize("mode", ["maf", "iaf"])
def test_fresh_layer_is_the_identity(mode, dtype):
    net = eqx.filter_jit(lambda k: MADE(3, (8,), key=k))(jax.random.key(2))
    bij = MaskedAutoregressiveAffine(cast_tree(net, dtype), mode=mode)
    x = draws((5, 3), 3, dtype)
    r = affine_report(bij, x)
    np.testing.assert_array_equal(r["y"], x)
    np.testing.assert_array_equal(r["x_back"], x)
    np.testing.assert_array_equal(r["fldj"], 0.0)


def cast_tree(tree, dtype):
    """Every floating leaf cast to `dtype` (via numpy: no compile)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, dtype)) if eqx.is_inexact_array(a) else a, tree)


@pytest.mark.parametrize("mode", ["maf", "iaf"])
def test_conditional_layer_depends_on_context(mode):
    dim, c = 3, 2
    base = MaskedAutoregressiveAffine(made(dim, (16,), seed=8, context_dim=c), mode=mode)
    x = draws((4, dim), 9, "float64")
    ctx_a, ctx_b = draws((c,), 10, "float64"), draws((c,), 11, "float64")
    batch_ctx = jnp.stack([ctx_a, ctx_b, ctx_a, ctx_b])  # (4, c): one context per vector

    @eqx.filter_jit
    def run(bij, v):
        y, ld = bij.forward_and_log_det(v)
        back, ild = bij.inverse_and_log_det(y)
        return y, ld, back, ild

    ya, lda, back, ild = run(base.condition(ctx_a), x)
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ild, -lda, rtol=1e-10, atol=1e-10)
    yb, ldb, _, _ = run(base.condition(ctx_b), x)
    assert np.max(np.abs(np.asarray(ya - yb))) > 1e-3
    assert np.max(np.abs(np.asarray(lda - ldb))) > 1e-3
    ym, ldm, back, _ = run(base.condition(batch_ctx), x)
    np.testing.assert_allclose(ym[0::2], ya[0::2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ym[1::2], yb[1::2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)


def test_autoregressive_affine_errors():
    net = MADE(3, (4,), key=jax.random.key(0))
    with pytest.raises(ValueError, match="mode must be 'maf' or 'iaf'"):
        MaskedAutoregressiveAffine(net, mode="nice")
    bij = MaskedAutoregressiveAffine(net)
    for method in (bij.forward, bij.inverse):
        with pytest.raises(ValueError, match=r"expected inputs of shape \(\.\.\., 3\), got \(2, 4\)"):
            method(jnp.zeros((2, 4), jnp.float32))
    cond = MaskedAutoregressiveAffine(MADE(3, (4,), key=jax.random.key(0), context_dim=2))
    with pytest.raises(ValueError, match=r"takes a context of size 2; set one with \.condition"):
        cond.inverse(jnp.zeros((2, 3), jnp.float32))
    with pytest.raises(ValueError, match="does not broadcast"):
        cond.condition(jnp.zeros((3, 2), jnp.float32)).inverse(jnp.zeros((2, 3), jnp.float32))


# Permute.


def test_permute_round_trip_and_log_det(dtype):
    perm = Permute(np.array([2, 0, 3, 1]))
    x = draws((3, 4), 0, dtype)
    y = perm.forward(x)
    np.testing.assert_array_equal(y, np.asarray(x)[:, [2, 0, 3, 1]])
    np.testing.assert_array_equal(perm.inverse(y), x)
    fy, fl = perm.forward_and_log_det(x)
    ix, il = perm.inverse_and_log_det(y)
    np.testing.assert_array_equal(fy, y)
    np.testing.assert_array_equal(ix, x)
    for ld in (fl, il, perm.forward_log_det_jacobian(x), perm.inverse_log_det_jacobian(y)):
        assert ld.shape == (3,) and ld.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ld, 0.0)
    jac = jax.jacfwd(perm.forward)(x[0])
    assert abs(np.linalg.det(np.asarray(jac, np.float64))) == 1.0


def test_permute_reverse_and_random():
    np.testing.assert_array_equal(Permute.reverse(4).forward(jnp.arange(4.0)), [3.0, 2.0, 1.0, 0.0])
    perm = Permute.random(jax.random.key(3), 7)
    assert sorted(np.asarray(perm.permutation).tolist()) == list(range(7))
    x = draws((7,), 1, "float32")
    np.testing.assert_array_equal(perm.inverse(perm.forward(x)), x)
    # traceable: random permutations stacked by vmap are each a permutation
    stacked = eqx.filter_vmap(lambda k: Permute.random(k, 5))(jax.random.split(jax.random.key(4), 6))
    assert stacked.permutation.shape == (6, 5)
    assert all(sorted(row) == list(range(5)) for row in np.asarray(stacked.permutation).tolist())


def test_reverse_is_the_reverse_permutation_with_no_arrays():
    x = draws((5, 3), 2, "float64")
    for method in ("forward", "inverse", "forward_and_log_det", "inverse_and_log_det"):
        got, want = getattr(Reverse(), method)(x), getattr(Permute.reverse(3), method)(x)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(g, w)
    assert jax.tree.leaves(Reverse()) == []  # the order is static: nothing to gather or stack
    with pytest.raises(ValueError, match="Reverse: expected inputs of shape"):
        Reverse().forward(jnp.float32(1.0))


@pytest.mark.parametrize("dim", [1, 2])
def test_made_narrow_first_layer_forms_agree(dim):
    """A 1-2 wide first layer gives the same outputs elementwise (`narrow=True`) and as a matmul."""
    net = made(dim, (8, 8), 3)
    x = draws((16, dim), 4, "float64")
    for a, b in zip(jax.vmap(net)(x), jax.vmap(lambda v: net(v, narrow=False))(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [[0, 0, 1], [1, 2, 3], [[0, 1]], [0.0, 1.0]])
def test_permute_invalid_raises(bad):
    with pytest.raises(ValueError, match="Permute: "):
        Permute(np.asarray(bad))


def test_permute_wrong_size_raises():
    with pytest.raises(ValueError, match=r"Permute: expected inputs of shape \(\.\.\., 3\), got \(4,\)"):
        Permute.reverse(3).forward(jnp.zeros(4, jnp.float32))


# ActNorm.


def test_actnorm_round_trip_and_log_det_vs_jacfwd(dtype):
    act = ActNorm(loc=np.array([1.0, -2.0, 0.5]), log_scale=np.array([0.3, -1.2, 2.0]), dtype=dtype)
    x = draws((4, 3), 1, dtype)
    r = affine_report(act, x)
    tol = TOL[dtype]
    np.testing.assert_allclose(r["y"], np.asarray(x) * np.exp([0.3, -1.2, 2.0]) + [1.0, -2.0, 0.5], **tol)
    np.testing.assert_allclose(r["x_back"], x, **tol)
    np.testing.assert_allclose(r["fldj"], np.full(4, 1.1), **tol)
    np.testing.assert_allclose(r["fldj"], r["slogdet"], **tol)
    np.testing.assert_allclose(r["ildj"], -r["fldj"], **tol)
    assert r["fldj"].shape == (4,) and r["y"].dtype == np.dtype(dtype)


def test_actnorm_starts_as_identity():
    act = ActNorm(3)
    x = draws((2, 3), 0, "float32")
    np.testing.assert_array_equal(act.forward(x), x)
    np.testing.assert_array_equal(act.forward_log_det_jacobian(x), np.zeros(2))


def test_actnorm_init_standardises_the_inverse(dtype):
    rng = np.random.default_rng(5)
    y = jnp.asarray((rng.standard_normal((2, 500, 3)) * [0.1, 3.0, 20.0] + [5.0, -1.0, 0.0]).astype(dtype))
    act = actnorm_init(ActNorm(3, dtype=dtype), y)
    assert act.loc.dtype == np.dtype(dtype)
    z = np.asarray(act.inverse(y), np.float64).reshape(-1, 3)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(z.mean(0), 0.0, atol=tol)
    np.testing.assert_allclose(z.std(0), 1.0, atol=tol)
    np.testing.assert_allclose(act.forward(act.inverse(y)), y, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-4)
    # a constant column gets the floor, not -inf
    const = actnorm_init(ActNorm(2), jnp.ones((10, 2), jnp.float32))
    assert np.all(np.isfinite(np.asarray(const.log_scale)))


def test_actnorm_errors():
    with pytest.raises(ValueError, match="ActNorm: give dim >= 1"):
        ActNorm(0)
    with pytest.raises(ValueError, match="ActNorm: give dim, or both loc and log_scale"):
        ActNorm(loc=np.zeros(3))
    with pytest.raises(ValueError, match="ActNorm: loc and log_scale must be 1-D of one shape"):
        ActNorm(loc=np.zeros(3), log_scale=np.zeros(2))
    with pytest.raises(ValueError, match=r"ActNorm: expected inputs of shape \(\.\.\., 3\)"):
        ActNorm(3).inverse(jnp.zeros((2, 4), jnp.float32))
    with pytest.raises(ValueError, match=r"actnorm_init: expected a batch of shape \(n, \.\.\., 3\)"):
        actnorm_init(ActNorm(3), jnp.zeros((10, 2), jnp.float32))

"""Bijectors: round trips, log-det-Jacobians against jax.jacfwd, the stable tanh log-det, Chain,
MaskedCoupling (RealNVP) and Transformed built from them.

References are independent of the code under test: numpy/scipy in float64, closed forms, and
Jacobians computed by forward-mode autodiff of the forward map itself.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from reparam.bijectors import (
    Affine,
    Chain,
    CouplingMLP,
    Exp,
    MaskedCoupling,
    Scale,
    Shift,
    Sigmoid,
    Tanh,
    clipped_atanh,
    log_abs_det_tanh,
)
from reparam.distributions import Independent, Normal, Transformed

# Round-trip tolerances per dtype (relative to magnitude, plus a floor).
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-11, atol=1e-11)}


def arr(x, dtype):
    return np.asarray(x, dtype=dtype)


def cast_tree(tree, dtype):
    """Cast every floating array in a pytree (e.g. an equinox MLP) to `dtype` (via numpy: no compile)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, dtype)) if eqx.is_inexact_array(a) else a, tree)


# Elementwise bijectors with the interval of x (domain) and y (range) on which round trips are
# well-conditioned in the given dtype.
def elementwise_cases(dtype):
    f32 = dtype == "float32"
    return {
        "affine": (Affine(arr(1.5, dtype), arr(-2.5, dtype)), (-10.0, 10.0), (-20.0, 20.0)),
        "shift": (Shift(arr(-3.0, dtype)), (-10.0, 10.0), (-10.0, 10.0)),
        "scale": (Scale(arr(0.25, dtype)), (-10.0, 10.0), (-5.0, 5.0)),
        "exp": (Exp(), (-10.0, 10.0), (1e-3, 50.0)),
        "sigmoid": (Sigmoid(), (-4.0, 4.0) if f32 else (-10.0, 10.0), (0.02, 0.98) if f32 else (1e-4, 1 - 1e-4)),
        "tanh": (Tanh(), (-3.0, 3.0) if f32 else (-5.0, 5.0), (-0.95, 0.95) if f32 else (-1 + 1e-4, 1 - 1e-4)),
    }


CASES = ["affine", "shift", "scale", "exp", "sigmoid", "tanh"]


@eqx.filter_jit
def elementwise_report(bij, x, y):
    """Everything the elementwise tests compare, in one compiled call."""
    fx = bij.forward(x)
    iy = bij.inverse(y)
    fy, fl = bij.forward_and_log_det(x)
    ix, il = bij.inverse_and_log_det(fx)
    return dict(
        x_back=bij.inverse(fx),
        y_back=bij.forward(iy),
        fx=fx,
        call=bij(x),
        fldj=bij.forward_log_det_jacobian(x),
        fused_y=fy,
        fused_ldj=fl,
        ildj=bij.inverse_log_det_jacobian(fx),
        fused_x=ix,
        fused_ildj=il,
        inv=bij.inverse(fx),
        fldj_at_inverse=bij.forward_log_det_jacobian(bij.inverse(fx)),
        derivative=jax.vmap(jax.jacfwd(bij.forward))(x),  # dy/dx per element, by forward-mode autodiff
    )


@pytest.mark.parametrize("name", CASES)
def test_elementwise_bijector(name, dtype):
    bij, (x_lo, x_hi), (y_lo, y_hi) = elementwise_cases(dtype)[name]
    x = arr(np.linspace(x_lo, x_hi, 101), dtype)
    y = arr(np.linspace(y_lo, y_hi, 101), dtype)
    r = {k: np.asarray(v) for k, v in elementwise_report(bij, x, y).items()}
    assert all(v.dtype == np.dtype(dtype) for v in r.values())
    assert r["fldj"].shape == x.shape
    # inverse(forward(x)) == x and forward(inverse(y)) == y
    np.testing.assert_allclose(r["x_back"].astype(np.float64), x.astype(np.float64), **TOL[dtype])
    np.testing.assert_allclose(r["y_back"].astype(np.float64), y.astype(np.float64), **TOL[dtype])
    # forward log-det = log|dy/dx| by autodiff
    close = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r["fldj"], np.log(np.abs(r["derivative"].astype(np.float64))), **close)
    # inverse log-det at y = f(x) is minus the forward log-det at the inverse point, and at x
    np.testing.assert_allclose(r["ildj"], -r["fldj_at_inverse"], rtol=1e-6, atol=1e-6)
    looser = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r["ildj"], -r["fldj"], **looser)
    # the fused methods agree with the separate ones
    np.testing.assert_allclose(r["fused_y"], r["fx"], rtol=1e-6)
    np.testing.assert_allclose(r["call"], r["fx"], rtol=1e-6)
    np.testing.assert_allclose(r["fused_ldj"], r["fldj"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r["fused_x"], r["inv"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r["fused_ildj"], r["ildj"], rtol=1e-6, atol=1e-6)


@given(
    shift=st.floats(-1e3, 1e3),
    scale=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
    x=st.floats(-1e3, 1e3),
)
def test_affine_properties(shift, scale, x):
    bij = Affine(shift, scale)
    y = bij.forward(np.float64(x))
    assert np.isclose(float(y), shift + scale * x, rtol=1e-12, atol=1e-9)
    assert np.isclose(float(bij.inverse(y)), x, rtol=1e-9, atol=1e-9 * (1 + abs(shift) / abs(scale)))
    ldj = float(bij.forward_log_det_jacobian(np.float64(x)))
    assert ldj == pytest.approx(math.log(abs(scale)), rel=1e-12, abs=1e-12)


def test_affine_ldj_broadcasts():
    bij = Affine(np.zeros(3), np.array([1.0, -2.0, 0.5]))
    ldj = bij.forward_log_det_jacobian(np.ones((5, 3)))
    assert ldj.shape == (5, 3)
    np.testing.assert_allclose(ldj, np.broadcast_to(np.log([1.0, 2.0, 0.5]), (5, 3)))


# ---------------------------------------------------------------------------------------------
# The stable tanh log-det.


def exact_log_abs_det_tanh(u):
    """log(1 - tanh(u)^2) in numpy float64, written as 2 (log 2 - u - log1p(exp(-2u)))."""
    u = np.asarray(u, np.float64)
    # log1p(exp(-2u)) overflows for very negative u; use its identity -2u + log1p(exp(2u)) there.
    softplus = np.where(u > 0, np.log1p(np.exp(-2 * np.abs(u))), -2 * u + np.log1p(np.exp(-2 * np.abs(u))))
    return 2 * (np.log(2.0) - u - softplus)


def test_exact_reference_is_right():
    # sanity check of the reference against the direct formula where the latter is accurate
    u = np.linspace(-3, 3, 61)
    np.testing.assert_allclose(exact_log_abs_det_tanh(u), np.log(1 - np.tanh(u) ** 2), rtol=1e-12, atol=1e-12)


def test_log_abs_det_tanh_float32_matches_float64_exact():
    u = np.linspace(-50, 50, 20001).astype(np.float32)
    got = np.asarray(jax.jit(log_abs_det_tanh)(u))
    assert got.dtype == np.float32
    assert np.all(np.isfinite(got))
    ref = exact_log_abs_det_tanh(u.astype(np.float64))
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= 1e-5 * np.maximum(1.0, np.abs(ref))), float(np.max(err / np.maximum(1.0, np.abs(ref))))


def test_log_abs_det_tanh_gradient_finite_and_correct():
    u = np.linspace(-50, 50, 2001).astype(np.float32)
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(log_abs_det_tanh)))(u))
    assert np.all(np.isfinite(grad))
    # d/du log(1 - tanh(u)^2) = -2 tanh(u)
    np.testing.assert_allclose(grad, -2 * np.tanh(u.astype(np.float64)), atol=1e-5)


def test_naive_tanh_log_det_is_wrong_by_more_than_a_nat():
    """Why the bijector never uses log(1 - a^2 + 1e-6): at u = 8 it is off by more than one nat
    even in exact float64 arithmetic (the +1e-6 dominates 1 - tanh(8)^2 ~ 4.5e-7); in float32 the
    tanh itself saturates and the error is still large. The stable form is exact."""
    u = 8.0
    exact = exact_log_abs_det_tanh(u)
    naive64 = np.log(1 - np.tanh(u) ** 2 + 1e-6)
    assert abs(naive64 - exact) > 1.0
    a32 = jnp.tanh(jnp.float32(u))
    naive32 = float(jnp.log(1 - a32**2 + 1e-6))
    assert abs(naive32 - exact) > 0.5
    assert abs(float(log_abs_det_tanh(jnp.float32(u))) - exact) < 1e-5 * abs(exact)


def test_clipped_atanh_of_plus_minus_one_is_finite(dtype):
    y = arr([-1.0, 1.0], dtype)

    @jax.jit
    def report(y):
        return clipped_atanh(y), Tanh().inverse_log_det_jacobian(y), jax.vmap(jax.grad(clipped_atanh))(y)

    x, ildj, grad = (np.asarray(v) for v in report(y))
    assert x.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(x))
    assert x[0] == -x[1] and x[1] > 8  # the largest representable pre-activation, not 0
    assert np.all(np.isfinite(ildj))
    # the gradient at the clip is finite too (zero: the clip is flat there)
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------------------------
# Chain.


def test_chain_is_function_composition(dtype):
    f = Affine(arr(3.0, dtype), arr(2.0, dtype))
    g = Tanh()
    h = Exp()
    x = arr(np.linspace(-2, 2, 101), dtype)

    @jax.jit
    def report(x):
        chain = Chain([f, g, h])
        return dict(
            fg=Chain([f, g])(x),
            f_of_g=f(g(x)),
            gf=Chain([g, f])(x),
            g_of_f=g(f(x)),
            fgh=chain(x),
            f_of_g_of_h=f(g(h(x))),
            back=chain.inverse(chain(x)),
            ldj=chain.forward_log_det_jacobian(x),
            parts=h.forward_log_det_jacobian(x)
            + g.forward_log_det_jacobian(h(x))
            + f.forward_log_det_jacobian(g(h(x))),
        )

    r = report(x)
    np.testing.assert_allclose(r["fg"], r["f_of_g"], rtol=1e-6)
    np.testing.assert_allclose(r["gf"], r["g_of_f"], rtol=1e-6)
    np.testing.assert_allclose(r["fgh"], r["f_of_g_of_h"], rtol=1e-6)
    # the two orders differ, so the test can tell them apart
    assert not np.allclose(r["fg"], r["gf"])
    # inverse undoes forward where exp-then-tanh is not saturated; log-det is the sum of the parts
    ok = x <= 0.5
    np.testing.assert_allclose(np.asarray(r["back"])[ok], x[ok], **TOL[dtype])
    np.testing.assert_allclose(r["ldj"], r["parts"], rtol=1e-5, atol=1e-5)


def test_chain_elementwise_log_det_vs_jacfwd():
    chain = Chain([Affine(3.0, -2.0), Tanh(), Affine(0.5, 1.5), Sigmoid()])
    x = np.linspace(-4, 4, 101)
    r = {k: np.asarray(v) for k, v in elementwise_report(chain, x, x).items()}
    expected = np.log(np.abs(r["derivative"]))
    np.testing.assert_allclose(r["fldj"], expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r["ildj"], -expected, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(r["fused_x"], x, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(r["fused_ildj"], -expected, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(r["fused_ldj"], expected, rtol=1e-10, atol=1e-10)


def test_chain_in_range_is_exactly_the_image(dtype):
    chain = Chain([Affine(arr(3.0, dtype), arr(2.0, dtype)), Tanh()])
    y = arr([-10.0, 0.0, 0.999, 1.0, 1.001, 3.0, 4.999, 5.0, 5.001, 100.0], dtype)
    expected = (y >= 1.0) & (y <= 5.0)
    inside, inverse_y = eqx.filter_jit(lambda c, v: (c.in_range(v), c.inverse(v)))(chain, y)
    np.testing.assert_array_equal(np.asarray(inside), expected)
    # the inverse inside the range lands back on finite pre-activations
    assert np.all(np.isfinite(np.asarray(inverse_y)[expected]))


def test_chain_rejects_empty():
    with pytest.raises(ValueError):
        Chain([])


# ---------------------------------------------------------------------------------------------
# MaskedCoupling (RealNVP).


WIDTH, DEPTH = 16, 2


def random_conditioner(dim, seed, dtype, scale=0.5):
    """A CouplingMLP with random weights: the structure from equinox (eval_shape, no compute), the
    hidden layers filled with numpy draws at the default 1/sqrt(fan_in) scale, and the last layer,
    which CouplingMLP zero-initialises, replaced with eqx.tree_at by N(0, scale^2) draws."""
    rng = np.random.default_rng(seed)
    skeleton = eqx.filter_eval_shape(CouplingMLP, dim, WIDTH, DEPTH, key=jax.random.key(0))

    def fill(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            fan_in = leaf.shape[-1] if len(leaf.shape) == 2 else WIDTH
            return jnp.asarray((rng.uniform(-1, 1, leaf.shape) / np.sqrt(fan_in)).astype(dtype))
        return leaf

    cond = jax.tree_util.tree_map(fill, skeleton, is_leaf=lambda v: isinstance(v, jax.ShapeDtypeStruct))
    last = cond.net.layers[-1]
    w = jnp.asarray((scale * rng.standard_normal(last.weight.shape)).astype(dtype))
    b = jnp.asarray((scale * rng.standard_normal(last.bias.shape)).astype(dtype))
    return eqx.tree_at(lambda c: (c.net.layers[-1].weight, c.net.layers[-1].bias), cond, (w, b))


def trivial_conditioner(v):
    return jnp.zeros_like(v), jnp.zeros_like(v)


MASK = np.array([1, 0, 1, 0])

forward = eqx.filter_jit(lambda b, x: b.forward(x))
inverse = eqx.filter_jit(lambda b, y: b.inverse(y))
forward_and_log_det = eqx.filter_jit(lambda b, x: b.forward_and_log_det(x))
inverse_and_log_det = eqx.filter_jit(lambda b, y: b.inverse_and_log_det(y))
forward_ldj = eqx.filter_jit(lambda b, x: b.forward_log_det_jacobian(x))
inverse_ldj = eqx.filter_jit(lambda b, y: b.inverse_log_det_jacobian(y))
jacobian_slogdet = eqx.filter_jit(lambda f, x: jnp.linalg.slogdet(jax.vmap(jax.jacfwd(f))(x))[1])


def normal_draws(shape, seed, dtype, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def test_coupling_masked_coordinates_pass_unchanged(dtype):
    bij = MaskedCoupling(MASK, random_conditioner(4, 0, dtype))
    x = normal_draws((64, 4), 1, dtype)
    y = np.asarray(forward(bij, x))
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    np.testing.assert_array_equal(y[:, MASK == 1], x[:, MASK == 1])
    # and the free coordinates really change (the conditioner is not trivial)
    assert np.min(np.abs(y[:, MASK == 0] - x[:, MASK == 0])) > 0
    np.testing.assert_array_equal(np.asarray(inverse(bij, y))[:, MASK == 1], x[:, MASK == 1])


def test_coupling_round_trip(dtype):
    bij = MaskedCoupling(MASK, random_conditioner(4, 2, dtype))
    x = normal_draws((64, 4), 3, dtype, scale=2.0)
    y = forward(bij, x)
    assert not np.allclose(y, x)
    np.testing.assert_allclose(inverse(bij, y), x, **TOL[dtype])
    np.testing.assert_allclose(forward(bij, inverse(bij, x)), x, **TOL[dtype])


@eqx.filter_jit
def all_log_dets(bij, x):
    """Everything the log-det tests compare, in one compiled call: the Jacobian references by
    forward-mode autodiff of the forward and inverse maps, and every log-det path of the bijector."""
    y, fl = bij.forward_and_log_det(x)
    ix, il = bij.inverse_and_log_det(y)
    return dict(
        jac_forward=jnp.linalg.slogdet(jax.vmap(jax.jacfwd(bij.forward))(x))[1],
        jac_inverse=jnp.linalg.slogdet(jax.vmap(jax.jacfwd(bij.inverse))(y))[1],
        ldj=bij.forward_log_det_jacobian(x),
        fused_ldj=fl,
        y=y,
        fused_y=bij.forward(x),
        ildj=bij.inverse_log_det_jacobian(y),
        ix=ix,
        il=il,
        inv=bij.inverse(y),
    )


def check_vector_log_dets(bij, x, tol):
    out = {k: np.asarray(v) for k, v in all_log_dets(bij, x).items()}
    expected = out["jac_forward"]
    assert np.max(np.abs(expected)) > 0.1  # a non-trivial volume change
    assert out["ldj"].shape == x.shape[:1]
    np.testing.assert_allclose(out["ldj"], expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["fused_ldj"], expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(out["fused_y"], out["y"])
    np.testing.assert_allclose(out["ildj"], -expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["ix"], x, rtol=tol, atol=tol)
    np.testing.assert_array_equal(out["inv"], out["ix"])
    np.testing.assert_allclose(out["il"], -expected, rtol=tol, atol=tol)
    # the inverse log-det against the Jacobian of the inverse map itself
    np.testing.assert_allclose(out["il"], out["jac_inverse"], rtol=tol, atol=tol)


def test_coupling_log_det_vs_jacfwd():
    bij = MaskedCoupling(MASK, random_conditioner(4, 4, "float64", scale=1.0))
    check_vector_log_dets(bij, normal_draws((64, 4), 5, "float64"), 1e-10)


def test_chain_mixing_elementwise_and_coupling_vs_jacfwd():
    chain = Chain(
        [
            Affine(np.array([0.5, -1.0, 2.0, 0.0]), np.array([2.0, -0.5, 1.5, 3.0])),
            MaskedCoupling(MASK, random_conditioner(4, 6, "float64", scale=0.7)),
            Tanh(),
            MaskedCoupling(1 - MASK, random_conditioner(4, 7, "float64", scale=0.7)),
        ]
    )
    assert chain.event_ndims == 1
    check_vector_log_dets(chain, normal_draws((64, 4), 8, "float64"), 1e-8)


@functools.cache
def fresh_mlp(dim):
    """A freshly built CouplingMLP (compiled: eager equinox initialisation is slow)."""
    return eqx.filter_jit(lambda key: CouplingMLP(dim, WIDTH, DEPTH, key=key))(jax.random.key(100 + dim))


def test_fresh_coupling_mlp_is_identity(dtype):
    cond = cast_tree(fresh_mlp(4), dtype)
    last = cond.net.layers[-1]
    assert not np.any(last.weight) and not np.any(last.bias)
    assert np.any(cond.net.layers[0].weight)  # only the last layer starts at zero
    bij = MaskedCoupling(MASK, cond)
    x = normal_draws((64, 4), 9, dtype)
    y, ldj = forward_and_log_det(bij, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(ldj, np.zeros(64))
    np.testing.assert_array_equal(inverse(bij, x), x)


def test_masked_coupling_mlp_reads_kept_and_writes_free_coordinates_only():
    """`CouplingMLP(mask=...)`: `len(kept) -> 2 len(free)` outputs, zero at the kept coordinates, blind
    to the free inputs; its coupling passes the log-det check like the full-width conditioner."""
    mask = np.array([True, False, False, True, False])
    cond = eqx.filter_jit(lambda key: CouplingMLP(5, WIDTH, DEPTH, key=key, mask=mask))(jax.random.key(3))
    rng = np.random.default_rng(5)
    last = cond.net.layers[-1]
    cond = eqx.tree_at(
        lambda c: (c.net.layers[-1].weight, c.net.layers[-1].bias),
        cond,
        (
            jnp.asarray(rng.standard_normal(last.weight.shape), jnp.float32),
            jnp.asarray(rng.standard_normal(last.bias.shape), jnp.float32),
        ),
    )
    cond = cast_tree(cond, "float64")
    assert cond.net.layers[0].weight.shape == (WIDTH, 2) and last.weight.shape == (6, WIDTH)
    x = normal_draws((32, 5), 6, "float64")
    shift, log_scale = jax.vmap(cond)(x)
    np.testing.assert_array_equal(shift[:, mask], 0.0)
    np.testing.assert_array_equal(log_scale[:, mask], 0.0)
    assert np.all(shift[:, ~mask] != 0)
    moved = np.where(mask, x, 7.0)  # the free coordinates do not enter
    np.testing.assert_array_equal(jax.vmap(cond)(moved)[0], shift)
    check_vector_log_dets(MaskedCoupling(mask, cond), x, 1e-10)
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        CouplingMLP(4, WIDTH, DEPTH, key=jax.random.key(0), mask=mask)


def test_coupling_mlp_log_scale_is_bounded():
    cond = random_conditioner(4, 10, "float64", scale=50.0)
    x = normal_draws((100, 4), 11, "float64", scale=10.0)
    _, log_scale = eqx.filter_jit(lambda c, v: jax.vmap(c)(v))(cond, x)
    assert np.max(np.abs(log_scale)) <= cond.bound
    assert np.max(np.abs(log_scale)) > 0.5 * cond.bound  # the bound is what limits it


def test_coupling_batches_over_leading_axes():
    bij = MaskedCoupling(MASK, random_conditioner(4, 12, "float64"))
    x = normal_draws((4, 16, 4), 13, "float64")
    y, ldj = forward_and_log_det(bij, x)
    assert y.shape == (4, 16, 4) and ldj.shape == (4, 16)
    # leading axes are independent: same as applying to each vector
    y1, ldj1 = forward_and_log_det(bij, x.reshape(64, 4))
    np.testing.assert_allclose(y, y1.reshape(4, 16, 4), rtol=1e-12)
    np.testing.assert_allclose(ldj, ldj1.reshape(4, 16), rtol=1e-12)
    single = forward(bij, x[1, 2])  # an unbatched vector
    assert single.shape == (4,)
    np.testing.assert_allclose(y[1, 2], single, rtol=1e-12)


@pytest.mark.parametrize("mask", [[0, 2, 1, 0], [[1, 0], [0, 1]], [0.5, 1.0, 0.0, 1.0], 1])
def test_coupling_invalid_mask_raises(mask):
    with pytest.raises(ValueError, match="mask"):
        MaskedCoupling(np.asarray(mask), trivial_conditioner)


def test_coupling_builds_under_eval_shape_and_accepts_bool_masks():
    """The mask is checked in numpy, so a coupling (and a flow of them) can be built under
    `eval_shape` / `jit`; a boolean mask is the same layer as its 0/1 version."""
    skeleton = eqx.filter_eval_shape(
        lambda key: MaskedCoupling(MASK.astype(bool), CouplingMLP(4, WIDTH, DEPTH, key=key)), jax.random.key(0)
    )
    assert isinstance(skeleton, MaskedCoupling) and skeleton.mask.shape == (4,)
    conditioner = random_conditioner(4, 3, "float64")
    x = normal_draws((8, 4), 4, "float64")
    y_bool, ldj_bool = forward_and_log_det(MaskedCoupling(MASK.astype(bool), conditioner), x)
    y_int, ldj_int = forward_and_log_det(MaskedCoupling(MASK, conditioner), x)
    np.testing.assert_array_equal(y_bool, y_int)
    np.testing.assert_array_equal(ldj_bool, ldj_int)
    assert np.max(np.abs(ldj_int)) > 0.01  # not the identity


# ---------------------------------------------------------------------------------------------
# Affine validation.


@pytest.mark.parametrize("scale", [0.0, np.nan, np.inf])
def test_affine_invalid_scale_raises(scale):
    with pytest.raises(ValueError, match="non-zero"):
        Affine(1.0, scale)


def test_affine_zero_scale_in_vector_raises():
    with pytest.raises(ValueError):
        Scale(np.array([1.0, 0.0, 2.0]))


def test_affine_traced_zero_scale_raises_under_jit():
    @jax.jit
    def apply(scale):
        return Affine(0.0, scale).forward(jnp.ones(3))

    np.testing.assert_allclose(apply(2.0), 2 * np.ones(3))  # valid scale works under jit
    with pytest.raises(Exception) as info:
        jax.block_until_ready(apply(0.0))
    assert "non-zero" in str(info.value)


def test_affine_validate_false_opts_out():
    bij = Affine(0.0, 0.0, validate=False)
    assert float(bij.forward_log_det_jacobian(np.float64(1.0))) == -np.inf


# ---------------------------------------------------------------------------------------------
# Transformed built from bijectors.


LOGNORMAL = scipy.stats.lognorm(s=0.7, scale=np.exp(0.3))


def test_transformed_normal_exp_is_lognormal(dtype):
    dist = Transformed(Normal(arr(0.3, dtype), arr(0.7, dtype)), Exp())
    y = arr(np.concatenate([np.geomspace(1e-2, 30, 99), [0.0, -1.0]]), dtype)
    got = np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, y))
    assert got.dtype == np.dtype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
    np.testing.assert_allclose(got[:99], LOGNORMAL.logpdf(y[:99].astype(np.float64)), **tol)
    # outside the support: -inf, not NaN
    assert np.all(got[99:] == -np.inf)


def test_transformed_normal_exp_samples_are_lognormal():
    dist = Transformed(Normal(0.3, 0.7), Exp())
    ys, lp = eqx.filter_jit(lambda d, k: d.rsample_and_log_prob(k, (20000,)))(dist, jax.random.key(0))
    ys = np.asarray(ys)
    # rsample_and_log_prob scores its own samples (computed from the noise, never by inverting)
    np.testing.assert_allclose(lp, LOGNORMAL.logpdf(ys), rtol=1e-10, atol=1e-10)
    # and the samples are lognormal
    assert scipy.stats.kstest(ys, LOGNORMAL.cdf).pvalue > 1e-3


def test_transformed_through_chain_affine_tanh():
    """Normal pushed through tanh then rescaled to (1, 5): change of variables by hand."""
    dist = Transformed(Normal(0.2, 0.8), Chain([Affine(3.0, 2.0), Tanh()]))
    y = np.concatenate([np.linspace(1.05, 4.95, 97), [0.5, 0.999, 5.001, 7.0]])
    got = np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, y))
    a = (y[:97] - 3.0) / 2.0
    u = np.arctanh(a)
    expected = scipy.stats.norm(0.2, 0.8).logpdf(u) - np.log(2.0) - np.log(1 - a**2)
    np.testing.assert_allclose(got[:97], expected, rtol=1e-10)
    assert np.all(got[97:] == -np.inf)


def test_transformed_vector_bijector_on_scalar_base_raises():
    bij = MaskedCoupling(MASK, trivial_conditioner)
    with pytest.raises(ValueError, match="Independent"):
        Transformed(Normal(np.zeros(3), np.ones(3)), bij)
    # the fix the message suggests works
    assert Transformed(Independent(Normal(np.zeros(4), np.ones(4)), 1), bij).event_shape == (4,)


def realnvp(dim, seed, dtype, scale=0.6):
    mask = np.arange(dim) % 2
    base = Independent(Normal(np.zeros(dim, dtype), np.ones(dim, dtype)), 1)
    flow = Chain(
        [
            MaskedCoupling(mask, random_conditioner(dim, seed, dtype, scale=scale)),
            MaskedCoupling(1 - mask, random_conditioner(dim, seed + 1, dtype, scale=scale)),
        ]
    )
    return Transformed(base, flow)


def test_realnvp_rsample_and_log_prob_matches_log_prob(dtype):
    dist = realnvp(4, 20, dtype)
    assert dist.event_shape == (4,) and dist.batch_shape == ()

    @eqx.filter_jit
    def run(d, key):
        y, lp = d.rsample_and_log_prob(key, (500,))
        x = d.bijector.inverse(y)
        return y, lp, d.log_prob(y), x, d.bijector.forward_log_det_jacobian(x)

    y, lp, lp_again, x, fldj = run(dist, jax.random.key(21))
    assert y.shape == (500, 4) and lp.shape == (500,)
    assert y.dtype == np.dtype(dtype) and lp.dtype == np.dtype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lp_again, lp, **tol)
    # a different reference for the same number: base log-density of the inverse minus the
    # forward log-det, with scipy's normal
    x = np.asarray(x, np.float64)
    fldj = np.asarray(fldj, np.float64)
    ref = scipy.stats.norm.logpdf(x).sum(-1) - fldj
    np.testing.assert_allclose(lp, ref, **tol)
    # the flow is not the identity: the density differs from the base density
    assert np.max(np.abs(np.asarray(lp, np.float64) - scipy.stats.norm.logpdf(np.asarray(y, np.float64)).sum(-1))) > 0.1


def test_realnvp_density_integrates_to_one_in_2d():
    dist = realnvp(2, 22, "float64", scale=0.8)
    g0 = g1 = np.linspace(-12.0, 12.0, 481)  # spacing 0.05; |log_scale| <= 3 per layer
    grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1)
    dens = np.exp(np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, grid)))
    assert np.all(np.isfinite(dens))
    total = np.trapezoid(np.trapezoid(dens, g1, axis=1), g0)
    assert abs(total - 1.0) < 1e-2, total
    # sanity: the density is not the base density (the flow is non-trivial)
    base = scipy.stats.norm.pdf(grid).prod(-1)
    assert np.max(np.abs(dens - base)) > 1e-2

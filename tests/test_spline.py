"""The rational-quadratic spline (Durkan et al. 2019) and SplineCoupling.

References are independent of the code under test: Jacobians by forward-mode autodiff of the
forward and inverse maps themselves, the knots the spline must interpolate (values and slopes),
quadrature of the pushed-forward density, and float64 re-evaluation.

Tolerances follow the conditioning, in float32 and float64 alike, with `eps` the unit roundoff, `M`
the spline's largest slope (at the knots and bin averages) and `C = 32`:

- `|f^-1(f(x)) - x| <= C eps (|x| + (|y| + B (2 + M)) / f'(x))`: the rounding of `y` and of the
  quadratic's coefficients (of size `h M` in a bin of height `h`) divided by the slope; where the
  slope collapses right next to `x` (a knot slope far above its bin's average) this forward bound
  does not hold for any algorithm and the backward error `|f(f^-1(y)) - y| <= C eps (|y| + B (2 + M))`
  is checked instead;
- `|f(f^-1(y)) - y| <= C eps (|y| + B (2 + M) + f'(x) |x|)`;
- `|log-det - log jacfwd| <= C eps (1 + M / f'(x))` forward (autodiff sums terms of size `M` to a
  slope `f'`); inverse the same plus `|d log f'/dx|` times the inverse's point error above.

For moderate parameters these are a few ulps; at raw parameters of +-20 (slopes from 1e-3 to 1e3)
they are what the arithmetic allows. Measured worst ratios to these bounds are below 1/2 (raw
parameters up to +-100, 4000 draws).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reparam.bijectors import Chain
from reparam.bijectors.autoregressive import condition
from reparam.bijectors.coupling import SplineCoupling
from reparam.bijectors.scan import Scan, stack_layers
from reparam.bijectors.spline import RationalQuadraticSpline
from reparam.distributions import Independent, Normal, Transformed

K, B = 5, 3.0
C = 32.0
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def edge_points(dtype):
    """Tails, the interval ends, values one ulp inside/outside them."""
    b = np.asarray(B, dtype)
    inf = np.asarray(np.inf, dtype)
    return np.array(
        [-1e4, -B - 1, np.nextafter(-b, -inf), -B, np.nextafter(-b, inf), 0.0]
        + [np.nextafter(b, -inf), B, np.nextafter(b, inf), B + 1, 1e4],
        dtype,
    )


def around(knots):
    """Each knot and its two floating-point neighbours."""
    return jnp.concatenate([knots, jnp.nextafter(knots, knots - 1), jnp.nextafter(knots, knots + 1)])


@eqx.filter_jit
def spline_report(bij, x_extra, y_extra, edges):
    """Everything the spline property tests compare, in one compiled call per dtype."""
    x_knots, y_knots, slopes = bij.knots()
    x = jnp.concatenate([edges, around(x_knots), x_extra])
    y, ldj = bij.forward_and_log_det(x)
    x_back = bij.inverse(y)
    ys = jnp.concatenate([edges, around(y_knots), y_extra])
    xs, ildj = bij.inverse_and_log_det(ys)

    def total(b, v):
        out, log_det = b.forward_and_log_det(v)
        back, inv_log_det = b.inverse_and_log_det(v)
        return out + log_det + back + inv_log_det

    grad_x = jax.vmap(jax.grad(lambda v: total(bij, v)))(jnp.concatenate([x, ys]))
    grad_params = jax.grad(lambda b: jnp.sum(total(b, x) + total(b, ys)))(bij)
    return dict(
        x=x,
        y=y,
        ldj=ldj,
        x_back=x_back,
        y_again=bij.forward(x_back),
        derivative=jax.vmap(jax.jacfwd(bij.forward))(x),
        ys=ys,
        xs=xs,
        y_back=bij.forward(xs),
        ildj=ildj,
        ldj_back=bij.forward_log_det_jacobian(xs),
        inverse_derivative=jax.vmap(jax.jacfwd(bij.inverse))(ys),
        log_slope_derivative=jax.vmap(jax.grad(bij.forward_log_det_jacobian))(xs),
        y_at_knots=bij.forward(x_knots),
        ldj_at_knots=bij.forward_log_det_jacobian(x_knots),
        x_knots=x_knots,
        y_knots=y_knots,
        slopes=slopes,
        grad_x=grad_x,
        grad_params=jnp.concatenate([grad_params.widths, grad_params.heights, grad_params.derivatives]),
    )


def make_spline(widths, heights, derivatives, dtype):
    return RationalQuadraticSpline(
        np.asarray(widths, dtype), np.asarray(heights, dtype), np.asarray(derivatives, dtype), bound=B
    )


def check_spline(widths, heights, derivatives, x_extra, y_extra, dtype):
    bij = make_spline(widths, heights, derivatives, dtype)
    edges = edge_points(dtype)
    r = {
        k: np.asarray(v)
        for k, v in spline_report(bij, np.asarray(x_extra, dtype), np.asarray(y_extra, dtype), edges).items()
    }
    assert all(v.dtype == np.dtype(dtype) for v in r.values())
    for name, v in r.items():  # values, log-dets and the gradients w.r.t. inputs and parameters
        assert np.all(np.isfinite(v)), name
    # d/dv (f(v) + log f'(v) + f^-1(v) + log f^-1'(v)) = 2 exactly in the tails
    v = np.concatenate([r["x"], r["ys"]])
    np.testing.assert_array_equal(r["grad_x"][np.abs(v) > B], 2)
    eps = EPS[dtype]
    r = {k: v.astype(np.float64) for k, v in r.items()}
    x, y, slope = r["x"], r["y"], r["derivative"]
    assert np.all(slope > 0)
    # M, the spline's largest slope (at the knots and bin averages)
    big = max(r["slopes"].max(), (np.diff(r["y_knots"]) / np.diff(r["x_knots"])).max())
    # round trip x -> y -> x: within the conditioning of the inverse at x, or else (where the slope
    # collapses next to x, so that the rounding of y moves the exact inverse far) backward-stable:
    # the returned point maps to y up to rounding
    allowed = C * eps * (np.abs(x) + (np.abs(y) + B * (2 + big)) / slope)
    backward = np.abs(r["y_again"] - y) <= C * eps * (np.abs(y) + B * (2 + big))
    ok = (np.abs(r["x_back"] - x) <= allowed) | backward
    assert np.all(ok), np.max(np.abs(r["x_back"] - x)[~ok] / allowed[~ok])
    assert np.mean(np.abs(r["x_back"] - x) <= allowed) > 0.9  # the exception is rare
    # and y -> x -> y, within the conditioning of the forward map at x
    ys, xs = r["ys"], r["xs"]
    allowed = C * eps * (np.abs(ys) + B * (2 + big) + np.abs(xs) * np.exp(-r["ildj"]))
    assert np.all(np.abs(r["y_back"] - ys) <= allowed), np.max(np.abs(r["y_back"] - ys) / allowed)
    # log-dets against forward-mode autodiff of the maps themselves, at the same points
    allowed = C * eps * (1 + big / slope)
    assert np.all(np.abs(r["ldj"] - np.log(slope)) <= allowed), np.max(np.abs(r["ldj"] - np.log(slope)) / allowed)
    ildj_error = np.abs(r["ildj"] - np.log(r["inverse_derivative"]))
    # the same, plus the sensitivity of log f' to the inverted point (exp(ildj) = 1 / f'(f^-1(y)))
    point_error = np.abs(xs) + (np.abs(ys) + B * (2 + big)) * np.exp(r["ildj"])
    allowed = C * eps * (1 + big * np.exp(r["ildj"]) + np.abs(r["log_slope_derivative"]) * point_error)
    assert np.all(ildj_error <= allowed), np.max(ildj_error / allowed)
    # the tails are the identity, exactly
    tails = np.abs(x) > B
    np.testing.assert_array_equal(r["y"][tails], r["x"][tails])
    np.testing.assert_array_equal(r["ldj"][tails], 0)
    # the spline interpolates its knots: values and slopes (d_0 = d_K = 1 at -B and B)
    np.testing.assert_allclose(r["y_at_knots"], r["y_knots"], rtol=0, atol=8 * eps * B)
    np.testing.assert_allclose(r["ldj_at_knots"], np.log(r["slopes"]), rtol=0, atol=C * eps)
    assert r["x_knots"][0] == -B and r["x_knots"][-1] == B and r["y_knots"][0] == -B and r["y_knots"][-1] == B
    assert r["slopes"][0] == 1 and r["slopes"][-1] == 1
    return r


RAW = st.floats(-20.0, 20.0)  # softmax ratios up to e^40: bins at their minimum; slopes 1e-3 to 20
INPUT = st.floats(-2 * B, 2 * B)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=50)
@given(
    widths=st.lists(RAW, min_size=K, max_size=K),
    heights=st.lists(RAW, min_size=K, max_size=K),
    derivatives=st.lists(RAW, min_size=K - 1, max_size=K - 1),
    x_extra=st.lists(INPUT, min_size=8, max_size=8),
    y_extra=st.lists(INPUT, min_size=8, max_size=8),
)
def test_spline_properties(dtype, widths, heights, derivatives, x_extra, y_extra):
    """Round trips, log-dets vs jacfwd, knot interpolation, identity tails, finite gradients with
    respect to inputs and parameters, at the edges, knots, their neighbours and the far tails."""
    check_spline(widths, heights, derivatives, x_extra, y_extra, dtype)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_spline_properties_at_extreme_parameters(scale, dtype):
    """Raw parameters at +-10 scale: bins at their minimum size next to bins holding almost all
    of the interval, slopes from about 1e-3 to about 100."""
    rng = np.random.default_rng(int(scale))
    check_spline(
        scale * rng.choice([-10.0, 10.0], K),
        scale * rng.choice([-10.0, 10.0], K),
        scale * rng.choice([-10.0, 10.0], K - 1),
        rng.uniform(-2 * B, 2 * B, 8),
        rng.uniform(-2 * B, 2 * B, 8),
        dtype,
    )


def test_zero_parameters_are_the_identity(dtype):
    bij = make_spline(np.zeros(K), np.zeros(K), np.zeros(K - 1), dtype)
    x = np.linspace(-2 * B, 2 * B, 1001).astype(dtype)
    y, ldj = eqx.filter_jit(lambda b, v: b.forward_and_log_det(v))(bij, x)
    eps = EPS[dtype]
    np.testing.assert_allclose(y, x, rtol=0, atol=4 * eps * B)
    np.testing.assert_allclose(ldj, 0, atol=4 * eps)


def test_monotone_increasing(dtype):
    rng = np.random.default_rng(3)
    bij = make_spline(*(3 * rng.standard_normal(n) for n in (K, K, K - 1)), dtype)
    x = np.linspace(-2 * B, 2 * B, 4001).astype(dtype)
    y = np.asarray(eqx.filter_jit(lambda b, v: b.forward(v))(bij, x))
    assert np.all(np.diff(y) >= 0)
    if dtype == "float64":
        assert np.all(np.diff(y) > 0)
    # In float32 equal neighbours occur: inside a bin whose average slope s is far below the knot
    # slopes d, the slope dips to about 4 s^2 / (d_k + d_k+1) (here ~1e-6), and y moves by less than an
    # ulp between grid points. The slope itself stays positive:
    slope = eqx.filter_jit(lambda b, v: jax.vmap(jax.grad(b.forward))(v))(bij, x)
    assert np.all(np.asarray(slope) > 0)


def test_pushed_forward_density_integrates_to_one():
    rng = np.random.default_rng(4)
    bij = make_spline(*(2 * rng.standard_normal(n) for n in (K, K, K - 1)), "float64")
    dist = Transformed(Normal(0.0, 1.0), bij)
    x_knots, y_knots, _ = bij.knots()
    y = np.union1d(np.linspace(-12, 12, 400_001), np.asarray(y_knots))  # the knots are where f'' jumps
    log_p = np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, y))
    mass = np.trapezoid(np.exp(log_p), y)
    assert abs(mass - 1) < 1e-7, mass
    # and the density moved: the spline is not the identity here
    assert np.max(np.abs(log_p - np.asarray(Normal(0.0, 1.0).log_prob(y)))) > 0.1
    # its own samples are scored as log_prob scores them
    draws, lp = eqx.filter_jit(lambda d, k: d.rsample_and_log_prob(k, (256,)))(dist, jax.random.key(0))
    np.testing.assert_allclose(lp, eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, draws), rtol=1e-9, atol=1e-9)


def test_parameter_batch_axes_broadcast_against_x():
    rng = np.random.default_rng(5)
    w, h, d = (rng.standard_normal((3, n)) for n in (K, K, K - 1))
    x = rng.uniform(-4, 4, (4, 3))
    y, ldj = eqx.filter_jit(lambda b, v: b.forward_and_log_det(v))(RationalQuadraticSpline(w, h, d), x)
    assert y.shape == ldj.shape == (4, 3)
    for j in range(3):
        yj, lj = RationalQuadraticSpline(w[j], h[j], d[j]).forward_and_log_det(x[:, j])
        np.testing.assert_allclose(y[:, j], yj, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(ldj[:, j], lj, rtol=1e-13, atol=1e-13)
    # a scalar input against a batch of splines gets the batch shape
    assert RationalQuadraticSpline(w, h, d).forward(np.float64(0.5)).shape == (3,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(widths=np.zeros(1), heights=np.zeros(1), derivatives=np.zeros(0)), "at least 2 bins"),
        (dict(widths=np.zeros(4), heights=np.zeros(3), derivatives=np.zeros(3)), "widths"),
        (dict(widths=np.zeros(4), heights=np.zeros(4), derivatives=np.zeros(4)), "derivatives"),
        (dict(widths=np.zeros(4), heights=np.zeros(4), derivatives=np.zeros(3), bound=0.0), "bound"),
        (dict(widths=np.zeros(4), heights=np.zeros(4), derivatives=np.zeros(3), bound=-1.0), "bound"),
        (dict(widths=np.zeros(4), heights=np.zeros(4), derivatives=np.zeros(3), min_bin_width=0.3), "min_bin_width"),
        (dict(widths=np.zeros(4), heights=np.zeros(4), derivatives=np.zeros(3), min_derivative=0.0), "min_derivative"),
        (dict(widths=np.zeros((2, 4)), heights=np.zeros((3, 4)), derivatives=np.zeros(3)), "broadcast"),
        (dict(widths=np.array([0, 0, np.nan, 0]), heights=np.zeros(4), derivatives=np.zeros(3)), "finite"),
    ],
)
def test_spline_bad_sizes_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        RationalQuadraticSpline(**kwargs)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# SplineCoupling.

MASK = np.array([1, 0, 1, 0, 0])
DIM, CONTEXT, BINS = 5, 3, 4


def coupling(dtype, seed=0, scale=0.5, context_size=0, mask=MASK):
    """A SplineCoupling whose zero-initialised last layer is replaced by N(0, scale^2) draws (so it
    is not the identity), cast to `dtype`."""
    fresh = eqx.filter_jit(
        lambda key: SplineCoupling(mask, key=key, num_bins=BINS, bound=B, width=16, depth=2, context_size=context_size)
    )(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    last = fresh.net.layers[-1]
    w = scale * rng.standard_normal(last.weight.shape)
    b = scale * rng.standard_normal(last.bias.shape)
    bij = eqx.tree_at(lambda c: (c.net.layers[-1].weight, c.net.layers[-1].bias), fresh, (w, b))
    cast = lambda a: jnp.asarray(np.asarray(a, dtype)) if eqx.is_inexact_array(a) or isinstance(a, np.ndarray) else a
    return jax.tree_util.tree_map(cast, bij), fresh


@eqx.filter_jit
def coupling_report(bij, x):
    y, ldj = bij.forward_and_log_det(x)
    x_back, ildj = bij.inverse_and_log_det(y)
    return dict(
        y=y,
        ldj=ldj,
        x_back=x_back,
        ildj=ildj,
        jac_forward=jnp.linalg.slogdet(jax.vmap(jax.jacfwd(bij.forward))(x))[1],
        jac_inverse=jnp.linalg.slogdet(jax.vmap(jax.jacfwd(bij.inverse))(y))[1],
        fldj=bij.forward_log_det_jacobian(x),
        inverse_ldj=bij.inverse_log_det_jacobian(y),
        grads=jax.vmap(jax.grad(lambda v: jnp.sum(bij.forward(v)) + bij.forward_log_det_jacobian(v)))(x),
    )


def test_spline_coupling(dtype):
    bij, _ = coupling(dtype, seed=1, scale=1.0)
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-4, 4, (62, DIM)), np.full((1, DIM), B), np.full((1, DIM), -1e4)]).astype(dtype)
    r = {k: np.asarray(v) for k, v in coupling_report(bij, x).items()}
    assert all(v.dtype == np.dtype(dtype) for v in r.values())
    assert all(np.all(np.isfinite(v)) for v in r.values())
    assert r["y"].shape == x.shape and r["ldj"].shape == (64,)
    # the masked coordinates pass unchanged; the free ones change (inside the bound)
    kept = MASK == 1
    np.testing.assert_array_equal(r["y"][:, kept], x[:, kept])
    np.testing.assert_array_equal(r["x_back"][:, kept], x[:, kept])
    free, inside = x[:62, ~kept], np.abs(x[:62, ~kept]) < B
    assert np.min(np.abs(r["y"][:62, ~kept] - free)[inside]) > 0
    np.testing.assert_array_equal(r["y"][:62, ~kept][~inside], free[~inside])  # the tails: identity
    np.testing.assert_array_equal(r["y"][63], x[63])  # the far tail is the identity
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r["x_back"], x, **tol)
    assert np.max(np.abs(r["jac_forward"])) > 0.5  # a non-trivial volume change
    np.testing.assert_allclose(r["ldj"], r["jac_forward"], **tol)
    # the same formula compiled as a separate program: XLA may fuse and order the sum over the free
    # coordinates differently, a few ulps of the largest term
    np.testing.assert_allclose(r["fldj"], r["ldj"], rtol=16 * EPS[dtype], atol=4 * EPS[dtype])
    np.testing.assert_allclose(r["ildj"], r["jac_inverse"], **tol)
    np.testing.assert_allclose(r["ildj"], -r["ldj"], **tol)
    same = dict(rtol=16 * EPS[dtype], atol=4 * EPS[dtype])  # the same formula, compiled separately
    np.testing.assert_allclose(r["inverse_ldj"], r["ildj"], **same)


def test_spline_coupling_evaluates_only_the_transformed_coordinates():
    """The conditioner reads the kept coordinates (plus the context) and outputs the spline
    parameters of the transformed ones only; built under eval_shape (the mask is checked in numpy)."""
    bij = eqx.filter_eval_shape(
        lambda key: SplineCoupling(MASK.astype(bool), key=key, num_bins=BINS, width=8, depth=1, context_size=CONTEXT),
        jax.random.key(0),
    )
    assert bij.kept == (0, 2) and bij.transformed == (1, 3, 4)
    np.testing.assert_array_equal(bij.mask, MASK == 1)
    assert bij.net.layers[0].weight.shape == (8, 2 + CONTEXT)
    assert bij.net.layers[-1].weight.shape == (3 * (3 * BINS - 1), 8)


def test_fresh_spline_coupling_is_the_identity():
    _, fresh = coupling("float32", seed=3)
    assert not np.any(fresh.net.layers[-1].weight) and not np.any(fresh.net.layers[-1].bias)
    x = np.random.default_rng(4).uniform(-5, 5, (32, DIM)).astype(np.float32)
    r = {k: np.asarray(v) for k, v in coupling_report(fresh, x).items()}
    eps = EPS["float32"]
    np.testing.assert_allclose(r["y"], x, rtol=0, atol=4 * eps * B)
    np.testing.assert_allclose(r["x_back"], x, rtol=0, atol=4 * eps * B)
    np.testing.assert_allclose(r["ldj"], 0, atol=4 * DIM * eps)


def test_spline_coupling_context_and_leading_axes():
    bij, _ = coupling("float64", seed=5, context_size=CONTEXT)
    rng = np.random.default_rng(6)
    x = rng.uniform(-4, 4, (3, 7, DIM))
    context = rng.standard_normal((3, 1, CONTEXT))
    apply = eqx.filter_jit(lambda b, c, v: b.condition(c).forward_and_log_det(v))
    y, ldj = apply(bij, context, x)
    assert y.shape == (3, 7, DIM) and ldj.shape == (3, 7)
    # the leading axes are independent: the same as each vector with its own context
    y1, ldj1 = apply(bij, context[1, 0], x[1, 4])
    np.testing.assert_allclose(y[1, 4], y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ldj[1, 4], ldj1, rtol=1e-12, atol=1e-12)
    # a different context changes the output, and the output is differentiable in the context
    y2, _ = apply(bij, context[1, 0] + 1.0, x[1, 4])
    assert np.max(np.abs(y2 - y1)) > 1e-3
    grad = eqx.filter_jit(jax.grad(lambda c: jnp.sum(bij.condition(c).forward(x[1, 4]))))(context[1, 0])
    assert np.all(np.isfinite(grad)) and np.max(np.abs(grad)) > 0
    # and with a context the round trip and log-det still hold (one context shared by all vectors)
    r = coupling_report(bij.condition(context[0, 0]), x[0])
    np.testing.assert_allclose(r["x_back"], x[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r["ldj"], r["jac_forward"], rtol=1e-10, atol=1e-10)


def test_spline_coupling_flow_density():
    """Two couplings with alternating masks as a flow on R^5: the fused score of its own samples
    equals log_prob of those samples."""
    first, _ = coupling("float64", seed=7)
    second, _ = coupling("float64", seed=8, mask=1 - MASK)
    dist = Transformed(Independent(Normal(np.zeros(DIM), np.ones(DIM)), 1), Chain([second, first]))
    draws, lp = eqx.filter_jit(lambda d, k: d.rsample_and_log_prob(k, (64,)))(dist, jax.random.key(1))
    assert draws.shape == (64, DIM)
    np.testing.assert_allclose(lp, eqx.filter_jit(lambda d, v: d.log_prob(v))(dist, draws), rtol=1e-9, atol=1e-9)


def test_spline_coupling_in_a_conditional_scan():
    """Stacked conditional spline couplings (alternating masks) as one Scan: the same map as the
    unstacked Chain, log-det against slogdet(jacfwd), the context set by `condition` on every layer."""

    def make(key):
        k1, k2 = jax.random.split(key)
        layers = [
            SplineCoupling(m, key=k, num_bins=BINS, width=8, depth=1, context_size=CONTEXT)
            for m, k in ((MASK, k1), (1 - MASK, k2))
        ]
        return Chain(layers)

    stack = eqx.filter_jit(lambda keys: stack_layers(make, keys))(jax.random.split(jax.random.key(9), 3))
    # random last layers (a fresh stack is the identity), cast to float64
    rng = np.random.default_rng(10)
    stack = eqx.tree_at(
        lambda c: [layer.net.layers[-1].weight for layer in c.bijectors],
        stack,
        [0.5 * rng.standard_normal(layer.net.layers[-1].weight.shape) for layer in stack.bijectors],
    )
    stack = jax.tree_util.tree_map(
        lambda a: jnp.asarray(np.asarray(a, np.float64)) if eqx.is_inexact_array(a) else a, stack
    )
    context = rng.standard_normal(CONTEXT)
    x = rng.uniform(-4, 4, (16, DIM))

    @eqx.filter_jit
    def report(stack, context, x):
        flow = Scan(stack).condition(context)
        chain = condition(Scan(stack).to_chain(), context)
        y, ldj = flow.forward_and_log_det(x)
        return dict(
            y=y,
            ldj=ldj,
            chain_y=chain.forward(x),
            back=flow.inverse(y),
            jac=jnp.linalg.slogdet(jax.vmap(jax.jacfwd(flow.forward))(x))[1],
            other_context=Scan(stack).condition(context + 1).forward(x),
        )

    r = report(stack, context, x)
    np.testing.assert_allclose(r["y"], r["chain_y"], rtol=1e-12, atol=1e-12)
    # six spline layers with random (possibly small) slopes: each inverse amplifies the rounding of the
    # next by 1 / slope, so the float64 round trip is checked to 1e-8 (measured: ~1e-9)
    np.testing.assert_allclose(r["back"], x, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(r["ldj"], r["jac"], rtol=1e-10, atol=1e-10)
    assert np.max(np.abs(r["ldj"])) > 0.1 and np.max(np.abs(r["other_context"] - r["y"])) > 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=[1, 0, 2]), "mask"),
        (dict(mask=[[1, 0], [0, 1]]), "mask"),
        (dict(mask=1), "mask"),
        (dict(mask=[1, 0], num_bins=1), "at least 2 bins"),
        (dict(mask=[1, 0], bound=0.0), "bound"),
        (dict(mask=[1, 0], context_size=-1), "context_size"),
    ],
)
def test_spline_coupling_bad_sizes_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        SplineCoupling(key=jax.random.key(0), width=4, depth=1, **kwargs)
    assert "\n" not in str(info.value)


def test_spline_coupling_bad_inputs_are_one_line_errors():
    bij = SplineCoupling(np.array([1, 0]), key=jax.random.key(0), width=4, depth=1, context_size=2)
    for call, match in [
        (lambda: bij.forward(jnp.zeros(2, jnp.float32)), "condition"),
        (lambda: bij.condition(jnp.zeros(3, jnp.float32)), "context"),
        (lambda: bij.condition(jnp.zeros(2, jnp.float32)).forward(jnp.zeros(3, jnp.float32)), "shape"),
    ]:
        with pytest.raises(ValueError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_spline_non_finite_parameters_raise_under_jit():
    @jax.jit
    def apply(widths):
        return RationalQuadraticSpline(widths, jnp.zeros(4), jnp.zeros(3)).forward(jnp.linspace(-4.0, 4.0, 5))

    np.testing.assert_allclose(apply(jnp.zeros(4)), np.linspace(-4, 4, 5), atol=1e-12)  # valid: identity
    with pytest.raises(Exception, match="widths must be finite"):
        jax.block_until_ready(apply(jnp.array([0.0, np.inf, 0.0, 0.0])))

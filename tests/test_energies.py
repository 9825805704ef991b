"""reparam.data.energies: Rezende & Mohamed's U1-U4 at hand-computed points, log Z on the box against
scipy's adaptive dblquad and a closed-form inner integral, quadrature convergence, the box map, errors."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from reparam.data.energies import (
    BOX,
    ENERGIES,
    check_energy_name,
    energy,
    in_box,
    log_normaliser,
    plane_target_log_prob,
    target_log_prob,
    to_box,
)


def gauss(x, scale):
    return math.exp(-0.5 * (x / scale) ** 2)


# (name, z, U(z)) worked out by hand from Table 1 of Rezende & Mohamed (2015).
HAND_POINTS = [
    ("U1", (0.0, 2.0), 50 / 9 - math.log(2)),  # on the ring, both modes at 2 / 0.6 sd
    ("U1", (2.0, 0.0), -math.log(1 + math.exp(-200 / 9))),  # on the ring at a mode
    ("U1", (0.0, 0.0), 12.5 - math.log(2 * math.exp(-50 / 9))),  # centre: 2 / 0.4 sd off the ring
    ("U2", (1.0, 1.0), 0.0),  # w1(1) = sin(pi / 2) = 1
    ("U2", (0.0, 0.4), 0.5),
    ("U2", (-1.0, 0.0), 0.5 * (1 / 0.4) ** 2),  # w1(-1) = -1
    ("U3", (1.0, 1.0), -math.log(1 + gauss(3, 0.35))),  # w1 = 1, w2 = 3
    ("U3", (1.0, -2.0), -math.log(gauss(3, 0.35) + 1)),  # on the lower branch z2 = w1 - w2
    ("U3", (0.0, 0.0), -math.log(1 + gauss(3 * gauss(1, 0.6), 0.35))),
    ("U4", (1.0, 0.0), -math.log(gauss(1, 0.4) + gauss(0.5, 0.35))),  # w1 = 1, w3 = 3 sigmoid(0) = 1.5
    # w1(3) = -1, w3(3) = 3 sigmoid(2 / 0.3): the lower branch dominates
    ("U4", (3.0, -3.0), -math.log(gauss(-2, 0.4) + gauss(-2 + 3 / (1 + math.exp(-2 / 0.3)), 0.35))),
]


@pytest.mark.parametrize("name, z, expected", HAND_POINTS)
@pytest.mark.parametrize("dtype_", ["float32", "float64"])
def test_energies_match_the_formulas_at_hand_checked_points(name, z, expected, dtype_):
    tol = 1e-5 if dtype_ == "float32" else 1e-12
    value = energy(name, jnp.asarray(z, dtype_))
    assert value.dtype == jnp.dtype(dtype_) and value.shape == ()
    np.testing.assert_allclose(float(value), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ENERGIES)
def test_energy_batches_jits_and_has_finite_gradients_in_float32(name):
    z = jnp.asarray([[0.3, -0.7], [4.0, -4.0], [1e3, -1e3], [-50.0, 20.0]], jnp.float32).reshape(2, 2, 2)
    values = jax.jit(energy, static_argnums=0)(name, z)
    assert values.shape == (2, 2) and values.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(values), np.asarray(energy(name, z.astype(jnp.float64))), rtol=1e-5)
    grads = jax.grad(lambda z: energy(name, z).sum())(z)
    assert bool(jnp.all(jnp.isfinite(grads)))


@pytest.mark.parametrize("name", ENERGIES)
def test_target_is_minus_energy_in_the_closed_box_and_minus_inf_outside(name):
    z = jnp.asarray([[0.5, 0.5], [4.0, -4.0], [4.001, 0.0], [0.0, -4.5]], jnp.float64)
    log_p = target_log_prob(name, z)
    np.testing.assert_array_equal(np.asarray(in_box(z)), [True, True, False, False])
    np.testing.assert_allclose(np.asarray(log_p[:2]), -np.asarray(energy(name, z[:2])), rtol=1e-15)
    assert bool(jnp.all(log_p[2:] == -jnp.inf))


@pytest.mark.parametrize("name", ENERGIES)
def test_log_normaliser_matches_scipy_dblquad(name):
    # Adaptive quadrature (QUADPACK) of exp(-U) on the box: an independent method.
    low, high = BOX
    value, err = integrate.dblquad(
        lambda z2, z1: math.exp(-_energy64(name, z1, z2)), low, high, low, high, epsabs=1e-11, epsrel=1e-11
    )
    assert err < 1e-9 * value
    np.testing.assert_allclose(log_normaliser(name), math.log(value), rtol=0, atol=1e-9)


def _energy64(name, z1, z2):
    """U from the formulas, written again in plain Python floats (independent of the module's code)."""
    w1 = math.sin(2 * math.pi * z1 / 4)
    if name == "U1":
        r = math.hypot(z1, z2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - math.log(gauss(z1 - 2, 0.6) + gauss(z1 + 2, 0.6))
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        w2 = 3 * gauss(z1 - 1, 0.6)
        return -math.log(gauss(z2 - w1, 0.35) + gauss(z2 - w1 + w2, 0.35))
    w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
    return -math.log(gauss(z2 - w1, 0.4) + gauss(z2 - w1 + w3, 0.35))


def test_u2_log_normaliser_matches_its_closed_form_inner_integral():
    # Z = int_{-4}^{4} 0.4 sqrt(2 pi) [Phi((4 - w1) / 0.4) - Phi((-4 - w1) / 0.4)] dz1: a 1-D integral.
    def inner(z1):
        w1 = math.sin(math.pi * z1 / 2)
        return 0.4 * math.sqrt(2 * math.pi) * (special.ndtr((4 - w1) / 0.4) - special.ndtr((-4 - w1) / 0.4))

    value, _ = integrate.quad(inner, -4, 4, epsabs=1e-13, epsrel=1e-13)
    np.testing.assert_allclose(log_normaliser("U2"), math.log(value), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ENERGIES)
def test_log_normaliser_converges(name):
    assert abs(log_normaliser(name, 256) - log_normaliser(name, 512)) < 1e-9
    assert abs(log_normaliser(name) - log_normaliser(name, 1024)) < 1e-12


def test_to_box_maps_the_plane_onto_the_open_box_with_the_tanh_log_det():
    box = to_box(jnp.float32)
    assert to_box(jnp.float64).bijectors[0].scale.dtype == jnp.float64
    x = jnp.asarray([[0.0, 1.0], [-3.0, 30.0], [1e4, -1e4]], jnp.float32)
    y, log_det = box.forward_and_log_det(x)
    low, high = BOX
    assert bool(jnp.all((y >= low) & (y <= high))) and bool(jnp.all(jnp.isfinite(log_det)))
    np.testing.assert_allclose(np.asarray(y[:2]), 4 * np.tanh(np.asarray(x[:2], np.float64)), rtol=1e-6)
    a = np.abs(np.asarray(x[:2], np.float64))  # log(4 sech^2 x) = log 16 - 2|x| - 2 log(1 + exp(-2|x|))
    expected = np.log(16.0) - 2 * a - 2 * np.log1p(np.exp(-2 * a))
    np.testing.assert_allclose(np.asarray(log_det[:2]), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(box.inverse(y[:1])), np.asarray(x[:1]), rtol=1e-5)  # 4 tanh(30) == 4


@pytest.mark.parametrize("name", ENERGIES)
def test_plane_target_is_the_box_target_pulled_back_by_to_box(name):
    x = jnp.asarray([[0.1, -0.3], [1.5, 0.7], [-2.0, 9.5], [40.0, -3.0]], jnp.float64)
    z, log_det = to_box(jnp.float64).forward_and_log_det(x)
    expected = target_log_prob(name, z) + log_det.sum(-1)
    np.testing.assert_allclose(np.asarray(plane_target_log_prob(name, x)), np.asarray(expected), rtol=1e-12)
    # and it integrates to Z on the plane: Gauss-Legendre in t = tanh(x) is the box rule again, so use a
    # plain midpoint grid in x on [-6, 6]^2 (the pulled-back mass beyond |x_i| = 6 is at most 1 - tanh 6 = 1.2e-5 of Z)
    g = np.linspace(-6, 6, 1201)
    mid = 0.5 * (g[1:] + g[:-1])
    xx = jnp.asarray(np.stack(np.meshgrid(mid, mid, indexing="ij"), -1), jnp.float64)
    mass = float(jnp.sum(jnp.exp(plane_target_log_prob(name, xx)))) * (g[1] - g[0]) ** 2
    np.testing.assert_allclose(math.log(mass), log_normaliser(name), atol=1e-4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_energy_name("U5"),
        lambda: energy("banana", jnp.zeros(2)),
        lambda: target_log_prob("u1", jnp.zeros(2)),
        lambda: log_normaliser("U0"),
        lambda: plane_target_log_prob("U12", jnp.zeros(2)),
    ],
)
def test_unknown_energy_names_get_a_one_line_error(call):
    with pytest.raises(ValueError, match=re.escape("choose one of U1, U2, U3, U4")) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_shapes_and_quadrature_sizes_get_one_line_errors():
    with pytest.raises(ValueError, match=re.escape("energy: z must have shape (..., 2), got (3,)")):
        energy("U1", jnp.zeros(3))
    with pytest.raises(ValueError, match="log_normaliser: points must be an integer >= 2"):
        log_normaliser("U1", 1)

"""reparam.data.toys: the 2-D toy densities against their exact densities (KS and chi-square tests with
fixed keys), quadrature in float64, Monte Carlo entropy, reproducibility and errors."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from reparam.data import TOY_ENTROPY, TOYS, sample_toy, toy_log_prob
from reparam.data.toys import EIGHT_GAUSSIANS_ENTROPY, EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_SCALE

ALPHA = 1e-3  # significance of the goodness-of-fit tests (fixed keys: the outcome is deterministic)
R, S = 4 / math.sqrt(2), 0.5 / math.sqrt(2)
MEANS = R * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def eight_gaussians_log_prob64(points):
    """An independent float64 implementation of the eight-Gaussians density."""
    squared = ((points[:, None, :] - MEANS[None]) ** 2).sum(-1)
    return logsumexp(-squared / (2 * S * S), axis=1) - math.log(8) - math.log(2 * math.pi * S * S)


def grid(low, high, h):
    g = np.arange(low, high + h / 2, h)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


@pytest.fixture(scope="module")
def eight():
    return np.asarray(sample_toy("eight_gaussians", jax.random.key(0), 100_000), np.float64)


@pytest.fixture(scope="module")
def checker():
    return sample_toy("checkerboard", jax.random.key(1), 100_000)


@pytest.mark.parametrize("name", TOYS)
def test_samples_reproducible_float32_finite(name):
    x = sample_toy(name, jax.random.key(3), 1000)
    assert x.shape == (1000, 2) and x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x)))
    np.testing.assert_array_equal(np.asarray(sample_toy(name, jax.random.key(3), 1000)), np.asarray(x))
    assert not np.array_equal(np.asarray(sample_toy(name, jax.random.key(4), 1000)), np.asarray(x))


@pytest.mark.parametrize("name, mean", [("two_moons", (0.0, 0.3)), ("pinwheel", (0.0, 0.0)), ("spirals", (0.0, 0.0))])
def test_no_closed_form_toys_have_their_known_mean(name, mean):
    # moons: E(cos t, sin t) = (0, 2/pi) and E(1 - cos t, 1/2 - sin t) = (1, 1/2 - 2/pi), times 2 plus (-1, -0.2);
    # pinwheel (5-fold rotation) and spirals (x -> -x) are symmetric about 0.
    x = np.asarray(sample_toy(name, jax.random.key(5), 50_000), np.float64)
    se = x.std(axis=0) / np.sqrt(len(x))
    assert np.all(np.abs(x.mean(axis=0) - mean) <= 5 * se)
    with pytest.raises(ValueError, match=re.escape(f"toy_log_prob: '{name}' has no closed-form density")) as info:
        toy_log_prob(name, x[:3])
    assert "\n" not in str(info.value)


def test_unknown_name_and_bad_arguments():
    for fn, args in ((sample_toy, (jax.random.key(0), 3)), (toy_log_prob, (jnp.zeros((3, 2), jnp.float32),))):
        with pytest.raises(
            ValueError,
            match=re.escape(
                "unknown toy 'moons'; choose one of two_moons, eight_gaussians, checkerboard, pinwheel, spirals"
            ),
        ):
            fn("moons", *args)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        sample_toy("checkerboard", jax.random.key(0), 0)
    with pytest.raises(ValueError, match=re.escape("x must have shape (..., 2), got (3, 3)")):
        toy_log_prob("checkerboard", jnp.zeros((3, 3), jnp.float32))


# --- checkerboard -----------------------------------------------------------------------------------


def test_checkerboard_samples_lie_on_black_squares_uniformly(checker):
    log_p = np.asarray(toy_log_prob("checkerboard", checker))
    np.testing.assert_array_equal(log_p, np.full(len(log_p), -np.log(32), np.float32))  # all on black squares
    x = np.asarray(checker, np.float64)
    cells = np.floor(x).astype(int) + 4  # 64 unit cells, 32 of them black (1/32 each), 32 white (empty)
    counts = np.bincount(cells[:, 0] * 8 + cells[:, 1], minlength=64).reshape(8, 8)
    black = (np.add.outer(np.arange(8) // 2, np.arange(8) // 2) % 2) == 0
    assert counts[~black].sum() == 0
    assert stats.chisquare(counts[black]).pvalue > ALPHA
    for axis in (0, 1):  # each marginal is uniform on [-4, 4)
        assert stats.kstest(x[:, axis], stats.uniform(loc=-4, scale=8).cdf).pvalue > ALPHA
    # Within a square the position is uniform too: fractional parts on a 4 x 4 sub-grid.
    sub = np.floor((x % 2) * 2).astype(int)
    assert stats.chisquare(np.bincount(sub[:, 0] * 4 + sub[:, 1], minlength=16)).pvalue > ALPHA


def test_checkerboard_density_integrates_to_one_and_entropy(checker):
    h = 2 / 50  # cell midpoints: never on a square's edge
    points = grid(-4.5 + h / 2, 4.5 - h / 2, h)
    p = np.exp(np.asarray(toy_log_prob("checkerboard", jnp.asarray(points, jnp.float32)), np.float64))
    assert abs(p.sum() * h * h - 1) < 1e-6
    assert toy_log_prob("checkerboard", jnp.asarray([[4.0, 0.0], [-4.0, -4.0]], jnp.float32))[0] == -jnp.inf
    entropy = -float(np.mean(np.asarray(toy_log_prob("checkerboard", checker), np.float64)))
    assert entropy == pytest.approx(math.log(32), rel=1e-6) and TOY_ENTROPY["checkerboard"] == math.log(32)


# --- eight Gaussians --------------------------------------------------------------------------------


def test_eight_gaussians_parameterisation():
    assert EIGHT_GAUSSIANS_RADIUS == pytest.approx(2.8284271) and EIGHT_GAUSSIANS_SCALE == pytest.approx(0.35355339)


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, math.pi / 4, 0.3])
def test_eight_gaussians_projections_ks(eight, angle):
    # Any 1-D projection of the mixture is a mixture of N(<mean, d>, sd^2): an exact CDF for a KS test.
    d = np.array([math.cos(angle), math.sin(angle)])
    locs = MEANS @ d
    cdf = lambda t: stats.norm.cdf((np.asarray(t)[..., None] - locs) / S).mean(-1)  # noqa: E731
    assert stats.kstest(eight @ d, cdf).pvalue > ALPHA


def test_eight_gaussians_density_matches_float64_and_integrates_to_one():
    h = 0.02
    points = grid(-R - 10 * S, R + 10 * S, h)
    log_p32 = np.asarray(toy_log_prob("eight_gaussians", jnp.asarray(points, jnp.float32)), np.float64)
    log_p64 = eight_gaussians_log_prob64(points)
    near = log_p64 > -20
    np.testing.assert_allclose(log_p32[near], log_p64[near], atol=2e-5)
    assert abs(np.exp(log_p32).sum() * h * h - 1) < 1e-5
    # float64 input stays float64
    x64 = jnp.asarray(points[:5], jnp.float64)
    assert toy_log_prob("eight_gaussians", x64).dtype == jnp.float64


def test_eight_gaussians_entropy_quadrature_and_monte_carlo(eight):
    h = 0.02  # the integrand is smooth and decays like a Gaussian: the grid sum is converged (h = 0.005 agrees)
    points = grid(-R - 10 * S, R + 10 * S, h)
    log_p = eight_gaussians_log_prob64(points)
    quadrature = -(np.exp(log_p) * log_p).sum() * h * h
    assert quadrature == pytest.approx(EIGHT_GAUSSIANS_ENTROPY, abs=1e-5)
    assert TOY_ENTROPY["eight_gaussians"] == EIGHT_GAUSSIANS_ENTROPY
    assert math.log(2 * math.pi * math.e) - quadrature == pytest.approx(0.0063, abs=1e-4)  # the overlap
    log_q = np.asarray(toy_log_prob("eight_gaussians", jnp.asarray(eight, jnp.float32)), np.float64)
    se = log_q.std() / np.sqrt(len(log_q))
    assert abs(-log_q.mean() - quadrature) <= 5 * se

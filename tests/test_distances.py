"""reparam.models.distances: the MMD against its Gaussian closed form (unbiased estimate) and its
noise floor (V-statistic), zero for identical samples, chunking exact; the sliced Wasserstein
distance against the closed form between Gaussians, exact 1-D cases, bad input."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.models.distances import (
    MMD_SCALES,
    median_bandwidth,
    mmd,
    mmd2,
    sliced_wasserstein,
    sliced_wasserstein_along,
)


def gaussian_kernel_mean(mean_diff, variance, width, d):
    """E exp(-|z|^2 / (2 w^2)) for z ~ N(mean_diff, variance I_d)."""
    total = width**2 + variance
    return (width**2 / total) ** (d / 2) * math.exp(-float(np.sum(np.square(mean_diff))) / (2 * total))


def population_mmd2(a, s, b, r, h, d):
    """MMD^2 between N(a, s^2 I) and N(b, r^2 I) under mmd2's kernel family."""
    out = 0.0
    for scale in MMD_SCALES:
        w = scale * h
        zero = np.zeros(d)
        out += (
            gaussian_kernel_mean(zero, 2 * s**2, w, d)
            + gaussian_kernel_mean(zero, 2 * r**2, w, d)
            - 2 * gaussian_kernel_mean(np.asarray(a) - np.asarray(b), s**2 + r**2, w, d)
        )
    return out / len(MMD_SCALES)


def test_mmd_of_identical_samples_is_zero_and_chunking_is_exact():
    x = jax.random.normal(jax.random.key(0), (300, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(1), (250, 3), jnp.float64) + 0.3
    assert float(mmd2(x, x, 1.0)) == pytest.approx(0.0, abs=1e-12)
    whole = float(mmd2(x, y, 1.3, chunk=10_000))
    assert float(mmd2(x, y, 1.3, chunk=7)) == pytest.approx(whole, rel=1e-12)
    # against a direct float64 numpy evaluation
    xs, ys = np.asarray(x), np.asarray(y)

    def k(a, b):
        sq = np.sum((a[:, None] - b[None]) ** 2, -1)
        return np.mean([np.exp(-sq / (2 * (s * 1.3) ** 2)) for s in MMD_SCALES], axis=0)

    direct = k(xs, xs).mean() + k(ys, ys).mean() - 2 * k(xs, ys).mean()
    assert whole == pytest.approx(direct, rel=1e-10)
    assert float(mmd(x, y, 1.3)) == pytest.approx(math.sqrt(direct), rel=1e-10)


def test_unbiased_mmd_matches_the_gaussian_closed_form():
    """N(0, I) vs N((0.5, 0), 1.2^2 I) in 2-D, 4000 points each: the U-statistic's standard error
    is about 1e-3 here (seen over seeds); tolerance 4e-3 against a population value of ~0.03."""
    d, n = 2, 4000
    kx, ky = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (n, d), jnp.float64)
    y = 1.2 * jax.random.normal(ky, (n, d), jnp.float64) + jnp.asarray([0.5, 0.0])
    expected = population_mmd2([0, 0], 1.0, [0.5, 0], 1.2, 1.0, d)
    assert expected > 0.02
    assert float(mmd2(x, y, 1.0, unbiased=True)) == pytest.approx(expected, abs=4e-3)


def test_v_statistic_noise_floor():
    """Two draws of one law: E[V] = (1 - E k(x, x')) (1/n + 1/m) (k(x, x) = 1). Averaged over 20
    pairs of 500 points in 2-D, within 15% of that."""
    d, n, h = 2, 500, 1.0
    e_k = np.mean([gaussian_kernel_mean(np.zeros(d), 2.0, s * h, d) for s in MMD_SCALES])
    expected = (1 - e_k) * 2 / n
    draw = lambda i: jax.random.normal(jax.random.key(i), (n, d), jnp.float64)
    values = [float(mmd2(draw(2 * i), draw(2 * i + 1), h)) for i in range(20)]
    assert np.mean(values) == pytest.approx(expected, rel=0.15)


def test_median_bandwidth():
    x = jnp.asarray([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])  # distances 5, 5, 10
    assert float(median_bandwidth(x)) == pytest.approx(5.0)
    assert float(median_bandwidth(x, max_points=2)) == pytest.approx(5.0)


def test_sliced_wasserstein_between_gaussians_matches_the_closed_form():
    """N(a, s^2 I) vs N(b, r^2 I) in 3-D: per direction W_2^2 = (theta.(a-b))^2 + (s-r)^2, so
    with the estimator's own directions the expectation is known exactly; 20k points, sampling
    error of the sorted quantiles about 1e-2 in W_2^2 (checked over seeds)."""
    d, n = 3, 20_000
    a, b, s, r = np.array([1.0, -0.5, 0.0]), np.array([0.0, 0.5, 0.5]), 1.0, 0.6
    kx, ky, kd = jax.random.split(jax.random.key(5), 3)
    x = jnp.asarray(a) + s * jax.random.normal(kx, (n, d), jnp.float64)
    y = jnp.asarray(b) + r * jax.random.normal(ky, (n, d), jnp.float64)
    directions = jax.random.normal(kd, (64, d), jnp.float64)
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    exact = np.mean((np.asarray(directions) @ (a - b)) ** 2 + (s - r) ** 2)
    assert float(sliced_wasserstein_along(directions, x, y)) ** 2 == pytest.approx(exact, abs=0.02)
    # over uniform directions: |a - b|^2 / d + (s - r)^2
    sphere = np.sum((a - b) ** 2) / d + (s - r) ** 2
    # (per-direction values spread with sd ~0.6 around ~0.9: 400 directions give a 4% standard error)
    assert float(sliced_wasserstein(jax.random.key(6), x[:4000], y[:4000], num_projections=400)) ** 2 == pytest.approx(
        sphere, rel=0.15
    )


def test_sliced_wasserstein_exact_cases():
    x = jax.random.normal(jax.random.key(7), (100, 2))
    assert float(sliced_wasserstein(jax.random.key(8), x, x)) == 0.0
    # a shift by c along e_1 and p = 1 in 1-D-like data: every direction moves each quantile by theta_1 c
    directions = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    assert float(sliced_wasserstein_along(directions, x, x + jnp.asarray([2.0, 0.0]), p=1)) == pytest.approx(1.0)
    assert float(sliced_wasserstein_along(directions, x, x + jnp.asarray([2.0, 0.0]), p=2)) == pytest.approx(
        math.sqrt(2.0), rel=1e-6
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mmd2(jnp.zeros((3, 2)), jnp.zeros((3, 3)), 1.0), "same dimension"),
        (lambda: mmd2(jnp.zeros((3,)), jnp.zeros((3, 2)), 1.0), "must be points (n, d)"),
        (lambda: mmd2(jnp.zeros((1, 2)), jnp.zeros((3, 2)), 1.0, unbiased=True), "at least 2 points"),
        (lambda: median_bandwidth(jnp.zeros((1, 2))), "at least 2 points"),
        (lambda: sliced_wasserstein(jax.random.key(0), jnp.zeros((3, 2)), jnp.zeros((4, 2))), "same shape"),
        (lambda: sliced_wasserstein(jax.random.key(0), jnp.zeros((3, 2)), jnp.zeros((3, 2)), p=0), ">= 1"),
    ],
)
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        call()
    assert "\n" not in str(info.value)

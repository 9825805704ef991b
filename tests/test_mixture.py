"""`ScaleMixtureNormal`, Blundell et al.'s prior, against scipy in float64: log-density (also where a
component underflows), cdf, samples (KS test, variance), entropy by quadrature; no pathwise sampler;
one-line errors for bad parameters; shapes, jit and grad."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
from scipy import special, stats

import reparam as rp

PI, SIGMA1, SIGMA2 = 0.3, 1.5, math.exp(-3.0)


def reference_log_prob(x, pi, s1, s2):
    """`logsumexp` of scipy's weighted Normal log-densities, float64."""
    x = np.asarray(x, np.float64)
    return special.logsumexp(
        [np.log(pi) + stats.norm.logpdf(x, 0, s1), np.log1p(-pi) + stats.norm.logpdf(x, 0, s2)], axis=0
    )


def reference_cdf(x, pi, s1, s2):
    return pi * stats.norm.cdf(x, 0, s1) + (1 - pi) * stats.norm.cdf(x, 0, s2)


def mixture(dtype, pi=PI, s1=SIGMA1, s2=SIGMA2):
    return rp.ScaleMixtureNormal(np.asarray(pi, dtype), np.asarray(s1, dtype), np.asarray(s2, dtype))


def test_log_prob_and_cdf_match_scipy(dtype):
    p = mixture(dtype)
    x = np.concatenate([np.linspace(-8, 8, 161), [0.0, 1e-3, -0.04, 0.2, 25.0, -40.0]]).astype(dtype)
    log_prob, cdf = p.log_prob(x), p.cdf(x)
    assert log_prob.dtype == dtype and cdf.dtype == dtype and log_prob.shape == x.shape
    rtol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(log_prob, reference_log_prob(x, PI, SIGMA1, SIGMA2), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cdf, reference_cdf(x, PI, SIGMA1, SIGMA2), rtol=rtol, atol=rtol)


def test_density_integrates_to_one_and_moments():
    p = mixture("float64")
    total, _ = si.quad(lambda x: float(np.exp(p.log_prob(x))), -np.inf, np.inf, points=None)
    assert abs(total - 1) < 1e-8
    variance = PI * SIGMA1**2 + (1 - PI) * SIGMA2**2
    np.testing.assert_allclose(p.variance(), variance, rtol=1e-14)
    np.testing.assert_allclose(p.stddev(), math.sqrt(variance), rtol=1e-14)
    assert float(p.mean()) == 0.0 and float(p.mode()) == 0.0


def test_no_underflow_for_tiny_sigma2_and_large_x():
    """Blundell et al.'s setting sigma2 = exp(-7): the narrow component's density underflows in
    float32 for |x| > ~0.013 and the wide one's for |x| > ~13 (sigma1 = 1); log space stays exact."""
    pi, s1, s2 = 0.5, 1.0, math.exp(-7.0)
    p = mixture("float32", pi, s1, s2)
    x = np.array([0.0, 1e-4, 0.01, 0.5, 3.0, 14.0, 30.0, -60.0, 100.0], np.float32)
    log_prob = np.asarray(p.log_prob(x))
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(log_prob, reference_log_prob(x, pi, s1, s2), rtol=2e-6)
    # The test is meaningful: the naive density underflows to 0 (log -inf) in float32 there.
    naive = pi * jax.scipy.stats.norm.pdf(x, 0.0, s1) + (1 - pi) * jax.scipy.stats.norm.pdf(x, 0.0, s2)
    assert np.all(np.asarray(naive, np.float32)[-3:] == 0)
    # Gradients in x and the parameters stay finite there too.
    grads = jax.grad(lambda q, v: jnp.sum(q.log_prob(v)), argnums=(0, 1))(p, jnp.asarray(x))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(p.log_prob(np.float32(np.inf))) == -np.inf


def test_samples_ks_and_variance():
    p = mixture("float64")
    n = 20_000
    x = np.asarray(p.sample(jax.random.key(0), n))
    assert x.shape == (n,)
    assert stats.kstest(x, lambda v: reference_cdf(v, PI, SIGMA1, SIGMA2)).pvalue > 1e-3
    # Sample variance within 5 standard errors: se = sqrt((E x^4 - var^2) / n).
    variance = float(p.variance())
    fourth = 3 * (PI * SIGMA1**4 + (1 - PI) * SIGMA2**4)
    se = math.sqrt((fourth - variance**2) / n)
    assert abs(np.mean(x**2) - variance) < 5 * se
    assert abs(np.mean(x)) < 5 * math.sqrt(variance / n)
    # The component fraction: |x| > 0.5 happens essentially only in the wide component.
    wide = PI * 2 * stats.norm.sf(0.5, 0, SIGMA1)
    assert abs(np.mean(np.abs(x) > 0.5) - wide) < 5 * math.sqrt(wide * (1 - wide) / n)


def test_entropy_monte_carlo_matches_quadrature():
    p = mixture("float64")

    def integrand(x):
        lp = reference_log_prob(x, PI, SIGMA1, SIGMA2)
        return -np.exp(lp) * lp

    exact, _ = si.quad(integrand, -30, 30, points=[0.0], limit=200)
    n = 20_000
    estimate = float(p.entropy(jax.random.key(1), n))
    x = np.asarray(p.sample(jax.random.key(1), n))
    se = np.std(reference_log_prob(x, PI, SIGMA1, SIGMA2)) / math.sqrt(n)
    assert abs(estimate - exact) < 5 * se
    with pytest.raises(ValueError, match=r"ScaleMixtureNormal.entropy\(\) has no closed form; pass key="):
        p.entropy()


def test_no_pathwise_sampler():
    p = mixture("float32")
    assert p.reparameterized is False
    with pytest.raises(rp.NotReparameterizedError, match="pi has no pathwise gradient"):
        p.rsample(jax.random.key(0))
    with pytest.raises(rp.NotReparameterizedError):
        p.rsample_and_log_prob(jax.random.key(0), 3)
    x, log_prob = p.sample_and_log_prob(jax.random.key(0), 4)
    assert x.shape == log_prob.shape == (4,) and x.dtype == jnp.float32


def test_kl_to_the_mixture_is_the_monte_carlo_fallback():
    q, p = rp.Normal(jnp.float32(0.2), jnp.float32(0.5)), mixture("float32")
    with pytest.raises(ValueError, match=r"no closed form for \(Normal, ScaleMixtureNormal\); pass key="):
        rp.kl_divergence(q, p)
    n = 40_000
    estimate = float(rp.kl_divergence(q, p, key=jax.random.key(2), num_samples=n))
    exact, _ = si.quad(
        lambda w: (
            stats.norm.pdf(w, 0.2, 0.5) * (stats.norm.logpdf(w, 0.2, 0.5) - reference_log_prob(w, PI, SIGMA1, SIGMA2))
        ),
        -6,
        6,
        points=[0.0],
        limit=200,
    )
    x = np.asarray(q.sample(jax.random.key(2), n), np.float64)
    terms = stats.norm.logpdf(x, 0.2, 0.5) - reference_log_prob(x, PI, SIGMA1, SIGMA2)
    assert abs(estimate - exact) < 5 * terms.std() / math.sqrt(n)


def test_shapes_broadcast_jit_vmap():
    p = rp.ScaleMixtureNormal(
        jnp.array([0.2, 0.5, 0.8], jnp.float32), jnp.float32(1.0), jnp.array([[0.1], [0.01]], jnp.float32)
    )
    assert p.batch_shape == (2, 3) and p.event_shape == ()
    x = p.sample(jax.random.key(0), (4,))
    assert x.shape == (4, 2, 3) and p.log_prob(x).shape == (4, 2, 3)
    assert p.mean().shape == p.variance().shape == p.mode().shape == (2, 3)
    assert p.entropy(jax.random.key(1), 16).shape == (2, 3)
    jitted = jax.jit(lambda q, v: q.log_prob(v))(p, x)
    np.testing.assert_allclose(jitted, p.log_prob(x), rtol=1e-6)
    batched = jax.vmap(lambda pi: rp.ScaleMixtureNormal(pi, 1.0, 0.1).log_prob(jnp.float32(0.3)))(
        jnp.array([0.2, 0.7], jnp.float32)
    )
    assert batched.shape == (2,)
    grad = jax.grad(lambda pi, s1, s2: rp.ScaleMixtureNormal(pi, s1, s2).log_prob(jnp.float32(0.3)), argnums=(0, 1, 2))(
        *(jnp.float32(v) for v in (0.4, 1.0, 0.1))
    )
    assert all(np.isfinite(g) for g in grad)
    # d/dpi log p = (N1 - N2) / p(x), checked in float64.
    x0, pi, s1, s2 = 0.3, 0.4, 1.0, 0.1
    n1, n2 = stats.norm.pdf(x0, 0, s1), stats.norm.pdf(x0, 0, s2)
    np.testing.assert_allclose(grad[0], (n1 - n2) / (pi * n1 + (1 - pi) * n2), rtol=1e-5)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ((0.0, 1.0, 0.1), r"ScaleMixtureNormal: pi must lie in \(0, 1\)"),
        ((1.0, 1.0, 0.1), r"ScaleMixtureNormal: pi must lie in \(0, 1\)"),
        ((1.5, 1.0, 0.1), r"ScaleMixtureNormal: pi must lie in \(0, 1\)"),
        ((float("nan"), 1.0, 0.1), r"ScaleMixtureNormal: pi must lie in \(0, 1\)"),
        ((0.5, 0.0, 0.1), "ScaleMixtureNormal: sigma1 must be positive and finite"),
        ((0.5, 1.0, -0.1), "ScaleMixtureNormal: sigma2 must be positive and finite"),
        ((0.5, float("inf"), 0.1), "ScaleMixtureNormal: sigma1 must be positive and finite"),
    ],
)
def test_bad_parameters_raise_one_line(params, message):
    with pytest.raises(ValueError, match=message) as info:
        rp.ScaleMixtureNormal(*params)
    assert "\n" not in str(info.value)
    rp.ScaleMixtureNormal(*params, validate=False)  # the opt-out


def test_bad_parameters_raise_under_jit():
    with pytest.raises(Exception, match=r"pi must lie in \(0, 1\)"):
        jax.block_until_ready(jax.jit(lambda pi: rp.ScaleMixtureNormal(pi, 1.0, 0.1).log_prob(0.0))(jnp.float32(1.2)))
    with pytest.raises(ValueError, match="parameter shapes do not broadcast"):
        rp.ScaleMixtureNormal(jnp.ones(3) * 0.5, jnp.ones(2), 0.1)

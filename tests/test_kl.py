"""Every closed-form KL against a Monte Carlo estimate (within 5 standard errors) and against
numerical integration where cheap; KL(p, p) = 0; the Monte Carlo fallback and its error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si

import reparam as rp

PAIRS = {
    "normal": (rp.Normal(0.3, 1.2), rp.Normal(-0.5, 0.7)),
    "normal-batched": (rp.Normal(jnp.array([0.0, 1.0]), 1.0), rp.Normal(0.5, jnp.array([2.0, 0.5]))),
    "lognormal": (rp.LogNormal(0.1, 0.5), rp.LogNormal(0.4, 0.8)),
    "mvn": (
        rp.MultivariateNormal(jnp.array([0.5, -1.0, 0.2]), jnp.array([[1.0, 0, 0], [0.3, 0.7, 0], [-0.2, 0.1, 1.4]])),
        rp.MultivariateNormal(jnp.array([0.0, 0.5, -0.3]), jnp.array([[1.5, 0, 0], [-0.4, 1.0, 0], [0.2, 0.3, 0.6]])),
    ),
    "mvn-diag": (
        rp.MultivariateNormalDiag(jnp.array([0.5, -1.0]), jnp.array([0.5, 2.0])),
        rp.MultivariateNormalDiag(jnp.array([0.0, 0.0]), jnp.array([1.0, 1.5])),
    ),
    "laplace": (rp.Laplace(0.2, 0.8), rp.Laplace(-0.6, 1.3)),
    "gamma": (rp.Gamma(2.5, 1.5), rp.Gamma(1.2, 0.6)),
    "beta": (rp.Beta(2.0, 3.5), rp.Beta(1.2, 0.9)),
    "dirichlet": (rp.Dirichlet(jnp.array([1.5, 2.0, 0.8])), rp.Dirichlet(jnp.array([1.0, 3.0, 2.0]))),
    "categorical": (rp.Categorical(jnp.array([0.2, -1.0, 1.5, 0.0])), rp.Categorical(jnp.array([0.0, 0.5, -0.5, 1.0]))),
    "bernoulli": (rp.Bernoulli(jnp.array([0.7, -1.2])), rp.Bernoulli(jnp.array([-0.3, 0.4]))),
    "uniform": (rp.Uniform(0.2, 1.0), rp.Uniform(-1.0, 2.0)),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_closed_form_matches_monte_carlo(name):
    p, q = PAIRS[name]
    closed = np.asarray(rp.kl_divergence(p, q))
    n = 40_000
    draw = p.rsample_and_log_prob if p.reparameterized else p.sample_and_log_prob
    x, log_p = draw(jax.random.key(7), (n,))
    terms = np.asarray(log_p - q.log_prob(x))
    se = terms.std(0) / np.sqrt(n)
    assert closed.shape == p.batch_shape
    assert np.all(np.abs(terms.mean(0) - closed) <= 5 * se + 1e-9), (terms.mean(0), closed, se)
    assert np.all(closed > 0)


@pytest.mark.parametrize("name", list(PAIRS))
def test_kl_of_a_distribution_with_itself_is_zero(name):
    p, _ = PAIRS[name]
    np.testing.assert_allclose(rp.kl_divergence(p, p), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", ["normal", "laplace", "gamma", "beta", "lognormal"])
def test_univariate_closed_form_matches_quadrature(name):
    p, q = PAIRS[name]

    def integrand(x):
        lp, lq = float(p.log_prob(x)), float(q.log_prob(x))
        return np.exp(lp) * (lp - lq) if np.isfinite(lp) else 0.0

    support = {"gamma": (0, 60), "beta": (0, 1), "lognormal": (0, 60)}.get(name, (-40, 40))
    value, _ = si.quad(integrand, *support, limit=200, points=None)
    np.testing.assert_allclose(rp.kl_divergence(p, q), value, rtol=1e-6, atol=1e-8)


def test_uniform_kl_is_infinite_outside_the_support():
    assert float(rp.kl_divergence(rp.Uniform(-1.0, 2.0), rp.Uniform(0.0, 1.0))) == np.inf


def test_monte_carlo_fallback_needs_a_key_and_then_estimates():
    p, q = rp.Normal(0.0, 1.0), rp.Laplace(0.5, 1.5)
    with pytest.raises(ValueError, match=r"no closed form for \(Normal, Laplace\).*key="):
        rp.kl_divergence(p, q)
    estimate = rp.kl_divergence(p, q, key=jax.random.key(0), num_samples=100_000)
    exact, _ = si.quad(lambda x: np.exp(float(p.log_prob(x))) * float(p.log_prob(x) - q.log_prob(x)), -30, 30)
    assert abs(float(estimate) - exact) < 0.01
    # Pathwise-differentiable through the reparameterized p.
    grad = jax.grad(lambda m: rp.kl_divergence(rp.Normal(m, 1.0), q, key=jax.random.key(0), num_samples=1000))(0.0)
    assert np.isfinite(grad) and grad != 0


def test_kl_gradients_are_finite_under_jit():
    def loss(loc, scale):
        return rp.kl_divergence(rp.Normal(loc, scale), rp.Normal(0.0, 1.0))

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))(0.5, 2.0)
    np.testing.assert_allclose(g, (0.5, 2.0 - 1 / 2.0))  # d/dmu = mu, d/dsigma = sigma - 1/sigma

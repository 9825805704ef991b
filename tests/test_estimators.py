"""Gradient estimators: unbiased where theory says so, biased ones whose bias shrinks with the
temperature, variances equal to the closed forms, baselines that reduce variance, clear errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reparam as rp
from reparam.estimators import (
    gumbel_softmax,
    measure,
    measure_valued,
    moving_average_baseline,
    pathwise,
    score_function,
    score_function_control_variate,
    score_function_loo,
    straight_through_gumbel,
)
from reparam.estimators import problems as P
from reparam.estimators.variance import repeated_estimates

R = 4000


def estimates_of(estimator, problem, num_samples, seed=0, repeats=R):
    run = jax.jit(
        lambda k: repeated_estimates(estimator, problem.f, problem.dist_fn, problem.params, k, repeats, num_samples)
    )
    return run(jax.random.key(seed))


def assert_unbiased(estimates, exact, k=5.0):
    for g, e in zip(jax.tree_util.tree_leaves(estimates), jax.tree_util.tree_leaves(exact), strict=True):
        g, e = np.asarray(g), np.asarray(e)
        se = g.std(0) / np.sqrt(len(g))
        assert np.all(np.abs(g.mean(0) - e) <= k * se + 1e-9), (g.mean(0), e, se)


UNBIASED = {
    "pathwise": pathwise,
    "score": score_function,
    "score-baseline": functools.partial(score_function, baseline=1.5),
    "score-ma": moving_average_baseline(0.9),
    "score-rloo": score_function_loo,
    "score-cv": score_function_control_variate,
    "measure-valued": measure_valued,
}
NORMAL_PROBLEMS = {
    "quadratic": P.quadratic(2.0, 0.5, 1.3),
    "exponential": P.exponential(0.2, 0.7),
    "cosine": P.cosine(3.0, 0.4, 0.8),
}


@pytest.mark.parametrize("estimator", list(UNBIASED))
@pytest.mark.parametrize("problem", list(NORMAL_PROBLEMS))
def test_unbiased_on_normal_problems(estimator, problem):
    p = NORMAL_PROBLEMS[problem]
    assert_unbiased(estimates_of(UNBIASED[estimator], p, 4), p.exact_grad(p.params))


@pytest.mark.parametrize("estimator", ["pathwise", "score-rloo", "score-cv"])
def test_unbiased_on_the_vae_problem(estimator):
    p = P.vae_quadratic()
    assert_unbiased(estimates_of(UNBIASED[estimator], p, 4, repeats=2000), p.exact_grad(p.params))


@pytest.mark.parametrize(
    "problem",
    [P.categorical(logits=jnp.array([0.5, -0.2, 0.0, 1.0])), P.bernoulli(0.45, 3, jnp.array([0.3, -0.5, 1.0]))],
    ids=["categorical", "bernoulli"],
)
@pytest.mark.parametrize("estimator", ["score", "score-rloo", "score-cv", "score-ma"])
def test_score_function_unbiased_on_discrete_problems(problem, estimator):
    assert_unbiased(estimates_of(UNBIASED[estimator], problem, 4), problem.exact_grad(problem.params))


@pytest.mark.parametrize("relaxed", [gumbel_softmax, straight_through_gumbel], ids=["gumbel", "st-gumbel"])
def test_relaxed_estimators_are_biased_and_the_bias_shrinks_with_temperature(relaxed):
    problem = P.categorical(logits=jnp.array([0.5, -0.2, 0.0, 1.0]))
    exact = np.asarray(problem.exact_grad(problem.params))

    def bias_and_se(temperature):
        g = np.asarray(estimates_of(functools.partial(relaxed, temperature=temperature), problem, 10, repeats=8000))
        return np.linalg.norm(g.mean(0) - exact), np.linalg.norm(g.std(0) / np.sqrt(len(g)))

    hot_bias, hot_se = bias_and_se(5.0)
    cold_bias, cold_se = bias_and_se(0.1)
    assert hot_bias > 5 * hot_se  # clearly biased at high temperature
    # Gumbel-Softmax's bias vanishes as T -> 0; straight-through's only shrinks (its gradient stays
    # that of a relaxed sample while its forward value is exact).
    factor = 0.5 if relaxed is gumbel_softmax else 0.8
    assert cold_bias + 2 * cold_se < factor * hot_bias, (cold_bias, cold_se, hot_bias)


@pytest.mark.parametrize(
    "mu,sigma,k,n", [(1.0, 1.0, 0.0, 1), (1.0, 1.0, 3.0, 1), (0.5, 2.0, -1.0, 1), (1.0, 0.5, 2.0, 5)]
)
def test_variances_match_their_closed_forms(mu, sigma, k, n):
    problem = P.quadratic(k, mu, sigma)
    closed = P.quadratic_variance(k, mu, sigma, n)
    for name, estimator in [("pathwise", pathwise), ("score", score_function)]:
        g = estimates_of(estimator, problem, n, repeats=20_000)
        for field in ("mu", "sigma"):
            draws = np.asarray(getattr(g, field))
            var = draws.var(ddof=1)
            # Standard error of a sample variance: sqrt((m4 - var^2) / R).
            m4 = np.mean((draws - draws.mean()) ** 4)
            assert abs(var - getattr(closed[name], field)) < 5 * np.sqrt((m4 - var**2) / len(draws)), (name, field)


def test_mohamed_figures_at_mu_sigma_one():
    """The closed forms reproduce the paper's figures at mu = sigma = 1 (k = 0 here)."""
    closed = P.quadratic_variance(0.0)
    assert closed["pathwise"] == P.NormalParams(4.0, 12.0)
    assert closed["score"] == P.NormalParams(1 + 14 + 15, 2 + 60 + 74)


def test_each_baseline_reduces_score_function_variance():
    problem = P.quadratic(-2.0)

    def total(est):
        leaves = jax.tree_util.tree_leaves(estimates_of(est, problem, 10))
        return sum(float(np.var(np.asarray(leaf), 0, ddof=1)) for leaf in leaves)

    plain = total(score_function)
    for estimator in (moving_average_baseline(0.9), score_function_loo, score_function_control_variate):
        assert total(estimator) < 0.75 * plain  # MA ~0.5x, RLOO and CV lower still


def test_pathwise_beats_score_on_quadratic_but_loses_on_high_frequency_cosine():
    """Mohamed et al. 2020, Fig. 3: pathwise variance grows like omega^2 for cos(omega z)."""
    var = lambda est, p: float(np.var(np.asarray(estimates_of(est, p, 1).mu), ddof=1))
    low, high = P.cosine(0.5, 1.0, 1.0), P.cosine(8.0, 1.0, 1.0)
    assert var(pathwise, P.quadratic(0.0)) < var(score_function, P.quadratic(0.0))
    assert var(pathwise, low) < var(score_function, low)
    assert var(pathwise, high) > var(score_function, high)


def test_measure_reports_statistics_and_cost():
    p = P.quadratic(0.0)
    m = measure(pathwise, p, p.params, jax.random.key(0), 1000, 1)
    assert m.reference == "exact" and m.seconds_per_estimate > 0
    np.testing.assert_allclose(m.variance.mu, 4.0, rtol=0.2)
    assert abs(float(m.bias.mu)) < 5 * np.sqrt(4.0 / 1000)
    no_exact = p._replace(expectation=None)
    m2 = measure(pathwise, no_exact, p.params, jax.random.key(0), 100, 1)
    assert "pathwise reference" in m2.reference
    with pytest.raises(ValueError, match="num_repeats >= 2"):
        measure(pathwise, p, p.params, jax.random.key(0), 1, 1)


def test_estimators_vmap_over_parameters():
    p = P.quadratic(0.0)
    params = P.NormalParams(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 1.0, 2.0]))
    grads = jax.vmap(lambda q: pathwise(p.f, p.dist_fn, q, jax.random.key(0), 50_000))(params)
    np.testing.assert_allclose(grads.mu, 2 * params.mu, atol=0.05)
    np.testing.assert_allclose(grads.sigma, 2 * params.sigma, atol=0.1)


def test_clear_errors_for_wrong_inputs():
    f = lambda x: jnp.sum(x)
    with pytest.raises(rp.NotReparameterizedError, match="score"):
        pathwise(f, rp.OneHotCategorical, jnp.zeros(3), jax.random.key(0), 10)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        score_function_loo(f, rp.OneHotCategorical, jnp.zeros(3), jax.random.key(0), 1)
    with pytest.raises(ValueError, match="num_samples >= 2"):
        score_function_control_variate(f, rp.OneHotCategorical, jnp.zeros(3), jax.random.key(0), 1)
    with pytest.raises(ValueError, match="Independent"):
        score_function(lambda z: jnp.sum(z), lambda p: rp.Normal(p, 1.0), jnp.zeros(3), jax.random.key(0), 10)
    with pytest.raises(TypeError, match="OneHotCategorical or Bernoulli"):
        gumbel_softmax(lambda z: z, lambda p: rp.Normal(p, 1.0), 0.0, jax.random.key(0), 10)
    with pytest.raises(TypeError, match="Normal only"):
        measure_valued(lambda z: z, lambda p: rp.Laplace(p, 1.0), 0.0, jax.random.key(0), 10)
    with pytest.raises(ValueError, match="decay"):
        moving_average_baseline(1.5)

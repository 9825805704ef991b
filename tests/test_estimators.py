"""The pathwise and score-function estimators: unbiased, with the variances the closed forms of
Mohamed et al. (2020) give for the quadratic problem."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reparam as rp
from reparam.estimators import pathwise, score_function
from reparam.estimators.problems import NormalParams, quadratic, quadratic_single_sample_variance
from reparam.estimators.variance import repeated_estimates, summarize

PARAMS = NormalParams(jnp.asarray(1.0), jnp.asarray(1.0))
R = 20_000


@pytest.mark.parametrize("estimator", [pathwise, score_function], ids=["pathwise", "score_function"])
@pytest.mark.parametrize("k", [-2.0, 0.0, 2.5])
def test_unbiased_and_variance_matches_closed_form(estimator, k):
    problem = quadratic(k)
    estimates = repeated_estimates(estimator, problem.f, problem.dist_fn, PARAMS, jax.random.key(3), R, 1)
    m = summarize(estimates, problem.exact_grad(PARAMS))
    closed = quadratic_single_sample_variance(k)[estimator.__name__]
    for p in ("mu", "sigma"):
        draws = np.asarray(getattr(estimates, p))
        var = float(getattr(m.variance, p))
        assert abs(float(getattr(m.bias, p))) < 5 * np.sqrt(var / R)
        # Standard error of a sample variance: sqrt((m4 - var^2) / R), m4 the 4th central moment
        # (large for the heavy-tailed score-function estimates).
        m4 = np.mean((draws - draws.mean()) ** 4)
        assert abs(var - float(getattr(closed, p))) < 5 * np.sqrt((m4 - var**2) / R), (p, var, getattr(closed, p))


def test_more_samples_divide_the_variance():
    problem = quadratic(0.0)
    one = summarize(repeated_estimates(pathwise, problem.f, problem.dist_fn, PARAMS, jax.random.key(0), 5000, 1), problem.exact_grad(PARAMS))
    ten = summarize(repeated_estimates(pathwise, problem.f, problem.dist_fn, PARAMS, jax.random.key(1), 5000, 10), problem.exact_grad(PARAMS))
    np.testing.assert_allclose(float(ten.variance.sigma) * 10, float(one.variance.sigma), rtol=0.15)


def test_pathwise_refuses_a_discrete_distribution_and_score_function_handles_it():
    f = lambda k: jnp.square(k.astype(jnp.float64) - 1.0)
    dist_fn = lambda logits: rp.Categorical(logits)
    logits = jnp.array([0.2, -0.3, 0.5])
    with pytest.raises(rp.NotReparameterizedError, match="score"):
        pathwise(f, dist_fn, logits, jax.random.key(0), 10)
    # Exact gradient by enumeration: d/dlogits sum_k softmax_k f(k).
    exact = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l) * f(jnp.arange(3.0))))(logits)
    estimates = repeated_estimates(score_function, f, dist_fn, logits, jax.random.key(1), 4000, 10)
    mean, se = np.asarray(estimates).mean(0), np.asarray(estimates).std(0) / np.sqrt(4000)
    assert np.all(np.abs(mean - np.asarray(exact)) < 5 * se)

"""Exact-likelihood baselines: independent Bernoulli and MAP-EM Bernoulli mixtures."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from reparam.data import binarize_static, load_dataset
from reparam.models.baselines import (
    BernoulliMixture,
    fit_bernoulli_mixture,
    fit_independent_bernoulli,
    init_bernoulli_mixture,
    log_likelihood,
    map_objective,
    mixture_log_likelihood,
    run_em,
)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return binarize_static(data.x_train), binarize_static(data.x_test)


def random_binary(n, d, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.3).astype(np.float64)


def test_independent_bernoulli_matches_scipy():
    x = random_binary(40, 7)
    x[:, 0] = 0.0  # a pixel never on: the pseudo-count keeps its probability off 0
    logits = fit_independent_bernoulli(jnp.asarray(x), pseudo_count=0.5)
    p = (x.sum(0) + 0.5) / (40 + 1.0)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits)), p, rtol=1e-12)
    x_new = random_binary(9, 7, seed=1)
    expected = stats.bernoulli.logpmf(x_new, p).sum(-1)
    np.testing.assert_allclose(np.asarray(log_likelihood(logits, jnp.asarray(x_new))), expected, rtol=1e-12)


def test_mixture_log_likelihood_matches_scipy():
    rng = np.random.default_rng(2)
    weights, p = rng.dirichlet(np.ones(3)), rng.uniform(0.05, 0.95, (3, 6))
    model = BernoulliMixture(jnp.asarray(np.log(weights)), jnp.asarray(np.log(p) - np.log1p(-p)))
    x = random_binary(11, 6, seed=3)
    per_component = stats.bernoulli.logpmf(x[:, None, :], p[None]).sum(-1)  # (N, K) by brute force
    expected = logsumexp(np.log(weights) + per_component, axis=-1)
    np.testing.assert_allclose(np.asarray(mixture_log_likelihood(model, jnp.asarray(x))), expected, rtol=1e-12)
    x[0, 0] = 0.5  # outside the support
    assert np.asarray(mixture_log_likelihood(model, jnp.asarray(x)))[0] == -np.inf
    assert np.isfinite(np.asarray(mixture_log_likelihood(model, jnp.asarray(x)))[1:]).all()


def test_mixture_with_one_component_is_the_independent_model(digits):
    x_train, x_test = digits
    mixture = fit_bernoulli_mixture(jax.random.key(0), x_train, 1, num_iters=2, pseudo_count=1.0)
    logits = fit_independent_bernoulli(x_train, pseudo_count=1.0)
    assert float(mixture.log_weights[0]) == 0.0
    np.testing.assert_allclose(np.asarray(mixture.logits[0]), np.asarray(logits), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(mixture_log_likelihood(mixture, x_test)), np.asarray(log_likelihood(logits, x_test)), rtol=1e-5
    )


def test_em_recovers_a_known_mixture_and_never_decreases_its_objective():
    rng = np.random.default_rng(0)
    n, d = 4000, 16
    weights = np.array([0.5, 0.3, 0.2])
    p = np.where(rng.random((3, d)) < 0.5, 0.15, 0.85)  # distinct on/off patterns
    p[1] = 1 - p[0]  # guarantee separation between at least the two largest components
    z = rng.choice(3, n, p=weights)
    x = jnp.asarray(rng.random((n, d)) < p[z], jnp.float64)
    model = init_bernoulli_mixture(jax.random.key(0), x, 3, pseudo_count=1.0)
    model, objective = run_em(model, x, num_iters=60, pseudo_count=1.0)
    # The EM guarantee, for the MAP objective (log-likelihood plus log-prior), checked in float64.
    objective = np.asarray(objective)
    assert objective.dtype == np.float64 and objective.shape == (60,)
    assert np.all(np.diff(objective) >= -1e-12 * np.abs(objective[1:]))
    assert objective[-1] > objective[0] + 0.5  # and it really climbs
    assert float(map_objective(model, x, 1.0)) >= objective[-1] - 1e-12 * abs(objective[-1])
    p_hat, w_hat = np.asarray(jax.nn.sigmoid(model.logits)), np.exp(np.asarray(model.log_weights))
    best = min(itertools.permutations(range(3)), key=lambda perm: np.abs(p_hat[list(perm)] - p).sum())
    p_hat, w_hat = p_hat[list(best)], w_hat[list(best)]
    # Sampling error of each estimate (5 standard errors) plus the pseudo-count's pull, a / N_k.
    n_k = weights * n
    tol_p = 5 * np.sqrt(p * (1 - p) / n_k[:, None]) + 1.0 / n_k[:, None]
    assert np.all(np.abs(p_hat - p) <= tol_p), np.abs(p_hat - p) / tol_p
    tol_w = 5 * np.sqrt(weights * (1 - weights) / n) + 3.0 / n
    assert np.all(np.abs(w_hat - weights) <= tol_w), (w_hat, weights)


def test_mixture_beats_independent_on_digits_test_set(digits):
    x_train, x_test = digits
    model = init_bernoulli_mixture(jax.random.key(0), x_train, 10, pseudo_count=1.0)
    model, objective = run_em(model, x_train, num_iters=60, pseudo_count=1.0)
    objective = np.asarray(objective)
    assert np.all(np.diff(objective) >= -8 * np.finfo(np.float32).eps * np.abs(objective[1:]))  # float32 rounding
    independent_nll = -float(jnp.mean(log_likelihood(fit_independent_bernoulli(x_train), x_test)))
    mixture_nll = -float(jnp.mean(mixture_log_likelihood(model, x_test)))
    assert 20.0 < independent_nll < 30.0  # about 25.2 nats per 8x8 image
    assert mixture_nll < independent_nll - 3.0  # about 19.8


def test_baselines_reject_bad_inputs():
    x = jnp.asarray(random_binary(5, 3), jnp.float32)
    with pytest.raises(ValueError, match=re.escape("data must be binary (0 or 1); binarize first")):
        fit_independent_bernoulli(x * 0.5 + 0.25)
    with pytest.raises(ValueError, match=re.escape("pseudo_count must be > 0")):
        fit_independent_bernoulli(x, pseudo_count=0.0)
    with pytest.raises(ValueError, match=re.escape("num_components must be in 1..5 (the number of examples), got 6")):
        fit_bernoulli_mixture(jax.random.key(0), x, 6)
    with pytest.raises(ValueError, match=re.escape("data must be (N, D) with N >= 1")):
        fit_bernoulli_mixture(jax.random.key(0), x[0], 1)

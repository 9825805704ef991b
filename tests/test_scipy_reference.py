"""Every univariate and multivariate density against scipy.stats, in float64 and float32, over
hypothesis-drawn parameters; samples against scipy with KS tests and moment checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs

import reparam as rp

# Tolerances: float64 matches scipy to near machine precision; float32 to a few ulps of the
# largest term in the log-density (parameter ranges keep those terms moderate).
TOL = {"float64": dict(rtol=1e-9, atol=1e-9), "float32": dict(rtol=2e-4, atol=2e-4)}
CDF_TOL = {"float64": dict(rtol=1e-8, atol=1e-10), "float32": dict(rtol=1e-4, atol=2e-5)}


def floats(lo, hi):
    return hs.floats(lo, hi, allow_nan=False, allow_infinity=False)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[..., rp.Distribution]  # our distribution from the parameters
    reference: Callable[..., object]  # scipy's frozen distribution from the same parameters
    params: dict  # parameter name -> hypothesis strategy
    nominal: dict  # fixed parameters for the sampling tests

    def both(self, dtype, **p):
        cast = {k: np.asarray(v, dtype) for k, v in p.items()}
        # The reference sees the same rounded parameters as ours.
        return self.make(**cast), self.reference(**{k: float(v) for k, v in cast.items()})


UNIVARIATE = [
    Case(
        "normal",
        lambda loc, scale: rp.Normal(loc, scale),
        lambda loc, scale: st.norm(loc, scale),
        dict(loc=floats(-20, 20), scale=floats(1e-3, 1e3)),
        dict(loc=1.5, scale=2.0),
    ),
    Case(
        "laplace",
        lambda loc, scale: rp.Laplace(loc, scale),
        lambda loc, scale: st.laplace(loc, scale),
        dict(loc=floats(-20, 20), scale=floats(1e-3, 1e3)),
        dict(loc=-1.0, scale=0.7),
    ),
    Case(
        "logistic",
        lambda loc, scale: rp.Logistic(loc, scale),
        lambda loc, scale: st.logistic(loc, scale),
        dict(loc=floats(-20, 20), scale=floats(1e-3, 1e3)),
        dict(loc=0.5, scale=1.3),
    ),
    Case(
        "gumbel",
        lambda loc, scale: rp.Gumbel(loc, scale),
        lambda loc, scale: st.gumbel_r(loc, scale),
        dict(loc=floats(-20, 20), scale=floats(1e-2, 1e2)),
        dict(loc=0.3, scale=2.0),
    ),
    Case(
        "uniform",
        lambda low, width: rp.Uniform(low, low + width),
        lambda low, width: st.uniform(low, width),
        dict(low=floats(-20, 20), width=floats(1e-2, 1e2)),
        dict(low=-1.0, width=3.0),
    ),
    Case(
        "lognormal",
        lambda loc, scale: rp.LogNormal(loc, scale),
        lambda loc, scale: st.lognorm(s=scale, scale=np.exp(loc)),
        dict(loc=floats(-3, 3), scale=floats(0.05, 2.0)),
        dict(loc=0.2, scale=0.5),
    ),
    Case(
        "gamma",
        lambda a, rate: rp.Gamma(a, rate),
        lambda a, rate: st.gamma(a, scale=1 / rate),
        dict(a=floats(0.1, 30), rate=floats(0.05, 20)),
        dict(a=0.7, rate=2.0),
    ),
    Case(
        "beta",
        lambda a, b: rp.Beta(a, b),
        lambda a, b: st.beta(a, b),
        dict(a=floats(0.1, 30), b=floats(0.1, 30)),
        dict(a=0.6, b=2.5),
    ),
]
IDS = [c.name for c in UNIVARIATE]


def points(frozen, n=16, seed=0):
    return frozen.rvs(size=n, random_state=np.random.default_rng(seed))


@pytest.mark.parametrize("case", UNIVARIATE, ids=IDS)
def test_univariate_against_scipy(case: Case, dtype):
    @given(hs.fixed_dictionaries(case.params))
    def check(p):
        ours, ref = case.both(dtype, **p)
        x = points(ref)
        x_ours = jnp.asarray(x, dtype)
        x64 = np.asarray(x_ours, np.float64)  # compare at the same (rounded) points
        np.testing.assert_allclose(ours.log_prob(x_ours), ref.logpdf(x64), **TOL[dtype])
        np.testing.assert_allclose(ours.cdf(x_ours), ref.cdf(x64), **CDF_TOL[dtype])
        np.testing.assert_allclose(ours.entropy(), ref.entropy(), **TOL[dtype])
        np.testing.assert_allclose(ours.mean(), ref.mean(), **TOL[dtype])
        np.testing.assert_allclose(ours.variance(), ref.var(), rtol=TOL[dtype]["rtol"] * 10)
        np.testing.assert_allclose(ours.stddev(), ref.std(), rtol=TOL[dtype]["rtol"] * 10)
        assert ours.log_prob(x_ours).dtype == jnp.dtype(dtype)

    check()


@pytest.mark.parametrize("case", UNIVARIATE, ids=IDS)
def test_univariate_samples_against_scipy(case: Case):
    """KS test at alpha = 1e-3 and the sample mean within 5 standard errors (fixed key)."""
    n = 20_000
    ours, ref = case.both("float64", **case.nominal)
    x = np.asarray(jax.jit(lambda k: ours.rsample(k, (n,)))(jax.random.key(1)))
    assert x.shape == (n,) and np.all(np.isfinite(x))
    assert st.kstest(x, ref.cdf).pvalue > 1e-3
    assert abs(x.mean() - ref.mean()) < 5 * ref.std() / np.sqrt(n)


def test_modes_against_closed_forms():
    np.testing.assert_allclose(rp.Normal(1.5, 2.0).mode(), 1.5)
    np.testing.assert_allclose(rp.Gumbel(0.3, 2.0).mode(), 0.3)
    np.testing.assert_allclose(rp.LogNormal(0.2, 0.5).mode(), np.exp(0.2 - 0.25))
    np.testing.assert_allclose(rp.Gamma(3.0, 2.0).mode(), 1.0)
    np.testing.assert_allclose(rp.Gamma(0.5, 2.0).mode(), 0.0)
    np.testing.assert_allclose(rp.Beta(3.0, 2.0).mode(), 2.0 / 3.0)
    np.testing.assert_allclose(rp.Beta(0.5, 2.0).mode(), 0.0)
    np.testing.assert_allclose(rp.Dirichlet(np.array([2.0, 3.0, 5.0])).mode(), [1 / 7, 2 / 7, 4 / 7])
    # The mode maximises the density.
    for d in [rp.Gumbel(0.3, 2.0), rp.LogNormal(0.2, 0.5), rp.Gamma(3.0, 2.0), rp.Beta(3.0, 2.0)]:
        m = d.mode()
        assert d.log_prob(m) >= d.log_prob(m * 1.01) and d.log_prob(m) >= d.log_prob(m * 0.99)


# --- multivariate ---------------------------------------------------------------------------


def random_tril(rng, d):
    tril = np.tril(rng.normal(size=(d, d)))
    np.fill_diagonal(tril, np.abs(np.diag(tril)) + 0.3)
    return tril


@settings(max_examples=8)
@given(seed=hs.integers(0, 10_000), d=hs.integers(1, 4))
def test_multivariate_normal_against_scipy(seed, d):
    rng = np.random.default_rng(seed)
    loc, tril = rng.normal(size=d) * 3, random_tril(rng, d)
    ref = st.multivariate_normal(loc, tril @ tril.T)
    x = ref.rvs(size=7, random_state=rng).reshape(7, d)
    for dtype, tol in TOL.items():
        ours = rp.MultivariateNormal(np.asarray(loc, dtype), np.asarray(tril, dtype))
        np.testing.assert_allclose(
            ours.log_prob(jnp.asarray(x, dtype)), ref.logpdf(x), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10
        )
        np.testing.assert_allclose(ours.entropy(), ref.entropy(), **tol)
        np.testing.assert_allclose(ours.covariance(), tril @ tril.T, **tol)
        np.testing.assert_allclose(ours.variance(), np.diag(tril @ tril.T), **tol)


def test_multivariate_normal_batched_log_prob_and_samples():
    rng = np.random.default_rng(3)
    locs = rng.normal(size=(4, 3))
    trils = np.stack([random_tril(rng, 3) for _ in range(4)])
    d = rp.MultivariateNormal(locs, trils)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    x = d.rsample(jax.random.key(0), (5000,))
    assert x.shape == (5000, 4, 3)
    lp = d.log_prob(x)
    ref = np.stack(
        [st.multivariate_normal(locs[i], trils[i] @ trils[i].T).logpdf(np.asarray(x[:, i])) for i in range(4)], 1
    )
    np.testing.assert_allclose(lp, ref, rtol=1e-9)
    # Projections of the samples on a direction are Normal: KS against the exact marginal.
    w = np.array([0.3, -1.0, 0.5])
    for i in range(4):
        cov = trils[i] @ trils[i].T
        proj = np.asarray(x[:, i]) @ w
        assert st.kstest(proj, st.norm(locs[i] @ w, np.sqrt(w @ cov @ w)).cdf).pvalue > 1e-3


def test_multivariate_normal_diag_matches_full():
    loc, scale = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.0, 2.5])
    diag, full = rp.MultivariateNormalDiag(loc, scale), rp.MultivariateNormal(loc, np.diag(scale))
    x = full.rsample(jax.random.key(2), (11,))
    np.testing.assert_allclose(diag.log_prob(x), full.log_prob(x), rtol=1e-12)
    np.testing.assert_allclose(diag.entropy(), full.entropy(), rtol=1e-12)
    assert diag.event_shape == (3,) and diag.batch_shape == ()


@settings(max_examples=8)
@given(seed=hs.integers(0, 10_000), k=hs.integers(2, 4))
def test_dirichlet_against_scipy(seed, k):
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.2, 20, size=k)
    ref = st.dirichlet(alpha)
    x = np.clip(ref.rvs(size=5, random_state=rng), 1e-12, None)
    x = x / x.sum(-1, keepdims=True)
    for dtype, tol in TOL.items():
        ours = rp.Dirichlet(np.asarray(alpha, dtype))
        np.testing.assert_allclose(
            ours.log_prob(jnp.asarray(x, dtype)), ref.logpdf(x.T), rtol=tol["rtol"] * 10, atol=tol["atol"] * 50
        )
        np.testing.assert_allclose(ours.entropy(), ref.entropy(), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
        np.testing.assert_allclose(ours.mean(), ref.mean(), **tol)
        np.testing.assert_allclose(ours.variance(), ref.var(), rtol=tol["rtol"] * 10)


def test_dirichlet_samples_marginals_are_beta():
    alpha = np.array([0.5, 2.0, 4.0])
    x = np.asarray(rp.Dirichlet(alpha).rsample(jax.random.key(4), (20_000,)))
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-12)
    for i, a in enumerate(alpha):
        assert st.kstest(x[:, i], st.beta(a, alpha.sum() - a).cdf).pvalue > 1e-3


def test_small_concentrations_do_not_underflow_in_the_fused_path():
    """Gamma(0.01) draws underflow to 0 in float32; the fused log-density stays finite because the
    draw is made in log space."""
    for d in [
        rp.Gamma(np.float32(0.01), np.float32(1.0)),
        rp.Beta(np.float32(0.01), np.float32(0.01)),
        rp.Dirichlet(np.full(3, 0.01, np.float32)),
    ]:
        _, lp = d.rsample_and_log_prob(jax.random.key(0), (1000,))
        assert np.all(np.isfinite(lp)), type(d).__name__


@pytest.mark.parametrize("case", UNIVARIATE, ids=IDS)
def test_fused_log_prob_equals_log_prob_of_the_sample(case: Case):
    ours, _ = case.both("float64", **case.nominal)
    x, lp = ours.rsample_and_log_prob(jax.random.key(5), (100,))
    np.testing.assert_allclose(lp, ours.log_prob(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(x, ours.rsample(jax.random.key(5), (100,)))
    np.testing.assert_array_equal(x, ours.sample(jax.random.key(5), (100,)))

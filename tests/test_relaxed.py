"""Continuous relaxations: RelaxedBernoulli (binary Concrete), RelaxedOneHotCategorical
(Concrete / Gumbel-Softmax) and straight-through.

References: the exact CDF of the binary Concrete, its closed-form density and the Concrete density of
Maddison et al. (2017) written out in numpy float64, scipy quadrature, and the Gumbel-max identity.

Speed: compiling a program that draws random numbers costs about a second on a small CPU, so the
sampling tests share a few compiled, cached draws (one per family and dtype): a batch of
(temperature, logits) pairs, drawn once, each test checking its own property on it.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from reparam.distributions import RelaxedBernoulli, RelaxedOneHotCategorical, hard_forward_soft_gradient

ALPHA = 1e-3
N = 20000  # draws per batch member


def arr(x, dtype):
    return np.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Independent references in numpy float64.


def binary_concrete_cdf(t, temperature, logits):
    """P(Y <= t) = sigmoid(T logit(t) - logits)."""
    t = np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):
        return scipy.special.expit(temperature * (np.log(t) - np.log1p(-t)) - logits)


def binary_concrete_density(y, temperature, logits):
    """p(y) = T a y^(-T-1) (1-y)^(-T-1) / (a y^(-T) + (1-y)^(-T))^2, a = exp(logits)."""
    y = np.asarray(y, np.float64)
    t, a = temperature, np.exp(logits)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf at saturated y = 0 or 1
        return t * a * y ** (-t - 1) * (1 - y) ** (-t - 1) / (a * y ** (-t) + (1 - y) ** (-t)) ** 2


def concrete_density(y, temperature, logits):
    """Maddison et al. (2017), eq. (1): with alpha = exp(logits),
    p(y) = (K-1)! T^(K-1) prod_k (alpha_k y_k^(-T-1)) / (sum_k alpha_k y_k^(-T))^K."""
    y = np.asarray(y, np.float64)
    alpha = np.exp(np.asarray(logits, np.float64))
    t = np.asarray(temperature, np.float64)[..., None]
    k = y.shape[-1]
    numerator = np.prod(alpha * y ** (-t - 1), -1)
    denominator = np.sum(alpha * y ** (-t), -1) ** k
    return math.factorial(k - 1) * t[..., 0] ** (k - 1) * numerator / denominator


def test_references_agree():
    """The two numpy references are the same density for K = 2 (sanity of the oracles)."""
    y = np.linspace(0.01, 0.99, 99)
    for temperature, logit in [(0.5, 1.0), (2.0, -0.7)]:
        two = np.stack([y, 1 - y], -1)
        np.testing.assert_allclose(
            concrete_density(two, temperature, [logit, 0.0]), binary_concrete_density(y, temperature, logit), rtol=1e-12
        )


# ---------------------------------------------------------------------------------------------
# Compiled entry points (parameters are arguments: one compile per shape and dtype).


@jax.jit
def rb_log_prob(temperature, logits, y):
    return RelaxedBernoulli(temperature, logits).log_prob(y)


@jax.jit
def roc_log_prob(temperature, logits, y):
    return RelaxedOneHotCategorical(temperature, logits).log_prob(y)


def draws_of(cls, temperature, logits, key):
    """Every sampling path of `cls`, relaxed and straight-through, from the same key."""
    soft = cls(temperature, logits)
    st = cls(temperature, logits, straight_through=True)
    soft_y, soft_lp = soft.rsample_and_log_prob(key, (N,))
    st_y, st_lp = st.rsample_and_log_prob(key, (N,))
    # gradient w.r.t. the logits of sum(w * sample), relaxed and straight-through, same key
    w = jnp.cos(jnp.arange(soft_y.size)).reshape(soft_y.shape).astype(soft_y.dtype)

    def objective(lgt, straight):
        return jnp.sum(w * cls(temperature, lgt, straight_through=straight).rsample(key, (N,)))

    soft_value, soft_grad = jax.value_and_grad(objective)(logits, False)
    st_value, st_grad = jax.value_and_grad(objective)(logits, True)
    return dict(
        rsample=soft.rsample(key, (N,)),
        sample=soft.sample(key, (N,)),
        fused_y=soft_y,
        fused_lp=soft_lp,
        st_rsample=st.rsample(key, (N,)),
        st_fused_y=st_y,
        st_fused_lp=st_lp,
        soft_value=soft_value,
        soft_grad=soft_grad,
        st_value=st_value,
        st_grad=st_grad,
    )


# RelaxedBernoulli: a batch of three (temperature, logits) pairs.
RB_T = np.array([0.5, 2.0, 0.3])
RB_L = np.array([0.7, -1.0, 0.0])


@functools.cache
def rb_draws(dtype):
    out = jax.jit(functools.partial(draws_of, RelaxedBernoulli))(arr(RB_T, dtype), arr(RB_L, dtype), jax.random.key(2))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["log_prob_of_rsample"] = np.asarray(rb_log_prob(arr(RB_T, dtype), arr(RB_L, dtype), out["rsample"]))
    return out


# RelaxedOneHotCategorical: the same logits at five temperatures, K = 4.
ROC_T = np.array([2.0, 1.0, 0.5, 0.1, 0.01])
ROC_L = np.broadcast_to(np.array([1.0, 0.0, -1.0, 0.5]), (5, 4)).copy()


@functools.cache
def roc_draws(dtype):
    out = jax.jit(functools.partial(draws_of, RelaxedOneHotCategorical))(
        arr(ROC_T, dtype), arr(ROC_L, dtype), jax.random.key(1)
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    out["log_prob_of_rsample"] = np.asarray(roc_log_prob(arr(ROC_T, dtype), arr(ROC_L, dtype), out["rsample"]))
    return out


# ---------------------------------------------------------------------------------------------
# RelaxedBernoulli.


def test_relaxed_bernoulli_samples_match_exact_cdf(dtype):
    d = rb_draws(dtype)
    y = d["rsample"]
    assert y.shape == (N, 3) and y.dtype == np.dtype(dtype)
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_array_equal(d["sample"], y)  # the same draw, gradients stopped
    np.testing.assert_array_equal(d["fused_y"], y)
    for j in range(3):
        cdf = functools.partial(binary_concrete_cdf, temperature=RB_T[j], logits=RB_L[j])
        result = scipy.stats.kstest(rounding_aware_pit(y[:, j], cdf, seed=j), "uniform")
        assert result.pvalue > ALPHA, (j, result)


def rounding_aware_pit(samples, cdf, seed):
    """Probability-integral transform of float samples, drawn uniformly over the CDF of each
    sample's rounding interval (a randomized PIT). Uniform on [0, 1] exactly when the samples are
    correctly distributed draws rounded to their dtype. A plain KS test would charge the float32
    rounding of sigmoid to exactly 1.0 (0.7% of the mass at T = 0.3) to the sampler."""
    y = np.asarray(samples)
    below = np.nextafter(y, np.array(-np.inf, y.dtype)).astype(np.float64)
    above = np.nextafter(y, np.array(np.inf, y.dtype)).astype(np.float64)
    y64 = y.astype(np.float64)
    lo = cdf(np.clip((y64 + below) / 2, 0.0, 1.0))
    hi = cdf(np.clip((y64 + above) / 2, 0.0, 1.0))
    return lo + np.random.default_rng(seed).uniform(size=y.shape) * (hi - lo)


def test_rounding_aware_pit_detects_a_wrong_temperature():
    """The KS check above has power: samples from T = 0.5 fail against the T = 0.55 CDF."""
    y = rb_draws("float32")["rsample"][:, 0]
    cdf = functools.partial(binary_concrete_cdf, temperature=0.55, logits=RB_L[0])
    assert scipy.stats.kstest(rounding_aware_pit(y, cdf, seed=0), "uniform").pvalue < ALPHA


@pytest.mark.parametrize("temperature,logits", [(0.3, 0.5), (0.5, -2.0), (1.0, 0.0), (2.0, 1.5)])
def test_relaxed_bernoulli_log_prob_matches_closed_form(temperature, logits, dtype):
    y = arr(np.linspace(0.01, 0.99, 99), dtype)
    got = rb_log_prob(arr(temperature, dtype), arr(logits, dtype), y)
    assert got.dtype == np.dtype(dtype)
    expected = np.log(binary_concrete_density(y.astype(np.float64), temperature, logits))
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got, expected, **tol)
    # outside [0, 1]: -inf, never NaN
    outside = arr(np.concatenate([np.linspace(-1.0, -0.01, 50), np.linspace(1.01, 2.0, 49)]), dtype)
    assert np.all(np.asarray(rb_log_prob(arr(temperature, dtype), arr(logits, dtype), outside)) == -np.inf)


@pytest.mark.parametrize("temperature,logits", [(0.3, 0.5), (0.3, -1.5), (1.0, 2.0), (2.0, 0.0), (2.0, -3.0)])
def test_relaxed_bernoulli_density_integrates_to_one(temperature, logits):
    def density(y):
        return float(np.exp(rb_log_prob(np.float64(temperature), np.float64(logits), np.float64(y))))

    total = sum(scipy.integrate.quad(density, a, b, limit=200, epsabs=1e-10)[0] for a, b in [(0, 0.5), (0.5, 1)])
    assert abs(total - 1.0) < 1e-6, total


def test_relaxed_bernoulli_batch_broadcast():
    dist = RelaxedBernoulli(np.array([0.5, 1.0, 2.0]), np.array([[0.0], [1.0]]))
    assert dist.batch_shape == (2, 3) and dist.event_shape == ()
    np.testing.assert_allclose(dist.temperature, np.broadcast_to([0.5, 1.0, 2.0], (2, 3)))
    np.testing.assert_allclose(dist.logits, np.broadcast_to([[0.0], [1.0]], (2, 3)), atol=1e-15)
    y = np.linspace(0.1, 0.9, 5)[:, None, None]
    lp = np.asarray(rb_log_prob(np.array([0.5, 1.0, 2.0]), np.array([[0.0], [1.0]]), y))
    assert lp.shape == (5, 2, 3)
    np.testing.assert_allclose(lp[:, 1, 2], np.log(binary_concrete_density(y[:, 0, 0], 2.0, 1.0)), rtol=1e-10)
    assert jax.eval_shape(lambda k: dist.rsample(k, (7,)), jax.random.key(0)).shape == (7, 2, 3)


def test_relaxed_bernoulli_rsample_and_log_prob_consistent(dtype):
    d = rb_draws(dtype)
    y64 = d["fused_y"].astype(np.float64)
    lp = d["fused_lp"]
    assert lp.shape == (N, 3) and lp.dtype == np.dtype(dtype)
    inner = (y64 > 1e-4) & (y64 < 1 - 1e-4)  # away from float saturation (T = 0.3 saturates often)
    assert inner.mean() > 0.8
    ref = np.log(binary_concrete_density(y64, RB_T, RB_L))
    tol = 2e-3 if dtype == "float32" else 1e-8
    np.testing.assert_allclose(lp.astype(np.float64)[inner], ref[inner], rtol=tol, atol=tol)
    np.testing.assert_allclose(d["log_prob_of_rsample"].astype(np.float64)[inner], ref[inner], rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# RelaxedOneHotCategorical.


def test_relaxed_one_hot_k2_equals_relaxed_bernoulli(dtype):
    y = np.linspace(0.02, 0.98, 49)
    for temperature, logit in [(0.4, 1.3), (1.0, -0.5), (2.5, 2.0)]:
        two = arr(np.stack([y, 1 - y], -1), dtype)
        cat = roc_log_prob(arr(temperature, dtype), arr([logit, 0.0], dtype), two)
        bern = rb_log_prob(arr(temperature, dtype), arr(logit, dtype), arr(y, dtype))
        tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(cat, bern, **tol)
        # and both equal the independent closed form
        np.testing.assert_allclose(cat, np.log(binary_concrete_density(y, temperature, logit)), **tol)


def test_relaxed_one_hot_log_prob_matches_maddison(dtype):
    rng = np.random.default_rng(0)
    temperature = np.array([0.5, 1.0, 2.0])
    logits = rng.normal(size=(3, 4))
    dist = RelaxedOneHotCategorical(arr(temperature, dtype), arr(logits, dtype))
    assert dist.batch_shape == (3,) and dist.event_shape == (4,)
    y = rng.dirichlet(np.ones(4), size=(20, 3))
    y = np.clip(y, 1e-3, None)
    y /= y.sum(-1, keepdims=True)
    got = roc_log_prob(arr(temperature, dtype), arr(logits, dtype), arr(y, dtype))
    assert got.shape == (20, 3) and got.dtype == np.dtype(dtype)
    expected = np.log(concrete_density(y, temperature, logits))
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got, expected, **tol)
    # a coordinate outside (0, 1]: -inf, never NaN
    bad = np.broadcast_to(arr([[0.5, 0.5, 0.0, 0.0], [1.5, -0.5, 0.0, 0.0]], dtype)[:, None, :], (2, 3, 4))
    out = np.asarray(roc_log_prob(arr(temperature, dtype), arr(logits, dtype), np.concatenate([bad] * 10)))
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("temperature", [1.0, 1.5])
def test_relaxed_one_hot_k3_density_integrates_to_one(temperature):
    logits = np.array([0.5, -0.3, 0.1])
    t = np.float64(temperature)

    def density(y2, y1):
        return float(np.exp(roc_log_prob(t, logits, np.array([y1, y2, 1.0 - y1 - y2]))))

    # (below T = 1 the density has y^((K-1)T - 1) edges that make adaptive quadrature slow)
    total, _ = scipy.integrate.dblquad(density, 0, 1, 0, lambda y1: 1 - y1, epsabs=3e-4, epsrel=3e-4)
    assert abs(total - 1.0) < 1e-3, total


def test_relaxed_one_hot_rsample_and_log_prob_scores_own_sample(dtype):
    d = roc_draws(dtype)
    y, lp = d["fused_y"], d["fused_lp"]
    assert y.shape == (N, 5, 4) and lp.shape == (N, 5)
    assert y.dtype == np.dtype(dtype) and lp.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, d["rsample"])
    np.testing.assert_allclose(np.sum(y.astype(np.float64), -1), 1.0, rtol=1e-5 if dtype == "float32" else 1e-12)
    # compare on the rows with T >= 0.5 and where no coordinate has rounded to (nearly) zero
    y64 = y[:, :3].astype(np.float64)
    lp64 = lp[:, :3].astype(np.float64)
    inner = np.all(y64 > 1e-5, -1)
    assert inner.mean() > 0.9
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == "float32" else dict(rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(d["log_prob_of_rsample"][:, :3][inner], lp64[inner], **tol)
    ref = np.log(concrete_density(y64 / y64.sum(-1, keepdims=True), ROC_T[:3], ROC_L[:3]))
    np.testing.assert_allclose(lp64[inner], ref[inner], **tol)


def test_argmax_is_categorical_gumbel_max(dtype):
    """argmax softmax((l + g) / T) = argmax (l + g) ~ Categorical(softmax(l)) at every temperature."""
    y = roc_draws(dtype)["rsample"]
    expected = N * scipy.special.softmax(ROC_L[0])
    for i in range(len(ROC_T)):
        counts = np.bincount(np.argmax(y[:, i], -1), minlength=4)
        result = scipy.stats.chisquare(counts, expected)
        assert result.pvalue > ALPHA, (ROC_T[i], counts, expected)


def test_low_temperature_approaches_one_hot(dtype):
    y = roc_draws(dtype)["rsample"]
    means = np.mean(np.max(y.astype(np.float64), -1), 0)  # per temperature, in ROC_T order 2 .. 0.01
    assert np.all(np.diff(means) > 0), means
    assert means[0] < 0.75 and means[-1] > 0.99, means


def test_relaxed_one_hot_masked_category_log_prob():
    """With category 1 masked, y_1 = 0 and (y_0, y_2) is a K = 2 Concrete over the other logits."""
    logits = np.array([0.3, -np.inf, -0.4])
    y, lp = jax.jit(lambda k: RelaxedOneHotCategorical(0.8, logits).rsample_and_log_prob(k, (200,)))(jax.random.key(8))
    y, lp = np.asarray(y), np.asarray(lp)
    assert np.all(y[:, 1] == 0)  # the masked category never gets mass (this part holds)
    expected = np.log(binary_concrete_density(y[:, 0], 0.8, 0.3 - (-0.4)))
    np.testing.assert_allclose(lp, expected, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# Straight-through.


def test_straight_through_helper():
    soft = jnp.array([0.2, 0.7, 0.1])
    hard = jnp.array([0.0, 1.0, 0.0])
    np.testing.assert_array_equal(hard_forward_soft_gradient(soft, hard), hard)
    w = jnp.array([1.0, 2.0, 3.0])
    # the gradient is that of `soft`: d/ds sum(w * st(s, hard)) = w
    np.testing.assert_array_equal(jax.grad(lambda s: jnp.sum(w * hard_forward_soft_gradient(s, hard)))(soft), w)


def test_straight_through_one_hot_values_are_exact(dtype):
    d = roc_draws(dtype)
    y_st = d["st_rsample"]
    assert y_st.dtype == np.dtype(dtype) and y_st.shape == (N, 5, 4)
    assert np.all((y_st == 0) | (y_st == 1))
    assert np.all(y_st.sum(-1) == 1)
    # the hot coordinate is the argmax of the relaxed sample drawn with the same key
    np.testing.assert_array_equal(np.argmax(y_st, -1), np.argmax(d["rsample"], -1))
    # rsample_and_log_prob: one-hot value, log-density that of the relaxed sample it came from
    np.testing.assert_array_equal(d["st_fused_y"], y_st)
    np.testing.assert_allclose(d["st_fused_lp"], d["fused_lp"], rtol=1e-6)


def test_straight_through_bernoulli_values_are_exact(dtype):
    d = rb_draws(dtype)
    y_st = d["st_rsample"]
    assert y_st.dtype == np.dtype(dtype)
    assert np.all((y_st == 0) | (y_st == 1))
    np.testing.assert_array_equal(y_st, (d["rsample"] > 0.5).astype(dtype))
    np.testing.assert_array_equal(d["st_fused_y"], y_st)
    np.testing.assert_allclose(d["st_fused_lp"], d["fused_lp"], rtol=1e-6)


@pytest.mark.parametrize("family", ["bernoulli", "one_hot"])
def test_straight_through_gradient_equals_relaxed_gradient(family, dtype):
    d = rb_draws(dtype) if family == "bernoulli" else roc_draws(dtype)
    g_st, g_soft = d["st_grad"].astype(np.float64), d["soft_grad"].astype(np.float64)
    assert np.all(np.isfinite(g_st)) and np.all(np.abs(g_soft) > 0)
    rtol = 1e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(g_st, g_soft, rtol=rtol, atol=rtol * np.max(np.abs(g_soft)))
    # the forward values differ (hard vs relaxed), so the test can tell the two paths apart
    assert d["st_value"] != d["soft_value"]


# ---------------------------------------------------------------------------------------------
# Pathwise gradient.


def expected_relaxed_bernoulli(logits, temperature):
    """E[Y] = integral of sigmoid((l + x) / T) * logistic_pdf(x) dx, by quadrature."""
    value, _ = scipy.integrate.quad(
        lambda x: scipy.special.expit((logits + x) / temperature) * scipy.stats.logistic.pdf(x),
        -np.inf,
        np.inf,
        epsabs=1e-13,
        epsrel=1e-13,
        limit=200,
    )
    return value


def test_pathwise_gradient_matches_derivative_of_expectation(dtype):
    """d/dl E[Y] by Monte Carlo of per-sample pathwise gradients vs a finite difference of the
    exact expectation; two (T, l) pairs as a batch (each sample depends only on its own logit)."""
    temperature, logits = np.array([0.5, 2.0]), np.array([0.3, -1.0])
    h = 1e-4
    exact = np.array(
        [
            (expected_relaxed_bernoulli(l + h, t) - expected_relaxed_bernoulli(l - h, t)) / (2 * h)
            for t, l in zip(temperature, logits, strict=True)
        ]
    )
    n = N
    keys = jax.random.split(jax.random.key(7), n)

    def total(lgt, key):
        return jnp.sum(RelaxedBernoulli(arr(temperature, dtype), lgt).rsample(key))

    grads = jax.jit(jax.vmap(jax.grad(total), in_axes=(None, 0)))(arr(logits, dtype), keys)
    grads = np.asarray(grads, np.float64)
    assert grads.shape == (n, 2) and np.all(np.isfinite(grads))
    mean, se = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(mean - exact) < 5 * se), (mean, se, exact)
    assert np.all(se < 0.05 * np.abs(exact))  # the check has power


# ---------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize("temperature", [0.0, -1.0, np.nan, np.inf])
def test_invalid_temperature_raises(temperature):
    with pytest.raises(ValueError, match="temperature"):
        RelaxedBernoulli(temperature, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        RelaxedOneHotCategorical(temperature, np.zeros(3))


def test_invalid_temperature_in_batch_raises():
    with pytest.raises(ValueError, match="temperature"):
        RelaxedOneHotCategorical(np.array([1.0, 0.0]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="temperature"):
        RelaxedBernoulli(np.array([1.0, -0.5]), np.zeros(2))


@pytest.mark.parametrize("logits", [np.float64(0.5), np.zeros(1)])
def test_relaxed_one_hot_needs_a_category_axis(logits):
    with pytest.raises(ValueError):
        RelaxedOneHotCategorical(1.0, logits)


def test_relaxed_nan_logits_raise():
    with pytest.raises(ValueError):
        RelaxedOneHotCategorical(1.0, np.array([0.0, np.nan]))
    with pytest.raises(ValueError):
        RelaxedBernoulli(1.0, np.nan)


def test_invalid_temperature_raises_under_jit():
    y = np.array([0.2, 0.3, 0.5])
    assert np.isfinite(roc_log_prob(np.float64(1.0), np.zeros(3), y))
    with pytest.raises(Exception, match="temperature"):
        jax.block_until_ready(roc_log_prob(np.float64(0.0), np.zeros(3), y))
    with pytest.raises(Exception, match="temperature"):
        jax.block_until_ready(rb_log_prob(np.float64(-1.0), np.float64(0.0), np.float64(0.5)))

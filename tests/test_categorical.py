"""Discrete distributions: Categorical and Bernoulli (no pathwise sampler).

References: scipy.stats.bernoulli, log-softmax and scipy.stats.entropy in numpy float64, and
chi-square goodness of fit for the sampler. The sampling tests share one compiled, cached draw per
dtype (compiling a random-number program costs about a second on a small CPU).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from reparam.distributions import Bernoulli, Categorical, NotReparameterizedError

ALPHA = 1e-3
N = 50000

# A batch of four categoricals over K = 3; row 2 has a masked (-inf) category.
CAT_L = np.array([[0.5, -1.0, 1.2], [0.0, 0.0, 0.0], [2.0, -np.inf, 0.3], [-3.0, 1.0, 0.0]])
BERN_L = np.array([-2.0, 0.0, 1.5])


def arr(x, dtype):
    return np.asarray(x, dtype=dtype)


def log_softmax64(logits):
    logits = np.asarray(logits, np.float64)
    with np.errstate(invalid="ignore"):
        shifted = logits - np.max(logits, -1, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), -1, keepdims=True))


@functools.cache
def draws(dtype):
    """N draws from Categorical(CAT_L) and Bernoulli(BERN_L), by `sample` and by
    `sample_and_log_prob`, and the gradient of the summed log-probabilities w.r.t. the logits."""

    @jax.jit
    def run(cat_logits, bern_logits, key):
        k_cat, k_bern = jax.random.split(key)

        def summed_log_prob(cl, bl):
            kc, lpc = Categorical(cl).sample_and_log_prob(k_cat, (N,))
            kb, lpb = Bernoulli(bl).sample_and_log_prob(k_bern, (N,))
            return jnp.sum(lpc) + jnp.sum(lpb), (kc, lpc, kb, lpb)

        (_, (kc, lpc, kb, lpb)), (g_cat, g_bern) = jax.value_and_grad(summed_log_prob, argnums=(0, 1), has_aux=True)(
            cat_logits, bern_logits
        )
        return dict(
            cat=Categorical(cat_logits).sample(k_cat, (N,)),
            cat_fused=kc,
            cat_lp=lpc,
            cat_grad=g_cat,
            bern=Bernoulli(bern_logits).sample(k_bern, (N,)),
            bern_fused=kb,
            bern_lp=lpb,
            bern_grad=g_bern,
        )

    out = run(arr(CAT_L, dtype), arr(BERN_L, dtype), jax.random.key(0))
    return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# No pathwise sampler.


@pytest.mark.parametrize("dist", [Categorical(np.zeros(3)), Bernoulli(0.3)], ids=["categorical", "bernoulli"])
def test_rsample_raises_not_reparameterized(dist):
    assert not dist.reparameterized
    with pytest.raises(NotReparameterizedError) as info:
        dist.rsample(jax.random.key(0))
    message = str(info.value)
    assert "score" in message and "Relaxed" in message
    with pytest.raises(NotReparameterizedError):
        dist.rsample_and_log_prob(jax.random.key(0), (2,))


# ---------------------------------------------------------------------------------------------
# Bernoulli against scipy.stats.bernoulli.

BERN_GRID = np.array([-20.0, -5.0, -1.0, 0.0, 0.3, 4.0, 20.0])
BERN_X = np.array([0.0, 1.0, -1.0, 0.5, 2.0])  # two in the support, three outside


@jax.jit
def bernoulli_report(logits, xs):
    """Every Bernoulli method at `logits` (batch) and `xs` (one row of values per x), compiled once."""
    d = Bernoulli(logits)
    v = xs[:, None]
    return dict(
        log_prob=d.log_prob(v),
        cdf=d.cdf(v),
        probs=d.probs,
        mean=d.mean(),
        variance=d.variance(),
        stddev=d.stddev(),
        entropy=d.entropy(),
        mode=d.mode(),
    )


def test_bernoulli_matches_scipy(dtype):
    assert Bernoulli(arr(BERN_GRID, dtype)).batch_shape == (7,)
    r = {k: np.asarray(v) for k, v in bernoulli_report(arr(BERN_GRID, dtype), arr(BERN_X, dtype)).items()}
    assert all(v.dtype == np.dtype(dtype) for v in r.values())
    p = scipy.special.expit(BERN_GRID)
    ref = scipy.stats.bernoulli(p)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == "float32" else dict(rtol=1e-12, atol=1e-15)
    # scipy.stats computes log(1 - p) from p, which loses digits at |logits| = 20 (it is the
    # library that is exact there): scipy on the moderate logits, log_expit on all of them
    moderate = np.abs(BERN_GRID) <= 5
    for i, x in enumerate((0, 1)):
        np.testing.assert_allclose(r["log_prob"][i][moderate], ref.logpmf(x)[moderate], **tol)
        exact = scipy.special.log_expit(BERN_GRID if x == 1 else -BERN_GRID)
        np.testing.assert_allclose(r["log_prob"][i], exact, **tol)
    np.testing.assert_allclose(r["probs"], p, **tol)
    np.testing.assert_allclose(r["mean"], ref.mean(), **tol)
    # entropy in nats, -p log p - (1 - p) log(1 - p), computed stably for the tiny-p ends
    entropy = -(p * scipy.special.log_expit(BERN_GRID) + (1 - p) * scipy.special.log_expit(-BERN_GRID))
    np.testing.assert_allclose(entropy[moderate], ref.entropy()[moderate], rtol=1e-10)
    np.testing.assert_allclose(r["entropy"], entropy, **tol)
    # variance and cdf: against scipy on the moderate logits (at |logits| = 20 both compute 1 - p
    # by cancellation; see the xfail below)
    np.testing.assert_allclose(r["variance"][moderate], ref.var()[moderate], **tol)
    np.testing.assert_allclose(r["stddev"][moderate], ref.std()[moderate], **tol)
    for i, x in enumerate(BERN_X):
        np.testing.assert_allclose(r["cdf"][i][moderate], ref.cdf(x)[moderate], **tol)
    decided = BERN_GRID != 0  # at p = 1/2 either value is a mode
    np.testing.assert_array_equal(r["mode"][decided], (p > 0.5)[decided].astype(dtype))
    assert r["mode"][~decided][0] in (0, 1)


def test_bernoulli_log_prob_out_of_support_is_minus_inf(dtype):
    log_prob = np.asarray(bernoulli_report(arr(BERN_GRID, dtype), arr(BERN_X, dtype))["log_prob"])
    assert np.all(np.isfinite(log_prob[:2]))
    assert np.all(log_prob[2:] == -np.inf), log_prob[2:]  # x = -1, 0.5, 2: -inf, never NaN


def test_bernoulli_variance_and_cdf_keep_relative_precision_float32():
    logits = np.array([17.0, 20.0, 30.0], np.float32)
    dist = Bernoulli(logits)
    q = scipy.special.expit(-logits.astype(np.float64))  # 1 - p, exactly
    np.testing.assert_allclose(dist.variance(), q * (1 - q), rtol=1e-5)
    np.testing.assert_allclose(dist.cdf(np.full(3, 0.5, np.float32)), q, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Categorical against log-softmax and scipy.stats.entropy.

CAT_K = np.array([0.0, 1.0, 2.0, -1.0, 3.0, 0.5, 2.5, 1e9])  # three in the support, five outside
CAT_K_INT = np.array([0, 1, 2, -1, 3, 100])  # integer values too


@jax.jit
def categorical_report(logits, ks, ks_int):
    """Every Categorical method for a (3, K) batch, values broadcast over the batch explicitly."""
    d = Categorical(logits)
    return dict(
        log_prob=d.log_prob(jnp.broadcast_to(ks[:, None], ks.shape + d.batch_shape)),
        log_prob_int=d.log_prob(jnp.broadcast_to(ks_int[:, None], ks_int.shape + d.batch_shape)),
        probs=d.probs,
        entropy=d.entropy(),
        mode=d.mode(),
    )


def categorical_values(logits, dtype):
    r = categorical_report(arr(logits, dtype), arr(CAT_K, dtype), CAT_K_INT)
    return {k: np.asarray(v) for k, v in r.items()}


def test_categorical_log_prob_entropy_mode(dtype):
    logits = CAT_L[[0, 1, 3]]
    dist = Categorical(arr(logits, dtype))
    assert dist.batch_shape == (3,) and dist.event_shape == () and dist.num_categories == 3
    r = categorical_values(logits, dtype)
    assert r["log_prob"].dtype == np.dtype(dtype) and r["entropy"].dtype == np.dtype(dtype)
    expected = log_softmax64(logits)  # (3 batch, 3 categories)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r["log_prob"][:3], expected.T, **tol)  # float-valued integers
    np.testing.assert_allclose(r["log_prob_int"][:3], expected.T, **tol)  # integers
    np.testing.assert_allclose(np.sum(r["probs"].astype(np.float64), -1), 1.0, **tol)
    np.testing.assert_allclose(r["entropy"], scipy.stats.entropy(np.exp(expected), axis=-1), **tol)
    np.testing.assert_array_equal(r["mode"], [2, 0, 1])  # row 1 is a three-way tie: the first
    np.testing.assert_array_equal(r["mode"], np.argmax(logits, -1))


def test_categorical_log_prob_invariant_to_logit_shift():
    a = categorical_values(CAT_L[[0, 1, 3]], "float64")
    b = categorical_values(CAT_L[[0, 1, 3]] + 100.0, "float64")
    np.testing.assert_allclose(a["log_prob"][:3], b["log_prob"][:3], rtol=1e-12)
    np.testing.assert_allclose(a["entropy"], b["entropy"], rtol=1e-12)


def test_categorical_out_of_support_is_minus_inf(dtype):
    r = categorical_values(CAT_L[[0, 1, 3]], dtype)
    assert np.all(r["log_prob"][3:] == -np.inf), r["log_prob"][3:]  # k = -1, K, 0.5, 2.5, 1e9
    assert np.all(r["log_prob_int"][3:] == -np.inf), r["log_prob_int"][3:]  # k = -1, K, 100


# ---------------------------------------------------------------------------------------------
# Sampling.


def test_categorical_sample_frequencies_chi_square(dtype):
    d = draws(dtype)
    k = d["cat"]
    assert k.shape == (N, 4) and np.issubdtype(k.dtype, np.integer)
    np.testing.assert_array_equal(d["cat_fused"], k)
    probs = np.exp(log_softmax64(CAT_L))
    for row in range(4):
        counts = np.bincount(k[:, row], minlength=3)
        assert counts.shape == (3,)  # nothing outside {0, 1, 2}
        support = probs[row] > 0
        result = scipy.stats.chisquare(counts[support], N * probs[row][support])
        assert result.pvalue > ALPHA, (row, counts, N * probs[row])


def test_bernoulli_sample_frequencies_chi_square(dtype):
    d = draws(dtype)
    x = d["bern"]
    assert x.shape == (N, 3) and x.dtype == np.dtype(dtype)
    assert np.all((x == 0) | (x == 1))
    np.testing.assert_array_equal(d["bern_fused"], x)
    p = scipy.special.expit(BERN_L)
    for j in range(3):
        ones = int(x[:, j].sum())
        result = scipy.stats.chisquare([N - ones, ones], [N * (1 - p[j]), N * p[j]])
        assert result.pvalue > ALPHA, (j, ones, N * p[j])


def test_masked_category_never_sampled_and_entropy_finite(dtype):
    d = draws(dtype)
    assert not np.any(d["cat"][:, 2] == 1)
    r = categorical_values(CAT_L[[2, 2, 2]], dtype)  # the masked row, as a batch of three
    assert np.all(r["log_prob_int"][1] == -np.inf)
    assert np.all(r["probs"][:, 1] == 0.0)
    assert np.all(np.isfinite(r["entropy"]))
    p = scipy.special.softmax([2.0, 0.3])
    np.testing.assert_allclose(r["entropy"], scipy.stats.entropy(p), rtol=1e-6)
    # the other categories' log-probabilities are those of the unmasked categorical
    np.testing.assert_allclose(r["log_prob_int"][[0, 2], 0], np.log(p), rtol=1e-6)


def test_masked_category_entropy_gradient_is_finite():
    logits = jnp.array([2.0, -jnp.inf, 0.3])
    grad = jax.jit(jax.grad(lambda lgt: Categorical(lgt).entropy()))(logits)
    assert np.all(np.isfinite(np.asarray(grad)[[0, 2]]))
    # the entropy of the unmasked pair as a function of its logits, by finite differences
    h = 1e-6

    def h2(a, b):
        return scipy.stats.entropy(scipy.special.softmax([a, b]))

    fd = [(h2(2.0 + h, 0.3) - h2(2.0 - h, 0.3)) / (2 * h), (h2(2.0, 0.3 + h) - h2(2.0, 0.3 - h)) / (2 * h)]
    np.testing.assert_allclose(np.asarray(grad)[[0, 2]], fd, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Shapes.


def test_batch_shapes_broadcast():
    """Shapes by abstract evaluation (the values are checked elsewhere), and on real draws."""
    dist = Categorical(np.zeros((4, 3)))
    assert dist.batch_shape == (4,) and dist.event_shape == ()
    key = jax.random.key(0)
    assert jax.eval_shape(lambda k: dist.sample(k, (10,)), key).shape == (10, 4)
    assert jax.eval_shape(lambda k: dist.sample(k, 10), key).shape == (10, 4)
    assert jax.eval_shape(lambda k: dist.sample(k, (2, 5)), key).shape == (2, 5, 4)
    assert jax.eval_shape(dist.log_prob, np.zeros((10, 4), int)).shape == (10, 4)
    assert jax.eval_shape(dist.entropy).shape == (4,) and jax.eval_shape(dist.mode).shape == (4,)
    # the real (N, 4) draws of the cached batch have the contract's shape, and score per element
    d = draws("float64")
    assert d["cat"].shape == (N, 4) and d["cat_lp"].shape == (N, 4)
    picked = np.take_along_axis(log_softmax64(CAT_L)[None], d["cat"][..., None], -1)[..., 0]
    np.testing.assert_allclose(d["cat_lp"], picked)
    bern = Bernoulli(np.zeros((2, 3)))
    assert bern.batch_shape == (2, 3)
    assert jax.eval_shape(lambda k: bern.sample(k, (10,)), key).shape == (10, 2, 3)
    assert jax.eval_shape(bern.log_prob, np.ones(3)).shape == (2, 3)  # value broadcasts against the batch


def test_categorical_log_prob_broadcasts_value_against_batch():
    dist = Categorical(CAT_L[[0, 1, 3]])
    got = dist.log_prob(1)
    np.testing.assert_allclose(got, log_softmax64(CAT_L[[0, 1, 3]])[:, 1], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Score-function ingredient: sample_and_log_prob is differentiable in the logits.


def test_sample_and_log_prob_gradient(dtype):
    d = draws(dtype)
    g_cat, g_bern = d["cat_grad"].astype(np.float64), d["bern_grad"].astype(np.float64)
    assert np.all(np.isfinite(g_cat)) and np.all(np.isfinite(g_bern))
    assert np.linalg.norm(g_cat) > 1 and np.linalg.norm(g_bern) > 1
    # d/dl sum_i log p(k_i) = sum_i (onehot(k_i) - softmax(l)) = counts - N p
    probs = np.exp(log_softmax64(CAT_L))
    counts = np.stack([np.bincount(d["cat"][:, r], minlength=3) for r in range(4)])
    tol = dict(rtol=1e-4, atol=0.05) if dtype == "float32" else dict(rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(g_cat, counts - N * probs, **tol)
    # d/dl sum_i log p(x_i) = sum_i (x_i - sigmoid(l))
    ones = d["bern"].astype(np.float64).sum(0)
    np.testing.assert_allclose(g_bern, ones - N * scipy.special.expit(BERN_L), **tol)


# ---------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_categorical_invalid_logits_raise(bad):
    with pytest.raises(ValueError, match="logits"):
        Categorical(np.array([0.0, bad, 1.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bernoulli_invalid_logits_raise(bad):
    with pytest.raises(ValueError, match="logits"):
        Bernoulli(np.array([0.0, bad]))


def test_categorical_scalar_logits_raise():
    with pytest.raises(ValueError):
        Categorical(np.float64(1.0))


def test_nan_logits_raise_under_jit():
    @jax.jit
    def score(logits):
        return Categorical(logits).log_prob(0)

    assert np.isfinite(score(jnp.zeros(3)))
    with pytest.raises(Exception, match="logits"):
        jax.block_until_ready(score(jnp.array([0.0, jnp.nan, 1.0])))

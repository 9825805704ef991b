"""reparam.models.uncertainty against independent references: scikit-learn's ROC AUC and Brier score,
float64 NumPy / SciPy formulas, hand-built calibration cases, a SciPy Gaussian mixture."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from reparam.models.uncertainty import (
    auroc,
    brier_score,
    classification_metrics,
    expected_calibration_error,
    mean_log_likelihood,
    mutual_information,
    predictive_entropy,
    regression_metrics,
    reliability,
)


def dirichlet(rng, shape, k, concentration=1.0):
    return rng.dirichlet(np.full(k, concentration), size=shape)


def one_line(excinfo):
    return "\n" not in str(excinfo.value)


# --- AUROC -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_matches_sklearn(ties):
    rng = np.random.default_rng(0)
    if ties:  # few distinct values: many ties within and across the two groups
        s_in, s_out = rng.integers(0, 6, 300), rng.integers(2, 8, 200)
    else:
        s_in, s_out = rng.normal(0, 1, 300), rng.normal(0.7, 1, 200)
    s_in, s_out = s_in.astype(np.float32), s_out.astype(np.float32)
    reference = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[s_in, s_out])
    value = auroc(s_in, s_out)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(float(jax.jit(auroc)(s_in, s_out)), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(float(auroc(s_in, s_out) + auroc(s_out, s_in)), 1.0, atol=1e-6)


def test_auroc_extremes():
    low, high = jnp.arange(5, dtype=jnp.float32), jnp.arange(5, 9, dtype=jnp.float32)
    assert float(auroc(low, high)) == 1.0
    assert float(auroc(high, low)) == 0.0
    assert float(auroc(jnp.ones(4, jnp.float32), jnp.ones(3, jnp.float32))) == 0.5  # all ties


# --- Brier score -----------------------------------------------------------------------------------


def test_brier_matches_numpy_and_sklearn():
    rng = np.random.default_rng(1)
    probs = dirichlet(rng, 400, 5).astype(np.float32)
    labels = rng.integers(0, 5, 400)
    reference = np.mean(np.sum((probs.astype(np.float64) - np.eye(5)[labels]) ** 2, axis=1))
    value = brier_score(probs, labels)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), reference, rtol=1e-6)
    if "scale_by_half" in inspect.signature(brier_score_loss).parameters:  # multiclass in sklearn >= 1.7
        sk = brier_score_loss(labels, probs, labels=np.arange(5), scale_by_half=False)
        np.testing.assert_allclose(float(value), sk, rtol=1e-6)


def test_brier_two_classes_is_twice_sklearn_binary():
    rng = np.random.default_rng(2)
    p1 = rng.uniform(size=300)
    labels = rng.integers(0, 2, 300)
    probs = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    # sklearn's binary Brier score is mean (p_1 - y)^2; ours sums over both classes: the factor is 2.
    np.testing.assert_allclose(float(brier_score(probs, labels)), 2 * brier_score_loss(labels, p1), rtol=1e-5)


# --- calibration -----------------------------------------------------------------------------------


def test_ece_zero_when_calibrated_within_bins():
    # confidence 0.6 right 6 times in 10, 0.8 right 8 in 10, 1.0 always right: calibrated in every bin
    conf = np.r_[np.full(10, 0.6), np.full(10, 0.8), np.full(5, 1.0)]
    correct = np.r_[np.arange(10) < 6, np.arange(10) < 8, np.ones(5, bool)]
    probs = np.stack([conf, 1 - conf], axis=1).astype(np.float32)  # predicts class 0
    labels = np.where(correct, 0, 1)
    assert float(expected_calibration_error(probs, labels)) == pytest.approx(0.0, abs=1e-6)
    confidence, accuracy, count = reliability(probs, labels, 5)
    np.testing.assert_array_equal(count, [0, 0, 10, 10, 5])  # (0.4, 0.6], (0.6, 0.8], (0.8, 1]
    np.testing.assert_allclose(confidence, [0, 0, 0.6, 0.8, 1.0], atol=1e-6)
    np.testing.assert_allclose(accuracy, [0, 0, 0.6, 0.8, 1.0], atol=1e-6)


def test_ece_always_confidently_wrong():
    probs = np.tile(np.array([[0.9, 0.05, 0.05]], np.float32), (50, 1))
    labels = np.full(50, 2)
    ece = expected_calibration_error(probs, labels)
    assert ece.dtype == jnp.float32
    assert float(ece) == pytest.approx(0.9, abs=1e-6)
    # and mixed: half the examples right at confidence 1 -> ECE = 0.5 * 0.9
    probs2 = np.concatenate([probs, np.tile(np.eye(3, dtype=np.float32)[:1], (50, 1))])
    labels2 = np.r_[labels, np.zeros(50, int)]
    assert float(expected_calibration_error(probs2, labels2)) == pytest.approx(0.45, abs=1e-6)


def reference_ece(probs, labels, num_bins):
    """Loop over right-closed bins (lo, hi] in float64 (the first bin also holds 0)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, num_bins + 1)
    ece, stats = 0.0, []
    for b in range(num_bins):
        members = (conf > edges[b]) & (conf <= edges[b + 1]) | ((b == 0) & (conf == 0))
        n = members.sum()
        acc = (pred[members] == labels[members]).mean() if n else 0.0
        mean_conf = conf[members].mean() if n else 0.0
        ece += n / len(conf) * abs(acc - mean_conf)
        stats.append((mean_conf, acc, n))
    return ece, np.array(stats)


@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_and_reliability_match_loop_reference(num_bins):
    rng = np.random.default_rng(3)
    probs = dirichlet(rng, 1000, 4, concentration=0.3)
    labels = rng.integers(0, 4, 1000)
    expected, stats = reference_ece(probs, labels, num_bins)
    np.testing.assert_allclose(
        float(expected_calibration_error(probs.astype(np.float32), labels, num_bins)), expected, atol=1e-5
    )
    confidence, accuracy, count = jax.jit(reliability, static_argnums=2)(probs.astype(np.float32), labels, num_bins)
    assert count.dtype == jnp.int32 and confidence.dtype == jnp.float32
    np.testing.assert_array_equal(count, stats[:, 2])
    np.testing.assert_allclose(confidence, stats[:, 0], atol=1e-6)
    np.testing.assert_allclose(accuracy, stats[:, 1], atol=1e-6)


# --- log-likelihood, entropy, mutual information ---------------------------------------------------


def test_mean_log_likelihood_matches_float64():
    rng = np.random.default_rng(4)
    ll = rng.normal(-2.0, 1.5, (64, 30))
    reference = np.log(np.mean(np.exp(ll), axis=0))
    value = mean_log_likelihood(ll.astype(np.float32))
    assert value.shape == (30,) and value.dtype == jnp.float32
    np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5)


def test_mean_log_likelihood_stable_near_minus_1000():
    rng = np.random.default_rng(5)
    ll = -1000.0 + rng.normal(0, 3.0, (100, 20))  # exp(-1000) underflows even in float64
    reference = scipy.special.logsumexp(ll, axis=0) - np.log(100)
    value = jax.jit(mean_log_likelihood)(ll.astype(np.float32))
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value, reference, rtol=0, atol=2e-3)  # float32 spacing at 1000 is 6e-5


def test_predictive_entropy_matches_scipy():
    rng = np.random.default_rng(6)
    probs = dirichlet(rng, 50, 6)
    probs[0] = [1, 0, 0, 0, 0, 0]  # 0 log 0 = 0
    value = predictive_entropy(probs.astype(np.float32))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, scipy.stats.entropy(probs, axis=1), atol=2e-6)
    assert float(value[0]) == 0.0


def test_mutual_information_zero_when_draws_agree():
    rng = np.random.default_rng(7)
    probs = dirichlet(rng, 40, 5).astype(np.float32)
    value = mutual_information(np.broadcast_to(probs, (8, 40, 5)))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, 0.0, atol=1e-6)


def test_mutual_information_is_the_entropy_gap():
    rng = np.random.default_rng(8)
    samples = dirichlet(rng, (16, 40), 5, concentration=0.5)
    mean = samples.mean(0)
    gap = scipy.stats.entropy(mean, axis=-1) - scipy.stats.entropy(samples, axis=-1).mean(0)
    value = mutual_information(samples.astype(np.float32))
    np.testing.assert_allclose(value, gap, atol=1e-5)
    assert np.all(gap > 1e-3) and np.all(np.asarray(value) <= np.log(5) + 1e-6)
    # two draws that disagree completely: entropy of the mean log 2, each draw certain
    certain = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)
    assert float(mutual_information(certain)[0]) == pytest.approx(np.log(2), abs=1e-6)


# --- summary metrics -------------------------------------------------------------------------------


def test_classification_metrics_match_references():
    rng = np.random.default_rng(9)
    samples = dirichlet(rng, (10, 200), 3, concentration=0.7)
    labels = rng.integers(0, 3, 200)
    metrics = classification_metrics(samples.astype(np.float32), labels, num_bins=10)
    assert set(metrics) == {"test_nll", "test_accuracy", "ece", "brier", "entropy", "mutual_information"}
    assert all(isinstance(v, float) for v in metrics.values())
    mean = samples.mean(0)
    np.testing.assert_allclose(metrics["test_nll"], -np.mean(np.log(mean[np.arange(200), labels])), rtol=1e-5)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(mean.argmax(1) == labels), abs=1e-6)
    np.testing.assert_allclose(metrics["ece"], reference_ece(mean, labels, 10)[0], atol=1e-5)
    np.testing.assert_allclose(metrics["brier"], np.mean(np.sum((mean - np.eye(3)[labels]) ** 2, 1)), rtol=1e-5)
    np.testing.assert_allclose(metrics["entropy"], scipy.stats.entropy(mean, axis=1).mean(), rtol=1e-5)
    gap = scipy.stats.entropy(mean, axis=1) - scipy.stats.entropy(samples, axis=-1).mean(0)
    np.testing.assert_allclose(metrics["mutual_information"], gap.mean(), rtol=1e-4)


def test_classification_nll_finite_at_zero_probability():
    probs = np.array([[[1.0, 0.0]]], np.float32)
    metrics = classification_metrics(probs, np.array([1]))
    assert np.isfinite(metrics["test_nll"]) and metrics["test_nll"] == pytest.approx(-np.log(np.finfo(np.float32).tiny))


def test_regression_metrics_match_scipy_mixture_in_original_units():
    rng = np.random.default_rng(10)
    s, n, y_mean, y_scale = 12, 80, 150.0, 77.5
    mean = rng.normal(0, 1, (s, n))
    std = rng.uniform(0.2, 1.5, (s, n))
    y = rng.normal(0, 1.2, n)
    metrics = regression_metrics(mean.astype(np.float32), std.astype(np.float32), y.astype(np.float32), y_scale=y_scale)
    assert set(metrics) == {"test_nll", "test_rmse"} and all(isinstance(v, float) for v in metrics.values())
    # float64 reference written directly in original units: the mixture of the S rescaled Gaussians
    y_raw = y * y_scale + y_mean
    density = scipy.stats.norm.pdf(y_raw, loc=mean * y_scale + y_mean, scale=std * y_scale).mean(0)
    np.testing.assert_allclose(metrics["test_nll"], -np.mean(np.log(density)), rtol=1e-5)
    rmse = np.sqrt(np.mean((mean.mean(0) * y_scale + y_mean - y_raw) ** 2))
    np.testing.assert_allclose(metrics["test_rmse"], rmse, rtol=1e-5)
    # the log y_scale shift: the same predictive in standardised units
    standardised = regression_metrics(mean, std, y)
    np.testing.assert_allclose(metrics["test_nll"] - standardised["test_nll"], np.log(y_scale), rtol=1e-5)


def test_metrics_compile_and_keep_float32():
    rng = np.random.default_rng(11)
    samples = jnp.asarray(dirichlet(rng, (4, 30), 3), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 30), jnp.int32)
    probs = samples.mean(0)
    for fn, args in [
        (predictive_entropy, (probs,)),
        (mutual_information, (samples,)),
        (expected_calibration_error, (probs, labels)),
        (brier_score, (probs, labels)),
        (auroc, (probs[:, 0], probs[:, 1])),
        (mean_log_likelihood, (jnp.log(samples[..., 0]),)),
    ]:
        eager, jitted = fn(*args), jax.jit(fn)(*args)
        assert jitted.dtype == jnp.float32, fn.__name__
        np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-7, err_msg=fn.__name__)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mean_log_likelihood(np.zeros(3)), r"\(S, N\)"),
        (lambda: predictive_entropy(np.zeros((2, 3, 4))), r"\(N, K\)"),
        (lambda: mutual_information(np.zeros((3, 4))), r"\(S, N, K\)"),
        (lambda: brier_score(np.full((3, 2), 0.5), np.array([0, 1, 2])), r"labels must lie in 0\.\.1"),
        (lambda: brier_score(np.full((3, 2), 0.5), np.array([0, 1])), r"labels must be \(3,\) integers"),
        (lambda: brier_score(np.full((3, 2), 0.5), np.array([0.0, 1.0, 1.0])), "integers"),
        (lambda: expected_calibration_error(np.full((3, 2), 0.5), np.array([0, 1, -1])), "0..1"),
        (lambda: reliability(np.full((3, 2), 0.5), np.array([0, 1, 1]), 0), "num_bins"),
        (lambda: auroc(np.zeros(0), np.zeros(3)), "non-empty"),
        (lambda: classification_metrics(np.full((3, 2), 0.5), np.array([0, 1, 1])), r"probs\[None\]"),
        (lambda: regression_metrics(np.zeros((2, 3)), np.ones((2, 4)), np.zeros(3)), r"\(S, N\)"),
        (lambda: regression_metrics(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3)), "std_samples must be positive"),
        (lambda: regression_metrics(np.zeros((2, 3)), np.ones((2, 3)), np.zeros(3), y_scale=0.0), "y_scale"),
    ],
)
def test_bad_input_is_a_one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        call()
    assert one_line(excinfo)


def test_bad_labels_fail_under_jit():
    with pytest.raises(Exception, match="labels must lie in 0..1"):
        jax.block_until_ready(jax.jit(brier_score)(jnp.full((3, 2), 0.5, jnp.float32), jnp.array([0, 1, 5])))

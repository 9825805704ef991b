"""Predictive metrics of Bayesian models from Monte Carlo draws of their predictive: log-likelihood,
entropy and mutual information, calibration, Brier score, out-of-distribution AUROC.

Pure `jax.numpy` functions, `jit`-compatible (`num_bins` is a Python int, static under `jit`), in the
dtype of their inputs (float32 stays float32). Conventions:

- Logarithms are natural: log-likelihoods, NLLs, entropies and mutual information are in **nats**.
- `S` draws `w_s` of the weights give per-draw predictives `p_s(y | x) = p(y | x, w_s)`; the model's
  predictive is their average, `p(y | x) = (1/S) sum_s p_s(y | x)` (a Monte Carlo estimate of the
  posterior predictive): a mixture of `S` components.
- Classification: `probs` `(N, K)` rows on the simplex, `labels` int `(N,)` in `0..K-1`. Confidence
  is the top-class probability `max_k p_k`, the prediction its class.
- Calibration bins: `num_bins` equal-width bins on `[0, 1]`, right-closed like Guo et al. 2017:
  bin `b` holds confidences in `(b / B, (b + 1) / B]` (the first bin also holds 0). ECE weights each
  bin by its share of the examples.
- Brier score: the **mean over examples of the sum over classes** `sum_k (p_k - 1[y = k])^2`, in
  `[0, 2]`. For two classes this is twice scikit-learn's binary `brier_score_loss(y, p_1)`, which
  averages `(p_1 - y)^2` only (the two classes contribute equally).
- Regression: per-draw Gaussian predictives `N(mean_s, std_s^2)` in standardised units (see
  `reparam.data.tables`); NLL and RMSE are reported in the original units of the target.

Labels outside `0..K-1` and non-positive standard deviations raise a one-line ValueError eagerly and
an `equinox.error_if` under `jit` (`validate=False` skips the check).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp, xlogy
from jaxtyping import Array, ArrayLike

from ..validation import check, check_positive, float_dtype


def _float(owner: str, name: str, value: ArrayLike, ndim: int, shape: str) -> Array:
    value = jnp.asarray(value)
    value = value.astype(float_dtype(value))
    if value.ndim != ndim or value.size == 0:
        raise ValueError(f"{owner}: {name} must be a non-empty {shape} array, got shape {value.shape}")
    return value


def _labels(owner: str, labels: ArrayLike, n: int, num_classes: int, validate: bool) -> Array:
    labels = jnp.asarray(labels)
    if labels.shape != (n,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{owner}: labels must be ({n},) integers to match probs, got {labels.shape} {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    return check(labels, bad, f"{owner}: labels must lie in 0..{num_classes - 1}", validate)


def mean_log_likelihood(log_likelihoods: ArrayLike) -> Array:
    """The log of the Monte Carlo predictive per example: `(S, N)` -> `(N,)`.

    `log p(y_n | x_n) = log (1/S) sum_s exp(l_sn) = logsumexp_s(l_sn) - log S` for per-draw
    log-likelihoods `l_sn = log p(y_n | x_n, w_s)`, computed stably (exact for `l` near -1000).
    """
    ll = _float("mean_log_likelihood", "log_likelihoods", log_likelihoods, 2, "(S, N)")
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])


def predictive_entropy(probs: ArrayLike) -> Array:
    """The entropy of each predictive distribution in nats: `(N, K)` -> `(N,)`,
    `H[p] = -sum_k p_k log p_k` with `0 log 0 = 0`. Of the mean predictive it is the total uncertainty."""
    p = _float("predictive_entropy", "probs", probs, 2, "(N, K)")
    return -jnp.sum(xlogy(p, p), axis=-1)


def mutual_information(prob_samples: ArrayLike) -> Array:
    """The epistemic part of the predictive entropy: `(S, N, K)` per-draw probabilities -> `(N,)` nats,

    `I[y; w | x] = H[(1/S) sum_s p_s] - (1/S) sum_s H[p_s]` (the total entropy minus the expected
    entropy, i.e. the aleatoric part). Non-negative by Jensen's inequality; float rounding below 0 is
    clipped to 0. It is 0 when all draws agree.
    """
    p = _float("mutual_information", "prob_samples", prob_samples, 3, "(S, N, K)")
    total = -jnp.sum(xlogy(jnp.mean(p, 0), jnp.mean(p, 0)), axis=-1)
    expected = jnp.mean(-jnp.sum(xlogy(p, p), axis=-1), axis=0)
    return jnp.maximum(total - expected, 0)


def reliability(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, validate: bool = True
) -> tuple[Array, Array, Array]:
    """Per calibration bin (see the module docstring): mean confidence, accuracy and count, `(B,)` each.

    The reliability diagram plots accuracy against mean confidence; both are 0 where a bin is empty
    (mask with `count > 0`). Counts are int32.
    """
    p = _float("reliability", "probs", probs, 2, "(N, K)")
    labels = _labels("reliability", labels, p.shape[0], p.shape[1], validate)
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"reliability: num_bins must be a positive int (static under jit), got {num_bins!r}")
    confidence = jnp.max(p, axis=-1)
    correct = (jnp.argmax(p, axis=-1).astype(labels.dtype) == labels).astype(p.dtype)
    inner_edges = jnp.linspace(0, 1, num_bins + 1, dtype=p.dtype)[1:-1]
    index = jnp.searchsorted(inner_edges, confidence, side="left")  # (lo, hi]: edges < confidence
    count = jnp.zeros(num_bins, jnp.int32).at[index].add(1)
    conf_sum = jnp.zeros(num_bins, p.dtype).at[index].add(confidence)
    correct_sum = jnp.zeros(num_bins, p.dtype).at[index].add(correct)
    denominator = jnp.maximum(count, 1).astype(p.dtype)
    return conf_sum / denominator, correct_sum / denominator, count


def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15, *, validate: bool = True
) -> Array:
    """Expected calibration error of the top-class confidence: `(N, K)`, `(N,)` -> scalar in `[0, 1]`,

    `ECE = sum_b (n_b / N) |accuracy_b - confidence_b|` over `num_bins` equal-width bins on `[0, 1]`
    (right-closed, see the module docstring), `n_b` the examples in bin `b`. 0 for a model whose
    confidence equals its accuracy within every bin; a model always wrong with confidence `c` scores `c`.
    """
    confidence, accuracy, count = reliability(probs, labels, num_bins, validate=validate)
    weight = count.astype(confidence.dtype) / jnp.sum(count).astype(confidence.dtype)
    return jnp.sum(weight * jnp.abs(accuracy - confidence))


def brier_score(probs: ArrayLike, labels: ArrayLike, *, validate: bool = True) -> Array:
    """Brier score: `(1/N) sum_n sum_k (p_nk - 1[y_n = k])^2`, the mean over examples of the sum over
    classes, in `[0, 2]`; `(N, K)`, `(N,)` -> scalar. For `K = 2` it is twice scikit-learn's binary
    `brier_score_loss(y, p_1)`."""
    p = _float("brier_score", "probs", probs, 2, "(N, K)")
    labels = _labels("brier_score", labels, p.shape[0], p.shape[1], validate)
    one_hot = jax.nn.one_hot(labels, p.shape[1], dtype=p.dtype)
    return jnp.mean(jnp.sum(jnp.square(p - one_hot), axis=-1))


def auroc(in_scores: ArrayLike, out_scores: ArrayLike) -> Array:
    """Area under the ROC curve of telling out-of-distribution inputs by a score (higher = more likely
    out), e.g. the predictive entropy or the mutual information: `(N_in,)`, `(N_out,)` -> scalar,

    `AUROC = P(s_out > s_in) + 0.5 P(s_out = s_in)` over all pairs (the Mann-Whitney statistic
    divided by `N_in N_out`): 1 separates perfectly, 0.5 is chance. Counted per out-score by binary
    search in the sorted in-scores: `O((N_in + N_out) log N_in)`, no `N_in x N_out` matrix.
    """
    s_in = _float("auroc", "in_scores", in_scores, 1, "(N_in,)")
    s_out = _float("auroc", "out_scores", out_scores, 1, "(N_out,)")
    dtype = jnp.result_type(s_in, s_out)
    sorted_in = jnp.sort(s_in.astype(dtype))
    below = jnp.searchsorted(sorted_in, s_out.astype(dtype), side="left").astype(dtype)
    not_above = jnp.searchsorted(sorted_in, s_out.astype(dtype), side="right").astype(dtype)
    per_out = (below + 0.5 * (not_above - below)) / s_in.shape[0]  # P(s_in < s) + P(s_in = s) / 2
    return jnp.mean(per_out)


@functools.partial(jax.jit, static_argnames="num_bins")
def _classification(prob_samples: Array, labels: Array, num_bins: int) -> dict[str, Array]:
    """The metrics as arrays; labels were checked by the caller."""
    probs = jnp.mean(prob_samples, axis=0)
    p_label = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
    tiny = jnp.finfo(probs.dtype).tiny
    return {
        "test_nll": -jnp.mean(jnp.log(jnp.maximum(p_label, tiny))),
        "test_accuracy": jnp.mean((jnp.argmax(probs, axis=-1).astype(labels.dtype) == labels).astype(probs.dtype)),
        "ece": expected_calibration_error(probs, labels, num_bins, validate=False),
        "brier": brier_score(probs, labels, validate=False),
        "entropy": jnp.mean(predictive_entropy(probs)),
        "mutual_information": jnp.mean(mutual_information(prob_samples)),
    }


def classification_metrics(
    prob_samples: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, validate: bool = True
) -> dict[str, float]:
    """Test metrics of a classifier from `S` draws of its class probabilities `(S, N, K)`.

    With the mean predictive `p = (1/S) sum_s p_s`: `test_nll = -(1/N) sum_n log p_n(y_n)` (nats;
    `p_n(y_n)` floored at the dtype's smallest normal number, so at most 87.3 nats per example in
    float32), `test_accuracy` of `argmax_k p_nk`, `ece` (`num_bins` bins) and `brier` of `p`, `entropy`
    the mean predictive entropy of `p` (total uncertainty, nats) and `mutual_information` its mean
    epistemic part. Python floats.
    """
    p = _float("classification_metrics", "prob_samples", prob_samples, 3, "(S, N, K); one draw is probs[None]")
    labels = _labels("classification_metrics", labels, p.shape[1], p.shape[2], validate)
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"classification_metrics: num_bins must be a positive int, got {num_bins!r}")
    return {k: float(v) for k, v in _classification(p, labels, num_bins).items()}


@jax.jit
def _regression(mean: Array, std: Array, y: Array) -> tuple[Array, Array]:
    z = (y - mean) / std
    log_density = -0.5 * jnp.square(z) - jnp.log(std) - 0.5 * math.log(2 * math.pi)
    nll = -jnp.mean(mean_log_likelihood(log_density))
    rmse = jnp.sqrt(jnp.mean(jnp.square(jnp.mean(mean, axis=0) - y)))
    return nll, rmse


def regression_metrics(
    mean_samples: ArrayLike, std_samples: ArrayLike, y: ArrayLike, *, y_scale: float = 1.0, validate: bool = True
) -> dict[str, float]:
    """Test metrics of a regression model from `S` Gaussian predictives per example, in standardised units.

    `mean_samples`, `std_samples` `(S, N)` give `p_s(y_n) = N(y_n; mean_sn, std_sn^2)` and `y` `(N,)`
    the standardised targets; the predictive is the `S`-component mixture `(1/S) sum_s p_s`. In the
    target's original units (`y_raw = y * y_scale + y_mean`):

    - `test_nll = -(1/N) sum_n log (1/S) sum_s p_s(y_n) + log y_scale` (nats; the change of variables
      adds `log y_scale` per example),
    - `test_rmse = y_scale * sqrt((1/N) sum_n (mu_n - y_n)^2)` with the mixture mean `mu_n = (1/S) sum_s mean_sn`.

    Python floats.
    """
    owner = "regression_metrics"
    mean = _float(owner, "mean_samples", mean_samples, 2, "(S, N); one draw is mean[None]")
    std = _float(owner, "std_samples", std_samples, 2, "(S, N); one draw is std[None]")
    y = _float(owner, "y", y, 1, "(N,)")
    if std.shape != mean.shape or y.shape != mean.shape[1:]:
        raise ValueError(
            f"{owner}: needs mean_samples, std_samples (S, N) and y (N,), got {mean.shape}, {std.shape}, {y.shape}"
        )
    if not (isinstance(y_scale, (int, float)) and math.isfinite(y_scale) and y_scale > 0):
        raise ValueError(f"{owner}: y_scale must be a positive finite number, got {y_scale!r}")
    std = check_positive(owner, "std_samples", std, validate)
    dtype = jnp.result_type(mean, std, y)
    nll, rmse = _regression(mean.astype(dtype), std.astype(dtype), y.astype(dtype))
    return {"test_nll": float(nll) + math.log(y_scale), "test_rmse": float(rmse) * y_scale}

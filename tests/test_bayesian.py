"""`reparam.nn`'s Bayesian layers: the three estimators' output distributions against the closed form
(local reparameterization exact, flipout unbiased with the weight-sampling marginal and decorrelated
examples), the KL to a Normal prior by hand in float64 and the Monte Carlo KL to the scale mixture
against quadrature, exact Bayesian linear regression recovered by maximising the ELBO, shapes,
jit / vmap / grad, `with_estimator`, initialisation and one-line errors."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate as si
from scipy import special, stats

import reparam as rp
from reparam.nn import BayesianDense, BayesianMLP, mlp, with_estimator

ESTIMATORS = ("weights", "local", "flipout")


def spread(layer: BayesianDense, key, low=0.2, high=1.0) -> BayesianDense:
    """`layer` with its posterior scales drawn uniformly from [low, high] (the init is 1e-3)."""
    kw, kb = jax.random.split(key)
    scales = (
        jax.random.uniform(kw, layer.weight_raw.shape, jnp.float32, low, high),
        jax.random.uniform(kb, layer.bias_raw.shape, jnp.float32, low, high),
    )
    raws = tuple(jnp.log(jnp.expm1(s - layer.min_scale)) for s in scales)  # inverse softplus
    return eqx.tree_at(lambda d: (d.weight_raw, d.bias_raw), layer, raws)


def as64(layer: BayesianDense):
    """(M, S, m, s) in float64 numpy."""
    w, b = layer.posterior()
    return tuple(np.asarray(a, np.float64) for a in (w.loc, w.scale, b.loc, b.scale))


X = np.array([[1.0, 0.5, -0.3, 2.0], [0.8, 0.6, -0.2, 1.5], [-1.2, 0.0, 0.7, 0.1]], np.float32)
K = 10_000  # forward passes (keys) per Monte Carlo check


def draws(layer: BayesianDense, estimator: str, x=X, n=K) -> np.ndarray:
    """`n` independent forward passes of `x` (one key each): shape (n, B, out), float64."""
    layer = with_estimator(layer, estimator)
    out = jax.jit(jax.vmap(lambda k: layer(jnp.asarray(x), k)))(jax.random.split(jax.random.key(11), n))
    return np.asarray(out, np.float64)


@pytest.fixture(scope="module")
def layer() -> BayesianDense:
    return spread(BayesianDense(4, 2, key=jax.random.key(0)), jax.random.key(1))


def closed_form_moments(layer):
    """Pre-activation mean `x M^T + m` and variance `x^2 (S^2)^T + s^2` per example and unit, float64."""
    m, s, mb, sb = as64(layer)
    x = X.astype(np.float64)
    return x @ m.T + mb, np.square(x) @ np.square(s).T + np.square(sb)


def assert_moments(y: np.ndarray, mean: np.ndarray, variance: np.ndarray):
    """Sample mean and variance per (example, unit) within 5 standard errors of the given ones; the
    variance's standard error from the sample's fourth central moment."""
    n = y.shape[0]
    centred = y - y.mean(0)
    sample_variance = np.mean(np.square(centred), 0)
    se_mean = np.sqrt(sample_variance / n)
    se_variance = np.sqrt((np.mean(centred**4, 0) - sample_variance**2) / n)
    assert np.all(np.abs(y.mean(0) - mean) < 5 * se_mean), (y.mean(0), mean, se_mean)
    assert np.all(np.abs(sample_variance - variance) < 5 * se_variance), (sample_variance, variance, se_variance)


def correlation(y: np.ndarray, a: int, b: int) -> np.ndarray:
    """Correlation over draws between examples `a` and `b`, per unit."""
    return np.array([np.corrcoef(y[:, a, j], y[:, b, j])[0, 1] for j in range(y.shape[-1])])


# --- the estimators' output distributions -----------------------------------------------------------
def test_local_reparameterization_matches_closed_form_and_weight_sampling(layer):
    mean, variance = closed_form_moments(layer)
    local, weights = draws(layer, "local"), draws(layer, "weights")
    assert_moments(local, mean, variance)
    assert_moments(weights, mean, variance)
    # Both are exactly Normal per example and unit: KS of the standardised draws against N(0, 1).
    for y in (local, weights):
        z = (y - mean) / np.sqrt(variance)
        assert stats.kstest(z[:, 0, 0], "norm").pvalue > 1e-3
        assert stats.kstest(z[:, 2, 1], "norm").pvalue > 1e-3
    # Local noise is independent per example; weight sampling correlates examples.
    assert np.all(np.abs(correlation(local, 0, 1)) < 5 / math.sqrt(K))


def test_flipout_is_unbiased_with_the_weight_sampling_marginal_and_decorrelates_examples(layer):
    mean, variance = closed_form_moments(layer)
    flipout, weights = draws(layer, "flipout"), draws(layer, "weights")
    assert_moments(flipout, mean, variance)
    z = (flipout - mean) / np.sqrt(variance)
    assert stats.kstest(z[:, 0, 0], "norm").pvalue > 1e-3  # the marginal is the same Normal
    # Examples 0 and 1: under weight sampling Cov = sum_i x0i x1i S_ji^2 + s_j^2 (one shared draw);
    # under flipout the independent signs make it exactly 0.
    m, s, mb, sb = as64(layer)
    x = X.astype(np.float64)
    covariance = (x[0] * x[1]) @ np.square(s).T + np.square(sb)
    rho = covariance / np.sqrt(variance[0] * variance[1])
    assert np.all(rho > 0.8)
    rho_weights, rho_flipout = correlation(weights, 0, 1), correlation(flipout, 0, 1)
    assert np.all(np.abs(rho_weights - rho) < 5 * (1 - rho**2) / math.sqrt(K))  # SE of a correlation
    assert np.all(np.abs(rho_flipout) < 5 / math.sqrt(K))
    assert np.all(np.abs(rho_flipout) < np.abs(rho_weights) - 0.5)


def test_weights_draws_once_per_batch_local_and_flipout_per_example():
    layer = spread(BayesianDense(3, 2, key=jax.random.key(2)), jax.random.key(3))
    x = jnp.ones((4, 3), jnp.float32)  # four identical examples
    for estimator in ESTIMATORS:
        y = np.asarray(with_estimator(layer, estimator)(x, jax.random.key(4)))
        identical = np.all(y == y[0])
        assert identical == (estimator == "weights"), estimator


# --- KL ---------------------------------------------------------------------------------------------
def test_kl_to_a_normal_prior_is_the_closed_form(layer):
    prior = rp.Normal(0.1, 0.7)  # float64 parameters: cast to the layer's float32
    kl = layer.kl(prior)
    assert kl.shape == () and kl.dtype == jnp.float32
    m, s, mb, sb = as64(layer)
    q_loc, q_scale = np.concatenate([m.ravel(), mb]), np.concatenate([s.ravel(), sb])
    by_hand = np.sum(np.log(0.7 / q_scale) + (q_scale**2 + (q_loc - 0.1) ** 2) / (2 * 0.7**2) - 0.5)
    np.testing.assert_allclose(kl, by_hand, rtol=1e-5)
    assert layer.kl(prior, jax.random.key(0)) == kl  # a key changes nothing when a closed form exists

    net = BayesianMLP(3, 2, (5,), key=jax.random.key(5), init_scale=0.05)
    np.testing.assert_allclose(net.kl(prior), sum(float(d.kl(prior)) for d in net.layers), rtol=1e-6)


def test_monte_carlo_kl_to_the_scale_mixture_is_unbiased():
    """One sample per weight: the mean over keys is within 5 SE of the quadrature KL."""
    layer = spread(BayesianDense(3, 2, key=jax.random.key(6)), jax.random.key(7), 0.05, 0.5)
    pi, s1, s2 = 0.25, 1.0, math.exp(-6.0)
    prior = rp.ScaleMixtureNormal(pi, s1, s2)
    with pytest.raises(ValueError, match=r"BayesianDense.kl: no closed form KL\(Normal \|\| ScaleMixtureNormal\)"):
        layer.kl(prior)
    m, s, mb, sb = as64(layer)

    def log_prior(w):
        wide, narrow = np.log(pi) + stats.norm.logpdf(w, 0, s1), np.log1p(-pi) + stats.norm.logpdf(w, 0, s2)
        return special.logsumexp([wide, narrow], axis=0)

    # Reference: sum over weights of int q(w) (log q(w) - log p(w)) dw, by quadrature in float64 on
    # w = loc + scale u, u in [-12, 12]. The narrow component (width s2 / scale >= 0.005 in u) is
    # resolved by the 1e-4 grid; the quadrature error is far below the Monte Carlo standard error.
    loc, scale = np.concatenate([m.ravel(), mb])[:, None], np.concatenate([s.ravel(), sb])[:, None]
    u = np.linspace(-12.0, 12.0, 240_001)
    w = loc + scale * u
    integrand = stats.norm.pdf(u) * (stats.norm.logpdf(u) - np.log(scale) - log_prior(w))
    exact = float(np.sum(si.trapezoid(integrand, u, axis=1)))
    n = 4000
    estimates = np.asarray(jax.jit(jax.vmap(lambda k: layer.kl(prior, k)))(jax.random.split(jax.random.key(8), n)))
    assert estimates.dtype == np.float32
    assert abs(estimates.mean() - exact) < 5 * estimates.std() / math.sqrt(n), (estimates.mean(), exact)
    # Pathwise-differentiable: finite gradients for every parameter.
    grads = eqx.filter_jit(eqx.filter_grad(lambda d: d.kl(prior, jax.random.key(9))))(layer)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    net = BayesianMLP(3, 1, (4,), key=jax.random.key(10))
    assert np.isfinite(eqx.filter_jit(lambda n, k: n.kl(prior, k))(net, jax.random.key(0)))


# --- exact Bayesian linear regression ---------------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_elbo_recovers_exact_bayesian_linear_regression(estimator):
    """`y = x w + b + N(0, sigma^2)`, prior N(0, 1/alpha) on w and b. The mean-field Gaussian ELBO
    optimum has the exact posterior mean `A^-1 Phi^T y / sigma^2` and variances `1 / diag(A)`,
    `A = alpha I + Phi^T Phi / sigma^2`, `Phi = [x, 1]`. Adam (lr 1e-2 decaying to 1e-4, 3000 full-batch
    steps, 8 forward passes per step) in one lax.scan.

    Tolerance: means within 0.15 mean-field standard deviations, standard deviations within 5%. Over
    12 training keys (3 estimators x 4) the worst errors were 0.05 sd and 1.3% (the final iterate's
    jitter from the sampled gradient); the tolerances are three times those. They are tight enough to
    tell the right answer from the wrong ones: the least-squares mean (no prior) is 1.4 sd away, and
    the exact posterior marginal sd `sqrt(diag(A^-1))`, which mean-field cannot represent with these
    correlated features, is 38-108% larger."""
    rng = np.random.default_rng(0)
    n, d, alpha, sigma = 50, 2, 5.0, 0.5
    x = 0.8 + rng.normal(size=(n, 1)) + 0.5 * rng.normal(size=(n, d))  # correlated, off-centre features
    y = x @ np.array([1.0, -0.5]) + 0.3 + sigma * rng.normal(size=n)
    phi = np.hstack([x, np.ones((n, 1))])
    precision = alpha * np.eye(d + 1) + phi.T @ phi / sigma**2
    mean = np.linalg.solve(precision, phi.T @ y / sigma**2)
    sd = 1 / np.sqrt(np.diag(precision))

    # The wrong answers the tolerance rules out.
    least_squares = np.linalg.lstsq(phi, y, rcond=None)[0]
    assert np.max(np.abs(least_squares - mean) / sd) > 1.0
    assert np.min(np.sqrt(np.diag(np.linalg.inv(precision))) / sd) > 1.3

    layer = BayesianDense(d, 1, key=jax.random.key(0), estimator=estimator)
    params, static = eqx.partition(layer, eqx.is_inexact_array)
    xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    prior = rp.Normal(jnp.float32(0.0), jnp.float32(alpha**-0.5))
    steps, passes = 3000, 8

    def negative_elbo(params, key):
        model = eqx.combine(params, static)
        f = jax.vmap(lambda k: model(xs, k)[:, 0])(jax.random.split(key, passes))
        log_likelihood = jnp.sum(-0.5 * jnp.square((ys - f) / sigma), -1) - n * (
            math.log(sigma) + 0.5 * math.log(2 * math.pi)
        )
        return model.kl(prior) - jnp.mean(log_likelihood)

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes a Python float with its int32 count
        optimizer = optax.adam(optax.exponential_decay(1e-2, steps, 1e-2))

        def step(carry, key):
            params, opt_state = carry
            grads = jax.grad(negative_elbo)(params, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        train = jax.jit(lambda p, k: jax.lax.scan(step, (p, optimizer.init(p)), jax.random.split(k, steps))[0][0])
        trained = eqx.combine(train(params, jax.random.key(1)), static)

    w, b = trained.posterior()
    loc = np.concatenate([np.asarray(w.loc)[0], np.asarray(b.loc)])
    scale = np.concatenate([np.asarray(w.scale)[0], np.asarray(b.scale)])
    np.testing.assert_array_less(np.abs(loc - mean) / sd, 0.15)
    np.testing.assert_array_less(np.abs(scale / sd - 1), 0.05)


# --- shapes, transformations, with_estimator, init, errors -----------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_shapes_jit_vmap_grad(estimator):
    net = BayesianMLP(3, 2, (8,), key=jax.random.key(0), estimator=estimator, init_scale=0.1)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    key = jax.random.key(1)

    @eqx.filter_jit
    def everything(net, x, key):
        loss = lambda n: jnp.sum(jnp.square(n(x, key))) + n.kl(rp.Normal(0.0, 1.0))
        return (
            net(x, key),
            net(x.reshape(1, 5, 3), key),  # any leading axes
            net.layers[0](x[0], key),  # one example
            jax.vmap(lambda k: net(x, k))(jax.random.split(key, 3)),
            eqx.filter_grad(loss)(net),
        )

    y, leading, single, many, grads = everything(net, x, key)
    assert y.shape == (5, 2) and y.dtype == jnp.float32
    np.testing.assert_allclose(net(x, key), y, rtol=1e-5, atol=1e-6)  # eager and jit agree
    assert leading.shape == (1, 5, 2) and single.shape == (8,)
    assert many.shape == (3, 5, 2) and not np.allclose(many[0], many[1])
    for layer in grads.layers:
        for g in (layer.weight_loc, layer.weight_raw, layer.bias_loc, layer.bias_raw):
            assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_mlp_gives_each_layer_its_own_key_and_mean_is_the_mlp():
    net = BayesianMLP(3, 2, (4, 4), key=jax.random.key(0), activation=jnp.tanh, estimator="local", init_scale=0.3)
    x = jnp.ones((2, 3), jnp.float32)
    keys = jax.random.split(jax.random.key(1), 3)
    a, b, c = net.layers
    np.testing.assert_allclose(net(x, jax.random.key(1)), c(jnp.tanh(b(jnp.tanh(a(x, keys[0])), keys[1])), keys[2]))
    # The posterior means start as reparam.nn.mlp's initialisation with the same key, exactly.
    reference = mlp(3, 2, (4, 4), key=jax.random.key(0), activation=jnp.tanh)
    np.testing.assert_array_equal(net.mean()(x[0]), reference(x[0]))
    assert [type(m) for m in net.mean().layers] == [type(m) for m in reference.layers]
    for layer in net.layers:
        np.testing.assert_allclose(layer.weight_scale, 0.3, rtol=1e-6)
        np.testing.assert_allclose(layer.bias_scale, 0.3, rtol=1e-6)
    dense = BayesianDense(3, 2, key=jax.random.key(2))
    (linear,) = mlp(3, 2, (), key=jax.random.key(2)).layers
    np.testing.assert_array_equal(dense.weight_loc, linear.weight)
    np.testing.assert_array_equal(dense.mean().bias, linear.bias)
    np.testing.assert_allclose(dense.weight_scale, 1e-3, rtol=1e-5)
    assert dense.estimator == "local" and dense.weight_loc.dtype == jnp.float32


def test_with_estimator_changes_only_the_estimator():
    net = BayesianMLP(3, 2, (4,), key=jax.random.key(0), estimator="local")
    model = {"net": net, "head": BayesianDense(2, 1, key=jax.random.key(1), estimator="weights"), "lr": 0.1}
    switched = with_estimator(model, "flipout")
    assert switched["net"].estimator == "flipout" and switched["head"].estimator == "flipout"
    assert all(layer.estimator == "flipout" for layer in switched["net"].layers)
    assert switched["lr"] == 0.1
    assert net.estimator == "local" and model["head"].estimator == "weights"  # the original is untouched
    old, new = jax.tree.leaves(model), jax.tree.leaves(switched)
    assert len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))  # the same arrays
    assert eqx.tree_equal(with_estimator(switched, "local")["net"], net)
    with pytest.raises(ValueError, match="with_estimator: estimator must be one of 'weights', 'local', 'flipout'"):
        with_estimator(net, "reinforce")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: BayesianDense(0, 2, key=k), r"BayesianDense: sizes must be >= 1, got in 0, out 2"),
        (lambda k: BayesianDense(2, 2, key=k, estimator="local-reparam"), "BayesianDense: estimator must be one of"),
        (lambda k: BayesianDense(2, 2, key=k, init_scale=0.0), "BayesianDense: init_scale must be finite and >"),
        (lambda k: BayesianDense(2, 2, key=k, init_scale=-1.0), "BayesianDense: init_scale must be finite and >"),
        (lambda k: BayesianDense(2, 2, key=k, min_scale=-1e-3), "BayesianDense: min_scale must be finite and >= 0"),
        (lambda k: BayesianDense(2, 2, key=k, init_scale=1e-6, min_scale=1e-5), "init_scale must be finite and >"),
        (lambda k: BayesianMLP(2, 1, (0,), key=k), r"BayesianMLP: sizes must be >= 1, got in 2, hidden \(0,\), out 1"),
        (lambda k: BayesianMLP(2, 1, (3,), key=k, estimator="x"), "BayesianMLP: estimator must be one of"),
        (lambda k: BayesianDense(3, 2, key=k)(jnp.ones((4, 2), jnp.float32), k), r"x must have shape \(\.\.\., 3\)"),
    ],
)
def test_bad_arguments_raise_one_line(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make(jax.random.key(0))
    assert "\n" not in str(info.value)

"""VAE bounds and estimators against exact answers: a linear-Gaussian model (closed-form marginal
and ELBO) and a tiny categorical model (enumeration). ELBO <= IWAE_k <= log p(x), IWAE grows with
k, pathwise and score-function gradients are unbiased, the relaxation sharpens as the temperature -> 0, the
chunked log-likelihood is the one-shot one. (Training on digits: tests/test_vae_cli.py.)"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from reparam.distributions import MultivariateNormal, kl_divergence
from reparam.models.categorical_vae import CategoricalVAE, annealed_temperature, reinforce_objective
from reparam.models.flow_posteriors import FlowVAE
from reparam.models.vae import GaussianVAE, elbo, estimate_log_likelihood, iwae_bound, log_weights

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def keys(seed: int, n: int):
    return jax.random.split(jax.random.key(seed), n)


def mean_and_se(samples) -> tuple[np.ndarray, np.ndarray]:
    samples = np.asarray(samples, np.float64)
    return samples.mean(0), samples.std(0, ddof=1) / math.sqrt(samples.shape[0])


# --- linear-Gaussian model: p(z) = N(0, I), p(x | z) = N(W z + b, diag s^2) ------------------------
D, L = 3, 2


@pytest.fixture(scope="module")
def linear():
    """A linear encoder whose q(z | x) is wider than the posterior (so the importance weights are
    bounded and IWAE converges quickly) but misplaced (so the ELBO has a gap of several nats)."""
    with jax.enable_x64(False):
        model = GaussianVAE(D, L, hidden=(), likelihood="gaussian", key=jax.random.key(0))
        encoder, decoder = model.encoder.layers[0], model.decoder.net.layers[0]
        model = eqx.tree_at(
            lambda m: (m.encoder.layers[0].weight, m.encoder.layers[0].bias, m.decoder.net.layers[0].weight),
            model,
            (0.3 * encoder.weight, jnp.array([0.3, -0.3, 0.8, 0.8], jnp.float32), 2 * decoder.weight),
        )
        x = jax.random.normal(jax.random.key(1), (4, D), jnp.float32)
    return model, x


def exact_log_marginal(model: GaussianVAE, x):
    """`log N(x; b, W W^T + diag s^2)`."""
    linear = model.decoder.net.layers[0]
    likelihood = model.likelihood(jnp.zeros((L,), jnp.float32))
    cov = linear.weight @ linear.weight.T + jnp.diag(jnp.square(likelihood.scale_diag))
    return MultivariateNormal(linear.bias, jnp.linalg.cholesky(cov)).log_prob(x)


def exact_elbo(model: GaussianVAE, x):
    """`log N(x; W m + b, S) - tr(S^-1 W diag(v) W^T) / 2 - KL(q || p)`, `q = N(m, diag v)`."""
    q = model.posterior(x)
    weight = model.decoder.net.layers[0].weight
    at_mean = model.likelihood(q.loc)
    spread = jnp.sum(jnp.square(weight)[None] * jnp.square(q.scale_diag)[:, None, :], -1)  # (B, D)
    return (
        at_mean.log_prob(x)
        - 0.5 * jnp.sum(spread / jnp.square(at_mean.scale_diag), -1)
        - kl_divergence(q, model.prior())
    )


@eqx.filter_jit
def repeated_bounds(model, x, reps, kl="closed"):
    """Per draw (one key each): ELBO (`kl`: closed-form KL by default), ELBO (Monte Carlo KL), IWAE_5,
    IWAE_50."""

    def once(key):
        k = jax.random.split(key, 4)
        return (
            elbo(model, x, k[0], kl=kl),
            elbo(model, x, k[1], kl="mc"),
            iwae_bound(model, x, k[2], 5),
            iwae_bound(model, x, k[3], 50),
        )

    return jax.vmap(once)(reps)


def check_bounds(model, x, log_px, exact_elbo_value, reps):
    """E[ELBO] = the exact ELBO (both KL routes) < E[IWAE_5] < E[IWAE_50] <= log p(x), each
    comparison within a few standard errors of 400 independent draws."""
    closed, mc, iwae5, iwae50 = (mean_and_se(b) for b in repeated_bounds(model, x, reps))
    for mean, se in (closed, mc):
        np.testing.assert_array_less(np.abs(mean - exact_elbo_value), 5 * se + 1e-4)
    for (m1, s1), (m2, s2) in ((mc, iwae5), (iwae5, iwae50)):
        np.testing.assert_array_less(m1 + 3 * np.hypot(s1, s2), m2)  # grows with k
    np.testing.assert_array_less(iwae50[0], log_px + 3 * iwae50[1] + 1e-4)


def test_linear_gaussian_bounds_are_ordered(linear):
    """The closed-form marginal bounds everything; IWAE_1 is the Monte Carlo ELBO itself; the
    importance-sampled log-likelihood at K = 10,000 is within 0.05 nats of the closed form (its
    standard deviation here is about 0.01)."""
    model, x = linear
    log_px, exact = eqx.filter_jit(exact_log_marginal)(model, x), eqx.filter_jit(exact_elbo)(model, x)
    assert np.all(np.asarray(log_px - exact) > 1.0)  # a real gap to close
    check_bounds(model, x, log_px, exact, keys(2, 400))
    key = jax.random.key(3)
    np.testing.assert_array_equal(iwae_bound(model, x, key, 1), elbo(model, x, key, kl="mc"))
    estimate = eqx.filter_jit(estimate_log_likelihood)(model, x, key, k=10_000, chunk=500)
    np.testing.assert_allclose(estimate, log_px, atol=0.05)


def test_pathwise_elbo_gradient_matches_the_closed_form(linear):
    """Encoder gradient of the one-sample reparameterized ELBO, averaged over 400 draws, vs the
    gradient of the closed-form ELBO: within 5 standard errors per coordinate."""
    model, x = linear
    enc, enc_static = eqx.partition(model.encoder, eqx.is_inexact_array)
    with_encoder = lambda e: eqx.tree_at(lambda m: m.encoder, model, eqx.combine(e, enc_static))

    exact = jax.jit(jax.grad(lambda e: jnp.mean(exact_elbo(with_encoder(e), x))))(enc)
    pathwise = lambda e, k: jax.grad(lambda e: jnp.mean(elbo(with_encoder(e), x, k)))(e)
    estimate = jax.jit(jax.vmap(pathwise, (None, 0)))(enc, keys(4, 400))
    for g, e in zip(jax.tree_util.tree_leaves(estimate), jax.tree_util.tree_leaves(exact), strict=True):
        mean, se = mean_and_se(g)
        assert np.max(np.abs(e)) > 0.01
        np.testing.assert_array_less(np.abs(mean - np.asarray(e)), 5 * se + 1e-4)


def test_chunked_log_likelihood_is_the_one_shot_estimate(linear):
    """Running logaddexp over chunks = one logsumexp over the same importance samples."""
    model, x = linear
    key = jax.random.key(5)
    chunked, one_shot = eqx.filter_jit(
        lambda model, key: (
            estimate_log_likelihood(model, x, key, k=60, chunk=20),
            logsumexp(jnp.concatenate([log_weights(model, x, k, 20) for k in jax.random.split(key, 3)]), 0)
            - math.log(60),
        )
    )(model, key)
    np.testing.assert_allclose(chunked, one_shot, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="chunk \\(7\\) must be >= 1 and divide k \\(60\\)"):
        estimate_log_likelihood(model, x, key, k=60, chunk=7)


# --- a categorical model small enough to enumerate: N = 2 latents of K = 3 categories -------------
N, K, DX = 2, 3, 6


@pytest.fixture(scope="module")
def categorical():
    """Sharpened encoder and decoder outputs, so the posterior is far from q and from uniform."""
    with jax.enable_x64(False):
        model = CategoricalVAE(DX, N, K, hidden=(8,), key=jax.random.key(6))
        model = eqx.tree_at(
            lambda m: (m.encoder.layers[-1].weight, m.decoder.net.layers[-1].weight),
            model,
            (4 * model.encoder.layers[-1].weight, 3 * model.decoder.net.layers[-1].weight),
        )
        x = jnp.array([[1, 0, 0, 1, 1, 0], [0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 1]], jnp.float32)
    return model, x


def all_codes():
    """Every z in one-hot form, `(K^N, N, K)`."""
    return jnp.stack(
        [jax.nn.one_hot(jnp.array(c), K, dtype=jnp.float32) for c in itertools.product(range(K), repeat=N)]
    )


def enumerated(model: CategoricalVAE, x):
    """Exact `(log p(x), ELBO(x))`, each `(B,)`, by summing over all `K^N` codes."""
    z = all_codes()[:, None]  # (K^N, 1, N, K)
    log_joint = model.likelihood(z).log_prob(x) + model.prior().log_prob(z)  # (K^N, B)
    log_q = model.posterior(x).log_prob(z)
    return logsumexp(log_joint, 0), jnp.sum(jnp.exp(log_q) * (log_joint - log_q), 0)


def test_categorical_bounds_by_enumeration(categorical):
    """The discrete ELBO (sampled z, closed-form KL) averages to the enumerated ELBO; the bounds
    are ordered below the enumerated log p(x), which importance sampling at K = 1,000 recovers
    within 5 of its (delta-method) standard deviations, `sqrt(Var_q[w] / (K E_q[w]^2))`."""
    model, x = categorical
    log_px, exact = eqx.filter_jit(enumerated)(model, x)
    assert np.all(np.asarray(log_px - exact) > 0.2)
    check_bounds(model, x, log_px, exact, keys(8, 400))
    z = all_codes()[:, None]
    log_w = model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - model.posterior(x).log_prob(z)
    relative_variance = jnp.sum(jnp.exp(2 * log_w - 2 * log_px + model.posterior(x).log_prob(z)), 0) - 1
    estimate = eqx.filter_jit(estimate_log_likelihood)(model, x, jax.random.key(9), k=1000)
    np.testing.assert_array_less(np.abs(estimate - log_px), 5 * np.sqrt(relative_variance / 1000))


def test_reinforce_gradient_is_unbiased(categorical):
    """The score-function surrogate's gradient (a moving-average baseline with one sample,
    leave-one-out with two) averages to the exact gradient of the enumerated ELBO: the encoder
    within 5 standard errors per coordinate, the decoder (trained pathwise) likewise."""
    model, x = categorical
    params, static = eqx.partition(model, eqx.is_inexact_array)
    exact = jax.jit(jax.grad(lambda p: jnp.mean(enumerated(eqx.combine(p, static), x)[1])))(params)

    def surrogate_grads(params, key):
        surrogate = lambda p, n: jnp.mean(
            reinforce_objective(eqx.combine(p, static), x, key, jnp.float32(-3.0), num_samples=n)[0]
        )
        return jax.grad(surrogate)(params, 1), jax.grad(surrogate)(params, 2)

    for estimate in jax.jit(jax.vmap(surrogate_grads, (None, 0)))(params, keys(10, 2000)):
        for g, e in zip(jax.tree_util.tree_leaves(estimate), jax.tree_util.tree_leaves(exact), strict=True):
            mean, se = mean_and_se(g)
            np.testing.assert_array_less(np.abs(mean - np.asarray(e)), 5 * se + 1e-4)


def test_relaxed_sample_approaches_one_hot(categorical):
    """Distance of the Gumbel-Softmax sample to the nearest one-hot falls with the temperature (about
    proportionally); at temperature 0.01 it is below 0.01 on average, and its argmax is distributed as
    the categorical draw at every temperature."""
    model, x = categorical
    gaps = []
    draw = eqx.filter_jit(lambda model, t: model.relaxed_posterior(x, t).rsample(jax.random.key(11), (2000,)))
    for temperature in (1.0, 0.3, 0.1, 0.01):
        y = draw(model, jnp.float32(temperature))
        gaps.append(float(jnp.mean(1.0 - jnp.max(y, -1))))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01, gaps
    frequencies = jnp.mean(jax.nn.one_hot(jnp.argmax(y, -1), K), 0)
    np.testing.assert_allclose(frequencies, jax.nn.softmax(model.logits(x), -1), atol=5 * 0.5 / math.sqrt(2000))
    hard = model.relaxed_posterior(x, jnp.float32(0.5), straight_through=True).rsample(jax.random.key(12))
    assert set(np.unique(np.asarray(hard))) == {0.0, 1.0} and np.all(np.asarray(hard).sum(-1) == 1)


def test_temperature_schedule():
    t = jnp.array([0, 100, 1000, 10_000])
    np.testing.assert_allclose(
        annealed_temperature(t, min_temperature=0.5, anneal_rate=1e-3), [1.0, math.exp(-0.1), 0.5, 0.5], rtol=1e-6
    )


# --- flow posteriors (planar, Sylvester, IAF, NSF amortised by the encoder) -------------------------------
FLOWS = ("planar", "sylvester", "iaf", "nsf")


def perturbed(model: FlowVAE, key, scale: float) -> FlowVAE:
    """`model` with random flow parameters: planar/Sylvester, noise on the encoder's head rows (so
    each example gets its own non-identity layers); IAF, on the MADEs' (zero) last layers; NSF, on
    the spline couplings' (zero) last layers."""
    if model.kind == "nsf":
        layer_of = lambda m: m.flow.layers.bijectors[1].net.layers[-1]
        last, (k1, k2) = layer_of(model), jax.random.split(key)
        weight = scale * jax.random.normal(k1, last.weight.shape, last.weight.dtype) / 8
        bias = scale * jax.random.normal(k2, last.bias.shape, last.bias.dtype)
        return eqx.tree_at(lambda m: (layer_of(m).weight, layer_of(m).bias), model, (weight, bias))
    if model.kind == "iaf":
        last = model.flow.layers.bijectors[1].made
        weights = list(last.weights)
        biases = list(last.biases)
        k1, k2 = jax.random.split(key)
        weights[-1] = scale * jax.random.normal(k1, weights[-1].shape, weights[-1].dtype) / 8
        biases[-1] = scale * jax.random.normal(k2, biases[-1].shape, biases[-1].dtype)
        return eqx.tree_at(
            lambda m: (m.flow.layers.bijectors[1].made.weights, m.flow.layers.bijectors[1].made.biases),
            model,
            (tuple(weights), tuple(biases)),
        )
    last = model.encoder.layers[-1]
    rows = slice(2 * model.latent_dim, None)
    k1, k2 = jax.random.split(key)
    weight = last.weight.at[rows].add(scale * jax.random.normal(k1, last.weight[rows].shape, last.weight.dtype) / 8)
    bias = last.bias.at[rows].add(scale * jax.random.normal(k2, last.bias[rows].shape, last.bias.dtype))
    return eqx.tree_at(lambda m: (m.encoder.layers[-1].weight, m.encoder.layers[-1].bias), model, (weight, bias))


@pytest.mark.parametrize("kind", FLOWS)
def test_flow_posterior_log_q_is_the_change_of_variables(kind):
    """float64, random (non-identity) per-example flows of 2 layers on a 4-D latent: the fused
    `log q(z | x)` equals `log N(z0; mu, sigma) - log|det J_f(z0)|` with the Jacobian from `jacfwd`
    (examples independent: off-diagonal blocks zero) and the value of `log_prob(z)` by inversion."""
    with jax.enable_x64(True):
        model = FlowVAE(6, 4, kind, 2, hidden=(8,), key=jax.random.key(20))
        model = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
        model = perturbed(model, jax.random.key(21), 2.0)
        x = jax.random.bernoulli(jax.random.key(22), 0.5, (3, 6)).astype(jnp.float64)
        z, log_q, z0, pushed, jacobian, base, inverted = change_of_variables(model, x, jax.random.key(23))
        np.testing.assert_allclose(z, pushed, rtol=1e-12, atol=1e-12)
        assert float(jnp.max(jnp.abs(z - z0))) > 0.1  # a real transformation
        blocks = jnp.stack([jacobian[b, :, b, :] for b in range(3)])
        np.testing.assert_allclose(jnp.sum(jnp.abs(jacobian)) - jnp.sum(jnp.abs(blocks)), 0.0, atol=1e-14)
        sign, log_det = np.linalg.slogdet(np.asarray(blocks))
        assert np.all(sign > 0)
        np.testing.assert_allclose(log_q, base - log_det, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(inverted, log_q, rtol=1e-8, atol=1e-8)


@eqx.filter_jit
def change_of_variables(model: FlowVAE, x, key):
    """One compiled program: the fused draw `(z, log q)`, the base draw `z0` of the same key, the
    flow's `f(z0)`, its Jacobian `(B, d, B, d)`, `log N(z0)`, and `log_prob(z)` by inversion."""
    q = model.posterior(x)
    z, log_q = q.rsample_and_log_prob(key)
    z0 = q.base.rsample(key)
    return z, log_q, z0, q.bijector.forward(z0), jax.jacfwd(q.bijector.forward)(z0), q.base.log_prob(z0), q.log_prob(z)


def gaussian_twin(model: FlowVAE) -> GaussianVAE:
    """The GaussianVAE with `model`'s decoder and its encoder's `(mu, raw sigma)` outputs."""
    d = model.latent_dim
    hidden = tuple(layer.weight.shape[0] for layer in model.encoder.layers[:-1:2])
    twin = GaussianVAE(model.encoder.layers[0].weight.shape[1], d, hidden, key=jax.random.key(0))
    last = model.encoder.layers[-1]
    encoder = eqx.tree_at(
        lambda e: (e.layers[-1].weight, e.layers[-1].bias), model.encoder, (last.weight[: 2 * d], last.bias[: 2 * d])
    )
    return eqx.tree_at(lambda m: (m.encoder, m.decoder), twin, (encoder, model.decoder))


@pytest.mark.parametrize("kind", FLOWS)
def test_identity_flows_give_the_gaussian_vae_elbo(kind):
    """A fresh flow posterior (3 layers, each the identity) with the same noise: the Monte Carlo ELBO
    and IWAE_5 equal the Gaussian VAE's, which shares its encoder's (mu, sigma) and its decoder."""
    model = FlowVAE(64, 8, kind, 3, hidden=(32,), key=jax.random.key(24))
    twin = gaussian_twin(model)
    x = jax.random.bernoulli(jax.random.key(25), 0.3, (10, 64)).astype(jnp.float32)
    key = jax.random.key(26)
    bounds = eqx.filter_jit(lambda m: (elbo(m, x, key, kl="mc", num_samples=4), iwae_bound(m, x, key, 5)))
    for ours, gaussian in zip(bounds(model), bounds(twin), strict=True):
        np.testing.assert_allclose(ours, gaussian, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("kind", FLOWS)
def test_flow_posterior_bounds_are_ordered(kind, linear):
    """The linear-Gaussian model of above with a flow posterior (2 random layers on top of the linear
    encoder, widened to sd 2.1 so the importance weights stay bounded): E[ELBO] < E[IWAE_5] <
    E[IWAE_50] <= log p(x) (closed form), and the importance-sampled log p(x) at K = 10,000 recovers
    the closed form within 0.05 nats, which holds only if `log q` is the density the draws come from."""
    gaussian, x = linear
    model = FlowVAE(D, L, kind, 2, hidden=(), likelihood="gaussian", key=jax.random.key(27))
    last = model.encoder.layers[-1]
    encoder = eqx.tree_at(
        lambda e: (e.layers[-1].weight, e.layers[-1].bias),
        model.encoder,
        (
            last.weight.at[: 2 * L].set(gaussian.encoder.layers[0].weight),
            last.bias.at[: 2 * L].set(gaussian.encoder.layers[0].bias.at[L:].set(2.0)),  # sd 2.1: wide
        ),
    )
    model = eqx.tree_at(lambda m: (m.encoder, m.decoder), model, (encoder, gaussian.decoder))
    model = perturbed(model, jax.random.key(28), 0.25)
    log_px = eqx.filter_jit(exact_log_marginal)(model, x)
    closed, mc, iwae5, iwae50 = (mean_and_se(b) for b in repeated_bounds(model, x, keys(29, 400), kl="mc"))
    for (m1, s1), (m2, s2) in ((mc, iwae5), (iwae5, iwae50)):
        np.testing.assert_array_less(m1 + 3 * np.hypot(s1, s2), m2)
    np.testing.assert_array_less(iwae50[0], log_px + 3 * iwae50[1] + 1e-4)
    estimate = eqx.filter_jit(estimate_log_likelihood)(model, x, jax.random.key(30), k=10_000, chunk=500)
    np.testing.assert_allclose(estimate, log_px, atol=0.05)


@pytest.mark.parametrize("kind", ("gaussian", "iaf"))
def test_warmed_elbo_weighs_the_kl_by_beta(kind):
    """`warmed_elbo` at beta = 1 is `elbo` (same draws); it is linear in beta with slope -KL, the
    closed-form `kl_divergence` for the diagonal posterior and, for a random IAF posterior, the
    Monte Carlo `mean(log q - log p(z))` with `log q` from `log_prob` by inversion (not the fused
    draw); and `vae_loss` with `kl_warmup_steps = 4` trains it at `beta = (step + 1) / 4`."""
    from reparam.models.bnn import kl_weight
    from reparam.models.objectives import vae_loss, warmed_elbo

    key, x = jax.random.key(31), jax.random.bernoulli(jax.random.key(32), 0.4, (6, 10)).astype(jnp.float32)
    if kind == "gaussian":
        model, kl = GaussianVAE(10, 3, (16,), key=jax.random.key(33)), "closed"
    else:
        model, kl = perturbed(FlowVAE(10, 3, "iaf", 2, hidden=(16,), key=jax.random.key(33)), key, 1.0), "mc"

    @eqx.filter_jit
    def terms(model):
        q = model.posterior(x)
        if kl == "closed":
            reference_kl = kl_divergence(q, model.prior())
        else:
            z = q.rsample(key, (3,))
            reference_kl = jnp.mean(q.log_prob(z) - model.prior().log_prob(z), 0)
        warmed = [warmed_elbo(model, x, key, jnp.float32(b), kl=kl, num_samples=3) for b in (0.0, 0.25, 1.0)]
        return warmed, elbo(model, x, key, kl=kl, num_samples=3), reference_kl

    (at0, at_quarter, at1), full, reference_kl = terms(model)
    assert float(jnp.min(reference_kl)) > 0.01  # a real KL term
    np.testing.assert_allclose(at1, full, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(at0 - at1, reference_kl, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(at_quarter, at0 - 0.25 * reference_kl, rtol=1e-4, atol=1e-4)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    config = type("Config", (), dict(latent="gaussian", objective="elbo", num_samples=3, kl=kl, posterior=kind))
    state = type("State", (), dict(step=jnp.int32(0)))
    loss, _ = eqx.filter_jit(vae_loss(config, static, kl_warmup_steps=4))(params, x, key, state)
    np.testing.assert_allclose(loss, -jnp.mean(at_quarter), rtol=1e-5)
    assert float(kl_weight(jnp.int32(0), 4)) == 0.25

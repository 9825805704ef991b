"""Diffusion math (reparam.models.diffusion*), against oracles: on Gaussian data `N(m, S)` the optimal
network is linear and known (`gaussian_denoiser`), so every term of the bound, the ODE likelihood and
the samplers' output distributions have closed forms; the posterior is checked against Bayes' rule
and the schedules against Ho's and Nichol & Dhariwal's products of betas, in float64."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal
from scipy import stats

from reparam.models.diffusion import (
    PREDICTIONS,
    SCHEDULES,
    convert_prediction,
    diffusion_loss,
    discrete_denoiser,
    forward,
    gaussian_denoiser,
    guided,
    logits_denoiser,
    make_loss_fn,
    make_schedule,
    posterior,
    prediction_target,
    split_prediction,
    time_levels,
)
from reparam.models.diffusion_likelihood import (
    bound_times,
    decoder_nll,
    evaluate_bound,
    evaluate_ode,
    ode_bound,
    ode_log_likelihood,
    variational_bound,
)
from reparam.models.diffusion_sampling import sample

MEAN = np.array([0.5, -1.0])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])
DIM = 2


def reference_alpha_bar(schedule, t):
    """`alpha_bar_t` in float64 numpy from the schedule's definition (not from its `log_snr`)."""
    if schedule.discrete:  # log alpha_bar interpolated linearly between the levels i / T
        return np.exp(np.interp(t * schedule.steps, np.arange(schedule.steps + 1), schedule.log_alpha_bar))
    lam = schedule.log_snr_max + (schedule.log_snr_min - schedule.log_snr_max) * t
    return 1 / (1 + np.exp(-lam))


def reference_log_snr(schedule, t):
    alpha_bar = reference_alpha_bar(schedule, t)
    return np.log(alpha_bar) - np.log1p(-alpha_bar)


def coefficients(schedule, t):
    """`(alpha, sigma)` at time `t` in float64 numpy."""
    alpha_bar = reference_alpha_bar(schedule, t)
    return np.sqrt(alpha_bar), np.sqrt(1 - alpha_bar)


def marginal(schedule, t):
    """`q(z_t) = N(alpha m, alpha^2 S + sigma^2 I)` for data `N(MEAN, COV)`."""
    alpha, sigma = coefficients(schedule, t)
    return alpha * MEAN, alpha**2 * COV + sigma**2 * np.eye(DIM)


def oracle_eps(schedule, t):
    """`(C, d)` with the optimal `eps_hat(z) = C z + d` at time `t` (numpy float64, independent of the module)."""
    alpha, sigma = coefficients(schedule, t)
    precision = np.linalg.inv(alpha**2 * COV + sigma**2 * np.eye(DIM))
    return sigma * precision, -sigma * alpha * precision @ MEAN


def expected_eps_error(schedule, t, x):
    """`E_eps ||eps - eps_hat(alpha x + sigma eps)||^2` per row of `x`, in closed form."""
    alpha, sigma = coefficients(schedule, t)
    c, d = oracle_eps(schedule, t)
    residual = np.eye(DIM) - sigma * c
    return np.sum((alpha * x @ c.T + d) ** 2, axis=1) + np.sum(residual**2)


def closed_form_prior(schedule, x):
    """`L_T = KL(N(alpha_1 x, sigma_1^2 I) || N(0, I))` per row of `x`."""
    alpha_1, sigma_1 = coefficients(schedule, 1.0)
    return 0.5 * np.sum(alpha_1**2 * x**2 + sigma_1**2 - 1 - np.log(sigma_1**2), axis=1)


def closed_form_bound(schedule, x):
    """The oracle's bound terms per example: prior, KL terms `(N, n)`, Gaussian decoder."""
    lam = functools.partial(reference_log_snr, schedule)
    prior = closed_form_prior(schedule, x)
    times = time_levels(schedule)
    low = schedule.lowest
    terms = np.stack(
        [
            0.5 * np.expm1(lam(s) - lam(t)) * expected_eps_error(schedule, t, x)
            for s, t in zip(times[low:-1], times[low + 1 :], strict=True)
        ],
        axis=1,
    )
    alpha, sigma = coefficients(schedule, times[low])
    c, d = oracle_eps(schedule, times[low])
    a, b = (np.eye(DIM) - sigma * c) / alpha, -sigma * d / alpha  # x0_hat(z) = a z + b
    scale2 = sigma**2 / alpha**2
    # x - x0_hat = (I - alpha a) x - b - sigma a eps: E||.||^2 = ||(I - alpha a) x - b||^2 + sigma^2 ||a||_F^2.
    square = np.sum((x @ (np.eye(DIM) - alpha * a).T - b) ** 2, axis=1) + sigma**2 * np.sum(a**2)
    decoder = 0.5 * DIM * np.log(2 * np.pi * scale2) + square / (2 * scale2)
    return prior, terms, decoder


def gaussian_data(key, n):
    return jax.random.multivariate_normal(key, jnp.asarray(MEAN), jnp.asarray(COV), (n,))


# ------------------------------------------------------------------------------------------------ schedules
def test_discrete_schedules_match_products_of_betas():
    steps = 1000
    linear = make_schedule("linear", steps)
    i = np.arange(steps + 1)
    alpha_bar = np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.02, steps))])
    np.testing.assert_allclose(linear.alpha_bar(jnp.asarray(i / steps)), alpha_bar, rtol=1e-10)
    cosine = make_schedule("cosine", steps)
    f = np.cos((i / steps + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(cosine.alpha_bar(jnp.asarray(i[:-1] / steps)), f[:-1] / f[0], rtol=1e-9)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_endpoints_monotone_and_inverse(name):
    schedule = make_schedule(name, 1000)
    t = jnp.linspace(0.0, 1.0, 2001)
    lam = schedule.log_snr(t)
    assert np.all(np.diff(np.asarray(lam)) < 0)
    assert float(schedule.alpha_bar(jnp.asarray(0.0))) > 1 - 1e-5  # alpha_bar_0 ~ 1 (exactly 1 when discrete)
    assert float(schedule.alpha_bar(jnp.asarray(1.0))) < 1e-2  # alpha_bar_T small
    # L_T of unit-scale data is tiny.
    assert float(closed_form_prior(schedule, np.ones((1, DIM)))[0]) < 2e-2
    inner = t[1:-1]
    np.testing.assert_allclose(schedule.time_at(schedule.log_snr(inner)), inner, atol=1e-9)


def test_make_schedule_takes_vdm_bounds():
    """The bounds set vdm's ends (defaults VDM's 13.3 and -5), one given alone keeps the other's default."""
    schedule = make_schedule("vdm", 10, log_snr_max=3.0, log_snr_min=-6.0)
    np.testing.assert_allclose(schedule.log_snr(jnp.array([0.0, 0.5, 1.0])), [3.0, -1.5, -6.0], rtol=1e-6)
    np.testing.assert_allclose(make_schedule("vdm", 10, log_snr_max=8).log_snr(jnp.array([0.0, 1.0])), [8.0, -5.0])
    np.testing.assert_allclose(make_schedule("vdm", 10).log_snr(jnp.array([0.0, 1.0])), [13.3, -5.0], rtol=1e-6)


def test_time_levels():
    np.testing.assert_allclose(time_levels(make_schedule("linear", 10), 5), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    levels = time_levels(make_schedule("cosine", 1000), 7)
    assert np.all(np.diff(levels) > 0) and np.allclose(levels * 1000, np.round(levels * 1000))
    np.testing.assert_allclose(time_levels(make_schedule("vdm", 3), 4), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(bound_times(make_schedule("linear", 4)), [0.5, 0.75, 1.0])
    np.testing.assert_allclose(bound_times(make_schedule("vdm", 4)), [0.25, 0.5, 0.75, 1.0])


# --------------------------------------------------------------------------------- forward and posterior
def test_forward_rsample_matches_q_moments():
    schedule = make_schedule("cosine", 100)
    x0 = jnp.array([[1.0, -2.0], [0.3, 0.0]])
    t = jnp.array([0.3, 0.9])
    n = 20000
    z = forward(schedule, x0, t).rsample(jax.random.key(0), (n,))
    alpha, sigma = np.array([coefficients(schedule, s) for s in (0.3, 0.9)]).T
    mean, sd = alpha[:, None] * np.asarray(x0), sigma[:, None] * np.ones((2, 2))
    assert np.all(np.abs(np.mean(z, axis=0) - mean) < 5 * sd / np.sqrt(n))
    assert np.all(np.abs(np.var(z, axis=0) / sd**2 - 1) < 5 * np.sqrt(2 / n))


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_is_bayes_rule(name):
    schedule = make_schedule(name, 50)
    x0 = jnp.array([[0.7], [-1.2]])
    s, t = jnp.array([0.2, 0.5]), jnp.array([0.3, 0.52])
    z_t = jnp.array([[0.4], [-0.3]])
    z_s = jnp.linspace(-2.0, 2.0, 9)[:, None, None]  # (9, 2, 1): points at which to compare densities
    (a_s, g_s), (a_t, g_t) = (
        np.array([coefficients(schedule, v) for v in (0.2, 0.5)]).T,
        np.array([coefficients(schedule, v) for v in (0.3, 0.52)]).T,
    )
    a_ts = a_t / a_s
    var_ts = g_t**2 - a_ts**2 * g_s**2  # q(z_t | z_s) = N(a_ts z_s, var_ts)
    zs, zt, x = np.asarray(z_s)[..., 0], np.asarray(z_t)[:, 0], np.asarray(x0)[:, 0]
    bayes = (
        stats.norm.logpdf(zt, a_ts * zs, np.sqrt(var_ts))
        + stats.norm.logpdf(zs, a_s * x, g_s)
        - stats.norm.logpdf(zt, a_t * x, g_t)
    )
    got = posterior(schedule, z_t, x0, s, t).log_prob(z_s)[..., 0]
    np.testing.assert_allclose(got, bayes, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------- parameterizations
def test_prediction_conversions_round_trip():
    key = jax.random.split(jax.random.key(0), 3)
    x0, eps = jax.random.normal(key[0], (5, 3)), jax.random.normal(key[1], (5, 3))
    alpha = jax.random.uniform(key[2], (5, 1), minval=0.05, maxval=0.99)
    sigma = jnp.sqrt(1 - alpha**2)
    z = alpha * x0 + sigma * eps
    for source in PREDICTIONS:
        output = prediction_target(x0, eps, alpha, sigma, source)
        got_x0, got_eps = split_prediction(output, z, alpha, sigma, source)
        np.testing.assert_allclose(got_x0, x0, atol=1e-10)
        np.testing.assert_allclose(got_eps, eps, atol=1e-10)
        for target in PREDICTIONS:
            there = convert_prediction(output, z, alpha, sigma, source=source, target=target)
            np.testing.assert_allclose(there, prediction_target(x0, eps, alpha, sigma, target), atol=1e-10)
            back = convert_prediction(there, z, alpha, sigma, source=target, target=source)
            np.testing.assert_allclose(back, output, atol=1e-10)


# ------------------------------------------------------------------------------------------ bound (oracle)
@pytest.mark.parametrize(("name", "prediction"), [("linear", "eps"), ("cosine", "v"), ("vdm", "x0")])
def test_bound_terms_match_closed_form(name, prediction):
    schedule = make_schedule(name, 20)
    x = gaussian_data(jax.random.key(0), 4000)
    predict = gaussian_denoiser(MEAN, COV, schedule, prediction=prediction)
    bound = jax.jit(lambda x, k: variational_bound(predict, schedule, x, k, prediction=prediction))(
        x, jax.random.key(1)
    )
    prior, terms, decoder = closed_form_bound(schedule, np.asarray(x))
    np.testing.assert_allclose(bound["prior"], prior, rtol=1e-9, atol=1e-12)
    for got, want in [
        (bound["terms"], terms),
        (bound["decoder"], decoder),
        (bound["total"], prior + terms.sum(1) + decoder),
    ]:
        diff = np.asarray(got) - want  # only the bound's own noise (eps), per example
        se = np.std(diff, axis=0) / np.sqrt(len(diff))
        assert np.all(np.abs(np.mean(diff, axis=0)) < 5 * se + 1e-9), (np.mean(diff, axis=0), se)


@pytest.mark.parametrize("name", SCHEDULES)
def test_ode_likelihood_is_exact_and_above_the_elbo(name):
    schedule = make_schedule(name, 20)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    x = gaussian_data(jax.random.key(0), 200)
    t_low = schedule.lowest / schedule.steps
    m1, s1 = marginal(schedule, 1.0)
    exact_prior = lambda z: multivariate_normal.logpdf(z, jnp.asarray(m1), jnp.asarray(s1))  # noqa: E731
    # With the exact score and the exact q(z_1), the ODE carries q(z_1) exactly onto q(z_{t_low}).
    exact = multivariate_normal.logpdf(x, *(jnp.asarray(a) for a in marginal(schedule, t_low)))
    ode = jax.jit(functools.partial(ode_log_likelihood, predict, schedule), static_argnames=("steps", "prior_log_prob"))
    fine = ode(x, steps=80, prior_log_prob=exact_prior)
    assert np.max(np.abs(fine - exact)) < 5e-3
    if name == "vdm":  # Heun is second order: 4x the steps, ~16x smaller error
        coarse = ode(x, steps=20, prior_log_prob=exact_prior)
        assert np.max(np.abs(fine - exact)) < np.max(np.abs(coarse - exact)) / 8
    # The model's log-likelihood (standard-normal prior) sits above its bound on average.
    model = ode(x, steps=80, prior_log_prob=None)
    bound = jax.jit(lambda x, k: variational_bound(predict, schedule, x, k)["total"])(x, jax.random.key(1))
    assert float(np.mean(model)) > -float(np.mean(bound))
    # ... and the ODE likelihood is the data's (N(m, S) smoothed by the lowest noise level) to 0.05 nats.
    assert abs(float(np.mean(model - exact))) < 0.05


@pytest.mark.parametrize("decoder", ["bernoulli", "discretized"])
def test_discrete_data_bounds_sit_just_above_the_exact_nll(decoder):
    """Independent discrete coordinates with known probabilities and their exact network
    (`discrete_denoiser`): the bound on the discrete NLL is above `-sum_d log pi_{x_d}` and, at 1000
    levels, within a few hundredths of a nat per coordinate of it; the ODE bound likewise."""
    dim, levels = 4, 2 if decoder == "bernoulli" else 17
    values = np.linspace(-1.0, 1.0, levels)
    log_probs = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (dim, levels)))
    index = jax.random.categorical(jax.random.key(1), log_probs, shape=(1000, dim))
    x = jnp.asarray(values)[index]
    exact = -np.sum(np.take_along_axis(np.asarray(log_probs).T, np.asarray(index), axis=0)[None], axis=(0, 2))
    schedule = make_schedule("vdm", 1000)
    predict = discrete_denoiser(values, log_probs, schedule)
    options = {"decoder": decoder, "levels": levels}
    bound = jax.jit(lambda x, k: variational_bound(predict, schedule, x, k, **options)["total"])(x, jax.random.key(2))
    gap = np.asarray(bound) - exact
    se = np.std(gap) / np.sqrt(gap.size)
    assert -5 * se < np.mean(gap) < 0.05 * dim, (np.mean(gap), se)
    if decoder == "bernoulli":
        ode = jax.jit(lambda x, k: ode_bound(predict, schedule, x, k, steps=400, **options)["total"])
        gap = np.asarray(ode(x[:300], jax.random.key(3))) - exact[:300]
        se = np.std(gap) / np.sqrt(gap.size)
        assert -5 * se - 0.01 < np.mean(gap) < 0.05 * dim, (np.mean(gap), se)  # 0.01: Heun's error at 400 steps


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("levels", [2, 17])
def test_logits_denoiser_with_fixed_logits_is_the_exact_independent_denoiser(prediction, levels):
    """A logits network that ignores its input and returns the per-coordinate `log pi` is the exact
    network of independent coordinates (`discrete_denoiser`), in every parameterization; any logits,
    however extreme, keep `x0_hat` on the grid's range; a context reaches the logits network."""
    dim = 3
    values = np.linspace(-1.0, 1.0, levels)
    log_probs = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (dim, levels)))
    schedule = make_schedule("cosine", 100)
    z = 2.0 * jax.random.normal(jax.random.key(1), (50, dim))
    t = jax.random.uniform(jax.random.key(2), (50,), minval=0.01, maxval=0.99)
    fixed = lambda z, t: jnp.broadcast_to(log_probs, (*z.shape, levels))  # noqa: E731
    ours = logits_denoiser(fixed, values, schedule, prediction=prediction)(z, t)
    exact = discrete_denoiser(values, log_probs, schedule, prediction=prediction)(z, t)
    np.testing.assert_allclose(ours, exact, rtol=1e-5, atol=1e-5)

    wild = lambda z, t, c: 1e4 * jax.random.normal(jax.random.key(3), (*z.shape, levels)) * c[:, None, None]  # noqa: E731
    x0 = logits_denoiser(wild, values, schedule, prediction="x0")(z, t, jnp.ones(50))
    assert np.all(np.isfinite(x0)) and np.all(np.abs(x0) <= 1.0)
    assert not np.allclose(x0, logits_denoiser(wild, values, schedule, prediction="x0")(z, t, jnp.zeros(50)))


# -------------------------------------------------------------------------------------------------- decoders
def test_decoders_normalise_and_match_scipy():
    x0_hat = jnp.array([[-3.0, -0.4, 0.0, 0.2, 0.9, 30.0]]).T  # (6, 1): examples with one pixel
    scale = jnp.array([[0.05], [0.3], [1.0], [0.01], [0.2], [0.01]])
    nll = lambda x, d, **kw: decoder_nll(x, x0_hat, scale, d, **kw)  # noqa: E731
    total = np.exp(-nll(jnp.ones((6, 1)), "bernoulli")) + np.exp(-nll(-jnp.ones((6, 1)), "bernoulli"))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    levels = 17
    values = np.linspace(-1, 1, levels)
    masses = np.stack([np.exp(-nll(jnp.full((6, 1), v), "discretized", levels=levels)) for v in values])
    np.testing.assert_allclose(masses.sum(0), 1.0, rtol=1e-10)
    edges = np.concatenate([[-np.inf], (values[1:] + values[:-1]) / 2, [np.inf]])
    lower, upper = ((e[:, None] - np.asarray(x0_hat)[:, 0]) / np.asarray(scale)[:, 0] for e in (edges[:-1], edges[1:]))
    # scipy without cancellation: upper tails right of the mean, lower tails left of it.
    reference = np.where(
        lower > 0, stats.norm.sf(lower) - stats.norm.sf(upper), stats.norm.cdf(upper) - stats.norm.cdf(lower)
    )
    np.testing.assert_allclose(masses, reference, rtol=1e-8, atol=1e-300)
    # Far from the cell the log-mass stays finite (no log(0)): x0_hat = 30 at scale 0.01 scoring x = -1.
    far = nll(-jnp.ones((6, 1)), "discretized", levels=levels)
    assert np.all(np.isfinite(far)) and float(far[5]) > 1e6


# -------------------------------------------------------------------------------------------------- samplers
def test_ddim_with_eta_one_and_all_steps_is_ddpm():
    schedule = make_schedule("linear", 50)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    run = jax.jit(
        lambda sampler, key: sample(predict, schedule, key, (20000, DIM), sampler=sampler, eta=1.0), static_argnums=0
    )
    ddpm, ddim, ddpm_other = (
        run("ddpm", jax.random.key(0)),
        run("ddim", jax.random.key(0)),
        run("ddpm", jax.random.key(1)),
    )
    # Same noise: the two update formulas agree draw by draw ...
    np.testing.assert_allclose(ddim, ddpm, atol=1e-9)
    # ... and independent draws agree in their moments (the tolerance: 5 standard errors of a difference).
    n = ddpm.shape[0]
    se_mean = np.sqrt(2 * np.diag(COV) / n)
    assert np.all(np.abs(np.mean(ddim, 0) - np.mean(ddpm_other, 0)) < 5 * se_mean)
    se_cov = np.sqrt(2 * (COV**2 + np.outer(np.diag(COV), np.diag(COV))) / n)
    assert np.all(np.abs(np.cov(ddim.T) - np.cov(ddpm_other.T)) < 5 * se_cov)


def test_ddim_many_steps_approaches_the_ode_and_the_ode_reaches_the_data():
    schedule = make_schedule("vdm", 1000)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    key, shape = jax.random.key(3), (4000, DIM)
    run = jax.jit(
        lambda sampler, steps: sample(predict, schedule, key, shape, sampler=sampler, steps=steps),
        static_argnums=(0, 1),
    )
    reference = run("ode", 400)
    errors = [float(np.max(np.abs(run("ddim", k) - reference))) for k in (25, 100, 400)]
    # DDIM is Euler on the ODE: first order, 4x the steps ~ 4x smaller distance (measured 0.33, 0.084, 0.021).
    assert errors[0] / errors[1] > 3 and errors[1] / errors[2] > 3 and errors[2] < 0.03
    # The ODE maps N(0, I) onto the data up to q(z_1) != N(0, I) (alpha_1^2 = 0.0067): moments within 5 SE + 1%.
    n = shape[0]
    assert np.all(np.abs(np.mean(reference, 0) - MEAN) < 5 * np.sqrt(np.diag(COV) / n) + 0.01)
    assert np.all(np.abs(np.cov(reference.T) - COV) < 5 * np.sqrt(2 / n) + 0.01)


def test_ode_sampler_is_stable_over_the_cosine_schedules_first_step():
    """Ten ODE steps on cosine(1000): the first spans lambda -19.8 -> -4.6 (Heun in the eps form blew up here)."""
    schedule = make_schedule("cosine", 1000)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    x = jax.jit(lambda k: sample(predict, schedule, k, (4000, DIM), sampler="ode", steps=10))(jax.random.key(0))
    assert np.all(np.abs(np.mean(x, 0) - MEAN) < 0.05)
    assert np.all(np.abs(np.cov(x.T) - COV) < 0.1)  # measured 0.07 below on the variances at 10 steps


def test_sample_snapshots_and_jit():
    schedule = make_schedule("vdm", 8)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    key = jax.random.key(0)
    x, times, states = jax.jit(lambda k: sample(predict, schedule, k, (3, DIM), sampler="ddpm", snapshots=5))(key)
    np.testing.assert_allclose(times, [1.0, 0.75, 0.5, 0.25, 0.0])
    assert states.shape == (5, 3, DIM)
    np.testing.assert_allclose(states[0], jax.random.normal(jax.random.split(key)[0], (3, DIM)))
    np.testing.assert_allclose(states[-1], x)
    np.testing.assert_allclose(x, sample(predict, schedule, key, (3, DIM), sampler="ddpm"), atol=1e-12)
    clipped = sample(predict, schedule, key, (64, DIM), sampler="ddim", steps=4, clip=0.5)
    assert float(jnp.max(jnp.abs(clipped))) <= 0.5


# ------------------------------------------------------------------------------------------- loss, guidance
def test_elbo_weighted_loss_estimates_the_bound():
    schedule = make_schedule("linear", 20)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    x = gaussian_data(jax.random.key(0), 20000)
    _, terms, _ = closed_form_bound(schedule, np.asarray(x))
    # The decoder's quadratic at level 1 is E||eps - eps_hat||^2 / 2.
    want = np.mean(terms.sum(1) + 0.5 * expected_eps_error(schedule, 1 / 20, np.asarray(x)))
    loss = lambda k: diffusion_loss(predict, schedule, x, k, weighting="elbo")[0]  # noqa: E731
    losses = np.asarray(jax.jit(jax.vmap(loss))(jax.random.split(jax.random.key(1), 8)))
    assert abs(np.mean(losses) - want) < 5 * np.std(losses) / np.sqrt(len(losses))
    simple, metrics = diffusion_loss(predict, schedule, x, jax.random.key(2))
    assert abs(float(simple) - float(metrics["mse_eps"])) < 1e-12  # eps prediction: simple = eps MSE


def test_loss_fn_drops_the_context_at_the_given_rate():
    schedule = make_schedule("vdm", 10)
    null, c, p = 5, 10.0, 0.3

    def apply(params, z, t, context):  # predicts eps = 0 without a label, c with one
        return jnp.where((context == null)[:, None], 0.0, params * c) * jnp.ones_like(z)

    loss_fn = make_loss_fn(apply, schedule, null_context=null, drop_probability=p)
    n = 20000
    batch = (jnp.zeros((n, DIM)), jnp.zeros(n, jnp.int32))
    loss, _ = loss_fn(jnp.ones(()), batch, jax.random.key(0), None)
    dropped = (c**2 + 1 - float(loss)) / c**2  # E(out - eps)^2 = (1 - dropped)(c^2 + 1) + dropped
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n) + 5 * np.sqrt(2 / (n * DIM))
    unconditional = make_loss_fn(lambda params, z, t: params * z, schedule)
    direct = diffusion_loss(lambda z, t: 2.0 * z, schedule, batch[0] + 1, jax.random.key(1))[0]
    np.testing.assert_allclose(unconditional(jnp.asarray(2.0), batch[0] + 1, jax.random.key(1), None)[0], direct)


def test_guided_combines_conditional_and_null_predictions():
    def predict(z, t, context):
        return z * (1.0 + context[:, None]) + t[:, None]

    z, t, context = jnp.ones((3, 2)), jnp.array([0.1, 0.5, 0.9]), jnp.array([0.0, 1.0, 2.0])
    w, null = 2.5, -1.0
    want = (1 + w) * predict(z, t, context) - w * predict(z, t, jnp.full(3, null))
    np.testing.assert_allclose(guided(predict, w, null)(z, t, context), want)
    np.testing.assert_allclose(guided(predict, 0.0, null)(z, t, context), predict(z, t, context))


# ----------------------------------------------------------------------------------------- chunked evaluation
def test_chunked_evaluators_with_context():
    schedule = make_schedule("vdm", 10)
    oracle = gaussian_denoiser(MEAN, COV, schedule)
    predict = lambda z, t, shift: oracle(z, t) + 0.0 * shift[:, None]  # noqa: E731
    x = gaussian_data(jax.random.key(0), 7)
    data = (x, jnp.arange(7.0))
    bound = evaluate_bound(predict, schedule, data, jax.random.key(1), batch_size=3)
    assert bound["terms"].shape == (7, 10) and bound["total"].shape == (7,)
    np.testing.assert_allclose(bound["prior"], closed_form_prior(schedule, np.asarray(x)), rtol=1e-9)
    nll = evaluate_ode(predict, schedule, data, jax.random.key(1), batch_size=3, steps=5)["nll"]
    np.testing.assert_allclose(nll, -ode_log_likelihood(oracle, schedule, x, steps=5), rtol=1e-10)
    terms = evaluate_ode(oracle, schedule, x, jax.random.key(1), batch_size=4, steps=5, decoder="gaussian")
    assert set(terms) == {"decoder", "ode", "entropy", "total"} and terms["total"].shape == (7,)


# -------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_schedule("quadratic", 10), "unknown schedule"),
        (lambda: make_schedule("linear", 0), "steps must be a positive integer"),
        (lambda: make_schedule("vdm", 2.5), "steps must be a positive integer"),
        (lambda: make_schedule("linear", 10, log_snr_max=3.0), "set the vdm schedule; linear fixes its own"),
        (lambda: make_schedule("vdm", 10, log_snr_max=float("inf")), "log_snr_max must be a finite number"),
        (lambda: make_schedule("vdm", 10, log_snr_min=float("nan")), "log_snr_min must be a finite number"),
        (lambda: make_schedule("vdm", 10, log_snr_max=-6.0, log_snr_min=3.0), "must exceed log_snr_min"),
        (lambda: time_levels(make_schedule("linear", 10), 11), "must not exceed the 10 training steps"),
        (lambda: sample(None, make_schedule("vdm", 10), jax.random.key(0), (1, 2), sampler="euler"), "unknown sampler"),
        (lambda: sample(None, make_schedule("vdm", 10), jax.random.key(0), (1, 2), eta=2.0), "eta must be in"),
        (lambda: sample(None, make_schedule("vdm", 10), jax.random.key(0), (1, 2), clip=0.0), "clip must be positive"),
        (lambda: sample(None, make_schedule("linear", 10), jax.random.key(0), (1, 2), steps=20), "must not exceed"),
        (
            lambda: sample(None, make_schedule("vdm", 10), jax.random.key(0), (1, 2), prediction="score"),
            "unknown prediction",
        ),
        (
            lambda: diffusion_loss(
                None, make_schedule("vdm", 10), jnp.ones((1, 2)), jax.random.key(0), weighting="snr"
            ),
            "unknown weighting",
        ),
        (lambda: decoder_nll(jnp.ones(1), jnp.ones(1), jnp.ones(1), "poisson"), "unknown decoder"),
        (lambda: decoder_nll(jnp.ones(1), jnp.ones(1), jnp.ones(1), "discretized", levels=1), "levels must be"),
        (lambda: ode_log_likelihood(None, make_schedule("linear", 10), jnp.ones((1, 2)), t_start=0.0), "t_start"),
        (lambda: ode_log_likelihood(None, make_schedule("vdm", 10), jnp.ones((1, 2)), steps=0), "steps must be"),
        (lambda: make_loss_fn(None, make_schedule("vdm", 10), drop_probability=0.1), "needs a null_context"),
    ],
)
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------- float32
@pytest.mark.usefixtures("as_users_run_it")
def test_float32_under_jit_with_the_schedule_as_an_argument():
    schedule = make_schedule("cosine", 50)  # the extreme one: lambda from +inf at t = 0 to -15 at t = 1
    x = gaussian_data(jax.random.key(0), 64).astype(jnp.float32)

    @eqx.filter_jit
    def run(schedule, x, key):
        predict = gaussian_denoiser(MEAN.astype(np.float32), COV.astype(np.float32), schedule)
        k_bound, k_sample = jax.random.split(key)
        bound = variational_bound(predict, schedule, x, k_bound)
        ode = ode_log_likelihood(predict, schedule, x, steps=20)
        samples = sample(predict, schedule, k_sample, x.shape, sampler="ode", steps=10)
        return bound, ode, samples

    bound, ode, samples = run(schedule, x, jax.random.key(1))
    assert bound["total"].dtype == ode.dtype == samples.dtype == jnp.float32
    assert all(np.all(np.isfinite(v)) for v in (*bound.values(), ode, samples))
    exact = stats.multivariate_normal.logpdf(np.asarray(x, np.float64), MEAN, COV)
    assert abs(float(np.mean(ode)) - float(np.mean(exact))) < 0.1

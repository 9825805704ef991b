"""Diffusion math (reparam.models.diffusion*): oracles on Gaussian data, where the optimal network is
linear and known (`gaussian_denoiser`), so the bound, the ODE likelihood and the samplers have closed
forms to meet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

from reparam.models.diffusion import (
    SCHEDULES,
    gaussian_denoiser,
    make_schedule,
)
from reparam.models.diffusion_likelihood import ode_log_likelihood, variational_bound
from reparam.models.diffusion_sampling import sample

MEAN = np.array([0.5, -1.0])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])


def marginal(schedule, t):
    """`q(z_t) = N(alpha m, alpha^2 S + sigma^2 I)` for data `N(MEAN, COV)`."""
    alpha_bar = float(schedule.alpha_bar(jnp.asarray(t, jnp.float64)))
    return np.sqrt(alpha_bar) * MEAN, alpha_bar * COV + (1 - alpha_bar) * np.eye(2)


@pytest.mark.parametrize("name", SCHEDULES)
def test_smoke_bound_ode_and_samplers_run(name):
    schedule = make_schedule(name, 20)
    predict = gaussian_denoiser(MEAN, COV, schedule)
    x = jax.random.multivariate_normal(jax.random.key(0), MEAN, COV, (8,))
    bound = variational_bound(predict, schedule, x, jax.random.key(1))
    assert bound["terms"].shape == (8, 20 - schedule.lowest)
    assert np.all(np.isfinite(bound["total"]))
    t0 = schedule.lowest / schedule.steps
    m1, s1 = marginal(schedule, 1.0)
    ll = ode_log_likelihood(
        predict, schedule, x, steps=50, prior_log_prob=lambda z: multivariate_normal.logpdf(z, m1, s1)
    )
    np.testing.assert_allclose(ll, multivariate_normal.logpdf(x, *marginal(schedule, t0)), atol=5e-3)
    for sampler in ("ddpm", "ddim", "ode"):
        assert sample(predict, schedule, jax.random.key(2), (4, 2), sampler=sampler, steps=10).shape == (4, 2)

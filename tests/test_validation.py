"""Invalid parameters raise a clear one-line error eagerly and under jit; validate=False opts out;
values outside the support get -inf (never NaN), with finite gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reparam as rp

NAN, INF = float("nan"), float("inf")
TRIL = np.array([[1.0, 0.0], [0.5, 1.0]])


def mvn_with_tril(rows):
    return rp.MultivariateNormal(jnp.zeros(2), jnp.array(rows))


INVALID = [
    ("normal scale 0", lambda v: rp.Normal(0.0, v), 0.0, "Normal: scale must be positive and finite"),
    ("normal scale < 0", lambda v: rp.Normal(0.0, v), -1.0, "Normal: scale must be positive"),
    ("normal scale nan", lambda v: rp.Normal(0.0, v), NAN, "Normal: scale must be positive"),
    ("normal scale inf", lambda v: rp.Normal(0.0, v), INF, "Normal: scale must be positive"),
    ("normal loc nan", lambda v: rp.Normal(v, 1.0), NAN, "Normal: loc must be finite"),
    ("laplace scale", lambda v: rp.Laplace(0.0, v), -2.0, "Laplace: scale must be positive"),
    ("logistic scale", lambda v: rp.Logistic(0.0, v), 0.0, "Logistic: scale must be positive"),
    ("gumbel scale", lambda v: rp.Gumbel(0.0, v), 0.0, "Gumbel: scale must be positive"),
    ("lognormal scale", lambda v: rp.LogNormal(0.0, v), 0.0, "Normal: scale must be positive"),
    ("uniform low >= high", lambda v: rp.Uniform(v, 1.0), 1.0, "Uniform: need finite low < high"),
    ("uniform inf", lambda v: rp.Uniform(0.0, v), INF, "Uniform: need finite low < high"),
    ("gamma concentration", lambda v: rp.Gamma(v, 1.0), 0.0, "Gamma: concentration must be positive"),
    ("gamma rate", lambda v: rp.Gamma(1.0, v), -1.0, "Gamma: rate must be positive"),
    ("beta a", lambda v: rp.Beta(v, 1.0), 0.0, "Beta: a must be positive"),
    ("beta b", lambda v: rp.Beta(1.0, v), NAN, "Beta: b must be positive"),
    (
        "dirichlet",
        lambda v: rp.Dirichlet(jnp.stack([jnp.asarray(v), jnp.asarray(1.0)])),
        0.0,
        "Dirichlet: concentration must be positive",
    ),
    ("tanh-normal bounds", lambda v: rp.TanhNormal(0.0, 1.0, v, 1.0), 2.0, "TanhNormal: need finite low < high"),
    ("tanh-normal scale", lambda v: rp.TanhNormal(0.0, v), 0.0, "Normal: scale must be positive"),
    (
        "relaxed temperature 0",
        lambda v: rp.RelaxedOneHotCategorical(v, jnp.zeros(3)),
        0.0,
        "temperature must be positive",
    ),
    ("relaxed temperature < 0", lambda v: rp.RelaxedBernoulli(v, 0.0), -0.5, "temperature must be positive"),
    (
        "categorical nan",
        lambda v: rp.Categorical(jnp.stack([jnp.asarray(v), jnp.asarray(0.0)])),
        NAN,
        "Categorical: logits must not be NaN",
    ),
    ("bernoulli nan", lambda v: rp.Bernoulli(v), NAN, "Bernoulli: logits must be finite"),
    ("mvn not lower", lambda v: mvn_with_tril([[1.0, v], [0.0, 1.0]]), 0.5, "lower triangular"),
    ("mvn singular", lambda v: mvn_with_tril([[1.0, 0.0], [0.3, v]]), 0.0, "positive diagonal"),
    ("mvn negative diagonal", lambda v: mvn_with_tril([[v, 0.0], [0.3, 1.0]]), -1.0, "positive diagonal"),
    (
        "mvn loc nan",
        lambda v: rp.MultivariateNormal(jnp.stack([jnp.asarray(v), jnp.asarray(0.0)]), TRIL),
        NAN,
        "loc must be finite",
    ),
]
IDS = [case[0] for case in INVALID]


@pytest.mark.parametrize("name,make,bad,message", INVALID, ids=IDS)
def test_invalid_parameters_raise_eagerly(name, make, bad, message):
    with pytest.raises(ValueError, match=message) as info:
        make(jnp.asarray(bad))
    assert "\n" not in str(info.value)  # one line
    assert "validate=False" in str(info.value)


@pytest.mark.parametrize("name,make,bad,message", INVALID, ids=IDS)
def test_invalid_parameters_raise_under_jit(name, make, bad, message):
    def use(v):
        d = make(v)
        relaxed = isinstance(d, (rp.RelaxedOneHotCategorical, rp.RelaxedBernoulli))
        return d.rsample(jax.random.key(0)) if relaxed else d.log_prob(d.mode())

    with pytest.raises(Exception, match=message):
        jax.block_until_ready(jax.jit(use)(jnp.asarray(bad)))


def test_validate_false_opts_out():
    assert rp.Normal(0.0, -1.0, validate=False).scale == -1.0  # no error is the point
    rp.Gamma(0.0, 1.0, validate=False)
    rp.MultivariateNormal(jnp.zeros(2), jnp.array([[1.0, 2.0], [0.0, 0.0]]), validate=False)
    jax.jit(lambda s: rp.Normal(0.0, s, validate=False).log_prob(1.0))(-1.0)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"Normal: parameter shapes do not broadcast \(loc \(3,\), scale \(2,\)\)"):
        rp.Normal(jnp.zeros(3), jnp.ones(2))
    with pytest.raises(ValueError, match=r"MultivariateNormal: need loc of shape \(\.\.\., d\)"):
        rp.MultivariateNormal(jnp.zeros(3), jnp.eye(2))
    with pytest.raises(ValueError, match="Dirichlet: concentration must have a last axis of size K >= 2"):
        rp.Dirichlet(jnp.ones(1))
    with pytest.raises(ValueError, match="Independent: reinterpreted_batch_ndims"):
        rp.Independent(rp.Normal(jnp.zeros(3), 1.0), 2)


def test_broadcasting_of_parameters():
    d = rp.Normal(jnp.zeros((4, 1)), jnp.ones(3))
    assert d.batch_shape == (4, 3)
    assert d.rsample(jax.random.key(0), (2,)).shape == (2, 4, 3)
    assert d.log_prob(jnp.zeros(3)).shape == (4, 3)


OUTSIDE = [
    ("uniform", rp.Uniform(0.0, 1.0), [-0.1, 1.1]),
    ("gamma", rp.Gamma(2.0, 1.0), [-1.0]),
    ("beta", rp.Beta(2.0, 2.0), [-0.1, 1.5]),
    ("lognormal", rp.LogNormal(0.0, 1.0), [-1.0, 0.0]),
    ("tanh-normal", rp.TanhNormal(0.0, 1.0, -2.0, 3.0), [-2.5, 3.5]),
    ("tanh-normal-unit", rp.TanhNormal(0.0, 1.0), [-1.5, 1.0001]),
    ("relaxed-bernoulli", rp.RelaxedBernoulli(0.5, 0.0), [-0.5, 1.5]),
]


@pytest.mark.parametrize("name,dist,values", OUTSIDE, ids=[o[0] for o in OUTSIDE])
def test_outside_the_support_is_minus_infinity_with_finite_gradients(name, dist, values):
    x = jnp.asarray(values)
    lp = dist.log_prob(x)
    assert np.all(np.asarray(lp) == -np.inf), lp
    grads = jax.grad(lambda d: jnp.sum(jnp.where(jnp.isfinite(d.log_prob(x)), d.log_prob(x), 0.0)))(dist)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)


def test_dirichlet_and_relaxed_outside_the_simplex_box():
    assert float(rp.Dirichlet(jnp.ones(3)).log_prob(jnp.array([-0.1, 0.6, 0.5]))) == -np.inf
    assert float(rp.RelaxedOneHotCategorical(0.5, jnp.zeros(3)).log_prob(jnp.array([1.2, -0.1, -0.1]))) == -np.inf

"""Every distribution and method under jit, vmap and grad: same values as eager, batched over
parameter sets, and gradients of log_prob and entropy equal to central finite differences."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reparam as rp

# name -> (constructor from a parameter dict, parameters, methods besides log_prob/sampling)
MOMENTS = ("entropy", "mean", "mode", "variance")
SCALAR = ("cdf", *MOMENTS)
CASES = {
    "normal": (lambda p: rp.Normal(p["a"], p["b"]), dict(a=0.3, b=1.2), (*SCALAR, "stddev")),
    "laplace": (lambda p: rp.Laplace(p["a"], p["b"]), dict(a=0.3, b=1.2), SCALAR),
    "logistic": (lambda p: rp.Logistic(p["a"], p["b"]), dict(a=0.3, b=1.2), SCALAR),
    "gumbel": (lambda p: rp.Gumbel(p["a"], p["b"]), dict(a=0.3, b=1.2), SCALAR),
    "uniform": (lambda p: rp.Uniform(p["a"], p["a"] + p["b"]), dict(a=-0.3, b=2.0), SCALAR),
    "lognormal": (lambda p: rp.LogNormal(p["a"], p["b"]), dict(a=0.3, b=0.6), SCALAR),
    "gamma": (lambda p: rp.Gamma(p["a"], p["b"]), dict(a=2.3, b=1.2), SCALAR),
    "beta": (lambda p: rp.Beta(p["a"], p["b"]), dict(a=2.3, b=1.7), SCALAR),
    "dirichlet": (lambda p: rp.Dirichlet(jnp.stack([p["a"], p["b"], p["a"] + p["b"]])), dict(a=2.3, b=1.7), MOMENTS),
    "mvn": (
        lambda p: rp.MultivariateNormal(jnp.stack([p["a"], -p["a"]]), jnp.array([[1.0, 0.0], [0.5, 1.0]]) * p["b"]),
        dict(a=0.3, b=1.2),
        MOMENTS,
    ),
    "mvn-diag": (
        lambda p: rp.MultivariateNormalDiag(jnp.stack([p["a"], -p["a"]]), jnp.stack([p["b"], 2 * p["b"]])),
        dict(a=0.3, b=1.2),
        MOMENTS,
    ),
    "tanh-normal": (lambda p: rp.TanhNormal(p["a"], p["b"], -2.0, 3.0), dict(a=0.3, b=1.2), ("cdf", "mode")),
    "relaxed-categorical": (
        lambda p: rp.RelaxedOneHotCategorical(p["b"], jnp.stack([p["a"], 0.0 * p["a"], -p["a"]])),
        dict(a=0.3, b=0.7),
        (),
    ),
    "relaxed-bernoulli": (lambda p: rp.RelaxedBernoulli(p["b"], p["a"]), dict(a=0.3, b=0.7), ()),
    "categorical": (
        lambda p: rp.Categorical(jnp.stack([p["a"], p["b"], 0.0 * p["a"]])),
        dict(a=0.3, b=-0.7),
        ("entropy", "mode"),
    ),
    "bernoulli": (lambda p: rp.Bernoulli(p["a"] + p["b"]), dict(a=0.3, b=-0.7), SCALAR),
}
NAMES = list(CASES)


def params_of(name, dtype=jnp.float64):
    return {k: jnp.asarray(v, dtype) for k, v in CASES[name][1].items()}


def evaluate(name, p, key):
    """Everything a distribution offers, as a dict of arrays."""
    make, _, methods = CASES[name]
    d = make(p)
    x, lp = d.sample_and_log_prob(key, (3,))
    out = {"sample": x, "fused_log_prob": lp, "log_prob": d.log_prob(x)}
    if d.reparameterized:
        out["rsample"], out["rsample_log_prob"] = d.rsample_and_log_prob(key, (3,))
    for m in methods:
        out[m] = getattr(d, m)(x) if m == "cdf" else getattr(d, m)()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager(name):
    key = jax.random.key(0)
    eager = evaluate(name, params_of(name), key)
    jitted = jax.jit(lambda p, k: evaluate(name, p, k))(params_of(name), key)
    for k in eager:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_parameter_sets_matches_a_loop(name):
    base = params_of(name)
    stacked = {k: v * jnp.array([1.0, 1.1, 0.9]) for k, v in base.items()}
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.vmap(lambda p, k: evaluate(name, p, k))(stacked, keys)
    for i in range(3):
        single = evaluate(name, {k: v[i] for k, v in stacked.items()}, keys[i])
        for k in single:
            np.testing.assert_allclose(batched[k][i], single[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_of_log_prob_and_entropy_match_finite_differences(name):
    make, _, methods = CASES[name]
    p = params_of(name)
    x = make(p).sample(jax.random.key(2), (4,))

    def scalar_fns():
        yield "log_prob", lambda p: jnp.sum(make(p).log_prob(x))
        if "entropy" in methods:
            yield "entropy", lambda p: jnp.sum(make(p).entropy())

    for label, fn in scalar_fns():
        grad = jax.jit(jax.grad(fn))(p)
        for k in p:
            h = 1e-6
            fd = (fn({**p, k: p[k] + h}) - fn({**p, k: p[k] - h})) / (2 * h)
            assert np.isfinite(grad[k])
            np.testing.assert_allclose(grad[k], fd, rtol=1e-5, atol=1e-7, err_msg=f"{label} d/d{k}")


def test_distributions_are_pytrees_that_cross_jit_boundaries():
    d = rp.TanhNormal(jnp.zeros(3), jnp.ones(3), -2.0, 2.0)
    f = eqx.filter_jit(lambda d, x: d.log_prob(x))
    np.testing.assert_allclose(f(d, jnp.full(3, 0.5)), d.log_prob(jnp.full(3, 0.5)), rtol=1e-12)
    # jax.jit directly on a function of the distribution, too.
    g = jax.jit(lambda d: d.mode())
    np.testing.assert_allclose(g(d), d.mode())

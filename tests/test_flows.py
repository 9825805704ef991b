"""Flow models (`reparam.models.flows`): every factory's density is the change-of-variables value
(against `slogdet(jacfwd)` in float64) and integrates to 1 on a 2-D grid; the `Scan` stack equals
the unstacked `Chain`; conditional flows likewise; reverse-KL VI of a correlated Gaussian drives
KL(q || p) = loss + log Z to ~0 (with and without sticking the landing), STL's gradient is exactly 0
at the optimum while the plain estimator's is not; maximum likelihood recovers a Gaussian's mean and
covariance; bad settings are one-line errors."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reparam.distributions.transformed import Transformed
from reparam.models.flows import (
    FLOWS,
    conditioned,
    density_loss,
    fit_density,
    fit_variational,
    make_flow,
    reverse_kl_loss,
)

F64 = jnp.float64


def perturbed(flow, key, scale=0.3):
    """The flow with every floating parameter of its bijector moved by `N(0, scale^2)` noise, so
    no layer is the identity (fresh conditioners start at zero)."""
    leaves, tree = jax.tree.flatten(flow.bijector)
    keys = jax.random.split(key, len(leaves))
    moved = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) if eqx.is_inexact_array(leaf) else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return Transformed(flow.base, jax.tree.unflatten(tree, moved))


def reference_log_prob(flow, eps):
    """`log N(eps) - log|det df/deps|` by `slogdet(jacfwd)` of the forward map, one point at a time."""
    jac = jax.vmap(jax.jacfwd(flow.bijector.forward))(eps)
    sign, logdet = jnp.linalg.slogdet(jac)
    base = -0.5 * jnp.sum(eps**2, -1) - 0.5 * eps.shape[-1] * math.log(2 * math.pi)
    return base - logdet, sign


HALF_WIDTH, NUM = 8.0, 241
CELL = 2 * HALF_WIDTH / NUM


def grid_points():
    """The midpoints `(NUM^2, 2)` of a `NUM x NUM` grid of cells of side `CELL` on `[-8, 8]^2`."""
    axis = -HALF_WIDTH + CELL * (0.5 + np.arange(NUM))
    xx, yy = np.meshgrid(axis, axis)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1))


@pytest.mark.parametrize("name", FLOWS)
def test_density_is_change_of_variables_and_integrates_to_one(name):
    """float64, random parameters, 2-D: `log_prob(f(eps))` and the fused sample score equal
    `log N(eps) - slogdet(jacfwd f)(eps)`, the inverse recovers `eps`, and the density's mass on a
    241 x 241 midpoint grid of `[-8, 8]^2` is 1 (samples of these flows have sd ~1: the mass
    outside is below 1e-12, the grid's error ~1e-5)."""
    k_flow, k_move, k_eps = jax.random.split(jax.random.key(0), 3)
    flow = perturbed(make_flow(name, 2, 2, key=k_flow, hidden_sizes=(8,), dtype=F64), k_move, scale=0.1)
    eps = jax.random.normal(k_eps, (6, 2), F64)

    @eqx.filter_jit
    def check(flow, eps, grid):
        x, log_q = jax.vmap(flow.bijector.forward_and_log_det)(eps)
        reference, sign = reference_log_prob(flow, eps)
        fused = flow.base.log_prob(eps) - log_q
        mass = jnp.sum(jnp.exp(flow.log_prob(grid))) * CELL**2
        return flow.log_prob(x), fused, reference, sign, flow.bijector.inverse(x), mass

    log_prob, fused, reference, sign, back, mass = check(flow, eps, grid_points())
    assert np.all(np.asarray(sign) > 0)
    np.testing.assert_allclose(log_prob, reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fused, reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back, eps, rtol=0, atol=1e-9)
    assert abs(float(mass) - 1) < 1e-3, float(mass)


def test_onto_flows_skip_the_support_check_and_bounded_ones_keep_it():
    """Every factory's bijector is `onto` R^d, so `log_prob` traces no support check (no
    `reduce_and` over an all-True mask; its values are the change-of-variables test's above); a flow
    ended by `Tanh` is not onto: `-inf` outside (-1, 1)^2 and, inside, the flow's density at
    `atanh(y)` minus `sum log(1 - y^2)` (float64)."""
    from reparam.bijectors.chain import Chain
    from reparam.bijectors.exp import Exp
    from reparam.bijectors.tanh import Tanh

    y = jnp.asarray([[0.3, -0.5], [1.5, 0.2], [0.1, -2.0], [-0.9, 0.99]], F64)
    for name in FLOWS:
        flow = make_flow(name, 2, 2, key=jax.random.key(1), hidden_sizes=(8,), dtype=F64)
        assert flow.bijector.onto, name
        assert "reduce_and" not in str(jax.make_jaxpr(flow.log_prob)(y)), name
    assert not Exp.onto and not Tanh.onto and not Chain([Tanh(), flow.bijector]).onto
    flow = perturbed(make_flow("nsf", 2, 2, key=jax.random.key(2), hidden_sizes=(8,), dtype=F64), jax.random.key(3))
    bounded = Transformed(flow.base, Chain([Tanh(), flow.bijector]))
    log_prob = np.asarray(eqx.filter_jit(lambda d, v: d.log_prob(v))(bounded, y))
    inside = np.all(np.abs(np.asarray(y)) < 1, -1)
    assert np.all(log_prob[~inside] == -np.inf) and np.all(np.isfinite(log_prob[inside]))
    y_in = y[inside]
    expected = flow.log_prob(jnp.arctanh(y_in)) - jnp.sum(jnp.log1p(-(y_in**2)), -1)
    np.testing.assert_allclose(log_prob[inside], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["iaf", "nsf"])
def test_conditional_flow_is_change_of_variables_per_context(name):
    """(iaf covers maf's conditioner: one MADE class, the context enters it the same way in both
    modes.) A conditional flow with one context per example (batch `(x, c)`) gives, at each example,
    the change-of-variables density of the flow conditioned on that example's context alone;
    different contexts give different densities; `density_loss` takes `(x, c)` batches."""
    k_flow, k_move, k_eps, k_c = jax.random.split(jax.random.key(1), 4)
    flow = perturbed(make_flow(name, 3, 2, key=k_flow, hidden_sizes=(8,), context_size=2, dtype=F64), k_move)
    eps = jax.random.normal(k_eps, (4, 3), F64)
    contexts = jax.random.normal(k_c, (4, 2), F64)

    @eqx.filter_jit
    def check(flow, eps, contexts):
        def one(e, c):
            bound = conditioned(flow, c)
            x = bound.bijector.forward(e)
            ref, _ = reference_log_prob(bound, e[None])
            return x, ref[0]

        x, reference = jax.vmap(one)(eps, contexts)
        batched = conditioned(flow, contexts).log_prob(x)
        swapped = conditioned(flow, contexts[::-1]).log_prob(x)
        loss, _ = density_loss()(flow, (x, contexts), None, None)
        return batched, reference, swapped, loss

    batched, reference, swapped, loss = check(flow, eps, contexts)
    np.testing.assert_allclose(batched, reference, rtol=0, atol=1e-9)
    assert np.min(np.abs(np.asarray(swapped - batched))) > 1e-3
    np.testing.assert_allclose(loss, -np.mean(reference), rtol=1e-12)


@pytest.mark.parametrize("name", ["iaf"])
def test_scan_stack_equals_unstacked_chain(name):
    """The same 3-layer flow as one `Scan` and as the `Chain` of its unstacked layers: equal samples,
    sample scores and densities (float64)."""
    flow = perturbed(make_flow(name, 3, 3, key=jax.random.key(2), hidden_sizes=(8,), dtype=F64), jax.random.key(3))
    chain = Transformed(flow.base, flow.bijector.to_chain())

    @eqx.filter_jit
    def draw(dist):
        x, log_q = dist.rsample_and_log_prob(jax.random.key(4), (5,))
        return x, log_q, dist.log_prob(x)

    for got, want in zip(draw(flow), draw(chain), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


MEAN = np.array([1.0, -2.0])
COV = np.array([[2.0, 0.9], [0.9, 1.0]])


def gaussian_target():
    """An unnormalised correlated Gaussian `p~(z) = exp(-(z - m)' S^-1 (z - m) / 2)`, float32, and
    its `log Z = log(2 pi) + log det(S) / 2`."""
    precision = jnp.asarray(np.linalg.inv(COV), jnp.float32)
    mean = jnp.asarray(MEAN, jnp.float32)

    def log_p(z):
        d = z - mean
        return -0.5 * jnp.einsum("...i,ij,...j->...", d, precision, d)

    return log_p, math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(COV))


@pytest.mark.usefixtures("as_users_run_it")
@pytest.mark.parametrize("stick_the_landing", [False, True])
def test_variational_fit_of_a_gaussian_drives_kl_to_zero(stick_the_landing):
    """IAF (2 layers) fitted by reverse KL to a correlated Gaussian known up to Z: at the start
    KL(q || p) = loss + log Z is about 3 nats; after 600 steps it is below 0.02 (20,000-sample
    estimate, standard error ~0.002 at that KL)."""
    log_p, log_z = gaussian_target()
    flow = make_flow("iaf", 2, 2, key=jax.random.key(5), hidden_sizes=(16,))
    kl = eqx.filter_jit(lambda f, k: jnp.mean(reverse_kl_loss(log_p, 20_000)(f, None, k, None)[0]) + log_z)
    start = float(kl(flow, jax.random.key(6)))
    flow, losses = fit_variational(
        flow,
        log_p,
        key=jax.random.key(7),
        steps=600,
        num_samples=64,
        optimizer=optax.adam(1e-2),
        stick_the_landing=stick_the_landing,
    )
    end = float(kl(flow, jax.random.key(8)))
    assert losses.shape == (600,) and np.all(np.isfinite(losses))
    assert start > 1.0 and end < 0.02, (start, end)


@pytest.mark.usefixtures("as_users_run_it")
def test_fit_variational_compiles_once_per_structure():
    """A second `fit_variational` call with the same flow structure, target, settings and (default)
    optimizer reuses the compiled program: the target is traced once (a trace-time counter), and
    the second fit continues from the first's parameters with a new key."""
    traces = []

    def log_p(z):
        traces.append(1)  # runs only while tracing
        return -0.5 * jnp.sum(z**2, -1)

    flow = make_flow("realnvp", 2, 2, key=jax.random.key(11), hidden_sizes=(8,))
    once, first = fit_variational(flow, log_p, key=jax.random.key(12), steps=5, num_samples=16)
    twice, second = fit_variational(once, log_p, key=jax.random.key(13), steps=5, num_samples=16)
    assert len(traces) == 1
    assert np.all(np.isfinite(first)) and np.all(np.isfinite(second))
    before, after = (jax.tree.leaves(eqx.filter(f, eqx.is_inexact_array)) for f in (once, twice))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(before, after, strict=True)) > 0  # it trained
    fit_variational(flow, log_p, key=jax.random.key(14), steps=6, num_samples=16)  # another scan length
    assert len(traces) == 2


def test_sticking_the_landing_gradient_vanishes_at_the_optimum():
    """Target = a random flow's own density times `e^3`: at those parameters each STL gradient is 0
    (float64) for every key, while the plain reverse-KL gradient varies from key to key."""
    flow = perturbed(
        make_flow("realnvp", 2, 2, key=jax.random.key(9), hidden_sizes=(8,), dtype=F64), jax.random.key(10)
    )
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    target = lambda z: flow.log_prob(z) + 3.0

    @jax.jit
    def grads(params, keys):
        def norms(stl):
            loss = reverse_kl_loss(target, 8, stick_the_landing=stl, static=static)
            g = jax.vmap(lambda k: jax.grad(lambda p: loss(p, None, k, None)[0])(params))(keys)
            flat = jnp.concatenate([leaf.reshape(keys.shape[0], -1) for leaf in jax.tree.leaves(g)], 1)
            return jnp.max(jnp.abs(flat)), jnp.max(jnp.std(flat, 0))

        return norms(True), norms(False)

    (stl_max, _), (_, plain_std) = grads(params, jax.random.split(jax.random.key(11), 16))
    assert float(stl_max) < 1e-10, float(stl_max)
    assert float(plain_std) > 1e-2, float(plain_std)


@pytest.mark.usefixtures("as_users_run_it")
def test_maximum_likelihood_recovers_a_gaussian():
    """MAF (2 layers) fitted to 3,200 draws of a correlated 2-D Gaussian (800 held out): the flow's
    mean and covariance (from 40,000 samples) match the data's within 0.08 and 0.15 (a tenth of the
    data's standard deviations; the sampling error of the flow's moments is ~0.01), and its best
    held-out NLL is within 0.03 nats of the data's own Gaussian fit (the optimum up to sampling
    error)."""
    k_data, k_flow, k_fit, k_draw = jax.random.split(jax.random.key(12), 4)
    chol = np.linalg.cholesky(COV)
    x = jnp.asarray(MEAN + np.asarray(jax.random.normal(k_data, (4000, 2))) @ chol.T, jnp.float32)
    flow = make_flow("maf", 2, 2, key=k_flow, hidden_sizes=(16,))
    flow, history = fit_density(
        flow, x, key=k_fit, optimizer=optax.adam(3e-3), batch_size=200, epochs=60, validation=0.2, patience=10
    )
    samples = np.asarray(eqx.filter_jit(lambda f: f.sample(k_draw, (40_000,)))(flow), np.float64)
    train = np.asarray(x[:3200], np.float64)
    np.testing.assert_allclose(samples.mean(0), train.mean(0), atol=0.08)
    np.testing.assert_allclose(np.cov(samples.T), np.cov(train.T), atol=0.15)
    held_out = np.asarray(x[3200:], np.float64)
    d = held_out - train.mean(0)
    cov = np.cov(train.T)
    gaussian_nll = np.mean(0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)) + 0.5 * math.log(
        np.linalg.det(2 * math.pi * cov)
    )
    best = min(row["validation"] for row in history)
    assert abs(best - gaussian_nll) < 0.03, (best, gaussian_nll)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("glow", 2, 2), {}, "unknown flow 'glow'; choose one of realnvp, maf"),
        (("maf", 2, 0), {}, "layers must be an integer >= 1, got 0"),
        (("maf", 0, 2), {}, "dim must be an integer >= 1, got 0"),
        (("nsf", 1, 2), {}, "needs dim >= 2"),
        (("realnvp", 1, 2), {}, "needs dim >= 2"),
        (("planar", 2, 2), {"context_size": 3}, "planar flow has no conditional version"),
        (("maf", 2, 2), {"hidden_sizes": (8, 0)}, "hidden sizes must be positive integers"),
        (("radial", 2, 2), {"actnorm": True}, "actnorm applies to"),
    ],
)
def test_bad_settings_are_one_line_errors(args, kwargs, message):
    """Unknown names, layers or dim < 1, couplings in 1-D, context or actnorm where the flow has
    none, bad widths: a one-line ValueError saying what is allowed."""
    with pytest.raises(ValueError, match=message) as error:
        make_flow(*args, key=jax.random.key(0), **kwargs)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        reverse_kl_loss(lambda z: z, 0)

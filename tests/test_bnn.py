"""`reparam.models.bnn`: the minibatch negative ELBO is unbiased for the full-data one / N at every
batch size, KL warm-up, the MAP loss is the Gaussian-prior MAP objective, the ensemble's members
differ and one compiled step trains each as if alone, MC dropout varies with the key and MAP does
not, `predict` shapes for every method and task, `evaluate` keys, a BNN that learns toy-cubic, and
the gradient-variance meter's ordering (local below weight sampling), plus one-line errors."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reparam import training
from reparam.data.tables import load_table
from reparam.distributions import Normal, ScaleMixtureNormal
from reparam.models import bnn

N = 32
PRIOR = Normal(0.0, 1.0)


def toy_data(n: int = N, dim: int = 3, task: str = "regression", seed: int = 0):
    """float32 inputs `(n, dim)`; float32 targets or int32 labels in 0..2."""
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (n, dim), jnp.float32)
    if task == "regression":
        return x, jnp.sin(2.0 * x[:, 0]) + 0.1 * jax.random.normal(ky, (n,), jnp.float32)
    return x, jnp.digitize(x[:, 0], jnp.array([-0.4, 0.4], jnp.float32)).astype(jnp.int32)


def num_outputs(task: str) -> int:
    return 1 if task == "regression" else 3


# ------------------------------------------------------------------------------------------------
# The objective


@pytest.mark.parametrize("estimator", bnn.BAYESIAN_METHODS)
def test_minibatch_loss_is_unbiased_for_the_full_data_negative_elbo_per_example(estimator):
    """E[loss on a uniform minibatch of size B] = (-sum_n E_q log p(y_n | x_n, w) + KL) / N for every
    B: the mean over 4,000 minibatches-and-noise draws lies within 5 standard errors of the full-batch
    mean (itself over 4,000 noise draws), and a KL scaled by 1/B instead of 1/N would miss by far more."""
    x, y = toy_data()
    model = bnn.init_model(estimator, "regression", 3, 1, (8,), key=jax.random.key(1), init_scale=0.2)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss = bnn.make_loss(estimator, "regression", num_train=N, prior=PRIOR, static=static)
    sizes, repeats = (1, 4, 16, N), 4000

    @jax.jit
    def losses(key):
        out = []
        for i, b in enumerate(sizes):

            def one(k, b=b):
                k_batch, k_loss = jax.random.split(k)
                index = jax.random.permutation(k_batch, N)[:b]
                return loss(params, (x[index], y[index]), k_loss, None)[0]

            out.append(jax.vmap(one)(jax.random.split(jax.random.fold_in(key, i), repeats)))
        return jnp.stack(out)

    values = np.asarray(losses(jax.random.key(2)), np.float64)  # (len(sizes), repeats)
    means = values.mean(axis=1)
    errors = values.std(axis=1, ddof=1) / math.sqrt(repeats)
    kl = float(model.kl(PRIOR))
    reference, reference_error = means[-1], errors[-1]  # B = N: the full-data loss
    for b, mean, error in zip(sizes[:-1], means[:-1], errors[:-1], strict=True):
        tolerance = 5 * math.hypot(error, reference_error)
        assert abs(mean - reference) < tolerance, (estimator, b, mean, reference, tolerance)
        assert kl * (1 / b - 1 / N) > 10 * tolerance  # the common mis-scaling would be caught


def test_kl_warmup_schedule():
    np.testing.assert_allclose(bnn.kl_weight(jnp.arange(6), 4), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert float(bnn.kl_weight(jnp.asarray(0), 0)) == 1.0
    assert bnn.kl_weight(jnp.asarray(3), 4).dtype == jnp.float32
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        bnn.kl_weight(0, -1)

    x, y = toy_data()
    model = bnn.init_model("local", "regression", 3, 1, (8,), key=jax.random.key(0))
    loss = bnn.make_loss("local", "regression", num_train=N, prior=PRIOR, kl_warmup_steps=4)
    for step, beta in ((0, 0.25), (1, 0.5), (9, 1.0)):
        state = training.TrainState(None, None, jnp.asarray(step, jnp.int32))
        value, metrics = loss(model, (x, y), jax.random.key(3), state)
        assert float(metrics["beta"]) == beta
        np.testing.assert_allclose(value, metrics["nll"] + beta * metrics["kl"], rtol=1e-6)
        np.testing.assert_allclose(metrics["kl"], model.kl(PRIOR) / N, rtol=1e-6)


def test_scale_mixture_prior_uses_a_monte_carlo_kl():
    x, y = toy_data()
    model = bnn.init_model("flipout", "regression", 3, 1, (8,), key=jax.random.key(0), init_scale=0.1)
    prior = ScaleMixtureNormal(0.5, 1.0, math.exp(-6))
    loss = bnn.make_loss("flipout", "regression", num_train=N, prior=prior)
    kls = [float(loss(model, (x, y), jax.random.key(k), None)[1]["kl"]) for k in range(2)]
    assert all(math.isfinite(k) for k in kls) and kls[0] != kls[1]
    with pytest.raises(ValueError, match="weight_decay"):
        bnn.make_loss("map", "regression", num_train=N, prior=prior)


def test_map_weight_decay_is_the_gaussian_prior_map_objective():
    """N * loss = -sum_n log p(y_n | x_n, w) - log N(w; 0, s^2 I) - P (log s + log(2 pi) / 2)."""
    x, y = toy_data()
    s = 0.5
    model = bnn.init_model("map", "regression", 3, 1, (8, 8), key=jax.random.key(0))
    value, metrics = bnn.make_loss("map", "regression", num_train=N, prior=Normal(0.0, s))(
        model, (x, y), jax.random.key(1), None
    )
    explicit = bnn.make_loss("map", "regression", num_train=N, weight_decay=1 / s**2)(
        model, (x, y), jax.random.key(1), None
    )[0]
    weights = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    num_params = sum(w.size for w in weights)
    prior32 = Normal(jnp.float32(0.0), jnp.float32(s))
    log_prior = sum(jnp.sum(prior32.log_prob(w)) for w in weights)
    log_lik = jnp.sum(bnn.likelihood("regression", jax.vmap(model)(x)).log_prob(y))
    expected = -log_lik - log_prior - num_params * (math.log(s) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(N * value, expected, rtol=1e-5)
    np.testing.assert_allclose(explicit, value, rtol=1e-6)
    np.testing.assert_allclose(metrics["nll"], -log_lik / N, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Baselines


def test_ensemble_members_differ_and_one_compiled_step_trains_each_as_if_alone():
    x, y = toy_data(task="classification")
    members = 3
    ensemble = bnn.init_model("ensemble", "classification", 3, 3, (8,), key=jax.random.key(0), num_members=members)
    outputs = bnn.forward(ensemble, "ensemble", x, jax.random.key(1))
    assert outputs.shape == (members, N, 3)
    for i in range(members):
        for j in range(i):
            assert not np.allclose(outputs[i], outputs[j])

    optimizer = optax.adam(1e-2)
    params, static = eqx.partition(ensemble, eqx.is_inexact_array)
    loss = bnn.make_loss("ensemble", "classification", num_train=N, weight_decay=0.1, static=static)
    step = jax.jit(training.make_step(loss, optimizer))
    with jax.numpy_dtype_promotion("standard"):
        state, metrics = step(training.init_train_state(params, optimizer), (x, y), jax.random.key(2))
        trained = jax.tree.leaves(state.params)
        member_losses = []
        for m in range(members):
            alone, alone_static = eqx.partition(ensemble.member(m), eqx.is_inexact_array)
            single_loss = bnn.make_loss("map", "classification", num_train=N, weight_decay=0.1, static=alone_static)
            after, alone_metrics = training.make_step(single_loss, optimizer)(
                training.init_train_state(alone, optimizer), (x, y), jax.random.key(2)
            )
            member_losses.append(float(alone_metrics["loss"]))
            for new, old, ref in zip(trained, jax.tree.leaves(alone), jax.tree.leaves(after.params), strict=True):
                assert not np.allclose(new[m], old)  # every member moved
                np.testing.assert_allclose(new[m], ref, rtol=1e-5, atol=1e-7)  # exactly as if alone
    np.testing.assert_allclose(metrics["loss"], sum(member_losses), rtol=1e-5)


def test_dropout_predictions_vary_with_the_key_and_map_ones_do_not():
    x, _ = toy_data()
    dropout = bnn.init_model("dropout", "regression", 3, 1, (16, 16), key=jax.random.key(0), dropout_rate=0.3)
    a, _ = bnn.predict(dropout, "dropout", "regression", x, jax.random.key(1), 4)
    b, _ = bnn.predict(dropout, "dropout", "regression", x, jax.random.key(2), 4)
    assert not np.allclose(a, b) and not np.allclose(a[0], a[1])
    # inverted dropout keeps the expected input of the layer it feeds: with one hidden layer (one
    # dropout, before the output layer) the mean over masks is the network without dropout
    shallow = bnn.init_model("dropout", "regression", 3, 1, (16,), key=jax.random.key(0), dropout_rate=0.3)
    many, _ = bnn.predict(shallow, "dropout", "regression", x, jax.random.key(3), 4000)
    z = (jnp.mean(many, 0) - jax.vmap(shallow.net)(x)[:, 0]) / (jnp.std(many, 0) / math.sqrt(4000))
    assert float(jnp.max(jnp.abs(z))) < 5

    net = bnn.init_model("map", "regression", 3, 1, (16, 16), key=jax.random.key(0))
    c, _ = bnn.predict(net, "map", "regression", x, jax.random.key(1), 4)
    d, _ = bnn.predict(net, "map", "regression", x, jax.random.key(2), 4)
    assert c.shape == (1, N)
    np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("task", bnn.TASKS)
@pytest.mark.parametrize("method", bnn.METHODS)
def test_predict_shapes(method, task):
    x, _ = toy_data(n=7, task=task)
    model = bnn.init_model(method, task, 3, num_outputs(task), (8,), key=jax.random.key(0), num_members=3)
    out = bnn.predict(model, method, task, x, jax.random.key(1), 4)
    s = {"map": 1, "ensemble": 3}.get(method, 4)
    if task == "classification":
        assert out.shape == (s, 7, 3) and out.dtype == jnp.float32
        np.testing.assert_allclose(jnp.sum(out, -1), 1.0, rtol=1e-5)
    else:
        mean, std = out
        assert mean.shape == std.shape == (s, 7) and mean.dtype == std.dtype == jnp.float32
        assert bool(jnp.all(std >= 1e-3))


@pytest.mark.parametrize(
    ("table_name", "method"), [("toy-cubic", "flipout"), ("toy-cubic", "ensemble"), ("digits", "local")]
)
def test_evaluate_keys_present_and_finite(table_name, method):
    table = load_table(table_name)
    model = bnn.init_model(
        method, table.task, table.x_train.shape[1], table.num_classes, (8,), key=jax.random.key(0), num_members=2
    )
    metrics = bnn.evaluate(model, method, table, jax.random.key(1), num_samples=3)
    expected = (
        {"test_nll", "test_rmse"}
        if table.task == "regression"
        else {"test_nll", "test_accuracy", "ece", "brier", "entropy", "mutual_information", "ood_auroc"}
    )
    assert set(metrics) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


# ------------------------------------------------------------------------------------------------
# Learning and the gradient-variance meter


def test_local_reparameterization_bnn_learns_toy_cubic():
    """20 points of y = x^3 + N(0, 3^2): the test RMSE (original units) falls below half the test
    targets' standard deviation (about 23; the noise floor is 3; an untrained network scores ~24)."""
    table = load_table("toy-cubic")
    model = bnn.init_model("local", "regression", 1, table.num_classes, (10,), key=jax.random.key(0))
    loss = bnn.make_loss("local", "regression", num_train=table.x_train.shape[0], prior=PRIOR)
    with jax.numpy_dtype_promotion("standard"):
        model, history = training.fit(
            loss,
            model,
            (table.x_train, table.y_train),
            key=jax.random.key(1),
            optimizer=optax.adam(1e-2),
            batch_size=20,
            epochs=1000,
            progress=False,
        )
    metrics = bnn.evaluate(model, "local", table, jax.random.key(2), num_samples=50)
    target_sd = float(jnp.std(table.y_test)) * table.y_scale
    assert metrics["test_rmse"] < 0.5 * target_sd, (metrics, target_sd)
    assert history[-1]["kl"] > 0 and math.isfinite(history[-1]["nll"])


def test_gradient_variance_local_below_weight_sampling():
    """Full batch (B = N), so only the weight noise varies: one shared weight draw per batch
    (`weights`) leaves the gradient far noisier than per-example noise (`local`, `flipout`)."""
    x, y = toy_data(n=64)
    model = bnn.init_model("local", "regression", 3, 1, (16,), key=jax.random.key(0), init_scale=0.1)
    result = bnn.gradient_variance(
        model, "regression", (x, y), jax.random.key(1), batch_size=64, num_repeats=64, prior=PRIOR
    )
    assert set(result) == set(bnn.BAYESIAN_METHODS)
    for estimator, layers in result.items():
        assert set(layers) == {"first_layer", "last_layer"}
        assert all(math.isfinite(v) and v > 0 for v in layers.values()), estimator
    for layer in ("first_layer", "last_layer"):
        assert result["local"][layer] < 0.5 * result["weights"][layer], result
        assert result["flipout"][layer] < 0.5 * result["weights"][layer], result


# ------------------------------------------------------------------------------------------------
# Errors


def test_one_line_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="unknown method"):
        bnn.init_model("mc", "regression", 3, 1, (8,), key=key)
    with pytest.raises(ValueError, match="unknown task"):
        bnn.make_loss("map", "ranking", num_train=N)
    with pytest.raises(ValueError, match="needs a prior"):
        bnn.make_loss("local", "regression", num_train=N)
    with pytest.raises(ValueError, match="num_train"):
        bnn.make_loss("local", "regression", num_train=0, prior=PRIOR)
    with pytest.raises(ValueError, match="scalars"):
        bnn.init_model("map", "regression", 3, 2, (8,), key=key)
    with pytest.raises(ValueError, match="classes"):
        bnn.init_model("map", "classification", 3, 1, (8,), key=key)
    with pytest.raises(ValueError, match="rate"):
        bnn.init_model("dropout", "regression", 3, 1, (8,), key=key, dropout_rate=1.0)
    with pytest.raises(ValueError, match="BayesianDense"):
        bnn.gradient_variance(
            bnn.init_model("map", "regression", 3, 1, (8,), key=key),
            "regression",
            toy_data(),
            key,
            batch_size=8,
            num_repeats=4,
            prior=PRIOR,
        )

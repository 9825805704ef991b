"""reparam.training: the epoch visits every example once with a fresh key per batch, fit reaches the
least-squares solution, batched evaluation equals the unbatched one, early stopping keeps the best
params, validation splits, one compilation per data shape, donation."""

import re
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reparam.training import (
    EarlyStopping,
    TrainState,
    early_stopping_update,
    evaluate,
    fit,
    init_early_stopping,
    init_train_state,
    make_epoch,
    make_step,
    map_batches,
    split_validation,
)


def one_line_error(text, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=re.escape(text)) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


def regression(n=240, seed=0):
    k_x, k_noise = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k_x, (n, 3), jnp.float32)
    y = x @ jnp.asarray([1.0, -2.0, 0.5], jnp.float32) + 0.3 + 0.1 * jax.random.normal(k_noise, (n,), jnp.float32)
    return x, y


def squared_error(params, batch, key, state):
    x, y = batch
    residual = x @ params["w"] + params["b"] - y
    return jnp.mean(jnp.square(residual)), {"mae": jnp.mean(jnp.abs(residual))}


ZERO = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}


# --- step and epoch ---------------------------------------------------------------------------------


def test_step_is_one_sgd_step():
    batch = regression(16)
    state = init_train_state(ZERO, optax.sgd(0.1))
    new, metrics = jax.jit(make_step(squared_error, optax.sgd(0.1)))(state, batch, jax.random.key(0))
    grads = jax.grad(lambda p: squared_error(p, batch, None, None)[0])(ZERO)
    np.testing.assert_allclose(np.asarray(new.params["w"]), -0.1 * np.asarray(grads["w"]), rtol=1e-6)
    assert int(new.step) == 1 and new.extra == () and set(metrics) == {"loss", "mae"}
    assert float(metrics["loss"]) == pytest.approx(float(jnp.mean(jnp.square(batch[1]))), rel=1e-6)


@pytest.mark.parametrize("n", [24, 27])
def test_epoch_visits_every_example_once_with_fresh_keys(n):
    batch_size = 6
    num_batches = n // batch_size
    data = (jnp.ones((n, 2), jnp.float32), jnp.arange(n, dtype=jnp.int32))

    def loss_fn(params, batch, key, state):
        x, index = batch[0], batch[1]
        metrics = {
            "visits": jnp.zeros(n, jnp.int32).at[index].add(1),  # a vector metric
            "loss_draw": jax.random.bits(key, dtype=jnp.uint32),
            "transform_draw": batch[2],
        }
        return jnp.mean(x @ params), metrics

    def update_extra(state, metrics):  # sees the state before the step: state.step is the batch number
        visits, loss_draws, transform_draws = state.extra
        return (
            visits + metrics["visits"],
            loss_draws.at[state.step].set(metrics["loss_draw"]),
            transform_draws.at[state.step].set(metrics["transform_draw"]),
        )

    def transform_batch(key, batch):
        return batch + (jax.random.bits(key, dtype=jnp.uint32),)

    extra = (jnp.zeros(n, jnp.int32), jnp.zeros(num_batches, jnp.uint32), jnp.zeros(num_batches, jnp.uint32))
    epoch = jax.jit(
        make_epoch(loss_fn, optax.sgd(0.1), batch_size, update_extra=update_extra, transform_batch=transform_batch)
    )
    state, metrics = epoch(init_train_state(jnp.zeros(2, jnp.float32), optax.sgd(0.1), extra), jax.random.key(0), data)
    visits, loss_draws, transform_draws = map(np.asarray, state.extra)
    assert int(state.step) == num_batches
    assert visits.sum() == num_batches * batch_size and set(np.unique(visits)) <= {0, 1}  # at most once
    if n % batch_size == 0:
        np.testing.assert_array_equal(visits, np.ones(n))  # exactly once
    draws = np.concatenate([loss_draws, transform_draws])
    assert len(np.unique(draws)) == 2 * num_batches  # a fresh key per batch, and another for the transform
    np.testing.assert_allclose(np.asarray(metrics["visits"]) * num_batches, visits)  # metrics: batch means
    again, _ = epoch(init_train_state(jnp.zeros(2, jnp.float32), optax.sgd(0.1), extra), jax.random.key(1), data)
    assert not np.array_equal(np.asarray(again.extra[0]), visits) or n % batch_size == 0


def test_epoch_compiles_once_and_donates_its_state():
    data = regression(60)
    epoch = jax.jit(make_epoch(squared_error, optax.sgd(0.05, momentum=0.9), 20), donate_argnums=0)
    state = init_train_state(jax.tree.map(jnp.array, ZERO), optax.sgd(0.05, momentum=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "donated buffers were not usable" would fail here
        for e in range(3):
            old = state
            state, metrics = epoch(state, jax.random.key(e), data)
            assert old.params["w"].is_deleted()  # donated: the epoch reused its buffers
    assert epoch._cache_size() == 1
    assert int(state.step) == 9 and isinstance(state, TrainState)


# --- batched evaluation -----------------------------------------------------------------------------


def test_map_batches_equals_unbatched_for_a_ragged_last_chunk():
    n = 23
    x = jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2)
    y = jnp.arange(n, dtype=jnp.int32)

    def per_example(batch, key):
        bx, by = batch
        return {"sum": jnp.sum(bx, axis=1) * by.astype(jnp.float32), "double": 2 * bx}

    whole = per_example((x, y), None)
    seen = []
    for batch_size in (5, 23, 100):
        out = jax.jit(lambda d, k, bs=batch_size: map_batches(per_example, d, k, bs))((x, y), jax.random.key(0))
        assert out["sum"].shape == (n,) and out["double"].shape == (n, 2)
        np.testing.assert_array_equal(np.asarray(out["sum"]), np.asarray(whole["sum"]))
        np.testing.assert_array_equal(np.asarray(out["double"]), np.asarray(whole["double"]))
        seen.append(out)
    means = evaluate(per_example, (x, y), jax.random.key(0), 5)
    assert float(means["sum"]) == pytest.approx(float(jnp.mean(whole["sum"])), rel=1e-6)
    # One key per chunk: a random fn sees 5 different keys over 5 chunks, shared within a chunk.
    draws = map_batches(lambda b, k: jnp.broadcast_to(jax.random.uniform(k), b.shape), y, jax.random.key(1), 5)
    draws = np.asarray(draws)
    assert len(np.unique(draws)) == 5 and len(np.unique(draws[:5])) == 1
    one_line_error(
        "map_batches: batch_size must be a positive integer, got 0",
        map_batches,
        per_example,
        (x, y),
        jax.random.key(0),
        0,
    )


# --- validation split and early stopping --------------------------------------------------------------


def test_split_validation():
    data = (jnp.arange(10, dtype=jnp.float32), {"y": jnp.arange(10, dtype=jnp.int32)})
    train, validation = split_validation(data, 0.7)  # ceil(7.000000000000001) would be 8
    np.testing.assert_array_equal(np.asarray(train[0]), np.arange(3))
    np.testing.assert_array_equal(np.asarray(validation[1]["y"]), np.arange(3, 10))
    train, validation = split_validation(data, 0.01)  # ceil: at least one validation example
    assert train[0].shape == (9,) and validation[0].shape == (1,)
    for fraction in (0.0, 1.0, -0.1, 1.5):
        one_line_error(
            f"split_validation: fraction must be in (0, 1), got {fraction}", split_validation, data, fraction
        )
    one_line_error(
        "split_validation: fraction 0.95 of 10 examples leaves no training examples", split_validation, data, 0.95
    )
    one_line_error(
        "split_validation: every leaf of data needs the same leading size",
        split_validation,
        (jnp.zeros(3, jnp.float32), jnp.zeros(4, jnp.float32)),
        0.5,
    )


def test_early_stopping_update_sequence():
    update = jax.jit(early_stopping_update, static_argnums=3, static_argnames="higher_is_better")
    stopping = init_early_stopping({"p": jnp.zeros((), jnp.float32)})
    assert isinstance(stopping, EarlyStopping) and bool(jnp.isnan(stopping.best_value))
    record = []
    for epoch, value in enumerate([jnp.nan, 3.0, 2.0, 2.5, 2.0, 1.9, 4.0, 5.0, 6.0]):
        stopping, stop = update(stopping, value, {"p": jnp.float32(epoch)}, 3)
        record.append(
            (float(stopping.best_value), float(stopping.best_params["p"]), int(stopping.bad_epochs), bool(stop))
        )
    assert record[0][2] == 1 and np.isnan(record[0][0])  # NaN is never an improvement
    assert record[1][:3] == (3.0, 1.0, 0) and record[2][:3] == (2.0, 2.0, 0)
    assert record[4][2] == 2  # equal is not better
    assert record[5] == (pytest.approx(1.9), 5.0, 0, False)
    assert [r[3] for r in record[6:]] == [False, False, True]  # 3 bad epochs: stop
    assert record[-1][1] == 5.0
    stopping = init_early_stopping({"p": jnp.zeros((), jnp.float32)})
    for value in (1.0, 2.0, 1.5):
        stopping, stop = update(stopping, value, {"p": jnp.float32(value)}, 1, higher_is_better=True)
    assert float(stopping.best_value) == 2.0 and bool(stop)


# --- fit --------------------------------------------------------------------------------------------


def test_fit_reaches_least_squares():
    x, y = regression()
    design = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)
    solution = np.linalg.lstsq(design, np.asarray(y, np.float64), rcond=None)[0]
    params, history = fit(
        squared_error,
        ZERO,
        (x, y),
        key=jax.random.key(1),
        optimizer=optax.sgd(0.05, momentum=0.9),
        batch_size=240,
        epochs=300,
        progress=False,
    )  # full batch: gradient descent converges
    np.testing.assert_allclose(np.asarray(params["w"]), solution[:3], atol=1e-5)
    assert float(params["b"]) == pytest.approx(solution[3], abs=1e-5)
    assert len(history) == 300 and set(history[0]) == {"epoch", "loss", "mae", "seconds"}
    assert history[-1]["loss"] < history[0]["loss"]
    assert np.asarray(ZERO["w"]).shape == (3,)  # the caller's arrays survive donation (fit copies them)

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes a Python float with its int32 count
        # An equinox module, minibatches of 24.
        model = eqx.nn.Linear(3, "scalar", dtype=jnp.float32, key=jax.random.key(2))

        def model_loss(model, batch, key, state):
            bx, by = batch
            return jnp.mean(jnp.square(jax.vmap(model)(bx) - by)), {}

        schedule = optax.cosine_decay_schedule(5e-2, 80 * 10)  # anneals the minibatch noise away
        model, history = fit(
            model_loss,
            model,
            (x, y),
            key=jax.random.key(3),
            optimizer=optax.adam(schedule),
            batch_size=24,
            epochs=80,
            progress=False,
        )
    assert isinstance(model, eqx.nn.Linear) and model.weight.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(model.weight[0]), solution[:3], atol=2e-3)
    assert float(model.bias.squeeze()) == pytest.approx(solution[3], abs=2e-3)


def test_fit_early_stopping_returns_the_best_params(capsys):
    # Training pulls w from -2 towards +2; the validation data's optimum is w = 0, so its loss falls,
    # then rises once w passes 0: fit stops `patience` epochs after the best epoch and returns its params.
    x = jnp.linspace(-1, 1, 40, dtype=jnp.float32)
    train, validation = (x, 2 * x), (x, 0 * x)

    def loss_fn(params, batch, key, state):
        return jnp.mean(jnp.square(params * batch[0] - batch[1])), {}

    def run(epochs, **kwargs):
        return fit(
            loss_fn,
            jnp.float32(-2.0),
            train,
            key=jax.random.key(0),
            optimizer=optax.sgd(0.1),
            batch_size=10,
            epochs=epochs,
            **kwargs,
        )

    params, history = run(100, validation=validation, patience=3, progress=True)
    values = [row["validation"] for row in history]
    best = int(np.argmin(values))
    assert 0 < best < len(values) - 1 and len(history) == best + 1 + 3  # stopped after 3 bad epochs
    assert all(v > values[best] for v in values[best + 1 :])
    last, _ = run(best + 1, progress=False)  # the same keys: the params after the best epoch
    assert float(params) == float(last)
    assert "epoch" in capsys.readouterr().out  # the progress bar

    # eval_fn: per-example values, minimised; with the default (the loss) the values agree exactly.
    _, default = run(5, validation=validation, progress=False)
    _, explicit = run(
        5, validation=validation, progress=False, eval_fn=lambda p, batch, key: jnp.square(p * batch[0] - batch[1])
    )
    np.testing.assert_allclose([r["validation"] for r in default], [r["validation"] for r in explicit], rtol=1e-5)
    _, split = run(2, validation=0.25, progress=False)  # a fraction: the last 10 examples validate
    assert "validation" in split[0]


def test_fit_errors():
    data = regression(20)
    kwargs = dict(key=jax.random.key(0), optimizer=optax.sgd(0.1), batch_size=5, epochs=2, progress=False)
    one_line_error("fit: patience needs validation data", fit, squared_error, ZERO, data, patience=2, **kwargs)
    one_line_error(
        "fit: batch_size must be in 1..16 (the number of training examples), got 17",
        fit,
        squared_error,
        ZERO,
        data,
        validation=0.2,
        **{**kwargs, "batch_size": 17},
    )
    one_line_error(
        "fit: every leaf of data needs the same leading size",
        fit,
        squared_error,
        ZERO,
        (data[0], data[1][:-1]),
        **kwargs,
    )
    with pytest.raises(FloatingPointError, match="the training loss is nan in epoch 1"):
        fit(lambda p, b, k, s: (jnp.float32(jnp.nan) * p["b"], {}), ZERO, data, **kwargs)


# --- exponential moving average of the weights ---------------------------------------------------

from reparam.training import ema_decay, ema_tracker, ema_update, init_ema  # noqa: E402


def test_ema_decay_warms_up():
    steps = jnp.asarray([0, 80, 890, 10**6], jnp.int32)
    np.testing.assert_allclose(np.asarray(ema_decay(steps, 0.999)), [0.1, 0.9, 0.99, 0.999], rtol=1e-6)
    assert float(ema_decay(10**6, 0.5)) == 0.5


def test_ema_tracker_in_an_epoch_equals_the_recursion_by_hand():
    """make_epoch with ema_tracker: state.extra equals the EMA recursion over the iterates the steps
    started from, computed by hand from a replay of the same steps (float64)."""
    x, y = regression(n=64)
    x, y = x.astype(jnp.float64), y.astype(jnp.float64)
    params = {"w": jnp.zeros(3, jnp.float64), "b": jnp.zeros((), jnp.float64)}

    def loss_fn(p, batch, key, state):
        bx, by = batch
        return jnp.mean(jnp.square(bx @ p["w"] + p["b"] - by)), {}

    optimizer = optax.sgd(0.1)
    with jax.numpy_dtype_promotion("standard"):
        epoch = make_epoch(loss_fn, optimizer, 16, update_extra=ema_tracker(0.5))
        state = init_train_state(params, optimizer, extra=init_ema(params))
        state, _ = jax.jit(epoch)(state, jax.random.key(0), (x, y))
        # replay: the same batches, plain steps, the recursion by hand
        k_shuffle, _ = jax.random.split(jax.random.key(0))
        order = np.asarray(jax.random.permutation(k_shuffle, 64))
        step = make_step(loss_fn, optimizer)
        replay = init_train_state(params, optimizer)
        average = dict(params)
        for i in range(4):
            rows = order[16 * i : 16 * (i + 1)]
            d = min(0.5, (1 + i) / (10 + i))
            average = {k: d * average[k] + (1 - d) * replay.params[k] for k in params}
            replay, _ = step(replay, (x[rows], y[rows]), jax.random.key(0))
    for k in params:
        np.testing.assert_allclose(np.asarray(state.extra[k]), np.asarray(average[k]), rtol=1e-6)  # d is float32
    assert not np.allclose(np.asarray(state.extra["w"]), np.asarray(state.params["w"]))


def test_ema_update_bad_decay():
    one_line_error("decay must be in [0, 1)", ema_update, {"a": jnp.zeros(2)}, {"a": jnp.ones(2)}, 0, 1.0)
    one_line_error("decay must be in [0, 1)", ema_tracker, -0.1)

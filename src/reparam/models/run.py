"""`reparam vae`: train a Gaussian or categorical VAE, with a run folder, progress, pictures,
atomic checkpoints after every epoch and exact resume."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..data import Dataset, binarize_dynamic, binarize_static, load_dataset
from ..runs import load_serialised, serialise, start_run, write_atomic, write_csv, write_json
from . import pictures
from .train import init_model, init_state, make_epoch, mean_elbo, mean_log_likelihood, tau_at


@dataclass(frozen=True)
class VAERunConfig:
    """Train a variational autoencoder on binarized images and score it by test log-likelihood."""

    latent: Literal["gaussian", "categorical"] = "gaussian"
    """Latent variables: Gaussian (pathwise gradients) or categorical (trained by --estimator)."""
    dataset: str = "digits"
    """'digits' (scikit-learn's 8x8 digits, bundled) or 'mnist:PATH' (IDX folder or .npz)."""
    epochs: int = 100
    """Passes over the training set."""
    latent_dim: int = 8
    """Gaussian: latent dimensions (2 also draws latent.png). Categorical: number of latent variables N."""
    num_categories: int = 10
    """Categories K of each categorical latent variable."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden tanh layer widths of the encoder (the decoder mirrors them)."""
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    """p(x | z): Bernoulli (binarized data) or Gaussian with a learned per-pixel scale (continuous data)."""
    objective: Literal["elbo", "iwae"] = "elbo"
    """Training objective (Gaussian latent): the ELBO or the importance-weighted bound IWAE_k."""
    k: int = 5
    """Importance samples of the IWAE training objective."""
    kl: Literal["closed", "mc"] = "closed"
    """KL term of the ELBO objective: closed form, or Monte Carlo from the same samples."""
    num_samples: int = 1
    """Latent samples per example in each ELBO estimate while training (REINFORCE: >= 2 uses the
    leave-one-out baseline, 1 a moving average of the learning signal)."""
    estimator: Literal["gumbel", "st-gumbel", "reinforce"] | None = None
    """Gradient estimator of the categorical latent (default gumbel): Gumbel-Softmax,
    straight-through Gumbel-Softmax, or the score function with a baseline."""
    tau_min: float = 0.5
    """Lowest Gumbel-Softmax temperature (Jang et al. 2017: tau = max(tau_min, exp(-r t)))."""
    anneal_rate: float = 1e-3
    """Temperature annealing rate r per gradient step."""
    batch_size: int = 100
    """Examples per gradient step (the remainder of each shuffled epoch is dropped)."""
    lr: float = 1e-3
    """Adam learning rate."""
    binarize: Literal["static", "dynamic", "none"] = "static"
    """Static (pixel >= 1/2), dynamic (a fresh Bernoulli draw per batch; test set drawn once), or
    none (grey levels, for --likelihood gaussian)."""
    eval_k: int = 1000
    """Importance samples per test example for the final log-likelihood estimate (IWAE_K)."""
    seed: int = 0
    """Random seed (initialisation, shuffling, noise, evaluation)."""
    out: Path = Path("runs/vae")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly)."""

    def validate(self) -> None:
        counts = {"--epochs": self.epochs, "--latent-dim": self.latent_dim, "--k": self.k, "--eval-k": self.eval_k,
                  "--batch-size": self.batch_size, "--num-samples": self.num_samples}
        for flag, value in counts.items():
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.num_categories < 2:
            raise ValueError(f"--num-categories must be >= 2, got {self.num_categories}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"--hidden needs one or more positive widths, got {self.hidden}")
        if not (self.lr > 0 and self.tau_min > 0 and self.anneal_rate >= 0):
            raise ValueError(f"need --lr > 0, --tau-min > 0, --anneal-rate >= 0; got {self.lr}, {self.tau_min}, {self.anneal_rate}")
        if self.latent == "gaussian" and self.estimator is not None:
            raise ValueError(f"--estimator {self.estimator} is for --latent categorical; a Gaussian latent trains pathwise")
        if self.latent == "categorical" and (self.objective != "elbo" or self.kl != "closed"):
            raise ValueError("--latent categorical trains the ELBO with the closed-form KL (--objective elbo --kl closed)")
        if self.likelihood == "bernoulli" and self.binarize == "none":
            raise ValueError("--likelihood bernoulli needs binary data: use --binarize static or dynamic")

    def check_data(self, data: Dataset) -> None:
        if self.batch_size > data.x_train.shape[0]:
            raise ValueError(f"--batch-size {self.batch_size} exceeds the {data.x_train.shape[0]} training examples of {data.name}")

    @property
    def label(self) -> str:
        if self.latent == "categorical":
            return f"categorical VAE {self.latent_dim}x{self.num_categories}, {self.estimator or 'gumbel'}"
        bound = f"IWAE k={self.k}" if self.objective == "iwae" else "ELBO"
        return f"Gaussian VAE d={self.latent_dim}, {bound}"


def load_config(folder: Path) -> VAERunConfig:
    try:
        raw = json.loads((Path(folder) / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} is not a run folder (no config.json)") from None
    try:
        return VAERunConfig(**{**raw, "hidden": tuple(raw.get("hidden", VAERunConfig.hidden)), "out": Path(folder), "resume": None})
    except TypeError as error:  # a field this version does not know
        raise ValueError(f"{folder}/config.json is not a reparam vae config ({error})") from None


def prepare_data(data: Dataset, binarize: str, key) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(x_train, x_train_eval, x_test)`: what training draws batches from, and the fixed data the
    bounds are scored on (for dynamic binarization, one draw with `key`)."""
    if binarize == "static":
        train = binarize_static(data.x_train)
        return train, train, binarize_static(data.x_test)
    if binarize == "dynamic":
        k_train, k_test = jax.random.split(key)
        return data.x_train, binarize_dynamic(k_train, data.x_train), binarize_dynamic(k_test, data.x_test)
    return data.x_train, data.x_train, data.x_test


class RunKeys(NamedTuple):
    """Every random stream of a run, split once from the seed; per-epoch keys are `fold_in(., epoch)`."""

    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array
    final: jax.Array
    pictures: jax.Array


class Programs(NamedTuple):
    """A run's compiled pieces (the same for every seed and folder)."""

    epoch: Callable  # (state, key, x_train) -> (state, mean objective), compiled ahead of time
    evaluate: Callable  # (params, key, x_train_eval, x_test) -> (train ELBO, test ELBO)
    log_likelihood: Callable  # (params, x_test, key) -> mean log p(x), IWAE at --eval-k


init_params = eqx.filter_jit(init_model)  # one compiled program, not one per initialiser op


@functools.lru_cache(maxsize=8)
def programs(config: VAERunConfig, data_shape: tuple[int, int]) -> Programs:
    """Compile once per setting: a resume, a second seed or a test in the same process reuses it.
    The epoch is compiled before training, so no epoch's throughput includes compilation."""
    key = jax.eval_shape(lambda: jax.random.key(0))
    params, static = eqx.partition(eqx.filter_eval_shape(init_model, config, data_shape[1], key),
                                   lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    model = lambda params: eqx.combine(params, static)
    optimizer = optax.adam(config.lr)
    state = jax.eval_shape(lambda p: init_state(p, optimizer), params)
    epoch = jax.jit(make_epoch(config, static, optimizer)).lower(state, key, jax.ShapeDtypeStruct(data_shape, jnp.float32))
    evaluate = jax.jit(lambda params, key, x_train, x_test: (mean_elbo(model(params), x_train, jax.random.fold_in(key, 0)),
                                                             mean_elbo(model(params), x_test, jax.random.fold_in(key, 1))))
    log_likelihood = jax.jit(lambda params, x, key: mean_log_likelihood(model(params), x, key, config.eval_k))
    return Programs(epoch.compile(), evaluate, log_likelihood)


def run(config: VAERunConfig, console: Console | None = None, *, max_epochs: int | None = None) -> list[dict]:
    """Train, writing the run folder. `max_epochs` stops after that many epochs as if the process
    were killed there (tests use it to check resume)."""
    console = console or Console()
    resuming = config.resume is not None
    if resuming:  # everything but the folder comes from the run's own config.json
        config = load_config(Path(config.resume))
    if config.latent == "categorical" and config.estimator is None:
        config = dataclasses.replace(config, estimator="gumbel")
    config.validate()
    data = load_dataset(config.dataset)
    config.check_data(data)
    keys = RunKeys(*jax.random.split(jax.random.key(config.seed), 6))
    x_train, x_train_eval, x_test = prepare_data(data, config.binarize, keys.data)
    compiled_config = dataclasses.replace(config, seed=0, epochs=1, out=Path("."), resume=None)  # what compiles

    params, static = eqx.partition(init_params(compiled_config, x_train.shape[1], keys.init), eqx.is_inexact_array)
    state = init_state(params, optax.adam(config.lr))
    out = Path(config.out)
    if resuming:
        state = load_serialised(out / "checkpoint.eqx", state)
        start = json.loads((out / "checkpoint.json").read_text())["epoch"]
        rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                if "test_elbo" in r and r["epoch"] <= start]
        console.print(f"Resuming {out} after epoch {start}")
    else:
        start_run(out, config)
        start, rows = 0, []
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    program = programs(compiled_config, x_train.shape)
    last = config.epochs if max_epochs is None else min(config.epochs, max_epochs)
    state = train_epochs(config, program, state, (x_train, x_train_eval, x_test), keys, range(start, last), rows, out, console)
    if last < config.epochs:
        return rows
    return finish(out, rows, config, program, eqx.combine(state.params, static), data, (x_test, keys), console)


def train_epochs(config: VAERunConfig, program: Programs, state, data, keys: RunKeys, epochs: range, rows: list[dict],
                 out: Path, console: Console):
    """The epochs in `epochs`, each followed by its metrics row and an atomic checkpoint."""
    x_train, x_train_eval, x_test = data
    examples = (x_train.shape[0] // config.batch_size) * config.batch_size
    columns = [TextColumn(f"[bold]{config.label}"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
               TextColumn("test ELBO {task.fields[elbo]}"), TextColumn("{task.fields[rate]} ex/s"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("vae", total=config.epochs, completed=epochs.start, elbo="-", rate="-")
        for e in epochs:
            key = jax.random.fold_in(keys.train, e)
            begun = time.perf_counter()
            state, objective = program.epoch(state, key, x_train)
            objective = float(objective)  # waits for the epoch
            rate = examples / (time.perf_counter() - begun)
            train_elbo, test_elbo = map(float, program.evaluate(state.params, jax.random.fold_in(keys.eval, e), x_train_eval, x_test))
            if not all(map(math.isfinite, (objective, train_elbo, test_elbo))):
                raise FloatingPointError(f"non-finite bound after epoch {e + 1}: objective {objective}, test ELBO {test_elbo}")
            row = {"epoch": e + 1, "train_objective": objective, "train_elbo": train_elbo, "test_elbo": test_elbo}
            if config.latent == "categorical" and config.estimator != "reinforce":
                row["tau"] = float(tau_at(config, state.step))
            row["examples_per_s"] = rate
            rows.append(row)
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            write_atomic(out / "checkpoint.eqx", serialise(state))  # state first, then the marker naming it
            write_json(out / "checkpoint.json", {"epoch": e + 1})
            progress.update(task, completed=e + 1, elbo=f"{test_elbo:.2f}", rate=f"{rate:,.0f}")
    return state


def finish(out: Path, rows: list[dict], config: VAERunConfig, program: Programs, model, data: Dataset, test,
           console: Console) -> list[dict]:
    """The test log-likelihood (IWAE at --eval-k), metrics.csv, pictures, model.eqx, summary."""
    x_test, keys = test
    begun = time.perf_counter()
    log_px = float(program.log_likelihood(eqx.filter(model, eqx.is_inexact_array), x_test, keys.final))
    final = {"epoch": config.epochs, "test_nll_iwae": -log_px, "eval_k": config.eval_k,
             "eval_seconds": time.perf_counter() - begun}
    rows.append(final)
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(final) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv(out / "metrics.csv", [{key: row.get(key, "") for key in columns} for row in rows])
    draw_pictures(out, rows, config, model, data, x_test, keys.pictures)
    write_atomic(out / "model.eqx", serialise(eqx.filter(model, eqx.is_array)))
    console.print(f"{config.label} on {data.name}: test ELBO {rows[-2]['test_elbo']:.2f}, test NLL "
                  f"{-log_px:.2f} nats (IWAE, K={config.eval_k:,}) after {config.epochs} epochs")
    pictures_written = "samples.png, reconstructions.png, bounds.png" + (", latent.png" if has_latent_picture(config) else "")
    console.print(f"Wrote {pictures_written}, model.eqx, metrics.jsonl, metrics.csv, checkpoint.eqx, config.json")
    console.print(f"Run folder: {out}", soft_wrap=True)
    return rows


def has_latent_picture(config: VAERunConfig) -> bool:
    return config.latent == "gaussian" and config.latent_dim == 2


def draw_pictures(out: Path, rows: list[dict], config: VAERunConfig, model, data: Dataset, x_test, key) -> None:
    shape = data.image_shape
    samples, reconstructions, latent_means, grid = map(np.asarray, picture_arrays(model, x_test[:30], x_test, key,
                                                                                  has_latent_picture(config)))
    pictures.plot_samples(samples, shape, out / "samples.png", f"{config.label}: E[x | z], z ~ p(z)")
    pictures.plot_reconstructions(np.asarray(x_test[:30]), reconstructions, shape, out / "reconstructions.png")
    pictures.plot_bounds(rows, out / "bounds.png", f"{config.label} on {data.name}")
    if has_latent_picture(config):
        pictures.plot_latent(latent_means, np.asarray(data.y_test), grid, LATENT_EXTENT, shape, out / "latent.png")


LATENT_EXTENT, LATENT_GRID = 3.0, 15


@eqx.filter_jit
def picture_arrays(model, x_shown, x_test, key, latent: bool):
    """Decoder means (clipped to [0, 1]) of 64 prior draws and of the posterior modes of `x_shown`;
    with `latent`, the test set's posterior means and the decoded `LATENT_GRID`^2 grid."""
    display = lambda z: jnp.clip(model.likelihood(z).mean(), 0.0, 1.0)
    samples, reconstructions = display(model.prior().sample(key, (64,))), display(model.posterior(x_shown).mode())
    if not latent:
        return samples, reconstructions, jnp.zeros(()), jnp.zeros(())
    axis = jnp.linspace(-LATENT_EXTENT, LATENT_EXTENT, LATENT_GRID, dtype=jnp.float32)
    grid = jnp.stack(jnp.meshgrid(axis, axis[::-1]), -1).reshape(-1, 2)  # row-major, top row z_2 = +extent
    return samples, reconstructions, model.posterior(x_test).mean(), display(grid)

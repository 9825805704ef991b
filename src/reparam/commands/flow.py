"""`reparam flow`: fit a normalizing flow (`reparam.models.flows`) by maximum likelihood to data, or
by reverse KL to an energy target, on the shared run layer; report the held-out NLL (or the KL).

Data (`--data`):

- 2-D toys `moons`, `8gaussians`, `checkerboard`, `pinwheel`, `spirals` (`reparam.data.toys`): every
  step draws a fresh batch; the test set is `--test-size` draws of its own. Where the density is
  known the optimum (its entropy) is reported beside the test NLL.
- `digits` (binarized at 1/2) and `digits17` (the 17 grey levels 0..16) of the 8x8 digits, uniformly
  dequantized (a fresh draw every batch; the test set drawn once): the reported NLL is the bound
  `-log P(levels) <= E_u[-log p((levels + u) / L)] + D log L` in nats (`L = 2` or 17, `D = 64`), so the
  binarized number sits in one table with the VAEs; bits/dim beside it.
- `csv:PATH`: a comma-separated table with a header row, every column a dimension (read by
  `reparam.data.load_table`: one-line errors for missing files, non-numbers, NaN or empty cells),
  split 90/10 into train and held-out test rows.
- `U1`..`U4` (`reparam.data.energies`): variational fit of `p(z) ~ exp(-U(z))` on the box
  `[-4, 4]^2`: the flow lives on R^2 and is pushed onto the box by `4 tanh` (fitted to the target pulled
  back, `plane_target_log_prob`); the run reports `kl = loss + log Z` (`log Z` by quadrature), in nats.

Every continuous data set is standardised with its training mean and standard deviation; the
log-det of that map is included in every reported NLL (nats per example in the original units).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console

from .. import training
from ..bijectors.chain import Chain
from ..data import DIGITS_LEVELS, TOY_ENTROPY, TOYS, bits_per_dim, dequantize, grey_levels, load_digits, sample_toy
from ..data.energies import ENERGIES, log_normaliser, plane_target_log_prob, target_log_prob, to_box
from ..data.tables import load_table
from ..distributions.transformed import Transformed
from ..models import flow_pictures as P
from ..models.flows import check_flow_settings, density_loss, make_flow, make_steps, reverse_kl_loss
from ..runs import Job, RunKeys, compile_once, drive, open_run, resolve_config, serialise, write_atomic

TOY_NAMES = {"moons": "two_moons", "8gaussians": "eight_gaussians"} | {name: name for name in TOYS}
"""`--data` spellings of the 2-D toys -> `reparam.data.toys` names."""
IMAGE_LEVELS = {"digits": 2, "digits17": DIGITS_LEVELS}
"""The image data sets and their number of levels `L` (binarized: 2)."""
DATA_USAGE = (
    "choose moons, 8gaussians, checkerboard, pinwheel, spirals, digits (binarized), digits17 (17 grey levels), "
    "U1, U2, U3, U4 or csv:PATH"
)
EVAL_CHUNK = 4096
"""Examples (or samples) per chunk of a held-out evaluation."""
STANDARDISING_DRAWS = 100_000
"""Toy draws whose mean and standard deviation standardise a toy (a fixed key: the same every run)."""
PICTURE_GRID = 200
"""Points per axis of the density pictures."""


@dataclass(frozen=True)
class FlowCommand:
    """Fit a normalizing flow to data (maximum likelihood) or to an energy target (reverse KL)."""

    data: str = "8gaussians"
    """moons | 8gaussians | checkerboard | pinwheel | spirals | digits (binarized) | digits17 (17 grey
    levels, bits/dim) | U1..U4 (variational fit of the energy on [-4, 4]^2) | csv:PATH."""
    flow: str = "nsf"
    """realnvp | maf | iaf | nsf | planar | radial | sylvester."""
    layers: int = 8
    """Flow layers (identical units stacked with a scan)."""
    steps: int = 5000
    """Gradient steps (finite data sets: rounded up to whole evaluation chunks of epochs)."""
    batch_size: int = 256
    """Examples per gradient step (maximum likelihood)."""
    num_samples: int = 256
    """Flow samples per gradient step (U targets: the reverse-KL estimate)."""
    stick_the_landing: bool = False
    """U targets: the sticking-the-landing gradient (Roeder et al. 2017; inverts the samples)."""
    learning_rate: float = 1e-3
    """Adam step size at the start; cosine decay to 0 over the run."""
    clip_norm: float = 5.0
    """Gradients are clipped to this global norm."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the conditioner networks (realnvp, maf, iaf, nsf)."""
    num_bins: int = 8
    """Spline bins (nsf)."""
    bound: float = 4.0
    """Splines act on [-bound, bound] (standardised units), identity outside (nsf)."""
    eval_every: int = 250
    """Gradient steps between evaluations (one metrics row and checkpoint each)."""
    test_size: int = 20_000
    """Toys: held-out draws scored for the test NLL. U targets: samples of the final KL estimate."""
    validation_fraction: float = 0.1
    """digits / csv: hold out this last part of the training rows (validation NLL; 0: none)."""
    patience: int | None = None
    """digits / csv: stop after this many evaluations without a better validation NLL and keep the
    best weights (needs --validation-fraction > 0)."""
    seed: int = 0
    """Random seed (initialisation, data draws, dequantization, evaluation)."""
    out: Path = Path("runs/flow")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""

    def check(self) -> None:
        """One-line errors for impossible settings."""
        check_flow_settings(self.flow, 2, self.layers, self.hidden_sizes, 0)
        data_kind(self.data)
        for flag, value in (
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--num-samples", self.num_samples),
            ("--eval-every", self.eval_every),
            ("--test-size", self.test_size),
            ("--num-bins", self.num_bins),
        ):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if not (self.learning_rate > 0 and self.clip_norm > 0 and self.bound > 0):
            raise ValueError(
                f"need --learning-rate, --clip-norm and --bound > 0; got {self.learning_rate}, {self.clip_norm}, "
                f"{self.bound}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.patience is not None and (self.patience < 1 or self.validation_fraction == 0):
            raise ValueError("--patience needs a value >= 1 and --validation-fraction > 0 (the NLL it watches)")
        if self.stick_the_landing and data_kind(self.data) != "energy":
            raise ValueError("--stick-the-landing is for the variational fits of U1..U4")

    @property
    def label(self) -> str:
        """A short name of the run for the progress bar and pictures."""
        return f"{self.flow} x{self.layers} on {self.data}"


def data_kind(data: str) -> str:
    """`"toy"`, `"image"`, `"energy"` or `"csv"` for a `--data` value; a one-line error otherwise."""
    if data in TOY_NAMES:
        return "toy"
    if data in IMAGE_LEVELS:
        return "image"
    if data in ENERGIES:
        return "energy"
    if isinstance(data, str) and data.startswith("csv:") and len(data) > 4:
        return "csv"
    raise ValueError(f"unknown --data {data!r}; {DATA_USAGE}")


class Problem(NamedTuple):
    """What a run fits. Continuous data are standardised, `z = (x - mean) / scale`; the NLL of `x` in
    nats is that of `z` plus `offset` (`sum log scale`, plus `D log L` for dequantized images).
    `train` holds the training examples (images: integer levels, dequantized per batch), None for
    toys (fresh draws) and energies (no data); `validation` (or None) and `test` are standardised
    (images: dequantized once)."""

    kind: str
    dim: int
    train: jax.Array | None
    validation: jax.Array | None
    test: jax.Array | None
    mean: np.ndarray
    scale: np.ndarray
    offset: float
    levels: int = 0
    log_z: float = 0.0


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of `x` `(n, d)` (1 where a dimension is constant)."""
    x = np.asarray(x, np.float64)
    scale = x.std(0)
    return x.mean(0).astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)


def load_problem(config: FlowCommand, key: jax.Array) -> Problem:
    """The data (or target) of `config.data`, standardised; `key` draws toy test sets and dequantizes."""
    kind = data_kind(config.data)
    if kind == "energy":
        ones = np.ones(2, np.float32)
        return Problem("energy", 2, None, None, None, 0 * ones, ones, 0.0, log_z=log_normaliser(config.data))
    if kind == "toy":
        name = TOY_NAMES[config.data]
        mean, scale = standardiser(sample_toy(name, jax.random.key(0), STANDARDISING_DRAWS))
        test = (sample_toy(name, key, config.test_size) - mean) / scale
        return Problem("toy", 2, None, None, test, mean, scale, float(np.sum(np.log(scale.astype(np.float64)))))
    if kind == "image":
        levels = IMAGE_LEVELS[config.data]
        data = load_digits()
        grey = grey_levels(data.x_train) if levels > 2 else (data.x_train >= 0.5).astype(jnp.int32)
        test_levels = grey_levels(data.x_test) if levels > 2 else (data.x_test >= 0.5).astype(jnp.int32)
        k_stats, k_test, k_validation = jax.random.split(key, 3)
        mean, scale = standardiser(dequantize(k_stats, grey, levels))
        test = (dequantize(k_test, test_levels, levels) - mean) / scale
        train, validation = _hold_out(config, grey)
        if validation is not None:
            validation = (dequantize(k_validation, validation, levels) - mean) / scale
        offset = float(np.sum(np.log(scale.astype(np.float64))) + grey.shape[1] * math.log(levels))
        return Problem("image", grey.shape[1], train, validation, test, mean, scale, offset, levels)
    table = load_csv(config.data[len("csv:") :], config.seed)
    mean, scale = standardiser(table[0])
    train, validation = _hold_out(config, jnp.asarray((table[0] - mean) / scale))
    test = jnp.asarray((table[1] - mean) / scale)
    return Problem("csv", table[0].shape[1], train, validation, test, mean, scale, float(np.sum(np.log(scale))))


def _hold_out(config: FlowCommand, train: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    validation = None
    if config.validation_fraction > 0:
        train, validation = training.split_validation(train, config.validation_fraction)
    if config.batch_size > train.shape[0]:
        raise ValueError(
            f"--batch-size {config.batch_size} exceeds the {train.shape[0]} training rows of {config.data}"
        )
    return train, validation


def load_csv(path: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, test)` float64 rows of every column of the CSV file at `path`: `load_table`'s 90/10
    split (seed `seed`) and checks, with its last column taken as the "target" and put back."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file '{path}' (csv:{path})")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header = next((row for row in csv.reader(handle) if row), [])
    except (UnicodeDecodeError, csv.Error):
        header = []  # load_table names the problem
    if len(header) == 1:
        raise ValueError(f"csv:{path} has one column; `reparam flow` fits densities of two or more columns")
    table = load_table(f"csv:{path}", target=header[-1].strip() if header else None, seed=seed)

    def original(x, y):
        x = np.asarray(x, np.float64) * np.asarray(table.x_scale, np.float64) + np.asarray(table.x_mean, np.float64)
        return np.concatenate([x, (np.asarray(y, np.float64) * table.y_scale + table.y_mean)[:, None]], 1)

    return original(table.x_train, table.y_train), original(table.x_test, table.y_test)


def build_flow(config: FlowCommand, dim: int, key: jax.Array) -> Transformed:
    """The configured flow on `R^dim`."""
    return make_flow(
        config.flow,
        dim,
        config.layers,
        key=key,
        hidden_sizes=config.hidden_sizes,
        num_bins=config.num_bins,
        bound=config.bound,
    )


def split_flow(flow: Transformed):
    """`(params, fixed, static)`: the trained floating arrays, the other arrays (permutations, masks:
    they vary with the seed, so compiled programs take them as arguments) and the rest."""
    params, rest = eqx.partition(flow, eqx.is_inexact_array)
    fixed, static = eqx.partition(rest, eqx.is_array)
    return params, fixed, static


class Programs(NamedTuple):
    """The compiled pieces of one setting: the flow's static half, the optimizer, the training chunk
    and the evaluations (all take the trained params and the fixed arrays)."""

    static: object
    optimizer: optax.GradientTransformation
    train: object
    nll: object
    kl: object


@compile_once
def programs(config: FlowCommand, problem_key: tuple, total_steps: int) -> Programs:
    """Compile-once programs for `config` (seed-free) and the problem's `(kind, dim, levels, mean,
    scale)` (hashable: tuples)."""
    kind, dim, levels, mean, scale = problem_key
    mean, scale = jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32)
    _, _, static = split_flow(build_flow(config, dim, jax.random.key(0)))  # the structure only (cheap)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adam(optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1))),
    )
    model = lambda params, fixed: eqx.combine(params, fixed, static)
    rest = lambda fixed: eqx.combine(fixed, static)

    if kind == "toy":
        name = TOY_NAMES[config.data]

        def train(state, keys, fixed, data):
            draw = lambda k: (sample_toy(name, k, config.batch_size) - mean) / scale
            return make_steps(density_loss(rest(fixed)), optimizer, draw)(state, keys)

    elif kind == "energy":
        target = partial(plane_target_log_prob, config.data)

        def train(state, keys, fixed, data):
            loss = reverse_kl_loss(
                target, config.num_samples, stick_the_landing=config.stick_the_landing, static=rest(fixed)
            )
            return make_steps(loss, optimizer)(state, keys)

    else:
        transform = None
        if kind == "image":
            transform = lambda k, lv: (dequantize(k, lv, levels) - mean) / scale

        def train(state, keys, fixed, data):
            epoch = training.make_epoch(
                density_loss(rest(fixed)), optimizer, config.batch_size, transform_batch=transform
            )
            return jax.lax.scan(lambda s, k: epoch(s, k, data), state, keys)

    def nll(params, fixed, x, key):
        flow = model(params, fixed)
        return training.evaluate(lambda batch, k: -flow.log_prob(batch), x, key, EVAL_CHUNK)

    def kl(params, fixed, key):
        """Mean and standard error of `log q - log p~` over `test_size` fresh samples."""
        flow = model(params, fixed)
        num = -(-config.test_size // EVAL_CHUNK)

        def chunk(k):
            x, log_q = flow.rsample_and_log_prob(k, (EVAL_CHUNK,))
            return log_q - plane_target_log_prob(config.data, x)

        values = jax.lax.map(chunk, jax.random.split(key, num)).ravel()
        return jnp.mean(values), jnp.std(values) / jnp.sqrt(values.size)

    return Programs(
        static, optimizer, jax.jit(train, donate_argnums=0), jax.jit(nll), jax.jit(kl) if kind == "energy" else None
    )


class FlowState(NamedTuple):
    """A run's state between chunks: the train state and, with early stopping, its state."""

    train: training.TrainState
    stopping: training.EarlyStopping | None


class Schedule(NamedTuple):
    """How the run's gradient steps are cut into chunks: `units` (steps, or epochs for finite data)
    per chunk, the number of chunks and the total number of gradient steps."""

    per_chunk: int
    chunks: int
    total_steps: int
    steps_per_unit: int


def schedule(config: FlowCommand, problem: Problem) -> Schedule:
    """Chunks of `eval_every` steps (toys, energies) or of whole epochs of about `eval_every` steps."""
    if problem.train is None:
        per_chunk = min(config.eval_every, config.steps)
        return Schedule(per_chunk, -(-config.steps // per_chunk), config.steps, 1)
    per_epoch = problem.train.shape[0] // config.batch_size
    epochs = max(1, round(config.eval_every / per_epoch))
    chunks = -(-config.steps // (epochs * per_epoch))
    return Schedule(epochs, chunks, chunks * epochs * per_epoch, per_epoch)


def main(config: FlowCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Fit (or resume) a flow run, writing its folder; returns the metric rows."""
    config = resolve_config("flow", config)  # on --resume, every option comes from the run's own folder
    config.check()
    keys = RunKeys.from_seed(config.seed)
    problem = load_problem(config, keys.data)  # bad data fail here, before the folder is written
    check_flow_settings(config.flow, problem.dim, config.layers, config.hidden_sizes, 0)
    plan = schedule(config, problem)
    run = open_run("flow", config, resume=config.resume)
    compiled = dataclasses.replace(config, seed=0, out=Path("."), resume=None, tensorboard=False, patience=None)
    problem_key = (
        problem.kind,
        problem.dim,
        problem.levels,
        tuple(problem.mean.tolist()),
        tuple(problem.scale.tolist()),
    )
    prog = programs(compiled, problem_key, plan.total_steps)
    flow0 = build_flow(config, problem.dim, keys.init)
    params0, fixed, _ = split_flow(flow0)
    data = problem.train
    variational = problem.kind == "energy"

    def init() -> FlowState:
        train = training.init_train_state(jax.tree.map(jnp.array, params0), prog.optimizer)
        stopping = training.init_early_stopping(params0) if config.patience else None
        return FlowState(train, stopping)

    def heldout(params, x, key) -> float:
        return float(prog.nll(params, fixed, x, key)) + problem.offset

    def advance(state: FlowState, chunk: int) -> tuple[FlowState, list[dict]]:
        units = min(plan.per_chunk, config.steps - chunk * plan.per_chunk) if data is None else plan.per_chunk
        chunk_keys = jax.random.split(jax.random.fold_in(keys.train, chunk), units)
        train, metrics = prog.train(state.train, chunk_keys, fixed, data)
        row = {"step": int(train.step)}
        k_eval = jax.random.fold_in(keys.eval, chunk)
        if variational:
            loss = float(jnp.mean(metrics["loss"]))
            return FlowState(train, None), [{**row, "loss": loss, "kl": loss + problem.log_z}]
        row["train_nll"] = float(jnp.mean(metrics["nll"])) + problem.offset
        if data is not None:
            row["epoch"] = (chunk + 1) * plan.per_chunk
        stopping = state.stopping
        if problem.validation is not None:
            row["validation_nll"] = heldout(train.params, problem.validation, jax.random.fold_in(k_eval, 1))
        row["test_nll"] = heldout(train.params, problem.test, jax.random.fold_in(k_eval, 0))
        if stopping is not None:
            stopping, _ = training.early_stopping_update(stopping, row["validation_nll"], train.params, config.patience)
        return FlowState(train, stopping), [row]

    def finish(state: FlowState, rows: list[dict]) -> list[str]:
        params = state.train.params if state.stopping is None else state.stopping.best_params
        flow = eqx.combine(params, fixed, prog.static)
        final = {"step": int(state.train.step)}
        if variational:
            mean, stderr = prog.kl(params, fixed, keys.final)
            final |= {"kl": float(mean) + problem.log_z, "kl_stderr": float(stderr), "log_z": problem.log_z}
            line = f"KL(q || p) = {final['kl']:.4f} +- {final['kl_stderr']:.4f} nats (log Z = {problem.log_z:.4f})"
        else:
            final["test_nll"] = heldout(params, problem.test, keys.final)
            line = f"test NLL {final['test_nll']:.4f} nats"
            if problem.kind == "image":
                final["bits_per_dim"] = float(bits_per_dim(final["test_nll"], problem.dim))
                line += (
                    f" ({final['bits_per_dim']:.4f} bits/dim, dequantization bound on the {problem.levels}-level data)"
                )
            optimum = TOY_ENTROPY.get(TOY_NAMES.get(config.data, ""))
            if optimum is not None:
                final |= {"optimum": optimum, "test_nll_minus_optimum": final["test_nll"] - optimum}
                line += f", {final['test_nll_minus_optimum']:+.4f} from the optimum {optimum:.4f}"
        rows.append(final)
        draw_pictures(run.folder, config, problem, flow, rows, keys.pictures)
        write_atomic(run.folder / "model.eqx", serialise((params, fixed)))
        return [f"{config.label}: {line} after {final['step']:,} steps"]

    job = Job(
        init=init,
        advance=advance,
        finish=finish,
        chunks=plan.chunks,
        label=config.label,
        unit="steps",
        units_per_chunk=plan.per_chunk * plan.steps_per_unit,
        shown=("kl", "KL") if variational else ("test_nll", "test NLL"),
        stopped=lambda s: s.stopping is not None and int(s.stopping.bad_epochs) >= config.patience,
        files=(*picture_files(problem), "model.eqx"),
    )
    return drive(job, run, console or Console(), tensorboard=config.tensorboard, stop_after=stop_after)


def picture_files(problem: Problem) -> tuple[str, ...]:
    """The pictures a run of this problem draws."""
    if problem.kind == "image":
        return ("samples.png", "curve.png")
    if problem.dim == 2:
        return ("density.png", "samples.png", "curve.png")
    return ("samples.png", "curve.png")


def draw_pictures(folder: Path, config: FlowCommand, problem: Problem, flow: Transformed, rows, key) -> None:
    """density.png (2-D: data or target | flow), samples.png, curve.png; digits: a sample grid."""
    title = config.label
    samples = np.asarray(eqx.filter_jit(lambda f, k: f.sample(k, (2000,)))(flow, key), np.float64)
    if problem.kind == "energy":
        low, high = np.array([-4.0, -4.0]), np.array([4.0, 4.0])
        _, _, grid = P.grid_axes(low, high, PICTURE_GRID)
        on_box = Transformed(flow.base, Chain([to_box(), flow.bijector]))
        model = np.asarray(eqx.filter_jit(lambda f, g: f.log_prob(g))(on_box, jnp.asarray(grid, jnp.float32)))
        target = np.asarray(target_log_prob(config.data, jnp.asarray(grid, jnp.float32))) - problem.log_z
        P.plot_density(target, model, low, high, folder / "density.png", title, target=True)
        P.plot_samples_2d(
            np.asarray(to_box()(jnp.asarray(samples, jnp.float32))), None, low, high, folder / "samples.png", title
        )
        P.plot_curve(rows, folder / "curve.png", title, keys=("kl",), optimum=0.0)
        return
    original = samples * problem.scale + problem.mean
    reference = np.asarray(problem.test, np.float64) * problem.scale + problem.mean
    curve_keys = ("train_nll", "validation_nll", "test_nll")
    optimum = TOY_ENTROPY.get(TOY_NAMES.get(config.data, ""))
    P.plot_curve(rows[:-1], folder / "curve.png", title, keys=curve_keys, optimum=optimum)
    if problem.kind == "image":
        images = np.clip(np.floor(np.clip(original, 0, 1 - 1e-6) * problem.levels) / (problem.levels - 1), 0, 1)
        P.plot_image_samples(images[:64], (8, 8), folder / "samples.png", f"{title}: samples")
        return
    low, high = np.quantile(reference[:, :2], 0.001, 0), np.quantile(reference[:, :2], 0.999, 0)
    low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
    P.plot_samples_2d(original, reference, low, high, folder / "samples.png", title)
    if problem.dim == 2:
        _, _, grid = P.grid_axes(low, high, PICTURE_GRID)
        z = jnp.asarray((grid - problem.mean) / problem.scale, jnp.float32)
        model = np.asarray(eqx.filter_jit(lambda f, g: f.log_prob(g))(flow, z)) - float(np.sum(np.log(problem.scale)))
        P.plot_density(reference, model, low, high, folder / "density.png", title, target=False)


COMMAND = ("flow", FlowCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

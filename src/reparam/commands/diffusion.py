"""`reparam diffusion`: train a diffusion model on a 2-D toy or on 8x8 digits with the shared fitting
loop (one epoch per chunk of the run layer, an EMA of the weights with warm-up), then score the EMA
weights: the variational bound and its terms, the probability-flow ODE likelihood, samples (and, on
the toys, their MMD and sliced Wasserstein distance to held-out data beside the noise floor).

Data and decoders. `--data digits` and `--data digits17` are two data sets, not one with a level
flag, because each fixes its data space, its decoder and its unit: `digits` is statically binarized
(pixel >= 8 of 16, the VAE table's data) scaled to `{-1, +1}` with a Bernoulli decoder, a bound on
the discrete NLL in nats; `digits17` keeps the 17 grey levels, scaled to `2k/16 - 1`, with a
discretized Gaussian decoder, reported in bits/dim as well. A `--levels` flag would be meaningless
for the toys and would invite combinations no table holds. Toys are continuous (Gaussian decoder);
their training points are drawn afresh every epoch, the held-out points once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console

from .. import training
from ..data import TOY_ENTROPY, binarize_static, bits_per_dim, grey_levels, load_dataset, sample_toy, toy_log_prob
from ..models import diffusion as D
from ..models.diffusion_likelihood import evaluate_bound, evaluate_ode
from ..models.diffusion_pictures import plot_bound_terms, plot_class_samples, plot_samples, plot_trajectory
from ..models.diffusion_sampling import SAMPLERS, sample
from ..models.distances import median_bandwidth, mmd, sliced_wasserstein
from ..nn.time import ResidualMLP, TimeMLP
from ..runs import Job, RunKeys, compile_once, drive, open_run, resolve_config, serialise, write_atomic

TOYS = {
    "moons": "two_moons",
    "8gaussians": "eight_gaussians",
    "checkerboard": "checkerboard",
    "pinwheel": "pinwheel",
    "spirals": "spirals",
}
"""CLI name -> `reparam.data.toys` name."""
IMAGES = {"digits": ("bernoulli", 2), "digits17": ("discretized", 17)}
"""CLI name -> (decoder, grey levels) of the 8x8 digits."""
DATA = (*TOYS, *IMAGES)
DENOISERS = ("direct", "logits")
NUM_CLASSES = 10
SNAPSHOTS = 8


@dataclass(frozen=True)
class DiffusionCommand:
    """Train a diffusion model on a 2-D toy or on 8x8 digits; report its bound, ODE likelihood and samples."""

    data: str = "8gaussians"
    """moons, 8gaussians, checkerboard, pinwheel, spirals (2-D toys); digits (binarized, {-1, +1},
    Bernoulli decoder, nats) or digits17 (17 grey levels, discretized decoder, bits/dim)."""
    schedule: str = "linear"
    """Noise schedule: linear (Ho et al.), cosine (Nichol & Dhariwal) or vdm (continuous time, Kingma et al.)."""
    predict: str = "eps"
    """What the network predicts: eps, x0 or v."""
    denoiser: str = "direct"
    """Digits: direct (the network outputs the --predict target) or logits (it outputs each pixel's prior
    logits over the grey levels, combined with the exact likelihood of z_t: x0_hat = E[x | z_t] stays on
    the grid's range, and the network learns only what the other pixels say)."""
    weighting: str = "simple"
    """Loss weighting: simple (Ho et al.) or elbo (the true bound's weights)."""
    steps: int = 1000
    """Diffusion steps T (discrete schedules); the default number of levels for vdm's bound and samplers."""
    log_snr_max: float = 13.3
    """vdm: log signal-to-noise ratio at t = 0, where the decoder reads (VDM's 13.3: noise sd 1.3e-3).
    Discrete data need far less: the decoder resolves levels 2 / (L - 1) apart (digits: 3, digits17: 7)."""
    log_snr_min: float = -5.0
    """vdm: log signal-to-noise ratio at t = 1 (VDM's -5: alpha^2 = 0.0067)."""
    epochs: int = 200
    """Passes over the training set (toys: --train-size fresh points per epoch)."""
    train_size: int = 10_000
    """Toys: training points drawn afresh each epoch."""
    test_size: int = 2_000
    """Toys: held-out points (drawn once) for the bound, the ODE likelihood and the sample distances."""
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    """Toys: hidden SiLU layer widths of the MLP. Digits: residual blocks of this (equal) width, one per entry."""
    embedding_dim: int = 64
    """Width of the sinusoidal time (and class) embedding."""
    batch_size: int = 256
    """Examples per gradient step (the remainder of each shuffled epoch is dropped)."""
    learning_rate: float = 1e-3
    """Adam step size (gradients clipped to global norm 1)."""
    ema_decay: float = 0.999
    """Decay of the weights' moving average (warm-up min(decay, (1 + n) / (10 + n))); evaluation and
    sampling use the average."""
    conditional: bool = False
    """Digits: condition on the class label, dropped to a null class with --label-dropout (classifier-free guidance)."""
    label_dropout: float = 0.1
    """Probability of training on the null class instead of the label (--conditional)."""
    guidance: float = 0.0
    """Classifier-free guidance weight w of the samples (--conditional): (1 + w) eps(y) - w eps(null)."""
    sampler: str = "ddpm"
    """ddpm (ancestral), ddim (with --eta) or ode (Heun on the probability-flow ODE)."""
    sample_steps: int | None = None
    """Sampler steps K (default: --steps; at most --steps for discrete schedules)."""
    eta: float = 0.0
    """DDIM noise: 0 deterministic, 1 ancestral."""
    num_samples: int = 2_000
    """Samples drawn at the end (toys: scored by MMD and sliced Wasserstein against held-out data)."""
    eval_steps: int | None = None
    """Levels of the test bound (default: --steps; at most --steps for discrete schedules)."""
    ode_nll: bool = True
    """Also score the test set by the probability-flow ODE (exact trace of the Jacobian)."""
    ode_steps: int = 100
    """Heun steps of the ODE likelihood (checked against half as many on up to 100 test examples:
    `test_ode_step_gap`, with a warning when they disagree)."""
    validation_fraction: float = 0.0
    """Digits: hold out this last part of the training set to score the EMA weights' bound (elbo-weighted
    loss) after each epoch (0: none)."""
    patience: int | None = None
    """Early stopping: stop after this many epochs without a better validation bound and keep the best
    EMA weights (needs --validation-fraction > 0)."""
    seed: int = 0
    """Random seed (initialisation, data, shuffling, noise, evaluation, samples)."""
    out: Path = Path("runs/diffusion")
    """Run folder."""
    resume: Path | None = None
    """Continue the run in this folder from its last checkpoint (exactly)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the 'tensorboard' extra)."""

    def check(self) -> None:
        """One-line errors for impossible settings."""
        for flag, value, allowed in (
            ("--data", self.data, DATA),
            ("--schedule", self.schedule, D.SCHEDULES),
            ("--predict", self.predict, D.PREDICTIONS),
            ("--weighting", self.weighting, D.WEIGHTINGS),
            ("--sampler", self.sampler, SAMPLERS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {flag} {value!r}; choose one of {', '.join(allowed)}")
        counts = {
            "--steps": self.steps,
            "--epochs": self.epochs,
            "--train-size": self.train_size,
            "--test-size": self.test_size,
            "--batch-size": self.batch_size,
            "--num-samples": self.num_samples,
            "--ode-steps": self.ode_steps,
            "--embedding-dim": self.embedding_dim,
            "--sample-steps": 1 if self.sample_steps is None else self.sample_steps,
            "--eval-steps": 1 if self.eval_steps is None else self.eval_steps,
        }
        for flag, value in counts.items():
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.embedding_dim < 2:
            raise ValueError(f"--embedding-dim must be >= 2, got {self.embedding_dim}")
        if self.schedule != "vdm":
            for flag, value in (("--sample-steps", self.sample_steps), ("--eval-steps", self.eval_steps)):
                if value is not None and value > self.steps:
                    raise ValueError(
                        f"{flag} {value} exceeds --steps {self.steps}: a discrete schedule has only its training "
                        "levels (use --schedule vdm for any number)"
                    )
        if self.schedule != "vdm" and (self.log_snr_max, self.log_snr_min) != (13.3, -5.0):
            raise ValueError("--log-snr-max and --log-snr-min set the vdm schedule; linear and cosine fix their own")
        if not self.log_snr_max > self.log_snr_min:
            raise ValueError(f"--log-snr-max {self.log_snr_max} must exceed --log-snr-min {self.log_snr_min}")
        if self.denoiser not in DENOISERS:
            raise ValueError(f"unknown --denoiser {self.denoiser!r}; choose one of {', '.join(DENOISERS)}")
        if self.denoiser == "logits" and not self.image:
            raise ValueError(f"--denoiser logits needs discrete data: use --data digits or digits17, not {self.data}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden-sizes needs one or more positive widths, got {self.hidden_sizes}")
        if self.data in IMAGES and len(set(self.hidden_sizes)) > 1:
            raise ValueError(f"--hidden-sizes: the residual blocks of digits share one width, got {self.hidden_sizes}")
        if not (self.learning_rate > 0 and 0 <= self.ema_decay < 1 and 0 <= self.eta <= 1):
            raise ValueError(
                "need --learning-rate > 0, --ema-decay in [0, 1), --eta in [0, 1]; got "
                f"{self.learning_rate}, {self.ema_decay}, {self.eta}"
            )
        if self.conditional and self.data not in IMAGES:
            raise ValueError(f"--conditional needs class labels: use --data digits or digits17, not {self.data}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"--label-dropout must be in [0, 1), got {self.label_dropout}")
        if self.guidance < 0 or (self.guidance > 0 and not self.conditional):
            raise ValueError(f"--guidance {self.guidance}: needs a value >= 0 and --conditional")
        if self.conditional and self.label_dropout == 0 and self.guidance > 0:
            raise ValueError("--guidance needs --label-dropout > 0 (the null class must be trained)")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.validation_fraction > 0 and self.data not in IMAGES:
            raise ValueError(
                "--validation-fraction needs --data digits or digits17 (toys draw fresh points each epoch)"
            )
        if self.patience is not None and (self.patience < 1 or self.validation_fraction == 0):
            raise ValueError("--patience needs a value >= 1 and --validation-fraction > 0 (the bound it watches)")

    @property
    def image(self) -> bool:
        """Whether the data are digits (else a 2-D toy)."""
        return self.data in IMAGES

    @property
    def label(self) -> str:
        """A short name of the model, for the progress bar and pictures."""
        cond = ", conditional" if self.conditional else ""
        logits = ", logits denoiser" if self.denoiser == "logits" else ""
        return f"diffusion {self.schedule} T={self.steps}, {self.predict}-prediction{logits}{cond}, {self.data}"


class DiffusionData(NamedTuple):
    """A run's data in the model's space: toys as points, digits as flat vectors in [-1, 1]."""

    train: jax.Array | None
    """Digits `(N, 64)` (toys: None, drawn per epoch)."""
    train_labels: jax.Array | None
    validation: jax.Array | None
    """Digits with --validation-fraction: the training set's last part, `(M, 64)` (else None)."""
    test: jax.Array
    test_labels: jax.Array | None
    floor: jax.Array | None
    """Toys: a second independent held-out draw (the distances' noise floor)."""
    decoder: str
    levels: int
    image_shape: tuple[int, int] | None


def to_model_space(config: DiffusionCommand, x: jax.Array) -> jax.Array:
    """Digits' grey levels in [0, 1] -> binarized `{-1, +1}` (`digits`) or `2k/16 - 1` (`digits17`)."""
    if config.data == "digits":
        return 2 * binarize_static(x) - 1
    return grey_levels(x, IMAGES[config.data][1]).astype(jnp.float32) * (2 / (IMAGES[config.data][1] - 1)) - 1


def load_data(config: DiffusionCommand, key) -> DiffusionData:
    """The run's data (digits: the fixed split of `reparam.data.images`, the VAE table's)."""
    if config.image:
        data = load_dataset("digits")
        decoder, levels = IMAGES[config.data]
        train, labels, validation = to_model_space(config, data.x_train), data.y_train, None
        if config.validation_fraction > 0:
            train, validation = training.split_validation(train, config.validation_fraction)
            labels, _ = training.split_validation(labels, config.validation_fraction)
        if config.batch_size > train.shape[0]:
            raise ValueError(f"--batch-size {config.batch_size} exceeds the {train.shape[0]} training digits")
        return DiffusionData(
            train,
            labels,
            validation,
            to_model_space(config, data.x_test),
            data.y_test,
            None,
            decoder,
            levels,
            data.image_shape,
        )
    if config.batch_size > config.train_size:
        raise ValueError(f"--batch-size {config.batch_size} exceeds --train-size {config.train_size}")
    k_test, k_floor = jax.random.split(key)
    name = TOYS[config.data]
    test = sample_toy(name, k_test, config.test_size)
    floor = sample_toy(name, k_floor, config.num_samples)
    return DiffusionData(None, None, None, test, None, floor, "gaussian", 0, None)


def make_network(config: DiffusionCommand, key):
    """TimeMLP for the toys, ResidualMLP (with a null class when conditional) for digits."""
    if config.image:
        return ResidualMLP(
            64,
            config.hidden_sizes[0],
            len(config.hidden_sizes),
            key=key,
            embedding_dim=config.embedding_dim,
            num_classes=NUM_CLASSES if config.conditional else 0,
            out_dim=64 * IMAGES[config.data][1] if config.denoiser == "logits" else None,
        )
    return TimeMLP(2, config.hidden_sizes, key=key, embedding_dim=config.embedding_dim)


class Programs(NamedTuple):
    """What one setting compiles: the network's static half and the jitted pieces of a run."""

    static: object
    schedule: D.Schedule
    epoch: object
    test_loss: object
    bound: object
    ode: object
    ode_coarse: object
    draw: object


def make_schedule(config: DiffusionCommand) -> D.Schedule:
    """The run's schedule: linear or cosine on --steps levels, or vdm's linear log-SNR between the bounds."""
    bounds = dict(log_snr_max=config.log_snr_max, log_snr_min=config.log_snr_min) if config.schedule == "vdm" else {}
    return D.make_schedule(config.schedule, config.steps, **bounds)


def optimizer(config: DiffusionCommand) -> optax.GradientTransformation:
    """Adam after clipping gradients to global norm 1."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config.learning_rate))


def compiled_settings(config: DiffusionCommand, **changes) -> DiffusionCommand:
    """What `programs` compiles for: `config` without the options that change no program (seed,
    epochs, folders, guidance and sample count, which are arguments), with `changes` applied."""
    return dataclasses.replace(
        config,
        seed=0,
        epochs=1,
        out=Path("."),
        resume=None,
        tensorboard=False,
        guidance=0.0,
        num_samples=1,
        validation_fraction=0.0,
        patience=None,
        **changes,
    )


@compile_once
def programs(config: DiffusionCommand) -> Programs:
    """The compiled epoch, test loss, bound, ODE likelihood and sampler for one setting."""
    shapes = eqx.filter_eval_shape(make_network, config, jax.random.key(0))
    _, static = eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    schedule = make_schedule(config)
    null = NUM_CLASSES

    def network(params, z, t, context=None):
        net = eqx.combine(params, static)
        return jax.vmap(net)(z, t) if context is None else jax.vmap(net)(z, t, context)

    def apply(params, z, t, context=None):
        if config.denoiser == "direct":
            return network(params, z, t, context)
        levels = IMAGES[config.data][1]
        logits = lambda z, t, *c: network(params, z, t, *c).reshape(*z.shape, levels)  # noqa: E731
        predict = D.logits_denoiser(logits, jnp.linspace(-1.0, 1.0, levels), schedule, prediction=config.predict)
        return predict(z, t) if context is None else predict(z, t, context)

    def unconditional(params):
        """The network with the null class (the marginal model of a conditional network)."""
        if not config.conditional:
            return lambda z, t: apply(params, z, t)
        return lambda z, t: apply(params, z, t, jnp.full(z.shape[:1], null, jnp.int32))

    loss_fn = D.make_loss_fn(
        apply,
        schedule,
        prediction=config.predict,
        weighting=config.weighting,
        null_context=null if config.conditional else None,
        drop_probability=config.label_dropout if config.conditional else 0.0,
    )
    epoch = training.make_epoch(
        loss_fn, optimizer(config), config.batch_size, update_extra=training.ema_tracker(config.ema_decay)
    )
    eval_batch = 500
    decoder, levels = IMAGES[config.data] if config.image else ("gaussian", 0)
    bound_options = dict(prediction=config.predict, decoder=decoder, steps=config.eval_steps)
    if decoder == "discretized":
        bound_options["levels"] = levels

    def test_loss(params, x, key):
        """The elbo-weighted denoising loss on all of `x` at once (one random level per example): an
        unbiased estimate of the bound's diffusion terms (+ the Gaussian decoder's quadratic), cheap
        enough for every epoch (one network pass over the held-out set)."""
        loss, _ = D.diffusion_loss(unconditional(params), schedule, x, key, prediction=config.predict, weighting="elbo")
        return loss

    def bound(params, x, key):
        return evaluate_bound(unconditional(params), schedule, x, key, batch_size=eval_batch, **bound_options)

    def ode(params, x, key, steps=config.ode_steps):
        options = dict(prediction=config.predict, steps=steps)
        if config.image:
            options.update(decoder=decoder, **({"levels": levels} if decoder == "discretized" else {}))
        return evaluate_ode(unconditional(params), schedule, x, key, batch_size=min(100, eval_batch), **options)

    def draw(params, key, labels, shape, guidance):
        predict = unconditional(params)
        if labels is not None:
            guided = D.guided(lambda z, t, c: apply(params, z, t, c), guidance, null)
            predict = lambda z, t: guided(z, t, labels)  # noqa: E731
        return sample(
            predict,
            schedule,
            key,
            shape,
            sampler=config.sampler,
            steps=config.sample_steps,
            eta=config.eta,
            prediction=config.predict,
            snapshots=SNAPSHOTS,
            dtype=jnp.float32,
        )

    return Programs(
        static,
        schedule,
        jax.jit(epoch, donate_argnums=0),
        jax.jit(test_loss),
        jax.jit(bound),
        jax.jit(ode),
        jax.jit(lambda params, x, key: ode(params, x, key, coarse_steps(config.ode_steps))),
        jax.jit(draw, static_argnums=(3, 4)),
    )


def coarse_steps(steps: int) -> int:
    """The Heun steps of the ODE's convergence check: half of `steps` (at least 1)."""
    return max(1, steps // 2)


ODE_CHECK_EXAMPLES = 100
"""Test examples on which the ODE likelihood is recomputed with `coarse_steps` (the convergence check)."""


def ode_warnings(row: dict) -> list[str]:
    """Warnings about a final row's ODE likelihood (empty when it passes both checks):

    - unconverged: `test_ode_step_gap`, the mean per-example |NLL at --ode-steps - NLL at half as many|
      on the check's examples, above 0.1 nats + 1% of the mean NLL's size (Heun's error there is of
      the order of the gap, so the number is not to be trusted);
    - far above the bound: the ODE NLL exceeds the test bound by more than 10% of the bound's size
      + 1 nat. Both estimate `-log p(x)` from the same network (the ODE model vs the SDE model); on
      held-out data an over-fitted score's flow can be far worse than its bound (measured: 938 vs 134
      nats on 17-level digits after 3,000 epochs, converged, while the same flow scores the training
      images at their bound), so the ODE number describes that flow, not the data.
    """
    if "test_ode_nll" not in row:
        return []
    said, ode, bound = [], row["test_ode_nll"], row["test_bound"]
    if row["test_ode_step_gap"] > 0.1 + 0.01 * abs(ode):
        said.append(
            f"ODE likelihood not converged: {row['test_ode_step_gap']:.3g} nats per example between "
            f"{row['ode_steps']} and {row['ode_check_steps']} Heun steps (raise --ode-steps)"
        )
    if ode - bound > 0.1 * abs(bound) + 1:
        said.append(
            f"ODE NLL {ode:.1f} is far above the bound {bound:.1f} (median {row['test_ode_nll_median']:.1f}): "
            "the probability-flow ODE of this network fits held-out data badly (typical of an over-fitted "
            "score: use --validation-fraction and --patience); report the bound"
        )
    return said


def epoch_data(config: DiffusionCommand, data: DiffusionData, key, e: int):
    """What epoch `e` trains on: fresh toy points, or the digits (with labels when conditional)."""
    if not config.image:
        return sample_toy(TOYS[config.data], jax.random.fold_in(key, e), config.train_size)
    return (data.train, data.train_labels) if config.conditional else data.train


def final_metrics(config: DiffusionCommand, compiled: Programs, params, data: DiffusionData, keys: RunKeys) -> dict:
    """The test bound and its terms (nats), the ODE NLL, bits/dim for digits; terms kept for the picture."""
    begun = time.perf_counter()
    terms = compiled.bound(params, data.test, keys.final)
    row = {name: float(jnp.mean(terms[name])) for name in ("total", "prior", "diffusion", "decoder")}
    row = {"test_bound" if k == "total" else f"test_{k}": v for k, v in row.items()}
    if config.ode_nll:
        name = "nll" if not config.image else "total"
        k_ode = jax.random.fold_in(keys.final, 1)
        fine = compiled.ode(params, data.test, k_ode)[name]
        check, k_check = data.test[:ODE_CHECK_EXAMPLES], jax.random.fold_in(keys.final, 2)
        fine_check = compiled.ode(params, check, k_check)[name]
        coarse = compiled.ode_coarse(params, check, k_check)[name]  # same key: the same z_0 draws
        row["test_ode_nll"] = float(jnp.mean(fine))
        row["test_ode_nll_median"] = float(jnp.median(fine))
        row["test_ode_step_gap"] = float(jnp.mean(jnp.abs(fine_check - coarse)))
        row["ode_steps"], row["ode_check_steps"] = config.ode_steps, coarse_steps(config.ode_steps)
    if config.image:
        for name in ("test_bound", "test_ode_nll"):
            if name in row:
                row[f"{name}_bpd"] = float(bits_per_dim(row[name], 64))
    elif TOYS[config.data] in TOY_ENTROPY:
        row["test_true_nll"] = float(-jnp.mean(toy_log_prob(TOYS[config.data], data.test)))
    row["eval_seconds"] = time.perf_counter() - begun
    return row, np.asarray(jnp.mean(terms["terms"], axis=0))


def sample_metrics(config: DiffusionCommand, samples: jax.Array, data: DiffusionData, key) -> dict:
    """Toys: MMD (Gaussian kernels at the held-out data's median distance) and sliced W_2 of the samples
    and of a second data draw (the noise floor) against the held-out data, at equal sizes."""
    n = min(samples.shape[0], data.test.shape[0])
    reference, floor, samples = data.test[:n], data.floor[:n], samples[:n]
    bandwidth = median_bandwidth(reference)
    k_samples, k_floor = jax.random.split(key)
    return {
        "sample_mmd": float(mmd(samples, reference, bandwidth)),
        "noise_floor_mmd": float(mmd(floor, reference, bandwidth)),
        "sample_sliced_w": float(sliced_wasserstein(k_samples, samples, reference)),
        "noise_floor_sliced_w": float(sliced_wasserstein(k_floor, floor, reference)),
        "distance_points": n,
    }


def draw_pictures(
    config: DiffusionCommand,
    folder: Path,
    compiled: Programs,
    params,
    data: DiffusionData,
    keys: RunKeys,
    row: dict,
    bound_terms: np.ndarray,
):
    """samples.png, trajectory.png, bound_terms.png (+ class_samples.png when conditional) from the
    EMA weights and the final row's terms; returns the samples and the sampling time (seconds)."""
    k_draw, k_class = jax.random.split(keys.pictures)
    labels = None
    if config.conditional:
        labels = jnp.arange(config.num_samples, dtype=jnp.int32) % NUM_CLASSES
    shape = (config.num_samples, data.test.shape[1])
    begun = time.perf_counter()
    samples, times, states = compiled.draw(params, k_draw, labels, shape, config.guidance)
    samples.block_until_ready()
    seconds = time.perf_counter() - begun
    guidance = f", guidance {config.guidance:g}" if config.conditional else ""
    how = f"{config.sampler} {config.sample_steps or config.steps} steps{guidance}"
    plot_samples(
        np.asarray(samples), np.asarray(data.test), folder / "samples.png", f"{config.label}: {how}", data.image_shape
    )
    plot_trajectory(
        np.asarray(times), np.asarray(states), folder / "trajectory.png", f"reverse process ({how})", data.image_shape
    )
    level_times = D.time_levels(compiled.schedule, config.eval_steps)[compiled.schedule.lowest + 1 :]
    plot_bound_terms(
        level_times, bound_terms, row["test_prior"], row["test_decoder"], folder / "bound_terms.png", config.label
    )
    if config.conditional:
        per_class = 10
        class_labels = jnp.repeat(jnp.arange(NUM_CLASSES, dtype=jnp.int32), per_class)
        grid, _, _ = compiled.draw(params, k_class, class_labels, (NUM_CLASSES * per_class, 64), config.guidance)
        plot_class_samples(
            np.asarray(grid).reshape(NUM_CLASSES, per_class, -1),
            data.image_shape,
            folder / "class_samples.png",
            f"one row per class ({how})",
        )
    return samples, seconds


class DiffusionState(NamedTuple):
    """A run's state between epochs: the train state (its `extra` is the EMA of the weights) and, with
    early stopping, its state (the best EMA weights by the validation bound)."""

    train: training.TrainState
    stopping: training.EarlyStopping | None


VALIDATION_REPEATS = 8
"""Noise levels drawn per validation example for the validation bound (one random level each)."""


def validation_bound(compiled: Programs, params, validation: jax.Array, key) -> float:
    """The elbo-weighted denoising loss on the validation set, each example at `VALIDATION_REPEATS`
    random levels: an unbiased estimate of the bound's diffusion terms. The caller passes the same key
    every epoch (common random numbers), so epochs are compared on the same noise."""
    return float(compiled.test_loss(params, jnp.tile(validation, (VALIDATION_REPEATS, 1)), key))


def main(config: DiffusionCommand, console: Console | None = None, *, stop_after: int | None = None) -> list[dict]:
    """Train (or resume) a diffusion run, writing its folder; returns the metric rows."""
    config = resolve_config("diffusion", config)  # on --resume, every option comes from the run's own folder
    config.check()
    keys = RunKeys.from_seed(config.seed)
    data = load_data(config, keys.data)  # bad settings fail here, before the folder is written
    run = open_run("diffusion", config, resume=config.resume)
    compiled_config = compiled_settings(config)
    compiled = programs(compiled_config)
    train_size = data.train.shape[0] if config.image else config.train_size
    examples = (train_size // config.batch_size) * config.batch_size
    k_epoch_data = jax.random.fold_in(keys.data, 2)
    k_validation = jax.random.fold_in(keys.data, 3)  # one key for every epoch

    def init() -> DiffusionState:
        params = eqx.filter(eqx.filter_jit(make_network)(compiled_config, keys.init), eqx.is_inexact_array)
        stopping = training.init_early_stopping(params) if config.patience else None
        return DiffusionState(
            training.init_train_state(params, optimizer(config), extra=training.init_ema(params)), stopping
        )

    def advance(state: DiffusionState, e: int) -> tuple[DiffusionState, list[dict]]:
        begun = time.perf_counter()
        train, metrics = compiled.epoch(
            state.train, jax.random.fold_in(keys.train, e), epoch_data(config, data, k_epoch_data, e)
        )
        row = {"epoch": e + 1, "train_loss": float(metrics["loss"]), "train_mse_eps": float(metrics["mse_eps"])}
        row["examples_per_s"] = examples / (time.perf_counter() - begun)
        row["test_loss_elbo"] = float(compiled.test_loss(train.extra, data.test, jax.random.fold_in(keys.eval, e)))
        stopping = state.stopping
        if data.validation is not None:
            row["validation_bound"] = validation_bound(compiled, train.extra, data.validation, k_validation)
        if stopping is not None:
            stopping, _ = training.early_stopping_update(
                stopping, row["validation_bound"], train.extra, config.patience
            )
        return DiffusionState(train, stopping), [row]

    def finish(state: DiffusionState, rows: list[dict]) -> list[str]:
        # the moving average; with early stopping, its best epoch by the validation bound
        params = state.train.extra if state.stopping is None else state.stopping.best_params
        epochs = [r for r in rows if "train_loss" in r]
        best = epochs[-1] if state.stopping is None else min(epochs, key=lambda r: r["validation_bound"])
        row, terms = final_metrics(config, compiled, params, data, keys)
        samples, seconds = draw_pictures(config, run.folder, compiled, params, data, keys, row, terms)
        row["sampling_seconds"] = seconds
        if not config.image:
            row.update(sample_metrics(config, samples, data, jax.random.fold_in(keys.pictures, 1)))
        rows.append({"epoch": best["epoch"], "epochs_trained": epochs[-1]["epoch"], **row})
        write_atomic(run.folder / "model.eqx", serialise(params))
        kept = [f"EMA weights of epoch {best['epoch']} of {epochs[-1]['epoch']} (best validation bound)"]
        return summary(config, row) + (kept if state.stopping is not None else [])

    pictures = ("samples.png", "trajectory.png", "bound_terms.png") + (
        ("class_samples.png",) if config.conditional else ()
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
        shown=("test_loss_elbo", "test loss (elbo weights)"),
        checkpoint_every=max(1, config.epochs // 20),
        stopped=lambda s: s.stopping is not None and int(s.stopping.bad_epochs) >= config.patience,
        files=(*pictures, "model.eqx"),
    )
    return drive(job, run, console or Console(), tensorboard=config.tensorboard, stop_after=stop_after)


def summary(config: DiffusionCommand, row: dict) -> list[str]:
    """The closing lines: the bound and its terms, the ODE NLL, the sample distances."""
    unit = "nats"
    bound = (
        f"test bound {row['test_bound']:.3f} {unit} (prior {row['test_prior']:.4f}, diffusion "
        f"{row['test_diffusion']:.3f}, decoder {row['test_decoder']:.3f})"
    )
    lines = [f"{config.label}: {bound}"]
    if "test_ode_nll" in row:
        lines.append(f"ODE NLL {row['test_ode_nll']:.3f} {unit} ({config.ode_steps} Heun steps, exact trace)")
    if config.image:
        lines.append(
            "bits/dim: bound "
            + f"{row['test_bound_bpd']:.4f}"
            + (f", ODE {row['test_ode_nll_bpd']:.4f}" if "test_ode_nll_bpd" in row else "")
        )
    lines += [f"warning: {said}" for said in ode_warnings(row)]
    if "test_true_nll" in row:
        lines.append(f"the true density's NLL on the same points: {row['test_true_nll']:.3f} nats")
    if "sample_mmd" in row:
        lines.append(
            f"{config.num_samples:,} samples ({config.sampler}): MMD {row['sample_mmd']:.4f} (noise floor "
            f"{row['noise_floor_mmd']:.4f}), sliced W2 {row['sample_sliced_w']:.4f} (floor "
            f"{row['noise_floor_sliced_w']:.4f})"
        )
    return lines


COMMAND = ("diffusion", DiffusionCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

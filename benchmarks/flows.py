"""Flow benchmark (issue 13): density estimation on the 2-D toys and on digits, and variational
inference of Rezende & Mohamed's energy targets U1-U4, with `reparam.models.flows`.

    .venv/bin/python benchmarks/flows.py toys      [--quick] [--steps N]   # -> results/flows_toys.json (+ .png)
    .venv/bin/python benchmarks/flows.py energies  [--quick] [--steps N]   # -> results/flows_energies.json (+ .png)
    .venv/bin/python benchmarks/flows.py energies --only sylvester        # -> flows_energies_only_sylvester.json
    .venv/bin/python benchmarks/flows.py digits    [--quick] [--epochs N]  # -> results/flows_digits.json
    .venv/bin/python benchmarks/flows.py report                           # results/flows.md from the JSONs

Method.
- Toys: every flow of a row is fitted to all five toys at once (one program, `vmap` over the toy
  index, so one compilation per flow) by maximum likelihood (`flows.density_loss`) on fresh draws of
  `sample_toy` each step (`flows.make_steps`): an endless training set, so the test NLL measures the
  flow, not overfitting. Test NLL: the mean `-log q(x)` over 100,000 held-out draws (their own key),
  in nats. Where the density is known, the table reports it minus the entropy (`TOY_ENTROPY`, the
  optimum), and the data's own test NLL under the true density (`toy_log_prob`) as the floor that
  a perfect model would reach on these very points.
- Energies: each flow `q_x` on R^2 is fitted by reverse KL (`flows.reverse_kl_loss`, 256
  reparameterized samples per step, optionally sticking-the-landing) to the target pulled back
  through `to_box` (`energies.plane_target_log_prob`), all four targets at once (`vmap`). Then
  `KL(q || p) = E_q[log q - log p~] + log Z` on the box (`energies.log_normaliser`, quadrature), by
  Monte Carlo over 65,536 fresh samples, with its standard error.
- Digits: `fit_density` (minibatch epochs, validation split, early stopping) on uniformly
  dequantized digits (`reparam.data.dequantize`; binary pixels: 2 levels, grey: 17 levels), the
  flow on `logit` of the dequantized pixels; test NLL = the dequantization bound in nats per image
  (bits/dim for grey), a bound on the discrete likelihood comparable with the VAE and mixture rows.

Adam with a cosine decay of the learning rate to 0 over the run throughout.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import common
from reparam import training
from reparam.bijectors import Chain
from reparam.data import (
    DIGITS_LEVELS,
    TOY_ENTROPY,
    TOYS,
    binarize_static,
    bits_per_dim,
    dequantize,
    grey_levels,
    load_dataset,
    sample_toy,
    toy_log_prob,
)
from reparam.data.energies import (
    BOX,
    ENERGIES,
    energy,
    log_normaliser,
    plane_target_log_prob,
    to_box,
)
from reparam.distributions.transformed import Transformed
from reparam.models.flows import density_loss, make_flow, make_steps, reverse_kl_loss
from reparam.plots import pyplot, save_figure

RESULTS = Path(__file__).parent / "results"
TEST_POINTS = 100_000
KL_SAMPLES = 65_536
CHUNK = 8192


# --- shared ---------------------------------------------------------------------------------------------------


def cosine_adam(learning_rate: float, steps: int) -> optax.GradientTransformation:
    """Adam whose learning rate decays from `learning_rate` to 0 along a half cosine over `steps`."""
    return optax.adam(optax.cosine_decay_schedule(learning_rate, steps))


def stacked_flows(spec: dict, dim: int, count: int, key) -> tuple:
    """`count` independently initialised flows of `spec` (`make_flow` settings): their trained arrays
    stacked on a leading axis, and the shared static part."""
    flows = [
        make_flow(spec["flow"], dim, spec["layers"], key=k, **spec.get("options", {}))
        for k in jax.random.split(key, count)
    ]
    parts = [eqx.partition(f, eqx.is_inexact_array) for f in flows]
    return jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _ in parts]), parts[0][1]


def member(stacked, i: int):
    """The `i`-th of stacked arrays."""
    return jax.tree.map(lambda a: a[i], stacked)


def label(spec: dict) -> str:
    """A row's name, e.g. `nsf, 8 layers, 2x128, 16 bins`."""
    options = spec.get("options", {})
    parts = [
        spec["flow"],
        f"{spec['layers']} {'layers' if spec['flow'] not in ('planar', 'radial', 'sylvester') else 'K'}",
    ]
    if spec["flow"] in ("realnvp", "maf", "iaf", "nsf"):
        hidden = options.get("hidden_sizes", (64, 64))
        parts.append(f"{len(hidden)}x{hidden[0]}")
    if spec["flow"] == "nsf":
        parts.append(f"{options.get('num_bins', 8)} bins")
    if spec["flow"] in ("planar", "radial", "sylvester"):
        return f"{spec['flow']}, K = {spec['layers']}"
    return ", ".join([parts[0], parts[1]] + parts[2:])


def best_per_family(rows: list[dict], score) -> list[str]:
    """The model name of the lowest-`score` row of each flow type, in the rows' order of types."""
    families = list(dict.fromkeys(r["spec"]["flow"] for r in rows))
    return [min((r for r in rows if r["spec"]["flow"] == f), key=score)["model"] for f in families]


def train_stacked(loss_for, params, steps: int, learning_rate: float, key, draw_for=None):
    """Train every member of `params` (stacked) on its own loss, `loss_for(i)` for member `i`
    (a traced index), `steps` Adam steps in one `lax.scan` each, all members in one `vmap`:
    returns the trained stacked arrays and the per-step losses `(members, steps)`. `draw_for(i)`,
    if given, is member `i`'s batch maker (`flows.make_steps`)."""
    optimizer = cosine_adam(learning_rate, steps)
    count = jax.tree.leaves(params)[0].shape[0]

    def train(p, i, keys):
        run = make_steps(loss_for(i), optimizer, None if draw_for is None else draw_for(i))
        state, metrics = run(training.init_train_state(p, optimizer), keys)
        return state.params, metrics["loss"]

    keys = jax.random.split(key, (count, steps))
    return jax.jit(jax.vmap(train))(params, jnp.arange(count), keys)


def flow_of(params, static) -> Transformed:
    return eqx.combine(params, static)


def chunked(fn, x):
    """`fn` over `x` in chunks of `CHUNK` rows (host loop over one compiled chunk size)."""
    pad = (-len(x)) % CHUNK
    padded = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]) if pad else x
    out = [fn(padded[i : i + CHUNK]) for i in range(0, len(padded), CHUNK)]
    return jnp.concatenate(out)[: len(x)]


def grid(low: float, high: float, n: int) -> tuple[np.ndarray, jnp.ndarray]:
    """`n` x `n` cell midpoints of `[low, high]^2`: the axis `(n,)` and the points `(n * n, 2)` float32."""
    axis = low + (np.arange(n) + 0.5) * (high - low) / n
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    return axis, jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)


# --- toys --------------------------------------------------------------------------------------------------------

TOY_SPECS = [  # every row is fitted on all five toys
    dict(flow="realnvp", layers=8, options=dict(hidden_sizes=(64, 64)), lr=1e-3),
    dict(flow="maf", layers=8, options=dict(hidden_sizes=(64, 64)), lr=1e-3),
    dict(flow="nsf", layers=8, options=dict(hidden_sizes=(128, 128), num_bins=16), lr=1e-3),
]
TOY_QUICK = [dict(flow="realnvp", layers=2, options=dict(hidden_sizes=(16, 16)), lr=1e-3)]
TOY_BATCH = 512


def toys_study(args) -> dict:
    specs, steps = (TOY_QUICK, 200) if args.quick else (TOY_SPECS, args.steps or 8_000)
    test_points = 2_000 if args.quick else TEST_POINTS
    tests = [sample_toy(name, jax.random.key(10_000 + i), test_points) for i, name in enumerate(TOYS)]
    floors = {
        name: float(-jnp.mean(toy_log_prob(name, x)))
        for name, x in zip(TOYS, tests, strict=True)
        if name in TOY_ENTROPY
    }
    samplers = [functools.partial(lambda name, k: sample_toy(name, k, TOY_BATCH), name) for name in TOYS]
    axis, points = grid(-4.5, 4.5, 24 if args.quick else 160)
    rows, densities = [], {}
    for r, spec in enumerate(specs):
        row, row_densities = toy_row(spec, r, steps, samplers, tests, points)
        rows.append(row)
        densities.update(row_densities)
        print(
            f"{row['model']}: " + ", ".join(f"{n} {row['nll'][n]:.4f}" for n in TOYS) + f" ({row['seconds']:.0f} s)",
            flush=True,
        )
    toys_picture(rows, densities, tests, axis, picture_path(args))
    return dict(
        study="toys",
        steps=steps,
        batch=TOY_BATCH,
        test_points=test_points,
        floors=floors,
        entropy=TOY_ENTROPY,
        rows=rows,
    )


def toy_row(spec: dict, seed: int, steps: int, samplers, tests, points) -> tuple[dict, dict]:
    """Fit `spec` on all five toys at once; its row (test NLL, gap to the optimum, time) and its
    densities on `points` per toy."""
    begun = time.perf_counter()
    params, static = stacked_flows(spec, 2, len(TOYS), jax.random.key(seed))
    params, losses = train_stacked(
        lambda i: density_loss(static),
        params,
        steps,
        spec["lr"],
        jax.random.key(100 + seed),
        draw_for=lambda i: functools.partial(lax.switch, i, samplers),
    )
    log_prob = jax.jit(lambda p, x: flow_of(p, static).log_prob(x))
    row = dict(model=label(spec), spec=spec, steps=steps, batch=TOY_BATCH, nll={}, gap={}, train_nll_last={})
    densities = {}
    for i, name in enumerate(TOYS):
        at = functools.partial(log_prob, member(params, i))
        row["nll"][name] = float(-jnp.mean(chunked(at, tests[i])))
        row["train_nll_last"][name] = float(jnp.mean(losses[i, -100:]))
        if name in TOY_ENTROPY:
            row["gap"][name] = row["nll"][name] - TOY_ENTROPY[name]
        densities[(row["model"], name)] = np.exp(np.asarray(chunked(at, points)))
    row["seconds"] = time.perf_counter() - begun
    return row, densities


def toys_picture(rows, densities, tests, axis, path) -> None:
    """One row per toy: the test data, then the fitted density of each flow type's best row."""
    plt = pyplot()
    columns = best_per_family(rows, lambda r: sum(r["nll"].values()))
    fig, axes = plt.subplots(len(TOYS), 1 + len(columns), figsize=(2.4 * (1 + len(columns)), 2.4 * len(TOYS)))
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    n = len(axis)
    for i, name in enumerate(TOYS):
        x = np.asarray(tests[i][:20_000])
        axes[i, 0].hist2d(x[:, 0], x[:, 1], bins=n // 2, range=[extent[:2], extent[2:]], cmap="viridis")
        axes[i, 0].set_ylabel(name)
        for j, model in enumerate(columns):
            axes[i, j + 1].imshow(densities[(model, name)].reshape(n, n), origin="lower", extent=extent, cmap="viridis")
    axes[0, 0].set_title("test data")
    for j, model in enumerate(columns):
        axes[0, j + 1].set_title(model, fontsize=8)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    save_figure(fig, path)


# --- energies ------------------------------------------------------------------------------------------------------

ENERGY_SPECS = [
    *[
        dict(flow=f, layers=k, lr=lr)
        for f, lr in (("planar", 3e-3), ("radial", 3e-3), ("sylvester", 3e-3))
        for k in (2, 8, 32)
    ],
    *[dict(flow=f, layers=n, lr=1e-3) for f in ("realnvp", "maf", "nsf") for n in (2, 8)],
    dict(flow="iaf", layers=8, lr=1e-3),
]
ENERGY_QUICK = [
    dict(flow="planar", layers=2, lr=3e-3),
    dict(flow="realnvp", layers=2, lr=1e-3, options=dict(hidden_sizes=(16, 16))),
]
VI_SAMPLES = 256


def plane_targets(i, x):
    """Target `i` (a traced index into `ENERGIES`) pulled back to the plane."""
    return lax.switch(i, [functools.partial(plane_target_log_prob, name) for name in ENERGIES], x)


def kl_terms(static):
    """`terms(params, i, key) -> (CHUNK,)` values of `log q(z) - log p~(z)`, `z ~ q` on the plane,
    for target `ENERGIES[i]` (`i` traced: one compilation per flow)."""

    def terms(params, i, key):
        z, log_q = flow_of(params, static).rsample_and_log_prob(key, (CHUNK,))
        return log_q - plane_targets(i, z)

    return jax.jit(terms)


def kl_estimate(terms, params, i: int, key, samples: int) -> tuple[float, float]:
    """`KL(q || p)` of the box target `ENERGIES[i]` and its standard error, by Monte Carlo over
    `samples` draws: `mean(log q - log p~) + log Z`."""
    values = jnp.concatenate([terms(params, i, k) for k in jax.random.split(key, max(1, samples // CHUNK))])
    return float(jnp.mean(values)) + log_normaliser(ENERGIES[i]), float(jnp.std(values) / math.sqrt(len(values)))


def energies_study(args) -> dict:
    specs, steps = (ENERGY_QUICK, 200) if args.quick else (ENERGY_SPECS, args.steps or 4_000)
    samples = CHUNK if args.quick else KL_SAMPLES
    rows, fitted = [], {}
    for r, spec in enumerate(specs):  # the seed is the spec's index in the full list, with --only too
        if args.only and spec["flow"] not in args.only:
            continue
        spec_rows, spec_fitted = energy_rows(spec, r, steps, samples)
        rows.extend(spec_rows)
        fitted.update(spec_fitted)
        for row in spec_rows:
            print(
                f"{row['model']}{' STL' if row['stick_the_landing'] else ''}: "
                + ", ".join(f"{n} {row['kl'][n]:.4f}" for n in ENERGIES)
                + f" ({row['seconds']:.0f} s for both)",
                flush=True,
            )
    energies_picture(rows, fitted, picture_path(args), 24 if args.quick else 120)
    return dict(
        study="energies",
        steps=steps,
        samples_per_step=VI_SAMPLES,
        kl_samples=samples,
        box=BOX,
        log_z={name: log_normaliser(name) for name in ENERGIES},
        rows=rows,
    )


def energy_rows(spec: dict, seed: int, steps: int, samples: int) -> tuple[list[dict], dict]:
    """Fit `spec` to all four targets, with and without sticking-the-landing, in one program (8
    members under `vmap`: member `m` fits target `m // 2`, STL when `m` is odd; a traced flag picks
    the loss, so both losses are evaluated and one is kept). Returns the two rows (KL and its
    standard error per target, final training loss + log Z, time) and the fitted flows."""
    begun = time.perf_counter()
    params, static = stacked_flows(spec, 2, 2 * len(ENERGIES), jax.random.key(seed))

    def loss_for(m):
        target = functools.partial(plane_targets, m // 2)
        plain, stl = (reverse_kl_loss(target, VI_SAMPLES, stick_the_landing=f, static=static) for f in (False, True))
        return lambda *args: lax.cond(m % 2 == 1, stl, plain, *args)

    params, losses = jax.block_until_ready(
        train_stacked(loss_for, params, steps, spec["lr"], jax.random.key(200 + seed))
    )
    terms = kl_terms(static)
    seconds = time.perf_counter() - begun  # compiling and training both
    rows, fitted = [], {}
    for stl in (False, True):
        row = dict(model=label(spec), spec=spec, stick_the_landing=stl, steps=steps, kl={}, kl_se={}, final={})
        for i, name in enumerate(ENERGIES):
            m = 2 * i + int(stl)
            row["kl"][name], row["kl_se"][name] = kl_estimate(
                terms, member(params, m), i, jax.random.key(300 + i), samples
            )
            row["final"][name] = float(jnp.mean(losses[m, -100:])) + log_normaliser(name)
            fitted[(row["model"], stl, name)] = (member(params, m), static)
        row["seconds"] = seconds
        rows.append(row)
    return rows, fitted


@eqx.filter_jit
def boxed_log_prob(flow: Transformed, points):
    """`log q(z)` on the box: the flow pushed through `to_box`, at `points` `(n, 2)`."""
    return Transformed(flow.base, Chain([to_box(), flow.bijector])).log_prob(points)


def energies_picture(rows, fitted, path, n: int) -> None:
    """One row per target: `exp(-U)` on the box, then `q` of the best flow of each family (no STL),
    the density pushed through `to_box`."""
    plt = pyplot()
    families = best_per_family([r for r in rows if not r["stick_the_landing"]], lambda r: sum(r["kl"].values()))
    axis, points = grid(*BOX, n)
    extent = (*BOX, *BOX)
    fig, axes = plt.subplots(len(ENERGIES), 1 + len(families), figsize=(2.2 * (1 + len(families)), 2.2 * len(ENERGIES)))
    axes = np.asarray(axes).reshape(len(ENERGIES), 1 + len(families))
    for i, name in enumerate(ENERGIES):
        axes[i, 0].imshow(np.exp(-np.asarray(energy(name, points))).reshape(n, n), origin="lower", extent=extent)
        axes[i, 0].set_ylabel(name)
        for j, model in enumerate(families):
            params, static = fitted[(model, False, name)]
            density = np.exp(np.asarray(boxed_log_prob(flow_of(params, static), points))).reshape(n, n)
            axes[i, j + 1].imshow(density, origin="lower", extent=extent)
            kl = next(r for r in rows if r["model"] == model and not r["stick_the_landing"])["kl"][name]
            axes[i, j + 1].set_title(f"KL {kl:.3f}", fontsize=8)
    axes[0, 0].set_title("target exp(-U)")
    for j, model in enumerate(families):
        axes[0, j + 1].set_title(f"{model}\n{axes[0, j + 1].get_title()}", fontsize=8)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    save_figure(fig, path)


# --- digits ---------------------------------------------------------------------------------------------------------

DIGIT_SPECS = [
    dict(flow="realnvp", layers=8, options=dict(hidden_sizes=(256, 256)), lr=1e-3),
    dict(flow="maf", layers=8, options=dict(hidden_sizes=(256, 256)), lr=1e-3),
    dict(flow="nsf", layers=6, options=dict(hidden_sizes=(128, 128), num_bins=8), lr=1e-3),
]
DIGIT_QUICK = [dict(flow="realnvp", layers=2, options=dict(hidden_sizes=(32, 32)), lr=1e-3)]
DIGIT_DATA = {"binarized": 2, "17-level grey": DIGITS_LEVELS}  # name -> levels per pixel
LOGIT_ALPHA = 0.05
DIGIT_BATCH = 100
DIGIT_TEST_DRAWS = 10


def digit_levels(kind: str, x) -> jnp.ndarray:
    """Integer pixel levels `(N, 64)`: 0/1 at pixel >= 8 of 16 (binarized), or 0..16 (grey)."""
    return binarize_static(x).astype(jnp.int32) if kind == "binarized" else grey_levels(x)


def to_logit(y):
    """`x = logit(a + (1 - 2a) y)` (a = `LOGIT_ALPHA`) of dequantized pixels `y` `(n, D)` in [0, 1),
    and `log|det dx/dy|` `(n,)`: the flow models `x`, so `log p(y) = log q(x) + log|det dx/dy|`."""
    s = LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * y
    log_det = jnp.sum(math.log(1 - 2 * LOGIT_ALPHA) - jnp.log(s) - jnp.log1p(-s), axis=-1)
    return jnp.log(s) - jnp.log1p(-s), log_det


def nll_bound(flow: Transformed, levels, key, num_levels: int):
    """Per-image `-log p(y) + D log L` at one dequantization `y` of `levels` `(n, D)`: its mean over
    draws bounds `-log P(levels)` from above (`reparam.data.dequantize`), in nats."""
    x, log_det = to_logit(dequantize(key, levels, num_levels))
    return -(flow.log_prob(x) + log_det) + levels.shape[-1] * math.log(num_levels)


def digits_row(spec: dict, seed: int, kind: str, epochs: int) -> dict:
    """Fit `spec` by maximum likelihood on dequantized digit levels (`training.fit`: minibatches of
    100, a fresh dequantization every batch, the last 10% of the training images for validation,
    early stopping after 30 epochs without improvement); its row with the test NLL bound."""
    begun = time.perf_counter()
    data = load_dataset("digits")
    num_levels = DIGIT_DATA[kind]
    train, test = digit_levels(kind, data.x_train), digit_levels(kind, data.x_test)
    dim = train.shape[1]
    flow = make_flow(spec["flow"], dim, spec["layers"], key=jax.random.key(seed), **spec.get("options", {}))
    steps = epochs * ((train.shape[0] - math.ceil(0.1 * train.shape[0])) // DIGIT_BATCH)
    flow, history = training.fit(
        density_loss(),
        flow,
        train,
        key=jax.random.key(400 + seed),
        optimizer=cosine_adam(spec["lr"], steps),
        batch_size=DIGIT_BATCH,
        epochs=epochs,
        validation=0.1,
        patience=30,
        eval_fn=lambda model, batch, k: nll_bound(model, batch, k, num_levels),
        transform_batch=lambda k, batch: to_logit(dequantize(k, batch, num_levels))[0],
        progress=False,
    )
    score = eqx.filter_jit(nll_bound)
    draws = [score(flow, test, k, num_levels) for k in jax.random.split(jax.random.key(500), DIGIT_TEST_DRAWS)]
    nll = float(jnp.mean(jnp.stack(draws)))
    return dict(
        model=label(spec),
        spec=spec,
        data=kind,
        levels=num_levels,
        test_nll=nll,
        test_bits_per_dim=float(bits_per_dim(nll, dim)),
        best_validation=min(r["validation"] for r in history),
        epochs=len(history),
        seconds=time.perf_counter() - begun,
    )


def digits_study(args) -> dict:
    specs, epochs = (DIGIT_QUICK, 2) if args.quick else (DIGIT_SPECS, args.epochs or 300)
    rows = []
    for kind in DIGIT_DATA:
        for r, spec in enumerate(specs):
            rows.append(digits_row(spec, r, kind, epochs))
            row = rows[-1]
            print(
                f"{kind} digits, {row['model']}: test NLL {row['test_nll']:.2f} nats "
                f"({row['test_bits_per_dim']:.3f} bits/dim), {row['epochs']} epochs, {row['seconds']:.0f} s",
                flush=True,
            )
    return dict(
        study="digits",
        max_epochs=epochs,
        batch=DIGIT_BATCH,
        logit_alpha=LOGIT_ALPHA,
        test_draws=DIGIT_TEST_DRAWS,
        baselines=mixture_baselines(),
        rows=rows,
    )


def mixture_baselines() -> list[dict]:
    """The exact-likelihood baselines of benchmarks/vae.py on the same binarized split."""
    import vae

    return vae.baselines()


# --- report -----------------------------------------------------------------------------------------------------------

# Quoted from benchmarks/RESULTS.md, "Re-run after the shared spine (2026-12-02)": same split, IWAE K=1,000.
VAE_ROWS = [
    ("Gaussian VAE (d=8), ELBO", 16.79),
    ("Gaussian VAE (d=8), IWAE k=5", 16.59),
    ("Gaussian VAE (d=8), ELBO, early stopping", 17.16),
    ("Categorical VAE (8x10), Gumbel-Softmax", 17.09),
]
TARGETS = {"eight_gaussians": 0.05, "checkerboard": 0.15}  # nats above the optimum
KL_TARGET = 0.05  # nats, U1 and U2


def provenance(result: dict) -> str:
    """Date, machine, platform, load and command of a results file, as one paragraph."""
    load = result["load_start"], result["load_end"]
    busy = " **shared and loaded** (other helpers' jobs ran throughout)," if max(load[0][0], load[1][0]) > 1 else ""
    return (
        f"Finished {result['date']}, {result['machine']}, "
        f"jax {result['versions'].get('jax')} on {result['platform']},{busy} "
        f"1-min load {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end; "
        f"{result['seconds'] / 60:.0f} min wall. "
        f"Command: `{result['command']}`"
    )


def toys_markdown(result: dict) -> str:
    header = ["flow", *[f"{t} (gap)" if t in TOY_ENTROPY else t for t in TOYS], "wall (s)"]
    body = []
    for r in result["rows"]:
        cells = [f"{r['nll'][t]:.3f}" + (f" ({r['gap'][t]:+.3f})" if t in r["gap"] else "") for t in TOYS]
        body.append([r["model"], *cells, f"{r['seconds']:.0f}"])
    floor = [
        f"{result['floors'][t]:.3f} ({result['floors'][t] - TOY_ENTROPY[t]:+.3f})" if t in TOY_ENTROPY else "-"
        for t in TOYS
    ]
    body.append(["true density on the same test points", *floor, "-"])
    body.append(["optimum (entropy)", *[f"{TOY_ENTROPY[t]:.4f}" if t in TOY_ENTROPY else "-" for t in TOYS], "-"])
    lines = [common.markdown_table(header, body), ""]
    for t, target in TARGETS.items():
        best = min(result["rows"], key=lambda r: r["gap"][t])
        met = "met" if best["gap"][t] <= target else "**missed**"
        lines.append(
            f"- {t}: best {best['model']}, {best['nll'][t]:.3f} nats, {best['gap'][t]:+.3f} above the optimum "
            f"(target <= {target}: {met}); the true density scores {result['floors'][t]:.3f} on these points, "
            f"{best['nll'][t] - result['floors'][t]:+.3f} between them."
        )
    return "\n".join(lines)


def energies_markdown(result: dict) -> str:
    plain = {r["model"]: r for r in result["rows"] if not r["stick_the_landing"]}
    stl = {r["model"]: r for r in result["rows"] if r["stick_the_landing"]}
    header = ["flow", *ENERGIES, *[f"{e} STL" for e in ENERGIES]]
    body = []
    for model, r in plain.items():
        cells = [f"{r['kl'][e]:.3f}" for e in ENERGIES] + [f"{stl[model]['kl'][e]:.3f}" for e in ENERGIES]
        body.append([model, *cells])
    lines = [common.markdown_table(header, body), ""]
    se = max(v for r in result["rows"] for v in r["kl_se"].values())
    lines.append(
        f"KL(q || p) in nats on the box, Monte Carlo over {result['kl_samples']:,} samples (largest standard "
        f"error in the table {se:.4f}); log Z by quadrature: "
        + ", ".join(f"{e} {v:.6f}" for e, v in result["log_z"].items())
        + "."
    )
    for e in ("U1", "U2"):
        best = min(result["rows"], key=lambda r: r["kl"][e])
        met = "met" if best["kl"][e] <= KL_TARGET else "**missed**"
        tag = " (sticking the landing)" if best["stick_the_landing"] else ""
        lines.append(
            f"- {e}: best {best['model']}{tag}, KL {best['kl'][e]:.4f} +- {best['kl_se'][e]:.4f} "
            f"(target <= {KL_TARGET}: {met})."
        )
    return "\n".join(lines)


def digits_markdown(result: dict) -> str:
    binary = [r for r in result["rows"] if r["data"] == "binarized"]
    grey = [r for r in result["rows"] if r["data"] != "binarized"]
    body = [[b["model"], f"{b['test_nll']:.2f}", "exact (benchmarks/vae.py, recomputed)"] for b in result["baselines"]]
    body += [[m, f"{v:.2f}", "IWAE K=1,000 (quoted from the VAE section, 2026-12-02 re-run)"] for m, v in VAE_ROWS]
    body += [
        [f"flow: {r['model']}, dequantized", f"{r['test_nll']:.2f}", f"dequantization bound, {r['epochs']} epochs"]
        for r in binary
    ]
    lines = [common.markdown_table(["model", "test NLL (nats)", "how"], body), ""]
    grey_body = [[r["model"], f"{r['test_bits_per_dim']:.3f}", f"{r['test_nll']:.1f}", str(r["epochs"])] for r in grey]
    lines += [
        common.markdown_table(["flow (17-level grey digits)", "test bits/dim", "test NLL (nats)", "epochs"], grey_body)
    ]
    return "\n".join(lines)


METHODS = {
    "toys": (
        "Test NLL in nats (lower is better) of each flow fitted by maximum likelihood to fresh draws of each toy "
        "(`sample_toy`, batch {batch}, {steps:,} Adam steps, learning rate decayed from the row's value to 0 on a "
        "cosine; all five toys in one `vmap`ped program per flow), over {test_points:,} held-out draws. The gap is "
        "the NLL minus the entropy (the optimum, `TOY_ENTROPY`); the true density's NLL on the same points shows "
        "the sampling noise of the test set (standard error about 0.003 nats). Every row tried is in the table. "
        "Picture: `benchmarks/results/flows_toys.png` (test data, then each flow type's best fit)."
    ),
    "energies": (
        "KL(q || p) in nats (0 is a perfect fit) of flows fitted by reverse KL to Rezende & Mohamed's U1-U4 "
        "restricted to the box [-4, 4]^2: the flow lives on R^2 and is pushed onto the box by `to_box` "
        "(z = 4 tanh x), i.e. fitted to the target pulled back to the plane (`plane_target_log_prob`, same Z); "
        "{samples_per_step} reparameterized samples per step, {steps:,} Adam steps (learning rate 3e-3 for "
        "planar / radial / Sylvester, 1e-3 for the others, cosine decay to 0), without and with "
        "sticking-the-landing (STL). KL = mean(log q - log p~) over {kl_samples:,} fresh samples + log Z "
        "(Gauss-Legendre quadrature on the box, float64, converged to 1e-12). Coupling and autoregressive flows: "
        "hidden layers 2x64. Picture: `benchmarks/results/flows_energies.png` (the target, then each flow "
        "type's best q, no STL)."
    ),
    "digits": (
        "Test NLL in nats per image on the binarized digits (pixel >= 8 of 16; the fixed split, 1,500 training "
        "and 297 test images: the VAE table's), lower is better. A flow models x = logit(a + (1 - 2a) y), "
        "a = {logit_alpha}, of uniformly dequantized pixels y (2 levels, or 17 for grey); its NLL is the "
        "dequantization bound E_u[-log p(y)] + 64 ln L >= -log P(pixels), averaged over {test_draws} draws per "
        "test image, so it sits in one table with the exact mixture likelihoods and the VAEs' IWAE estimates. "
        "Training: `training.fit`, minibatches of {batch}, a fresh dequantization per batch, Adam 1e-3 with "
        "cosine decay, the last 10% of the training images for validation, early stopping after 30 epochs "
        "without improvement (at most {max_epochs} epochs)."
    ),
}


OBSERVATIONS = """### Observations (the recorded runs above)

- Toys: the spline flow (nsf, 8 layers) reaches the optimum within the test set's sampling noise on eight
  Gaussians (+0.002 nats against the true density on the same 100,000 points) and is 0.018 above it on the
  checkerboard. The affine flows (realnvp, maf; 8 layers, 2x64) stay 0.07 above on eight Gaussians and
  0.14-0.19 on the checkerboard: they leave thin bridges between the modes (flows_toys.png). Only the three
  rows of the table were tried (6,000 steps each; the machine was shared).
- Energies: reverse KL is mode-seeking, and it shows. Planar and radial flows at K = 32 keep one of U1's
  two lobes: KL 0.69, i.e. ln 2, the price of dropping half the mass. Planar K = 32 still fits U2 (0.008).
  Coupling and autoregressive flows with 8 layers reach <= 0.013 on U1 and <= 0.003 on U2. The affine
  ones drop U4's lower branch, which runs into the box's lower edge (0.17 nats); nsf keeps it (0.011)
  and is the only flow under 0.05 on all four targets.
- Sticking-the-landing brings no consistent gain at this budget: maf-8 on U3 improves (0.031 -> 0.014),
  nsf-2 gets worse on U1 and U2 (0.034 -> 0.111, 0.006 -> 0.178), and most rows change by less than 0.01.
- Sylvester flows at K = 8 and 32 first stayed at KL 2.33-2.35 on U1, worse than K = 2 (0.84): R_tilde
  was initialised as small as R, which kept every layer in tanh's linear part. With R_tilde ~ N(0, 1/M)
  (re-run with `--only sylvester`) they reach 0.69 on U1, which is ln 2: one of U1's two symmetric modes,
  the reverse-KL fit planar (0.694) and radial (0.702) also land in at this budget; U2 0.021 at K = 32.
- Digits: on binary pixels, uniform dequantization costs a flow a lot: the best (nsf, 19.84 nats) beats
  independent pixels (25.22) but not the mixtures of 20-50 Bernoullis (18.19-18.70) or the VAEs
  (16.6-17.2); realnvp and maf (26.1-26.4) lose even to independent pixels. The binary runs used all 100
  epochs without early stopping, so they were still improving. On the 17 grey levels nsf reaches
  1.995 bits/dim (88.5 nats per image).
- The toys and digits studies were started while the energies study was still running (10:11-10:45
  UTC), on a machine that other helpers' jobs kept at a 1-min load of 8-16: the wall times are
  inflated. The NLL and KL columns are seeded and do not depend on load.
"""


def merge_reruns(result: dict, paths: list[Path]) -> list[str]:
    """Put the rows of each `--only` re-run (`paths`) in place of `result`'s rows of the same model
    (and STL flag); one provenance line per re-run."""
    lines = []
    for path in paths:
        rerun = common.read_json(path)
        keys = {(r["model"], r.get("stick_the_landing")) for r in rerun["rows"]}
        kept = [r for r in result["rows"] if (r["model"], r.get("stick_the_landing")) not in keys]
        result["rows"] = kept + rerun["rows"]
        models = ", ".join(sorted({r["model"] for r in rerun["rows"]}))
        lines += ["", f"Rows of {models} re-run ({path.name}): {provenance(rerun)}"]
    return lines


def report(args) -> int:
    """Write results/flows.md from whichever results files exist."""
    parts = ["## Normalizing flows", ""]
    sections = (
        ("toys", "Density estimation on the 2-D toys", toys_markdown),
        ("energies", "Variational inference of the energy targets U1-U4", energies_markdown),
        ("digits", "Digits: dequantized flows next to the VAEs and mixtures", digits_markdown),
    )
    for study, title, render in sections:
        path = args.results / f"flows_{study}.json"
        if not path.exists():
            parts += [f"### {title}", "", f"(not run: {path.name} missing)", ""]
            continue
        result = common.read_json(path)
        reruns = merge_reruns(result, sorted(args.results.glob(f"flows_{study}_only_*.json")))
        parts += [f"### {title}", "", METHODS[study].format(**result), "", provenance(result), *reruns, ""]
        parts += [render(result), ""]
    parts.append(OBSERVATIONS)
    out = args.markdown or args.results / "flows.md"
    Path(out).write_text("\n".join(parts))
    print(f"wrote {out}")
    return 0


# --- entry point ------------------------------------------------------------------------------------------------------


def output_name(args) -> str:
    """flows_<study>[_quick][_only_<flows>]: the default name of a study's results file and picture."""
    only = f"_only_{'_'.join(args.only)}" if args.only else ""
    return f"flows_{args.study}{'_quick' if args.quick else ''}{only}"


def picture_path(args) -> Path:
    """`--picture`, or results/<output_name>.png."""
    return args.picture or RESULTS / f"{output_name(args)}.png"


STUDIES = {"toys": toys_study, "energies": energies_study, "digits": digits_study}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "study", choices=[*STUDIES, "report"], help="which study to run (report: flows.md from the JSONs)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny flows, 200 steps, small test sets")
    parser.add_argument("--steps", type=int, default=None, help="training steps per flow (toys, energies)")
    parser.add_argument("--epochs", type=int, default=None, help="most training epochs per flow (digits)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="results file (default results/flows_<study>.json)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="report: the folder of the results files")
    parser.add_argument(
        "--markdown", metavar="PATH", type=Path, help="report: where to write (default results/flows.md)"
    )
    parser.add_argument("--picture", metavar="PATH", type=Path, help="picture (default results/flows_<study>.png)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted({s["flow"] for s in ENERGY_SPECS}),
        help="energies: re-run only these flows' rows (same seeds); the report puts them in place of the old rows",
    )
    args = parser.parse_args(argv)
    if args.only and args.study != "energies":
        parser.error("--only applies to the energies study")
    if args.study == "report":
        return report(args)
    versions = common.versions("jax", "jaxlib", "equinox", "optax", "reparam")
    started = common.announce(f"reparam flows benchmark: {args.study}", versions)
    load_start = common.loadavg()
    print(f"jax on {jax.devices()[0].platform}", flush=True)
    result = STUDIES[args.study](args)
    common.finish(started)
    out = args.json or RESULTS / f"{output_name(args)}.json"
    common.write_json(
        out,
        common.record(
            versions,
            platform=jax.devices()[0].platform,
            load_start=load_start,
            load_end=common.loadavg(),
            seconds=time.perf_counter() - started,
            **result,
        ),
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

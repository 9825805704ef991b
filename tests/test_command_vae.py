"""`reparam vae`: a short run on digits (and one on the bundled MNIST-5k) learns and writes its whole
folder; a run killed after an epoch and resumed equals the uninterrupted run bit for bit; bad settings
fail in one line."""

from __future__ import annotations

import json

import pytest
import tyro

from reparam.cli import main
from reparam.commands.vae import VAECommand
from reparam.commands.vae import main as run

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_gaussian_run_learns_and_writes_its_folder(tmp_path):
    """Ten epochs with a 2-D latent: at initialisation the decoder's logits are near 0, so the ELBO
    is about -64 log 2 = -44.4 nats; the run must pass -30 (digits' VAEs reach about -18)."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "vae",
                "--latent-dim",
                "2",
                "--hidden-sizes",
                "64",
                "--epochs",
                "10",
                "--batch-size",
                "50",
                "--learning-rate",
                "3e-3",
                "--eval-k",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in (
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "samples.png",
        "reconstructions.png",
        "latent.png",
        "bounds.png",
        "model.eqx",
        "checkpoint.eqx",
        "checkpoint.json",
    ):
        assert (out / name).exists(), name
    rows = rows_of(out)
    assert [r["epoch"] for r in rows] == list(range(1, 11)) + [10]
    assert {"train_elbo", "test_elbo", "train_objective", "examples_per_s"} <= set(rows[0])
    assert rows[-2]["test_elbo"] > -30, rows[-2]
    assert rows[-1]["eval_k"] == 50 and rows[-2]["test_elbo"] - 0.5 < -rows[-1]["test_nll_iwae"] < 0
    assert (
        (out / "metrics.csv")
        .read_text()
        .splitlines()[0]
        .startswith("epoch,train_objective,examples_per_s,train_elbo,test_elbo")
    )


def test_mnist5k_run_learns_on_28x28_images(tmp_path):
    """`--dataset mnist5k` (bundled, no download): two epochs on the 4,000 784-pixel training images
    beat the untrained model's ELBO of about -784 log 2 = -543 nats by far, and the IWAE NLL sits
    between the test ELBO and zero."""
    out = tmp_path / "run"
    args = ["vae", "--dataset", "mnist5k", "--hidden-sizes", "64", "--epochs", "2", "--eval-k", "10"]
    assert main([*args, "--out", str(out)]) == 0
    rows = rows_of(out)
    assert rows[-2]["test_elbo"] > -300, rows[-2]
    assert rows[-2]["test_elbo"] < -rows[-1]["test_nll_iwae"] < 0
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()


TIMING = ("examples_per_s", "eval_seconds")


def test_killed_run_resumes_exactly(tmp_path, estimator="reinforce"):
    """A categorical VAE trained by REINFORCE (its state carries Adam's moments, the step count and
    the moving-average baseline) on dynamically binarized digits (fresh pixels every batch),
    stopped after epoch 2 of 3 and resumed: the metrics and the parameters equal those of the
    uninterrupted run."""
    args = [
        "--latent",
        "categorical",
        "--estimator",
        estimator,
        "--latent-dim",
        "3",
        "--num-categories",
        "4",
        "--hidden-sizes",
        "32",
        "--epochs",
        "3",
        "--eval-k",
        "10",
        "--binarize",
        "dynamic",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["vae", *args, "--out", str(whole)]) == 0
    config = VAECommand(
        latent="categorical",
        estimator=estimator,
        latent_dim=3,
        num_categories=4,
        hidden_sizes=(32,),
        epochs=3,
        eval_k=10,
        binarize="dynamic",
        out=killed,
    )
    run(config, stop_after=2)
    assert [r["epoch"] for r in rows_of(killed)] == [1, 2]
    assert main(["vae", "--resume", str(killed)]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    assert strip(rows_of(killed)) == strip(rows_of(whole))
    assert (killed / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--latent-dim", "0"], "--latent-dim must be >= 1, got 0"),
        (["--k", "0"], "--k must be >= 1, got 0"),
        (["--estimator", "gumbel"], "--estimator gumbel is for --latent categorical"),
        (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1500 training examples of digits"),
        (["--binarize", "none"], "--likelihood bernoulli needs binary data"),
        (["--latent", "categorical", "--objective", "iwae"], "--latent categorical trains the ELBO"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["--posterior", "flow:3"], "--posterior 'flow:3' is not one of 'gaussian', or 'planar:K'"),
        (["--posterior", "iaf"], "--posterior 'iaf' is not one of"),
        (["--posterior", "sylvester:2:3"], "--posterior 'sylvester:2:3' is not one of"),
        (["--posterior", "planar:x"], "--posterior 'planar:x' is not one of"),
        (["--posterior", "planar:0"], "the number of flow layers K must be >= 1, got 0"),
        (["--posterior", "iaf:-2"], "the number of flow layers K must be >= 1, got -2"),
        (["--posterior", "nsf:0"], "the number of flow layers K must be >= 1, got 0"),
        (["--posterior", "planar:4", "--latent", "categorical"], "--posterior planar:4 needs --latent gaussian"),
        (["--posterior", "iaf:4", "--kl", "closed"], "--posterior iaf:4 has no closed-form KL: use --kl mc"),
        (["--kl-warmup-epochs", "-1"], "--kl-warmup-epochs must be >= 0, got -1"),
        (["--kl-warmup-epochs", "5", "--objective", "iwae"], "--kl-warmup-epochs needs --latent gaussian --objective"),
    ],
)
def test_bad_settings_fail_in_one_line(tmp_path, args, message):
    config = tyro.cli(VAECommand, args=[*args, "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError) as error:
        run(config)
    assert message in str(error.value) and "\n" not in str(error.value), error.value
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["vae", "--estimator", "reinforce", "--out", str(tmp_path / "x")]) == 2
    said = capsys.readouterr().out
    assert (
        said.startswith("reparam: error: --estimator reinforce is for --latent categorical") and "Traceback" not in said
    )


def test_resume_needs_a_run_folder_and_a_sound_checkpoint(tmp_path, capsys):
    assert main(["vae", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder (no config.json)" in capsys.readouterr().out
    (tmp_path / "config.json").write_text(json.dumps({"command": "sac", "format": 2, "options": {}}))  # a SAC run
    assert main(["vae", "--resume", str(tmp_path)]) == 2
    assert "holds a `reparam sac` run, not a `reparam vae` run" in capsys.readouterr().out
    (tmp_path / "config.json").write_text(json.dumps({"env": "gymnax:Pendulum-v1"}))  # written before run formats
    assert main(["vae", "--resume", str(tmp_path)]) == 2
    assert "older reparam" in capsys.readouterr().out
    options = {"epochs": 2, "hidden_sizes": [8], "out": str(tmp_path)}
    (tmp_path / "config.json").write_text(json.dumps({"command": "vae", "format": 2, "options": options}))
    (tmp_path / "checkpoint.json").write_text(json.dumps({"chunks": 1, "rows": 0}))
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "checkpoint.eqx").write_bytes(b"not a checkpoint")
    assert main(["vae", "--resume", str(tmp_path)]) == 2
    assert "corrupt checkpoint" in capsys.readouterr().out


def test_early_stopping_keeps_the_best_validation_weights(tmp_path):
    """A large learning rate overfits the 8x8 digits fast; with patience 2 the run stops before its
    40 epochs and scores the weights of the epoch with the best validation ELBO."""
    out = tmp_path / "early"
    rows = run(
        VAECommand(
            hidden_sizes=(256, 256),
            learning_rate=1e-2,
            batch_size=50,
            epochs=40,
            eval_k=10,
            validation_fraction=0.2,
            patience=2,
            out=out,
        )
    )
    epochs = [r for r in rows if "validation_elbo" in r]
    best = max(epochs, key=lambda r: r["validation_elbo"])
    assert len(epochs) < 40 and epochs[-1]["epoch"] - best["epoch"] == 2
    assert rows[-1]["epoch"] == best["epoch"] and "test_nll_iwae" in rows[-1]
    assert main(["vae", "--resume", str(out)]) == 0  # a stopped run resumes straight to its end
    assert rows_of(out)[-1]["epoch"] == best["epoch"]


def test_patience_needs_a_validation_part(tmp_path):
    with pytest.raises(ValueError, match="--patience needs"):
        run(VAECommand(patience=3, out=tmp_path / "x"))


def test_flow_posterior_run_learns_and_resumes_exactly(tmp_path):
    """`reparam vae --posterior iaf:2` (a tiny model, 2 epochs): the test ELBO rises from epoch 1 to
    2 and the run ends with its IWAE log-likelihood; stopped after epoch 1 and resumed, it equals
    the uninterrupted run (metrics and weights)."""
    args = ["--posterior", "iaf:2", "--latent-dim", "4", "--hidden-sizes", "16", "--epochs", "2", "--eval-k", "10"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["vae", *args, "--out", str(whole)]) == 0
    rows = rows_of(whole)
    assert rows[1]["test_elbo"] > rows[0]["test_elbo"] and -rows[-1]["test_nll_iwae"] > rows[1]["test_elbo"] - 1.0
    config = VAECommand(posterior="iaf:2", latent_dim=4, hidden_sizes=(16,), epochs=2, eval_k=10, out=killed)
    run(config, stop_after=1)
    assert [r["epoch"] for r in rows_of(killed)] == [1]
    assert main(["vae", "--resume", str(killed)]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    assert strip(rows_of(killed)) == strip(rows)
    assert (killed / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


def test_kl_warmup_trains_the_annealed_bound(tmp_path):
    """`--kl-warmup-epochs 4` (tiny model, 1 epoch): the first epoch trains `E log p(x|z) - beta KL`
    with beta <= 1/4, so its mean training objective sits above that of the same run without
    warm-up (same initialisation and draws; at the first step exactly by 3/4 of the KL)."""
    args = dict(latent_dim=4, hidden_sizes=(16,), epochs=1, eval_k=10)
    plain = run(VAECommand(**args, out=tmp_path / "plain"))[0]
    warm = run(VAECommand(**args, kl_warmup_epochs=4, out=tmp_path / "warm"))[0]
    assert warm["train_objective"] > plain["train_objective"] + 0.1

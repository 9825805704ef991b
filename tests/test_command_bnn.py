"""`reparam bnn`: tiny runs of each task write their whole folder, a killed run resumes exactly, a
user's CSV trains, and bad settings fail in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reparam.cli import main
from reparam.commands.bnn import BNNCommand
from reparam.commands.bnn import main as run

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_regression_run_writes_its_folder_and_the_gradient_variance(tmp_path):
    out = tmp_path / "cubic"
    rows = run(BNNCommand(epochs=300, eval_every=100, samples=20, variance_repeats=16, out=out))
    assert [r["epoch"] for r in rows] == [100, 200, 300, 300]
    final = rows[-1]
    assert np.isfinite(final["test_nll"]) and final["test_rmse"] < 23.0  # the targets' sd is about 23
    for layer in ("first_layer", "last_layer"):
        assert all(final[f"grad_var_{layer}_{e}"] > 0 for e in ("weights", "local", "flipout"))
    for name in ("predictive.png", "gradient_variance.png", "model.eqx", "metrics.csv", "checkpoint.eqx"):
        assert (out / name).stat().st_size > 0, name
    assert {"train_nll", "train_kl", "train_loss"} <= set(rows[0])


def test_killed_run_resumes_exactly(tmp_path):
    settings = dict(dataset="toy-gap", method="flipout", epochs=60, eval_every=20, samples=10, variance_repeats=0)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run(BNNCommand(out=whole, **settings))
    run(BNNCommand(out=killed, **settings), stop_after=2)
    assert [r["epoch"] for r in rows_of(killed)] == [20, 40]
    assert main(["bnn", "--resume", str(killed)]) == 0
    assert rows_of(killed) == rows_of(whole)
    assert (killed / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


def test_classification_with_out_of_distribution_inputs(tmp_path):
    out = tmp_path / "digits"
    rows = run(
        BNNCommand(
            dataset="digits",
            method="ensemble",
            num_members=2,
            hidden_sizes=(16,),
            epochs=4,
            eval_every=4,
            learning_rate=3e-3,
            out=out,
        )
    )
    final = rows[-1]
    assert final["test_accuracy"] > 0.6 and 0.0 <= final["ece"] <= 1.0 and 0.0 <= final["brier"] <= 2.0
    assert 0.0 <= final["ood_auroc"] <= 1.0
    assert (out / "reliability.png").exists() and (out / "entropy.png").exists()


def test_a_users_csv_table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["a,b,label"] + [f"{u:.4f},{v:.4f},{c}" for (u, v), c in zip(x, label, strict=True)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    rows = run(
        BNNCommand(
            dataset=f"csv:{tmp_path / 't.csv'}",
            target="label",
            task="classification",
            method="map",
            epochs=50,
            eval_every=50,
            out=tmp_path / "run",
        )
    )
    assert rows[-1]["test_accuracy"] >= 0.5 and "ood_auroc" not in rows[-1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--target", "y"], "--target names a column of csv:PATH"),
        (["--task", "classification"], "does not match toy-cubic, a regression table"),
        (["--epochs", "250"], "must be a multiple of --eval-every"),
        (["--samples", "0"], "--samples must be >= 1"),
        (["--mixture-pi", "1.5"], "0 < --mixture-pi < 1"),
        (["--dataset", "diabetes", "--split", "20"], "split"),
    ],
)
def test_bad_settings_fail_in_one_line_before_the_folder(tmp_path, capsys, args, message):
    assert main(["bnn", *args, "--out", str(tmp_path / "x")]) == 2
    said = capsys.readouterr().out
    assert message in " ".join(said.split()) and said.count("\n") == 1, said
    assert not (tmp_path / "x").exists()


def test_csv_without_the_target_column(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    assert main(["bnn", "--dataset", f"csv:{tmp_path / 't.csv'}", "--target", "y", "--out", str(tmp_path / "x")]) == 2
    said = capsys.readouterr().out
    assert "'y'" in said and said.count("\n") == 1


def test_mnist_files_train_all_ten_classes(tmp_path, capsys):
    """`--dataset mnist:PATH` (Blundell et al.'s setting) on a tiny stand-in npz with MNIST's layout."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 4, 4), dtype=np.uint8)
    y = np.arange(80) % 10
    np.savez(tmp_path / "m.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    rows = run(
        BNNCommand(
            dataset=f"mnist:{tmp_path / 'm.npz'}",
            epochs=2,
            eval_every=2,
            samples=4,
            variance_repeats=0,
            out=tmp_path / "run",
        )
    )
    assert 0.0 <= rows[-1]["test_accuracy"] <= 1.0 and "ood_auroc" not in rows[-1]
    np.savez(tmp_path / "unlabelled.npz", x_train=x[:60], x_test=x[60:])
    assert main(["bnn", "--dataset", f"mnist:{tmp_path / 'unlabelled.npz'}", "--out", str(tmp_path / "x")]) == 2
    assert "needs labels 0..9" in capsys.readouterr().out

"""`reparam flow`: a tiny run per kind of data (2-D toy, energy target, digits, csv) writes its
folder and metrics ending with the held-out NLL (or the KL); a run stopped after one chunk and
resumed equals the uninterrupted run; the reported NLL includes the standardisation's log-det;
bad settings are one-line errors."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from reparam.cli import main
from reparam.commands.flow import FlowCommand, load_problem
from reparam.commands.flow import main as run

pytestmark = pytest.mark.usefixtures("as_users_run_it")

TINY = ["--layers", "2", "--hidden-sizes", "8", "--eval-every", "20", "--test-size", "2000"]


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def written(folder, *names):
    return all((folder / name).exists() for name in (*names, "config.json", "metrics.csv", "model.eqx"))


def test_toy_run_writes_metrics_ending_with_test_nll_and_pictures(tmp_path):
    """RealNVP on eight Gaussians for 40 steps: rows per 20 steps, then the final row with the test
    NLL and its distance to the optimum (the entropy 2.8316; a finite fit is above it)."""
    out = tmp_path / "toy"
    assert main(["flow", "--data", "8gaussians", "--flow", "realnvp", "--steps", "40", *TINY, "--out", str(out)]) == 0
    rows = rows_of(out)
    assert [r["step"] for r in rows] == [20, 40, 40]
    assert {"train_nll", "test_nll"} <= set(rows[0])
    final = rows[-1]
    assert final["test_nll"] == rows[-2]["test_nll"] and final["optimum"] == pytest.approx(2.83158)
    assert final["test_nll_minus_optimum"] > 0
    assert written(out, "density.png", "samples.png", "curve.png")


def test_energy_run_reports_kl(tmp_path):
    """A planar flow fitted to U1 for 40 steps: rows hold `kl = loss + log Z`; the final row the KL
    from fresh samples with its standard error and log Z (a KL is >= 0 up to that error)."""
    out = tmp_path / "u1"
    assert (
        main(
            [
                "flow",
                "--data",
                "U1",
                "--flow",
                "planar",
                "--steps",
                "40",
                "--num-samples",
                "64",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = rows_of(out)
    assert all(r["kl"] == pytest.approx(r["loss"] + rows[-1]["log_z"]) for r in rows[:-1])
    final = rows[-1]
    assert set(final) == {"step", "kl", "kl_stderr", "log_z"}
    assert final["kl"] > -3 * final["kl_stderr"] and final["kl_stderr"] > 0
    assert written(out, "density.png", "samples.png", "curve.png")


def test_digits_run_reports_nats_and_bits_per_dim(tmp_path):
    """MAF on dequantized binarized digits: the final row's test NLL (nats, the dequantization bound)
    and bits/dim = nats / (64 ln 2); a sample grid and the curve."""
    out = tmp_path / "digits"
    args = ["flow", "--data", "digits", "--flow", "maf", "--layers", "1", "--hidden-sizes", "8", "--steps", "10"]
    assert main([*args, "--eval-every", "5", "--out", str(out)]) == 0
    rows = rows_of(out)
    assert [r["epoch"] for r in rows[:-1]] == [1, 2] and {"validation_nll", "test_nll"} <= set(rows[0])
    final = rows[-1]
    assert final["bits_per_dim"] == pytest.approx(final["test_nll"] / (64 * math.log(2)), rel=1e-6)
    assert 0 < final["test_nll"] < 64 * math.log(2) + 20
    assert written(out, "samples.png", "curve.png")


def test_image_offsets_are_the_standardisation_and_cell_volume():
    """digits17: the NLL offset is `sum log scale + 64 log 17` (the standardisation's log-det and the
    dequantization cells' volume 17^-64); the standardised test set has mean ~0, sd ~1."""
    problem = load_problem(FlowCommand(data="digits17"), jax.random.key(0))
    assert problem.levels == 17 and problem.dim == 64 and problem.train.dtype == np.int32
    expected = float(np.sum(np.log(problem.scale.astype(np.float64)))) + 64 * math.log(17)
    assert problem.offset == pytest.approx(expected, rel=1e-9)
    assert abs(float(np.mean(problem.test))) < 0.1 and abs(float(np.std(problem.test)) - 1) < 0.1


def gaussian_csv(path, rows=200, nan=False):
    rng = np.random.RandomState(0)
    x = rng.randn(rows, 3) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 2.0]]) + 5
    lines = ["a,b,c"] + [",".join(f"{v:.6f}" for v in row) for row in x]
    if nan:
        lines[7] = "1.0,nan,2.0"
    path.write_text("\n".join(lines) + "\n")
    return x


def test_csv_run_reports_held_out_nll_in_original_units(tmp_path):
    """A 3-column Gaussian table: the final row's held-out NLL, in the file's units: scaling the file
    by 10 raises the NLL by 3 log 10 exactly (the standardisation's log-det), all else equal."""
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    x = gaussian_csv(small)
    big.write_text("a,b,c\n" + "\n".join(",".join(f"{10 * v:.6f}" for v in row) for row in np.round(x, 6)) + "\n")
    finals = []
    for path in (small, big):
        out = tmp_path / path.stem
        args = ["flow", "--data", f"csv:{path}", "--flow", "maf", "--steps", "20", "--batch-size", "32", *TINY]
        assert main([*args, "--out", str(out)]) == 0
        finals.append(rows_of(out)[-1])
        assert written(out, "samples.png", "curve.png")
    assert set(finals[0]) == {"step", "test_nll"}
    assert finals[1]["test_nll"] - finals[0]["test_nll"] == pytest.approx(3 * math.log(10), abs=1e-3)


def test_a_killed_run_resumes_exactly(tmp_path):
    """The toy run of the first test stopped after its first chunk and resumed: the same rows and
    the same saved model as the uninterrupted run."""
    config = dict(data="8gaussians", flow="realnvp", layers=2, hidden_sizes=(8,), eval_every=20, test_size=2000)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(FlowCommand(steps=40, out=whole, **config))
    run(FlowCommand(steps=40, out=parts, **config), stop_after=1)
    assert len(rows_of(parts)) == 1
    run(FlowCommand(resume=parts))
    assert rows_of(parts) == rows_of(whole)
    assert (parts / "model.eqx").read_bytes() == (whole / "model.eqx").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "glow"], "unknown flow 'glow'; choose one of realnvp"),
        (["--data", "mnist"], "unknown --data 'mnist'; choose moons"),
        (["--layers", "0"], "layers must be an integer >= 1, got 0"),
        (["--data", "csv:MISSING"], "no such file"),
        (["--data", "csv:NAN"], "NaN"),
        (["--stick-the-landing"], "--stick-the-landing is for the variational fits"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, args, message):
    """Unknown flow or data, layers < 1, a missing CSV file, a CSV with NaN: exit status 2 and one
    line, no traceback, no run folder."""
    gaussian_csv(tmp_path / "nan.csv", nan=True)
    args = [a.replace("MISSING", str(tmp_path / "none.csv")).replace("NAN", str(tmp_path / "nan.csv")) for a in args]
    assert main(["flow", *args, "--out", str(tmp_path / "run")]) == 2
    said = capsys.readouterr().out
    assert message in " ".join(said.split()), said
    assert said.count("\n") == 1 and "Traceback" not in said
    assert not (tmp_path / "run").exists()

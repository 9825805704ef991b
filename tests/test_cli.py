"""Smoke tests of every CLI command with tiny settings, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reparam.cli import main


def test_estimators_continuous(tmp_path, capsys):
    args = ["estimators", "--out", str(tmp_path), "--sweep", "mu=-1:1:3", "--num-samples", "1,4",
            "--estimators", "pathwise,score-rloo", "--num-repeats", "100"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    combos = 2 + 1  # score-rloo is skipped at N = 1
    assert len(results["rows"]) == combos * 3 * 2
    for picture in ("variance_vs_mu.png", "snr_vs_mu.png", "variance_vs_num_samples.png"):
        assert (tmp_path / picture).stat().st_size > 10_000
    assert (tmp_path / "results.csv").read_text().startswith("sweep,value,estimator")
    assert json.loads((tmp_path / "config.json").read_text())["num_repeats"] == 100
    out = capsys.readouterr().out
    assert "Skipped" in out and "variance_vs_mu.png" in out


def test_estimators_discrete_temperature_sweep(tmp_path):
    args = ["estimators", "--problem", "categorical", "--out", str(tmp_path), "--sweep", "temperature=0.2:2:2",
            "--num-samples", "4", "--estimators", "score-cv,st-gumbel", "--num-repeats", "50"]
    assert main(args) == 0
    assert (tmp_path / "variance_vs_temperature.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--num-repeats", "1"], "num-repeats must be >= 2"),
        (["--estimators", "pathwise,magic"], "unknown estimator 'magic'"),
        (["--problem", "categorical", "--estimators", "pathwise", "--sweep", "logit=-1:1:3"], "needs a reparameterizable"),
        (["--sweep", "mu=oops"], "NAME=START:STOP:COUNT"),
        (["--sweep", "omega=1:2:3"], "does not apply to --problem quadratic"),
        (["--dist", "bernoulli"], "does not match --problem quadratic"),
        (["--estimators", "score-rloo", "--num-samples", "1"], "need --num-samples >= 2"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "estimators", "--out", str(tmp_path), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stdout.split())
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_lists_options_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "estimators", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--problem", "--estimators", "--num-samples", "--sweep", "--temperature", "k=-3:3:25"):
        assert option in proc.stdout

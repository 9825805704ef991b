"""`reparam estimators`: a tiny sweep end to end, resume, and one-line errors for bad options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reparam.cli import main


def test_estimators_continuous(tmp_path, capsys):
    args = [
        "estimators",
        "--out",
        str(tmp_path),
        "--sweep",
        "mu=-1:1:3",
        "--num-samples",
        "1,4",
        "--estimators",
        "pathwise,score-rloo",
        "--num-repeats",
        "100",
    ]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    combos = 2 + 1  # score-rloo is skipped at N = 1
    assert len(results["rows"]) == combos * 3 * 2
    for picture in ("variance_vs_mu.png", "snr_vs_mu.png", "variance_vs_num_samples.png"):
        assert (tmp_path / picture).stat().st_size > 10_000
    assert (tmp_path / "metrics.csv").read_text().startswith("sweep,value,estimator")
    assert json.loads((tmp_path / "config.json").read_text())["options"]["num_repeats"] == 100
    # pathwise on the quadratic, d/dmu = 2 (mu + sigma eps - k): unbiased, variance 4 sigma^2 / N = 1 at N = 4;
    # 100 repeats: standard error 0.1 for the bias, sqrt(2 / 99) = 0.14 for the variance (5 standard errors allowed)
    pathwise = [
        r for r in results["rows"] if r["estimator"] == "pathwise" and r["param"] == "mu" and r["num_samples"] == 4
    ]
    assert len(pathwise) == 3
    assert all(abs(r["bias"]) < 0.5 and abs(r["variance"] - 1.0) < 0.71 for r in pathwise)
    out = capsys.readouterr().out
    assert "Skipped" in out and "variance_vs_mu.png" in out


def test_estimators_discrete_temperature_sweep(tmp_path):
    args = [
        "estimators",
        "--problem",
        "categorical",
        "--out",
        str(tmp_path),
        "--sweep",
        "temperature=0.2:2:2",
        "--num-samples",
        "4",
        "--estimators",
        "score-cv,st-gumbel",
        "--num-repeats",
        "50",
    ]
    assert main(args) == 0
    assert (tmp_path / "variance_vs_temperature.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--num-repeats", "1"], "num-repeats must be >= 2"),
        (["--estimators", "pathwise,magic"], "unknown estimator 'magic'"),
        (
            ["--problem", "categorical", "--estimators", "pathwise", "--sweep", "logit=-1:1:3"],
            "needs a reparameterizable",
        ),
        (["--sweep", "mu=oops"], "NAME=START:STOP:COUNT"),
        (["--sweep", "omega=1:2:3"], "does not apply to --problem quadratic"),
        (["--dist", "bernoulli"], "does not match --problem quadratic"),
        (["--estimators", "score-rloo", "--num-samples", "1"], "need --num-samples >= 2"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "reparam.cli", "estimators", "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stdout.split())
    assert "Traceback" not in proc.stdout + proc.stderr


def test_killed_sweep_resumes_to_the_same_rows(tmp_path):
    args = [
        "estimators",
        "--sweep",
        "k=-1:1:2",
        "--num-samples",
        "2",
        "--estimators",
        "pathwise,score",
        "--num-repeats",
        "50",
    ]
    full = main_rows([*args, "--out", str(tmp_path / "full")])
    from reparam.commands import estimators

    config = estimators.EstimatorsCommand(
        sweep="k=-1:1:2", num_samples="2", estimators="pathwise,score", num_repeats=50, out=tmp_path / "killed"
    )
    estimators.main(config, stop_after=1)
    resumed = estimators.main(estimators.EstimatorsCommand(resume=tmp_path / "killed"))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds_per_estimate"} for r in rows]
    assert drop(resumed) == drop(full)


def main_rows(args):
    assert main(args) == 0
    out = args[args.index("--out") + 1]
    return [json.loads(line) for line in open(f"{out}/metrics.jsonl")]


def test_help_lists_options_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "estimators", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--problem", "--estimators", "--num-samples", "--sweep", "--temperature", "k=-3:3:25"):
        assert option in proc.stdout

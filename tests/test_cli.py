"""Smoke tests of every CLI command with tiny settings, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from reparam.cli import main


def test_demo_writes_results_and_picture(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--num-k", "3", "--num-repeats", "200"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["rows"]) == 3 * 2 * 2
    assert (tmp_path / "variance.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "config.json").read_text())["num_repeats"] == 200
    assert "variance.png" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "reparam.cli", "demo", "--out", str(tmp_path), "--num-repeats", "1"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "num-repeats must be >= 2" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_lists_options_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--num-repeats" in proc.stdout and "20000" in proc.stdout

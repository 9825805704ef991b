"""The command table: every command is listed with its options, and every command that reads a run
folder refuses another command's folder (or an old or empty one) in one line, without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reparam import runs
from reparam.cli import COMMANDS, main
from reparam.commands.sac import SACCommand

WRITERS = sorted(name for name, (config, _) in COMMANDS.items() if "resume" in config.__dataclass_fields__)
"""Every command that writes a resumable run folder (a new command is checked without editing this file)."""
READERS = [*WRITERS, "evaluate"]


def test_the_table_holds_every_command():
    assert {"sac", "evaluate", "estimators", "vae", "bnn", "flow", "diffusion", "world-model"} <= set(COMMANDS)


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_foreign_run_folder_is_a_one_line_error(tmp_path, capsys, reader, writer):
    if reader == writer or (reader, writer) == ("evaluate", "sac"):
        pytest.skip("a command reads its own folders (evaluate reads sac's)")
    folder = tmp_path / writer
    runs.open_run(writer, COMMANDS[writer][0](out=folder))  # config.json of a `reparam <writer>` run
    args = ["evaluate", str(folder)] if reader == "evaluate" else [reader, "--resume", str(folder)]
    assert main(args) == 2
    said = capsys.readouterr().out
    expected = "sac" if reader == "evaluate" else reader
    assert f"holds a `reparam {writer}` run, not a `reparam {expected}` run" in " ".join(said.split())
    assert said.count("\n") == 1 and "Traceback" not in said


@pytest.mark.parametrize("reader", READERS)
def test_an_empty_folder_is_not_a_run(tmp_path, capsys, reader):
    args = ["evaluate", str(tmp_path)] if reader == "evaluate" else [reader, "--resume", str(tmp_path)]
    assert main(args) == 2
    assert "is not a run folder (no config.json)" in capsys.readouterr().out


def test_option_names_agree_across_commands():
    """One spelling per idea: the options several commands share have the same names."""
    fields = {name: set(spec[0].__dataclass_fields__) for name, spec in COMMANDS.items()}
    for common in ("seed", "out", "resume"):
        assert all(common in fields[name] for name in WRITERS), common
    assert all("tensorboard" in fields[name] for name in ("sac", "vae", "bnn"))
    assert {"learning_rate", "hidden_sizes", "batch_size", "epochs"} <= fields["vae"] & fields["bnn"]
    sac_flags = set(SACCommand().sac.__dataclass_fields__)
    assert {"learning_rate", "hidden_sizes", "batch_size"} <= sac_flags & fields["vae"]

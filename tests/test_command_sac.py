"""`reparam sac` and `reparam evaluate` on the run layer: the compiled loop's run folder and its exact
resume, the host loop's run folder, seed-spanning resume and evaluation, flat SAC flags, one-line
errors (bad ids, discrete spaces, impossible sizes, other commands' folders, corrupt checkpoints)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tyro

from reparam.cli import main
from reparam.commands import sac
from reparam.runs import RUN_FORMAT, write_json

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


TINY = [
    "--env",
    "gymnax:Pendulum-v1",
    "--total-steps",
    "600",
    "--eval-every",
    "200",
    "--eval-episodes",
    "2",
    "--num-seeds",
    "2",
    "--hidden-sizes",
    "16",
    "16",
    "--batch-size",
    "16",
    "--learning-starts",
    "250",
]
HOST = [
    "--env",
    "Pendulum-v1",
    "--total-steps",
    "300",
    "--eval-every",
    "150",
    "--eval-episodes",
    "1",
    "--num-seeds",
    "2",
    "--hidden-sizes",
    "16",
    "16",
    "--batch-size",
    "16",
    "--learning-starts",
    "50",
]


def test_flat_flags():
    config = tyro.cli(
        sac.SACCommand,
        args=["--batch-size", "512", "--learning-rate", "1e-3", "--seed", "3", "--no-learn-alpha", "--tensorboard"],
    )
    assert (config.sac.batch_size, config.sac.learning_rate, config.sac.learn_alpha) == (512, 1e-3, False)
    assert config.seed == 3 and config.tensorboard


def test_actor_gradient_flag():
    assert tyro.cli(sac.SACCommand, args=[]).sac.actor_gradient == "pathwise"  # SAC's default unchanged
    assert tyro.cli(sac.SACCommand, args=["--actor-gradient", "score"]).sac.actor_gradient == "score"


def test_compiled_run_folder_exact_resume_and_evaluate(tmp_path, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["sac", *TINY, "--out", str(whole)]) == 0
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "learning_curve.png", "policy.eqx", "checkpoint.eqx"):
        assert (whole / name).exists(), name
    rows = rows_of(whole)
    assert [(r["seed"], r["step"]) for r in rows] == [(0, 200), (1, 200), (0, 400), (1, 400), (0, 600), (1, 600)]
    assert set(rows[0]) == {"seed", "step", "eval_return"}  # no learning before step 250: no placeholders
    assert {"critic_loss", "actor_loss", "alpha", "entropy", "q_target", "gradient_steps"} <= set(rows[2])
    assert rows[2]["gradient_steps"] == 400 - 250 + 1

    sac.main(tyro.cli(sac.SACCommand, args=[*TINY, "--out", str(killed)]), stop_after=1)  # "killed" after chunk 1
    assert len(rows_of(killed)) == 2
    capsys.readouterr()
    assert main(["sac", "--resume", str(killed)]) == 0
    assert "Resuming" in capsys.readouterr().out  # continued from the checkpoint, not restarted
    assert rows_of(killed) == rows  # bit-identical metrics

    capsys.readouterr()
    assert main(["evaluate", str(whole), "--episodes", "2"]) == 0
    assert "gymnax:Pendulum-v1: mean return over 2 episodes per seed: " in capsys.readouterr().out


def test_host_run_folder_seed_spanning_resume_and_evaluate(tmp_path, capsys):
    """A host-loop run killed after three chunks (seed 0 done, seed 1 half way) resumes at seed 1
    step 150 with seed 0's rows and policy kept; `reparam evaluate` scores both saved policies."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["sac", *HOST, "--out", str(whole)]) == 0
    rows = rows_of(whole)
    assert [(r["seed"], r["step"]) for r in rows] == [(0, 150), (0, 300), (1, 150), (1, 300)]
    assert all(np.isfinite(r["eval_return"]) and r["gradient_steps"] >= 1 for r in rows)
    for name in ("config.json", "metrics.csv", "learning_curve.png", "policy.eqx", "checkpoint.eqx"):
        assert (whole / name).exists(), name

    sac.main(tyro.cli(sac.SACCommand, args=[*HOST, "--out", str(killed)]), stop_after=3)
    capsys.readouterr()
    assert main(["sac", "--resume", str(killed)]) == 0
    assert "Resuming" in capsys.readouterr().out
    resumed = rows_of(killed)
    assert [(r["seed"], r["step"]) for r in resumed] == [(0, 150), (0, 300), (1, 150), (1, 300)]
    untimed = lambda r: {k: v for k, v in r.items() if "per_second" not in k}
    assert list(map(untimed, resumed[:3])) == list(map(untimed, rows[:3]))  # the same run up to the kill
    assert resumed[3]["gradient_steps"] == rows[3]["gradient_steps"]  # counters restored

    capsys.readouterr()
    assert main(["evaluate", str(killed), "--episodes", "2"]) == 0
    said = capsys.readouterr().out
    assert "Pendulum-v1: mean return over 2 episodes per seed: " in said and said.count(",") == 1


def one_line(capsys, args, message):
    capsys.readouterr()
    try:
        status, boxed = main(args), False
    except SystemExit as exit:  # tyro reports a constructor's error in its own box, then exits
        status, boxed = exit.code, True
    said = capsys.readouterr()
    text = said.out + said.err
    assert status == 2 and message in " ".join(text.replace("│", " ").split()), text
    assert "Traceback" not in text and (boxed or len(text.strip().splitlines()) == 1), text


def test_errors_are_one_line(tmp_path, capsys):
    vae = tmp_path / "vae"
    write_json(vae / "config.json", {"command": "vae", "format": RUN_FORMAT, "options": {}})
    cases = [
        (["sac", "--resume", str(vae)], "holds a `reparam vae` run, not a `reparam sac` run"),
        (
            ["sac", "--env", "gymnax:Acrobot-v1", "--out", str(tmp_path / "a")],
            "unknown JAX-native environment 'gymnax:Acrobot-v1'; supported: gymnax:Pendulum-v1",
        ),
        (["sac", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "a")], "unknown environment id 'NoSuchEnv-v0'"),
        (
            ["sac", "--env", "Acrobot-v1", "--out", str(tmp_path / "d")],
            "SAC needs a continuous (Box) action space; Acrobot-v1 has Discrete(3)",
        ),
        (
            ["sac", "--total-steps", "1000", "--eval-every", "300", "--out", str(tmp_path / "b")],
            "must be a multiple of --eval-every",
        ),
        (
            [
                "sac",
                "--total-steps",
                "1000",
                "--eval-every",
                "500",
                "--learning-starts",
                "1000",
                "--out",
                str(tmp_path / "e"),
            ],
            "--learning-starts (1000) must be below",
        ),
        (
            ["sac", "--batch-size", "512", "--buffer-size", "100", "--out", str(tmp_path / "c")],
            "batch_size (512) exceeds buffer_size (100)",
        ),
        (["evaluate", str(vae)], "holds a `reparam vae` run, not a `reparam sac` run"),
        (["evaluate", str(tmp_path / "missing")], "is not a run folder"),
    ]
    # The real entry point once (exit status, no traceback), then the rest in process.
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", "evaluate", str(vae)], capture_output=True, text=True)
    assert proc.returncode == 2 and cases[-2][1] in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for args, message in cases:
        one_line(capsys, args, message)
    assert not any((tmp_path / name).exists() for name in "abcde")  # nothing written for a bad setting


def test_corrupt_checkpoint_and_unfinished_run_are_one_line_errors(tmp_path, capsys):
    from reparam.runs import open_run

    out = tmp_path / "run"
    open_run("sac", tyro.cli(sac.SACCommand, args=[*TINY, "--out", str(out)]))
    (out / "checkpoint.json").write_text('{"chunks": 1, "rows": 0}')
    (out / "checkpoint.eqx").write_bytes(b"not a checkpoint")
    one_line(capsys, ["sac", "--resume", str(out)], "corrupt checkpoint")
    one_line(capsys, ["evaluate", str(out)], "has no policy.eqx yet: the run has not finished")

"""`reparam world-model` on the run layer: the compiled loop's run folder (held-out model metrics in the
rows, the learning curve beside a SAC run's, the open-loop prediction picture) and its exact resume;
the host loop's folder; bad settings are one-line errors and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tyro

from reparam.cli import main
from reparam.commands import world_model
from test_command_sac import one_line

pytestmark = pytest.mark.usefixtures("as_users_run_it")

TINY = [
    "--total-steps",
    "300",
    "--eval-every",
    "100",
    "--eval-episodes",
    "1",
    "--num-seeds",
    "2",
    "--hidden-sizes",
    "8",
    "8",
    "--batch-size",
    "8",
    "--learning-starts",
    "150",
    "--model-hidden-sizes",
    "8",
    "--ensemble",
    "2",
    "--elites",
    "1",
    "--horizon",
    "2",
    "--prediction-steps",
    "10",
]


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_compiled_run_folder_and_exact_resume(tmp_path, capsys):
    whole, killed, sac_run = tmp_path / "whole", tmp_path / "killed", tmp_path / "sac"
    sac_run.mkdir()
    (sac_run / "metrics.jsonl").write_text(
        "".join(json.dumps({"seed": 0, "step": s, "eval_return": -1000.0 + s}) + "\n" for s in (100, 200, 300))
    )
    assert main(["world-model", "--agent", "svg", *TINY, "--sac-run", str(sac_run), "--out", str(whole)]) == 0
    said = capsys.readouterr().out
    assert "Open-loop prediction of a fresh episode (10 steps, 2 members x 20 draws)" in said
    for name in ("learning_curve.png", "open_loop_prediction.png", "policy.eqx", "checkpoint.eqx", "metrics.csv"):
        assert (whole / name).exists(), name
    rows = rows_of(whole)
    assert [(r["seed"], r["step"]) for r in rows] == [(0, 100), (1, 100), (0, 200), (1, 200), (0, 300), (1, 300)]
    assert set(rows[0]) == {"seed", "step", "eval_return"}  # nothing learned before step 150
    assert {"model_nll", "model_mse", "model_loss", "critic_loss", "actor_loss"} <= set(rows[2])
    assert all(np.isfinite(r["model_mse"]) and r["model_mse"] > 0 for r in rows[2:])

    world_model.main(tyro.cli(world_model.WorldModelCommand, args=[*TINY, "--out", str(killed)]), stop_after=1)
    capsys.readouterr()
    assert main(["world-model", "--resume", str(killed)]) == 0
    assert "Resuming" in capsys.readouterr().out
    assert rows_of(killed) == rows  # bit-identical metrics


def test_host_run_folder(tmp_path):
    args = ["world-model", "--agent", "mbpo", *TINY, "--env", "Pendulum-v1", "--num-seeds", "1"]
    args += ["--total-steps", "200", "--rollout-batch", "8", "--model-buffer-size", "512", "--out", str(tmp_path / "h")]
    assert main(args) == 0
    rows = rows_of(tmp_path / "h")
    assert [r["step"] for r in rows] == [100, 200]
    assert rows[-1]["model_rows"] == 51 * 8 and np.isfinite(rows[-1]["model_nll"])
    assert (tmp_path / "h" / "open_loop_prediction.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agent", "dreamer"], "unknown agent 'dreamer'; choose svg or mbpo"),
        (["--horizon", "0"], "--horizon must be >= 1, got 0"),
        (["--ensemble", "0", "--elites", "0"], "--ensemble must be >= 1, got 0"),
        (["--ensemble", "3", "--elites", "4"], "--elites must be in 1..ensemble (3), got 4"),
        (["--imagination-gradient", "reinforce"], "unknown actor-gradient estimator 'reinforce'"),
        (["--env", "gymnax:Acrobot-v1"], "unknown JAX-native environment 'gymnax:Acrobot-v1'"),
        (["--total-steps", "1000", "--eval-every", "300"], "must be a multiple of --eval-every"),
        (["--env", "InvertedDoublePendulum-v5"], "no termination function is known for 'InvertedDoublePendulum-v5'"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, extra, message):
    one_line(capsys, ["world-model", *extra, "--out", str(tmp_path / "x")], message)
    assert not (tmp_path / "x").exists()

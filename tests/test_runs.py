"""The run layer: guarded config.json, the checkpoint pair, exact resume through `drive`, the
non-finite check, metric files, TensorBoard events."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tyro

from reparam import runs


@dataclasses.dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...] = (3, 4)
    rate: float = 0.1


@dataclasses.dataclass(frozen=True)
class ToyCommand:
    steps: int = 5
    kind: Literal["a", "b"] = "a"
    inner: Annotated[Inner, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=Inner)
    out: Path = Path("runs/toy")
    resume: Path | None = None
    blow_up_at: int | None = None


def toy_job(config: ToyCommand, finished: list) -> runs.Job:
    """A random walk on device: state (key, position); one row per chunk."""

    def advance(state, chunk):
        key, position = state
        key, sub = jax.random.split(key)
        position = position + jax.random.normal(sub, (2,))
        value = float("nan") if chunk == config.blow_up_at else float(position[0])
        return (key, position), [{"chunk": chunk + 1, "x": value}]

    def finish(state, rows):
        finished.append(np.asarray(state[1]))
        rows.append({"final": float(state[1][1])})
        return [f"final position {np.asarray(state[1])}"]

    return runs.Job(
        init=lambda: (jax.random.key(0), jnp.zeros(2)),
        advance=advance,
        finish=finish,
        chunks=config.steps,
        label="toy",
        unit="steps",
        shown=("x", "x"),
        saved=lambda s: (jax.random.key_data(s[0]), s[1]),
        restored=lambda s, saved: (jax.random.wrap_key_data(saved[0]), saved[1]),
    )


def start(config: ToyCommand, **kwargs):
    finished = []
    run = runs.open_run("toy", config, resume=config.resume)
    rows = runs.drive(toy_job(run.config, finished), run, **kwargs)
    return rows, finished


def test_config_round_trips_nested_tuples_and_paths(tmp_path):
    config = ToyCommand(inner=Inner(sizes=(7,), rate=2.0), out=tmp_path / "a", blow_up_at=3)
    raw = runs.config_to_dict(config)
    assert runs.config_from_dict(ToyCommand, raw, "here") == config


def test_killed_run_resumes_to_the_same_rows_and_state(tmp_path):
    full, final_full = start(ToyCommand(out=tmp_path / "full"))
    start(ToyCommand(out=tmp_path / "killed"), stop_after=2)
    assert not (tmp_path / "killed" / "metrics.csv").exists()
    marker = json.loads((tmp_path / "killed" / "checkpoint.json").read_text())
    assert marker == {"chunks": 2, "rows": 2}
    # rows written after the checkpoint (a crash between the two) are cut back on resume
    with open(tmp_path / "killed" / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"chunk": 3, "x": 123.0}) + "\n")
    resumed, final_resumed = start(ToyCommand(resume=tmp_path / "killed"))
    assert resumed == full and len(full) == 6
    np.testing.assert_array_equal(final_resumed[0], final_full[0])
    csv = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert csv[0] == "chunk,x,final" and len(csv) == 7
    saved = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert (
        saved["command"] == "toy"
        and saved["format"] == runs.RUN_FORMAT
        and saved["options"]["inner"]["sizes"] == [3, 4]
    )


def test_resume_takes_the_saved_options(tmp_path):
    start(ToyCommand(steps=3, out=tmp_path / "r"), stop_after=1)
    run = runs.open_run("toy", ToyCommand(steps=99), resume=tmp_path / "r")
    assert run.config.steps == 3 and run.config.out == tmp_path / "r" and run.config.resume is None and run.done == 1


def test_non_finite_metric_stops_with_one_line_naming_it(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite x = nan in chunk 3"):
        start(ToyCommand(out=tmp_path / "nan", blow_up_at=2))
    assert json.loads((tmp_path / "nan" / "checkpoint.json").read_text())["chunks"] == 2


@pytest.mark.parametrize(
    "setup,error,message",
    [
        (lambda d: None, FileNotFoundError, "is not a run folder"),
        (lambda d: (d / "config.json").write_text("{not json"), ValueError, "corrupt run config"),
        (lambda d: (d / "config.json").write_text(json.dumps({"env": "x"})), ValueError, "older reparam"),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"command": "vae", "format": 2, "options": {}})),
            ValueError,
            "holds a `reparam vae` run, not a `reparam toy` run",
        ),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"command": "toy", "format": 1, "options": {}})),
            ValueError,
            "run format 1",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({"command": "toy", "format": 2, "options": {"nope": 1}})
            ),
            ValueError,
            "options this version does not know",
        ),
    ],
)
def test_foreign_folders_are_one_line_errors(tmp_path, setup, error, message):
    tmp_path.mkdir(exist_ok=True)
    setup(tmp_path)
    with pytest.raises(error, match=message):
        runs.open_run("toy", ToyCommand(), resume=tmp_path)


def test_missing_marker_and_corrupt_checkpoint(tmp_path):
    runs.open_run("toy", ToyCommand(out=tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        runs.open_run("toy", ToyCommand(), resume=tmp_path)
    start(ToyCommand(out=tmp_path / "c"), stop_after=1)
    (tmp_path / "c" / "checkpoint.eqx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        start(ToyCommand(resume=tmp_path / "c"))


def test_flat_flags_from_a_nested_config():
    config = tyro.cli(ToyCommand, args=["--sizes", "8", "8", "--rate", "0.5", "--steps", "2"])
    assert config.inner == Inner((8, 8), 0.5) and config.steps == 2


def test_tensorboard_events_or_a_one_line_error(tmp_path):
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="reparam\\[tensorboard\\]"):
            start(ToyCommand(out=tmp_path), tensorboard=True)
        return
    start(ToyCommand(out=tmp_path), tensorboard=True)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())


def test_write_csv_unions_columns_and_atomic_write_leaves_no_temp(tmp_path):
    runs.write_csv(tmp_path / "m.csv", [{"a": 1}, {"b": 2.5}])
    assert (tmp_path / "m.csv").read_text().splitlines() == ["a,b", "1,", ",2.5"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]

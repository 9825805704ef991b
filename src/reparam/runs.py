"""The run layer: one run folder, one driver loop, one plotting set-up for every command.

A command supplies its config (a dataclass) and a `Job`: `init() -> state`, `advance(state, chunk)
-> (state, rows)`, `finish(state, rows) -> summary lines`. `drive` does the rest, the same way for
every command:

    run = open_run("vae", config)          # new folder, or --resume: config.json guarded
    drive(job, run, console)               # progress bar, metrics, checkpoints, summary

A run folder holds `config.json` (the command, the run-format version and the options),
`metrics.jsonl` (one JSON object per row, appended as chunks finish) and `metrics.csv` (written at
the end), the checkpoint pair `checkpoint.eqx` (the job's arrays) and `checkpoint.json` (the marker
naming how many chunks and rows it holds; written second, so a crash between the two keeps the old
pair), the command's pictures and, with `tensorboard=True`, TensorBoard event files in `tensorboard/`.
Every file is written atomically (temp file, then rename).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import tempfile
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import equinox as eqx
import jax
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .plots import pyplot, save_figure  # noqa: F401  (re-exported: the run layer's picture set-up)

RUN_FORMAT = 2
"""Version of the run-folder layout; folders written by another version are refused on resume."""
CONFIG, METRICS, METRICS_CSV, STATE, MARKER = (
    "config.json",
    "metrics.jsonl",
    "metrics.csv",
    "checkpoint.eqx",
    "checkpoint.json",
)

State = TypeVar("State")
Config = TypeVar("Config")


# --- files ----------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, atomically (non-JSON values such as paths written as strings)."""
    write_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    """The JSON in `path`; one-line errors naming `what` the file should be when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"corrupt {what} {path} (not valid JSON)") from None


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """Rows as CSV, atomically; the columns are the union of the rows' keys in first-seen order
    (a row without a column leaves its cell empty)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(path), buffer.getvalue().encode())


def serialise(tree) -> bytes:
    """The array and scalar leaves of `tree` as bytes (`equinox.tree_serialise_leaves`)."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    return buffer.getvalue()


def load_serialised(path: Path, like):
    """Read what `serialise` wrote into the structure of `like`; a one-line error for a missing,
    truncated or foreign file."""
    try:
        with open(path, "rb") as handle:
            return eqx.tree_deserialise_leaves(handle, like)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except Exception as error:  # truncated or foreign file
        raise ValueError(
            f"corrupt checkpoint {path}: {type(error).__name__} (not written by this run's settings)"
        ) from None


# --- configs --------------------------------------------------------------------------------------


def config_to_dict(config) -> dict:
    """A config dataclass (possibly nested) as a JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_from_dict(config_type: type[Config], raw: dict, where: str) -> Config:
    """Rebuild `config_type` from `config_to_dict`'s output: nested dataclasses, tuples and paths
    restored from their annotations. A key the type does not have (or a missing one without a
    default) is a one-line ValueError naming `where`."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where} has options this version does not know ({', '.join(unknown)})")
    try:
        return config_type(**{name: _from_json(hints[name], value, where) for name, value in raw.items()})
    except TypeError as error:
        raise ValueError(f"{where} does not fit this version's options ({error})") from None


def _from_json(annotation, value, where: str):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _from_json(args[0], value, where)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _from_json(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return config_from_dict(annotation, value, where)
    if origin is tuple:
        return tuple(value)
    if annotation is Path:
        return Path(value)
    return value


# --- a run folder ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Run(Generic[Config]):
    """An open run folder: its config, the chunks already done and their metric rows."""

    folder: Path
    command: str
    config: Config
    done: int = 0
    """Chunks finished and checkpointed (0 for a new run)."""
    rows: list[dict] = dataclasses.field(default_factory=list)
    """Metric rows so far (those the checkpoint covers, on resume)."""

    @property
    def resumed(self) -> bool:
        """Whether this run continues from a checkpoint."""
        return self.done > 0


def load_run_config(folder: Path, command: str, config_type: type[Config]) -> Config:
    """The config a `reparam <command>` run saved in `folder`, or a one-line error saying what the
    folder holds instead (nothing, another command's run, an older format, a corrupt file)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} is not a run folder (no {CONFIG})")
    raw = read_json(folder / CONFIG, "run config")
    if not isinstance(raw, dict) or "command" not in raw or "options" not in raw:
        raise ValueError(f"{folder} was written by an older reparam (no run format recorded); start a new run")
    if raw["command"] != command:
        raise ValueError(f"{folder} holds a `reparam {raw['command']}` run, not a `reparam {command}` run")
    if raw.get("format") != RUN_FORMAT:
        raise ValueError(f"{folder} has run format {raw.get('format')}; this version reads format {RUN_FORMAT}")
    return config_from_dict(config_type, raw["options"], f"{folder / CONFIG}")


def resolve_config(command: str, config: Config) -> Config:
    """`config` itself for a new run; for `config.resume`, the options the run saved in that folder
    (with `out` and `resume` pointing at it), so a command checks and prepares what it will run."""
    if getattr(config, "resume", None) is None:
        return config
    saved = load_run_config(config.resume, command, type(config))
    return dataclasses.replace(saved, out=Path(config.resume), resume=Path(config.resume))


def open_run(command: str, config: Config, *, resume: Path | None = None) -> Run[Config]:
    """Start a run folder at `config.out`, or continue the one at `resume`.

    New: the folder is created and `config.json` written (command, format, options); metrics start
    empty. Resume: every option comes from the folder's own `config.json` (with `out` set to the
    folder and `resume` cleared), and the metric rows are cut back to those the checkpoint covers.
    """
    if resume is None:
        folder = Path(config.out)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / CONFIG, {"command": command, "format": RUN_FORMAT, "options": config_to_dict(config)})
        write_atomic(folder / METRICS, b"")
        return Run(folder, command, config)
    folder = Path(resume)
    saved = load_run_config(folder, command, type(config))
    replaced = {name: value for name, value in (("out", folder), ("resume", None)) if hasattr(saved, name)}
    saved = dataclasses.replace(saved, **replaced)
    marker = read_json(folder / MARKER, "checkpoint marker (nothing to resume)")
    if (
        not isinstance(marker, dict)
        or not isinstance(marker.get("chunks"), int)
        or not isinstance(marker.get("rows"), int)
    ):
        raise ValueError(f"corrupt checkpoint marker {folder / MARKER}")
    rows = read_rows(folder)
    if len(rows) < marker["rows"]:
        raise ValueError(
            f"{folder / METRICS} has {len(rows)} rows, fewer than the {marker['rows']} the checkpoint covers"
        )
    rows = rows[: marker["rows"]]
    write_atomic(folder / METRICS, "".join(json.dumps(row) + "\n" for row in rows).encode())
    return Run(folder, command, saved, marker["chunks"], rows)


def read_rows(folder: Path) -> list[dict]:
    """The metric rows of a run folder (`metrics.jsonl`)."""
    path = Path(folder) / METRICS
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no {METRICS}") from None
    except json.JSONDecodeError:
        raise ValueError(f"corrupt {path} (not JSON lines)") from None


def save_checkpoint(run: Run, tree, chunks: int) -> None:
    """The checkpoint pair: arrays first, then the marker naming how many chunks and rows they cover."""
    write_atomic(run.folder / STATE, serialise(tree))
    write_json(run.folder / MARKER, {"chunks": chunks, "rows": len(run.rows)})


# --- the driver -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job(Generic[State]):
    """What a command hands to `drive`: its work in `chunks` pieces, as pure-ish functions."""

    init: Callable[[], State]
    """A fresh state (also the template a checkpoint is read into)."""
    advance: Callable[[State, int], tuple[State, list[dict]]]
    """Chunk `i` (0-based): the new state and its metric rows (flat dicts of numbers)."""
    finish: Callable[[State, list[dict]], Sequence[str]]
    """After the last chunk: final evaluations, pictures, saved models; returns summary lines (it
    may append final rows to the list it is given)."""
    chunks: int
    """Number of chunks of the whole run."""
    label: str
    """Shown at the left of the progress bar."""
    unit: str = "chunks"
    """What the bar counts, e.g. "steps" or "epochs"."""
    units_per_chunk: int = 1
    """Units of progress per chunk (e.g. environment steps between evaluations)."""
    rate_per_chunk: float | None = None
    """Work per chunk for the rate column (e.g. steps times seeds); defaults to `units_per_chunk`."""
    rate_unit: str = "/s"
    """The rate column's unit, e.g. "steps/s (all seeds)"."""
    shown: tuple[str, str] | None = None
    """`(metric key, label)` of the latest value shown on the bar (mean over the chunk's rows)."""
    saved: Callable[[State], Any] = lambda state: state
    """The arrays of a state that the checkpoint holds."""
    restored: Callable[[State, Any], State] = lambda state, saved: saved
    """A fresh state with the checkpoint's arrays put back."""
    checkpoint_every: int = 1
    """Chunks between checkpoints (the last chunk is always checkpointed)."""
    stopped: Callable[[State], bool] = lambda state: False
    """Whether the state says the run is over before its last chunk (e.g. early stopping); checked
    after every chunk and after a resume."""
    files: Sequence[str] = ()
    """Files `finish` writes, for the closing summary."""


def drive(
    job: Job[State],
    run: Run,
    console: Console | None = None,
    *,
    tensorboard: bool = False,
    stop_after: int | None = None,
) -> list[dict]:
    """Run `job` from `run.done` to its last chunk: the progress bar (rate without the compiling
    first chunk, ETA, the latest `job.shown` value), metric rows appended to `metrics.jsonl` (and
    TensorBoard), a non-finite check of every row, checkpoints, then `finish`, `metrics.csv` and the
    closing summary. `stop_after=k` stops after `k` chunks of this process as if it were killed
    there (tests use it for resume). Returns all rows."""
    console = console or Console()
    state = job.init()
    if run.resumed:
        state = job.restored(state, load_serialised(run.folder / STATE, job.saved(state)))
        console.print(f"Resuming {run.folder} after {run.done * job.units_per_chunk:,} {job.unit}", soft_wrap=True)
    writer = _tensorboard_writer(run.folder) if tensorboard else None
    last = job.chunks if stop_after is None else min(job.chunks, run.done + stop_after)
    timed_work, timed_seconds = 0.0, 0.0
    try:
        with Progress(*_columns(job), console=console, transient=False) as progress:
            bar = progress.add_task(
                job.label,
                total=job.chunks * job.units_per_chunk,
                completed=run.done * job.units_per_chunk,
                rate="compiling",
                shown="-",
            )
            for chunk in range(run.done, last):
                if job.stopped(state):
                    break
                begun = time.perf_counter()
                state, rows = job.advance(state, chunk)
                check_finite(rows, chunk)
                run.rows.extend(rows)
                with open(run.folder / METRICS, "a") as handle:
                    handle.write("".join(json.dumps(row) + "\n" for row in rows))
                if writer is not None:
                    _log_tensorboard(writer, rows, (chunk + 1) * job.units_per_chunk)
                if (chunk + 1) % job.checkpoint_every == 0 or chunk + 1 == job.chunks or job.stopped(state):
                    save_checkpoint(run, job.saved(state), chunk + 1)
                if chunk > run.done:  # the first chunk of a process compiles: not in the rate
                    timed_work += job.units_per_chunk if job.rate_per_chunk is None else job.rate_per_chunk
                    timed_seconds += time.perf_counter() - begun
                rate = f"{timed_work / timed_seconds:,.0f} {job.rate_unit}" if timed_seconds else "compiled"
                progress.update(bar, completed=(chunk + 1) * job.units_per_chunk, rate=rate, shown=_shown(job, rows))
    finally:
        if writer is not None:
            writer.close()
    if last < job.chunks and not job.stopped(state):
        return run.rows
    summary = job.finish(state, run.rows)
    write_atomic(run.folder / METRICS, "".join(json.dumps(row) + "\n" for row in run.rows).encode())
    write_csv(run.folder / METRICS_CSV, run.rows)
    for line in summary:
        console.print(line, soft_wrap=True)
    files = [*job.files, METRICS, METRICS_CSV, STATE, CONFIG] + (["tensorboard/"] if tensorboard else [])
    console.print("Wrote " + ", ".join(files), soft_wrap=True)
    console.print(f"Run folder: {run.folder}", soft_wrap=True)
    return run.rows


def check_finite(rows: Sequence[dict], chunk: int) -> None:
    """FloatingPointError naming the first non-finite metric (and its seed) in `rows`."""
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                seed = f" (seed {row['seed']})" if "seed" in row else ""
                raise FloatingPointError(
                    f"non-finite {key} = {value} in chunk {chunk + 1}{seed}; the run stopped "
                    "(its last checkpoint is kept: lower the learning rate and start again)"
                )


def _columns(job: Job) -> list:
    shown = [TextColumn(f"{job.shown[1]} {{task.fields[shown]}}")] if job.shown else []
    return [
        TextColumn(f"[bold]{job.label}"),
        BarColumn(),
        TextColumn(f"{{task.completed:,}}/{{task.total:,}} {job.unit}"),
        TextColumn("{task.fields[rate]}"),
        *shown,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]


def _shown(job: Job, rows: Sequence[dict]) -> str:
    if job.shown is None:
        return "-"
    values = [row[job.shown[0]] for row in rows if isinstance(row.get(job.shown[0]), (int, float))]
    return f"{sum(values) / len(values):.2f}" if values else "-"


def _tensorboard_writer(folder: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs the optional extra: pip install 'reparam[tensorboard]'") from None
    return SummaryWriter(str(folder / "tensorboard"))


def _log_tensorboard(writer, rows: Sequence[dict], default_step: int) -> None:
    """Each numeric metric of each row as a scalar; the row's own `step` or `epoch` is the x axis,
    and rows of several seeds get one tag per seed."""
    for row in rows:
        step = int(row.get("step", row.get("epoch", default_step)))
        suffix = f"/seed{row['seed']}" if "seed" in row else ""
        for key, value in row.items():
            if key not in ("step", "epoch", "seed") and isinstance(value, (int, float)):
                writer.add_scalar(f"{key}{suffix}", value, step)
    writer.flush()


# --- compile once -----------------------------------------------------------------------


class RunKeys(NamedTuple):
    """Every random stream of a run, split once from the seed (`RunKeys.from_seed`); per-epoch keys
    are `fold_in(stream, epoch)`, so a resumed run draws what the uninterrupted one would."""

    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array
    final: jax.Array
    pictures: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> RunKeys:
        """The six independent streams of seed `seed`."""
        return cls(*jax.random.split(jax.random.key(seed), 6))


def compile_once(fn: Callable) -> Callable:
    """Cache what `fn` builds (compiled programs) by its arguments, so runs with the same settings
    in one process (a resume, a second seed, a notebook, the tests) compile once. Arguments must be
    hashable (frozen config dataclasses, tuples, strings, numbers)."""
    return functools.lru_cache(maxsize=16)(fn)

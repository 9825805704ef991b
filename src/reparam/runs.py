"""Run folders: config, metrics and pictures in one place, files written atomically."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
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
    write_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def start_run(out: Path, config: Any) -> Path:
    """Create the run folder and record the config (a dataclass) as `config.json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of one schema (the first row's keys) as CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue().encode())


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
        raise ValueError(f"corrupt checkpoint {path}: {type(error).__name__}") from None

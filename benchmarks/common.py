"""What every benchmark here shares: the machine and software a result came from, the load on the
machine around it, peak memory, results files, tables and timing. Standard library only (rich is
optional), so that a child process that must not import jax or torch can use it too.

A study script does, in this order:

    started = announce("reparam distributions benchmark", versions("jax", "jaxlib", "reparam"))
    ...                                   # measure (interleaved rounds: `time_interleaved`)
    write_json(path, record(versions=..., timings=...))
    finish(started)                       # load average at the end, total time
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSY_LOAD = 1.0
"""1-minute load average above which a run is flagged: other processes are running."""


# --- machine, software, command --------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Physical memory in GiB (/proc/meminfo MemTotal), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def machine() -> str:
    """One line: logical CPUs and their model, memory, operating system."""
    mem = memory_gib()
    memory = f", {mem:.0f} GiB memory" if mem is not None else ""
    return f"{os.cpu_count()} logical CPUs ({cpu_model()}){memory}, {platform.system()} {platform.release()}"


def versions(*packages: str | tuple[str, str], missing: str = "note") -> dict[str, str]:
    """Python's version and each package's `__version__`. A package is an import name or a
    (label, import name) pair; one that does not import is noted as 'unavailable (error)', or
    left out with `missing="skip"`."""
    out = {"python": platform.python_version()}
    for package in packages:
        label, name = package if isinstance(package, tuple) else (package, package)
        try:
            out[label] = str(importlib.import_module(name).__version__)
        except Exception as err:  # not installed, broken, or no __version__
            if missing == "note":
                out[label] = f"unavailable ({type(err).__name__}: {err})"
    return out


def command_line() -> str:
    """The exact command: the interpreter as invoked (relative to the working folder where it lies
    below it, e.g. .venv-bench/bin/python) and the arguments."""
    exe = sys.executable
    rel = os.path.relpath(exe)
    return shlex.join([rel if not rel.startswith("..") else exe] + sys.argv)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def record(versions: dict, **fields) -> dict:
    """A results file's header -- date, machine, versions, the exact command -- and `fields`."""
    return dict(date=now(), machine=machine(), versions=versions, command=command_line(), **fields)


# --- load and memory -------------------------------------------------------------------------------


def loadavg() -> list[float]:
    """1-, 5- and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def uptime() -> str:
    """The `uptime` line (time, up, users, load averages)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(map(str, loadavg()))


def busy_warning(load: Sequence[float]) -> str | None:
    """A warning when the 1-minute load average is above BUSY_LOAD, else None."""
    if load[0] <= BUSY_LOAD:
        return None
    return (
        f"WARNING: the machine is busy with other processes (1-min load {load[0]:.2f}); absolute times are "
        "inflated and noisy (ratios from interleaved rounds or runs are fairer, but re-run on an idle machine)"
    )


def print_load(when: str) -> list[float]:
    """Print the load averages (and the busy warning at the start); returns them."""
    load = loadavg()
    print(f"load average at {when} (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    if when == "start" and (warning := busy_warning(load)):
        print(warning, flush=True)
    return load


def announce(title: str, versions: dict) -> float:
    """Print the header of a run: title and date, machine, versions, load at the start (with a
    warning when busy), the command. Returns the start time for `finish`."""
    print(f"{title}: {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print_load("start")
    print(f"command: {command_line()}", flush=True)
    return time.perf_counter()


def finish(started: float) -> None:
    print()
    print_load("end")
    print(f"total time {time.perf_counter() - started:.0f} s", flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident set so far (`ru_maxrss`; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_kib(name: str) -> int:
    """A field of /proc/self/status in KiB, e.g. VmRSS (resident now) or VmHWM (peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def reset_peak_rss() -> None:
    """Reset VmHWM to the current VmRSS (Linux: write 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# --- results files and child processes ---------------------------------------------------------------


def write_json(path: str | Path, data) -> None:
    """Write `data` atomically: a temporary file beside `path`, then a rename (a killed run leaves
    the previous complete file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def run_child(argv: list[str], json_path: str | Path, *, env: dict | None = None) -> tuple[dict, dict]:
    """Run `python ARGV... --json JSON_PATH` in a fresh process (its own compile caches, thread pools
    and peak RSS). Returns what it wrote (or {'error': 'exit N'}) and {load_before, load_after,
    process_s}."""
    json_path = Path(json_path)
    before, t = loadavg(), time.perf_counter()
    proc = subprocess.run([sys.executable, *map(str, argv), "--json", str(json_path)], env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode:
        result = dict(error=f"exit {proc.returncode}")
    else:
        result = read_json(json_path)
        json_path.unlink()
    return result, dict(load_before=before, load_after=loadavg(), process_s=elapsed)


def run_worker_json(argv: list[str], *, env: dict | None = None) -> dict:
    """Run `argv` (an interpreter of any venv, a script, its options) in a fresh process and return
    the JSON object on the last stdout line that starts with `{`, or {'error': 'exit N: last stderr line'}."""
    proc = subprocess.run(list(map(str, argv)), env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return dict(error=f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(lines[-1])


# --- tables --------------------------------------------------------------------------------------------


def markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; with no rows, its two header lines (then print rows with `markdown_row`)."""
    return "\n".join([markdown_row(header), "|" + "---|" * len(header), *map(markdown_row, rows)])


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 2) -> None:
    """A console table (rich where installed, plain columns otherwise); the first `left` columns are
    left-aligned, the others right-aligned."""
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < left else "right")
        for row in rows:
            t.add_row(*row)
        Console(width=max(160, sum(len(h) for h in header) + 40)).print(t)
    except ImportError:
        print(title)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()


def fmt(x, digits: int = 1) -> str:
    """A number with thousands separators, '-' for None."""
    return "-" if x is None else f"{x:,.{digits}f}"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


# --- timing --------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Every timed call of one contender; the warm-up call (compilation) is kept apart."""

    times: list[float] = field(default_factory=list)  # wall-clock seconds per call
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per call (all threads)
    compile_s: float = 0.0  # the first call, excluded from `times`

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.times)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.times)

    @property
    def cpu_median_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_times)

    def summary(self) -> dict:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "cpu_median_ms": self.cpu_median_ms,
            "cpu_times_s": self.cpu_times,
            "times_s": self.times,
            "compile_s": self.compile_s,
        }


def time_calls(fn: Callable[[], object], n: int, *, warmup: int = 0) -> list[float]:
    """Wall-clock seconds of each of `n` calls of `fn` (which must block until its result exists),
    after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def time_interleaved(
    calls: dict[str, Callable[[], object]], target_s: float, rounds: int, min_calls: int
) -> dict[str, Timing]:
    """Time each contender's call in `rounds` interleaved rounds (so slow drifts of a noisy machine
    hit all alike), each getting about `target_s / rounds` seconds per round and at least
    `min_calls` calls in all. The first call (compilation, warm-up) is timed apart as `compile_s`;
    three probe calls size the rounds."""
    timings, per_call = {}, {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        timings[name] = Timing(compile_s=time.perf_counter() - t0)
        per_call[name] = min(time_calls(call, 3))
    budget = target_s / rounds
    for _ in range(rounds):
        for name, call in calls.items():
            n = max(math.ceil(min_calls / rounds), math.ceil(budget / per_call[name]))
            deadline = time.perf_counter() + 3 * budget  # a lucky probe must not make a cell run long
            for i in range(min(n, 100_000)):
                if i >= 1 and time.perf_counter() > deadline:
                    break
                c0, t0 = time.process_time(), time.perf_counter()
                call()
                t1, c1 = time.perf_counter(), time.process_time()
                timings[name].times.append(t1 - t0)
                timings[name].cpu_times.append(c1 - c0)
    return timings

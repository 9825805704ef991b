#!/usr/bin/env python
"""Side-by-side benchmark of reparameterized distributions: reparam vs distrax vs TFP-JAX vs torch.

Run (from the repository root, in the benchmark venv; see benchmarks/README.md):

    .venv-bench/bin/python benchmarks/distributions.py            # full run, ~2-4 minutes
    .venv-bench/bin/python benchmarks/distributions.py --quick    # smoke run, well under a minute

What is timed, on CPU in float32, at each size (parameters `loc`, `scale` of the given shape,
`sample_shape=()`, so every library draws and scores the same number of elements):

1. Normal `rsample + log_prob`: reparam `rsample_and_log_prob`; distrax `sample_and_log_prob`;
   TFP-JAX `experimental_sample_and_log_prob`; torch `rsample` then `log_prob`.
2. tanh-Normal `rsample + log_prob`: reparam `TanhNormal.rsample_and_log_prob`; distrax
   `Transformed(Normal, Tanh()).sample_and_log_prob`; TFP-JAX `TransformedDistribution(Normal,
   Tanh())` fused (bijector cache); torch `TransformedDistribution(Normal, TanhTransform(cache_size=1))`
   `rsample` then `log_prob` (cache hit); the Stable-Baselines3 formula
   `log N(u) - log(1 - tanh(u)^2 + 1e-6)` written in jax (elementwise, no sum over action dims).
3. `value_and_grad` of `mean(rsample()**2)` with respect to `(loc, scale)`, Normal and tanh-Normal
   (torch: forward, then `backward()`).

Method: jax functions are jitted, take the PRNG key and the parameters as arguments (nothing to
constant-fold), are called once to compile, then timed call by call with `block_until_ready`.
torch runs eagerly with `torch.set_num_threads(2)`, under `torch.no_grad()` for rows 1 and 2 only,
with its default argument validation (as reparam's default validation is on). Every library of a row
is timed in interleaved rounds (so slow drifts of a noisy machine hit all of them alike) until each
has had about `--target-s` seconds; the tables show the median wall-clock ms per call and the
fastest call (the floor, least sensitive to other processes), each with the ratio other / reparam
(above 1: reparam is faster). `--json` also keeps every call's wall and process CPU time. The column
"reparam validate=False" is a diagnostic: reparam without its default parameter validation.

Memory: in a separate process started with glibc's `MALLOC_MMAP_THRESHOLD_=131072` (so every
buffer over 128 KiB is its own mapping and is returned to the OS when freed), after a warm-up call,
the peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident set just before
one more call: the memory that call touches, outputs included. For the jax routes XLA's own plan
(temporaries + outputs, from `compiled.memory_analysis()`) is shown beside it.

Accuracy: see `accuracy()` below; the method is printed with the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

warnings.filterwarnings("ignore")  # TFP/distrax emit deprecation noise on import
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import reparam  # noqa: E402

try:
    import distrax
except Exception as err:  # pragma: no cover - reported in the output
    distrax = None
    DISTRAX_ERROR = f"{type(err).__name__}: {err}"
try:
    import tensorflow_probability.substrates.jax as tfp

    tfd, tfb = tfp.distributions, tfp.bijectors
except Exception as err:  # pragma: no cover
    tfp = None
    TFP_ERROR = f"{type(err).__name__}: {err}"
try:
    import torch
    import torch.distributions as td
except Exception as err:  # pragma: no cover
    torch = None
    TORCH_ERROR = f"{type(err).__name__}: {err}"

SIZES = {"sac": (256, 6), "1e6": (1_000_000,)}
LIBS = ["reparam", "distrax", "tfp-jax", "torch", "sb3-jax", "reparam-novalid"]
LIB_TITLES = {
    "reparam": "reparam",
    "distrax": "distrax",
    "tfp-jax": "TFP-JAX",
    "torch": "torch eager",
    "sb3-jax": "SB3 formula (jax)",
    "reparam-novalid": "reparam validate=False",
}
WORKS = {
    "normal": "Normal rsample + log_prob",
    "tanh": "tanh-Normal rsample + log_prob",
    "normal_grad": "value_and_grad mean(rsample^2), Normal",
    "tanh_grad": "value_and_grad mean(rsample^2), tanh-Normal",
}
SB3_EPS = 1e-6
LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------------------------
# The routes. Each jax route is f(key, loc, scale) -> outputs, jitted; each torch route is a
# closure over its tensors. Every callable returned by `build_cell` runs one call to completion.
# ----------------------------------------------------------------------------------------------
def _vg(sampler):
    """value_and_grad over (loc, scale) of mean(rsample^2), for a sampler(key, loc, scale)."""

    def loss(loc, scale, key):
        return jnp.mean(jnp.square(sampler(key, loc, scale)))

    def f(key, loc, scale):
        return jax.value_and_grad(loss, argnums=(0, 1))(loc, scale, key)

    return f


def sb3_log_prob(u, loc, scale):
    """Stable-Baselines3 / CleanRL: log N(u; loc, scale) - log(1 - tanh(u)^2 + 1e-6), elementwise
    (SB3 then sums over action dimensions; here every library returns per-element log-densities)."""
    log_normal = -0.5 * jnp.square((u - loc) / scale) - jnp.log(scale) - LOG_2PI_HALF
    a = jnp.tanh(u)
    return a, log_normal - jnp.log(1.0 - jnp.square(a) + SB3_EPS)


def sb3_tanh(key, loc, scale):
    u = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
    return sb3_log_prob(u, loc, scale)


def jax_routes() -> dict[tuple[str, str], Callable]:
    R = reparam
    routes = {
        ("reparam", "normal"): lambda k, l, s: R.Normal(l, s).rsample_and_log_prob(k),
        ("reparam", "tanh"): lambda k, l, s: R.TanhNormal(l, s).rsample_and_log_prob(k),
        ("reparam", "normal_grad"): _vg(lambda k, l, s: R.Normal(l, s).rsample(k)),
        ("reparam", "tanh_grad"): _vg(lambda k, l, s: R.TanhNormal(l, s).rsample(k)),
        ("sb3-jax", "tanh"): sb3_tanh,
        # Diagnostic: the same routes without reparam's default parameter validation.
        ("reparam-novalid", "normal"): lambda k, l, s: R.Normal(l, s, validate=False).rsample_and_log_prob(k),
        ("reparam-novalid", "tanh"): lambda k, l, s: R.TanhNormal(l, s, validate=False).rsample_and_log_prob(k),
        ("reparam-novalid", "normal_grad"): _vg(lambda k, l, s: R.Normal(l, s, validate=False).rsample(k)),
        ("reparam-novalid", "tanh_grad"): _vg(lambda k, l, s: R.TanhNormal(l, s, validate=False).rsample(k)),
    }
    if distrax is not None:
        D = distrax

        def dtanh(l, s):
            return D.Transformed(D.Normal(l, s), D.Tanh())

        routes |= {
            ("distrax", "normal"): lambda k, l, s: D.Normal(l, s).sample_and_log_prob(seed=k),
            ("distrax", "tanh"): lambda k, l, s: dtanh(l, s).sample_and_log_prob(seed=k),
            ("distrax", "normal_grad"): _vg(lambda k, l, s: D.Normal(l, s).sample(seed=k)),
            ("distrax", "tanh_grad"): _vg(lambda k, l, s: dtanh(l, s).sample(seed=k)),
        }
    if tfp is not None:

        def ttanh(l, s):
            return tfd.TransformedDistribution(tfd.Normal(l, s), tfb.Tanh())

        routes |= {
            ("tfp-jax", "normal"): lambda k, l, s: tfd.Normal(l, s).experimental_sample_and_log_prob(seed=k),
            ("tfp-jax", "tanh"): lambda k, l, s: ttanh(l, s).experimental_sample_and_log_prob(seed=k),
            ("tfp-jax", "normal_grad"): _vg(lambda k, l, s: tfd.Normal(l, s).sample(seed=k)),
            ("tfp-jax", "tanh_grad"): _vg(lambda k, l, s: ttanh(l, s).sample(seed=k)),
        }
    return routes


def torch_route(work: str, loc_np: np.ndarray, scale_np: np.ndarray) -> Callable:
    loc, scale = torch.from_numpy(loc_np.copy()), torch.from_numpy(scale_np.copy())

    def tanh_dist(l, s):
        return td.TransformedDistribution(td.Normal(l, s), td.TanhTransform(cache_size=1))

    if work in ("normal", "tanh"):
        make = td.Normal if work == "normal" else tanh_dist

        def run():
            with torch.no_grad():
                d = make(loc, scale)
                x = d.rsample()
                return x, d.log_prob(x)

        return run

    make = td.Normal if work == "normal_grad" else tanh_dist
    loc.requires_grad_(True)
    scale.requires_grad_(True)

    def run():
        loc.grad = None
        scale.grad = None
        loss = make(loc, scale).rsample().square().mean()
        loss.backward()
        return loss, loc.grad, scale.grad

    return run


@dataclass
class Cell:
    run: Callable[[], object]  # one complete call (blocks until the result exists)
    jitted: Callable | None = None  # the jax function, for XLA's memory plan
    args: tuple = ()


def make_inputs(shape):
    rng = np.random.default_rng(0)
    loc = rng.normal(size=shape).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    return loc, scale


def build_cells(shape, routes) -> dict[tuple[str, str], Cell]:
    loc_np, scale_np = make_inputs(shape)
    loc, scale = jnp.asarray(loc_np), jnp.asarray(scale_np)
    key = jax.random.key(0)
    cells = {}
    for (lib, work), fn in routes.items():
        jitted = jax.jit(fn)
        cells[lib, work] = Cell(
            run=lambda j=jitted: jax.block_until_ready(j(key, loc, scale)), jitted=jitted, args=(key, loc, scale)
        )
    if torch is not None:
        for work in WORKS:
            cells["torch", work] = Cell(run=torch_route(work, loc_np, scale_np))
    return cells


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
@dataclass
class Timing:
    times: list[float] = field(default_factory=list)  # wall-clock seconds per call
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per call (all threads)
    compile_s: float = 0.0

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.times)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.times)

    @property
    def cpu_median_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_times)


def time_row(cells: dict[str, Cell], target_s: float, rounds: int, min_calls: int) -> dict[str, Timing]:
    """Interleaved rounds: each library gets about target_s / rounds per round."""
    timings = {}
    per_call = {}
    for lib, cell in cells.items():
        t0 = time.perf_counter()
        cell.run()  # compile / warm up
        t = Timing(compile_s=time.perf_counter() - t0)
        probe = []
        for _ in range(3):
            t0 = time.perf_counter()
            cell.run()
            probe.append(time.perf_counter() - t0)
        per_call[lib] = min(probe)
        timings[lib] = t
    budget = target_s / rounds
    for _ in range(rounds):
        for lib, cell in cells.items():
            n = max(math.ceil(min_calls / rounds), math.ceil(budget / per_call[lib]))
            deadline = time.perf_counter() + 3 * budget  # a lucky probe must not make a cell run long
            for i in range(min(n, 100_000)):
                if i >= 1 and time.perf_counter() > deadline:
                    break
                c0, t0 = time.process_time(), time.perf_counter()
                cell.run()
                t1, c1 = time.perf_counter(), time.process_time()
                timings[lib].times.append(t1 - t0)
                timings[lib].cpu_times.append(c1 - c0)
    return timings


# ----------------------------------------------------------------------------------------------
# Memory (runs in a child process, see the module docstring)
# ----------------------------------------------------------------------------------------------
def _proc_status_kib(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def memory_worker(size_names: list[str]) -> dict:
    routes = jax_routes()
    out = {}
    for size in size_names:
        cells = build_cells(SIZES_PARSED[size], routes)
        for (lib, work), cell in cells.items():
            cell.run()
            gc.collect()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current VmRSS
            before = _proc_status_kib("VmRSS")
            result = cell.run()
            peak = _proc_status_kib("VmHWM")
            del result
            entry = {"rss_delta_mib": (peak - before) / 1024}
            if cell.jitted is not None:
                ma = cell.jitted.lower(*cell.args).compile().memory_analysis()
                if ma is not None:
                    entry["xla_mib"] = (ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2**20
            out[f"{size}|{lib}|{work}"] = entry
            gc.collect()
    return out


def measure_memory(size_names: list[str]) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-worker", "--sizes", ",".join(size_names)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print("memory worker failed:\n" + proc.stderr[-3000:], file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Accuracy of the tanh-Normal log-density in float32 against a float64 reference
# ----------------------------------------------------------------------------------------------
ACC_U = [0.0, 5.0, 8.0, 10.0, 20.0, 50.0]
ACCURACY_METHOD = """\
tanh-Normal with loc = u, scale = 1, float32, jitted (torch eager). Reference in numpy float64 at the
pre-activation x: log N(x; u, 1) - log(1 - tanh(x)^2), with log(1 - tanh(x)^2) computed exactly as
2*(log 2 - x - log1p(exp(-2x))) (np.logaddexp(0, -2x)).
- given-action routes ('log_prob(a)'): one action a = tanh(u) computed in float32 (jnp.tanh under jit;
  torch.tanh for torch), scored by the library; reference at x = u exactly. The float32 action alone
  carries an error (|d log p / da| * ulp(a)/2), so these cannot beat ~1e-4 at u = 5 however they are
  written; at u >= ~8 tanh rounds to exactly 1.0. 'SB3 formula at x = u exactly' is the formula
  evaluated at the pre-activation u itself (no noise), for a per-u figure free of the draws.
- fused routes: {n} draws with the same key; the float32 pre-activation each draw used is recovered
  exactly (jax: the base Normal's own sample with the same key; torch: the same seed; SB3: returned
  by the formula) and checked to reproduce the returned action bit for bit; reference at that x.
Cells: the largest |error| in nats over the draws; 'NaN'/'inf' when any result is not finite."""


def reference_log_prob(x, loc, scale=1.0):
    x = np.asarray(x, np.float64)
    z = (x - np.asarray(loc, np.float64)) / scale
    log_det = 2.0 * (math.log(2.0) - x - np.logaddexp(0.0, -2.0 * x))
    return -0.5 * z * z - math.log(scale) - LOG_2PI_HALF - log_det


def _max_err(lp, ref) -> float:
    lp = np.asarray(lp, np.float64)
    if not np.all(np.isfinite(lp)):
        return float("nan") if np.any(np.isnan(lp)) else float("inf")
    return float(np.max(np.abs(lp - ref)))


def accuracy(n_draws: int) -> tuple[dict[str, dict[float, float]], list[str]]:
    key = jax.random.key(1234)
    rows: dict[str, dict[float, float]] = {}
    checks: list[str] = []

    def put(route, u, err):
        rows.setdefault(route, {})[u] = err

    r_fused = jax.jit(lambda k, l: reparam.TanhNormal(l, 1.0).rsample_and_log_prob(k))
    r_base = jax.jit(lambda k, l: reparam.Normal(l, 1.0).rsample(k))
    r_eps = jax.jit(lambda k, l: l + 1.0 * jax.random.normal(k, l.shape, jnp.float32))
    r_given = jax.jit(lambda l, a: reparam.TanhNormal(l, 1.0).log_prob(a))
    tanh32 = jax.jit(jnp.tanh)
    sb3 = jax.jit(lambda k, l: sb3_tanh(k, l, jnp.ones_like(l)) + (l + jax.random.normal(k, l.shape, l.dtype),))
    sb3_at = jax.jit(lambda l: sb3_log_prob(l, l, jnp.ones_like(l)))
    if distrax is not None:
        d_fused = jax.jit(
            lambda k, l: distrax.Transformed(distrax.Normal(l, 1.0), distrax.Tanh()).sample_and_log_prob(seed=k)
        )
        d_base = jax.jit(lambda k, l: distrax.Normal(l, 1.0).sample(seed=k))
        d_given = jax.jit(lambda l, a: distrax.Transformed(distrax.Normal(l, 1.0), distrax.Tanh()).log_prob(a))
    if tfp is not None:
        t_dist = lambda l: tfd.TransformedDistribution(tfd.Normal(l, 1.0), tfb.Tanh())  # noqa: E731
        t_fused = jax.jit(lambda k, l: t_dist(l).experimental_sample_and_log_prob(seed=k))
        t_base = jax.jit(lambda k, l: tfd.Normal(l, 1.0).sample(seed=k))
        t_given = jax.jit(lambda l, a: t_dist(l).log_prob(a))

    for u in ACC_U:
        loc = jnp.full((n_draws,), u, jnp.float32)
        one = jnp.full((1,), u, jnp.float32)
        a_given = tanh32(one)
        ref_given = reference_log_prob(u, u)

        # reparam
        a, lp = r_fused(key, loc)
        x = r_base(key, loc)
        x_eps = r_eps(key, loc)
        if not (np.array_equal(np.asarray(x), np.asarray(x_eps)) and np.array_equal(np.asarray(jnp.tanh(x)), np.asarray(a))):
            checks.append(f"reparam: recovered pre-activation does not reproduce the draw at u={u}")
        put("reparam fused (rsample_and_log_prob)", u, _max_err(lp, reference_log_prob(x, u)))
        put("reparam log_prob(a), given a = tanh(u)", u, _max_err(r_given(one, a_given), ref_given))

        if distrax is not None:
            a, lp = d_fused(key, loc)
            x = d_base(key, loc)
            if not np.array_equal(np.asarray(jnp.tanh(x)), np.asarray(a)):
                checks.append(f"distrax: recovered pre-activation does not reproduce the draw at u={u}")
            put("distrax fused (sample_and_log_prob)", u, _max_err(lp, reference_log_prob(x, u)))
            put("distrax log_prob(a), given a = tanh(u)", u, _max_err(d_given(one, a_given), ref_given))
        if tfp is not None:
            a, lp = t_fused(key, loc)
            x = t_base(key, loc)
            if not np.array_equal(np.asarray(jnp.tanh(x)), np.asarray(a)):
                checks.append(f"tfp: recovered pre-activation does not reproduce the draw at u={u}")
            put("TFP-JAX fused (bijector cache)", u, _max_err(lp, reference_log_prob(x, u)))
            put("TFP-JAX log_prob(a), given a = tanh(u)", u, _max_err(t_given(one, a_given), ref_given))
        if torch is not None:
            tloc = torch.full((n_draws,), u, dtype=torch.float32)
            for cache in (1, 0):
                torch.manual_seed(7)
                x = td.Normal(tloc, 1.0).rsample()
                torch.manual_seed(7)
                d = td.TransformedDistribution(td.Normal(tloc, 1.0), td.TanhTransform(cache_size=cache))
                a = d.rsample()
                if not torch.equal(torch.tanh(x), a):
                    checks.append(f"torch: recovered pre-activation does not reproduce the draw at u={u}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        lp = d.log_prob(a).numpy()
                    except ValueError as err:  # argument validation rejects a = +-1 (uncached)
                        lp = np.full(n_draws, np.nan)
                        checks.append(f"torch cache_size={cache} at u={u}: log_prob raised ValueError ({str(err)[:80]}...)")
                name = "torch TanhTransform(cache_size=1), rsample then log_prob" if cache else (
                    "torch TanhTransform(cache_size=0), rsample then log_prob (inverts a)"
                )
                put(name, u, _max_err(lp, reference_log_prob(x.numpy(), u)))
            tone = torch.full((1,), u, dtype=torch.float32)
            d = td.TransformedDistribution(td.Normal(tone, 1.0), td.TanhTransform())
            try:
                lp = d.log_prob(torch.tanh(tone)).numpy()
            except ValueError:
                lp = np.full(1, np.nan)
            put("torch log_prob(a), given a = tanh(u)", u, _max_err(lp, ref_given))

        a, lp, x = sb3(key, loc)
        put("SB3 formula (jax), from the drawn u", u, _max_err(lp, reference_log_prob(x, u)))
        put("SB3 formula (jax), at x = u exactly", u, _max_err(sb3_at(one)[1], ref_given))
    return rows, checks


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def fmt_err(e: float) -> str:
    if math.isnan(e):
        return "NaN"
    if math.isinf(e):
        return "inf"
    return f"{e:.1e}" if e < 0.01 else f"{e:.3g}"


def versions() -> dict[str, str]:
    v = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jax.lib.__version__,
         "numpy": np.__version__, "reparam": reparam.__version__}
    import equinox

    v["equinox"] = equinox.__version__
    v["distrax"] = distrax.__version__ if distrax is not None else f"unavailable ({DISTRAX_ERROR})"
    v["tfp (jax substrate)"] = tfp.__version__ if tfp is not None else f"unavailable ({TFP_ERROR})"
    v["torch"] = torch.__version__ if torch is not None else f"unavailable ({TORCH_ERROR})"
    return v


def machine() -> str:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} logical CPUs ({model}), {platform.system()} {platform.release()}"


def size_label(name: str) -> str:
    shape = SIZES_PARSED[name]
    return f"{name} {'x'.join(map(str, shape))}"


def timing_table(results, size_names, stat="median_ms"):
    """Rows of strings: work, size, then per library 'ms (ratio x)'."""
    header = ["work", "params shape"] + [LIB_TITLES[lib] for lib in LIBS]
    body = []
    for size in size_names:
        for work in WORKS:
            row = results.get((size, work))
            if not row:
                continue
            base = getattr(row["reparam"], stat)
            cells = [WORKS[work], size_label(size)]
            for lib in LIBS:
                if lib not in row:
                    cells.append("-")
                elif lib == "reparam":
                    cells.append(f"{fmt_ms(base)} ms")
                else:
                    ms = getattr(row[lib], stat)
                    cells.append(f"{fmt_ms(ms)} ms ({ms / base:.2f}x)")
            body.append(cells)
    return header, body


def memory_table(mem, size_names):
    header = ["work", "params shape"] + [LIB_TITLES[lib] for lib in LIBS]
    body = []
    for size in size_names:
        for work in WORKS:
            cells = [WORKS[work], size_label(size)]
            any_cell = False
            for lib in LIBS:
                e = mem.get(f"{size}|{lib}|{work}")
                if e is None:
                    cells.append("-")
                    continue
                any_cell = True
                s = f"{e['rss_delta_mib']:.1f}"
                if "xla_mib" in e:
                    s += f" (XLA {e['xla_mib']:.1f})"
                cells.append(s)
            if any_cell:
                body.append(cells)
    return header, body


def accuracy_table(rows):
    header = ["route"] + [f"u={u:g}" for u in ACC_U]
    body = [[route] + [fmt_err(errs[u]) for u in ACC_U] for route, errs in rows.items()]
    return header, body


def print_table(title, header, body):
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < 2 else "right")
        for row in body:
            t.add_row(*row)
        Console(width=max(160, sum(len(h) for h in header) + 40)).print(t)
    except ImportError:
        print(title)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        for r in [header] + body:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()


def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
def parse_sizes(text: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for name in text.split(","):
        name = name.strip()
        if name in SIZES:
            out[name] = SIZES[name]
        else:  # e.g. 4096x6
            out[name] = tuple(int(float(p)) for p in name.split("x"))
    return out


SIZES_PARSED: dict[str, tuple[int, ...]] = dict(SIZES)


def main(argv=None) -> int:
    global SIZES_PARSED
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: ~0.1 s per cell, fewer draws")
    p.add_argument("--sizes", default="sac,1e6",
                   help="comma list of 'sac' (256x6), '1e6' (1000000) or a shape like 4096x6 (default: sac,1e6)")
    p.add_argument("--target-s", type=float, default=None, help="seconds of timed calls per cell (default 1.5, quick 0.1)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 10, quick 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy section")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables as markdown to PATH")
    p.add_argument("--json", metavar="PATH", help="also write raw results (all per-call times) to PATH")
    p.add_argument("--_memory-worker", dest="memory_worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    SIZES_PARSED = parse_sizes(args.sizes)
    size_names = list(SIZES_PARSED)
    if torch is not None:
        torch.set_num_threads(2)

    if args.memory_worker:
        print(json.dumps(memory_worker([s for s in size_names if math.prod(SIZES_PARSED[s]) >= 100_000])))
        return 0

    target_s = args.target_s if args.target_s is not None else (0.1 if args.quick else 1.5)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 10)
    min_calls = 3 if args.quick else 10
    n_draws = 100 if args.quick else 10_000
    started = time.perf_counter()

    print(f"reparam distributions benchmark: {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    load0 = os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    if load0[0] > 1.0:
        print("WARNING: the machine is busy with other processes; absolute ms are inflated and noisy "
              "(ratios from the interleaved rounds are fairer, but re-run on an idle machine)")
    print(f"jax devices: {jax.devices()}; torch threads: {torch.get_num_threads() if torch else '-'}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"timing: ~{target_s} s of calls per cell in {rounds} interleaved rounds (>= {min_calls} calls), median")
    print("sizes: params loc, scale of shape " + ", ".join(
        f"{n} = {SIZES_PARSED[n]}" for n in size_names) + "; sample_shape = () everywhere\n")

    routes = jax_routes()
    results = {}
    for size in size_names:
        cells = build_cells(SIZES_PARSED[size], routes)
        for work in WORKS:
            row_cells = {lib: cells[lib, work] for lib in LIBS if (lib, work) in cells}
            results[size, work] = time_row(row_cells, target_s, rounds, min_calls)
            msg = ", ".join(f"{lib} {t.median_ms:.3f} ms ({len(t.times)} calls)" for lib, t in results[size, work].items())
            print(f"  [{time.perf_counter() - started:6.1f} s] {size} {work}: {msg}", flush=True)
        del cells
        gc.collect()
    print()

    md = []
    header, body = timing_table(results, size_names)
    print_table("ms per call, median (ratio = other / reparam; > 1 means reparam is faster)", header, body)
    md += ["### Timings (ms per call, median; ratio = other / reparam)", "", markdown_table(header, body), ""]
    header, body = timing_table(results, size_names, "min_ms")
    title = "ms per call, fastest call (the floor each library reaches; least sensitive to other load)"
    print_table(title, header, body)
    md += ["### Timings, fastest call (ms; ratio = other / reparam)", "", markdown_table(header, body), ""]

    if not args.no_memory:
        big = [s for s in size_names if math.prod(SIZES_PARSED[s]) >= 100_000]
        if big:
            mem = measure_memory(big)
            header, body = memory_table(mem, big)
            title = ("MiB: peak RSS increase during one steady-state call, outputs included (separate process, "
                     "MALLOC_MMAP_THRESHOLD_=128 KiB); (XLA n) = XLA's planned temporaries + outputs")
            print_table(title, header, body)
            md += ["### Memory (MiB)", "", title, "", markdown_table(header, body), ""]
        else:
            print("memory: skipped (only measured at sizes with >= 1e5 elements; smaller ones are noise)\n")

    if not args.no_accuracy:
        rows, checks = accuracy(n_draws)
        method = ACCURACY_METHOD.format(n=n_draws)
        header, body = accuracy_table(rows)
        print("Accuracy method:\n" + method + "\n")
        print_table("tanh-Normal log-prob, max |error| vs float64 (nats)", header, body)
        for c in checks:
            print("note: " + c)
        if not checks:
            print("check: every recovered pre-activation reproduced its library's draw bit for bit")
        md += ["### Accuracy (max |error| in nats vs float64)", "", method, "", markdown_table(header, body), ""]
        md += [f"note: {c}" for c in checks] or ["check: every recovered pre-activation reproduced its draw bit for bit"]

    load1 = os.getloadavg()
    print(f"\nload average at end (1, 5, 15 min): {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"total time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    if args.json:
        raw = {f"{s}|{w}|{lib}": {"median_ms": t.median_ms, "min_ms": t.min_ms,
                                   "cpu_median_ms": t.cpu_median_ms, "cpu_times_s": t.cpu_times, "times_s": t.times, "compile_s": t.compile_s}
               for (s, w), row in results.items() for lib, t in row.items()}
        with open(args.json, "w") as f:
            json.dump({"versions": versions(), "machine": machine(), "timings": raw}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

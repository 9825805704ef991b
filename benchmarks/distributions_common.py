"""What the distribution studies share: the peers (distrax, TFP-JAX, torch; each optional, its
import error reported), the sizes, and the routes -- one callable per (library, work) that runs one
call to completion. Used by distributions.py (timings), distributions_memory.py and
distributions_accuracy.py.

The routes (parameters `loc`, `scale` of the given shape, `sample_shape=()`, so every library draws
and scores the same number of elements):

1. Normal `rsample + log_prob`: reparam `rsample_and_log_prob`; distrax `sample_and_log_prob`;
   TFP-JAX `experimental_sample_and_log_prob`; torch `rsample` then `log_prob`.
2. tanh-Normal `rsample + log_prob`: reparam `TanhNormal.rsample_and_log_prob`; distrax
   `Transformed(Normal, Tanh()).sample_and_log_prob`; TFP-JAX `TransformedDistribution(Normal,
   Tanh())` fused (bijector cache); torch `TransformedDistribution(Normal, TanhTransform(cache_size=1))`
   `rsample` then `log_prob` (cache hit); the Stable-Baselines3 formula
   `log N(u) - log(1 - tanh(u)^2 + 1e-6)` written in jax (elementwise, no sum over action dims).
3. `value_and_grad` of `mean(rsample()**2)` with respect to `(loc, scale)`, Normal and tanh-Normal
   (torch: forward, then `backward()`).

jax routes are jitted and take the PRNG key and the parameters as arguments (nothing to
constant-fold). torch runs eagerly with 2 threads, under `torch.no_grad()` for rows 1 and 2 only,
with its default argument validation (as reparam's default validation is on).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

warnings.filterwarnings("ignore")  # TFP/distrax emit deprecation noise on import
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
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

    torch.set_num_threads(2)
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


def versions() -> dict[str, str]:
    v = common.versions("jax", "jaxlib", "numpy", "reparam", "equinox")
    v["distrax"] = distrax.__version__ if distrax is not None else f"unavailable ({DISTRAX_ERROR})"
    v["tfp (jax substrate)"] = tfp.__version__ if tfp is not None else f"unavailable ({TFP_ERROR})"
    v["torch"] = torch.__version__ if torch is not None else f"unavailable ({TORCH_ERROR})"
    return v


def run_alone(
    title: str, section: Callable[[], tuple[list[str], dict]], key: str, markdown: str | None, json_path: str | None
) -> None:
    """A study run on its own: the header, `section()` (which prints its table and returns its
    markdown lines and raw results), the footer; the markdown to `markdown`, the raw results under
    `key` to `json_path`."""
    v = versions()
    started = common.announce(title, v)
    md, raw = section()
    common.finish(started)
    if markdown:
        Path(markdown).write_text("\n".join(md) + "\n")
    if json_path:
        common.write_json(json_path, common.record(v, **{key: raw}))


def parse_sizes(text: str) -> dict[str, tuple[int, ...]]:
    """'sac' (256x6), '1e6' (1000000) or a shape like 4096x6, comma-separated."""
    out = {}
    for name in text.split(","):
        name = name.strip()
        out[name] = SIZES[name] if name in SIZES else tuple(int(float(p)) for p in name.split("x"))
    return out


def size_label(name: str, shape: tuple[int, ...]) -> str:
    return f"{name} {'x'.join(map(str, shape))}"


# ----------------------------------------------------------------------------------------------
# The routes. Each jax route is f(key, loc, scale) -> outputs, jitted; each torch route is a
# closure over its tensors. Every callable returned by `build_cells` runs one call to completion.
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


def cell_table(rows: dict, size_names: list[str], sizes: dict, show: Callable[[str, object, dict], str]):
    """Header and rows of strings for the (size, work) pairs in `rows` (each a dict lib -> value):
    the work, the size, then per library `show(lib, value, row)` or '-' where it has no value."""
    header = ["work", "params shape"] + [LIB_TITLES[lib] for lib in LIBS]
    body = []
    for size in size_names:
        for work in WORKS:
            row = rows.get((size, work))
            if row:
                cells = [show(lib, row[lib], row) if lib in row else "-" for lib in LIBS]
                body.append([WORKS[work], size_label(size, sizes[size])] + cells)
    return header, body

#!/usr/bin/env python
"""Float32 accuracy of the tanh-Normal log-density against a float64 reference: reparam vs distrax
vs TFP-JAX vs torch vs the Stable-Baselines3 formula, for means u from 0 to 50.

    .venv-bench/bin/python benchmarks/distributions_accuracy.py            # 10,000 draws per u
    .venv-bench/bin/python benchmarks/distributions_accuracy.py --quick    # 100 draws per u

Also part of a full `benchmarks/distributions.py` run (`--no-accuracy` skips it there). The method
(`ACCURACY_METHOD` below) is printed with the table.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import distributions_common as dc  # first: it sets JAX_PLATFORMS=cpu before jax loads

# isort: split
import jax
import jax.numpy as jnp
import numpy as np

import common
import reparam
from distributions_common import LOG_2PI_HALF, distrax, sb3_log_prob, sb3_tanh, tfp, torch

if tfp is not None:
    from distributions_common import tfb, tfd
if torch is not None:
    from distributions_common import td

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
    jax_peers = []  # (name in notes, title in rows, fused route, fused(k, l), base sample(k, l), log_prob(l, a))
    if distrax is not None:
        d_dist = lambda l: distrax.Transformed(distrax.Normal(l, 1.0), distrax.Tanh())  # noqa: E731
        jax_peers.append(
            (
                "distrax",
                "distrax",
                "sample_and_log_prob",
                jax.jit(lambda k, l: d_dist(l).sample_and_log_prob(seed=k)),
                jax.jit(lambda k, l: distrax.Normal(l, 1.0).sample(seed=k)),
                jax.jit(lambda l, a: d_dist(l).log_prob(a)),
            )
        )
    if tfp is not None:
        t_dist = lambda l: tfd.TransformedDistribution(tfd.Normal(l, 1.0), tfb.Tanh())  # noqa: E731
        jax_peers.append(
            (
                "tfp",
                "TFP-JAX",
                "bijector cache",
                jax.jit(lambda k, l: t_dist(l).experimental_sample_and_log_prob(seed=k)),
                jax.jit(lambda k, l: tfd.Normal(l, 1.0).sample(seed=k)),
                jax.jit(lambda l, a: t_dist(l).log_prob(a)),
            )
        )

    for u in ACC_U:
        loc = jnp.full((n_draws,), u, jnp.float32)
        one = jnp.full((1,), u, jnp.float32)
        a_given = tanh32(one)
        ref_given = reference_log_prob(u, u)

        # reparam
        a, lp = r_fused(key, loc)
        x = r_base(key, loc)
        x_eps = r_eps(key, loc)
        same_u = np.array_equal(np.asarray(x), np.asarray(x_eps))
        if not (same_u and np.array_equal(np.asarray(jnp.tanh(x)), np.asarray(a))):
            checks.append(f"reparam: recovered pre-activation does not reproduce the draw at u={u}")
        put("reparam fused (rsample_and_log_prob)", u, _max_err(lp, reference_log_prob(x, u)))
        put("reparam log_prob(a), given a = tanh(u)", u, _max_err(r_given(one, a_given), ref_given))

        for name, title, fused_route, fused, base, given in jax_peers:
            a, lp = fused(key, loc)
            x = base(key, loc)
            if not np.array_equal(np.asarray(jnp.tanh(x)), np.asarray(a)):
                checks.append(f"{name}: recovered pre-activation does not reproduce the draw at u={u}")
            put(f"{title} fused ({fused_route})", u, _max_err(lp, reference_log_prob(x, u)))
            put(f"{title} log_prob(a), given a = tanh(u)", u, _max_err(given(one, a_given), ref_given))
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
                        checks.append(
                            f"torch cache_size={cache} at u={u}: log_prob raised ValueError ({str(err)[:80]}...)"
                        )
                name = (
                    "torch TanhTransform(cache_size=1), rsample then log_prob"
                    if cache
                    else ("torch TanhTransform(cache_size=0), rsample then log_prob (inverts a)")
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


def fmt_err(e: float) -> str:
    if math.isnan(e):
        return "NaN"
    if math.isinf(e):
        return "inf"
    return f"{e:.1e}" if e < 0.01 else f"{e:.3g}"


def table(rows):
    header = ["route"] + [f"u={u:g}" for u in ACC_U]
    body = [[route] + [fmt_err(errs[u]) for u in ACC_U] for route, errs in rows.items()]
    return header, body


def section(n_draws: int) -> tuple[list[str], dict]:
    """Measure, print the method, the table and the checks; returns the markdown lines and the
    raw errors."""
    rows, checks = accuracy(n_draws)
    method = ACCURACY_METHOD.format(n=n_draws)
    header, body = table(rows)
    print("Accuracy method:\n" + method + "\n")
    common.print_table("tanh-Normal log-prob, max |error| vs float64 (nats)", header, body)
    for c in checks:
        print("note: " + c)
    if not checks:
        print("check: every recovered pre-activation reproduced its library's draw bit for bit")
    md = ["### Accuracy (max |error| in nats vs float64)", "", method, "", common.markdown_table(header, body), ""]
    md += [f"note: {c}" for c in checks] or ["check: every recovered pre-activation reproduced its draw bit for bit"]
    errors = {route: {str(u): e for u, e in errs.items()} for route, errs in rows.items()}
    return md, {"n_draws": n_draws, "max_abs_error": errors, "checks": checks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 100 draws per u instead of 10,000")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as markdown to PATH")
    p.add_argument("--json", metavar="PATH", help="also write the errors to PATH")
    args = p.parse_args(argv)
    dc.run_alone(
        "reparam tanh-Normal accuracy benchmark",
        lambda: section(100 if args.quick else 10_000),
        "accuracy",
        args.markdown,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

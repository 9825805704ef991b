"""The measure-valued (weak derivative) estimator for the Normal (Mohamed et al. 2020, Sec. 6).

`d/dmu E[f] = 1/(sigma sqrt(2 pi)) (E[f(mu + sigma R)] - E[f(mu - sigma R)])`, `R ~ Rayleigh(1)`;
`d/dsigma E[f] = 1/sigma (E[f(mu + sigma M)] - E[f(mu + sigma eps)])`, `M` double-sided Maxwell.
Unbiased for any integrable `f` (no derivative of `f`), one coordinate at a time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..distributions.normal import Normal


def measure_valued(f, dist_fn, params, key, num_samples: int):
    """Gradients w.r.t. `params` through the Normal's `(loc, scale)` (chain rule by a VJP).
    `dist_fn(params)` must return a `Normal`; `f` maps a sample of its shape to a scalar."""

    def loc_scale(p):
        d = dist_fn(p)
        if not isinstance(d, Normal):
            raise TypeError(f"measure_valued is defined here for Normal only, got {type(d).__name__}")
        return d.loc, d.scale

    (loc, scale), pullback = jax.vjp(loc_scale, params)
    loc, scale = jax.lax.stop_gradient(loc), jax.lax.stop_gradient(scale)
    shape = (num_samples,) + loc.shape
    k_base, k_rayleigh, k_maxwell, k_sign = jax.random.split(key, 4)
    eps = jax.random.normal(k_base, shape, loc.dtype)
    rayleigh = jnp.sqrt(2.0 * jax.random.exponential(k_rayleigh, shape, loc.dtype))
    maxwell = jnp.linalg.norm(jax.random.normal(k_maxwell, shape + (3,), loc.dtype), axis=-1)
    maxwell = maxwell * jax.random.rademacher(k_sign, shape, loc.dtype)
    base = loc + scale * eps
    flat_size = loc.size

    def replace(i, value):  # the base sample with coordinate i set to `value`
        return base.reshape(num_samples, flat_size).at[:, i].set(value).reshape(shape)

    def per_coordinate(i):
        mu_i, s_i = loc.reshape(-1)[i], scale.reshape(-1)[i]
        r, m = rayleigh.reshape(num_samples, -1)[:, i], maxwell.reshape(num_samples, -1)[:, i]
        up = jax.vmap(f)(replace(i, mu_i + s_i * r))
        down = jax.vmap(f)(replace(i, mu_i - s_i * r))
        wide = jax.vmap(f)(replace(i, mu_i + s_i * m))
        plain = jax.vmap(f)(base)
        d_loc = jnp.mean(up - down) / (s_i * math.sqrt(2 * math.pi))
        d_scale = jnp.mean(wide - plain) / s_i
        return d_loc, d_scale

    d_loc, d_scale = jax.vmap(per_coordinate)(jnp.arange(flat_size))
    (grads,) = pullback((d_loc.reshape(loc.shape), d_scale.reshape(scale.shape)))
    return grads

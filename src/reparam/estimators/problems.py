"""Test problems from the literature with closed-form gradients (Mohamed et al. 2020, Sec. 3)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array

from ..distributions import Normal


class NormalParams(NamedTuple):
    mu: Array
    sigma: Array


class Problem(NamedTuple):
    """`E_{z ~ dist_fn(params)}[f(z)]` with its exact gradient (`exact_grad(params)`)."""

    name: str
    f: Callable[[Array], Array]
    dist_fn: Callable[[NormalParams], Normal]
    exact_grad: Callable[[NormalParams], NormalParams]


def normal_dist(params: NormalParams) -> Normal:
    return Normal(params.mu, params.sigma)


def quadratic(k: float | Array) -> Problem:
    """`E_{N(mu, sigma^2)}[(z - k)^2] = (mu - k)^2 + sigma^2`: gradient `(2 (mu - k), 2 sigma)`."""
    return Problem(
        name="quadratic",
        f=lambda z: jnp.square(z - k),
        dist_fn=normal_dist,
        exact_grad=lambda p: NormalParams(2 * (p.mu - k), 2 * p.sigma),
    )


def quadratic_single_sample_variance(k: float) -> dict[str, NormalParams]:
    """Closed-form variances of one-sample estimates at mu = sigma = 1 (Mohamed et al. 2020):
    pathwise `(4, 4 (1 - k)^2 + 8)`, score function `((1-k)^4 + 14 (1-k)^2 + 15,
    2 (1-k)^4 + 60 (1-k)^2 + 74)`."""
    d = 1.0 - k
    return {
        "pathwise": NormalParams(4.0, 4 * d**2 + 8),
        "score_function": NormalParams(d**4 + 14 * d**2 + 15, 2 * d**4 + 60 * d**2 + 74),
    }

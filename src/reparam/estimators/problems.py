"""Test problems `E_{z ~ dist_fn(params)}[f(z)]` from the literature, with exact expectations so
every estimate can be compared with the true gradient (`jax.grad` of the exact expectation).

Normal problems follow Mohamed, Rosca, Figurnov and Mnih (2020, Sec. 3): quadratic, exponential
and cosine; discrete problems use small categoricals and Bernoullis, enumerated exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from ..distributions import Bernoulli, Independent, Normal, OneHotCategorical


class NormalParams(NamedTuple):
    """Parameters `(mu, sigma)` of the Normal test problems."""

    mu: Array
    sigma: Array


class Problem(NamedTuple):
    """`f`, `dist_fn` and default `params`; `expectation(params)` is exact (None if unknown)."""

    name: str
    f: Callable[[Array], Array]
    dist_fn: Callable[[PyTree], object]
    params: PyTree
    expectation: Callable[[PyTree], Array] | None

    def exact_grad(self, params: PyTree) -> PyTree:
        """`grad_params E[f(z)]` from the exact expectation (ValueError when there is none)."""
        if self.expectation is None:
            raise ValueError(f"problem {self.name} has no exact expectation")
        return jax.grad(self.expectation)(params)


def normal_dist(params: NormalParams) -> Normal:
    """`Normal(params.mu, params.sigma)`."""
    return Normal(params.mu, params.sigma)


def normal_params(mu: float = 1.0, sigma: float = 1.0) -> NormalParams:
    """`NormalParams` of float scalars."""
    return NormalParams(jnp.asarray(mu, float), jnp.asarray(sigma, float))


def quadratic(k: float | Array = 1.0, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """`E_{N(mu, sigma^2)}[(z - k)^2] = (mu - k)^2 + sigma^2`."""
    return Problem(
        "quadratic",
        lambda z: jnp.square(z - k),
        normal_dist,
        normal_params(mu, sigma),
        lambda p: jnp.square(p.mu - k) + jnp.square(p.sigma),
    )


def exponential(mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """`E_{N(mu, sigma^2)}[exp(z)] = exp(mu + sigma^2 / 2)`."""
    return Problem(
        "exponential",
        jnp.exp,
        normal_dist,
        normal_params(mu, sigma),
        lambda p: jnp.exp(p.mu + 0.5 * jnp.square(p.sigma)),
    )


def cosine(omega: float | Array = 1.0, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """`E_{N(mu, sigma^2)}[cos(omega z)] = cos(omega mu) exp(-omega^2 sigma^2 / 2)`. At high
    frequency the pathwise estimator's variance grows like omega^2 and can lose to the score
    function (Mohamed et al. 2020, Fig. 3)."""
    return Problem(
        "cosine",
        lambda z: jnp.cos(omega * z),
        normal_dist,
        normal_params(mu, sigma),
        lambda p: jnp.cos(omega * p.mu) * jnp.exp(-0.5 * jnp.square(omega * p.sigma)),
    )


def categorical(target: Array | None = None, logits: Array | None = None) -> Problem:
    """`E_{x ~ OneHotCategorical(logits)}[|x - target|^2]`, exact by enumerating the K values."""
    target = jnp.asarray([0.1, 0.6, 0.3, 0.0] if target is None else target)
    logits = jnp.zeros_like(target) if logits is None else jnp.asarray(logits)
    f = lambda x: jnp.sum(jnp.square(x - target))
    eye = jnp.eye(target.shape[-1], dtype=target.dtype)
    return Problem("categorical", f, OneHotCategorical, logits, lambda l: jnp.sum(jax.nn.softmax(l) * jax.vmap(f)(eye)))


def bernoulli(target: float | Array = 0.45, dim: int = 3, logits: Array | None = None) -> Problem:
    """`E_{x ~ Bernoulli(sigmoid(logits))^dim}[|x - target|^2 / dim]` (the toy problem of Tucker
    et al. 2017 at target 0.45), exact by enumerating the 2^dim values."""
    logits = jnp.zeros(dim) if logits is None else jnp.asarray(logits)
    f = lambda x: jnp.mean(jnp.square(x - target))
    corners = jnp.asarray(np.array(list(itertools.product([0.0, 1.0], repeat=dim))), logits.dtype)
    dist_fn = lambda l: Independent(Bernoulli(l), 1)

    def expectation(l):
        return jnp.sum(jnp.exp(dist_fn(l).log_prob(corners)) * jax.vmap(f)(corners))

    return Problem("bernoulli", f, dist_fn, logits, expectation)


class EncoderParams(NamedTuple):
    """Parameters of `vae_quadratic`'s linear Gaussian encoder, `q(z|x) = N(W x + b, diag(exp(log_sigma))^2)`."""

    weight: Array
    bias: Array
    log_sigma: Array


def vae_quadratic(dim: int = 4, seed: int = 0) -> Problem:
    """A VAE-like problem with a learnable linear encoder: `q(z|x) = N(W x + b, diag(sigma^2))`,
    `f(z) = |z - A x|^2` for fixed `x`, `A`; `E = |W x + b - A x|^2 + sum sigma^2`."""
    rng = np.random.default_rng(seed)
    x, a = jnp.asarray(rng.normal(size=dim)), jnp.asarray(rng.normal(size=(dim, dim)))
    target = a @ x
    params = EncoderParams(jnp.asarray(rng.normal(size=(dim, dim)) * 0.3), jnp.zeros(dim), jnp.full(dim, -0.5))
    dist_fn = lambda p: Independent(Normal(p.weight @ x + p.bias, jnp.exp(p.log_sigma)), 1)
    return Problem(
        "vae",
        lambda z: jnp.sum(jnp.square(z - target)),
        dist_fn,
        params,
        lambda p: jnp.sum(jnp.square(p.weight @ x + p.bias - target)) + jnp.sum(jnp.exp(2 * p.log_sigma)),
    )


def quadratic_variance(k: float, mu: float = 1.0, sigma: float = 1.0, num_samples: int = 1) -> dict[str, NormalParams]:
    """Closed-form variances of the pathwise and plain score-function estimates of the quadratic
    problem's gradient, with `d = mu - k`:
    pathwise `(4 sigma^2, 4 d^2 + 8 sigma^2)`; score function
    `((d^4 + 18 d^2 sigma^2 + 15 sigma^4) / sigma^2 - 4 d^2,
    (2 d^4 + 60 d^2 sigma^2 + 78 sigma^4) / sigma^2 - 4 sigma^2)`, divided by `num_samples`.
    At mu = sigma = 1 these are Mohamed et al.'s (2020) figures."""
    d2, s2 = (mu - k) ** 2, sigma**2
    n = num_samples
    return {
        "pathwise": NormalParams(4 * s2 / n, (4 * d2 + 8 * s2) / n),
        "score": NormalParams(
            ((d2**2 + 18 * d2 * s2 + 15 * s2**2) / s2 - 4 * d2) / n,
            ((2 * d2**2 + 60 * d2 * s2 + 78 * s2**2) / s2 - 4 * s2) / n,
        ),
    }

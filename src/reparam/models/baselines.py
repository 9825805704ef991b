"""Exact-likelihood baselines on binary vectors, to put a VAE's test NLL in context.

    logits = fit_independent_bernoulli(x_train)                 # (D,)
    log_likelihood(logits, x_test)                              # (N,) nats per example
    mixture = fit_bernoulli_mixture(key, x_train, 20, num_iters=100, pseudo_count=1.0)
    mixture_log_likelihood(mixture, x_test)                     # (N,) nats per example

Both are MAP fits with pseudo-count `a > 0`: a Beta(1 + a, 1 + a) prior on every pixel probability
and, for the mixture, a Dirichlet(1 + a, ..., 1 + a) prior on the weights, so no probability is 0 or 1
and every test image has a finite log-likelihood. Inputs must be binary (see `reparam.data`); a row
with any value outside {0, 1} scores `-inf`, as `Bernoulli.log_prob` does.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ..distributions import Bernoulli

HIGHEST = jax.lax.Precision.HIGHEST  # exact float32 matmuls on GPUs too (no TF32)


class BernoulliMixture(NamedTuple):
    """`p(x) = sum_k pi_k prod_d Bernoulli(x_d | sigmoid(logits_kd))`.

    `log_weights` `(K,)` are normalised (`logsumexp = 0`); `logits` are `(K, D)`.
    """

    log_weights: Array
    logits: Array


def fit_independent_bernoulli(x_train: ArrayLike, *, pseudo_count: float = 1.0) -> Array:
    """MAP logits `(D,)`: `p_d = (sum_n x_nd + a) / (N + 2a)`, `logit = log(n1 + a) - log(n0 + a)`."""
    x = _binary_float(x_train)
    return _independent_logits(x, _check_pseudo_count(pseudo_count, x.dtype))


@jax.jit
def _independent_logits(x: Array, a: Array) -> Array:
    ones, zeros = jnp.sum(x, axis=0), jnp.sum(1 - x, axis=0)
    return jnp.log(ones + a) - jnp.log(zeros + a)


@jax.jit
def log_likelihood(logits: ArrayLike, x: ArrayLike) -> Array:
    """`sum_d log Bernoulli(x_nd | sigmoid(logits_d))` `(N,)` for `x` `(N, D)`, in nats."""
    logits = jnp.asarray(logits)
    x = jnp.asarray(x, logits.dtype)
    return jnp.sum(Bernoulli(logits, validate=False).log_prob(x), axis=-1)


@jax.jit
def component_log_likelihoods(model: BernoulliMixture, x: ArrayLike) -> Array:
    """`log p(x_n | k)` `(N, K)`: `x @ log p_1^T + (1 - x) @ log p_0^T`, linear in binary `x`.

    The per-pixel terms `log p_1 = log sigmoid(l)`, `log p_0 = log sigmoid(-l)` come from
    `Bernoulli.log_prob`; the sum over pixels is two matmuls, so no `(N, K, D)` array is formed.
    """
    x = jnp.asarray(x, model.logits.dtype)
    bernoulli = Bernoulli(model.logits, validate=False)
    log_p1 = bernoulli.log_prob(jnp.ones_like(model.logits))
    log_p0 = bernoulli.log_prob(jnp.zeros_like(model.logits))
    out = jnp.matmul(x, log_p1.T, precision=HIGHEST) + jnp.matmul(1 - x, log_p0.T, precision=HIGHEST)
    binary = jnp.all((x == 0) | (x == 1), axis=-1, keepdims=True)
    return jnp.where(binary, out, -jnp.inf)


@jax.jit
def mixture_log_likelihood(model: BernoulliMixture, x: ArrayLike) -> Array:
    """`log p(x_n) = logsumexp_k (log pi_k + log p(x_n | k))` `(N,)`, in nats."""
    return jax.nn.logsumexp(model.log_weights + component_log_likelihoods(model, x), axis=-1)


def log_prior(model: BernoulliMixture, pseudo_count: ArrayLike) -> Array:
    """`a (sum_k log pi_k + sum_kd [log p_kd + log(1 - p_kd)])`: Dirichlet and Beta log-priors
    up to their normalising constants."""
    a = jnp.asarray(pseudo_count, model.logits.dtype)
    log_p1 = jax.nn.log_sigmoid(model.logits)
    log_p0 = jax.nn.log_sigmoid(-model.logits)
    return a * (jnp.sum(model.log_weights) + jnp.sum(log_p1 + log_p0))


@jax.jit
def map_objective(model: BernoulliMixture, x: ArrayLike, pseudo_count: ArrayLike) -> Array:
    """`(sum_n log p(x_n) + log prior) / N`: what each EM step cannot decrease."""
    x = jnp.asarray(x, model.logits.dtype)
    total = jnp.sum(mixture_log_likelihood(model, x)) + log_prior(model, pseudo_count)
    return total / x.shape[0]


def em_step(model: BernoulliMixture, x: Array, pseudo_count: ArrayLike) -> tuple[BernoulliMixture, Array]:
    """One EM step for the MAP objective; returns the new model and the objective of the old one.

    E: `log r_nk = log pi_k + log p(x_n | k) - log p(x_n)`. M, with `N_k = sum_n r_nk`:
    `pi_k = (N_k + a) / (N + K a)`, `logit_kd = log(sum_n r_nk x_nd + a) - log(sum_n r_nk (1 - x_nd) + a)`.
    """
    a = jnp.asarray(pseudo_count, x.dtype)
    joint = model.log_weights + component_log_likelihoods(model, x)  # (N, K)
    marginal = jax.nn.logsumexp(joint, axis=-1, keepdims=True)
    objective = (jnp.sum(marginal) + log_prior(model, a)) / x.shape[0]
    r = jnp.exp(joint - marginal)
    counts = jnp.sum(r, axis=0)  # (K,)
    ones = jnp.matmul(r.T, x, precision=HIGHEST)  # (K, D)
    zeros = jnp.matmul(r.T, 1 - x, precision=HIGHEST)
    log_weights = jax.nn.log_softmax(jnp.log(counts + a))
    logits = jnp.log(ones + a) - jnp.log(zeros + a)
    return BernoulliMixture(log_weights, logits), objective


def init_bernoulli_mixture(
    key: PRNGKeyArray, x_train: ArrayLike, num_components: int, *, pseudo_count: float = 1.0
) -> BernoulliMixture:
    """Equal weights; component `k` halfway between a distinct random example and the MAP mean:
    `p_k = (x_{n_k} + p_bar) / 2`, strictly inside (0, 1)."""
    x = _binary_float(x_train)
    a = _check_pseudo_count(pseudo_count, x.dtype)
    return _init(key, x, _check_num_components(num_components, x.shape[0]), a)


@functools.partial(jax.jit, static_argnames="num_components")
def _init(key: PRNGKeyArray, x: Array, num_components: int, a: Array) -> BernoulliMixture:
    mean = jax.nn.sigmoid(_independent_logits(x, a))
    picks = jax.random.permutation(key, x.shape[0])[:num_components]
    p = 0.5 * (x[picks] + mean)
    log_weights = jnp.full((num_components,), -jnp.log(num_components), x.dtype)
    return BernoulliMixture(log_weights, jnp.log(p) - jnp.log1p(-p))


@functools.partial(jax.jit, static_argnames="num_iters")
def run_em(
    model: BernoulliMixture, x_train: Array, *, num_iters: int, pseudo_count: ArrayLike
) -> tuple[BernoulliMixture, Array]:
    """`num_iters` EM steps in one `lax.scan`; returns the model and the objective `(num_iters,)`
    of the model entering each step (non-decreasing: the EM guarantee)."""
    x = jnp.asarray(x_train, model.logits.dtype)
    return jax.lax.scan(lambda m, _: em_step(m, x, pseudo_count), model, length=num_iters)


def fit_bernoulli_mixture(
    key: PRNGKeyArray,
    x_train: ArrayLike,
    num_components: int,
    *,
    num_iters: int = 100,
    pseudo_count: float = 1.0,
) -> BernoulliMixture:
    """A `num_components`-mixture of independent Bernoullis fit by MAP-EM (`init` then `run_em`)."""
    if num_iters < 0:
        raise ValueError(f"fit_bernoulli_mixture: num_iters must be >= 0, got {num_iters}")
    x = _binary_float(x_train)
    model = init_bernoulli_mixture(key, x, num_components, pseudo_count=pseudo_count)
    return run_em(model, x, num_iters=num_iters, pseudo_count=pseudo_count)[0]


def _binary_float(x: ArrayLike) -> Array:
    """`x` as a float `(N, D)` array; eagerly, a ValueError unless it is binary."""
    x = jnp.asarray(x)
    x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"baselines: data must be (N, D) with N >= 1, got shape {x.shape}")
    if not isinstance(x, jax.core.Tracer) and not bool(_is_binary(x)):
        raise ValueError("baselines: data must be binary (0 or 1); binarize first (reparam.data.binarize_static)")
    return x


@jax.jit
def _is_binary(x: Array) -> Array:
    return jnp.all((x == 0) | (x == 1))


def _check_pseudo_count(pseudo_count: float, dtype) -> Array:
    if not isinstance(pseudo_count, jax.core.Tracer) and not float(pseudo_count) > 0:
        raise ValueError(f"baselines: pseudo_count must be > 0 (keeps probabilities off 0 and 1), got {pseudo_count}")
    return jnp.asarray(pseudo_count, dtype)


def _check_num_components(num_components: int, n: int) -> int:
    if not 1 <= num_components <= n:
        raise ValueError(f"baselines: num_components must be in 1..{n} (the number of examples), got {num_components}")
    return int(num_components)

"""Training and scoring VAEs: the objective each setting maximises, one jitted epoch (`lax.scan`
over `epoch_batches`, optax Adam) and batched evaluation of the bounds over a whole data set.

`config` below is a `run.VAERunConfig` (read here for its fields only).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..data import binarize_dynamic, epoch_batches
from .categorical_vae import CategoricalVAE, reinforce_objective, relaxed_objective, temperature
from .vae import GaussianVAE, elbo, estimate_log_likelihood, iwae_bound

BASELINE_DECAY = 0.9  # REINFORCE's moving-average baseline, b <- d b + (1 - d) mean f
EVAL_BATCH = 100  # examples per evaluation batch (bounds the memory of large-K estimates)


class TrainState(NamedTuple):
    """What one gradient step changes; checkpointed after every epoch."""

    params: PyTree  # the model's arrays (`eqx.partition`); the static half is closed over
    opt_state: optax.OptState
    step: Array  # int32: gradient steps taken (`t` of the temperature schedule)
    baseline: Array  # float32: moving average of REINFORCE's learning signal (unused otherwise)


def init_model(config, data_dim: int, key: PRNGKeyArray) -> GaussianVAE | CategoricalVAE:
    if config.latent == "gaussian":
        return GaussianVAE(data_dim, config.latent_dim, tuple(config.hidden), config.likelihood, key=key)
    return CategoricalVAE(data_dim, config.latent_dim, config.num_categories, tuple(config.hidden), config.likelihood,
                          key=key)


def init_state(params: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))


def tau_at(config, step: Array) -> Array:
    """The Gumbel-Softmax temperature after `step` gradient steps."""
    return temperature(step, tau_min=config.tau_min, anneal_rate=config.anneal_rate)


def make_objective(config) -> Callable:
    """`objective(model, x, key, state) -> (value, signal)`: the batch mean of what training
    maximises, and the mean learning signal (REINFORCE's baseline tracks it; 0 otherwise)."""
    n = config.num_samples
    zero = jnp.zeros((), jnp.float32)
    if config.latent == "gaussian":
        if config.objective == "iwae":
            return lambda model, x, key, state: (jnp.mean(iwae_bound(model, x, key, config.k)), zero)
        return lambda model, x, key, state: (jnp.mean(elbo(model, x, key, kl=config.kl, num_samples=n)), zero)
    if config.estimator == "reinforce":
        def reinforce(model, x, key, state):
            surrogate, signal = reinforce_objective(model, x, key, state.baseline, num_samples=n)
            return jnp.mean(surrogate), jnp.mean(signal).astype(jnp.float32)
        return reinforce
    st = config.estimator == "st-gumbel"
    return lambda model, x, key, state: (
        jnp.mean(relaxed_objective(model, x, key, tau_at(config, state.step), straight_through=st, num_samples=n)), zero)


def make_epoch(config, static: PyTree, optimizer: optax.GradientTransformation) -> Callable:
    """`epoch(state, key, x_train) -> (state, mean objective)`: one shuffled pass, one gradient
    step per batch inside `lax.scan`; dynamic binarization draws fresh pixels per batch."""
    objective = make_objective(config)

    def loss(params, x, key, state):
        value, signal = objective(eqx.combine(params, static), x, key, state)
        return -value, (value, signal)

    def step(state: TrainState, inputs: tuple[Array, PRNGKeyArray]) -> tuple[TrainState, Array]:
        batch, key = inputs
        k_bin, k_loss = jax.random.split(key)
        if config.binarize == "dynamic":
            batch = binarize_dynamic(k_bin, batch)
        grads, (value, signal) = jax.grad(loss, has_aux=True)(state.params, batch, k_loss, state)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        baseline = BASELINE_DECAY * state.baseline + (1 - BASELINE_DECAY) * signal
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1, baseline), value

    def epoch(state: TrainState, key: PRNGKeyArray, x_train: Array) -> tuple[TrainState, Array]:
        k_shuffle, k_steps = jax.random.split(key)
        batches = epoch_batches(k_shuffle, x_train, config.batch_size)
        state, values = jax.lax.scan(step, state, (batches, jax.random.split(k_steps, batches.shape[0])))
        return state, jnp.mean(values)

    return epoch


def map_batches(fn: Callable[[Array, PRNGKeyArray], Array], x: Array, key: PRNGKeyArray,
                batch_size: int = EVAL_BATCH) -> Array:
    """`fn(x_batch, key) -> (b,)` over `x` `(N, D)` in batches of `batch_size` (`lax.map`, one key
    each; the last batch padded with zeros that are dropped), shape `(N,)`."""
    n = x.shape[0]
    batch_size = min(batch_size, n)
    num = -(-n // batch_size)
    padded = jnp.pad(x, ((0, num * batch_size - n), (0, 0))).reshape(num, batch_size, x.shape[1])
    out = jax.lax.map(lambda args: fn(*args), (padded, jax.random.split(key, num)))
    return out.reshape(-1)[:n]


def mean_elbo(model, x: Array, key: PRNGKeyArray) -> Array:
    """The data set's mean ELBO (closed-form KL, one sample per example; for a categorical latent
    the true discrete ELBO, whatever trained it)."""
    return jnp.mean(map_batches(lambda xb, k: elbo(model, xb, k), x, key))


def mean_log_likelihood(model, x: Array, key: PRNGKeyArray, k: int) -> Array:
    """The data set's mean `log p(x)`, importance-sampled with `k` posterior draws per example
    (IWAE_k, 100 at a time): test NLL is its negative."""
    chunk = math.gcd(k, 100)
    return jnp.mean(map_batches(lambda xb, kb: estimate_log_likelihood(model, xb, kb, k, chunk), x, key))

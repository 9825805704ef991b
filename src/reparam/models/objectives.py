"""What each VAE setting maximises, as a loss for `reparam.training`, and how a trained VAE is scored
on a whole data set (in bounded memory, through `training.evaluate`).

`config` below is any object with the fields of `reparam.commands.vae.VAECommand` that are read
(latent, posterior, latent_dim, num_categories, hidden_sizes, likelihood, objective, k, kl, num_samples,
estimator, min_temperature, anneal_rate, kl_warmup_epochs).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions import kl_divergence
from ..training import TrainState, evaluate
from .bnn import kl_weight
from .categorical_vae import CategoricalVAE, annealed_temperature, reinforce_objective, relaxed_objective
from .flow_posteriors import FlowVAE, parse_posterior
from .vae import GaussianVAE, elbo, estimate_log_likelihood, iwae_bound

BASELINE_DECAY = 0.9
"""REINFORCE's moving-average baseline: `b <- d b + (1 - d) mean f`, kept in `TrainState.extra`."""
EVAL_BATCH = 100
"""Examples per evaluation chunk (bounds the memory of large-K estimates)."""


def init_vae(config, data_dim: int, key: PRNGKeyArray) -> GaussianVAE | FlowVAE | CategoricalVAE:
    """The VAE `config` describes, for `data_dim`-dimensional data."""
    if config.latent == "gaussian":
        hidden = tuple(config.hidden_sizes)
        kind, layers = parse_posterior(config.posterior)
        if kind == "gaussian":
            return GaussianVAE(data_dim, config.latent_dim, hidden, config.likelihood, key=key)
        return FlowVAE(data_dim, config.latent_dim, kind, layers, hidden, config.likelihood, key=key)
    return CategoricalVAE(
        data_dim, config.latent_dim, config.num_categories, tuple(config.hidden_sizes), config.likelihood, key=key
    )


def kl_term(config) -> str:
    """The ELBO's KL route: `config.kl` when set, else 'closed' where a closed form exists (Gaussian
    posterior) and 'mc' (from the same samples) for a flow posterior."""
    if config.kl is not None:
        return config.kl
    return "closed" if config.posterior == "gaussian" else "mc"


def evaluation_kl(model) -> str:
    """The KL route of the scored ELBO: Monte Carlo for a flow posterior, closed form otherwise."""
    return "mc" if isinstance(model, FlowVAE) else "closed"


def temperature_at(config, step: Array) -> Array:
    """The Gumbel-Softmax temperature after `step` gradient steps."""
    return annealed_temperature(step, min_temperature=config.min_temperature, anneal_rate=config.anneal_rate)


def warmed_elbo(model, x: Array, key: PRNGKeyArray, beta: Array, *, kl: str = "closed", num_samples: int = 1) -> Array:
    """The KL-annealed ELBO `E_q[log p(x | z)] - beta KL(q(z | x) || p(z))`, shape `(B,)` (Bowman et
    al. 2016; van den Berg et al. 2018 warm `beta` from 0 to 1): `beta = 1` is `vae.elbo`. With
    `kl="mc"` the KL is `mean_i [log q(z_i | x) - log p(z_i)]` over the same `num_samples` draws
    (flow posteriors); with `kl="closed"` the closed form of `kl_divergence`."""
    q = model.posterior(x)
    if kl == "mc":
        z, log_q = q.rsample_and_log_prob(key, (num_samples,))
        kl_value = jnp.mean(log_q - model.prior().log_prob(z), 0)
    elif kl == "closed":
        z = q.rsample(key, (num_samples,))
        kl_value = kl_divergence(q, model.prior())
    else:
        raise ValueError(f"kl must be 'closed' or 'mc', got {kl!r}")
    return jnp.mean(model.likelihood(z).log_prob(x), 0) - beta * kl_value


def vae_loss(config, static: PyTree, kl_warmup_steps: int = 0) -> Callable:
    """`loss(params, x, key, state) -> (-objective, {"objective", "signal"})` for `training.make_epoch`.

    The objective is the batch mean of what `config` trains (ELBO with closed-form or Monte Carlo
    KL, IWAE_k, a Gumbel-Softmax relaxation at the annealed temperature, or the REINFORCE
    surrogate); `signal` is REINFORCE's mean learning signal (0 otherwise), which `update_baseline`
    averages into `state.extra`. `static` is the model's non-array half (`eqx.partition`). With
    `kl_warmup_steps > 0` (Gaussian latent, ELBO) the KL is weighted by
    `beta_t = bnn.kl_weight(state.step, kl_warmup_steps)`, rising linearly to 1 (`warmed_elbo`).
    """
    n, zero, kl = config.num_samples, jnp.zeros((), jnp.float32), kl_term(config)

    def objective(model, x, key, state: TrainState) -> tuple[Array, Array]:
        if config.latent == "gaussian":
            if config.objective == "iwae":
                return jnp.mean(iwae_bound(model, x, key, config.k)), zero
            if kl_warmup_steps > 0:
                beta = kl_weight(state.step, kl_warmup_steps)
                return jnp.mean(warmed_elbo(model, x, key, beta, kl=kl, num_samples=n)), zero
            return jnp.mean(elbo(model, x, key, kl=kl, num_samples=n)), zero
        if config.estimator == "reinforce":
            surrogate, signal = reinforce_objective(model, x, key, state.extra, num_samples=n)
            return jnp.mean(surrogate), jnp.mean(signal).astype(jnp.float32)
        temperature = temperature_at(config, state.step)
        return jnp.mean(
            relaxed_objective(
                model, x, key, temperature, straight_through=config.estimator == "st-gumbel", num_samples=n
            )
        ), zero

    def loss(params, x, key, state):
        value, signal = objective(eqx.combine(params, static), x, key, state)
        return -value, {"objective": value, "signal": signal}

    return loss


def update_baseline(state: TrainState, metrics: dict) -> Array:
    """The next moving average of REINFORCE's learning signal (`TrainState.extra`)."""
    return BASELINE_DECAY * state.extra + (1 - BASELINE_DECAY) * metrics["signal"]


def dataset_elbo(model, x: Array, key: PRNGKeyArray) -> Array:
    """The data set's mean ELBO (one sample per example; closed-form KL, Monte Carlo for a flow
    posterior; for a categorical latent the true discrete ELBO, whatever trained it), `EVAL_BATCH`
    examples at a time."""
    kl = evaluation_kl(model)
    return evaluate(lambda xb, k: elbo(model, xb, k, kl=kl), x, key, EVAL_BATCH)


def dataset_log_likelihood(model, x: Array, key: PRNGKeyArray, k: int) -> Array:
    """The data set's mean `log p(x)`, importance-sampled with `k` posterior draws per example
    (IWAE_k, drawn 100 at a time): test NLL is its negative."""
    chunk = math.gcd(k, 100)
    return evaluate(lambda xb, kb: estimate_log_likelihood(model, xb, kb, k, chunk), x, key, EVAL_BATCH)

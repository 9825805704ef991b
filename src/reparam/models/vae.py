"""Variational autoencoders: the Gaussian VAE (Kingma & Welling 2014) and the bounds every VAE
here is trained and scored with (ELBO; IWAE, Burda et al. 2016; importance-sampled log p(x)).

A model is any module with three methods, all built from `reparam.distributions`:
`posterior(x)` = q(z | x) with batch `(B,)`, `prior()` = p(z) with batch `()`, and
`likelihood(z)` = p(x | z) with batch `z`'s sample and batch axes and event `(D,)`. The bounds below
are written once against that protocol; `categorical_vae.CategoricalVAE` follows it too.

Inside the models, distributions are built with `validate=False`: scales are positive by
construction (softplus plus a floor) and a non-finite loss is caught per epoch by the run loop.
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, PRNGKeyArray

from ..distributions import Bernoulli, Independent, MultivariateNormalDiag, kl_divergence
from ..nn import mlp, over_leading_axes

Likelihood = Literal["bernoulli", "gaussian"]
MIN_SCALE = 1e-3  # floor of every learned standard deviation


def positive(raw: Array) -> Array:
    """A standard deviation from an unconstrained output: `softplus(raw) + MIN_SCALE`."""
    return jax.nn.softplus(raw) + MIN_SCALE


def standard_normal_prior(latent_dim: int) -> MultivariateNormalDiag:
    """p(z) = N(0, I) in float32, batch `()`, event `(latent_dim,)`."""
    return MultivariateNormalDiag(jnp.zeros(latent_dim, jnp.float32), jnp.ones(latent_dim, jnp.float32))


class Decoder(eqx.Module):
    """`p(x | z)` over `(D,)` events: `Bernoulli(logits = net(z))` for binary data, or
    `Normal(net(z), sigma)` with a learned per-dimension `sigma` for continuous data."""

    net: eqx.nn.Sequential
    raw_scale: Array | None
    likelihood: Likelihood = eqx.field(static=True)

    def __init__(
        self,
        latent_size: int,
        data_dim: int,
        hidden: tuple[int, ...],
        likelihood: Likelihood = "bernoulli",
        *,
        key: PRNGKeyArray,
    ):
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.net = mlp(latent_size, data_dim, hidden, activation=jnp.tanh, key=key)
        self.raw_scale = jnp.zeros(data_dim, jnp.float32) if likelihood == "gaussian" else None
        self.likelihood = likelihood

    def __call__(self, z: Array) -> Independent:
        """z `(..., latent_size)` -> a distribution with batch `(...)` and event `(D,)`."""
        out = over_leading_axes(self.net, z)
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(out, validate=False), 1)
        return MultivariateNormalDiag(out, positive(self.raw_scale), validate=False)


class GaussianVAE(eqx.Module):
    """`q(z | x) = N(mu(x), diag sigma(x)^2)`, `p(z) = N(0, I)`, `p(x | z)` from a `Decoder`.
    The pathwise sample `z = mu + sigma * eps` carries the ELBO's gradient to the encoder."""

    encoder: eqx.nn.Sequential
    decoder: Decoder
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: tuple[int, ...] = (128, 128),
        likelihood: Likelihood = "bernoulli",
        *,
        key: PRNGKeyArray,
    ):
        if latent_dim < 1 or data_dim < 1:
            raise ValueError(f"GaussianVAE: latent_dim and data_dim must be >= 1, got {latent_dim} and {data_dim}")
        k_enc, k_dec = jax.random.split(key)
        self.encoder = mlp(data_dim, 2 * latent_dim, hidden, activation=jnp.tanh, key=k_enc)
        self.decoder = Decoder(latent_dim, data_dim, tuple(reversed(hidden)), likelihood, key=k_dec)
        self.latent_dim = latent_dim

    def posterior(self, x: Array) -> MultivariateNormalDiag:
        """x `(B, D)` -> q(z | x), batch `(B,)`, event `(latent_dim,)`."""
        mu, raw = jnp.split(over_leading_axes(self.encoder, x), 2, axis=-1)
        return MultivariateNormalDiag(mu, positive(raw), validate=False)

    def prior(self) -> MultivariateNormalDiag:
        """p(z) = N(0, I), batch `()`, event `(latent_dim,)`."""
        return standard_normal_prior(self.latent_dim)

    def likelihood(self, z: Array) -> Independent:
        """z `(..., latent_dim)` -> p(x | z) with batch `(...)` and event `(D,)` (the decoder)."""
        return self.decoder(z)


def log_weights(model, x: Array, key: PRNGKeyArray, k: int) -> Array:
    """`log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x)`, `z_i ~ q(z | x)`, shape `(k, B)`.
    Pathwise in `q`'s parameters when `q` is reparameterized; otherwise the draws are stopped."""
    q = model.posterior(x)
    draw = q.rsample_and_log_prob if q.reparameterized else q.sample_and_log_prob
    z, log_q = draw(key, (k,))
    return model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - log_q


def elbo(model, x: Array, key: PRNGKeyArray, *, kl: Literal["closed", "mc"] = "closed", num_samples: int = 1) -> Array:
    """`ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))` from `num_samples` draws, shape `(B,)`.

    `kl="closed"` takes the KL from `kl_divergence`'s registry; `kl="mc"` estimates the whole bound
    as `mean_i log w_i`. For a discrete `q` the draws are stopped: the value is the true ELBO and
    its gradient reaches the encoder only through the KL (train with `categorical_vae`'s estimators).
    """
    if kl == "mc":
        return jnp.mean(log_weights(model, x, key, num_samples), 0)
    if kl != "closed":
        raise ValueError(f"kl must be 'closed' or 'mc', got {kl!r}")
    q = model.posterior(x)
    z = q.rsample(key, (num_samples,)) if q.reparameterized else q.sample(key, (num_samples,))
    return jnp.mean(model.likelihood(z).log_prob(x), 0) - kl_divergence(q, model.prior())


def iwae_bound(model, x: Array, key: PRNGKeyArray, k: int) -> Array:
    """`IWAE_k(x) = log (1/k) sum_i w_i` (Burda et al. 2016), shape `(B,)`. In expectation
    `ELBO = IWAE_1 <= IWAE_k <= IWAE_{k+1} <= log p(x)`."""
    return logsumexp(log_weights(model, x, key, k), 0) - math.log(k)


def estimate_log_likelihood(model, x: Array, key: PRNGKeyArray, k: int = 1000, chunk: int = 100) -> Array:
    """`log p(x) ~ IWAE_k(x)`, shape `(B,)`, drawing the `k` importance samples `chunk` at a time
    (one key each, from `split(key, k // chunk)`) under a running `logaddexp`: memory is that of
    `chunk` samples, whatever `k`. `chunk` must divide `k`."""
    if k < 1 or chunk < 1 or k % chunk:
        raise ValueError(f"estimate_log_likelihood: chunk ({chunk}) must be >= 1 and divide k ({k})")

    def add_chunk(total: Array, chunk_key: PRNGKeyArray) -> tuple[Array, None]:
        return jnp.logaddexp(total, logsumexp(log_weights(model, x, chunk_key, chunk), 0)), None

    keys = jax.random.split(key, k // chunk)
    dtype = jax.eval_shape(lambda: log_weights(model, x, keys[0], 1)).dtype
    total, _ = jax.lax.scan(add_chunk, jnp.full(x.shape[:1], -jnp.inf, dtype), keys)
    return total - math.log(k)

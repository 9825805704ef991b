"""The categorical VAE (Jang et al. 2017): N latent variables with K categories each, trained with
Gumbel-Softmax, straight-through Gumbel-Softmax or the score function (REINFORCE with a baseline).

Whatever trains it, the model is scored the same way: `vae.elbo` draws `z` from the discrete
posterior `q(z | x) = prod_n Cat(z_n; softmax(logits_n(x)))` and subtracts the closed-form KL to
the uniform prior, and `vae.estimate_log_likelihood` importance-samples with that posterior.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..distributions import Independent, OneHotCategorical, RelaxedOneHotCategorical, kl_divergence
from ..nn import mlp, over_leading_axes
from .vae import Decoder, Likelihood

Estimator = Literal["gumbel", "st-gumbel", "reinforce"]


class CategoricalVAE(eqx.Module):
    """`q(z | x)`: `num_latents` independent one-hot categoricals of `num_categories`, logits from
    an MLP; `p(z)` uniform; `p(x | z)` a `Decoder` of the flattened one-hot (or relaxed) `z`."""

    encoder: eqx.nn.Sequential
    decoder: Decoder
    num_latents: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        num_latents: int,
        num_categories: int,
        hidden: tuple[int, ...] = (128, 128),
        likelihood: Likelihood = "bernoulli",
        *,
        key: PRNGKeyArray,
    ):
        if num_latents < 1 or num_categories < 2:
            raise ValueError(
                f"CategoricalVAE: need num_latents >= 1 and num_categories >= 2, got {num_latents} and {num_categories}"
            )
        k_enc, k_dec = jax.random.split(key)
        size = num_latents * num_categories
        self.encoder = mlp(data_dim, size, hidden, activation=jnp.tanh, key=k_enc)
        self.decoder = Decoder(size, data_dim, tuple(reversed(hidden)), likelihood, key=k_dec)
        self.num_latents, self.num_categories = num_latents, num_categories

    def logits(self, x: Array) -> Array:
        """x `(B, D)` -> `(B, N, K)`."""
        return over_leading_axes(self.encoder, x).reshape(x.shape[:-1] + (self.num_latents, self.num_categories))

    def posterior(self, x: Array) -> Independent:
        """q(z | x): batch `(B,)`, event `(N, K)` (one-hot rows)."""
        return Independent(OneHotCategorical(self.logits(x), validate=False), 1)

    def relaxed_posterior(self, x: Array, temperature: Array, *, straight_through: bool = False) -> Independent:
        """The Concrete relaxation of `posterior(x)` at `temperature` (Gumbel-Softmax)."""
        relaxed = RelaxedOneHotCategorical(
            temperature, self.logits(x), straight_through=straight_through, validate=False
        )
        return Independent(relaxed, 1)

    def prior(self) -> Independent:
        """p(z): N independent uniform categoricals over K one-hot codes, event `(N, K)`."""
        return Independent(OneHotCategorical(jnp.zeros((self.num_latents, self.num_categories), jnp.float32)), 1)

    def likelihood(self, z: Array) -> Independent:
        """z `(..., N, K)` one-hot or relaxed -> p(x | z) with batch `(...)`."""
        return self.decoder(z.reshape(z.shape[:-2] + (self.num_latents * self.num_categories,)))


def annealed_temperature(step: Array, *, min_temperature: float = 0.5, anneal_rate: float = 1e-3) -> Array:
    """Jang et al. 2017's schedule, `max(min_temperature, exp(-r t))` at gradient step `t` (float32)."""
    return jnp.maximum(
        jnp.float32(min_temperature), jnp.exp(jnp.float32(-anneal_rate) * jnp.asarray(step, jnp.float32))
    )


def relaxed_objective(
    model: CategoricalVAE,
    x: Array,
    key: PRNGKeyArray,
    temperature: Array,
    *,
    straight_through: bool,
    num_samples: int = 1,
) -> Array:
    """`mean_i log p(x | y_i) - KL(q || p)`, `y_i` relaxed at `temperature` (one-hot in the forward pass
    with `straight_through`), shape `(B,)`. Pathwise in the encoder through `y`; biased for
    a positive temperature (the decoder sees relaxed codes), the bias shrinking as it falls."""
    y = model.relaxed_posterior(x, temperature, straight_through=straight_through).rsample(key, (num_samples,))
    return jnp.mean(model.likelihood(y).log_prob(x), 0) - kl_divergence(model.posterior(x), model.prior())


def reinforce_objective(
    model: CategoricalVAE, x: Array, key: PRNGKeyArray, baseline: Array, *, num_samples: int = 1
) -> tuple[Array, Array]:
    """The score-function surrogate, shape `(B,)`, and the learning signal `f = log p(x | z)`.

    Its value is the ELBO estimate `mean_i f(z_i) - KL`; its gradient is
    `mean_i [grad f(z_i) + (f(z_i) - b_i) grad log q(z_i | x)] - grad KL` (Williams 1992), an
    unbiased estimate of the ELBO's gradient: the decoder is trained pathwise, the encoder by the
    score. The baseline `b_i` is leave-one-out, `mean_{j != i} f(z_j)` (Kool et al. 2019), when
    `num_samples >= 2`, else the given `baseline` (a moving average kept by the training loop).
    """
    q = model.posterior(x)
    z, log_q = q.sample_and_log_prob(key, (num_samples,))  # z stopped, log_q differentiable
    signal = model.likelihood(z).log_prob(x)  # (S, B)
    if num_samples >= 2:
        b = (jnp.sum(signal, 0) - signal) / (num_samples - 1)
    else:
        b = jnp.broadcast_to(baseline.astype(signal.dtype), signal.shape)
    score_term = jax.lax.stop_gradient(signal - b) * log_q
    surrogate = signal + score_term - jax.lax.stop_gradient(score_term)  # value f, gradient as above
    return jnp.mean(surrogate, 0) - kl_divergence(q, model.prior()), signal

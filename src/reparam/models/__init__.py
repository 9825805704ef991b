"""Models built on reparam: Gaussian and categorical VAEs, and the exact-likelihood baselines they
are compared with; Bayesian neural networks by weight reparameterization and their baselines
(`reparam.models.bnn`)."""

from .baselines import (
    BernoulliMixture,
    fit_bernoulli_mixture,
    fit_independent_bernoulli,
    init_bernoulli_mixture,
    log_likelihood,
    map_objective,
    mixture_log_likelihood,
    run_em,
)
from .bnn import DropoutMLP, Ensemble, gradient_variance
from .categorical_vae import CategoricalVAE, annealed_temperature, reinforce_objective, relaxed_objective
from .vae import GaussianVAE, elbo, estimate_log_likelihood, iwae_bound, log_weights

__all__ = [
    "BernoulliMixture",
    "CategoricalVAE",
    "DropoutMLP",
    "Ensemble",
    "annealed_temperature",
    "GaussianVAE",
    "elbo",
    "estimate_log_likelihood",
    "fit_bernoulli_mixture",
    "fit_independent_bernoulli",
    "gradient_variance",
    "init_bernoulli_mixture",
    "iwae_bound",
    "log_likelihood",
    "log_weights",
    "map_objective",
    "mixture_log_likelihood",
    "reinforce_objective",
    "relaxed_objective",
    "run_em",
]

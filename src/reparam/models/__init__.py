"""Models built on reparam: exact-likelihood baselines (and the VAEs that are compared with them)."""

from .baselines import (
    BernoulliMixture, fit_bernoulli_mixture, fit_independent_bernoulli, init_bernoulli_mixture, log_likelihood,
    map_objective, mixture_log_likelihood, run_em,
)

__all__ = [
    "BernoulliMixture", "fit_bernoulli_mixture", "fit_independent_bernoulli", "init_bernoulli_mixture",
    "log_likelihood", "map_objective", "mixture_log_likelihood", "run_em",
]

"""Models built on reparam: Gaussian and categorical VAEs, and the exact-likelihood baselines they
are compared with; Bayesian neural networks by weight reparameterization and their baselines
(`reparam.models.bnn`); normalizing flows (`reparam.models.flows`); diffusion models
(`reparam.models.diffusion`, `diffusion_sampling`, `diffusion_likelihood`); sample distances
(`reparam.models.distances`)."""

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
from .diffusion import (
    PREDICTIONS,
    SCHEDULES,
    WEIGHTINGS,
    diffusion_loss,
    discrete_denoiser,
    gaussian_denoiser,
    guided,
    make_schedule,
)
from .diffusion_likelihood import (
    DECODERS,
    evaluate_bound,
    evaluate_ode,
    ode_bound,
    ode_log_likelihood,
    variational_bound,
)
from .diffusion_sampling import SAMPLERS
from .distances import MMD_SCALES, median_bandwidth, mmd, mmd2, sliced_wasserstein, sliced_wasserstein_along
from .flow_posteriors import FlowPosterior, FlowVAE, PerExample, flow_layers, parse_posterior
from .flows import (
    FLOWS,
    conditioned,
    density_loss,
    fit_density,
    fit_variational,
    flow_log_prob,
    make_flow,
    reverse_kl_loss,
    standard_normal,
)
from .objectives import warmed_elbo
from .vae import GaussianVAE, elbo, estimate_log_likelihood, iwae_bound, log_weights

__all__ = [
    "warmed_elbo",
    "FlowPosterior",
    "FlowVAE",
    "PerExample",
    "flow_layers",
    "parse_posterior",
    "PREDICTIONS",
    "SCHEDULES",
    "WEIGHTINGS",
    "diffusion_loss",
    "discrete_denoiser",
    "gaussian_denoiser",
    "guided",
    "make_schedule",
    "DECODERS",
    "evaluate_bound",
    "evaluate_ode",
    "ode_bound",
    "ode_log_likelihood",
    "variational_bound",
    "SAMPLERS",
    "MMD_SCALES",
    "median_bandwidth",
    "mmd",
    "mmd2",
    "sliced_wasserstein_along",
    "sliced_wasserstein",
    "FLOWS",
    "conditioned",
    "density_loss",
    "fit_density",
    "fit_variational",
    "flow_log_prob",
    "make_flow",
    "reverse_kl_loss",
    "standard_normal",
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

"""Reparameterized distributions: pathwise `rsample`, `log_prob`, entropy and KL.

Every distribution follows the contract of `Distribution` (`base.py`): samples have shape
`sample_shape + batch_shape + event_shape`, log-densities `sample_shape + batch_shape`.
See docs/architecture.md for the design.
"""

from .base import Distribution, NotReparameterizedError
from .beta import Beta
from .categorical import Bernoulli, Categorical, OneHotCategorical
from .dirichlet import Dirichlet
from .gamma import Gamma
from .gumbel import Gumbel
from .kl import kl_divergence, monte_carlo_kl, register_kl
from .laplace import Laplace
from .location_scale import LocationScale
from .logistic import Logistic
from .lognormal import LogNormal
from .mixture import ScaleMixtureNormal
from .multivariate_normal import MultivariateNormal, MultivariateNormalDiag
from .normal import Normal
from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical, hard_forward_soft_gradient
from .squashed import TanhNormal
from .transformed import Independent, Transformed
from .uniform import Uniform

__all__ = [
    "Bernoulli",
    "Beta",
    "Categorical",
    "Dirichlet",
    "Distribution",
    "Gamma",
    "Gumbel",
    "Independent",
    "Laplace",
    "LocationScale",
    "LogNormal",
    "Logistic",
    "MultivariateNormal",
    "MultivariateNormalDiag",
    "Normal",
    "NotReparameterizedError",
    "OneHotCategorical",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "ScaleMixtureNormal",
    "TanhNormal",
    "Transformed",
    "Uniform",
    "kl_divergence",
    "monte_carlo_kl",
    "register_kl",
    "hard_forward_soft_gradient",
]

"""reparam: differentiable sampling in JAX, the reparameterization trick end to end."""

from . import bijectors, distributions
from .distributions import *  # noqa: F401,F403

__version__ = "0.1.0"

"""reparam: differentiable sampling in JAX, the reparameterization trick end to end.

`z = g_phi(eps)` with parameter-free noise `eps` makes a sample a differentiable function of the
parameters. The distributions (`reparam.distributions`, re-exported here: `reparam.Normal`, ...)
give pathwise samples (`rsample`), exact log-densities, entropies and KL divergences; the bijectors
(`reparam.bijectors`) build new ones; `reparam.estimators` holds the gradient estimators to compare
against; `reparam.models` and `reparam.rl` are the VAEs and Soft Actor-Critic built on them.

The design (layers, contracts, the run layer) is in `docs/architecture.md`; the API reference is
built from these docstrings with `make docs`.
"""

from . import bijectors, distributions
from .distributions import *  # noqa: F401,F403

__version__ = "0.1.0"

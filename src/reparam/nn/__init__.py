"""Neural-network building blocks shared by every model: one MLP builder (`mlp`), one way to map a
per-example network over leading axes (`over_leading_axes`), Bayesian layers by weight
reparameterization (`BayesianDense`, `BayesianMLP`, `with_estimator`), and time-conditioned
denoisers for diffusion models (`TimeMLP`, `ResidualMLP`, with a class embedding and a null class)."""

from .bayesian import BayesianDense, BayesianMLP, Estimator, with_estimator
from .mlp import Activation, mlp, over_leading_axes
from .time import ResidualMLP, TimeEmbedding, TimeMLP, sinusoidal_embedding

__all__ = [
    "Activation",
    "BayesianDense",
    "BayesianMLP",
    "Estimator",
    "ResidualMLP",
    "TimeEmbedding",
    "TimeMLP",
    "mlp",
    "over_leading_axes",
    "sinusoidal_embedding",
    "with_estimator",
]

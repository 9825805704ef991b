"""Neural-network building blocks shared by every model: one MLP builder (`mlp`), one way to map a
per-example network over leading axes (`over_leading_axes`), and Bayesian layers by weight
reparameterization (`BayesianDense`, `BayesianMLP`, `with_estimator`)."""

from .bayesian import BayesianDense, BayesianMLP, Estimator, with_estimator
from .mlp import Activation, mlp, over_leading_axes

__all__ = ["Activation", "BayesianDense", "BayesianMLP", "Estimator", "mlp", "over_leading_axes", "with_estimator"]

"""Gradient estimators of `grad_params E_{z ~ dist_fn(params)}[f(z)]`, one signature for all:
`estimator(f, dist_fn, params, key, num_samples) -> grads` (grads has the structure of params;
`f` maps one sample to a scalar; `dist_fn(params)` has `batch_shape == ()`, use `Independent`).
"""

from .gumbel_softmax import gumbel_softmax, straight_through_gumbel
from .measure_valued import measure_valued
from .pathwise import pathwise
from .score_function import (
    MovingAverageState,
    StatefulEstimator,
    moving_average_baseline,
    score_function,
    score_function_control_variate,
    score_function_loo,
)
from .variance import Measurement, Statistics, measure

__all__ = [
    "Measurement",
    "MovingAverageState",
    "StatefulEstimator",
    "Statistics",
    "gumbel_softmax",
    "measure",
    "measure_valued",
    "moving_average_baseline",
    "pathwise",
    "score_function",
    "score_function_control_variate",
    "score_function_loo",
    "straight_through_gumbel",
]

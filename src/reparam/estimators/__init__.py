"""Gradient estimators of `grad_params E_{z ~ dist_fn(params)}[f(z)]`, one signature for all:
`estimator(f, dist_fn, params, key, num_samples) -> grads` (grads has the structure of params)."""

from .pathwise import pathwise
from .score_function import score_function

__all__ = ["pathwise", "score_function"]

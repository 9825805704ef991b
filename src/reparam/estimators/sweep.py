"""The estimators lab's measurements: every estimator by name, the literature's test problems by
name, and one compiled program per (estimator, samples) that measures bias, variance and SNR at any
value of a swept setting (the setting is traced, so a whole sweep compiles once)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import problems as P
from .gumbel_softmax import gumbel_softmax, straight_through_gumbel
from .measure_valued import measure_valued
from .pathwise import pathwise
from .score_function import moving_average_baseline, score_function, score_function_control_variate, score_function_loo
from .variance import Statistics, repeated_estimates, summarize

PROBLEMS = ("quadratic", "exponential", "cosine", "categorical", "bernoulli", "vae")
CONTINUOUS = ("quadratic", "exponential", "cosine", "vae")
DISCRETE = ("categorical", "bernoulli")
FAMILY = {
    "quadratic": "normal",
    "exponential": "normal",
    "cosine": "normal",
    "vae": "normal",
    "categorical": "categorical",
    "bernoulli": "bernoulli",
}
"""The distribution family each problem draws from."""
ESTIMATOR_NAMES = ("pathwise", "score", "score-ma", "score-rloo", "score-cv", "measure-valued", "gumbel", "st-gumbel")
CONTINUOUS_ONLY = ("pathwise", "measure-valued")
NEED_TWO = ("score-rloo", "score-cv")
"""Estimators that use the other samples of an estimate as a baseline: they need >= 2."""
DISCRETE_ONLY = ("gumbel", "st-gumbel")
SWEEPABLE = {
    "mu": CONTINUOUS[:3],
    "sigma": CONTINUOUS[:3],
    "k": ("quadratic",),
    "omega": ("cosine",),
    "target": ("bernoulli",),
    "logit": DISCRETE,
    "temperature": CONTINUOUS + DISCRETE,
}
"""Each sweepable setting and the problems it applies to."""


def estimator_by_name(name: str, temperature=0.5) -> Callable:
    """The estimator called `name` (one of `ESTIMATOR_NAMES`); `temperature` is the relaxations'."""
    return {
        "pathwise": pathwise,
        "score": score_function,
        "score-ma": moving_average_baseline(0.9),
        "score-rloo": score_function_loo,
        "score-cv": score_function_control_variate,
        "measure-valued": measure_valued,
        "gumbel": functools.partial(gumbel_softmax, temperature=temperature),
        "st-gumbel": functools.partial(straight_through_gumbel, temperature=temperature),
    }[name]


def build_problem(problem: str, settings: dict) -> P.Problem:
    """The test problem `problem` at `settings` (mu, sigma, k, omega, target, logit; values may be
    traced)."""
    mu, sigma = settings["mu"], settings["sigma"]
    if problem == "quadratic":
        return P.quadratic(settings["k"], mu, sigma)
    if problem == "exponential":
        return P.exponential(mu, sigma)
    if problem == "cosine":
        return P.cosine(settings["omega"], mu, sigma)
    if problem == "categorical":
        return P.categorical(logits=jnp.zeros(4).at[0].set(settings["logit"]))
    if problem == "bernoulli":
        return P.bernoulli(settings["target"], logits=jnp.zeros(3).at[0].set(settings["logit"]))
    return P.vae_quadratic()


def sweep_point(
    problem: str, settings: dict, swept: str, estimator: str, num_samples: int, num_repeats: int
) -> Callable:
    """A compiled `(value, key) -> Statistics` for one estimator: `num_repeats` independent
    `num_samples`-sample estimates at `settings` with `swept` set to `value`, against the exact
    gradient."""

    @jax.jit
    def at(value, key) -> Statistics:
        instance = build_problem(problem, {**settings, swept: value})
        temperature = value if swept == "temperature" else settings["temperature"]
        estimates = repeated_estimates(
            estimator_by_name(estimator, temperature),
            instance.f,
            instance.dist_fn,
            instance.params,
            key,
            num_repeats,
            num_samples,
        )
        return summarize(estimates, instance.exact_grad(instance.params))

    return at


def parameter_names(params) -> list[str]:
    """One name per scalar of a parameter pytree, e.g. `['mu', 'sigma']` or `['logits[0]', ...]`."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        base = jax.tree_util.keystr(path).strip(".") or "params"
        names += [base] if np.ndim(leaf) == 0 else [f"{base}[{i}]" for i in range(int(np.size(leaf)))]
    return names


def flat_values(tree) -> np.ndarray:
    """Every scalar of a pytree, in `parameter_names` order."""
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)])


def closed_form_variance(settings: dict, swept: str, values, estimator: str, num_samples: int) -> dict | None:
    """The quadratic problem's closed-form variance curves `{"mu": [...], "sigma": [...]}` over the
    swept `values` (pathwise and plain score function, Mohamed et al. 2020), else None."""
    if estimator not in ("pathwise", "score") or swept not in ("mu", "sigma", "k"):
        return None
    curves = {"mu": [], "sigma": []}
    for value in values:
        s = {**settings, swept: value}
        closed = P.quadratic_variance(s["k"], s["mu"], s["sigma"], num_samples)[estimator]
        curves["mu"].append(closed.mu)
        curves["sigma"].append(closed.sigma)
    return curves

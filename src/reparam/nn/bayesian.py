"""Bayesian neural networks by weight reparameterization: mean-field Normal posteriors over weights.

Weight uncertainty ("Bayes by Backprop", Blundell et al. 2015) is the reparameterization trick
applied to a network's weights: `W = M + S * eps`, `eps ~ N(0, I)`, with the posterior means `M`
and scales `S = min_scale + softplus(raw)` trained by maximising the evidence lower bound
`ELBO = E_q[log p(data | W)] - KL(q(W) || p(W))`:

    net = BayesianMLP(4, 1, (64, 64), key=key, estimator="local")
    y = net(x, key)                                   # x (B, 4) -> y (B, 1), one stochastic pass
    loss = -log_likelihood(y) + net.kl(Normal(0.0, 1.0))

`BayesianDense` states the three gradient estimators of the forward pass (`"weights"`, `"local"`,
`"flipout"`); `with_estimator` switches a model between them without touching the posterior.
Parameters are float32 arrays in equinox modules (`jit`, `vmap`, `grad` apply); the estimator is
static structure.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions.base import Distribution
from ..distributions.kl import closed_form_kl, kl_divergence
from ..distributions.normal import Normal
from .mlp import Activation, mlp

Estimator = Literal["weights", "local", "flipout"]
"""The gradient estimator of a Bayesian layer's forward pass: weight sampling, local
reparameterization or flipout (see `reparam.nn.bayesian`)."""

ESTIMATORS: tuple[str, ...] = get_args(Estimator)


def _check_estimator(owner: str, estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"{owner}: estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}")
    return estimator


def _check_scales(owner: str, init_scale: float, min_scale: float) -> None:
    init_scale, min_scale = float(init_scale), float(min_scale)
    if not (math.isfinite(min_scale) and min_scale >= 0):
        raise ValueError(f"{owner}: min_scale must be finite and >= 0, got {min_scale}")
    if not (math.isfinite(init_scale) and init_scale > min_scale):
        raise ValueError(f"{owner}: init_scale must be finite and > min_scale ({min_scale}), got {init_scale}")


def _inverse_softplus(y: float) -> float:
    """`raw` with `softplus(raw) = y > 0`: `y + log(1 - exp(-y))`, stable for small and large `y`."""
    return y + math.log(-math.expm1(-y))


def _cast(tree: PyTree, dtype) -> PyTree:
    """Every floating array of `tree` (e.g. a prior's parameters) cast to `dtype`."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


class BayesianDense(eqx.Module):
    """Mean-field Normal posterior over a dense layer's weights `(out, in)` and biases `(out,)`.

    `q(W) = N(M, S^2)`, `q(b) = N(m, s^2)` elementwise (`weight_loc`, `weight_scale`, `bias_loc`,
    `bias_scale`), `scale = min_scale + softplus(raw)`. The means start as `reparam.nn.mlp`
    initialises a layer (uniform on `+-1/sqrt(in)`), the scales at `init_scale` (small: the
    network starts nearly deterministic, as Blundell et al. recommend).

    `estimator` picks how `__call__` draws `y = x W^T + b` for `x` of shape `(B, in)`. All three
    are pathwise and give every example the same marginal law, so each is unbiased for any
    per-example expectation such as the ELBO's likelihood term; they differ in which noise is
    shared across the batch, hence in gradient variance and cost:

    - `"weights"` (Blundell et al. 2015): ONE draw `W = M + S * eps`, `b = m + s * eps_b` shared by
      the whole batch. Noise: `out * (in + 1)` normals; cost: one `(B, in) x (in, out)` matmul.
      Examples share the perturbation, so the gradient's variance does not fall as `1/B`.
    - `"local"` (local reparameterization, Kingma, Salimans & Welling 2015): given `x` the
      pre-activations are independent Normals, so they are drawn directly,
      `y = x M^T + m + sqrt(x^2 (S^2)^T + s^2) * eps`, `eps` of shape `(B, out)`: independent
      noise per example and unit, no weight sample. Noise: `B * out` normals; cost: two matmuls.
      Independent per-example noise makes the noise part of the minibatch gradient's variance
      fall as `1/B`.
    - `"flipout"` (Wen et al. 2018): one shared perturbation `dW = S * eps`, `db = s * eps_b`,
      decorrelated per example by random signs,
      `y = x M^T + m + ((x * r) dW^T) * t + db * t'` with `r` `(B, in)`, `t` and `t'` `(B, out)`
      independent +-1 entries. Flipping the signs of a symmetric, independent perturbation leaves
      its law unchanged, so each example's output has exactly the `"weights"` marginal, while
      two examples' outputs are uncorrelated (over the noise, for fixed `x`). Noise: `out * (in + 1)` normals plus
      `B * (in + 2 out)` signs; cost: two matmuls. (It needs only a weight-shaped perturbation,
      which is why it also serves layers where local reparameterization does not apply, such
      as convolutions.)

    Raises a one-line `ValueError` for sizes < 1, an unknown estimator, `min_scale < 0` or
    `init_scale <= min_scale`.
    """

    weight_loc: Array
    weight_raw: Array
    bias_loc: Array
    bias_raw: Array
    estimator: str = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        key: PRNGKeyArray,
        estimator: Estimator = "local",
        init_scale: float = 1e-3,
        min_scale: float = 1e-6,
    ):
        owner = "BayesianDense"
        if int(in_size) < 1 or int(out_size) < 1:
            raise ValueError(f"{owner}: sizes must be >= 1, got in {in_size}, out {out_size}")
        self.estimator = _check_estimator(owner, estimator)
        _check_scales(owner, init_scale, min_scale)
        (linear,) = mlp(int(in_size), int(out_size), (), key=key).layers  # the one initialisation
        raw = _inverse_softplus(float(init_scale) - float(min_scale))
        self.weight_loc = linear.weight
        self.bias_loc = linear.bias
        self.weight_raw = jnp.full(linear.weight.shape, raw, jnp.float32)
        self.bias_raw = jnp.full(linear.bias.shape, raw, jnp.float32)
        self.min_scale = float(min_scale)

    @property
    def in_size(self) -> int:
        """The number of inputs."""
        return self.weight_loc.shape[1]

    @property
    def out_size(self) -> int:
        """The number of outputs."""
        return self.weight_loc.shape[0]

    @property
    def weight_scale(self) -> Array:
        """`min_scale + softplus(weight_raw)`, shape `(out, in)`."""
        return self.min_scale + jax.nn.softplus(self.weight_raw)

    @property
    def bias_scale(self) -> Array:
        """`min_scale + softplus(bias_raw)`, shape `(out,)`."""
        return self.min_scale + jax.nn.softplus(self.bias_raw)

    def posterior(self) -> tuple[Normal, Normal]:
        """The posterior `(q(W), q(b))`: Normals with batch shapes `(out, in)` and `(out,)`.

        Built with `validate=False`: the scales are positive by construction."""
        return (
            Normal(self.weight_loc, self.weight_scale, validate=False),
            Normal(self.bias_loc, self.bias_scale, validate=False),
        )

    def mean(self) -> eqx.nn.Linear:
        """The deterministic layer at the posterior means, an `eqx.nn.Linear` (maps `(in,)` to `(out,)`)."""
        structure = eqx.filter_eval_shape(
            eqx.nn.Linear, self.in_size, self.out_size, dtype=self.weight_loc.dtype, key=jax.random.key(0)
        )  # structure only, no draw
        return eqx.tree_at(lambda linear: (linear.weight, linear.bias), structure, (self.weight_loc, self.bias_loc))

    def __call__(self, x: Array, key: PRNGKeyArray) -> Array:
        """One stochastic forward pass `y = x W^T + b`, `(W, b) ~ q`, by `self.estimator`.

        `x` has shape `(B, in)` (any leading axes: `(..., in) -> (..., out)`; "examples" are its
        leading indices) and the layer's dtype. `"weights"`: ONE weight draw for the whole batch;
        `"local"`: independent pre-activation noise per example and unit; `"flipout"`: one shared
        draw, sign-flipped per example. Pathwise-differentiable in the parameters.
        """
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_size:
            raise ValueError(f"BayesianDense: x must have shape (..., {self.in_size}), got {x.shape}")
        m, s = self.weight_loc, self.weight_scale
        mb, sb = self.bias_loc, self.bias_scale
        dtype = m.dtype
        if self.estimator == "local":
            mean = x @ m.T + mb
            variance = jnp.square(x) @ jnp.square(s).T + jnp.square(sb)
            return mean + jnp.sqrt(variance) * jax.random.normal(key, mean.shape, dtype)
        noise_key, sign_key = jax.random.split(key)
        eps = jax.random.normal(noise_key, (self.out_size * (self.in_size + 1),), dtype)
        eps_w = eps[: self.out_size * self.in_size].reshape(m.shape)
        eps_b = eps[self.out_size * self.in_size :]
        if self.estimator == "weights":
            return x @ (m + s * eps_w).T + (mb + sb * eps_b)
        # flipout
        signs = jax.random.rademacher(sign_key, x.shape[:-1] + (self.in_size + 2 * self.out_size,), dtype)
        r = signs[..., : self.in_size]
        t = signs[..., self.in_size : self.in_size + self.out_size]
        t_bias = signs[..., self.in_size + self.out_size :]
        return x @ m.T + mb + ((x * r) @ (s * eps_w).T) * t + (sb * eps_b) * t_bias

    def kl(self, prior: Distribution, key: PRNGKeyArray | None = None) -> Array:
        """`KL(q || prior)` summed over every weight and bias: a float32 scalar.

        `prior` is one elementwise distribution whose batch shape broadcasts against `(out, in)`
        and `(out,)` (usually a scalar one, e.g. `Normal(0, 1)` or `ScaleMixtureNormal(...)`); its
        parameters are cast to the layer's dtype. Via `reparam.kl_divergence`: the closed form when
        the pair has one (Normal prior: `log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2`
        per weight), otherwise the Monte Carlo fallback with `key` (required then) and ONE sample
        per weight, `log q(w) - log p(w)` at `w ~ q`: unbiased and pathwise-differentiable, its
        noise averages out over the many weights and steps.
        """
        weights, biases = self.posterior()
        prior = _cast(prior, self.weight_loc.dtype)
        if key is None:
            if closed_form_kl(weights, prior) is None or closed_form_kl(biases, prior) is None:
                raise ValueError(
                    f"BayesianDense.kl: no closed form KL(Normal || {type(prior).__name__}); pass key=... "
                    "for the Monte Carlo estimate."
                )
            weight_key = bias_key = None
        else:
            weight_key, bias_key = jax.random.split(key)
        return jnp.sum(kl_divergence(weights, prior, key=weight_key, num_samples=1)) + jnp.sum(
            kl_divergence(biases, prior, key=bias_key, num_samples=1)
        )


class BayesianMLP(eqx.Module):
    """`in -> hidden_sizes... -> out`, `BayesianDense` layers with `activation` between them.

    The posterior means start as `reparam.nn.mlp` initialises the network (one random draw), the
    scales at `init_scale`. `__call__` gives each layer an independent key; `estimator` is that of
    every layer (change it with `with_estimator`). Maps `(B, in)` to `(B, out)`.
    """

    layers: tuple[BayesianDense, ...]
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden_sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        estimator: Estimator = "local",
        activation: Activation = jax.nn.relu,
        init_scale: float = 1e-3,
        min_scale: float = 1e-6,
    ):
        owner = "BayesianMLP"
        sizes = (int(in_size), *(int(h) for h in hidden_sizes), int(out_size))
        if min(sizes) < 1:
            raise ValueError(
                f"{owner}: sizes must be >= 1, got in {in_size}, hidden {tuple(hidden_sizes)}, out {out_size}"
            )
        _check_estimator(owner, estimator)
        _check_scales(owner, init_scale, min_scale)
        net = mlp(sizes[0], sizes[-1], sizes[1:-1], key=key, activation=activation)  # the one initialisation
        layers = []
        for linear in (layer for layer in net.layers if isinstance(layer, eqx.nn.Linear)):
            structure = eqx.filter_eval_shape(
                BayesianDense,
                linear.weight.shape[1],
                linear.weight.shape[0],
                key=key,
                estimator=estimator,
                init_scale=init_scale,
                min_scale=min_scale,
            )  # structure only, no draw
            raw = _inverse_softplus(float(init_scale) - float(min_scale))
            arrays = (
                linear.weight,
                jnp.full(linear.weight.shape, raw, jnp.float32),
                linear.bias,
                jnp.full(linear.bias.shape, raw, jnp.float32),
            )
            layers.append(
                eqx.tree_at(lambda d: (d.weight_loc, d.weight_raw, d.bias_loc, d.bias_raw), structure, arrays)
            )
        self.layers = tuple(layers)
        self.activation = activation

    @property
    def estimator(self) -> str:
        """The estimator of the layers (that of the first where they differ)."""
        return self.layers[0].estimator

    def __call__(self, x: Array, key: PRNGKeyArray) -> Array:
        """One stochastic forward pass, `(B, in) -> (B, out)` (any leading axes), an independent
        key per layer, `activation` between layers (none after the last)."""
        keys = jax.random.split(key, len(self.layers))
        for i, layer in enumerate(self.layers):
            x = layer(x, keys[i])
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x

    def kl(self, prior: Distribution, key: PRNGKeyArray | None = None) -> Array:
        """`KL(q || prior)` summed over every layer's weights and biases (see `BayesianDense.kl`;
        `key` is split per layer and needed only for a prior without a closed form)."""
        keys = [None] * len(self.layers) if key is None else list(jax.random.split(key, len(self.layers)))
        return sum((layer.kl(prior, k) for layer, k in zip(self.layers, keys, strict=True)), jnp.zeros((), jnp.float32))

    def mean(self) -> eqx.nn.Sequential:
        """The deterministic network at the posterior means, built like `reparam.nn.mlp`'s: an
        `eqx.nn.Sequential` of `eqx.nn.Linear` and `eqx.nn.Lambda(activation)`, mapping `(in,)` to `(out,)`."""
        modules: list[eqx.Module] = []
        for i, layer in enumerate(self.layers):
            modules.append(layer.mean())
            if i < len(self.layers) - 1:
                modules.append(eqx.nn.Lambda(self.activation))
        return eqx.nn.Sequential(modules)


def with_estimator(model: PyTree, estimator: Estimator) -> PyTree:
    """`model` with every `BayesianDense` inside it (at any depth of any pytree) switched to
    `estimator`: the same posterior arrays (shared, not copied), another gradient estimator.
    Raises a one-line `ValueError` for an unknown estimator."""
    _check_estimator("with_estimator", estimator)

    def switch(leaf):
        if not isinstance(leaf, BayesianDense):
            return leaf
        layer = copy.copy(leaf)
        object.__setattr__(layer, "estimator", estimator)  # a static field: not reachable by eqx.tree_at
        return layer

    return jax.tree_util.tree_map(switch, model, is_leaf=lambda node: isinstance(node, BayesianDense))

"""Bayesian neural networks by weight reparameterization, and the baselines they are compared with.

A method names how a network's weights are treated (`METHODS`):

- `"weights"`, `"local"`, `"flipout"`: a mean-field Gaussian posterior `q(w) = N(mu, sigma^2)` over
  every weight and bias (`reparam.nn.BayesianMLP`), trained by maximising the ELBO with the named
  gradient estimator: one weight draw per minibatch (Blundell et al. 2015, "Bayes by Backprop"),
  the local reparameterization trick (Kingma, Salimans & Welling 2015: the pre-activations are
  drawn, independently per example), or Flipout (Wen et al. 2018: one shared draw decorrelated
  per example by random sign flips). All three estimate the gradient of the same objective.
- `"map"`: one `reparam.nn.mlp` at the maximum a posteriori weights of a Gaussian prior (an L2
  penalty, "weight decay").
- `"dropout"`: MC dropout (Gal & Ghahramani 2016): the same network with dropout on the input of
  every weight layer that reads a hidden layer, kept on at prediction, so each mask is one draw.
- `"ensemble"`: a deep ensemble (Lakshminarayanan, Pritzel & Blundell 2017): `M` independently
  initialised networks, stacked on a leading axis (`eqx.filter_vmap`) and trained at once.

A task is `"regression"` (scalar targets, standardised; the network has two outputs, the mean and
a raw value mapped to a heteroscedastic standard deviation `softplus(raw) + 1e-3`, so the
likelihood is `N(y; m(x), s(x)^2)`) or `"classification"` (`K` logits, a Categorical likelihood).

The pieces: `init_model` builds a model, `make_loss` gives the loss `reparam.training` minimises,
`predict` draws predictions, `evaluate` scores them on a `reparam.data.tables.Table`, and
`gradient_variance` measures the three estimators' gradient variance at one posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..distributions import Categorical, Distribution, Normal
from ..estimators.variance import summarize
from ..nn import BayesianDense, BayesianMLP, mlp, over_leading_axes, with_estimator
from . import uncertainty
from .vae import positive

__all__ = [
    "BAYESIAN_METHODS",
    "METHODS",
    "TASKS",
    "DropoutMLP",
    "Ensemble",
    "evaluate",
    "forward",
    "gradient_variance",
    "init_model",
    "kl_weight",
    "l2_penalty",
    "likelihood",
    "make_loss",
    "predict",
]

METHODS = ("weights", "local", "flipout", "map", "dropout", "ensemble")
"""Every method `init_model` builds: the three Bayesian estimators, then the baselines."""
BAYESIAN_METHODS = ("weights", "local", "flipout")
"""The methods with a variational posterior over the weights (a `reparam.nn.BayesianMLP`)."""
TASKS = ("regression", "classification")
"""`"regression"`: scalar float targets, Gaussian likelihood; `"classification"`: int labels."""


def _check(method: str, task: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


# ---------------------------------------------------------------------------------------------------
# Models


def _linear_batch(linear: eqx.nn.Linear, h: Array) -> Array:
    """`h @ W^T + b` for a batch `h` `(B, in)`: `(B, out)`."""
    return h @ linear.weight.T + linear.bias


class DropoutMLP(eqx.Module):
    """MC dropout (Gal & Ghahramani 2016) on one `reparam.nn.mlp`.

    Before every affine layer that reads a hidden layer, each unit of its input is kept with
    probability `1 - rate` and the kept ones are scaled by `1 / (1 - rate)` (inverted dropout), so
    the expected pre-activation is unchanged. The inputs themselves are not dropped (on a one- or
    few-feature regression, dropping an input feature is dropping the problem). Dropout stays on at
    prediction: each mask is one draw from the approximate posterior, a Bernoulli variational
    family over the rows of the weight matrices. Masks are drawn independently per example.
    """

    net: eqx.nn.Sequential
    rate: float = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden_sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        rate: float = 0.1,
        activation: Callable[[Array], Array] = jax.nn.relu,
    ):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropoutMLP: rate must be in [0, 1), got {rate}")
        self.net = mlp(in_size, out_size, hidden_sizes, key=key, activation=activation)
        self.rate = float(rate)

    def __call__(self, x: Array, key: PRNGKeyArray) -> Array:
        """`x` `(B, in)` -> outputs `(B, out)` under one draw of the dropout masks from `key`."""
        layers = self.net.layers
        num_masks = sum(isinstance(layer, eqx.nn.Linear) for layer in layers) - 1
        keys = jax.random.split(key, max(num_masks, 1))
        h, seen = x, 0
        for layer in layers:
            if isinstance(layer, eqx.nn.Linear):
                if seen > 0 and self.rate > 0.0:
                    keep = jax.random.bernoulli(keys[seen - 1], 1.0 - self.rate, h.shape)
                    h = jnp.where(keep, h / (1.0 - self.rate), 0.0).astype(h.dtype)
                h = _linear_batch(layer, h)
                seen += 1
            else:
                h = layer(h)
        return h


class Ensemble(eqx.Module):
    """A deep ensemble (Lakshminarayanan et al. 2017): `num_members` `reparam.nn.mlp`s with
    independent initialisations, stacked: every array of `members` has a leading axis of size
    `num_members` (built and applied with `eqx.filter_vmap`, so the members train in one program).
    Members share the minibatches; their diversity comes from the initialisation, which the paper
    found sufficient (its adversarial-training term is not used here)."""

    members: eqx.nn.Sequential
    num_members: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden_sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        num_members: int = 5,
        activation: Callable[[Array], Array] = jax.nn.relu,
    ):
        if num_members < 1:
            raise ValueError(f"Ensemble: num_members must be >= 1, got {num_members}")
        make = lambda k: mlp(in_size, out_size, hidden_sizes, key=k, activation=activation)
        self.members = eqx.filter_vmap(make)(jax.random.split(key, num_members))
        self.num_members = int(num_members)

    def member(self, index: int) -> eqx.nn.Sequential:
        """Member `index` alone: a `reparam.nn.mlp` network on one vector `(in,) -> (out,)`."""
        return jax.tree.map(lambda a: a[index] if eqx.is_array(a) else a, self.members)

    def __call__(self, x: Array, key: PRNGKeyArray | None = None) -> Array:
        """`x` `(B, in)` -> every member's outputs `(num_members, B, out)` (`key` unused)."""
        return eqx.filter_vmap(lambda net: over_leading_axes(net, x))(self.members)


def init_model(
    method: str,
    task: str,
    in_size: int,
    num_outputs: int,
    hidden_sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    init_scale: float = 1e-3,
    min_scale: float = 1e-6,
    dropout_rate: float = 0.1,
    num_members: int = 5,
    activation: Callable[[Array], Array] = jax.nn.relu,
) -> eqx.Module:
    """The network `method` trains, for inputs `(in_size,)`, on hidden layers `hidden_sizes`.

    `num_outputs`: the number of classes `K` for classification (the head has `K` logits); for
    regression the number of target dimensions, which must be 1 (0, a regression table's
    `num_classes`, is taken as 1; the head has 2 units: the mean and the raw standard deviation),
    so `init_model(method, table.task, d, table.num_classes, ...)` fits any `Table`.

    Bayesian methods: a `BayesianMLP` with that estimator, its posterior scales starting at
    `init_scale` and floored at `min_scale`. `"map"`: a `reparam.nn.mlp` (an `eqx.nn.Sequential`
    on one vector). `"dropout"`: a `DropoutMLP` with `dropout_rate`. `"ensemble"`: an `Ensemble`
    of `num_members`. All on the same widths and `activation`. The prior is not part of the model:
    it belongs to the objective (`make_loss(prior=...)`).
    """
    _check(method, task)
    if task == "regression":
        if num_outputs not in (0, 1):
            raise ValueError(
                f"init_model: regression targets are scalars (num_outputs 1, or a regression table's "
                f"num_classes 0), got {num_outputs}"
            )
        out_size = 2
    else:
        if num_outputs < 2:
            raise ValueError(f"init_model: classification needs num_outputs >= 2 classes, got {num_outputs}")
        out_size = int(num_outputs)
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if method in BAYESIAN_METHODS:
        return BayesianMLP(
            in_size,
            out_size,
            hidden_sizes,
            key=key,
            estimator=method,
            activation=activation,
            init_scale=init_scale,
            min_scale=min_scale,
        )
    if method == "map":
        return mlp(in_size, out_size, hidden_sizes, key=key, activation=activation)
    if method == "dropout":
        return DropoutMLP(in_size, out_size, hidden_sizes, key=key, rate=dropout_rate, activation=activation)
    return Ensemble(in_size, out_size, hidden_sizes, key=key, num_members=num_members, activation=activation)


def forward(model: eqx.Module, method: str, x: Array, key: PRNGKeyArray) -> Array:
    """The raw network outputs for a batch `x` `(B, in)` under one draw from `key`: `(B, out)`, or
    `(num_members, B, out)` for an ensemble. Bayesian methods draw weights (or pre-activations) with
    the model's estimator, dropout draws masks, `map` and `ensemble` ignore `key`."""
    if method in BAYESIAN_METHODS or method == "dropout":
        return model(x, key)
    if method == "map":
        return over_leading_axes(model, x)
    if method == "ensemble":
        return model(x)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def likelihood(task: str, outputs: Array) -> Distribution:
    """`p(y | x, w)` from the raw outputs `(..., out)`, with batch shape `(...)`.

    Regression: `Normal(outputs[..., 0], softplus(outputs[..., 1]) + 1e-3)` (standardised units);
    classification: `Categorical(logits=outputs)`. Built with `validate=False` (the scale is
    positive by construction).
    """
    if task == "regression":
        return Normal(outputs[..., 0], positive(outputs[..., 1]), validate=False)
    if task == "classification":
        return Categorical(outputs, validate=False)
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


# ---------------------------------------------------------------------------------------------------
# Objectives


def kl_weight(step: Array, kl_warmup_steps: int) -> Array:
    """The KL warm-up weight `beta_t = min(1, (t + 1) / kl_warmup_steps)` after `t` gradient steps
    (float32 scalar; 1 throughout when `kl_warmup_steps` is 0): the first step already weighs the KL
    by `1 / kl_warmup_steps`, step `kl_warmup_steps - 1` and later by 1."""
    if kl_warmup_steps < 0:
        raise ValueError(f"kl_warmup_steps must be >= 0, got {kl_warmup_steps}")
    if kl_warmup_steps == 0:
        return jnp.ones((), jnp.float32)
    t = jnp.asarray(step).astype(jnp.float32)
    return jnp.minimum(1.0, (t + 1.0) / kl_warmup_steps)


def l2_penalty(params: PyTree, axis: int | None = None) -> Array:
    """`||w||^2`, the sum of squares of every floating array in `params` (weights and biases).

    With `axis=0` (an `Ensemble`'s stacked members) one sum per entry of the leading axis: `(M,)`.
    """
    leaves = jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array))
    if axis is None:
        return sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)
    return sum(jnp.sum(jnp.square(leaf).reshape(leaf.shape[0], -1), axis=1) for leaf in leaves)


def _weight_decay(weight_decay: float | None, prior: Distribution | None) -> float:
    """The L2 coefficient of the baselines: given, or `1 / s^2` from a `Normal(0, s)` prior, or 0."""
    if weight_decay is not None:
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        return float(weight_decay)
    if prior is None:
        return 0.0
    if isinstance(prior, Normal) and prior.loc.ndim == 0 and float(prior.loc) == 0.0:
        return float(1.0 / jnp.square(prior.scale))
    raise ValueError(
        f"make_loss: the baselines' weight decay is derived from a scalar Normal(0, s) prior (1/s^2), "
        f"not from {type(prior).__name__}; pass weight_decay= explicitly"
    )


def make_loss(
    method: str,
    task: str,
    *,
    num_train: int,
    prior: Distribution | None = None,
    weight_decay: float | None = None,
    kl_warmup_steps: int = 0,
    static: PyTree = None,
) -> Callable:
    """`loss(params, batch, key, state) -> (loss, metrics)` for `reparam.training` (minimised).

    `batch = (x, y)`: `x` `(B, in)`, `y` `(B,)` (float targets or int labels). `params` is the
    model's array half when `static` (its other half, from `eqx.partition(model,
    eqx.is_inexact_array)`) is given, as `training.make_epoch` needs; with `static=None`, `params`
    is the whole model, as `training.fit` passes it. `state` is the `TrainState` before the step;
    only `state.step` is read, and only when `kl_warmup_steps > 0` (otherwise `None` will do).

    Bayesian methods: the negative ELBO per training example,

        loss = -(1/B) sum_b log p(y_b | x_b, w_b) + beta_t KL(q || p) / num_train,

    with `w_b` the estimator's draw (one per example for `local` / `flipout`, one per batch for
    `weights`) and `beta_t = kl_weight(state.step, kl_warmup_steps)`. Both terms are per example:
    the full-data negative ELBO is `-sum_n E_q log p(y_n | x_n, w) + KL(q || p)`, and a uniformly
    drawn minibatch's mean likelihood term is unbiased for the full sum divided by `N`, so the KL
    must be divided by the data-set size `N = num_train`, never by the batch size nor per batch
    count. Then the expected loss is exactly the negative ELBO / N at any batch size (and the
    gradient scale does not depend on the batch size either). Dividing the KL by the batch size,
    or adding it whole to a batch-mean likelihood, is the common mistake (a prior weighted
    `N / B` times too much, or `N` times): `num_train` is therefore required, not inferred from
    the batch. `prior` is required (a `Normal` uses the closed-form KL, a `ScaleMixtureNormal`
    a one-sample Monte Carlo KL drawn with its own key). Metrics: `nll` (the likelihood term),
    `kl` (`KL / num_train`, unweighted) and `beta`.

    Baselines: `-(1/B) sum_b log p(y_b | x_b, w) + weight_decay / (2 N) ||w||^2`, the MAP objective
    of a `Normal(0, 1/sqrt(weight_decay))` prior on every weight and bias, per training example.
    `weight_decay` defaults to `1 / s^2` for a `Normal(0, s)` `prior` (the same prior as the
    Bayesian methods), to 0 without a prior. `dropout` draws masks from `key`; an ensemble's loss
    is the sum of its members' losses (each member's gradient is its own loss's gradient). Metrics:
    `nll` and `penalty` (the L2 term), averaged over members for an ensemble.
    """
    _check(method, task)
    if not isinstance(num_train, (int, np.integer)) or num_train < 1:
        raise ValueError(f"make_loss: num_train (the training-set size N) must be a positive int, got {num_train!r}")
    num_train = int(num_train)  # a Python int: weakly typed, keeps the loss float32
    kl_weight(0, kl_warmup_steps)  # validates kl_warmup_steps

    def model_of(params):
        return params if static is None else eqx.combine(params, static)

    if method in BAYESIAN_METHODS:
        if prior is None:
            raise ValueError(f"make_loss: method {method!r} needs a prior, e.g. prior=Normal(0.0, 1.0)")

        def bayesian_loss(params, batch, key, state):
            model = model_of(params)
            x, y = batch
            k_forward, k_kl = jax.random.split(key)
            nll = -jnp.mean(likelihood(task, forward(model, method, x, k_forward)).log_prob(y))
            kl = model.kl(prior, key=k_kl) / num_train
            beta = kl_weight(state.step if kl_warmup_steps else 0, kl_warmup_steps)
            return nll + beta * kl, {"nll": nll, "kl": kl, "beta": beta}

        return bayesian_loss

    decay = _weight_decay(weight_decay, prior)
    scale = decay / (2.0 * num_train)

    def baseline_loss(params, batch, key, state):
        model = model_of(params)
        x, y = batch
        log_p = likelihood(task, forward(model, method, x, key)).log_prob(y)  # (B,) or (M, B)
        if method == "ensemble":
            nll = -jnp.mean(log_p, axis=-1)  # (M,)
            penalty = scale * l2_penalty(model.members, axis=0)
            return jnp.sum(nll + penalty), {"nll": jnp.mean(nll), "penalty": jnp.mean(penalty)}
        nll = -jnp.mean(log_p)
        penalty = scale * l2_penalty(model)
        return nll + penalty, {"nll": nll, "penalty": penalty}

    return baseline_loss


# ---------------------------------------------------------------------------------------------------
# Prediction and evaluation


def _output_draws(model: eqx.Module, method: str, x: Array, key: PRNGKeyArray, num_samples: int) -> Array:
    """Raw outputs `(S, N, out)`: `S = num_samples` draws (ensemble: its members; map: 1)."""
    if method == "map":
        return forward(model, method, x, key)[None]
    if method == "ensemble":
        return forward(model, method, x, key)
    if num_samples < 1:
        raise ValueError(f"predict: num_samples must be >= 1, got {num_samples}")
    return jax.vmap(lambda k: forward(model, method, x, k))(jax.random.split(key, num_samples))


def predict(
    model: eqx.Module, method: str, task: str, x: Array, key: PRNGKeyArray, num_samples: int
) -> Array | tuple[Array, Array]:
    """Draws from the predictive distribution at inputs `x` `(N, in)`.

    Classification: `prob_samples` `(S, N, K)`, the class probabilities under each draw.
    Regression: `(mean_samples, std_samples)`, each `(S, N)`, in standardised units: draw `s`
    predicts `N(mean_samples[s], std_samples[s]^2)`, so the predictive is their equal mixture
    (epistemic spread: the variance of the means; aleatoric: the mean of the variances).

    The draws: Bayesian methods `S = num_samples` weight draws from `q` (vmapped over keys) with the
    model's own estimator: `weights` draws one network per sample for the whole batch (coherent
    function draws, what a picture of sampled functions needs), `local` and `flipout` draw per
    example, which gives every example the same marginal predictive; `dropout` `S` masks; an
    ensemble its `num_members` members (`num_samples` and `key` ignored); `map` `S = 1`.
    Pure; jit with `eqx.filter_jit` (`method`, `task`, `num_samples` static).
    """
    _check(method, task)
    outputs = _output_draws(model, method, x, key, num_samples)
    if task == "classification":
        return jax.nn.softmax(outputs, axis=-1)
    return outputs[..., 0], positive(outputs[..., 1])


_predict = eqx.filter_jit(predict)


def evaluate(model: eqx.Module, method: str, table, key: PRNGKeyArray, num_samples: int = 100) -> dict[str, float]:
    """Test metrics of `model` on `table` (a `reparam.data.tables.Table`), as floats.

    Classification: `models.uncertainty.classification_metrics` of the test predictions
    (`test_nll`, `test_accuracy`, `ece`, `brier`, `entropy`, `mutual_information`), plus
    `ood_auroc` when `table.x_ood` is present: the AUROC of the entropy of the mean predictive at
    telling `x_ood` (higher entropy expected) from `x_test` (`uncertainty.auroc`; 0.5 is chance).
    Regression: `models.uncertainty.regression_metrics` (`test_nll`, `test_rmse`) in the target's
    original units (`table.y_scale`). `num_samples` draws per input as in `predict`.
    """
    task = table.task
    k_test, k_ood = jax.random.split(key)
    if task == "classification":
        probs = _predict(model, method, task, table.x_test, k_test, num_samples)
        metrics = dict(uncertainty.classification_metrics(probs, table.y_test))
        if getattr(table, "x_ood", None) is not None:
            probs_ood = _predict(model, method, task, table.x_ood, k_ood, num_samples)
            entropy_in = uncertainty.predictive_entropy(jnp.mean(probs, axis=0))
            entropy_out = uncertainty.predictive_entropy(jnp.mean(probs_ood, axis=0))
            metrics["ood_auroc"] = uncertainty.auroc(entropy_in, entropy_out)
    else:
        mean_samples, std_samples = _predict(model, method, task, table.x_test, k_test, num_samples)
        metrics = dict(uncertainty.regression_metrics(mean_samples, std_samples, table.y_test, y_scale=table.y_scale))
    return {name: float(value) for name, value in metrics.items()}


# ---------------------------------------------------------------------------------------------------
# Gradient variance of the three estimators


def _dense_layers(model: PyTree) -> list:
    """The `BayesianDense` layers of `model` (or of a gradient shaped like it), input first."""
    is_dense = lambda node: isinstance(node, BayesianDense)
    return [node for node in jax.tree.leaves(model, is_leaf=is_dense) if is_dense(node)]


def _first_and_last_means(grads: PyTree) -> tuple[Array, Array]:
    """The `weight_loc` entries of the first and the last `BayesianDense` layer of `grads`."""
    layers = _dense_layers(grads)
    return layers[0].weight_loc, layers[-1].weight_loc


def gradient_variance(
    model: eqx.Module,
    task: str,
    data: tuple[Array, Array],
    key: PRNGKeyArray,
    *,
    batch_size: int,
    num_repeats: int,
    num_train: int | None = None,
    prior: Distribution,
) -> dict[str, dict[str, float]]:
    """The variance of the minibatch gradient of the negative ELBO per example (`make_loss`) with
    respect to the first and the last layer's weight means, per estimator (Kingma et al. 2015,
    Table 1): `{"weights" | "local" | "flipout": {"first_layer": v, "last_layer": v}}`.

    The three estimators are measured at the same posterior (`model`, a `BayesianMLP`, switched
    with `reparam.nn.with_estimator`) and the same batch size. Each of `num_repeats` repeats draws
    a minibatch of `batch_size` examples uniformly without replacement from `data = (x, y)` and
    fresh noise; the same minibatches serve all three estimators (common random numbers for the
    data). `v` is the unbiased variance over the repeats of each element of the weight-mean
    gradient (`estimators.variance.summarize`), averaged over the elements, so it holds both the
    minibatch's and the noise's variance, as in the paper. `num_train` (the `N` of the KL term)
    defaults to the number of examples in `data`. One compiled `vmap` over repeats per estimator.
    """
    x, y = data
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"gradient_variance: batch_size must be in 1..{n}, got {batch_size}")
    if num_repeats < 2:
        raise ValueError(f"gradient_variance: num_repeats must be >= 2 to estimate a variance, got {num_repeats}")
    if not _dense_layers(model):
        raise ValueError("gradient_variance: model has no BayesianDense layers; pass a Bayesian model (BayesianMLP)")
    num_train = n if num_train is None else num_train
    results: dict[str, dict[str, float]] = {}
    for estimator in BAYESIAN_METHODS:
        params, static = eqx.partition(with_estimator(model, estimator), eqx.is_inexact_array)
        loss = make_loss(estimator, task, num_train=num_train, prior=prior, static=static)

        def one(k, params=params, loss=loss):
            k_batch, k_loss = jax.random.split(k)
            index = jax.random.permutation(k_batch, n)[:batch_size]
            batch = (jnp.take(x, index, axis=0), jnp.take(y, index, axis=0))
            return _first_and_last_means(jax.grad(lambda p: loss(p, batch, k_loss, None)[0])(params))

        run = jax.jit(lambda k, one=one: jax.vmap(one)(jax.random.split(k, num_repeats)))
        estimates = run(key)
        stats = summarize(estimates, jax.tree.map(lambda g: jnp.zeros_like(g[0]), estimates))
        first, last = (float(jnp.mean(v)) for v in stats.variance)
        results[estimator] = {"first_layer": first, "last_layer": last}
    return results

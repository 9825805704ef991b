"""Normalizing flows as models: factories returning `Transformed`, their losses and fitting helpers.

A flow is `x = f_theta(eps)`, `eps ~ N(0, I_d)`, with `f` a stack of identical bijector layers
applied by one `lax.scan` (`reparam.bijectors.Scan`), so an N-layer flow compiles one layer:

    flow = make_flow("nsf", 2, 8, key=key)                 # Transformed(N(0, I_2), Scan(8 units))
    log_p = flow.log_prob(x)                               # density: one inverse pass
    z, log_q = flow.rsample_and_log_prob(key, (256,))      # sampling, scored without inverting

The repeated unit of each flow (`FLOWS`), forward = the sampling direction:

- `realnvp`: affine coupling (Dinh et al. 2017; `MaskedCoupling` with a `CouplingMLP`, the first
  `d // 2` coordinates kept), then a permutation.
- `maf` / `iaf`: `MaskedAutoregressiveAffine` (MADE conditioner) in mode maf (one pass for the
  density, `d` to sample) or iaf (one pass to sample and score its own samples, `d` for the density
  of a given value), then a permutation.
- `nsf`: rational-quadratic spline coupling (Durkan et al. 2019; `SplineCoupling`, `num_bins` bins
  on `[-bound, bound]`, identity tails), then a permutation.
- `planar`, `radial`, `sylvester`: one such layer (Rezende & Mohamed 2015; van den Berg et al. 2018).

The permutation is the reversal for `d = 2` (the couplings then alternate which coordinate they
transform) and a random one per layer for `d > 2`; `actnorm=True` adds an `ActNorm` to the unit.
Conditional flows (`context_size > 0`, maf/iaf/nsf): `conditioned(flow, context)`.

Fitting (on `reparam.training`'s loop; the base distribution is held fixed by a stop-gradient):

- maximum likelihood: `density_loss()` (mean NLL in nats), `fit_density` (minibatch epochs,
  validation split, early stopping: `training.fit`);
- reverse-KL variational inference of an unnormalised target `p~ = Z p`: `reverse_kl_loss`,
  `loss = E_q[log q(z) - log p~(z)] = KL(q || p) - log Z`, and `fit_variational` (one `lax.scan`
  over `training.make_step` steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jaxtyping import Array, DTypeLike, PRNGKeyArray, PyTree

from .. import training
from ..bijectors.actnorm import ActNorm
from ..bijectors.autoregressive import MADE, MaskedAutoregressiveAffine, condition
from ..bijectors.base import Bijector
from ..bijectors.chain import Chain
from ..bijectors.coupling import CouplingMLP, MaskedCoupling, SplineCoupling
from ..bijectors.permute import Permute, Reverse
from ..bijectors.planar import Planar
from ..bijectors.radial import Radial
from ..bijectors.scan import Scan, stack_layers
from ..bijectors.sylvester import Sylvester
from ..distributions.normal import Normal
from ..distributions.transformed import Independent, Transformed
from ..nn import mlp

__all__ = [
    "FLOWS",
    "check_flow_settings",
    "conditioned",
    "density_loss",
    "fit_density",
    "fit_variational",
    "flow_log_prob",
    "frozen_base",
    "make_flow",
    "make_steps",
    "reverse_kl_loss",
    "standard_normal",
]

FLOWS = ("realnvp", "maf", "iaf", "nsf", "planar", "radial", "sylvester")
"""The flow types `make_flow` builds."""
COUPLING_FLOWS = ("realnvp", "nsf")
"""Flows that split the coordinates in two (need `dim >= 2`)."""
CONDITIONAL_FLOWS = ("maf", "iaf", "nsf")
"""Flows whose layers take a context vector (`context_size > 0`)."""


def standard_normal(dim: int, dtype: DTypeLike = jnp.float32) -> Independent:
    """`N(0, I_dim)` as one distribution with `event_shape (dim,)`: the base of every flow."""
    return Independent(Normal(np.zeros(dim, dtype), np.ones(dim, dtype)), 1)


def check_flow_settings(name: str, dim: int, layers: int, hidden_sizes: Sequence[int], context_size: int) -> None:
    """One-line ValueErrors for a flow `make_flow` cannot build."""
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; choose one of {', '.join(FLOWS)}")
    for what, value, least in (("dim", dim, 1), ("layers", layers, 1), ("context_size", context_size, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} flow: {what} must be an integer >= {least}, got {value!r}")
    if name in COUPLING_FLOWS and dim < 2:
        raise ValueError(f"{name} flow: a coupling flow needs dim >= 2 (it splits the coordinates), got dim {dim}")
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden_sizes):
        raise ValueError(f"{name} flow: hidden sizes must be positive integers, got {tuple(hidden_sizes)}")
    if context_size and name not in CONDITIONAL_FLOWS:
        raise ValueError(
            f"{name} flow has no conditional version; context_size > 0 needs one of {', '.join(CONDITIONAL_FLOWS)}"
        )


def make_flow(
    name: str,
    dim: int,
    layers: int,
    *,
    key: PRNGKeyArray,
    hidden_sizes: Sequence[int] = (64, 64),
    num_bins: int = 8,
    bound: float = 4.0,
    context_size: int = 0,
    actnorm: bool = False,
    num_vectors: int | None = None,
    dtype: DTypeLike = jnp.float32,
) -> Transformed:
    """A `layers`-unit flow of type `name` (one of `FLOWS`) on `R^dim`: `Transformed(N(0, I), Scan)`.

    `hidden_sizes`: the conditioner networks' hidden widths (realnvp, maf, iaf, nsf; relu).
    `num_bins`, `bound`: the splines of `nsf` (identity outside `[-bound, bound]`).
    `context_size`: conditional maf / iaf / nsf (set the context with `conditioned`).
    `actnorm`: add an `ActNorm` (identity at the start) to each unit of realnvp / maf / iaf / nsf.
    `num_vectors`: Sylvester's `M` (default `dim`). Every layer starts at (or, for planar / radial /
    Sylvester, near) the identity. The parameters are cast to `dtype`.
    """
    hidden_sizes = tuple(hidden_sizes)
    check_flow_settings(name, dim, layers, hidden_sizes, context_size)
    if actnorm and name not in (*COUPLING_FLOWS, "maf", "iaf"):
        raise ValueError(f"{name} flow: actnorm applies to realnvp, maf, iaf and nsf")
    make = _unit_maker(name, int(dim), hidden_sizes, num_bins, bound, int(context_size), actnorm, num_vectors)
    bijector = Scan(stack_layers(make, jax.random.split(key, layers)))
    bijector = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, bijector)
    return Transformed(standard_normal(dim, dtype), bijector)


def _unit_maker(
    name: str,
    dim: int,
    hidden_sizes: tuple[int, ...],
    num_bins: int,
    bound: float,
    context_size: int,
    actnorm: bool,
    num_vectors: int | None,
) -> Callable[[PRNGKeyArray], Bijector]:
    """`make(key) -> unit`, the same structure for every key (for `stack_layers`)."""
    if name == "planar":
        return lambda key: Planar(dim, key=key, dtype=jnp.float32)
    if name == "radial":
        return lambda key: Radial(dim, key=key, dtype=jnp.float32)
    if name == "sylvester":
        return lambda key: Sylvester(dim, num_vectors, key=key, dtype=jnp.float32)
    kept = np.arange(dim) < dim // 2

    def layer(key: PRNGKeyArray) -> Bijector:
        if name == "realnvp":
            width, depth = (hidden_sizes or (1,))[0], len(hidden_sizes)
            conditioner = CouplingMLP(dim, width, depth, key=key, mask=kept, hidden_sizes=hidden_sizes)
            return MaskedCoupling(kept, conditioner)
        if name == "nsf":
            width, depth = (hidden_sizes or (1,))[0], len(hidden_sizes)
            coupling = SplineCoupling(
                kept, key=key, num_bins=num_bins, bound=bound, width=width, depth=depth, context_size=context_size
            )
            if len(set(hidden_sizes)) > 1:
                out = len(coupling.transformed) * (3 * num_bins - 1)
                net = mlp(len(coupling.kept) + context_size, out, hidden_sizes, zero_output=True, key=key)
                coupling = eqx.tree_at(lambda c: c.net, coupling, net)
            return coupling
        made = MADE(dim, hidden_sizes, key=key, context_dim=context_size)
        return MaskedAutoregressiveAffine(made, mode=name)

    def make(key: PRNGKeyArray) -> Bijector:
        k_layer, k_perm = jax.random.split(key)
        parts = [layer(k_layer)]
        if dim > 1:
            parts.insert(0, Reverse() if dim == 2 else Permute.random(k_perm, dim))
        if actnorm:
            parts.insert(0, ActNorm(dim))
        return parts[0] if len(parts) == 1 else Chain(parts)

    return make


def conditioned(flow: Transformed, context: Array) -> Transformed:
    """`flow` with `context` `(context_size,)` or `(..., context_size)` set on every conditional
    layer (`reparam.bijectors.condition`): the density `q(x | context)`."""
    return Transformed(flow.base, condition(flow.bijector, context))


def flow_log_prob(flow: Transformed, batch: Array | tuple[Array, Array]) -> Array:
    """`log q(x)` `(n,)` of a batch `x` `(n, d)`, or `log q(x | c)` for a batch `(x, c)` of a
    conditional flow (`c` `(n, context_size)`)."""
    if isinstance(batch, (tuple, list)):
        x, context = batch
        return conditioned(flow, context).log_prob(x)
    return flow.log_prob(batch)


def frozen_base(flow: Transformed) -> Transformed:
    """`flow` with gradients stopped at its base distribution: only the bijector is trained."""
    base = jax.tree.map(lambda a: lax.stop_gradient(a) if eqx.is_array(a) else a, flow.base)
    return Transformed(base, flow.bijector)


def _model(params: PyTree, static: PyTree | None) -> Transformed:
    return params if static is None else eqx.combine(params, static)


def density_loss(static: PyTree | None = None) -> training.LossFn:
    """Maximum likelihood: `loss_fn(params, batch, key, state) -> (mean NLL, {"nll": mean NLL})`,
    NLL `= -log q(x)` in nats per example, for `training.make_step` / `make_epoch` / `fit`.

    `params` is the flow (`training.fit` passes the whole model), or its floating arrays when
    `static` (the rest, from `eqx.partition(flow, eqx.is_inexact_array)`) is given. `batch` is `x`
    `(n, d)` or `(x, context)` for a conditional flow. The key is not used.
    """

    def loss_fn(params, batch, key, state):
        nll = -jnp.mean(flow_log_prob(frozen_base(_model(params, static)), batch))
        return nll, {"nll": nll}

    return loss_fn


def reverse_kl_loss(
    target_log_prob: Callable[[Array], Array],
    num_samples: int,
    *,
    stick_the_landing: bool = False,
    static: PyTree | None = None,
) -> training.LossFn:
    """Reverse-KL variational inference of an unnormalised target `p~(z) = Z p(z)`:
    `loss_fn(params, batch, key, state) -> (loss, {"kl_minus_log_z": loss})` with

        loss = mean over num_samples draws z ~ q of [log q(z) - log p~(z)]  =  KL(q || p) - log Z

    (an unbiased estimate; `KL(q || p) = loss + log Z`). Samples are reparameterized,
    `z = f_theta(eps)`, and scored by `rsample_and_log_prob` from their noise: never inverted.

    `stick_the_landing=True` (Roeder et al. 2017): the gradient drops the score term
    `E_q[d/dtheta log q_theta(z)]` (zero in expectation) by evaluating `log q` at the sample with
    the flow's parameters behind a stop-gradient, so only the path `z(theta)` carries gradient;
    at `q = p` every sample's gradient is then exactly zero. That evaluation is `log_prob(z)` of
    the frozen flow, i.e. one inverse pass (bisection for planar / Sylvester, `d` MADE passes for
    iaf). `target_log_prob(z)` maps `(n, d)` to `(n,)`. `batch` is not used (pass None).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"reverse_kl_loss: num_samples must be a positive integer, got {num_samples!r}")

    def loss_fn(params, batch, key, state):
        flow = frozen_base(_model(params, static))
        z, log_q = flow.rsample_and_log_prob(key, (num_samples,))
        if stick_the_landing:
            stopped = jax.tree.map(lambda a: lax.stop_gradient(a) if eqx.is_array(a) else a, flow)
            log_q = stopped.log_prob(z)
        loss = jnp.mean(log_q - target_log_prob(z))
        return loss, {"kl_minus_log_z": loss}

    return loss_fn


def make_steps(
    loss_fn: training.LossFn,
    optimizer: optax.GradientTransformation,
    draw_batch: Callable[[PRNGKeyArray], PyTree] | None = None,
) -> Callable:
    """`steps(state, keys) -> (state, metrics)`: one `training.make_step` step per key in one
    `lax.scan`, metrics stacked `(len(keys),)`. `draw_batch(key) -> batch` makes each step's batch
    (fresh data from a generator, e.g. `sample_toy`); without it the batch is None (variational
    fitting). Pure: `jax.jit(steps, donate_argnums=0)`."""
    step = training.make_step(loss_fn, optimizer)

    def body(state, key):
        k_batch, k_step = jax.random.split(key)
        return step(state, None if draw_batch is None else draw_batch(k_batch), k_step)

    def steps(state: training.TrainState, keys: PRNGKeyArray):
        return lax.scan(body, state, keys)

    return steps


def fit_density(
    flow: Transformed,
    data: Array | tuple[Array, Array],
    *,
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int = 256,
    epochs: int = 100,
    validation: float | None = 0.1,
    patience: int | None = 10,
    progress: bool = False,
) -> tuple[Transformed, list[dict[str, float]]]:
    """Maximum-likelihood fit of `flow` to `data` (`x` `(N, d)` or `(x, context)`) with
    `training.fit`: shuffled minibatch epochs, the last `validation` fraction held out, early
    stopping after `patience` epochs without a better validation NLL (the best flow returned).
    Default optimizer Adam(1e-3). Returns `(flow, history)`; history rows hold `loss` = `nll`
    (train, nats) and `validation` (nats)."""
    return training.fit(
        density_loss(),
        flow,
        data,
        key=key,
        optimizer=optax.adam(1e-3) if optimizer is None else optimizer,
        batch_size=batch_size,
        epochs=epochs,
        validation=validation,
        patience=patience if validation is not None else None,
        eval_fn=lambda model, batch, k: -flow_log_prob(model, batch),
        progress=progress,
    )


def fit_variational(
    flow: Transformed,
    target_log_prob: Callable[[Array], Array],
    *,
    key: PRNGKeyArray,
    steps: int,
    num_samples: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    stick_the_landing: bool = False,
) -> tuple[Transformed, Array]:
    """Reverse-KL fit of `flow` to the unnormalised `target_log_prob` for `steps` Adam steps
    (default Adam(1e-3)) in one compiled `lax.scan`: `(flow, losses)`, `losses` `(steps,)` the
    per-step estimates of `KL(q || p) - log Z` (see `reverse_kl_loss`).

    The program is compiled once per flow structure (shapes, dtypes, static fields), `steps`,
    `num_samples`, `stick_the_landing` and the identity of `target_log_prob` and `optimizer`
    (the default Adam is one shared object): a repeated call with a new key or new parameters
    reuses it."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"fit_variational: steps must be a positive integer, got {steps!r}")
    optimizer = DEFAULT_VARIATIONAL_OPTIMIZER if optimizer is None else optimizer
    reverse_kl_loss(target_log_prob, num_samples)  # checks num_samples (one-line error) before compiling
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    settings = (target_log_prob, int(num_samples), bool(stick_the_landing), optimizer)
    state = training.init_train_state(jax.tree.map(jnp.array, params), optimizer)
    state, losses = _variational_steps((settings, static), state, jax.random.split(key, steps))
    return eqx.combine(state.params, static), losses


DEFAULT_VARIATIONAL_OPTIMIZER = optax.adam(1e-3)
"""`fit_variational`'s optimizer when none is given (one object, so its programs are reused)."""


@eqx.filter_jit(donate="all-except-first")
def _variational_steps(fixed, state: training.TrainState, keys: PRNGKeyArray):
    """`fit_variational`'s compiled program: `fixed = ((target_log_prob, num_samples,
    stick_the_landing, optimizer), static)` (the Python objects are part of the cache key, the
    static part's arrays are traced, not donated), `state` donated; returns `(state, losses)`."""
    (target_log_prob, num_samples, stick_the_landing, optimizer), static = fixed
    loss = reverse_kl_loss(target_log_prob, num_samples, stick_the_landing=stick_the_landing, static=static)
    state, metrics = make_steps(loss, optimizer)(state, keys)
    return state, metrics["loss"]

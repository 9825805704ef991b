"""Flow posteriors for the Gaussian VAE: `q(z | x)` is a Gaussian pushed through `K` flow layers
whose parameters the encoder outputs per example (amortised), as in Rezende & Mohamed 2015 (planar),
Kingma et al. 2016 (IAF), van den Berg et al. 2018 (Sylvester) and Durkan et al. 2019 (NSF).

    z0 ~ N(mu(x), diag sigma(x)^2),  z = f_K(... f_1(z0)),
    log q(z | x) = log N(z0; mu, sigma) - sum_k log |det df_k / dz_{k-1}|,

scored from the draw itself (`Transformed.rsample_and_log_prob`, never inverting `z`). The encoder is
one MLP with output `(mu, raw sigma, head)`:

- `planar:K`, `sylvester:K`: the head holds every raw parameter of the `K` layers for this example.
  They are unflattened into a stack of `reparam.bijectors.Planar` / `Sylvester` layers and applied by
  those classes, so their invertibility constraints (planar's `u_hat` correction, Sylvester's
  orthonormal `Q` and `tanh` diagonals) hold for ANY encoder output. The head's weights start at
  zero and its bias at the raw parameters of an identity layer, so a fresh model's `q` is its base
  Gaussian.
- `iaf:K`: the head is a context vector `h(x)` fed to `K` conditional MADE layers
  (`MaskedAutoregressiveAffine(mode="iaf")`, `reparam.bijectors.condition`) whose weights are
  shared by all examples; layer `k` is autoregressive in the order `1..d` (even `k`) or `d..1`
  (odd `k`). The MADEs' last layers start at zero: a fresh IAF is the identity.
- `nsf:K`: as IAF, with each MADE replaced by a conditional rational-quadratic spline coupling
  (`SplineCoupling`, `NSF_BINS` bins on `[-NSF_BOUND, NSF_BOUND]`, identity tails) that transforms
  the last `d - d // 2` coordinates of the layer's order given the first `d // 2` and `h(x)`;
  zero last layers make a fresh NSF the identity.

A `FlowVAE` follows the protocol of `reparam.models.vae` (`posterior`, `prior`, `likelihood`), so the
same ELBO (with the Monte Carlo KL: there is no closed form), IWAE and log-likelihood estimates score
it; its decoder and prior are the Gaussian VAE's.
"""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..bijectors.autoregressive import MADE, MaskedAutoregressiveAffine, condition
from ..bijectors.base import Bijector, FusedBijector
from ..bijectors.chain import Chain
from ..bijectors.coupling import SplineCoupling
from ..bijectors.permute import Permute
from ..bijectors.planar import Planar
from ..bijectors.scan import Scan, stack_layers
from ..bijectors.sylvester import Sylvester
from ..distributions import MultivariateNormalDiag, Transformed
from ..nn import mlp, over_leading_axes
from .vae import Decoder, Likelihood, positive, standard_normal_prior

FLOW_KINDS = ("planar", "iaf", "sylvester", "nsf")
"""The amortised flows `--posterior` accepts (besides 'gaussian')."""
SHARED_KINDS = ("iaf", "nsf")
"""Flows whose layers are shared by all examples and read a context `h(x)` from the encoder."""
CONTEXT_SIZE = 32
"""Size of the context vector `h(x)` the encoder gives the IAF and NSF layers."""
CONDITIONER_HIDDEN = (64, 64)
"""Hidden widths of each IAF layer's MADE and each NSF layer's coupling MLP (ReLU)."""
NSF_BINS = 8
"""Bins of each NSF layer's rational-quadratic splines."""
NSF_BOUND = 5.0
"""Each NSF spline acts on [-NSF_BOUND, NSF_BOUND] (the identity outside)."""


def parse_posterior(text: str) -> tuple[str, int]:
    """`'gaussian'` -> `('gaussian', 0)`; `'planar:K'`, `'iaf:K'`, `'sylvester:K'`, `'nsf:K'` -> `(kind, K)`,
    `K >= 1` layers. Anything else is a one-line ValueError saying what is allowed."""
    allowed = "'gaussian', or 'planar:K', 'iaf:K', 'sylvester:K', 'nsf:K' with K >= 1 flow layers"
    if text == "gaussian":
        return "gaussian", 0
    match = re.fullmatch(r"([a-z]+):([+-]?\d+)", text.strip())
    if match is None or match.group(1) not in FLOW_KINDS:
        raise ValueError(f"--posterior {text!r} is not one of {allowed}")
    layers = int(match.group(2))
    if layers < 1:
        raise ValueError(f"--posterior {text!r}: the number of flow layers K must be >= 1, got {layers}")
    return match.group(1), layers


def flow_layers(kind: str, dim: int, num_layers: int, *, key: PRNGKeyArray) -> Scan:
    """`num_layers` stacked layers of `kind` on `dim`-vectors, each the identity map, as a `Scan`.

    Planar and Sylvester (`M = dim` directions) start with `scale=0` (planar: `u_hat = 0` up to
    rounding; Sylvester: `R = 0`). IAF layers are `Chain([P, IAF, P])` with `P` the identity
    (even layers) or the reversal (odd layers), a MADE of `CONDITIONER_HIDDEN` with a `CONTEXT_SIZE`
    context; its zero last layer makes each layer the identity. NSF layers are the same chain with
    a conditional `SplineCoupling` (an MLP of `CONDITIONER_HIDDEN`, `CONTEXT_SIZE` context) for the MADE.
    """
    keys = jax.random.split(key, num_layers)
    if kind == "planar":
        return Scan(stack_layers(lambda k: Planar(dim, key=k, scale=0.0), keys))
    if kind == "sylvester":
        return Scan(stack_layers(lambda k: Sylvester(dim, key=k, scale=0.0), keys))
    if kind not in SHARED_KINDS:
        raise ValueError(f"flow_layers: kind must be one of {FLOW_KINDS}, got {kind!r}")

    def make(k):
        if kind == "iaf":
            made = MADE(dim, CONDITIONER_HIDDEN, key=k, context_dim=CONTEXT_SIZE)
            middle = MaskedAutoregressiveAffine(made, mode="iaf")
        else:
            middle = SplineCoupling(
                np.arange(dim) < dim // 2,
                key=k,
                num_bins=NSF_BINS,
                bound=NSF_BOUND,
                width=CONDITIONER_HIDDEN[0],
                depth=len(CONDITIONER_HIDDEN),
                context_size=CONTEXT_SIZE,
            )
        reverse = Permute.reverse(dim)
        return Chain([reverse, middle, reverse])

    stack = stack_layers(make, keys)
    orders = np.where(np.arange(num_layers)[:, None] % 2 == 1, np.arange(dim)[::-1], np.arange(dim))
    orders = jnp.asarray(orders, jnp.int32)  # an involution: its own inverse
    return Scan(
        eqx.tree_at(
            lambda s: (
                s.bijectors[0].permutation,
                s.bijectors[0].inverse_permutation,
                s.bijectors[2].permutation,
                s.bijectors[2].inverse_permutation,
            ),
            stack,
            (orders, orders, orders, orders),
        )
    )


def flatten_raw(layers: Bijector) -> Array:
    """Every array leaf of `layers` raveled and concatenated, in `tree_leaves` order: `(P,)`."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(layers)])


def unflatten_raw(flat: Array, like: Bijector) -> Bijector:
    """Inverse of `flatten_raw` per example: `flat` `(B, P)` -> `like`'s structure with each leaf
    `(B,) + leaf.shape` (`like` may hold `jax.ShapeDtypeStruct`s)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"unflatten_raw: expected {sum(sizes)} raw parameters per example, got {flat.shape[-1]}")
    parts = jnp.split(flat, np.cumsum(sizes)[:-1], axis=-1)
    shaped = [p.reshape(flat.shape[:-1] + leaf.shape) for p, leaf in zip(parts, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, shaped)


class PerExample(FusedBijector):
    """A bijector with its own parameters for each example of a batch: every array leaf of
    `bijector` has a leading axis `(B,)`, and example `b`'s layer acts on the inputs whose batch axis
    (the axis just left of the event axes) is `b`. Inputs `(..., B) + event`, log-dets `(..., B)`;
    one `vmap` over that axis."""

    bijector: Bijector

    @property
    def event_ndims(self) -> int:  # type: ignore[override]
        """That of the wrapped bijector."""
        return self.bijector.event_ndims

    @property
    def onto(self) -> bool:  # type: ignore[override]
        """That of the wrapped bijector (per-example parameters do not change the range)."""
        return self.bijector.onto

    def _mapped(self, method: str, v: Array) -> tuple[Array, Array]:
        size = jax.tree_util.tree_leaves(self.bijector)[0].shape[0]
        axis = v.ndim - 1 - self.event_ndims
        if axis < 0 or v.shape[axis] != size:
            raise ValueError(
                f"PerExample: inputs need a batch axis of size {size} left of the {self.event_ndims} event "
                f"axes, got shape {v.shape}"
            )
        fn = lambda layer, u: getattr(layer, method)(u)
        return jax.vmap(fn, in_axes=(0, axis), out_axes=(axis, axis))(self.bijector, v)

    def forward_and_log_det(self, x):
        return self._mapped("forward_and_log_det", x)

    def inverse_and_log_det(self, y):
        return self._mapped("inverse_and_log_det", y)


class FlowPosterior(Transformed):
    """`q(z | x)`: the base Gaussian `N(mu(x), diag sigma(x)^2)` (batch `(B,)`) pushed through the
    example's flow. `rsample_and_log_prob` is the training route; `log_prob` of a given `z` inverts
    the flow (planar/Sylvester by bisection, IAF by `d` MADE passes, NSF by the splines' closed-form inverse).

    `mean()` and `mode()` have no closed form; both return `f(mu(x))`, the image of the base
    Gaussian's mean (the point where the pictures decode reconstructions). An unbiased Monte Carlo
    mean is `rsample(key, (n,)).mean(0)`."""

    def mode(self) -> Array:
        """`f(mu)` (not the exact mode of `q`, which has no closed form), shape `(B, d)`."""
        return self.bijector.forward(self.base.mode())

    def mean(self) -> Array:
        """`f(mu)` (not the exact mean of `q`, which has no closed form), shape `(B, d)`."""
        return self.bijector.forward(self.base.mean())


class FlowVAE(eqx.Module):
    """The Gaussian VAE with `q(z | x)` a `FlowPosterior` of `kind` (one of `FLOW_KINDS`)
    and `num_layers` layers, amortised by the encoder (see the module docstring). Prior, decoder and
    hidden widths as `GaussianVAE`."""

    encoder: eqx.nn.Sequential
    decoder: Decoder
    flow: Scan | None
    """The shared IAF / NSF stack (None for planar/Sylvester, whose parameters the encoder outputs)."""
    latent_dim: int = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    num_layers: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        kind: str,
        num_layers: int,
        hidden: tuple[int, ...] = (128, 128),
        likelihood: Likelihood = "bernoulli",
        *,
        key: PRNGKeyArray,
    ):
        if latent_dim < 1 or data_dim < 1 or num_layers < 1:
            raise ValueError(
                f"FlowVAE: latent_dim, data_dim and num_layers must be >= 1, got {latent_dim}, {data_dim}, {num_layers}"
            )
        if kind not in FLOW_KINDS:
            raise ValueError(f"FlowVAE: kind must be one of {FLOW_KINDS}, got {kind!r}")
        k_enc, k_dec, k_flow = jax.random.split(key, 3)
        layers = flow_layers(kind, latent_dim, num_layers, key=k_flow)
        head = CONTEXT_SIZE if kind in SHARED_KINDS else flatten_raw(layers).shape[0]
        encoder = mlp(data_dim, 2 * latent_dim + head, hidden, activation=jnp.tanh, key=k_enc)
        if kind not in SHARED_KINDS:  # the head's output is the identity layers' raw parameters, whatever x
            last = encoder.layers[-1]
            weight = last.weight.at[2 * latent_dim :].set(0.0)
            bias = last.bias.at[2 * latent_dim :].set(flatten_raw(layers).astype(last.bias.dtype))
            encoder = eqx.tree_at(lambda e: (e.layers[-1].weight, e.layers[-1].bias), encoder, (weight, bias))
        self.encoder = encoder
        self.decoder = Decoder(latent_dim, data_dim, tuple(reversed(hidden)), likelihood, key=k_dec)
        self.flow = layers if kind in SHARED_KINDS else None
        self.latent_dim = latent_dim
        self.kind = kind
        self.num_layers = num_layers

    def _raw_like(self) -> Scan:
        """The structure (shapes, dtypes) of one example's planar/Sylvester stack."""
        dtype = self.encoder.layers[-1].bias.dtype
        return jax.eval_shape(
            lambda: jax.tree_util.tree_map(
                lambda a: a.astype(dtype),
                flow_layers(self.kind, self.latent_dim, self.num_layers, key=jax.random.key(0)),
            )
        )

    def posterior(self, x: Array) -> FlowPosterior:
        """x `(B, D)` -> q(z | x), batch `(B,)`, event `(latent_dim,)`."""
        out = over_leading_axes(self.encoder, x)
        d = self.latent_dim
        mu, raw, head = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        base = MultivariateNormalDiag(mu, positive(raw), validate=False)
        if self.kind in SHARED_KINDS:
            return FlowPosterior(base, condition(self.flow, head))
        return FlowPosterior(base, PerExample(unflatten_raw(head, self._raw_like())))

    def prior(self) -> MultivariateNormalDiag:
        """p(z) = N(0, I), batch `()`, event `(latent_dim,)`."""
        return standard_normal_prior(self.latent_dim)

    def likelihood(self, z: Array):
        """z `(..., latent_dim)` -> p(x | z) with batch `(...)` and event `(D,)` (the decoder)."""
        return self.decoder(z)

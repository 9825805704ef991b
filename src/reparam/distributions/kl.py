"""KL divergence `KL(p || q) = E_p[log p(x) - log q(x)]`: closed forms from a registry, with a
Monte Carlo fallback that takes a key."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import digamma, gammaln
from jaxtyping import Array, PRNGKeyArray

from ..bijectors.base import sum_rightmost
from .base import Distribution, log_beta
from .beta import Beta
from .categorical import Bernoulli, Categorical
from .dirichlet import Dirichlet
from .gamma import Gamma
from .laplace import Laplace
from .lognormal import LogNormal
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .transformed import Independent
from .uniform import Uniform

KLFn = Callable[[Distribution, Distribution], Array]
_REGISTRY: dict[tuple[type, type], KLFn] = {}


def register_kl(p_type: type, q_type: type) -> Callable[[KLFn], KLFn]:
    """Decorator: register the closed form of `KL(p || q)` for `p: p_type`, `q: q_type`."""

    def register(fn: KLFn) -> KLFn:
        _REGISTRY[(p_type, q_type)] = fn
        return fn

    return register


def closed_form_kl(p: Distribution, q: Distribution) -> KLFn | None:
    """The registered closed form for the most specific matching pair of types, if any."""
    for p_type in type(p).__mro__:
        for q_type in type(q).__mro__:
            if (p_type, q_type) in _REGISTRY:
                return _REGISTRY[(p_type, q_type)]
    return None


def kl_divergence(
    p: Distribution, q: Distribution, *, key: PRNGKeyArray | None = None, num_samples: int = 1024
) -> Array:
    """`KL(p || q)` with shape `batch_shape`: the closed form when the pair has one, otherwise a
    Monte Carlo estimate from `num_samples` draws of `p` (needs `key`)."""
    closed_form = closed_form_kl(p, q)
    if closed_form is not None:
        return closed_form(p, q)
    if key is None:
        raise ValueError(
            f"kl_divergence: no closed form for ({type(p).__name__}, {type(q).__name__}); pass "
            "key=... (and num_samples=...) for a Monte Carlo estimate."
        )
    return monte_carlo_kl(p, q, key=key, num_samples=num_samples)


def monte_carlo_kl(p: Distribution, q: Distribution, *, key: PRNGKeyArray, num_samples: int) -> Array:
    """`mean_i [log p(x_i) - log q(x_i)]`, `x_i ~ p`: unbiased, pathwise-differentiable when `p` is
    reparameterized."""
    draw = p.rsample_and_log_prob if p.reparameterized else p.sample_and_log_prob
    x, log_p = draw(key, (num_samples,))
    return jnp.mean(log_p - q.log_prob(x), axis=0)


@register_kl(Normal, Normal)
def _kl_normal(p: Normal, q: Normal) -> Array:
    """`log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2`."""
    ratio = p.scale / q.scale
    return 0.5 * (jnp.square(ratio) + jnp.square((p.loc - q.loc) / q.scale) - 1) - jnp.log(ratio)


@register_kl(LogNormal, LogNormal)
def _kl_lognormal(p: LogNormal, q: LogNormal) -> Array:
    """That of the underlying Normals (KL is invariant under a shared bijection)."""
    return _kl_normal(p.base, q.base)  # KL is invariant under the shared bijection exp


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn(p: MultivariateNormal, q: MultivariateNormal) -> Array:
    """`(tr(Sq^-1 Sp) + |Lq^-1 (mu_q - mu_p)|^2 - d + log det Sq - log det Sp) / 2`."""
    d = p.loc.shape[-1]
    batch = jnp.broadcast_shapes(p.batch_shape, q.batch_shape)
    lq = jnp.broadcast_to(q.scale_tril, batch + (d, d))
    lp = jnp.broadcast_to(p.scale_tril, batch + (d, d))
    m = solve_triangular(lq, lp, lower=True)
    z = solve_triangular(lq, jnp.broadcast_to(q.loc - p.loc, batch + (d,))[..., None], lower=True)[..., 0]
    return (
        0.5 * (jnp.sum(jnp.square(m), (-2, -1)) + jnp.sum(jnp.square(z), -1) - d)
        + q._half_log_det()
        - p._half_log_det()
    )


@register_kl(Independent, Independent)
def _kl_independent(p: Independent, q: Independent) -> Array:
    """The wrapped KL summed over the reinterpreted axes."""
    if p.reinterpreted_batch_ndims != q.reinterpreted_batch_ndims:
        raise ValueError(
            "kl_divergence: Independent distributions reinterpret different numbers of batch axes "
            f"({p.reinterpreted_batch_ndims} and {q.reinterpreted_batch_ndims})"
        )
    return sum_rightmost(kl_divergence(p.distribution, q.distribution), p.reinterpreted_batch_ndims)


@register_kl(Laplace, Laplace)
def _kl_laplace(p: Laplace, q: Laplace) -> Array:
    """`log(b_q / b_p) + |m_p - m_q| / b_q + (b_p / b_q) exp(-|m_p - m_q| / b_p) - 1`."""
    distance = jnp.abs(p.loc - q.loc)
    return jnp.log(q.scale / p.scale) + distance / q.scale + p.scale / q.scale * jnp.exp(-distance / p.scale) - 1


@register_kl(Gamma, Gamma)
def _kl_gamma(p: Gamma, q: Gamma) -> Array:
    """`(a_p - a_q) psi(a_p) - lgamma(a_p) + lgamma(a_q) + a_q log(b_p / b_q) + a_p (b_q - b_p) / b_p`."""
    ap, bp, aq, bq = p.concentration, p.rate, q.concentration, q.rate
    return (ap - aq) * digamma(ap) - gammaln(ap) + gammaln(aq) + aq * (jnp.log(bp) - jnp.log(bq)) + ap * (bq - bp) / bp


@register_kl(Beta, Beta)
def _kl_beta(p: Beta, q: Beta) -> Array:
    """`log B(a_q, b_q) - log B(a_p, b_p) + (a_p - a_q) psi(a_p) + (b_p - b_q) psi(b_p)
    + (a_q - a_p + b_q - b_p) psi(a_p + b_p)`."""
    return (
        log_beta(q.a, q.b)
        - log_beta(p.a, p.b)
        + (p.a - q.a) * digamma(p.a)
        + (p.b - q.b) * digamma(p.b)
        + (q.a - p.a + q.b - p.b) * digamma(p.a + p.b)
    )


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet(p: Dirichlet, q: Dirichlet) -> Array:
    """`log B(b) - log B(a) + sum_k (a_k - b_k) (psi(a_k) - psi(a_0))`."""
    a, b = p.concentration, q.concentration
    a0 = jnp.sum(a, -1, keepdims=True)
    return q._log_normalizer() - p._log_normalizer() + jnp.sum((a - b) * (digamma(a) - digamma(a0)), -1)


@register_kl(Categorical, Categorical)  # OneHotCategorical too (a subclass)
def _kl_categorical(p: Categorical, q: Categorical) -> Array:
    """`sum_k p_k (log p_k - log q_k)`, zero-probability categories contributing 0."""
    probs = p.probs
    return jnp.sum(jnp.where(probs > 0, probs * (p.logits - q.logits), 0.0), -1)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli(p: Bernoulli, q: Bernoulli) -> Array:
    """`p log(p / q) + (1 - p) log((1 - p) / (1 - q))` from the logits."""
    log_p1, log_p0 = jax.nn.log_sigmoid(p.logits), jax.nn.log_sigmoid(-p.logits)
    log_q1, log_q0 = jax.nn.log_sigmoid(q.logits), jax.nn.log_sigmoid(-q.logits)
    return p.probs * (log_p1 - log_q1) + (1 - p.probs) * (log_p0 - log_q0)


@register_kl(Uniform, Uniform)
def _kl_uniform(p: Uniform, q: Uniform) -> Array:
    """`log(width_q / width_p)` when `[low_p, high_p]` lies inside `[low_q, high_q]`, else `inf`."""
    contained = (q.low <= p.low) & (p.high <= q.high)
    return jnp.where(contained, jnp.log(q.width / p.width), jnp.inf)

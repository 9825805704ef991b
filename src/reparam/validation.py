"""Parameter handling shared by distributions and bijectors: dtype, broadcasting, validation.

Validation is on by default and cheap: eagerly it raises `ValueError` with a one-line message; under
`jit`/`vmap` it attaches an `equinox.error_if` to the parameter, so the check runs on device.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike


def float_dtype(*values: ArrayLike) -> jnp.dtype:
    """The common floating dtype of `values` (ints promote to the default float)."""
    dtype = jnp.result_type(*values)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def broadcast_params(owner: str, **params: ArrayLike) -> list[Array]:
    """Cast `params` to one float dtype and broadcast them to one shape, or raise ValueError."""
    dtype = float_dtype(*params.values())
    arrays = [jnp.asarray(v, dtype) for v in params.values()]
    try:
        shape = jnp.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        described = ", ".join(f"{n} {a.shape}" for n, a in zip(params, arrays, strict=True))
        raise ValueError(
            f"{owner}: parameter shapes do not broadcast ({described}); give shapes that broadcast under numpy rules."
        ) from None
    return [jnp.broadcast_to(a, shape) for a in arrays]


def check(value: Array, bad: Array, message: str, validate: bool) -> Array:
    """Return `value`, failing with `message` where `bad` holds anywhere.

    Eagerly this raises `ValueError`; under `jit`/`vmap` it attaches an `equinox.error_if` to the
    returned value, so the check runs on device. `validate=False` skips it.
    """
    if not validate:
        return value
    if isinstance(bad, jax.core.Tracer) or isinstance(value, jax.core.Tracer):
        # The error rides on a scalar that multiplies `value`: erroring on `value` itself makes XLA
        # materialise a copy of the whole array (measured: +8 MiB and ~10% time at 1e6 elements).
        return value * eqx.error_if(jnp.ones((), value.dtype), jnp.any(bad), message)
    if bool(np.any(np.asarray(bad))):
        raise ValueError(message + " (pass validate=False to skip this check)")
    return value


def check_finite(owner: str, name: str, value: Array, validate: bool) -> Array:
    """`value`, checked to be finite everywhere (see `check`)."""
    return check(value, ~jnp.isfinite(value), f"{owner}: {name} must be finite", validate)


def check_positive(owner: str, name: str, value: Array, validate: bool) -> Array:
    """`value`, checked to be positive and finite everywhere (see `check`)."""
    bad = ~(jnp.isfinite(value) & (value > 0))
    return check(value, bad, f"{owner}: {name} must be positive and finite", validate)

"""Bijectors: invertible maps with log-det-Jacobians, to build new reparameterized distributions."""

from .affine import Affine, Scale, Shift
from .base import Bijector
from .chain import Chain
from .coupling import CouplingMLP, MaskedCoupling
from .exp import Exp
from .sigmoid import Sigmoid
from .tanh import Tanh, clipped_atanh, log_abs_det_tanh

__all__ = [
    "Affine",
    "Bijector",
    "Chain",
    "CouplingMLP",
    "Exp",
    "MaskedCoupling",
    "Scale",
    "Shift",
    "Sigmoid",
    "Tanh",
    "clipped_atanh",
    "log_abs_det_tanh",
]

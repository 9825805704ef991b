"""Bijectors: invertible maps with log-det-Jacobians, to build new reparameterized distributions
and normalizing flows (planar, radial, Sylvester, affine and spline couplings, masked
autoregressive MAF/IAF, permutations, ActNorm, and `Scan` over stacked identical layers)."""

from .actnorm import ActNorm, actnorm_init
from .affine import Affine, Scale, Shift
from .autoregressive import MADE, MaskedAutoregressiveAffine, condition, made_degrees, made_masks
from .base import Bijector, FusedBijector
from .chain import Chain
from .coupling import CouplingMLP, MaskedCoupling, SplineCoupling
from .exp import Exp
from .permute import Permute, Reverse
from .planar import Planar, solve_monotone_tanh
from .radial import Radial
from .scan import Scan, stack_layers, unstack_layers
from .sigmoid import Sigmoid
from .spline import RationalQuadraticSpline, rational_quadratic_spline, spline_knots
from .sylvester import Sylvester
from .tanh import Tanh, clipped_atanh, log_abs_det_tanh

__all__ = [
    "MADE",
    "ActNorm",
    "Affine",
    "Bijector",
    "Chain",
    "CouplingMLP",
    "Exp",
    "FusedBijector",
    "MaskedAutoregressiveAffine",
    "MaskedCoupling",
    "Permute",
    "Reverse",
    "Planar",
    "Radial",
    "RationalQuadraticSpline",
    "Scale",
    "Scan",
    "Shift",
    "Sigmoid",
    "SplineCoupling",
    "Sylvester",
    "Tanh",
    "actnorm_init",
    "clipped_atanh",
    "condition",
    "log_abs_det_tanh",
    "made_degrees",
    "made_masks",
    "rational_quadratic_spline",
    "solve_monotone_tanh",
    "spline_knots",
    "stack_layers",
    "unstack_layers",
]

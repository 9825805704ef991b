"""Neural-network building blocks shared by every model: one MLP builder (`mlp`), one way to map a
per-example network over leading axes (`over_leading_axes`)."""

from .mlp import Activation, mlp, over_leading_axes

__all__ = ["Activation", "mlp", "over_leading_axes"]

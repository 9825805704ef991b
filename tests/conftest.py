"""Test configuration: float64 available (tests choose float32 or float64 explicitly), strict dtype
promotion so a stray float64 constant cannot leak into a float32 computation unnoticed, and
derandomized hypothesis so CI is reproducible."""

import os

# XLA's CPU backend without its LLVM optimisation passes: programs compile about five times faster
# and most tests here are dominated by compiling small programs. Numerics are unchanged (no
# fast-math either way); only the generated code is less optimised. Set before JAX starts.
# Measured and not used (2026-12-04): `--xla_cpu_use_fusion_emitters=false` runs the suite ~25%
# faster, but XLA's legacy emitters then return wrong values: the spline's jitted inverse at a knot's
# float32 neighbours changes with the batch it is in (eager and the default emitters agree).
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
# Threefry with the non-partitionable bit layout (JAX's default before 0.5): the same generator,
# about three times faster to compile on a small CPU, where compiling random-number programs
# dominates the suite's run time. Keys stay fixed (jax.random.key(N)), so results are reproducible.
jax.config.update("jax_threefry_partitionable", False)

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def as_users_run_it():
    """JAX's default settings, as `reparam` itself runs: float32 by default and standard dtype
    promotion (gymnax environments are not float64-clean, and optax's Adam mixes a Python float with
    its int32 step count, which strict promotion rejects). Use with
    `pytestmark = pytest.mark.usefixtures("as_users_run_it")`."""
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield

"""Brax environments in the compiled loop (optional extra: skipped where brax is not installed).
Run with `pip install -e '.[brax,dev]'`; CI does not install brax (its XLA compiles take minutes)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

brax_envs = pytest.importorskip("brax.envs")

from reparam.rl.envs import BraxAsGymnax, make_jax_env  # noqa: E402
from reparam.rl.sac import SACConfig  # noqa: E402
from reparam.rl.train import RunSpec, make_train  # noqa: E402


@pytest.fixture(autouse=True)
def _as_users_run_it():
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield


def test_time_limit_truncates_and_resets_in_the_same_step():
    env = BraxAsGymnax(brax_envs.get_environment("inverted_pendulum"), episode_length=3)
    first_obs, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for t in range(1, 4):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, jnp.zeros(1))
        assert not bool(terminated) and bool(truncated) == (t == 3)
    # The returned observation is a fresh episode's; the final one is the true last observation.
    assert int(state.time) == 0 and not np.allclose(obs, info["final_observation"])
    fresh_obs, _ = env.reset(jax.random.key(3))
    np.testing.assert_allclose(obs, fresh_obs)


def test_pole_falling_is_a_termination():
    env = BraxAsGymnax(brax_envs.get_environment("inverted_pendulum"), episode_length=1000)
    _, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for t in range(200):
        _, state, _, terminated, truncated, _ = step(jax.random.key(t), state, jnp.ones(1))
        if bool(terminated):
            break
    assert bool(terminated) and not bool(truncated)


def test_compiled_sac_runs_on_brax_with_finite_metrics():
    jenv = make_jax_env("brax:inverted_pendulum")
    assert jenv.obs_dim == 4 and jenv.bounds.low.tolist() == [-1.0]
    run = make_train(SACConfig(hidden_sizes=(16, 16), batch_size=16, learning_starts=50), "brax:inverted_pendulum",
                     RunSpec(total_steps=200, eval_every=100, eval_episodes=1))
    _, metrics = eqx.filter_jit(eqx.filter_vmap(run.train))(jax.random.split(jax.random.key(0), 2))
    assert np.asarray(metrics["step"]).tolist() == [[100, 200]] * 2
    assert all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values())


def test_unknown_brax_env_is_one_line_error():
    with pytest.raises(ValueError, match="unknown Brax environment 'cheetah'; supported: ant, "):
        make_jax_env("brax:cheetah")

"""The model-based agents as `Agent` values: a conditional buffer write, mbpo's rollouts (terminations
restart from real states, lengths follow the schedule), the real/model mixture, both loops run them
unchanged with finite metrics, one-line errors, and svg really learns Pendulum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.rl.compiled import RunSpec, make_train
from reparam.rl.dynamics import DynamicsConfig
from reparam.rl.host import make_host_loop, run_host
from reparam.rl.model_based import (
    ModelBasedConfig,
    add_where,
    mixed_draw,
    model_based_agent,
    model_rollouts,
    rollout_length,
)
from reparam.rl.replay import add_batch, init_buffer, make_transition
from reparam.rl.sac import SACConfig

pytestmark = pytest.mark.usefixtures("as_users_run_it")


def filled(values, capacity):
    """A buffer whose rows have `obs = value` (1-D observations, 1-D actions)."""
    n = len(values)
    obs = jnp.asarray(values, jnp.float32)[:, None]
    example = make_transition(obs[0], jnp.zeros(1), 0.0, obs[0], 0.0)
    return add_batch(
        init_buffer(example, capacity), make_transition(obs, jnp.zeros((n, 1)), jnp.zeros(n), obs, jnp.zeros(n))
    )


def test_add_where_writes_or_keeps_the_buffer():
    buffer = filled([1.0, 2.0], 3)
    new = make_transition(jnp.full((2, 1), 9.0), jnp.zeros((2, 1)), jnp.zeros(2), jnp.zeros((2, 1)), jnp.zeros(2))
    kept = add_where(buffer, new, jnp.asarray(False))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), kept, buffer))
    written = add_where(buffer, new, jnp.asarray(True))
    np.testing.assert_array_equal(written.data.obs[:, 0], [9.0, 2.0, 9.0])  # wrapped around
    assert (int(written.size), int(written.position)) == (3, 1)


def test_rollouts_restart_after_termination_and_follow_the_length_schedule():
    """A model that moves every state to 100 and always terminates: every stored transition starts
    from a real state (1, 2 or 3), none from 100; steps beyond the scheduled length are not stored."""
    real = filled([1.0, 2.0, 3.0], 3)

    def step_fn(obs, action, key):
        return jnp.full_like(obs, 100.0), jnp.ones(obs.shape[0]), jnp.ones(obs.shape[0])

    explore = lambda obs, key: jnp.zeros((obs.shape[0], 1))
    model = init_buffer(make_transition(jnp.zeros(1), jnp.zeros(1), 0.0, jnp.zeros(1), 0.0), 64)
    out = model_rollouts(model, real, explore, step_fn, jax.random.key(0), jnp.int32(2), 4, 5)
    assert int(out.size) == 10  # 2 of 4 steps stored, 5 rollouts each
    stored = np.asarray(out.data.obs[:10, 0])
    assert set(stored) <= {1.0, 2.0, 3.0}
    np.testing.assert_array_equal(out.data.terminated[:10], 1.0)
    lengths = [int(rollout_length(jnp.int32(c), 5, 100)) for c in (0, 24, 25, 50, 99, 100, 1000)]
    assert lengths == [1, 1, 2, 3, 4, 5, 5]


def test_mixed_draw_takes_the_real_fraction_from_the_real_buffer():
    real, model = filled([1.0] * 4, 4), filled([2.0] * 8, 8)
    batch = mixed_draw(0.25)((real, model), jax.random.key(0), 16)
    np.testing.assert_array_equal(batch.obs[:, 0], [1.0] * 4 + [2.0] * 12)
    only_model = mixed_draw(0.0)((real, model), jax.random.key(0), 16)
    assert bool(jnp.all(only_model.obs == 2.0))


TINY = ModelBasedConfig(
    sac=SACConfig(hidden_sizes=(16, 16), batch_size=16, learning_starts=60),
    dynamics=DynamicsConfig(ensemble_size=2, num_elites=1, hidden_sizes=(16,), batch_size=16),
    horizon=2,
    rollout_batch=16,
    model_buffer_size=1024,
)


@pytest.mark.parametrize("name", ["svg", "mbpo"])
def test_both_loops_run_the_agents_unchanged(name):
    agent = model_based_agent(name, TINY)
    run = make_train(agent, "gymnax:Pendulum-v1", RunSpec(100, 100, 1))
    _, metrics = jax.jit(jax.vmap(run.train))(jax.random.split(jax.random.key(0), 2))
    assert metrics["eval_return"].shape == (2, 1)
    for key in agent.metric_names:
        assert bool(jnp.all(jnp.isfinite(metrics[key]))), key
    assert np.all(np.asarray(metrics["model_mse"]) > 0)
    if name == "mbpo":
        np.testing.assert_array_equal(metrics["model_rows"], 41 * 16)  # one rollout step per learn call
    loop = make_host_loop(agent, "Pendulum-v1", total_steps=80, eval_every=80, eval_episodes=1)
    _, rows = run_host(loop, 0)
    assert np.isfinite(rows[-1]["eval_return"]) and rows[-1]["gradient_steps"] == 21
    assert np.isfinite(rows[-1]["model_nll"])


def test_unknown_agent_and_bad_horizon_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown agent 'dreamer'; choose svg or mbpo"):
        model_based_agent("dreamer", TINY)
    with pytest.raises(ValueError, match="--horizon must be >= 1, got 0"):
        ModelBasedConfig(horizon=0)


LEARN = ModelBasedConfig(
    sac=SACConfig(hidden_sizes=(64, 64), batch_size=64, learning_starts=250, learning_rate=1e-3),
    dynamics=DynamicsConfig(ensemble_size=3, num_elites=2, hidden_sizes=(64, 64), batch_size=64),
    horizon=3,
)


def test_svg_learns_pendulum_swing_up():
    """One seed, 2,500 steps: random play scores about -1,200 to -1,600; the swing-up learned through
    the model scores above -400 (SAC's own learning test needs 6,000 steps at these sizes)."""
    run = make_train(model_based_agent("svg", LEARN), "gymnax:Pendulum-v1", RunSpec(2500, 500, 5))
    _, metrics = jax.jit(jax.vmap(run.train))(jax.random.split(jax.random.key(0), 1))
    returns = np.asarray(metrics["eval_return"])
    assert np.all(np.isfinite(returns)), returns
    assert np.all(returns[:, 0] < -900), returns  # before learning
    assert np.all(returns[:, -1] > -400), returns

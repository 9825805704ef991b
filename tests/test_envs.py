"""Environments: names are checked with one-line errors that list what is allowed, `env_spec` gives
every kind's sizes and bounds, Gymnasium factories reject spaces SAC cannot use, the final
observation of a same-step autoreset, and the Brax adapter (skipped where brax is not installed:
`pip install -e '.[brax,dev]'`; CI does not install it, its XLA compiles take minutes)."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.rl.envs import (
    GYM_EXAMPLES,
    JAX_ENVS,
    BraxAsGymnax,
    OneEnv,
    check_env_name,
    env_spec,
    final_observations,
    make_gym_env,
    make_jax_env,
)

pytestmark = pytest.mark.usefixtures("as_users_run_it")


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("gymnax:CartPole-v1", "unknown JAX-native environment 'gymnax:CartPole-v1'; supported: "),
        ("NoSuchEnv-v0", "unknown environment id 'NoSuchEnv-v0' ("),
    ],
)
def test_unknown_names_are_one_line_errors_listing_what_is_allowed(name, start):
    with pytest.raises(ValueError) as err:
        check_env_name(name)
    message = str(err.value)
    assert message.startswith(start) and "\n" not in message, message
    for allowed in (*JAX_ENVS, "brax:<name>", *GYM_EXAMPLES):
        assert allowed in message


def test_env_spec_of_every_kind():
    obs_dim, bounds = env_spec("gymnax:Pendulum-v1")
    assert obs_dim == 3 and bounds.low.tolist() == [-2.0] and bounds.high.tolist() == [2.0]
    obs_dim, bounds = env_spec("gymnax:MountainCarContinuous-v0")
    assert obs_dim == 2 and bounds.low.tolist() == [-1.0] and bounds.high.tolist() == [1.0]
    obs_dim, bounds = env_spec("Pendulum-v1")
    assert obs_dim == 3 and bounds.low.dtype == jnp.float32 and bounds.high.tolist() == [2.0]
    if _has("mujoco"):
        obs_dim, bounds = env_spec("HalfCheetah-v5")
        assert obs_dim == 17 and bounds.low.shape == (6,)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_discrete_and_unusable_spaces_are_one_line_errors():
    with pytest.raises(ValueError) as err:
        env_spec("CartPole-v1")
    assert str(err.value) == "SAC needs a continuous (Box) action space; CartPole-v1 has Discrete(2)"
    with pytest.raises(ValueError, match="SAC needs a continuous"):
        make_gym_env("Acrobot-v1", 1, seed=0)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        make_gym_env("Pendulum-v1", 0, seed=0)


def test_final_observations_where_episodes_ended():
    reset = np.array([[10.0], [11.0], [12.0]])
    info = {
        "final_obs": np.array([np.array([5.0]), np.array([6.0]), None], dtype=object),
        "_final_obs": np.array([True, True, False]),
    }
    final = final_observations(reset, np.array([True, False, False]), np.array([False, True, False]), info)
    np.testing.assert_array_equal(final[:, 0], [5.0, 6.0, 12.0])
    assert final.dtype == np.float32


def test_gym_factory_seeds_and_autoresets_in_the_same_step():
    env, obs = make_gym_env("Pendulum-v1", 2, seed=3)
    single = [gym.make("Pendulum-v1") for _ in range(2)]
    for i, e in enumerate(single):
        np.testing.assert_allclose(obs[i], e.reset(seed=3 + i)[0], rtol=1e-6)
    assert obs.dtype == np.float32
    env.close()


@pytest.mark.parametrize(("env_id", "steps"), [("Pendulum-v1", 420), ("InvertedPendulum-v5", 200)])
def test_one_env_steps_exactly_as_a_one_env_sync_vector_env(env_id, steps):
    """`OneEnv` (what `make_gym_env` builds for one env) against gymnasium's `SyncVectorEnv` with
    same-step autoreset: the same observations, rewards, flags (values, dtypes, shapes), info keys
    and final observations, step by step, across time-limit truncations (Pendulum, 200 steps) and
    terminations (InvertedPendulum)."""
    reference = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    env, obs = make_gym_env(env_id, 1, seed=3)
    assert isinstance(env, OneEnv) and env.num_envs == 1
    np.testing.assert_array_equal(obs, np.asarray(reference.reset(seed=3)[0], np.float32))
    rng, ends = np.random.default_rng(0), 0
    space = env.single_action_space
    for _ in range(steps):
        action = rng.uniform(space.low, space.high, (1, *space.shape)).astype(np.float32)
        expected, got = reference.step(action), env.step(action)
        for a, b in zip(expected[:4], got[:4], strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        assert set(expected[4]) == set(got[4])
        np.testing.assert_array_equal(
            final_observations(expected[0], *expected[2:]), final_observations(got[0], *got[2:])
        )
        ends += int(expected[2][0] or expected[3][0])
    assert ends >= 2  # the autoreset path ran
    reference.close()
    env.close()
    assert env.closed


# --- Brax (optional extra) -------------------------------------------------------------------------------


@pytest.fixture
def brax_envs():
    return pytest.importorskip("brax.envs")


def test_brax_without_the_extra_or_unknown_is_one_line_error():
    if _has("brax"):
        with pytest.raises(ValueError, match="unknown Brax environment 'cheetah'; supported: ant, "):
            make_jax_env("brax:cheetah")
    else:
        with pytest.raises(ValueError, match=r"brax:ant needs the optional Brax extra: pip install 'reparam\[brax\]'"):
            check_env_name("brax:ant")


def test_brax_time_limit_truncates_and_resets_in_the_same_step(brax_envs):
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


def test_brax_pole_falling_is_a_termination(brax_envs):
    env = BraxAsGymnax(brax_envs.get_environment("inverted_pendulum"), episode_length=1000)
    _, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for t in range(200):
        _, state, _, terminated, truncated, _ = step(jax.random.key(t), state, jnp.ones(1))
        if bool(terminated):
            break
    assert bool(terminated) and not bool(truncated)


def test_compiled_sac_runs_on_brax_with_finite_metrics(brax_envs):
    from reparam.rl import RunSpec, SACConfig, make_train, sac_agent

    assert env_spec("brax:inverted_pendulum")[0] == 4
    jenv = make_jax_env("brax:inverted_pendulum")
    assert jenv.obs_dim == 4 and jenv.bounds.low.tolist() == [-1.0]
    agent = sac_agent(SACConfig(hidden_sizes=(16, 16), batch_size=16, learning_starts=50))
    run = make_train(agent, "brax:inverted_pendulum", RunSpec(total_steps=200, eval_every=100, eval_episodes=1))
    _, metrics = jax.jit(jax.vmap(run.train))(jax.random.split(jax.random.key(0), 2))
    assert np.asarray(metrics["step"]).tolist() == [[100, 200]] * 2
    assert all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values())

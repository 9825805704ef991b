"""The SAC host loop on real Gymnasium environments: it runs and reports finite metrics, warm-up
actions are uniform in the bounds, time-limit truncation stores the real last observation and no
termination, environment errors are one clear line, MuJoCo runs."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import jax
import numpy as np
import pytest
from scipy import stats

import equinox as eqx
import jax.numpy as jnp

from reparam.rl.host import add_in_place, evaluate, make_gym_env, make_kernels, to_transition, train_host
from reparam.rl.replay import Transition, init_buffer
from reparam.rl.sac import SACConfig, init_sac


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam mixes a Python float with its int32 step count, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


TINY = SACConfig(hidden_sizes=(32, 32), batch_size=32, learning_starts=100)
METRIC_KEYS = {"step", "eval_return", "critic_loss", "actor_loss", "alpha", "entropy", "steps_per_second"}


@pytest.mark.parametrize("num_envs", [1, 2])
def test_pendulum_smoke(num_envs):
    seen = []
    result = train_host("Pendulum-v1", TINY, 300, seed=0, num_envs=num_envs, eval_every=200, eval_episodes=2,
                        on_eval=lambda step, m: seen.append(step))
    assert seen == [200, 300] == [m["step"] for m in result.metrics]
    for m in result.metrics:
        assert METRIC_KEYS <= m.keys()
        assert all(math.isfinite(m[k]) for k in METRIC_KEYS), m
        assert -200 * 16.3 <= m["eval_return"] <= 0  # Pendulum's reward is in [-16.3, 0] per step
    # 300 transitions, one gradient step per vector step once 100 transitions are in.
    assert int(result.buffer.size) == 300
    assert result.metrics[-1]["gradient_steps"] == 300 // num_envs - 100 // num_envs + 1
    assert result.buffer.data.obs.dtype == np.float32 and result.buffer.data.next_obs.dtype == np.float32
    assert math.isfinite(result.steps_per_second) and result.steps_per_second > 0
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.state.actor) if hasattr(leaf, "dtype"))


def test_warm_up_actions_are_uniform_in_the_bounds():
    """1000 warm-up actions on MountainCarContinuous (bounds [-1, 1]): a KS test against U(-1, 1).
    An untrained policy would not pass it (its actions cluster near tanh(mu) with std ~0.2)."""
    n = 1000
    config = SACConfig(hidden_sizes=(32, 32), batch_size=32, learning_starts=10**6)
    result = train_host("MountainCarContinuous-v0", config, n, seed=1, eval_every=n, eval_episodes=1)
    actions = np.asarray(result.buffer.data.action)[:, 0]
    assert actions.shape == (n,) and len(np.unique(actions)) > 0.99 * n
    assert -1 <= actions.min() < -0.98 and 0.98 < actions.max() <= 1
    assert stats.kstest(actions, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert abs(actions.std() - 2 / np.sqrt(12)) < 5 * 0.26 / np.sqrt(n)  # 0.26 / sqrt(n): the standard error of the sd
    assert result.metrics[-1]["gradient_steps"] == 0


def pendulum_oracle(env, obs, action):
    """Pendulum-v1's own dynamics and reward, from the state `(theta, theta_dot)` read off `obs`."""
    env.state = np.array([np.arctan2(obs[1], obs[0]), obs[2]], np.float64)
    next_obs, reward, *_ = env.step(action)
    return next_obs, reward


@pytest.mark.parametrize("num_envs", [1, 2])
def test_truncation_stores_final_observation_and_no_termination(num_envs):
    """Pendulum never terminates and truncates at 200 steps: 450 transitions hold episode ends.
    Every stored `(s, a) -> (r, s')` must follow Pendulum's dynamics, the ends included, so an end
    whose `next_obs` were the reset observation would fail; every `terminated` is 0."""
    config = SACConfig(hidden_sizes=(32, 32), batch_size=32, learning_starts=10**6)
    result = train_host("Pendulum-v1", config, 450, seed=2, num_envs=num_envs, eval_every=10**6, eval_episodes=1)
    data = jax.tree.map(np.asarray, result.buffer.data)
    assert np.all(data.terminated == 0.0)
    oracle = gym.make("Pendulum-v1").unwrapped
    oracle.reset(seed=0)
    for row in range(450):
        next_obs, reward = pendulum_oracle(oracle, data.obs[row], data.action[row])
        np.testing.assert_allclose(data.next_obs[row], next_obs, atol=1e-5, err_msg=f"row {row}")
        np.testing.assert_allclose(data.reward[row], reward, rtol=1e-5, atol=1e-5, err_msg=f"row {row}")
    # Row `(t - 1) * num_envs + i` is env i's step t; at steps 200, 400 its episode was cut and the
    # next row's obs is the reset one. Elsewhere the stored next_obs is the next row's obs.
    ends = [row for row in range(450) if (row // num_envs + 1) % 200 == 0]
    assert len(ends) == 450 // (200 * num_envs) * num_envs
    for row in range(450 - num_envs):
        continued = np.array_equal(data.next_obs[row], data.obs[row + num_envs])
        assert continued == (row not in ends), f"row {row}"


def test_to_transition_uses_final_obs_and_stores_termination_only():
    obs = np.array([[0.0], [1.0], [2.0]])
    reset = np.array([[10.0], [11.0], [12.0]])
    info = {"final_obs": np.array([np.array([5.0]), np.array([6.0]), None], dtype=object),
            "_final_obs": np.array([True, True, False])}
    t = to_transition(obs, np.zeros((3, 1)), np.ones(3), np.array([True, False, False]),
                      np.array([False, True, False]), reset, info)
    np.testing.assert_array_equal(t.next_obs[:, 0], [5.0, 6.0, 12.0])
    np.testing.assert_array_equal(t.terminated, [1.0, 0.0, 0.0])
    assert all(x.dtype == np.float32 for x in t)


def test_unknown_env_id_is_one_line_value_error():
    with pytest.raises(ValueError) as err:
        make_gym_env("NoSuchEnv-v0", 1, seed=0)
    message = str(err.value)
    assert "\n" not in message and "NoSuchEnv-v0" in message
    for env_id in ("Pendulum-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"):
        assert env_id in message


def test_discrete_env_is_one_line_value_error():
    with pytest.raises(ValueError) as err:
        train_host("CartPole-v1", TINY, 10, seed=0)
    assert str(err.value) == "SAC needs a continuous (Box) action space; CartPole-v1 has Discrete(2)"


def test_half_cheetah_smoke():
    pytest.importorskip("mujoco")
    config = SACConfig(hidden_sizes=(32, 32), batch_size=16, learning_starts=20)
    result = train_host("HalfCheetah-v5", config, 50, seed=0, eval_every=50, eval_episodes=1)
    (m,) = result.metrics
    assert m["step"] == 50 and m["gradient_steps"] == 31
    assert all(math.isfinite(m[k]) for k in METRIC_KEYS), m
    assert result.buffer.data.obs.shape == (50, 17) and result.buffer.data.action.shape == (50, 6)
    assert np.all(np.abs(np.asarray(result.buffer.data.action)) <= 1.0)


def test_kernels_update_in_place_and_act_deterministically():
    """The buffer write and the training call donate their inputs (no per-step copy); the buffer
    itself survives training; the evaluation action is `low + (tanh(mu) + 1)(high - low)/2`."""
    obs_dim, low, high = 3, (-2.0,), (2.0,)  # Pendulum's: the kernels compiled by the smoke test are reused
    state = jax.tree.map(lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x,
                         init_sac(jax.random.key(0), obs_dim, 1, TINY))
    params, static = eqx.partition(state, eqx.is_array)
    kernels = make_kernels(static, TINY, low, high)
    rows = Transition(np.ones((40, obs_dim), np.float32), np.zeros((40, 1), np.float32), np.ones(40, np.float32),
                      np.ones((40, obs_dim), np.float32), np.zeros(40, np.float32))
    empty = init_buffer(jax.tree.map(lambda x: x[0], rows), 300)
    buffer = add_in_place(empty, rows)
    assert empty.data.obs.is_deleted() and int(buffer.size) == 40
    new_params, metrics, _ = kernels.train(params, buffer, jax.random.key(1))
    assert params.actor.net.layers[0].weight.is_deleted() and not buffer.data.obs.is_deleted()
    assert int(new_params.gradient_steps) == TINY.gradient_steps and np.isfinite(float(metrics["critic_loss"]))

    obs = np.random.default_rng(0).normal(size=(5, obs_dim)).astype(np.float32)
    actor = eqx.combine(new_params.actor, static.actor)
    mean, _ = actor(obs)
    expected = np.array(low) + (np.tanh(np.asarray(mean)) + 1) * (np.array(high) - np.array(low)) / 2
    np.testing.assert_allclose(kernels.deterministic_action(new_params.actor, obs), expected, rtol=1e-5, atol=1e-6)


def test_evaluate_returns_full_episode_returns():
    """Two evaluation episodes of Pendulum with the zero action equal hand-run episodes."""
    env, _ = make_gym_env("Pendulum-v1", 2, seed=5)
    returns = evaluate(env, lambda obs: np.zeros((len(obs), 1), np.float32))
    for i in range(2):
        single = gym.make("Pendulum-v1")
        single.reset(seed=5 + i)
        single.reset()  # evaluate starts from the env's next episode
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = single.step(np.zeros(1, np.float32))
            total, done = total + reward, terminated or truncated
        np.testing.assert_allclose(returns[i], total, rtol=1e-12)


def test_resume_restores_agent_buffer_key_and_counters():
    """A checkpoint taken at step 150 (copied off the device: the loop donates its arrays) restores
    the agent, buffer, key and counters exactly; the run then finishes with the uninterrupted run's
    step and gradient-step counts, and the first 150 buffer rows are the same transitions."""
    saved = []
    whole = train_host("Pendulum-v1", TINY, 300, seed=0, eval_every=150, eval_episodes=1,
                       on_checkpoint=lambda c: saved.append(jax.tree.map(lambda x: np.array(x, copy=True), c)))
    assert [int(c.vector_step) for c in saved] == [150, 300]
    seen = []

    def restore(fresh):
        assert jax.tree.structure(fresh) == jax.tree.structure(saved[0])
        assert all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(saved[0])))
        return jax.tree.map(jnp.asarray, saved[0])

    resumed = train_host("Pendulum-v1", TINY, 300, seed=0, eval_every=150, eval_episodes=1, restore=restore,
                         on_checkpoint=seen.append)
    assert [m["step"] for m in resumed.metrics] == [300] and [int(c.vector_step) for c in seen] == [300]
    assert int(resumed.state.gradient_steps) == int(whole.state.gradient_steps) == 300 - 100 + 1
    assert int(resumed.buffer.size) == 300
    np.testing.assert_array_equal(np.asarray(resumed.buffer.data.obs)[:150], np.asarray(whole.buffer.data.obs)[:150])
    # New episodes after the resume: the rows from 150 on are different transitions.
    assert not np.array_equal(np.asarray(resumed.buffer.data.obs)[150:], np.asarray(whole.buffer.data.obs)[150:])


def test_cli_host_loop_run_folder_resume_and_evaluate(tmp_path, capsys):
    """`reparam sac` with a Gymnasium id writes its run folder; a run killed after three checkpoints
    (seed 0 done, seed 1 half way) resumes at seed 1 step 150, keeps seed 0's metrics and policy, and
    `reparam evaluate` scores both saved policies."""
    import tyro

    from reparam.cli import main
    from reparam.rl.run import SACRunConfig, run

    args = ["--env", "Pendulum-v1", "--total-steps", "300", "--eval-every", "150", "--eval-episodes", "1",
            "--num-seeds", "2", "--sac.hidden-sizes", "16", "16", "--sac.batch-size", "16",
            "--sac.learning-starts", "50"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["sac", *args, "--out", str(whole)]) == 0
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["step"]) for r in rows] == [(0, 150), (0, 300), (1, 150), (1, 300)]
    assert all(np.isfinite(r["eval_return"]) for r in rows)
    for name in ("config.json", "metrics.csv", "learning_curve.png", "policy.eqx", "checkpoint.eqx"):
        assert (whole / name).exists(), name

    run(tyro.cli(SACRunConfig, args=[*args, "--out", str(killed)]), max_chunks=3)
    assert json.loads((killed / "checkpoint.json").read_text()) == {"seed_index": 1, "step": 150}
    capsys.readouterr()
    assert main(["sac", "--resume", str(killed)]) == 0
    assert "Resuming" in capsys.readouterr().out
    resumed = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["step"]) for r in resumed] == [(0, 150), (0, 300), (1, 150), (1, 300)]
    same = lambda r: json.dumps({k: v for k, v in r.items() if k != "steps_per_second"})  # NaN-safe, no timing
    assert list(map(same, resumed[:3])) == list(map(same, rows[:3]))  # seed 0, seed 1's first evaluation: same run
    assert (killed / "policy_seed0.eqx").read_bytes() == (whole / "policy_seed0.eqx").read_bytes()

    capsys.readouterr()
    assert main(["evaluate", str(killed), "--episodes", "2"]) == 0
    assert "Pendulum-v1: mean return over 2 episodes per seed" in capsys.readouterr().out


def test_runs_with_different_seeds_share_no_episode_seed(monkeypatch):
    """Training and evaluation environments of seeds 0-3 (2 envs, 5 evaluation episodes each) are
    reset with pairwise disjoint seed ranges (consecutive seeds used to share most of them)."""
    import reparam.rl.host as host

    opened = []

    class Opened(Exception):
        pass

    def record(env_id, num_envs, seed):
        opened.append(range(seed, seed + num_envs))
        if len(opened) % 2 == 0:  # training and evaluation envs made: stop before any work
            raise Opened
        return None, None

    monkeypatch.setattr(host, "make_gym_env", record)
    for seed in range(4):
        with pytest.raises(Opened):
            train_host("Pendulum-v1", TINY, 100, seed, num_envs=2, eval_episodes=5)
    used = [s for r in opened for s in r]
    assert len(opened) == 8 and len(used) == len(set(used)) == 4 * (2 + 5)

"""The host loop on real Gymnasium environments: it runs and reports finite metrics (none before the
agent has learned), warm-up actions are uniform in the bounds, time-limit truncation stores the real
last observation and no termination, the buffer write and the learning call donate their inputs,
chunks end where evaluations fall, a resume restores agent, buffer, key and counters, seeds share no
episode seed, MuJoCo runs."""

from __future__ import annotations

import functools
import math
import types

import gymnasium as gym
import jax
import numpy as np
import pytest
from scipy import stats

from reparam.rl.agent import sac_agent
from reparam.rl.envs import env_spec
from reparam.rl.host import make_host_loop, make_kernels, pack_step, run_host
from reparam.rl.replay import Transition, init_buffer
from reparam.rl.sac import METRICS, SACConfig


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam mixes a Python float with its int32 step count, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


TINY = SACConfig(hidden_sizes=(32, 32), batch_size=32, learning_starts=100)
NO_LEARNING = SACConfig(hidden_sizes=(32, 32), batch_size=32, learning_starts=10**6)
ROW_KEYS = {"seed", "step", "eval_return", "steps_per_second", *METRICS, "gradient_steps"}


@functools.cache
def loop(
    config: SACConfig, env_id: str, total_steps: int, num_envs: int = 1, eval_every: int = 10**6, eval_episodes: int = 1
):
    """A loop per setting; loops of one config and environment share their compiled agent calls
    (as a process running several settings could)."""
    new = make_host_loop(
        sac_agent(config),
        env_id,
        total_steps=total_steps,
        num_envs=num_envs,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
    )
    return new._replace(agent=shared(config, env_id).agent, kernels=shared(config, env_id).kernels)


@functools.cache
def shared(config: SACConfig, env_id: str):
    agent = sac_agent(config)
    return types.SimpleNamespace(agent=agent, kernels=make_kernels(agent, *env_spec(env_id)))


@pytest.mark.parametrize("num_envs", [1, 2])
def test_pendulum_smoke(num_envs):
    state, rows = run_host(loop(TINY, "Pendulum-v1", 300, num_envs, 200, 2), seed=0)
    assert [r["step"] for r in rows] == [200, 300]
    for r in rows:
        assert ROW_KEYS <= r.keys() and r["seed"] == 0
        assert all(math.isfinite(v) for v in r.values()), r
        assert -200 * 16.3 <= r["eval_return"] <= 0  # Pendulum's reward is in [-16.3, 0] per step
    # 300 transitions, one gradient step per vector step once 100 transitions are in.
    assert int(state.buffer.size) == 300
    assert rows[-1]["gradient_steps"] == 300 // num_envs - 100 // num_envs + 1 == state.learn_calls
    assert state.buffer.data.obs.dtype == np.float32 and state.buffer.data.next_obs.dtype == np.float32
    assert rows[-1]["training_steps_per_second"] > 0 and "training_steps_per_second" not in rows[0]
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))


def test_warm_up_actions_are_uniform_in_the_bounds_and_rows_hold_no_training_metrics():
    """1000 warm-up actions on MountainCarContinuous (bounds [-1, 1]): a KS test against U(-1, 1).
    An untrained policy would not pass it (its actions cluster near tanh(mu) with std ~0.2). The
    agent never learned, so its row has no training metrics (no placeholders)."""
    n = 1000
    state, (row,) = run_host(loop(NO_LEARNING, "MountainCarContinuous-v0", n, eval_every=n), seed=1)
    actions = np.asarray(state.buffer.data.action)[:, 0]
    assert actions.shape == (n,) and len(np.unique(actions)) > 0.99 * n
    assert -1 <= actions.min() < -0.98 and 0.98 < actions.max() <= 1
    assert stats.kstest(actions, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert abs(actions.std() - 2 / np.sqrt(12)) < 5 * 0.26 / np.sqrt(n)  # 0.26 / sqrt(n): the standard error of the sd
    assert state.learn_calls == 0 and set(row) == {"seed", "step", "eval_return", "train_return", "steps_per_second"}


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
    state, _ = run_host(loop(NO_LEARNING, "Pendulum-v1", 450, num_envs), seed=2)
    data = jax.tree.map(np.asarray, state.buffer.data)
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


def test_half_cheetah_smoke():
    pytest.importorskip("mujoco")
    config = SACConfig(hidden_sizes=(32, 32), batch_size=16, learning_starts=20)
    state, (row,) = run_host(loop(config, "HalfCheetah-v5", 50, eval_every=50), seed=0)
    assert row["step"] == 50 and row["gradient_steps"] == 31
    assert ROW_KEYS <= row.keys() and all(math.isfinite(v) for v in row.values()), row
    assert state.buffer.data.obs.shape == (50, 17) and state.buffer.data.action.shape == (50, 6)
    assert np.all(np.abs(np.asarray(state.buffer.data.action)) <= 1.0)


def test_kernels_update_in_place():
    """The buffer write and the learning call donate their inputs (no per-step copy); the buffer
    itself survives learning."""
    kernels = loop(TINY, "Pendulum-v1", 300, 1, 200, 2).kernels  # the smoke test's: compiled already
    params = kernels.init(jax.random.key(0))
    rows = Transition(
        np.ones((40, 3), np.float32),
        np.zeros((40, 1), np.float32),
        np.ones(40, np.float32),
        np.ones((40, 3), np.float32),
        np.zeros(40, np.float32),
    )
    empty = init_buffer(jax.tree.map(lambda x: x[0], rows), 300)
    buffer = kernels.record(empty, rows.obs, rows.action, rows.reward, rows.next_obs, rows.terminated)
    assert empty.data.obs.is_deleted() and int(buffer.size) == 40
    new_params, metrics, _ = kernels.learn(params, buffer, jax.random.key(1))
    assert jax.tree.leaves(params)[0].is_deleted() and not buffer.data.obs.is_deleted()
    assert int(metrics["gradient_steps"]) == TINY.gradient_steps and np.isfinite(float(metrics["critic_loss"]))


def test_fused_step_never_copies_the_buffer():
    """`Kernels.step` (write, learn, explore in one program) keeps the buffer in place: XLA's
    temporaries are the same for a 1,000-row and a 100,000-row buffer (fused unconditionally, the
    batch gather read the old buffer while the write overwrote it, and XLA copied a whole column,
    twice, every step), and every output is aliased to its donated argument."""
    kernels = shared(TINY, "Pendulum-v1").kernels
    leaves, key_data = kernels.flat(kernels.init(jax.random.key(0)), jax.random.key(1))
    row = (np.ones((1, 3), np.float32), np.zeros((1, 1), np.float32), np.ones(1, np.float32))
    transition = (*row, np.ones((1, 3), np.float32), np.zeros(1, np.float32))

    def memory(capacity: int):
        buffer = init_buffer(Transition(*(x[0] for x in transition)), capacity)
        compiled = kernels.step.lower(leaves, buffer, key_data, pack_step(*transition, row[0])).compile()
        return compiled.memory_analysis()

    small, large = memory(1_000), memory(100_000)
    column = 100_000 * 3 * 4  # bytes of one (capacity, obs_dim) float32 column
    assert large.temp_size_in_bytes - small.temp_size_in_bytes < column // 10
    buffer_bytes = 99_000 * (3 + 1 + 1 + 3 + 1) * 4
    assert large.alias_size_in_bytes - small.alias_size_in_bytes >= buffer_bytes


@pytest.mark.parametrize(
    ("total", "num_envs", "every", "ends"),
    [
        (300, 1, 150, (150, 300)),
        (300, 2, 150, (75, 150)),
        (300, 7, 100, (15, 29, 43)),
        (300, 2, 299, (150,)),
        (10, 3, 2, (1, 2, 3, 4)),
    ],
)
def test_chunks_end_at_the_first_vector_step_reaching_each_evaluation(total, num_envs, every, ends):
    """An evaluation at every vector step whose transitions cross a multiple of `eval_every`, and at
    the last one (the rule of the loop before it was split into chunks)."""
    vector_steps = -(-total // num_envs)
    old = [
        t
        for t in range(1, vector_steps + 1)
        if (t * num_envs) // every > (t * num_envs - num_envs) // every or t == vector_steps
    ]
    assert loop(NO_LEARNING, "Pendulum-v1", total, num_envs, every).ends == ends == tuple(old)


def test_resume_restores_agent_buffer_key_and_counters():
    """A checkpoint after the first chunk (copied off the device: the loop donates its arrays)
    restores the agent, buffer, key and counters exactly; the run then finishes with the
    uninterrupted run's step and gradient-step counts, and the first 150 buffer rows are the same
    transitions; after the resume the environments start new episodes."""
    run = loop(TINY, "Pendulum-v1", 300, 1, 150)
    state = run.init(0)
    state, first = run.advance(state, 0)
    saved = jax.tree.map(lambda x: np.array(x, copy=True), run.saved(state))
    whole, last = run.advance(state, 1)
    run.close(whole)

    fresh = run.init(5)  # any seed: the saved one comes back
    template = run.saved(fresh)
    assert jax.tree.structure(template) == jax.tree.structure(saved)
    assert all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(saved), strict=True)
    )
    restored = run.restored(fresh, saved)
    assert (restored.seed, restored.vector_step, restored.learn_calls) == (0, 150, 51)
    for a, b in zip(jax.tree.leaves(run.saved(restored)), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(a, b)
    resumed, again = run.advance(restored, 1)
    run.close(resumed)
    assert again["step"] == last["step"] == 300 and again["gradient_steps"] == last["gradient_steps"] == 201
    assert int(resumed.buffer.size) == 300
    np.testing.assert_array_equal(np.asarray(resumed.buffer.data.obs)[:150], np.asarray(whole.buffer.data.obs)[:150])
    assert not np.array_equal(np.asarray(resumed.buffer.data.obs)[150:], np.asarray(whole.buffer.data.obs)[150:])
    with pytest.raises(ValueError, match="chunk 0 covers vector steps 1-150; the state is at 300"):
        run.advance(resumed, 0)


def test_run_to_then_advance_is_advance():
    """Stepping part of a chunk with `run_to` (as a caller timing single steps does) and then
    `advance` gives the chunk `advance` alone gives."""
    run = loop(TINY, "Pendulum-v1", 300, 1, 200, 2)  # the smoke test's: compiled already
    untimed = lambda row: {k: v for k, v in row.items() if "per_second" not in k}
    rows = []
    for stops in ((), (1, 99, 150)):
        state = run.init(0)
        for t in stops:
            state = run.run_to(state, t)
        state, row = run.advance(state, 0)
        run.close(state)
        rows.append(untimed(row))
    assert rows[0] == rows[1] and rows[0]["gradient_steps"] == 101


def test_runs_with_different_seeds_share_no_episode_seed(monkeypatch):
    """Training and evaluation environments of seeds 0-3 (2 envs, 5 evaluation episodes each) are
    reset with pairwise disjoint seed ranges (consecutive seeds used to share most of them)."""
    import reparam.rl.host as host

    run = loop(TINY, "Pendulum-v1", 100, 2, 100, 5)
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
            run.init(seed)
    used = [s for r in opened for s in r]
    assert len(opened) == 8 and len(used) == len(set(used)) == 4 * (2 + 5)


def test_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match="host loop: eval_episodes must be >= 1, got 0"):
        make_host_loop(sac_agent(TINY), "Pendulum-v1", total_steps=10, eval_episodes=0)
    with pytest.raises(ValueError, match=r"buffer_size \(32\) must hold one vector step \(64 envs\)"):
        make_host_loop(sac_agent(SACConfig(batch_size=32, buffer_size=32)), "Pendulum-v1", total_steps=100, num_envs=64)
    with pytest.raises(ValueError, match="SAC needs a continuous"):
        make_host_loop(sac_agent(TINY), "CartPole-v1", total_steps=10)

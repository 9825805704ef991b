"""The compiled loop on gymnax: it learns Pendulum, every seed finite; the learn/skip decision stays a
branch under vmap; `reparam sac`'s program donates its carry; rows omit the training metrics until
the agent has learned; seeds shard over several devices (also MountainCarContinuous's smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from reparam.rl.agent import sac_agent
from reparam.rl.compiled import RunSpec, make_train, rows
from reparam.rl.sac import METRICS, SACConfig

pytestmark = pytest.mark.usefixtures("as_users_run_it")


SMALL = SACConfig(hidden_sizes=(64, 64), batch_size=64, learning_starts=500, learning_rate=1e-3)
TINY = SACConfig(hidden_sizes=(8, 8), batch_size=8, learning_starts=20)


def test_learns_pendulum_swing_up():
    """Two seeds, 6,000 steps each: random play scores about -1,200 to -1,600; a learned swing-up
    scores above -400 (the paper-size SAC reaches about -150 by 20,000 steps)."""
    spec = RunSpec(total_steps=6000, eval_every=2000, eval_episodes=5)
    run = make_train(sac_agent(SMALL), "gymnax:Pendulum-v1", spec)
    _, metrics = jax.jit(jax.vmap(run.train))(jax.random.split(jax.random.key(0), 2))
    returns = np.asarray(metrics["eval_return"])
    assert np.all(np.isfinite(returns)) and np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    assert np.all(returns[:, 0] < -900), returns  # before learning
    assert np.all(returns[:, -1] > -400), returns  # after


def test_bad_environment_and_sizes():
    with pytest.raises(ValueError, match="unknown JAX-native environment 'gymnax:CartPole-v1'; supported: "):
        make_train(sac_agent(SMALL), "gymnax:CartPole-v1", RunSpec(1000, 500, 1))
    with pytest.raises(ValueError, match="'Pendulum-v1' is not a JAX-native environment"):
        make_train(sac_agent(SMALL), "Pendulum-v1", RunSpec(1000, 500, 1))
    with pytest.raises(ValueError, match="total_steps >= eval_every"):
        make_train(sac_agent(SMALL), "gymnax:Pendulum-v1", RunSpec(100, 500, 1))


def test_warm_up_skips_learning_under_vmap():
    """The learn/skip decision depends on the shared step number only, so vmapping over seeds keeps
    it a `cond` (a per-seed predicate becomes a `select` that computes the update on every step)."""
    run = make_train(sac_agent(SMALL), "gymnax:Pendulum-v1", RunSpec(total_steps=1000, eval_every=500, eval_episodes=1))
    keys = jax.random.split(jax.random.key(0), 3)
    carry = jax.eval_shape(jax.vmap(run.init), keys)
    jaxpr = str(jax.make_jaxpr(jax.vmap(run.advance, in_axes=(0, 0, None)))(carry, keys, np.int32(0)))
    assert " cond[" in jaxpr


def test_one_seed_program_matches_the_batched_one_and_compiles_once():
    """`num_seeds=1` compiles the unbatched run behind the same seed-axis interface: same carry and
    metrics as the vmapped program over one seed (two chunks, learning in the second), carry donated.
    Either program compiles `advance` once: the carry keeps its types from chunk to chunk."""
    from reparam.commands.sac import compiled_program

    spec = RunSpec(40, 20, 1)
    keys = jax.random.split(jax.random.key(3), 1)
    outputs = []
    for num_seeds in (None, 1):
        _, init, advance = compiled_program(TINY, "gymnax:Pendulum-v1", spec, num_seeds)
        carry = init(keys)
        if num_seeds == 1:
            lowered = advance.lower(carry, keys, np.int32(0))
            assert lowered.as_text().count("tf.aliasing_output") >= len(jax.tree.leaves(carry))
        signature = [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(carry)]
        for chunk in range(2):
            carry, metrics = advance(carry, keys, np.int32(chunk))
            # the carry comes back with init's exact types (no weak scalars), so `advance` compiles once
            assert [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(carry)] == signature
        assert advance._cache_size() == 1
        outputs.append(jax.device_get((carry, metrics)))
    batched, single = outputs
    assert jax.tree.structure(batched) == jax.tree.structure(single)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
        assert a.shape == b.shape and a.shape[:1] == (1,)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert int(single[1]["learn_calls"][0]) == 21  # steps 20..40 learn


def test_program_donates_the_carry_and_rows_wait_for_learning():
    """`reparam sac`'s jitted chunk replaces the carry (buffers and agents of every seed) in place:
    every carry leaf is lowered as an input aliased to its output (checked on the lowered program).
    Rows of a chunk before the first learning step hold no training metrics (no placeholders)."""
    from reparam.commands.sac import compiled_program

    run, init, advance = compiled_program(TINY, "gymnax:Pendulum-v1", RunSpec(40, 20, 1))
    keys = jax.random.split(jax.random.key(1), 2)
    carry = init(keys)
    lowered = advance.lower(carry, keys, np.int32(0)).as_text()
    assert lowered.count("tf.aliasing_output") >= len(jax.tree.leaves(carry)) > 10

    metrics = {
        "step": np.array([20, 20]),
        "eval_return": np.array([-1.5, -2.5], np.float32),
        "learn_calls": np.array([0, 0], np.int32),
        **{name: np.zeros(2, np.float32) for name in METRICS},
        "gradient_steps": np.zeros(2, np.int32),
    }
    assert rows(run.agent, metrics, 5) == [
        {"seed": 5, "step": 20, "eval_return": -1.5},
        {"seed": 6, "step": 20, "eval_return": -2.5},
    ]
    learned = rows(run.agent, {**metrics, "learn_calls": np.array([3, 3], np.int32)}, 5)
    assert set(learned[1]) == {"seed", "step", "eval_return", *METRICS, "gradient_steps"}


def test_seeds_shard_over_four_cpu_devices():
    """Four seeds of MountainCarContinuous over four forced CPU devices (also this env's smoke test)."""
    code = (
        "import jax, numpy as np\n"
        "from reparam.rl import RunSpec, SACConfig, make_train, sac_agent, shard_seeds\n"
        "assert len(jax.devices()) == 4\n"
        "config = SACConfig(hidden_sizes=(8, 8), batch_size=8, learning_starts=20)\n"
        "run = make_train(sac_agent(config), 'gymnax:MountainCarContinuous-v0', RunSpec(40, 20, 1))\n"
        "keys = shard_seeds(jax.random.split(jax.random.key(0), 4))\n"
        "assert len(keys.sharding.device_set) == 4\n"
        "_, m = jax.jit(jax.vmap(run.train))(keys)\n"
        "assert np.all(np.isfinite(np.asarray(m['eval_return']))) and len(m['eval_return'].sharding.device_set) == 4\n"
        "assert m['step'].tolist() == [[20, 40]] * 4 and m['learn_calls'].tolist() == [[1, 21]] * 4\n"
        "print('ok')\n"
    )
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]

"""The compiled SAC loop on gymnax: it learns Pendulum, every seed finite; chunked runs resume
exactly from a checkpoint; seeds shard over several devices; the CLI writes its run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pytest

from reparam.cli import main
from reparam.rl.sac import SACConfig
from reparam.rl.train import RunSpec, make_train


@pytest.fixture(autouse=True)
def _as_users_run_it():
    """Default JAX settings here: gymnax environments are not float64-clean (their reset and step
    disagree on dtypes under x64), and optax's Adam mixes a Python float with its int32 step count,
    which strict promotion rejects."""
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield


SMALL = SACConfig(hidden_sizes=(64, 64), batch_size=64, learning_starts=500, learning_rate=1e-3)


def test_learns_pendulum_swing_up():
    """Two seeds, 6,000 steps each: random play scores about -1,200 to -1,600; a learned swing-up
    scores above -400 (the paper-size SAC reaches about -150 by 20,000 steps)."""
    run = make_train(SMALL, "gymnax:Pendulum-v1", RunSpec(total_steps=6000, eval_every=2000, eval_episodes=5))
    _, metrics = eqx.filter_jit(eqx.filter_vmap(run.train))(jax.random.split(jax.random.key(0), 2))
    returns = np.asarray(metrics["eval_return"])
    assert np.all(np.isfinite(returns)) and np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    assert np.all(returns[:, 0] < -900), returns  # before learning
    assert np.all(returns[:, -1] > -400), returns  # after


def test_bad_environment_and_sizes():
    with pytest.raises(ValueError, match="unknown JAX-native environment 'gymnax:CartPole-v1'"):
        make_train(SMALL, "gymnax:CartPole-v1", RunSpec(1000, 500, 1))
    with pytest.raises(ValueError, match="total_steps >= eval_every"):
        make_train(SMALL, "gymnax:Pendulum-v1", RunSpec(100, 500, 1))


def test_warm_up_skips_gradient_steps_under_vmap():
    """The learn/skip decision depends on the shared step number only, so vmapping over seeds keeps
    it a `cond` (a per-seed predicate becomes a `select` that computes the update on every step)."""
    run = make_train(SMALL, "gymnax:Pendulum-v1", RunSpec(total_steps=1000, eval_every=500, eval_episodes=1))
    keys = jax.random.split(jax.random.key(0), 3)
    carry = jax.eval_shape(jax.vmap(run.init), keys)
    jaxpr = str(jax.make_jaxpr(jax.vmap(run.advance, in_axes=(0, 0, None)))(carry, keys, np.int32(0)))
    assert " cond[" in jaxpr


def test_compiled_run_donates_the_carry():
    """`reparam sac`'s jitted step replaces the carry (buffers and agents of every seed) in place:
    every carry leaf is lowered as an input aliased to its output (checked on the lowered program,
    without compiling it)."""
    from reparam.rl.run import compiled_run

    compiled, init, advance = compiled_run(SACConfig(hidden_sizes=(8, 8), batch_size=8, learning_starts=20),
                                           "gymnax:Pendulum-v1", RunSpec(40, 20, 1))
    keys = jax.random.split(jax.random.key(1), 2)
    carry = init(keys)
    lowered = advance.lower(carry, keys, np.int32(0)).as_text()
    assert lowered.count("tf.aliasing_output") >= len(jax.tree.leaves(carry)) > 10


TINY = ["--env", "gymnax:Pendulum-v1", "--total-steps", "600", "--eval-every", "200", "--eval-episodes", "2",
        "--num-seeds", "2", "--sac.hidden-sizes", "16", "16", "--sac.batch-size", "16", "--sac.learning-starts", "100"]


def test_cli_run_folder_and_exact_resume(tmp_path, capsys):
    from reparam.rl.run import SACRunConfig, run
    import tyro

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["sac", *TINY, "--out", str(whole)]) == 0
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "learning_curve.png", "policy.eqx", "checkpoint.eqx"):
        assert (whole / name).exists(), name
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [200, 200, 400, 400, 600, 600] and {r["seed"] for r in rows} == {0, 1}
    assert {"eval_return", "critic_loss", "actor_loss", "alpha", "entropy"} <= set(rows[0])

    config = tyro.cli(SACRunConfig, args=[*TINY, "--out", str(killed)])
    run(config, max_chunks=1)  # "killed" after the first chunk's checkpoint
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["sac", "--resume", str(killed)]) == 0
    assert "Resuming" in capsys.readouterr().out  # continued from the checkpoint, not restarted
    resumed = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert resumed == rows  # bit-identical metrics

    assert main(["evaluate", str(whole), "--episodes", "2"]) == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"bad": 1}))
    cases = [
        (["sac", "--env", "gymnax:Acrobot-v1", "--out", str(tmp_path / "a")], "unknown JAX-native environment 'gymnax:Acrobot-v1'"),
        (["sac", "--env", "Acrobot-v1", "--out", str(tmp_path / "d")], "SAC needs a continuous (Box) action space; Acrobot-v1 has Discrete(3)"),
        (["sac", "--total-steps", "1000", "--eval-every", "300", "--out", str(tmp_path / "b")], "must be a multiple of --eval-every"),
        (["sac", "--sac.batch-size", "512", "--sac.buffer-size", "100", "--out", str(tmp_path / "c")], "batch_size (512) exceeds buffer_size (100)"),
        (["evaluate", str(tmp_path / "missing")], "is not a run folder"),
    ]
    # The real entry point once (exit status, no traceback), then the rest in process.
    proc = subprocess.run([sys.executable, "-m", "reparam.cli", *cases[0][0]], capture_output=True, text=True)
    assert proc.returncode == 2 and cases[0][1] in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for args, message in cases[1:]:
        capsys.readouterr()
        try:
            status, boxed = main(args), False
        except SystemExit as exit:  # tyro reports a constructor's error in its own box, then exits
            status, boxed = exit.code, True
        said = capsys.readouterr()
        text = said.out + said.err
        assert status == 2 and message in " ".join(text.replace("│", " ").split()), text
        assert "Traceback" not in text and (boxed or len(text.strip().splitlines()) == 1), text


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, capsys):
    import tyro

    from reparam.rl.run import SACRunConfig
    from reparam.runs import start_run

    out = tmp_path / "run"
    start_run(out, tyro.cli(SACRunConfig, args=[*TINY, "--out", str(out)]))
    (out / "checkpoint.json").write_text('{"chunk": 1}')
    (out / "metrics.jsonl").write_text("")
    (out / "checkpoint.eqx").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["sac", "--resume", str(out)]) == 2  # main prints the error line; no exception escapes
    said = capsys.readouterr().out
    assert "corrupt checkpoint" in said and len(said.strip().splitlines()) == 1, said


def test_seeds_shard_over_four_cpu_devices():
    """Four seeds of MountainCarContinuous over four forced CPU devices (also this env's smoke test)."""
    code = (
        "import jax, equinox as eqx, numpy as np\n"
        "from reparam.rl.sac import SACConfig\n"
        "from reparam.rl.train import RunSpec, make_train, shard_seeds\n"
        "assert len(jax.devices()) == 4\n"
        "run = make_train(SACConfig(hidden_sizes=(8, 8), batch_size=8, learning_starts=20), 'gymnax:MountainCarContinuous-v0', RunSpec(40, 20, 1))\n"
        "keys = shard_seeds(jax.random.split(jax.random.key(0), 4))\n"
        "assert len(keys.sharding.device_set) == 4\n"
        "_, m = eqx.filter_jit(eqx.filter_vmap(run.train))(keys)\n"
        "assert np.all(np.isfinite(np.asarray(m['eval_return']))) and len(m['eval_return'].sharding.device_set) == 4\n"
        "assert m['step'].tolist() == [[20, 40]] * 4\n"
        "print('ok')\n"
    )
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]

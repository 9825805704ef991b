"""The dynamics ensemble: NLL training on the replay buffer recovers the noise scale of a known
linear system (and its held-out error falls to the noise floor); the log-variances stay inside their
bounds; the held-out split never mixes with the training rows; the normalisation is the valid rows'
moments; a model step is the chosen member's reparameterized draw; bad sizes are one-line errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reparam.rl.dynamics import (
    TERMINATIONS,
    DynamicsConfig,
    Ensemble,
    buffer_scaling,
    elites,
    heldout_rows,
    init_model,
    predict,
    sample_step,
    termination_for,
    train_model,
    train_rows,
)
from reparam.rl.replay import add_batch, init_buffer, make_transition

pytestmark = pytest.mark.usefixtures("as_users_run_it")

OBS_NOISE, REWARD_NOISE = 0.1, 0.05
SYSTEM_A = np.array([[0.9, 0.2], [-0.1, 0.8]], np.float32)
SYSTEM_B = np.array([[0.0], [0.5]], np.float32)


def linear_buffer(n: int, capacity: int, seed: int = 0):
    """`n` transitions of `s' = A s + B a + 0.1 eps`, `r = s_0 - a^2/2 + 0.05 eta` in a buffer of `capacity`."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    action = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    next_obs = obs @ SYSTEM_A.T + action @ SYSTEM_B.T + OBS_NOISE * rng.normal(size=(n, 2)).astype(np.float32)
    reward = obs[:, 0] - 0.5 * action[:, 0] ** 2 + REWARD_NOISE * rng.normal(size=n).astype(np.float32)
    example = make_transition(obs[0], action[0], 0.0, obs[0], 0.0)
    return add_batch(init_buffer(example, capacity), make_transition(obs, action, reward, next_obs, np.zeros(n)))


CONFIG = DynamicsConfig(ensemble_size=3, num_elites=2, hidden_sizes=(32, 32), learning_rate=3e-3, model_steps=1500)


def test_nll_training_recovers_the_noise_scale_of_a_linear_system():
    buffer = linear_buffer(3000, 4000)
    state, ensemble = init_model(jax.random.key(0), 2, 1, CONFIG)
    static = eqx.partition(ensemble, eqx.is_array)[1]
    state, metrics = jax.jit(lambda s, k: train_model(s, static, buffer, k, CONFIG))(state, jax.random.key(1))
    trained = eqx.combine(state.train.params, static)
    mean, var = predict(trained, state.scaling, buffer.data.obs[:512], buffer.data.action[:512])
    std = np.sqrt(np.asarray(var))  # (E, 512, 3): delta s (2 dims) and r
    np.testing.assert_allclose(np.median(std[..., :2]), OBS_NOISE, rtol=0.15)
    np.testing.assert_allclose(np.median(std[..., 2]), REWARD_NOISE, rtol=0.25)
    # held-out: the ensemble mean's squared error is at the noise floor (mean of 0.01, 0.01, 0.0025)
    floor = (2 * OBS_NOISE**2 + REWARD_NOISE**2) / 3
    assert floor < float(metrics["model_mse"]) < 1.6 * floor
    assert float(metrics["model_nll"]) < 0.0  # a good Gaussian fit of noise this small has negative NLL
    assert set(np.asarray(elites(state, 2)).tolist()) <= {0, 1, 2}


def test_log_variances_stay_inside_their_bounds():
    ensemble = Ensemble(3, 2, DynamicsConfig(ensemble_size=2, num_elites=1, hidden_sizes=(8,)), key=jax.random.key(0))
    x = jnp.concatenate([jnp.full((2, 1, 3), -1e4, jnp.float32), jnp.full((2, 1, 3), 1e4, jnp.float32)], axis=1)
    _, log_var = ensemble(x)
    assert bool(jnp.all(jnp.isfinite(log_var)))
    # soft bounds (PETS): at the top, min + softplus(max - min) = max + log1p(exp(-(max - min))), 2.8e-5 above
    assert bool(jnp.all((log_var >= -10.0) & (log_var <= 0.5 + np.log1p(np.exp(-10.5)) + 1e-6)))


def test_heldout_and_training_rows_are_disjoint_and_valid():
    size, every = jnp.asarray(95, jnp.int32), 10
    train = np.asarray(train_rows(jax.random.key(0), size, (20_000,), every))
    held, weight = heldout_rows(jax.random.key(1), size, (2_000,), every)
    held = np.asarray(held)
    assert train.min() >= 0 and train.max() < 95 and not np.any(train % every == every - 1)
    assert set(np.unique(train)) == {i for i in range(95) if i % every != every - 1}  # all of them, uniformly
    assert set(np.unique(held)) == {9, 19, 29, 39, 49, 59, 69, 79, 89} and float(weight) == 1.0
    _, none = heldout_rows(jax.random.key(1), jnp.asarray(5, jnp.int32), (4,), every)
    assert float(none) == 0.0  # fewer rows than `every`: nothing is held out yet


def test_scaling_is_the_valid_rows_moments():
    buffer = linear_buffer(50, 80)
    scaling = buffer_scaling(buffer)
    d = jax.tree.map(lambda x: np.asarray(x)[:50], buffer.data)
    x = np.concatenate([d.obs, d.action], 1)
    y = np.concatenate([d.next_obs - d.obs, d.reward[:, None]], 1)
    np.testing.assert_allclose(scaling.in_mean, x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaling.in_std, x.std(0), rtol=1e-4)
    np.testing.assert_allclose(scaling.out_std, y.std(0), rtol=1e-4)


def test_a_model_step_is_the_chosen_members_reparameterized_draw():
    state, ensemble = init_model(jax.random.key(0), 2, 1, DynamicsConfig(ensemble_size=3, hidden_sizes=(8,)))
    scaling = buffer_scaling(linear_buffer(50, 50))
    obs, action = jnp.ones((4, 2), jnp.float32), jnp.full((4, 1), 0.5, jnp.float32)
    member = jnp.asarray([2, 0, 1, 2], jnp.int32)
    key = jax.random.key(5)
    next_obs, reward = sample_step(ensemble, scaling, member, obs, action, key)
    mean, var = predict(ensemble, scaling, obs, action)
    eps = jax.random.normal(key, (4, 3), jnp.float32)
    expected = mean[member, jnp.arange(4)] + jnp.sqrt(var[member, jnp.arange(4)]) * eps
    np.testing.assert_allclose(next_obs, obs + expected[:, :2], rtol=1e-5)
    np.testing.assert_allclose(reward, expected[:, 2], rtol=1e-5)
    grad = jax.grad(lambda a: jnp.sum(sample_step(ensemble, scaling, member, obs, a, key)[1]))(action)
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.any(grad != 0))  # pathwise in the action


@pytest.mark.parametrize("env_id", list(TERMINATIONS))
def test_termination_functions_agree_with_the_real_environments(env_id):
    """Random-action episodes of the real Gymnasium environment: the termination function of every
    transition equals the environment's own `terminated` flag (and episodes do end where they can)."""
    gym = pytest.importorskip("gymnasium")
    if env_id not in ("Pendulum-v1", "MountainCarContinuous-v0"):
        pytest.importorskip("mujoco")
    env = gym.make(env_id)
    env.action_space.seed(0)
    rows, flags = [], []
    for episode in range(30):
        obs, _ = env.reset(seed=episode)
        for _ in range(200):
            action = env.action_space.sample()
            next_obs, _, terminated, truncated, _ = env.step(action)
            rows.append((obs, action, next_obs))
            flags.append(float(terminated))
            if terminated or truncated:
                break
            obs = next_obs
    env.close()
    obs, action, next_obs = (jnp.asarray(np.stack(column), jnp.float32) for column in zip(*rows, strict=True))
    predicted = termination_for(env_id)(obs, action, next_obs)
    np.testing.assert_array_equal(np.asarray(predicted), np.asarray(flags))
    if env_id in ("InvertedPendulum-v5", "Hopper-v5", "Walker2d-v5"):
        assert sum(flags) >= 10  # random actions topple these: the check saw real terminations


def test_termination_for_gymnax_ids_and_unknown_ids():
    next_obs = jnp.asarray([[0.5, 0.0, 0.0], [1.2, 0.1, 0.0]], jnp.float32)
    np.testing.assert_array_equal(termination_for("gymnax:Pendulum-v1")(None, None, next_obs), [0.0, 0.0])
    assert termination_for("gymnax:MountainCarContinuous-v0") is TERMINATIONS["MountainCarContinuous-v0"]
    with pytest.raises(ValueError, match="no termination function is known for 'Humanoid-v5'"):
        termination_for("Humanoid-v5")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ensemble_size=0, num_elites=0), "--ensemble must be >= 1, got 0"),
        (dict(ensemble_size=3, num_elites=4), "--elites must be in 1..ensemble (3), got 4"),
        (dict(num_elites=0), "--elites must be in 1..ensemble (5), got 0"),
    ],
)
def test_bad_sizes_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as e:
        DynamicsConfig(**kwargs)
    assert "\n" not in str(e.value)

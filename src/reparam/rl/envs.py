"""Every environment SAC runs on, and its action bounds.

- JAX-native, for the compiled loop: gymnax (`gymnax:<id>`) and, with the optional `brax` extra,
  Brax (`brax:<name>`), both behind gymnax's functional interface (`make_jax_env`).
- Gymnasium, for the host loop: any registered id with a Box action space (`make_gym_env`).

`check_env_name(name)` says in one line what is allowed; `env_spec(name) -> (obs_dim, bounds)` gives
the sizes any supported name needs (templates for checkpoints and saved policies).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

JAX_ENVS = ("gymnax:Pendulum-v1", "gymnax:MountainCarContinuous-v0")
GYM_EXAMPLES = ("Pendulum-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
ALLOWED = (
    f"supported: {', '.join(JAX_ENVS)}, brax:<name> (optional extra), or a continuous-action Gymnasium id "
    f"such as {', '.join(GYM_EXAMPLES)}"
)
BRAX_EPISODE_LENGTH = 1000
"""Brax environments have no time limit of their own; episodes are truncated here (bootstrapped)."""


class ActionBounds(NamedTuple):
    """Per-dimension action bounds `low < high`, float32 `(action_dim,)`."""

    low: Array
    high: Array


# --- names --------------------------------------------------------------------------------------


def is_jax_env(name: str) -> bool:
    """Whether `name` runs in the compiled loop (a JAX-native environment)."""
    return name.startswith(("gymnax:", "brax:"))


def check_env_name(name: str) -> None:
    """A one-line ValueError unless `name` names an environment: one of `JAX_ENVS`, `brax:<name>`
    (with the extra installed) or a registered Gymnasium id. Builds nothing; `env_spec` also checks
    the spaces."""
    if name.startswith("brax:"):
        _brax_envs(name.split(":", 1)[1])
    elif is_jax_env(name):
        if name not in JAX_ENVS:
            raise ValueError(f"unknown JAX-native environment {name!r}; {ALLOWED}")
    else:
        try:
            gym.spec(name)
        except gym.error.Error as err:  # UnregisteredEnv, or a malformed id
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"unknown environment id {name!r} ({first_line}); {ALLOWED}") from None


def env_spec(name: str) -> tuple[int, ActionBounds]:
    """`(obs_dim, bounds)` of any supported environment (one-line errors as `check_env_name`, and for
    spaces SAC cannot use, see `check_spaces`)."""
    if is_jax_env(name):
        jenv = make_jax_env(name)
        return jenv.obs_dim, jenv.bounds
    check_env_name(name)
    env = gym.make(name)
    try:
        check_spaces(name, env.observation_space, env.action_space)
        return int(env.observation_space.shape[0]), _bounds(env.action_space.low, env.action_space.high)
    finally:
        env.close()


def _bounds(low, high) -> ActionBounds:
    shape = np.shape(low) or (1,)
    return ActionBounds(
        jnp.broadcast_to(jnp.asarray(low, jnp.float32), shape), jnp.broadcast_to(jnp.asarray(high, jnp.float32), shape)
    )


# --- JAX-native ---------------------------------------------------------------------------------


class JaxEnv(NamedTuple):
    """A functional environment with its parameters and the facts the learner needs.

    `env.reset(key, params) -> (obs, state)` and `env.step(key, state, action, params) -> (obs,
    state, reward, terminated, truncated, info)` with same-step autoreset and the true last
    observation of a finished episode in `info["final_observation"]` (gymnax's interface)."""

    env: Any
    params: Any
    obs_dim: int
    bounds: ActionBounds
    max_episode_steps: int


def make_jax_env(name: str) -> JaxEnv:
    """`gymnax:Pendulum-v1`, `gymnax:MountainCarContinuous-v0` or `brax:<name>` (e.g. `brax:halfcheetah`,
    needs `pip install reparam[brax]`); anything else is a one-line ValueError."""
    if not is_jax_env(name):
        raise ValueError(f"{name!r} is not a JAX-native environment; {ALLOWED}")
    check_env_name(name)
    if name.startswith("brax:"):
        return _make_brax_env(name.split(":", 1)[1])
    import gymnax

    env, params = gymnax.make(name.split(":", 1)[1])
    space = env.action_space(params)
    obs_dim = int(env.observation_space(params).shape[0])
    return JaxEnv(env, params, obs_dim, _bounds(space.low, space.high), int(params.max_steps_in_episode))


class BraxState(NamedTuple):
    brax: Any  # brax.envs.State
    time: jax.Array  # int32 steps into the episode


class BraxAsGymnax:
    """A Brax environment behind gymnax's functional interface: `done` from Brax is a termination
    (no bootstrap); reaching `episode_length` steps is a truncation (bootstrapped); a finished
    episode is replaced by a fresh reset in the same step."""

    def __init__(self, env: Any, episode_length: int):
        self.brax_env, self.episode_length = env, episode_length

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, BraxState]:
        """A fresh episode: `(obs, state)` at time 0."""
        state = self.brax_env.reset(key)
        return state.obs, BraxState(state, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: BraxState, action: jax.Array, params: Any = None):
        """gymnax's step: `(obs, state, reward, terminated, truncated, info)`, same-step autoreset."""
        after = self.brax_env.step(state.brax, action)
        time = state.time + 1
        terminated = jnp.asarray(after.done) > 0
        truncated = jnp.logical_and(time >= self.episode_length, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        _, fresh = self.reset(key)
        pick = lambda new, old: jnp.where(done, new, old)  # done is a scalar: broadcasts to every leaf
        next_state = jax.tree.map(pick, fresh, BraxState(after, time))
        info = {"final_observation": after.obs}
        reward = jnp.asarray(after.reward, jnp.float32)  # some Brax envs give a Python float
        return next_state.brax.obs, next_state, reward, terminated, truncated, info


def _brax_envs(env_name: str):
    try:
        from brax import envs
    except ImportError:
        raise ValueError(f"brax:{env_name} needs the optional Brax extra: pip install 'reparam[brax]'") from None
    if env_name not in envs._envs:
        raise ValueError(f"unknown Brax environment {env_name!r}; supported: {', '.join(sorted(envs._envs))}")
    return envs


def _make_brax_env(env_name: str) -> JaxEnv:
    env = _brax_envs(env_name).get_environment(env_name)
    ones = jnp.ones(env.action_size, jnp.float32)
    return JaxEnv(
        BraxAsGymnax(env, BRAX_EPISODE_LENGTH),
        None,
        int(env.observation_size),
        ActionBounds(-ones, ones),
        BRAX_EPISODE_LENGTH,
    )


# --- Gymnasium ----------------------------------------------------------------------------------


class OneEnv(gym.vector.VectorEnv):
    """One `gymnasium.make` environment behind the vector API, stepping exactly as a one-env
    `SyncVectorEnv` with same-step autoreset: the same calls on the same environment, so the same
    observations (in the space's dtype, `(1, obs_dim)`), float64 rewards and bool flags `(1,)`, and
    `info["final_obs"]` / `info["final_info"]` (masks `_final_obs`, `_final_info`) where the episode
    ended, the returned observation already the reset one. Without `SyncVectorEnv`'s per-step
    iteration, batching and deep copies a step runs about 100 us less Python when caches are cold,
    as they are after each compiled learning call of the host loop."""

    def __init__(self, env: gym.Env):
        self.env = env
        self.num_envs = 1
        self.metadata = {**env.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.spec, self.render_mode = env.spec, env.render_mode
        self.single_observation_space, self.single_action_space = env.observation_space, env.action_space
        self.observation_space = gym.vector.utils.batch_space(env.observation_space, 1)
        self.action_space = gym.vector.utils.batch_space(env.action_space, 1)

    def _batched(self, obs) -> np.ndarray:
        return np.array(obs, dtype=self.single_observation_space.dtype)[None]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._batched(obs), _one(info)

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions[0])
        infos = {}
        if terminated or truncated:
            infos = {"final_obs": _one_object(obs), "final_info": _one_object(info)}
            infos |= {"_final_obs": np.ones(1, bool), "_final_info": np.ones(1, bool)}
            obs, info = self.env.reset()
        infos |= _one(info)
        return self._batched(obs), np.array([reward], np.float64), np.array([terminated]), np.array([truncated]), infos

    def close_extras(self, **kwargs):
        self.env.close()


def _one_object(value) -> np.ndarray:
    out = np.empty(1, object)
    out[0] = value
    return out


def _one(info: dict) -> dict:
    """An env's info as a one-env vector info: each value in a length-1 array, with its `_key` mask."""
    out = {}
    for key, value in info.items():
        out[key] = _one_object(value) if isinstance(value, dict) else np.array([value])
        out[f"_{key}"] = np.ones(1, bool)
    return out


def make_gym_env(env_id: str, num_envs: int, seed: int) -> tuple[gym.vector.VectorEnv, np.ndarray]:
    """`num_envs` copies of `gymnasium.make(env_id)` in a `SyncVectorEnv` (one: `OneEnv`, the same
    steps with less Python) with same-step autoreset (a finished episode's last observation is in
    `info["final_obs"]`, the returned one is already the reset one), reset with `seed` (env `i` gets
    `seed + i`).

    Returns the env and its first observations, float32 `(num_envs, obs_dim)`. Raises a one-line
    ValueError for an unknown id, a non-Box action space, non-finite bounds or a non-flat observation.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    check_env_name(env_id)
    if num_envs == 1:
        env = OneEnv(gym.make(env_id))
    else:
        env = gym.vector.SyncVectorEnv(
            [lambda: gym.make(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
    try:
        check_spaces(env_id, env.single_observation_space, env.single_action_space)
    except ValueError:
        env.close()
        raise
    obs, _ = env.reset(seed=seed)
    return env, np.asarray(obs, np.float32)


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """What SAC's MLPs need: a flat Box observation and a Box action with finite bounds."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"SAC needs a continuous (Box) action space; {env_id} has {action_space}")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"SAC needs finite action bounds; {env_id} has low={action_space.low.tolist()}, "
            f"high={action_space.high.tolist()} (wrap it in gymnasium.wrappers.ClipAction or RescaleAction)"
        )
    if action_space.shape is None or len(action_space.shape) != 1:
        raise ValueError(f"SAC needs a 1-D action vector; {env_id} has action shape {action_space.shape}")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"SAC's MLPs need a flat Box observation; {env_id} has {observation_space} "
            "(wrap it in gymnasium.wrappers.FlattenObservation)"
        )


def final_observations(next_obs, terminated, truncated, info) -> np.ndarray:
    """The true next observation of every sub-env of a same-step-autoreset vector step, float32:
    `info["final_obs"]` where the episode ended (terminated or truncated), `next_obs` (already the
    reset one there) elsewhere. This is what gymnax reports as `info["final_observation"]`."""
    real_next = np.array(next_obs, np.float32)
    for i in np.flatnonzero(np.logical_or(terminated, truncated)):
        real_next[i] = info["final_obs"][i]
    return real_next

"""The host loop of SAC: Gymnasium environments (classic control, MuJoCo) stepped in Python, every
array operation compiled.

Per vector step: act (uniform random in the bounds during warm-up, else a policy sample; jitted)
-> `env.step` -> one donated, in-place `add_batch` -> every `train_freq` vector steps one compiled
call of `gradient_steps` updates (`lax.scan` over sample-then-update).

Step counting: `total_steps`, `learning_starts` and `eval_every` count environment transitions
(vector steps times `num_envs`); `train_freq` counts vector steps, as in Stable-Baselines3. One
vector step with `num_envs` environments yields `num_envs` transitions, so `gradient_steps =
num_envs * ...` keeps one gradient step per transition.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .replay import ReplayBuffer, Transition, add_batch, init_buffer, sample
from .sac import ActionBounds, Actor, SACConfig, SACState, init_sac, policy, update

SUPPORTED_EXAMPLES = ("Pendulum-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
EVAL_SEED_OFFSET = 1_000_003
"""Run `seed` trains on environments seeded `seed * num_envs + i` and evaluates on ones seeded
`EVAL_SEED_OFFSET + seed * eval_episodes + i`: no two runs (seeds) share an episode seed, and the
evaluation episodes are disjoint from training ones (for seeds below `EVAL_SEED_OFFSET / num_envs`)."""
RESUME_SEED_STRIDE = 7_919
"""A resumed run resets its environments with `seed * num_envs + RESUME_SEED_STRIDE * vector_steps_done`."""
TRAIN_METRICS = ("critic_loss", "actor_loss", "alpha", "entropy", "q_target")


# --- environments -----------------------------------------------------------------------------

def make_gym_env(env_id: str, num_envs: int, seed: int) -> tuple[gym.vector.VectorEnv, np.ndarray]:
    """`num_envs` copies of `gymnasium.make(env_id)` in a `SyncVectorEnv` with same-step autoreset
    (a finished episode's last observation is in `info["final_obs"]`, the returned one is already
    the reset one), reset with `seed` (env `i` gets `seed + i`).

    Returns the env and its first observations, float32 `(num_envs, obs_dim)`. Raises a one-line
    ValueError for an unknown id, a non-Box action space, non-finite bounds or a non-flat observation.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    try:
        gym.spec(env_id)
    except gym.error.Error as err:  # UnregisteredEnv, or a malformed id
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"unknown environment id {env_id!r} ({first_line}); supported are continuous-action "
            f"Gymnasium envs such as {', '.join(SUPPORTED_EXAMPLES)}"
        ) from None
    env = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
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


def to_transition(obs, action, reward, terminated, truncated, next_obs, info) -> Transition:
    """One vector step as `num_envs` float32 transitions.

    Where an episode ended (terminated or truncated), `next_obs` is `info["final_obs"]`, the real
    last observation, not the reset one. `terminated` is 1.0 only for a true termination: a time
    limit (`truncated`) stores 0.0, so the learner bootstraps there.
    """
    real_next = np.array(next_obs, np.float32)
    for i in np.flatnonzero(np.logical_or(terminated, truncated)):
        real_next[i] = info["final_obs"][i]
    f32 = lambda x: np.asarray(x, np.float32)
    return Transition(f32(obs), f32(action), f32(reward), real_next, f32(terminated))


# --- pure pieces (compiled per run by `make_kernels`) --------------------------------------------

def random_action(key: PRNGKeyArray, bounds: ActionBounds, num_envs: int) -> tuple[Array, PRNGKeyArray]:
    """Uniform in `[low, high]`, `(num_envs, action_dim)` float32; also the next key."""
    key, sub = jax.random.split(key)
    shape = (num_envs,) + bounds.low.shape
    return jax.random.uniform(sub, shape, jnp.float32, bounds.low, bounds.high), key


def sample_action(actor: Actor, obs: Array, bounds: ActionBounds, key: PRNGKeyArray) -> tuple[Array, PRNGKeyArray]:
    """A stochastic policy action for obs `(n, obs_dim)` -> `(n, action_dim)`; also the next key."""
    key, sub = jax.random.split(key)
    return policy(actor, obs, bounds).sample(sub), key


def deterministic_action(actor: Actor, obs: Array, bounds: ActionBounds) -> Array:
    """The evaluation action `low + (tanh(mu) + 1)(high - low)/2`, `(n, action_dim)`."""
    return policy(actor, obs, bounds).mode()


def train_phase(
    buffer: ReplayBuffer, state: SACState, key: PRNGKeyArray, config: SACConfig, bounds: ActionBounds
) -> tuple[SACState, dict[str, Array], PRNGKeyArray]:
    """`config.gradient_steps` SAC updates in one `lax.scan`, each on a fresh uniform batch of
    `config.batch_size` rows. Returns the new state, the metrics averaged over the steps (scalars)
    and the next key."""
    params, static = eqx.partition(state, eqx.is_array)

    def one_step(params, k):
        k_batch, k_update = jax.random.split(k)
        batch = sample(buffer, k_batch, config.batch_size)
        new_state, metrics = update(eqx.combine(params, static), batch, k_update, config, bounds)
        return eqx.filter(new_state, eqx.is_array), metrics

    key, sub = jax.random.split(key)
    params, metrics = jax.lax.scan(one_step, params, jax.random.split(sub, config.gradient_steps))
    return eqx.combine(params, static), jax.tree.map(jnp.mean, metrics), key


add_in_place = jax.jit(add_batch, donate_argnums=0)
"""`add_batch` with the buffer donated: XLA writes the new rows into the old arrays."""


class Kernels(NamedTuple):
    """The compiled pieces of a run. They take and return only arrays (`params` is a `SACState`
    holding its arrays, `eqx.partition`'s first half): the static half, config and bounds are
    closed over, so a call is plain `jax.jit` dispatch (`eqx.filter_jit` would flatten and hash
    the static half on every call: ~0.4 ms a call here, 4% of a paper-sized SAC step)."""

    random_action: Callable  # (key, num_envs: static int) -> (action (num_envs, action_dim), key)
    sample_action: Callable  # (actor params, obs (num_envs, obs_dim), key) -> (action, key)
    deterministic_action: Callable  # (actor params, obs (n, obs_dim)) -> action (n, action_dim)
    train: Callable  # (params, buffer, key) -> (params, metrics, key); params and key donated


def make_kernels(static: SACState, config: SACConfig, low: tuple[float, ...], high: tuple[float, ...]) -> Kernels:
    """The compiled pieces for one agent structure (`static`: `eqx.partition(state, eqx.is_array)[1]`),
    config and action bounds. Cached when `static` is hashable, so runs with the same settings (in
    one process) reuse the compiled code."""
    try:
        hash(static)
    except TypeError:
        return _make_kernels.__wrapped__(static, config, low, high)
    return _make_kernels(static, config, low, high)


@functools.lru_cache(maxsize=32)
def _make_kernels(static: SACState, config: SACConfig, low: tuple[float, ...], high: tuple[float, ...]) -> Kernels:
    bounds = ActionBounds(np.asarray(low, np.float32), np.asarray(high, np.float32))
    actor = lambda actor_params: eqx.combine(actor_params, static.actor)

    def train(params, buffer, key):
        state, metrics, key = train_phase(buffer, eqx.combine(params, static), key, config, bounds)
        return eqx.filter(state, eqx.is_array), metrics, key

    return Kernels(
        random_action=jax.jit(lambda key, n: random_action(key, bounds, n), static_argnums=1),
        sample_action=jax.jit(lambda actor_params, obs, key: sample_action(actor(actor_params), obs, bounds, key)),
        deterministic_action=jax.jit(lambda actor_params, obs: deterministic_action(actor(actor_params), obs, bounds)),
        train=jax.jit(train, donate_argnums=(0, 2)),
    )


# --- evaluation ---------------------------------------------------------------------------------

def evaluate(env: gym.vector.VectorEnv, act: Callable[[np.ndarray], Array]) -> np.ndarray:
    """One full episode per sub-env of `env` (same-step autoreset) with `act(obs) -> action`,
    `(num_envs, obs_dim) -> (num_envs, action_dim)`; returns the undiscounted returns `(num_envs,)`.
    Sub-envs that finish early keep stepping (rewards ignored) until the longest episode ends."""
    obs, _ = env.reset()
    returns = np.zeros(env.num_envs)
    done = np.zeros(env.num_envs, bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(act(np.asarray(obs, np.float32))))
        returns += np.where(done, 0.0, reward)
        done |= np.logical_or(terminated, truncated)
    return returns


# --- the loop -----------------------------------------------------------------------------------

class HostCheckpoint(NamedTuple):
    """What the host loop needs to continue after an evaluation, arrays only: the agent with its
    optimizer states and target critic, the replay buffer, the key and the counters.

    Not in it: the Gymnasium environments' own state (a MuJoCo simulator or an env's private RNG
    cannot be saved portably), so a resumed run starts new episodes, reset with
    `seed * num_envs + RESUME_SEED_STRIDE * vector_step`: the agent, buffer and keys continue exactly, the
    trajectories from there on differ from an uninterrupted run's.
    """

    params: SACState  # the array half of the agent (`eqx.partition(state, eqx.is_array)[0]`)
    buffer: ReplayBuffer
    key_data: Array  # `jax.random.key_data` of the loop's key
    vector_step: Array  # int32 scalar: vector steps done
    last_train: dict[str, Array]  # metrics of the latest training phase (NaN before the first)


class HostLoopResult(NamedTuple):
    state: SACState
    """The final agent."""
    metrics: list[dict[str, float]]
    """One dict per evaluation (see `train_host`)."""
    steps_per_second: float
    """Environment steps per second of the training phase (after warm-up), evaluation and the
    steps that compiled a kernel excluded; NaN if there was no such step."""
    buffer: ReplayBuffer
    """The replay buffer, `min(buffer_size, steps)` rows."""


class _Clock:
    """Seconds and env steps of timed vector steps, per eval interval and for the training phase."""

    def __init__(self):
        self.interval_steps = self.interval_seconds = 0.0
        self.train_steps = self.train_seconds = 0.0

    def record(self, steps: int, seconds: float, training: bool) -> None:
        self.interval_steps += steps
        self.interval_seconds += seconds
        if training:
            self.train_steps += steps
            self.train_seconds += seconds

    def interval_rate(self) -> float:
        rate = self.interval_steps / self.interval_seconds if self.interval_seconds > 0 else float("nan")
        self.interval_steps = self.interval_seconds = 0.0
        return rate


def train_host(
    env_id: str,
    config: SACConfig,
    total_steps: int,
    seed: int,
    *,
    num_envs: int = 1,
    eval_every: int = 10_000,
    eval_episodes: int = 10,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_checkpoint: Callable[[HostCheckpoint], None] | None = None,
    restore: Callable[[HostCheckpoint], HostCheckpoint] | None = None,
) -> HostLoopResult:
    """Train SAC on `env_id` for `total_steps` environment steps (rounded up to whole vector steps).

    The first `config.learning_starts` steps act uniformly at random in the action bounds; then the
    policy samples. Training runs every `config.train_freq` vector steps once the buffer holds
    `learning_starts` transitions. Every `eval_every` steps and at the end, `eval_episodes` episodes
    on a separately seeded env with the deterministic action give a metrics dict: `step`,
    `eval_return`, `train_return` (mean of the episodes finished since the last evaluation),
    `critic_loss`, `actor_loss`, `alpha`, `entropy`, `q_target` (of the last training phase, NaN
    before), `gradient_steps`, `steps_per_second` (since the last evaluation, evaluation excluded),
    passed to `on_eval(step, metrics)`. `progress(steps_done, total)` is called every vector step.

    Checkpointing: after each evaluation `on_checkpoint(HostCheckpoint)` receives the loop's state;
    `restore(fresh) -> saved` continues from a saved one (given the fresh state as the template for
    shapes), see `HostCheckpoint` for what a resume cannot reproduce.
    """
    for name, value in dict(total_steps=total_steps, eval_every=eval_every, eval_episodes=eval_episodes).items():
        if value < 1:
            raise ValueError(f"train_host: {name} must be >= 1, got {value}")
    env, obs = make_gym_env(env_id, num_envs, seed * num_envs)
    eval_env, _ = make_gym_env(env_id, eval_episodes, EVAL_SEED_OFFSET + seed * eval_episodes)
    try:
        return _loop(env, eval_env, obs, config, total_steps, seed, eval_every, on_eval, progress, on_checkpoint,
                     restore)
    finally:
        env.close()
        eval_env.close()


def _loop(env, eval_env, obs, config, total_steps, seed, eval_every, on_eval, progress, on_checkpoint,
          restore) -> HostLoopResult:
    n = env.num_envs
    vector_steps = -(-total_steps // n)
    capacity = min(config.buffer_size, vector_steps * n)
    if capacity < n:
        raise ValueError(f"train_host: buffer_size ({config.buffer_size}) must hold one vector step ({n} envs)")
    space = env.single_action_space
    key, k_init = jax.random.split(jax.random.key(seed))
    # init_sac's target critic *is* the critic (shared arrays), which a donated call rejects.
    state = _distinct_buffers(eqx.filter_jit(init_sac)(k_init, obs.shape[-1], space.shape[0], config))
    params, static = eqx.partition(state, eqx.is_array)
    kernels = make_kernels(static, config, _floats(space.low), _floats(space.high))
    zero_action = np.zeros(space.shape, np.float32)
    buffer = init_buffer(Transition(obs[0], zero_action, np.float32(0), obs[0], np.float32(0)), capacity)
    last_train = {name: jnp.full((), jnp.nan, jnp.float32) for name in TRAIN_METRICS}
    done_steps = 0
    if restore is not None:
        saved = restore(HostCheckpoint(params, buffer, jax.random.key_data(key), jnp.zeros((), jnp.int32), last_train))
        params, buffer, last_train = _distinct_buffers((saved.params, saved.buffer, saved.last_train))
        key, done_steps = jax.random.wrap_key_data(saved.key_data), int(saved.vector_step)
        obs = np.asarray(env.reset(seed=seed * n + RESUME_SEED_STRIDE * done_steps)[0], np.float32)

    history, clock = [], _Clock()
    episode_return, finished_returns = np.zeros(n), []
    compiled: set[str] = set()  # kernels called once already (their first call compiles)
    for t in range(done_steps + 1, vector_steps + 1):
        start = time.perf_counter()
        warm_up = (t - 1) * n < config.learning_starts
        if warm_up:
            action, key = kernels.random_action(key, n)
        else:
            action, key = kernels.sample_action(params.actor, obs, key)
        calls = ["random" if warm_up else "policy"]
        action = np.asarray(action)
        next_obs, reward, terminated, truncated, info = env.step(action)
        buffer = add_in_place(buffer, to_transition(obs, action, reward, terminated, truncated, next_obs, info))
        obs = np.asarray(next_obs, np.float32)
        if t * n >= config.learning_starts and t % config.train_freq == 0:
            params, last_train, key = kernels.train(params, buffer, key)
            calls.append("train")
        if compiled.issuperset(calls):
            clock.record(n, time.perf_counter() - start, training=not warm_up)
        compiled.update(calls)

        episode_return += reward
        done = np.logical_or(terminated, truncated)
        finished_returns.extend(episode_return[done].tolist())
        episode_return[done] = 0.0

        steps = t * n
        if steps // eval_every > (steps - n) // eval_every or t == vector_steps:
            returns = evaluate(eval_env, functools.partial(kernels.deterministic_action, params.actor))
            metrics = _metrics(steps, returns, finished_returns, last_train, params, clock)
            finished_returns = []
            history.append(metrics)
            if on_eval is not None:
                on_eval(steps, metrics)
            if on_checkpoint is not None:
                on_checkpoint(HostCheckpoint(params, buffer, jax.random.key_data(key), jnp.asarray(t, jnp.int32),
                                             last_train))
        if progress is not None:
            progress(steps, vector_steps * n)

    rate = clock.train_steps / clock.train_seconds if clock.train_seconds > 0 else float("nan")
    return HostLoopResult(eqx.combine(params, static), history, rate, buffer)


def _floats(x: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(x, np.float32).ravel())


def _distinct_buffers(tree):
    """A copy of every array leaf, so no two leaves share a buffer (donation needs that)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x, tree)


def _metrics(step, eval_returns, train_returns, last_train, state, clock) -> dict[str, float]:
    nan = float("nan")
    metrics = dict(
        step=step,
        eval_return=float(np.mean(eval_returns)),
        train_return=float(np.mean(train_returns)) if train_returns else nan,
        gradient_steps=int(state.gradient_steps),
        steps_per_second=clock.interval_rate(),
    )
    for name in TRAIN_METRICS:
        metrics[name] = float(last_train[name])
    return metrics

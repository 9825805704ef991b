"""The compiled SAC loop: a whole run (environment steps, learning, evaluation) is one pure
function `train(key)`, so `jax.jit(jax.vmap(train))(keys)` trains many seeds at once.

The carry holds arrays only (networks are split with `eqx.partition`); the replay buffer is a scan
carry, so XLA updates it in place.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .envs import JaxEnv, make_jax_env
from .replay import ReplayBuffer, Transition, add, init_buffer, sample
from .sac import SACConfig, SACState, init_sac, policy, update

INIT_STREAM = 2**31 - 1  # fold_in index of the init keys; chunk i uses fold_in(key, i)
METRICS = ("critic_loss", "actor_loss", "alpha", "entropy", "q_target")


class RunSpec(NamedTuple):
    """Sizes of a compiled run, derived once."""

    total_steps: int
    eval_every: int
    eval_episodes: int

    @property
    def num_evals(self) -> int:
        return self.total_steps // self.eval_every


class Carry(NamedTuple):
    sac: SACState  # array leaves only
    buffer: ReplayBuffer
    env_state: object
    obs: Array
    last: dict  # latest training metrics


def evaluate(actor, jenv: JaxEnv, key: PRNGKeyArray, episodes: int) -> Array:
    """Mean undiscounted return of `episodes` full episodes of the deterministic policy."""
    env, params = jenv.env, jenv.params
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, episodes), params)

    def step(carry, k):
        obs, state, total, alive = carry
        action = policy(actor, obs, jenv.bounds).mode()
        obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, episodes), state, action, params)
        total = total + alive * reward
        alive = alive * (1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32))
        return (obs, state, total, alive), None

    init = (obs, state, jnp.zeros(episodes, jnp.float32), jnp.ones(episodes, jnp.float32))
    (_, _, total, _), _ = jax.lax.scan(step, init, jax.random.split(key, jenv.max_episode_steps))
    return jnp.mean(total)


class CompiledRun(NamedTuple):
    """A compiled SAC run in pieces: `init(key) -> carry`, `advance(carry, key, chunk) -> (carry,
    metrics)` (evaluation chunk `chunk`, `eval_every` steps), and `train(key)`, the whole run in one
    scan. Chunk `i` uses `fold_in(key, i)`, so a run advanced chunk by chunk (with checkpoints between
    chunks) reproduces `train(key)` exactly. To run seeds at once, vmap `init` and `train` over keys
    and `advance` over `(carry, key)` with the chunk index shared (`in_axes=(0, 0, None)`)."""

    init: Callable
    advance: Callable
    train: Callable
    static: object  # the non-array part of SACState (activations), to rebuild the networks
    spec: RunSpec


def make_train(config: SACConfig, env_name: str, spec: RunSpec) -> CompiledRun:
    """Build the compiled run for a JAX-native environment; sizes are derived once, here."""
    if spec.total_steps < spec.eval_every or spec.eval_every < 1:
        raise ValueError(f"need total_steps >= eval_every >= 1, got {spec.total_steps} and {spec.eval_every}")
    if spec.eval_episodes < 1:
        raise ValueError(f"eval_episodes must be >= 1, got {spec.eval_episodes}")
    if config.learning_starts < config.batch_size:
        raise ValueError(f"learning_starts ({config.learning_starts}) must be >= batch_size ({config.batch_size})")
    jenv = make_jax_env(env_name)
    env, params, bounds = jenv.env, jenv.params, jenv.bounds
    action_dim = bounds.low.shape[0]
    capacity = min(config.buffer_size, spec.total_steps)  # never more rows than the run can fill
    # The networks' non-array part (activations, sizes), read off an abstract init: nothing runs.
    shapes = eqx.filter_eval_shape(init_sac, jax.random.key(0), jenv.obs_dim, action_dim, config)
    _, static = eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))

    def gradient_steps(sac: SACState, buffer: ReplayBuffer, key: PRNGKeyArray):
        def one(sac, k):
            k_batch, k_update = jax.random.split(k)
            full, metrics = update(eqx.combine(sac, static), sample(buffer, k_batch, config.batch_size), k_update,
                                   config, bounds)
            return eqx.filter(full, eqx.is_array), metrics

        sac, metrics = jax.lax.scan(one, sac, jax.random.split(key, config.gradient_steps))
        return sac, jax.tree_util.tree_map(lambda m: m[-1], metrics)

    def env_step(carry: Carry, step_and_key: tuple[Array, PRNGKeyArray]) -> tuple[Carry, None]:
        # `step` (1-based) is not per seed: it comes from the chunk index, never from the carry, so
        # under `vmap` over seeds the `lax.cond` below stays a branch (a per-seed predicate would
        # turn it into a select that runs the gradient steps during the warm-up too).
        step, key = step_and_key
        k_random, k_act, k_env, k_train = jax.random.split(key, 4)
        actor = eqx.combine(carry.sac, static).actor
        explore = jax.random.uniform(k_random, (action_dim,), jnp.float32, bounds.low, bounds.high)
        act = policy(actor, carry.obs[None], bounds).sample(k_act)[0]
        action = jnp.where(step <= config.learning_starts, explore, act)  # uniform warm-up
        obs, env_state, reward, terminated, _, info = env.step(k_env, carry.env_state, action, params)
        # next_obs is the true last observation of a finished episode (gymnax auto-resets `obs`);
        # only a termination stops the bootstrap, a time-limit truncation does not.
        transition = Transition(carry.obs, action, reward.astype(jnp.float32),
                                info["final_observation"].astype(jnp.float32), terminated.astype(jnp.float32))
        buffer = add(carry.buffer, transition)
        learn = (step >= config.learning_starts) & (step % config.train_freq == 0)
        sac, last = jax.lax.cond(learn, lambda: gradient_steps(carry.sac, buffer, k_train), lambda: (carry.sac, carry.last))
        return Carry(sac, buffer, env_state, obs.astype(jnp.float32), last), None

    def init(key: PRNGKeyArray) -> Carry:
        k_init, k_reset = jax.random.split(jax.random.fold_in(key, INIT_STREAM))
        sac = eqx.filter(init_sac(k_init, jenv.obs_dim, action_dim, config), eqx.is_array)
        obs, env_state = env.reset(k_reset, params)
        obs = obs.astype(jnp.float32)
        zero = jnp.zeros((), jnp.float32)
        example = Transition(obs, jnp.zeros(action_dim, jnp.float32), zero, obs, zero)
        last = {name: zero for name in METRICS}
        return Carry(sac, init_buffer(example, capacity), env_state, obs, last)

    def advance(carry: Carry, key: PRNGKeyArray, chunk: Array) -> tuple[Carry, dict]:
        """Chunk `chunk` (0-based, shared by all seeds: vmap with `in_axes=None` for it): steps
        `chunk * eval_every + 1 ... (chunk + 1) * eval_every`, then an evaluation."""
        k_steps, k_eval = jax.random.split(key)
        steps = chunk * spec.eval_every + 1 + jnp.arange(spec.eval_every, dtype=jnp.int32)
        carry, _ = jax.lax.scan(env_step, carry, (steps, jax.random.split(k_steps, spec.eval_every)))
        eval_return = evaluate(eqx.combine(carry.sac, static).actor, jenv, k_eval, spec.eval_episodes)
        return carry, dict(step=steps[-1], eval_return=eval_return, **carry.last)

    def train(key: PRNGKeyArray) -> tuple[SACState, dict]:
        chunks = jnp.arange(spec.num_evals, dtype=jnp.int32)
        chunk_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(chunks)
        carry, metrics = jax.lax.scan(lambda c, xs: advance(c, *xs), init(key), (chunk_keys, chunks))
        return eqx.combine(carry.sac, static), metrics

    return CompiledRun(init, advance, train, static, spec)


def shard_seeds(keys: Array) -> Array:
    """Place a batch of per-seed keys across all devices (`jax.sharding`), so a vmapped, jitted
    run spreads its seeds over them; on one device this is a no-op. Needs num_seeds % devices == 0."""
    devices = jax.devices()
    if len(devices) == 1:
        return keys
    if keys.shape[0] % len(devices):
        raise ValueError(f"--num-seeds ({keys.shape[0]}) must be a multiple of the device count ({len(devices)})")
    mesh = jax.sharding.Mesh(devices, ("seeds",))
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds")))

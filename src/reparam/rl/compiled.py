"""The compiled loop: a whole run (environment steps, learning, evaluation) on a JAX-native
environment is one pure function `train(key)`, so `jax.jit(jax.vmap(train))(keys)` trains many
seeds at once.

    run = make_train(sac_agent(config), "gymnax:Pendulum-v1", RunSpec(20_000, 2_000, 10))
    carry = run.init(key)                                # or the whole run: run.train(key)
    carry, metrics = run.advance(carry, fold_in(key, i), i)   # chunk i: eval_every steps, then an evaluation

The carry holds arrays only (the agent's params, the replay buffer, the environment state); the
buffer is a scan carry, so XLA updates it in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .agent import Agent, learns, training_metrics, uniform_action, warming_up
from .envs import JaxEnv, make_jax_env
from .evaluate import evaluate_jax
from .replay import ReplayBuffer, add, init_buffer, make_transition

INIT_STREAM = 2**31 - 1  # fold_in index of the init keys; chunk i uses fold_in(key, i)


class RunSpec(NamedTuple):
    """Sizes of a compiled run, derived once."""

    total_steps: int
    eval_every: int
    eval_episodes: int

    @property
    def num_evals(self) -> int:
        """Evaluations (chunks) of the run: `total_steps // eval_every`."""
        return self.total_steps // self.eval_every


class Carry(NamedTuple):
    params: Any  # the agent's params (arrays)
    buffer: ReplayBuffer
    env_state: Any
    obs: Array
    last: dict  # metrics of the latest `learn` call (zeros before the first)
    learn_calls: Array  # int32: `learn` calls so far


class CompiledRun(NamedTuple):
    """A compiled run in pieces: `init(key) -> carry`, `advance(carry, key, chunk) -> (carry,
    metrics)` (chunk `chunk`: `eval_every` steps, then an evaluation), and `train(key) -> (params,
    metrics)`, the whole run in one scan. Chunk `i` uses `fold_in(key, i)`, so a run advanced chunk
    by chunk (with checkpoints between chunks) reproduces `train(key)` exactly. To run seeds at
    once, vmap `init` and `train` over keys and `advance` over `(carry, key)` with the chunk index
    shared (`in_axes=(0, 0, None)`).

    `advance`'s metrics: `step` (the chunk's last step), `eval_return` (mean deterministic return of
    `eval_episodes` episodes), `learn_calls` and the agent's `metric_names` (its latest `learn`
    call's; `rows` drops them while `learn_calls` is 0)."""

    init: Callable[[PRNGKeyArray], Carry]
    advance: Callable[[Carry, PRNGKeyArray, Array], tuple[Carry, dict]]
    train: Callable[[PRNGKeyArray], tuple[Any, dict]]
    agent: Agent
    jenv: JaxEnv
    spec: RunSpec


def learn_or_skip(agent: Agent, learn: Array, params, buffer: ReplayBuffer, key: PRNGKeyArray, last: dict):
    """`agent.learn(params, buffer, key)` where `learn`, else `(params, last)` unchanged: a
    `lax.cond`. Keep `learn` the same for every seed (a function of the step number): under `vmap`
    a per-seed predicate turns the cond into a select that runs the learning step every time."""
    return jax.lax.cond(learn, lambda: agent.learn(params, buffer, key), lambda: (params, last))


def make_train(agent: Agent, env_name: str, spec: RunSpec) -> CompiledRun:
    """Build the compiled run of `agent` on a JAX-native environment; sizes are derived once, here."""
    if spec.total_steps < spec.eval_every or spec.eval_every < 1:
        raise ValueError(f"need total_steps >= eval_every >= 1, got {spec.total_steps} and {spec.eval_every}")
    if spec.eval_episodes < 1:
        raise ValueError(f"eval_episodes must be >= 1, got {spec.eval_episodes}")
    jenv = make_jax_env(env_name)
    capacity = min(agent.buffer_size, spec.total_steps)  # never more rows than the run can fill
    return CompiledRun(
        functools.partial(_init, agent, jenv, capacity),
        functools.partial(_advance, agent, jenv, spec),
        functools.partial(_train, agent, jenv, spec, capacity),
        agent,
        jenv,
        spec,
    )


def _init(agent: Agent, jenv: JaxEnv, capacity: int, key: PRNGKeyArray) -> Carry:
    k_init, k_reset = jax.random.split(jax.random.fold_in(key, INIT_STREAM))
    params = agent.init(k_init, jenv.obs_dim, jenv.bounds)
    obs, env_state = jenv.env.reset(k_reset, jenv.params)
    # gymnax resets to Python scalars (weak types, e.g. Pendulum's `last_u = 0.0`) that a step makes
    # strong: the carry `advance` returns would then differ from `init`'s in type and the second chunk
    # would compile `advance` again (measured: 3.3 s more, every run). Make them strong here.
    env_state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), env_state)
    obs = obs.astype(jnp.float32)
    example = make_transition(obs, jnp.zeros_like(jenv.bounds.low), 0.0, obs, 0.0)
    buffer = init_buffer(example, capacity)
    shapes = jax.eval_shape(agent.learn, params, buffer, k_init)[1]
    last = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return Carry(params, buffer, env_state, obs, last, jnp.zeros((), jnp.int32))


def _env_step(agent: Agent, jenv: JaxEnv, carry: Carry, step_and_key: tuple[Array, PRNGKeyArray]) -> tuple[Carry, None]:
    # `step` (1-based) is not per seed: it comes from the chunk index, never from the carry, so
    # under `vmap` over seeds the learn/skip `lax.cond` stays a branch.
    step, key = step_and_key
    k_random, k_act, k_env, k_learn = jax.random.split(key, 4)
    explore = agent.explore(agent.policy(carry.params), carry.obs, k_act)
    action = jnp.where(warming_up(agent, step), uniform_action(k_random, jenv.bounds), explore)
    obs, env_state, reward, terminated, _, info = jenv.env.step(k_env, carry.env_state, action, jenv.params)
    # gymnax auto-resets `obs`; the true last observation of a finished episode is in the info.
    buffer = add(carry.buffer, make_transition(carry.obs, action, reward, info["final_observation"], terminated))
    learn = learns(agent, step)
    params, last = learn_or_skip(agent, learn, carry.params, buffer, k_learn, carry.last)
    calls = carry.learn_calls + learn.astype(jnp.int32)
    return Carry(params, buffer, env_state, obs.astype(jnp.float32), last, calls), None


def _advance(
    agent: Agent, jenv: JaxEnv, spec: RunSpec, carry: Carry, key: PRNGKeyArray, chunk: Array
) -> tuple[Carry, dict]:
    """Chunk `chunk` (0-based, shared by all seeds: vmap with `in_axes=None` for it): steps
    `chunk * eval_every + 1 ... (chunk + 1) * eval_every`, then an evaluation."""
    k_steps, k_eval = jax.random.split(key)
    steps = chunk * spec.eval_every + 1 + jnp.arange(spec.eval_every, dtype=jnp.int32)
    carry, _ = jax.lax.scan(
        functools.partial(_env_step, agent, jenv), carry, (steps, jax.random.split(k_steps, spec.eval_every))
    )
    act = functools.partial(agent.act, agent.policy(carry.params))
    eval_return = evaluate_jax(act, jenv, k_eval, spec.eval_episodes)
    return carry, dict(step=steps[-1], eval_return=eval_return, learn_calls=carry.learn_calls, **carry.last)


def _train(agent: Agent, jenv: JaxEnv, spec: RunSpec, capacity: int, key: PRNGKeyArray) -> tuple[Any, dict]:
    chunks = jnp.arange(spec.num_evals, dtype=jnp.int32)
    chunk_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(chunks)
    advance = functools.partial(_advance, agent, jenv, spec)
    init = _init(agent, jenv, capacity, key)
    carry, metrics = jax.lax.scan(lambda c, xs: advance(c, *xs), init, (chunk_keys, chunks))
    return carry.params, metrics


def rows(agent: Agent, metrics: dict, first_seed: int) -> list[dict]:
    """`advance`'s metrics for seeds `first_seed, first_seed + 1, ...` (vmapped: a leading seed
    axis) as metric rows: `seed`, `step`, `eval_return`, and the agent's metrics once it has learned."""
    values = jax.device_get(metrics)
    out = []
    for s in range(len(values["step"])):
        row = {"seed": first_seed + s, "step": int(values["step"][s]), "eval_return": float(values["eval_return"][s])}
        row.update(training_metrics(agent, values["learn_calls"][s], {k: values[k][s] for k in agent.metric_names}))
        out.append(row)
    return out


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

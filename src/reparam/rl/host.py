"""The host loop: Gymnasium environments (classic control, MuJoCo) stepped in Python around compiled
agent calls, in the compiled loop's shape: a state, and chunks that each end with an evaluation.

    loop = make_host_loop(sac_agent(config), "HalfCheetah-v5", total_steps=100_000, eval_every=5_000)
    state = loop.init(seed)
    for chunk in range(loop.chunks):
        state, row = loop.advance(state, chunk)
    loop.close(state)                                  # or: state, rows = run_host(loop, seed)

Per vector step: an action (`uniform_action` while `warming_up`, else `agent.explore`; compiled) ->
`env.step` -> one donated, in-place buffer write of `make_transition(obs, action, reward, final_obs,
terminated)` (the true last observation where an episode ended: `final_observations`; same-step
autoreset) -> where `learns`, one compiled, donated `agent.learn` call. A learning step runs the
write, the learning and the next step's `explore` as one compiled call (`Kernels.step`: one dispatch
per env step); past the end of `run_to` its explored action is dropped with its key, and the next
step's own `explore` draws the same action, so where a run stops (a chunk's end, a resume) changes
nothing. Inside that call the learning sits in a `lax.cond` (a fusion boundary) so the buffer is
written in place and never copied, whatever its capacity.

Step counting: `total_steps`, `learning_starts` and `eval_every` count environment transitions
(vector steps times `num_envs`); `train_freq` counts vector steps, as in Stable-Baselines3. One
vector step with `num_envs` environments yields `num_envs` transitions, so `gradient_steps =
num_envs * ...` keeps one gradient step per transition. A chunk ends at the first vector step that
reaches a multiple of `eval_every` (or at the last one).

Seeds: run `seed` trains on environments seeded `seed * num_envs + i` and evaluates on ones seeded
`EVAL_SEED_OFFSET + seed * eval_episodes + i`: no two runs (seeds) share an episode seed.

Resume: `loop.saved(state)` holds the arrays to continue from (agent params with optimizer states,
replay buffer, key, seed and counters); `loop.restored(fresh, saved)` puts them back into a fresh
state. What it cannot restore is the Gymnasium environments' own state (a MuJoCo simulator or an
env's private RNG cannot be saved portably): a resumed run starts new episodes, reset with
`seed * num_envs + RESUME_SEED_STRIDE * vector_step`, so the agent, buffer and keys continue exactly and
the trajectories from there on differ from an uninterrupted run's. Timings restart too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .agent import Agent, learns, training_metrics, uniform_action, warming_up
from .envs import ActionBounds, env_spec, final_observations, make_gym_env
from .evaluate import evaluate_gym
from .replay import ReplayBuffer, Transition, add_batch, init_buffer, make_transition

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation environments of run `seed` are seeded from `EVAL_SEED_OFFSET + seed * eval_episodes`
(disjoint from training ones for seeds below `EVAL_SEED_OFFSET / num_envs`)."""
RESUME_SEED_STRIDE = 7_919
"""A resumed run resets its environments with `seed * num_envs + RESUME_SEED_STRIDE * vector_steps_done`."""


class HostEnvs(NamedTuple):
    train: gym.vector.VectorEnv  # num_envs environments
    eval: gym.vector.VectorEnv  # eval_episodes environments, one evaluation episode each


class Tally(NamedTuple):
    """What the rows report, gathered step by step. Timed steps leave out the steps whose calls
    compiled (a kernel's first call in this process's run) and evaluations."""

    returns: tuple[float, ...] = ()  # returns of the training episodes finished since the last evaluation
    steps: int = 0  # timed environment steps since the last evaluation ...
    seconds: float = 0.0  # ... and their seconds
    train_steps: int = 0  # timed environment steps after the warm-up, the whole run (this process) ...
    train_seconds: float = 0.0  # ... and their seconds: the training-phase rate
    compiled: frozenset[str] = frozenset()  # kernels called already


class HostState(NamedTuple):
    """Everything a host-loop run holds between vector steps."""

    envs: HostEnvs
    seed: int
    params: Any  # the agent's params (arrays; the next `learn` call donates them)
    buffer: ReplayBuffer
    key: PRNGKeyArray
    obs: np.ndarray  # float32 (num_envs, obs_dim): the observations to act on next
    vector_step: int  # vector steps done
    learn_calls: int
    last: dict  # metrics of the latest `learn` call (zeros before the first)
    episode_return: np.ndarray  # running return of each training environment's episode
    tally: Tally


class HostSaved(NamedTuple):
    """What a checkpoint holds, arrays only (see the module docstring for what a resume cannot restore)."""

    params: Any
    buffer: ReplayBuffer
    key_data: Array  # `jax.random.key_data` of the loop's key
    seed: Array  # int32
    vector_step: Array  # int32
    learn_calls: Array  # int32
    last: dict


class Kernels(NamedTuple):
    """The compiled pieces of a loop. They take and return arrays (and the agent's array pytrees);
    the agent, sizes and bounds are closed over, so a call is plain `jax.jit` dispatch."""

    init: Callable  # key -> params
    warm_up: Callable  # (obs, key) -> (uniform action (num_envs, action_dim), next key)
    explore: Callable  # (policy, obs, key) -> (action, next key)
    act: Callable  # (policy, obs) -> deterministic action
    record: Callable  # (buffer, obs, action, reward, final_obs, terminated) -> buffer; buffer donated
    learn: Callable  # (params, buffer, key) -> (params, metrics, next key); params and key donated
    step: Callable  # (leaves, buffer, key data, pack_step(...)): record, learn, explore at next_obs, in one call
    flat: Callable  # (params, key) -> (params' leaves, key data): `step`'s form of them
    unflat: Callable  # the inverse of `flat`


def pack_step(obs, action, reward, final_obs, terminated, next_obs) -> np.ndarray:
    """One vector step's host arrays as the one float32 array `Kernels.step` takes,
    `(num_envs, 3 obs_dim + action_dim + 2)`: `obs | action | reward | final_obs | terminated | next_obs`."""
    return np.concatenate(
        [obs, action, np.reshape(reward, (-1, 1)), final_obs, np.reshape(terminated, (-1, 1)), next_obs],
        axis=-1,
        dtype=np.float32,
    )


def make_kernels(agent: Agent, obs_dim: int, bounds: ActionBounds) -> Kernels:
    """Compile `agent`'s calls for one environment's sizes and bounds (on first use; loops with any
    number of environments can share them)."""

    def warm_up(obs, key):
        key, sub = jax.random.split(key)
        return uniform_action(sub, bounds, obs.shape[:-1]), key

    def explore(policy, obs, key):
        key, sub = jax.random.split(key)
        return agent.explore(policy, obs, sub), key

    def record(buffer, obs, action, reward, final_obs, terminated):
        return add_batch(buffer, make_transition(obs, action, reward, final_obs, terminated))

    def learn(params, buffer, key):
        key, sub = jax.random.split(key)
        params, metrics = agent.learn(params, buffer, sub)
        return params, metrics, key

    treedef = jax.tree.structure(jax.eval_shape(lambda key: agent.init(key, obs_dim, bounds), jax.random.key(0)))
    action_dim = bounds.low.shape[-1]
    sections = list(np.cumsum([obs_dim, action_dim, 1, obs_dim, 1]))  # `pack_step`'s column blocks

    def flat(params, key):
        return tuple(jax.tree.leaves(params)), jax.random.key_data(key)

    def unflat(leaves, key_data):
        return jax.tree.unflatten(treedef, leaves), jax.random.wrap_key_data(key_data)

    def learn_after_write(params, buffer, key):
        """`learn` inside a `lax.cond` whose traced predicate is always true (the buffer holds the row
        just written). Unconditional, XLA fuses the write into the batch gather: the gather then
        reads the old buffer while the donated one is overwritten in place, so XLA copies the
        buffer's column first, every step (capacity x row bytes: 2 x 68 MB per step for a 1e6-row
        HalfCheetah buffer). The conditional is a fusion boundary, as in the compiled loop."""

        def skip():
            metrics = jax.eval_shape(learn, params, buffer, key)[1]
            return params, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics), key

        return jax.lax.cond(buffer.size > 0, lambda: learn(params, buffer, key), skip)

    def step(leaves, buffer, key_data, packed):
        """`record`, `learn` and `explore` at the next observation with the new policy: one dispatch
        per learning step instead of three. The step's host arrays come as one float32 transfer
        (`pack_step`: `obs | action | reward | final_obs | terminated | next_obs` per env, one
        device copy instead of six), the params and keys flat (`flat`: a tuple of arrays and raw key
        data), so a call flattens no agent pytree in Python (that cost ~0.6 ms of a 9 ms call).
        Returns the key after `learn` and, with the next action, the key after `explore`: a caller
        that drops the action keeps the first key, and its own `explore` call then draws the same
        action (the same run as the three calls, whichever it does)."""
        obs, action, reward, final_obs, terminated, next_obs = jnp.split(packed, sections, axis=-1)
        params, key = unflat(leaves, key_data)
        buffer = record(buffer, obs, action, reward[:, 0], final_obs, terminated[:, 0])
        params, metrics, key = learn_after_write(params, buffer, key)
        next_action, explored_key = explore(agent.policy(params), next_obs, key)
        leaves, key_data = flat(params, key)
        return leaves, buffer, metrics, key_data, (next_action, jax.random.key_data(explored_key))

    return Kernels(
        init=jax.jit(lambda key: agent.init(key, obs_dim, bounds)),
        warm_up=jax.jit(warm_up),
        explore=jax.jit(explore),
        act=jax.jit(agent.act),
        record=jax.jit(record, donate_argnums=0),
        learn=jax.jit(learn, donate_argnums=(0, 2)),
        step=jax.jit(step, donate_argnums=(0, 1, 2)),
        flat=flat,
        unflat=unflat,
    )


class HostLoop(NamedTuple):
    """A host-loop run of `agent` on a Gymnasium id, in `chunks` chunks (see `make_host_loop`)."""

    agent: Agent
    env_id: str
    num_envs: int
    eval_episodes: int
    ends: tuple[int, ...]
    """The vector step at which each chunk ends (with an evaluation)."""
    capacity: int
    kernels: Kernels

    @property
    def chunks(self) -> int:
        """Number of chunks (evaluations) of a run."""
        return len(self.ends)

    def init(self, seed: int) -> HostState:
        """Run `seed`'s environments (reset), a fresh agent and an empty buffer."""
        n = self.num_envs
        train, obs = make_gym_env(self.env_id, n, seed * n)
        evaluation, _ = make_gym_env(self.env_id, self.eval_episodes, EVAL_SEED_OFFSET + seed * self.eval_episodes)
        key, k_init = jax.random.split(jax.random.key(seed))
        params = self.kernels.init(k_init)
        action = np.zeros(train.single_action_space.shape, np.float32)
        buffer = init_buffer(Transition(obs[0], action, np.float32(0), obs[0], np.float32(0)), self.capacity)
        last = jax.tree.map(
            lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(self.kernels.learn, params, buffer, key)[1]
        )
        return HostState(HostEnvs(train, evaluation), seed, params, buffer, key, obs, 0, 0, last, np.zeros(n), Tally())

    def run_to(self, state: HostState, vector_step: int) -> HostState:
        """Vector steps `state.vector_step + 1 ... vector_step`, no evaluation (`advance` is `run_to`
        the chunk's end, then the evaluation); for callers that time or inspect single steps."""
        agent, kernels, n = self.agent, self.kernels, self.num_envs
        params, buffer, key, obs, learn_calls, last = (
            state.params,
            state.buffer,
            state.key,
            state.obs,
            state.learn_calls,
            state.last,
        )
        episode_return, tally = state.episode_return.copy(), state.tally
        finished, compiled = list(tally.returns), set(tally.compiled)
        next_action = None  # the action for step t, explored by the previous step's fused call
        leaves = key_data = None  # params and key in `kernels.step`'s flat form while learning
        for t in range(state.vector_step + 1, vector_step + 1):
            begun = time.perf_counter()
            warm = warming_up(agent, t, n)
            calls = set()
            if next_action is not None:
                action, next_action = next_action, None
            elif leaves is not None:  # the fused call's action was not kept: back to the pytree form
                (params, key), leaves = kernels.unflat(leaves, key_data), None
                action, key = kernels.explore(agent.policy(params), obs, key)
                calls.add("explore")
            elif warm:
                action, key = kernels.warm_up(obs, key)
                calls.add("warm_up")
            else:
                action, key = kernels.explore(agent.policy(params), obs, key)
                calls.add("explore")
            action = np.asarray(action)
            next_obs, reward, terminated, truncated, info = state.envs.train.step(action)
            final_obs = final_observations(next_obs, terminated, truncated, info)
            transition = (obs, action, reward, final_obs, terminated)
            obs = np.asarray(next_obs, np.float32)
            if learns(agent, t, n):  # one call: record, learn, and the next step's action
                if leaves is None:
                    leaves, key_data = kernels.flat(params, key)
                packed = pack_step(*transition, obs)
                leaves, buffer, last, key_data, explored = kernels.step(leaves, buffer, key_data, packed)
                learn_calls += 1
                calls.add("step")
                if t < vector_step:  # else the next step (after an evaluation or a resume) explores it again
                    next_action, key_data = explored
            else:
                if leaves is not None:
                    (params, key), leaves = kernels.unflat(leaves, key_data), None
                buffer = kernels.record(buffer, *transition)
                calls.add("record")
            if calls <= compiled:
                seconds = time.perf_counter() - begun
                tally = tally._replace(steps=tally.steps + n, seconds=tally.seconds + seconds)
                if not warm:
                    tally = tally._replace(
                        train_steps=tally.train_steps + n, train_seconds=tally.train_seconds + seconds
                    )
            compiled |= calls
            episode_return += reward
            done = np.logical_or(terminated, truncated)
            finished.extend(episode_return[done].tolist())
            episode_return[done] = 0.0
        if leaves is not None:
            params, key = kernels.unflat(leaves, key_data)
        tally = tally._replace(returns=tuple(finished), compiled=frozenset(compiled))
        return state._replace(
            params=params,
            buffer=buffer,
            key=key,
            obs=obs,
            vector_step=max(vector_step, state.vector_step),
            learn_calls=learn_calls,
            last=last,
            episode_return=episode_return,
            tally=tally,
        )

    def advance(self, state: HostState, chunk: int) -> tuple[HostState, dict]:
        """Chunk `chunk` (0-based): the vector steps up to `ends[chunk]`, then `eval_episodes`
        deterministic episodes. The row: `seed`, `step`, `eval_return`; `train_return` (mean of the
        training episodes finished in the chunk) if any finished; `steps_per_second` (environment
        steps, compiling calls and the evaluation excluded) if measured; on the last chunk
        `training_steps_per_second` (the same over all steps after the warm-up) if measured; and
        the agent's metrics (`agent.metric_names`, of the latest `learn` call) once it has learned."""
        first, end = (self.ends[chunk - 1] if chunk else 0), self.ends[chunk]
        if not first <= state.vector_step <= end:
            raise ValueError(
                f"host loop: chunk {chunk} covers vector steps {first + 1}-{end}; the state is at {state.vector_step}"
            )
        state = self.run_to(state, end)
        returns = evaluate_gym(functools.partial(self.kernels.act, self.agent.policy(state.params)), state.envs.eval)
        tally = state.tally
        row = {"seed": state.seed, "step": end * self.num_envs, "eval_return": float(np.mean(returns))}
        if tally.returns:
            row["train_return"] = float(np.mean(tally.returns))
        if tally.seconds > 0:
            row["steps_per_second"] = tally.steps / tally.seconds
        if chunk == self.chunks - 1 and tally.train_seconds > 0:
            row["training_steps_per_second"] = tally.train_steps / tally.train_seconds
        row.update(training_metrics(self.agent, state.learn_calls, state.last))
        return state._replace(tally=tally._replace(returns=(), steps=0, seconds=0.0)), row

    def saved(self, state: HostState) -> HostSaved:
        """The arrays a checkpoint holds (read them before the next `advance`: it donates them)."""
        i32 = lambda x: jnp.asarray(x, jnp.int32)
        return HostSaved(
            state.params,
            state.buffer,
            jax.random.key_data(state.key),
            i32(state.seed),
            i32(state.vector_step),
            i32(state.learn_calls),
            state.last,
        )

    def restored(self, state: HostState, saved: HostSaved) -> HostState:
        """`state` (fresh, any seed: its environments are reused) continuing from `saved`: its
        arrays and counters put back, the environments reset for the saved seed (new episodes)."""
        seed, t, n = int(saved.seed), int(saved.vector_step), self.num_envs
        obs, _ = state.envs.train.reset(seed=seed * n + RESUME_SEED_STRIDE * t)
        state.envs.eval.reset(seed=EVAL_SEED_OFFSET + seed * self.eval_episodes)
        own = lambda tree: jax.tree.map(lambda x: jnp.array(x, copy=True), tree)  # donatable copies
        key = jax.random.wrap_key_data(jnp.asarray(saved.key_data))
        return state._replace(
            seed=seed,
            params=own(saved.params),
            buffer=own(saved.buffer),
            key=key,
            obs=np.asarray(obs, np.float32),
            vector_step=t,
            learn_calls=int(saved.learn_calls),
            last=own(saved.last),
            episode_return=np.zeros(n),
            tally=Tally(),
        )

    def close(self, state: HostState) -> None:
        """Close the state's environments."""
        state.envs.train.close()
        state.envs.eval.close()


def make_host_loop(
    agent: Agent, env_id: str, *, total_steps: int, num_envs: int = 1, eval_every: int = 10_000, eval_episodes: int = 10
) -> HostLoop:
    """A host-loop run of `agent` on the Gymnasium id `env_id` for `total_steps` environment steps
    (rounded up to whole vector steps), evaluated every `eval_every` steps and at the end. One-line
    ValueErrors for bad sizes, unknown ids and spaces SAC cannot use."""
    for name, value in dict(
        total_steps=total_steps, num_envs=num_envs, eval_every=eval_every, eval_episodes=eval_episodes
    ).items():
        if value < 1:
            raise ValueError(f"host loop: {name} must be >= 1, got {value}")
    obs_dim, bounds = env_spec(env_id)
    vector_steps = -(-total_steps // num_envs)
    capacity = min(agent.buffer_size, vector_steps * num_envs)
    if capacity < num_envs:
        raise ValueError(f"host loop: buffer_size ({agent.buffer_size}) must hold one vector step ({num_envs} envs)")
    evals = -(-total_steps // eval_every)
    ends = tuple(sorted({min(-(-(k * eval_every) // num_envs), vector_steps) for k in range(1, evals + 1)}))
    kernels = make_kernels(agent, obs_dim, bounds)
    return HostLoop(agent, env_id, num_envs, eval_episodes, ends, capacity, kernels)


def run_host(loop: HostLoop, seed: int) -> tuple[HostState, list[dict]]:
    """A whole run of seed `seed`: the final state (environments closed) and one row per chunk."""
    state, rows = loop.init(seed), []
    try:
        for chunk in range(loop.chunks):
            state, row = loop.advance(state, chunk)
            rows.append(row)
    finally:
        loop.close(state)
    return state, rows

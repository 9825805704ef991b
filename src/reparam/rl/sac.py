"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC Algorithms and Applications"): the configuration,
the networks, the three losses, one update and the gradient-steps phase that both training loops
call (through `agent.sac_agent`).

The policy is `a = low + (tanh(mu(s) + sigma(s) eps) + 1) (high - low) / 2`, scored by
`TanhNormal.rsample_and_log_prob`: exact log-det, no epsilon, never inverting a saturated action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from ..distributions import Independent, TanhNormal
from ..nn import mlp, over_leading_axes
from .envs import ActionBounds
from .imagination import score_sample_and_log_prob
from .replay import ReplayBuffer, Transition, sample

METRICS = ("critic_loss", "actor_loss", "alpha", "entropy", "q_target")
"""What `update` reports for one gradient step and `gradient_steps` averages over a phase:
`critic_loss` (both critics, `critic_loss`), `actor_loss`, `alpha` (after the step), `entropy`
(minus the batch mean of `log pi(a|s)`), `q_target` (batch mean of the critic target `y`)."""


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters; defaults are the paper's (v2, learned temperature)."""

    learning_rate: float = 3e-4
    """Adam step size for actor, critics and temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critics: target <- (1 - tau) target + tau online."""
    batch_size: int = 256
    """Transitions per gradient step."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Widths of the hidden ReLU layers of actor and critics."""
    buffer_size: int = 1_000_000
    """Replay capacity (preallocated once)."""
    learning_starts: int = 1_000
    """Environment steps of uniform random actions before learning starts."""
    train_freq: int = 1
    """Environment steps between training phases."""
    gradient_steps: int = 1
    """Gradient steps per training phase (run inside one compiled call)."""
    target_update_interval: int = 1
    """Gradient steps between target updates."""
    learn_alpha: bool = True
    """Learn the temperature alpha toward the target entropy; else keep init_alpha."""
    init_alpha: float = 1.0
    """Initial temperature."""
    target_entropy: float | None = None
    """Target policy entropy; None means -dim(A)."""
    log_std_min: float = -5.0
    """Lower bound of the policy's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the policy's log standard deviation."""
    actor_gradient: Literal["pathwise", "score"] = "pathwise"
    """Actor-gradient estimator: pathwise (the reparameterized gradient, SAC's) or score (the
    likelihood-ratio gradient with a baseline, same critic; `score_actor_loss`)."""

    def __post_init__(self):
        checks = [
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}"),
            (0 < self.tau <= 1, f"tau must be in (0, 1], got {self.tau}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                self.buffer_size >= self.batch_size,
                f"batch_size ({self.batch_size}) exceeds buffer_size ({self.buffer_size})",
            ),
            (self.learning_starts >= 0, f"learning_starts must be >= 0, got {self.learning_starts}"),
            (self.train_freq >= 1 and self.gradient_steps >= 1, "train_freq and gradient_steps must be >= 1"),
            (self.target_update_interval >= 1, "target_update_interval must be >= 1"),
            (self.init_alpha > 0, f"init_alpha must be > 0, got {self.init_alpha}"),
            (self.log_std_min < self.log_std_max, "log_std_min must be below log_std_max"),
            (all(h >= 1 for h in self.hidden_sizes), f"hidden_sizes must be positive, got {self.hidden_sizes}"),
            (
                self.actor_gradient in ("pathwise", "score"),
                f"actor_gradient must be pathwise or score, got {self.actor_gradient!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SACConfig: {message}")


class Actor(eqx.Module):
    """`s -> (mu, log_sigma)`, log_sigma squashed into `[log_std_min, log_std_max]` by tanh."""

    net: eqx.nn.Sequential
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)

    def __init__(self, obs_dim: int, action_dim: int, config: SACConfig, *, key: PRNGKeyArray):
        self.net = mlp(obs_dim, 2 * action_dim, config.hidden_sizes, activation=jax.nn.relu, key=key)
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max

    def __call__(self, obs: Array) -> tuple[Array, Array]:
        """obs `(batch, obs_dim)` -> mean, log_std `(batch, action_dim)`."""
        mean, raw = jnp.split(over_leading_axes(self.net, obs), 2, axis=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(raw) + 1)
        return mean, log_std


def policy(actor: Actor, obs: Array, bounds: ActionBounds) -> Independent:
    """pi(.|s) over whole action vectors: `Independent(TanhNormal(mu, sigma, low, high), 1)`."""
    mean, log_std = actor(obs)
    low, high = bounds.low.astype(mean.dtype), bounds.high.astype(mean.dtype)
    return Independent(TanhNormal(mean, jnp.exp(log_std), low, high, validate=False), 1)


class TwinCritic(eqx.Module):
    """Two Q-networks `(s, a) -> Q_i(s, a)`, stored stacked so both run as one batched matmul."""

    nets: eqx.nn.Sequential  # every array leaf has a leading axis of size 2

    def __init__(self, obs_dim: int, action_dim: int, config: SACConfig, *, key: PRNGKeyArray):
        make = lambda k: mlp(obs_dim + action_dim, 1, config.hidden_sizes, activation=jax.nn.relu, key=k)
        self.nets = eqx.filter_vmap(make)(jax.random.split(key, 2))

    def __call__(self, obs: Array, action: Array) -> Array:
        """obs `(batch, obs_dim)`, action `(batch, action_dim)` -> Q values `(2, batch)`."""
        inputs = jnp.concatenate([obs, action], axis=-1)

        @eqx.filter_vmap(in_axes=(eqx.if_array(0), None))
        def q(net, x):
            return over_leading_axes(net, x)[:, 0]

        return q(self.nets, inputs)


def critic_target(
    actor: Actor,
    target_critic: TwinCritic,
    log_alpha: Array,
    batch: Transition,
    bounds: ActionBounds,
    key: PRNGKeyArray,
    gamma: float,
) -> Array:
    """`y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))`, `a' ~ pi(.|s')`.

    Only a true termination stops the bootstrap; a time-limit truncation does not.
    """
    next_action, next_log_prob = policy(actor, batch.next_obs, bounds).rsample_and_log_prob(key)
    next_q = jnp.min(target_critic(batch.next_obs, next_action), axis=0)
    soft_value = next_q - jnp.exp(log_alpha) * next_log_prob
    return jax.lax.stop_gradient(batch.reward + gamma * (1.0 - batch.terminated) * soft_value)


def critic_loss(critic: TwinCritic, batch: Transition, target: Array) -> Array:
    """`sum_i mean (Q_i(s, a) - y)^2 / 2` over both critics."""
    q = critic(batch.obs, batch.action)
    return jnp.sum(0.5 * jnp.mean(jnp.square(q - target), axis=-1))


def actor_loss(
    actor: Actor, critic: TwinCritic, log_alpha: Array, obs: Array, bounds: ActionBounds, key: PRNGKeyArray
) -> tuple[Array, Array]:
    """`mean(alpha log pi(a|s) - min_i Q_i(s, a))`, `a` the pathwise sample; also returns the
    batch mean of `log pi` (minus the entropy estimate) for the temperature loss."""
    action, log_prob = policy(actor, obs, bounds).rsample_and_log_prob(key)
    q = jnp.min(critic(obs, action), axis=0)
    return jnp.mean(jax.lax.stop_gradient(jnp.exp(log_alpha)) * log_prob - q), jnp.mean(log_prob)


SCORE_BASELINE_SAMPLES = 4
"""Independent actions per state whose mean `alpha log pi - min Q` is the score-function baseline."""


def score_actor_loss(
    actor: Actor, critic: TwinCritic, log_alpha: Array, obs: Array, bounds: ActionBounds, key: PRNGKeyArray
) -> tuple[Array, Array]:
    """`actor_loss`'s objective `E[alpha log pi(a|s) - min_i Q_i(s, a)]` with the likelihood-ratio
    gradient: `mean((f(a) - b(s)) grad log pi(a|s) + alpha grad log pi(a|s))`, `f = alpha log pi - min Q`,
    `a ~ pi` with gradients stopped, and the baseline `b(s)` the mean of `f` over
    `SCORE_BASELINE_SAMPLES` other, independent actions (so it does not depend on `a`: unbiased).
    The value is the batch mean of `f` (as `actor_loss`'s); also returns the batch mean of `log pi`."""
    dist = policy(actor, obs, bounds)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    k_action, k_baseline = jax.random.split(key)
    action, log_prob = score_sample_and_log_prob(dist, k_action)
    f = alpha * jax.lax.stop_gradient(log_prob) - jnp.min(critic(obs, action), axis=0)
    others, other_log_prob = jax.vmap(lambda k: score_sample_and_log_prob(dist, k))(
        jax.random.split(k_baseline, SCORE_BASELINE_SAMPLES)
    )
    flat = others.reshape(-1, others.shape[-1])
    q_others = jnp.min(critic(jnp.tile(obs, (SCORE_BASELINE_SAMPLES, 1)), flat), axis=0).reshape(other_log_prob.shape)
    baseline = jnp.mean(alpha * other_log_prob - q_others, axis=0)
    surrogate = jnp.mean(jax.lax.stop_gradient(f - baseline) * log_prob + alpha * log_prob)
    value = jnp.mean(jax.lax.stop_gradient(f))
    return surrogate + jax.lax.stop_gradient(value - surrogate), jnp.mean(log_prob)


ActorObjective = Callable[[Actor, TwinCritic, Array, Array, ActionBounds, PRNGKeyArray], tuple[Array, Array]]
"""`(actor, critic, log_alpha, obs, bounds, key) -> (loss, mean log pi)`: `actor_loss`'s signature."""


def actor_objective_for(config: SACConfig) -> ActorObjective:
    """`actor_loss` (pathwise) or `score_actor_loss` (score), as `config.actor_gradient` says."""
    return actor_loss if config.actor_gradient == "pathwise" else score_actor_loss


def alpha_loss(log_alpha: Array, mean_log_prob: Array, target_entropy: float) -> Array:
    """`-alpha (E[log pi] + target_entropy)`: alpha grows while the entropy is below the target."""
    return -jnp.exp(log_alpha) * jax.lax.stop_gradient(mean_log_prob + target_entropy)


def polyak(target, online, tau: float):
    """`target <- (1 - tau) target + tau online` on every array leaf (other leaves kept)."""
    return jax.tree_util.tree_map(lambda t, o: (1 - tau) * t + tau * o if eqx.is_array(t) else t, target, online)


class SACState(eqx.Module):
    """Everything a training step changes: networks, temperature, optimizer states, step count."""

    actor: Actor
    critic: TwinCritic
    target_critic: TwinCritic
    log_alpha: Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    gradient_steps: Array  # int32 scalar


def optimizer(config: SACConfig) -> optax.GradientTransformation:
    """Adam at `config.learning_rate`, shared by actor, critics and temperature (separate states)."""
    return optax.adam(config.learning_rate)


def init_sac(key: PRNGKeyArray, obs_dim: int, action_dim: int, config: SACConfig) -> SACState:
    """A fresh agent: actor, twin critic, its target (a copy owning its arrays), `log alpha = log
    init_alpha`, the three optimizer states and a zero step count."""
    k_actor, k_critic = jax.random.split(key)
    actor = Actor(obs_dim, action_dim, config, key=k_actor)
    critic = TwinCritic(obs_dim, action_dim, config, key=k_critic)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    opt = optimizer(config)
    return SACState(
        # The target starts equal to the critic but owns its arrays (a donated update needs that).
        actor=actor,
        critic=critic,
        target_critic=jax.tree_util.tree_map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, critic),
        log_alpha=log_alpha,
        actor_opt=opt.init(eqx.filter(actor, eqx.is_array)),
        critic_opt=opt.init(eqx.filter(critic, eqx.is_array)),
        alpha_opt=opt.init(log_alpha),
        gradient_steps=jnp.zeros((), jnp.int32),
    )


def _step(opt: optax.GradientTransformation, model, grads, opt_state):
    updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state


def update(
    state: SACState,
    batch: Transition,
    key: PRNGKeyArray,
    config: SACConfig,
    bounds: ActionBounds,
    actor_objective: ActorObjective | None = None,
) -> tuple[SACState, dict[str, Array]]:
    """One gradient step on critics, actor and temperature, then the Polyak target update every
    `target_update_interval` steps. The actor minimises `actor_objective` (default:
    `actor_objective_for(config)`; a model-based agent passes its imagined-return loss). Pure: compile
    it with `eqx.filter_jit` (the config is static; the networks hold their activation functions)."""
    opt = optimizer(config)
    target_entropy = -float(bounds.low.shape[-1]) if config.target_entropy is None else config.target_entropy
    k_target, k_actor = jax.random.split(key)

    y = critic_target(state.actor, state.target_critic, state.log_alpha, batch, bounds, k_target, config.gamma)
    q_loss, q_grads = eqx.filter_value_and_grad(critic_loss)(state.critic, batch, y)
    critic, critic_opt = _step(opt, state.critic, q_grads, state.critic_opt)

    objective = actor_objective_for(config) if actor_objective is None else actor_objective
    (pi_loss, mean_log_prob), pi_grads = eqx.filter_value_and_grad(objective, has_aux=True)(
        state.actor, critic, state.log_alpha, batch.obs, bounds, k_actor
    )
    actor, actor_opt = _step(opt, state.actor, pi_grads, state.actor_opt)

    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if config.learn_alpha:
        a_loss, a_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, mean_log_prob, target_entropy)
        log_alpha, alpha_opt = _step(opt, state.log_alpha, a_grad, state.alpha_opt)

    steps = state.gradient_steps + 1
    tau = jnp.where(steps % config.target_update_interval == 0, config.tau, 0.0)
    target_critic = polyak(state.target_critic, critic, tau)
    new_state = SACState(actor, critic, target_critic, log_alpha, actor_opt, critic_opt, alpha_opt, steps)
    metrics = dict(
        critic_loss=q_loss, actor_loss=pi_loss, alpha=jnp.exp(log_alpha), entropy=-mean_log_prob, q_target=jnp.mean(y)
    )
    return new_state, {name: metrics[name] for name in METRICS}


def gradient_steps(
    state: SACState,
    buffer: ReplayBuffer,
    key: PRNGKeyArray,
    config: SACConfig,
    bounds: ActionBounds,
    *,
    actor_objective: ActorObjective | None = None,
    draw: Callable = sample,
) -> tuple[SACState, dict[str, Array]]:
    """One training phase: `config.gradient_steps` times draw a batch of `config.batch_size` rows
    with `draw(buffer, key, batch_size)` (default `sample`: uniform over the buffer; a model-based
    agent passes its own buffers and mixture), then `update` with `actor_objective`, in one
    `lax.scan` (step `i` uses `split(key, gradient_steps)[i]`, split again into the batch key and
    the update key; one step runs without the scan, with the same keys).

    Returns the new state and each of `METRICS` averaged over the phase's steps (float32 scalars),
    so with `gradient_steps > 1` a loss is the phase's mean loss, not its last step's. Pure: both
    loops call it compiled (the config is static; `buffer` must hold at least one row).
    """
    params, static = eqx.partition(state, eqx.is_array)

    def one(params, k):
        k_batch, k_update = jax.random.split(k)
        batch = draw(buffer, k_batch, config.batch_size)
        new, metrics = update(eqx.combine(params, static), batch, k_update, config, bounds, actor_objective)
        return eqx.filter(new, eqx.is_array), metrics

    keys = jax.random.split(key, config.gradient_steps)
    if config.gradient_steps == 1:  # no loop: a while of one trip would copy the state it carries
        params, metrics = one(params, keys[0])
        return eqx.combine(params, static), {name: jnp.asarray(metrics[name], jnp.float32) for name in METRICS}
    params, metrics = jax.lax.scan(one, params, keys)
    return eqx.combine(params, static), {name: jnp.mean(metrics[name]) for name in METRICS}

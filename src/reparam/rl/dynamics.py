"""A learned probabilistic world model: an ensemble of `E` Gaussian MLPs predicting the state change
and the reward, `(s, a) -> N(mu_e(s, a), diag sigma_e^2(s, a))` over `(s' - s, r)` (PETS, Chua et al.
2018), as one vmapped module, trained by Gaussian NLL on the shared fitting loop (`training.make_step`)
on the replay buffer, with a held-out split and elites.

    ensemble = Ensemble(obs_dim + action_dim, obs_dim + 1, config, key=key)
    scaling = buffer_scaling(buffer)                       # input/output normalisation from the buffer
    mean, var = predict(ensemble, scaling, obs, action)    # (E, batch, obs_dim + 1), original units
    next_obs, reward = sample_step(ensemble, scaling, member, obs, action, key)   # s' = s + mu + sigma eps

Log-variances are bounded softly between learned `min_log_var < max_log_var` (PETS), with the penalty
`bound_penalty * (sum max_log_var - sum min_log_var)` in the loss. Rows `every - 1, 2 every - 1, ...`
of the buffer are held out (`holdout_every`): the model never trains on them, and they score it
(`heldout_metrics`); the `num_elites` members with the lowest held-out error (a running average) are
the elites imagination samples from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from .. import training
from ..nn import mlp
from .replay import ReplayBuffer, Transition

LOG_2PI = 1.8378770664093453


@dataclass(frozen=True)
class DynamicsConfig:
    """The ensemble's sizes and training (defaults: PETS / MBPO on small tasks)."""

    ensemble_size: int = 5
    """Members `E` of the ensemble."""
    num_elites: int = 3
    """Members imagination samples from: those with the lowest held-out error (1..ensemble_size)."""
    hidden_sizes: tuple[int, ...] = (200, 200)
    """Hidden SiLU layer widths of every member."""
    learning_rate: float = 1e-3
    """Adam step size of the model."""
    weight_decay: float = 1e-5
    """Decoupled weight decay (AdamW) of the model."""
    batch_size: int = 256
    """Transitions per member per model gradient step (each member draws its own)."""
    model_steps: int = 1
    """Model gradient steps per `learn` call (continual training, one program)."""
    holdout_every: int = 10
    """Every `holdout_every`-th buffer row is held out (never trained on, scores the model)."""
    holdout_batch: int = 256
    """Held-out rows drawn per `learn` call to score the model and rank the elites."""
    elite_decay: float = 0.9
    """Running-average factor of each member's held-out error (ranks the elites)."""
    min_log_var: float = -10.0
    """Initial lower bound of the predicted log-variances (normalised units; learned)."""
    max_log_var: float = 0.5
    """Initial upper bound of the predicted log-variances (normalised units; learned)."""
    bound_penalty: float = 0.01
    """Weight of `sum max_log_var - sum min_log_var` in the loss (keeps the bounds tight)."""

    def __post_init__(self):
        checks = [
            (self.ensemble_size >= 1, f"--ensemble must be >= 1, got {self.ensemble_size}"),
            (
                1 <= self.num_elites <= self.ensemble_size,
                f"--elites must be in 1..ensemble ({self.ensemble_size}), got {self.num_elites}",
            ),
            (all(h >= 1 for h in self.hidden_sizes), f"model hidden sizes must be positive, got {self.hidden_sizes}"),
            (self.learning_rate > 0 and self.weight_decay >= 0, "model learning rate > 0 and weight decay >= 0"),
            (self.batch_size >= 1 and self.model_steps >= 1, "model batch size and model steps must be >= 1"),
            (self.holdout_every >= 2, f"holdout_every must be >= 2, got {self.holdout_every}"),
            (self.holdout_batch >= 1, f"holdout_batch must be >= 1, got {self.holdout_batch}"),
            (0 <= self.elite_decay < 1, f"elite_decay must be in [0, 1), got {self.elite_decay}"),
            (self.min_log_var < self.max_log_var, "min_log_var must be below max_log_var"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DynamicsConfig: {message}")


class Ensemble(eqx.Module):
    """`E` Gaussian MLPs in one module: every array leaf of `nets` has a leading axis `E`.

    On normalised inputs `x` it gives normalised means and bounded log-variances
    `log_var = min + softplus(max - softplus(max - raw) - min)`."""

    nets: eqx.nn.Sequential
    max_log_var: Array  # (out_size,)
    min_log_var: Array  # (out_size,)

    def __init__(self, in_size: int, out_size: int, config: DynamicsConfig, *, key: PRNGKeyArray):
        make = lambda k: mlp(in_size, 2 * out_size, config.hidden_sizes, activation=jax.nn.silu, key=k)
        self.nets = eqx.filter_vmap(make)(jax.random.split(key, config.ensemble_size))
        self.max_log_var = jnp.full((out_size,), config.max_log_var, jnp.float32)
        self.min_log_var = jnp.full((out_size,), config.min_log_var, jnp.float32)

    @property
    def size(self) -> int:
        """Members `E`."""
        return jax.tree.leaves(self.nets)[0].shape[0]

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """Per-member inputs `x` `(E, batch, in_size)` -> normalised `(mean, log_var)`, each `(E, batch, out_size)`."""

        @eqx.filter_vmap(in_axes=(eqx.if_array(0), 0))
        def member(net, xs):
            return jax.vmap(net)(xs)

        mean, raw = jnp.split(member(self.nets, x), 2, axis=-1)
        log_var = self.max_log_var - jax.nn.softplus(self.max_log_var - raw)
        return mean, self.min_log_var + jax.nn.softplus(log_var - self.min_log_var)


class Scaling(NamedTuple):
    """Input and output normalisation: `x_n = (x - in_mean) / in_std`, `y = out_mean + out_std * y_n`."""

    in_mean: Array
    in_std: Array
    out_mean: Array
    out_std: Array


def inputs_targets(batch: Transition) -> tuple[Array, Array]:
    """`x = [s, a]` `(..., obs_dim + action_dim)` and `y = [s' - s, r]` `(..., obs_dim + 1)`."""
    x = jnp.concatenate([batch.obs, batch.action], axis=-1)
    y = jnp.concatenate([batch.next_obs - batch.obs, batch.reward[..., None]], axis=-1)
    return x, y


def _masked_moments(values: Array, weight: Array) -> tuple[Array, Array]:
    total = jnp.maximum(jnp.sum(weight), 1.0)
    mean = jnp.sum(values * weight[:, None], axis=0) / total
    var = jnp.sum(jnp.square(values - mean) * weight[:, None], axis=0) / total
    std = jnp.sqrt(var)
    return mean, jnp.where(std < 1e-6, 1.0, std)  # a constant feature is left unscaled


def buffer_scaling(buffer: ReplayBuffer) -> Scaling:
    """Means and standard deviations of inputs and targets over the buffer's valid rows (a constant
    feature gets standard deviation 1). Pure; the buffer may be a scan carry."""
    x, y = inputs_targets(buffer.data)
    valid = (jnp.arange(buffer.capacity) < buffer.size).astype(jnp.float32)
    return Scaling(*_masked_moments(x, valid), *_masked_moments(y, valid))


def predict_members(ensemble: Ensemble, scaling: Scaling, obs: Array, action: Array) -> tuple[Array, Array]:
    """Member `e`'s Gaussian over `(s' - s, r)` at its own inputs `obs[e]`, `action[e]`
    (`(E, batch, obs_dim)`, `(E, batch, action_dim)`), in original units: `(mean, var)`, each
    `(E, batch, obs_dim + 1)`."""
    x = (jnp.concatenate([obs, action], axis=-1) - scaling.in_mean) / scaling.in_std
    mean, log_var = ensemble(x)
    return scaling.out_mean + scaling.out_std * mean, jnp.exp(log_var) * jnp.square(scaling.out_std)


def predict(ensemble: Ensemble, scaling: Scaling, obs: Array, action: Array) -> tuple[Array, Array]:
    """Every member's Gaussian over `(s' - s, r)` at the same inputs `obs (batch, obs_dim)`, `action
    (batch, action_dim)`: `(mean, var)`, each `(E, batch, obs_dim + 1)`, original units."""
    members = lambda v: jnp.broadcast_to(v, (ensemble.size, *v.shape))
    return predict_members(ensemble, scaling, members(obs), members(action))


def open_loop(
    ensemble: Ensemble, scaling: Scaling, obs: Array, actions: Array, key: PRNGKeyArray, particles: int
) -> tuple[Array, Array]:
    """The model's open-loop prediction of a trajectory: from `obs (obs_dim,)`, apply `actions (T,
    action_dim)`; every member propagates `particles` of its own reparameterized draws (TS-inf, PETS).
    Returns states `(T + 1, E * particles, obs_dim)` and rewards `(T, E * particles)`."""
    e = ensemble.size
    start = jnp.broadcast_to(obs, (e, particles, obs.shape[-1]))

    def step(s, inputs):
        a, k = inputs
        mean, var = predict_members(ensemble, scaling, s, jnp.broadcast_to(a, (e, particles, a.shape[-1])))
        out = mean + jnp.sqrt(var) * jax.random.normal(k, mean.shape, mean.dtype)
        nxt = s + out[..., :-1]
        return nxt, (nxt.reshape(e * particles, -1), out[..., -1].reshape(-1))

    _, (states, rewards) = jax.lax.scan(step, start, (actions, jax.random.split(key, actions.shape[0])))
    return jnp.concatenate([start.reshape(1, e * particles, -1), states]), rewards


def sample_step(
    ensemble: Ensemble, scaling: Scaling, member: Array, obs: Array, action: Array, key: PRNGKeyArray
) -> tuple[Array, Array]:
    """One reparameterized model step: for row `i`, `(d, r) = mu_m + sigma_m eps`, `eps ~ N(0, I)`,
    `m = member[i]`; returns `s' = s + d` `(batch, obs_dim)` and `r` `(batch,)`, differentiable in
    `obs` and `action` (pathwise)."""
    mean, var = predict(ensemble, scaling, obs, action)
    pick = lambda v: jnp.take_along_axis(v, member[None, :, None], axis=0)[0]
    out = pick(mean) + jnp.sqrt(pick(var)) * jax.random.normal(key, pick(mean).shape, mean.dtype)
    return obs + out[..., :-1], out[..., -1]


def gaussian_nll(mean: Array, log_var: Array, y: Array) -> Array:
    """`0.5 (log 2 pi + log_var + (y - mean)^2 / var)`, elementwise."""
    return 0.5 * (LOG_2PI + log_var + jnp.square(y - mean) * jnp.exp(-log_var))


def nll_loss(ensemble: Ensemble, x: Array, y: Array, bound_penalty: float) -> tuple[Array, dict[str, Array]]:
    """The training loss on normalised per-member batches `x (E, B, in)`, `y (E, B, out)`: the sum over
    members of each member's mean Gaussian NLL, plus `bound_penalty (sum max_log_var - sum min_log_var)`.
    Metrics: `nll` (per member and dimension, normalised units) and `mse` (normalised)."""
    mean, log_var = ensemble(x)
    nll = jnp.mean(gaussian_nll(mean, log_var, y), axis=(1, 2))
    bounds = jnp.sum(ensemble.max_log_var) - jnp.sum(ensemble.min_log_var)
    loss = jnp.sum(nll) + bound_penalty * bounds
    return loss, {"nll": jnp.mean(nll), "mse": jnp.mean(jnp.square(mean - y))}


# --- the held-out split and training on the buffer ------------------------------------------------


def train_rows(key: PRNGKeyArray, size: Array, shape: tuple[int, ...], every: int) -> Array:
    """Rows drawn uniformly from the training rows among the first `size` (those not `= every - 1 mod every`)."""
    count = jnp.maximum(size - size // every, 1)
    j = jax.random.randint(key, shape, 0, count, dtype=jnp.int32)
    return j + j // (every - 1)


def heldout_rows(key: PRNGKeyArray, size: Array, shape: tuple[int, ...], every: int) -> tuple[Array, Array]:
    """Rows drawn uniformly from the held-out rows (`every - 1 mod every`) among the first `size`, and
    whether there is any (before `every` rows, there is none: the weight is 0)."""
    count = size // every
    j = jax.random.randint(key, shape, 0, jnp.maximum(count, 1), dtype=jnp.int32)
    return every * j + every - 1, (count > 0).astype(jnp.float32)


def normalised(scaling: Scaling, batch: Transition) -> tuple[Array, Array]:
    """`(x_n, y_n)`: a batch's inputs and targets in normalised units."""
    x, y = inputs_targets(batch)
    return (x - scaling.in_mean) / scaling.in_std, (y - scaling.out_mean) / scaling.out_std


class ModelState(NamedTuple):
    """What model training changes: the ensemble's arrays with their optimizer (`training.TrainState`),
    the normalisation in use, and each member's running held-out error (ranks the elites)."""

    train: training.TrainState
    scaling: Scaling
    member_error: Array  # (E,)


def model_optimizer(config: DynamicsConfig) -> optax.GradientTransformation:
    """AdamW at the model's learning rate and weight decay."""
    return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)


def init_model(key: PRNGKeyArray, obs_dim: int, action_dim: int, config: DynamicsConfig) -> tuple[ModelState, Ensemble]:
    """A fresh ensemble for `(s, a) -> (s' - s, r)`: its state (arrays) and the full module (for its
    non-array half). The scaling starts as the identity."""
    ensemble = Ensemble(obs_dim + action_dim, obs_dim + 1, config, key=key)
    arrays = eqx.filter(ensemble, eqx.is_array)
    zeros = lambda n: jnp.zeros((n,), jnp.float32)
    ones = lambda n: jnp.ones((n,), jnp.float32)
    n_in, n_out = obs_dim + action_dim, obs_dim + 1
    scaling = Scaling(zeros(n_in), ones(n_in), zeros(n_out), ones(n_out))
    state = training.init_train_state(arrays, model_optimizer(config))
    return ModelState(state, scaling, zeros(config.ensemble_size)), ensemble


def elites(state: ModelState, num_elites: int) -> Array:
    """Indices `(num_elites,)` of the members with the lowest running held-out error."""
    return jnp.argsort(state.member_error)[:num_elites]


def heldout_metrics(ensemble: Ensemble, scaling: Scaling, batch: Transition) -> tuple[Array, Array, Array]:
    """On held-out transitions, in original units: the Gaussian NLL of the ensemble's mixture-free
    per-member predictions averaged over members and dimensions (`nll`), the squared error of the
    ensemble mean averaged over dimensions (`mse`), and each member's squared error in normalised
    units `(E,)` (ranks the elites)."""
    x, y = inputs_targets(batch)
    mean, var = predict(ensemble, scaling, batch.obs, batch.action)
    nll = jnp.mean(gaussian_nll(mean, jnp.log(var), y))
    mse = jnp.mean(jnp.square(jnp.mean(mean, axis=0) - y))
    member = jnp.mean(jnp.square((mean - y) / scaling.out_std), axis=(1, 2))
    return nll, mse, member


def train_model(
    state: ModelState, static: Ensemble, buffer: ReplayBuffer, key: PRNGKeyArray, config: DynamicsConfig
) -> tuple[ModelState, dict[str, Array]]:
    """One model phase on the buffer: refresh the scaling from the valid rows; `model_steps` gradient
    steps of `training.make_step` on `nll_loss`, each member on its own `batch_size` training rows;
    then score a batch of held-out rows and update each member's running error. Metrics:
    `model_loss` (mean over the steps), `model_nll` and `model_mse` (held-out, original units; 0
    until a row is held out)."""
    scaling = buffer_scaling(buffer)
    every, e = config.holdout_every, config.ensemble_size

    def loss_fn(params, batch, key, train_state):
        return nll_loss(eqx.combine(params, static), *batch, config.bound_penalty)

    step = training.make_step(loss_fn, model_optimizer(config))

    def one(train_state, k):
        rows = train_rows(k, buffer.size, (e, config.batch_size), every)
        batch = normalised(scaling, jax.tree.map(lambda d: d[rows], buffer.data))
        train_state, metrics = step(train_state, batch, k)
        return train_state, metrics["loss"]

    k_steps, k_held = jax.random.split(key)
    train_state, losses = jax.lax.scan(one, state.train, jax.random.split(k_steps, config.model_steps))
    rows, weight = heldout_rows(k_held, buffer.size, (config.holdout_batch,), every)
    held = jax.tree.map(lambda d: d[rows], buffer.data)
    nll, mse, member = heldout_metrics(eqx.combine(train_state.params, static), scaling, held)
    first = state.train.step == 0
    decay = jnp.where(first, 0.0, config.elite_decay) * weight + (1 - weight)
    member_error = decay * state.member_error + (1 - decay) * member * weight
    metrics = {"model_loss": jnp.mean(losses) / e, "model_nll": nll * weight, "model_mse": mse * weight}
    return ModelState(train_state, scaling, member_error), metrics


def never_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """Pendulum's termination (none): zeros `(batch,)`."""
    return jnp.zeros(next_obs.shape[:-1], jnp.float32)


def mountain_car_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """MountainCarContinuous: the episode ends when the position reaches the goal, 0.45."""
    return (next_obs[..., 0] >= 0.45).astype(jnp.float32)


def hopper_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """Hopper-v5's unhealthy test: height <= 0.7, |angle| >= 0.2, or a state entry beyond 100."""
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (height > 0.7) & (jnp.abs(angle) < 0.2) & jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
    return 1.0 - healthy.astype(jnp.float32)


def walker_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """Walker2d-v5's unhealthy test: height outside (0.8, 2.0) or |angle| >= 1."""
    height, angle = next_obs[..., 0], next_obs[..., 1]
    return 1.0 - ((height > 0.8) & (height < 2.0) & (jnp.abs(angle) < 1.0)).astype(jnp.float32)


def inverted_pendulum_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """InvertedPendulum-v5: the pole angle beyond 0.2 rad or a non-finite state."""
    fallen = (jnp.abs(next_obs[..., 1]) > 0.2) | ~jnp.all(jnp.isfinite(next_obs), axis=-1)
    return fallen.astype(jnp.float32)


def ant_terminates(obs: Array, action: Array, next_obs: Array) -> Array:
    """Ant-v5's unhealthy test: torso height outside [0.2, 1.0] or a non-finite state."""
    height = next_obs[..., 0]
    healthy = (height >= 0.2) & (height <= 1.0) & jnp.all(jnp.isfinite(next_obs), axis=-1)
    return 1.0 - healthy.astype(jnp.float32)


TERMINATIONS = {
    "Pendulum-v1": never_terminates,
    "MountainCarContinuous-v0": mountain_car_terminates,
    "InvertedPendulum-v5": inverted_pendulum_terminates,
    "Hopper-v5": hopper_terminates,
    "Walker2d-v5": walker_terminates,
    "Ant-v5": ant_terminates,
    "HalfCheetah-v5": never_terminates,
    "Swimmer-v5": never_terminates,
    "Reacher-v5": never_terminates,
}
"""Known termination functions `(obs, action, next_obs) -> terminated (batch,)` by environment id
(a `gymnax:` prefix is ignored), each checked against the real environment's flag in the tests."""


def termination_for(env_name: str):
    """The termination function of `env_name`; a one-line error for an id without one (a model
    rollout that never stopped where the real episode ends would train on impossible states: pass
    your own function to `model_based_agent` for other environments)."""
    name = env_name.split(":", 1)[-1]
    if name not in TERMINATIONS:
        raise ValueError(
            f"no termination function is known for {env_name!r}; model-based agents run on {', '.join(TERMINATIONS)}"
        )
    return TERMINATIONS[name]

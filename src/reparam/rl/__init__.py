"""Reinforcement learning with pathwise policy gradients: Soft Actor-Critic as an `Agent` (pure
functions), the replay buffer, every environment factory, and the two loops that take an agent:
the compiled loop on JAX-native environments (`make_train`) and the Gymnasium host loop
(`make_host_loop`), both in `init` / `advance` shape."""

from .agent import (
    Agent,
    SACParams,
    SACPolicy,
    learns,
    policy_template,
    sac_agent,
    training_metrics,
    uniform_action,
    warming_up,
)
from .compiled import CompiledRun, RunSpec, make_train, shard_seeds
from .envs import ActionBounds, JaxEnv, check_env_name, env_spec, is_jax_env, make_gym_env, make_jax_env
from .evaluate import evaluate_gym, evaluate_jax, evaluate_policies
from .host import HostLoop, HostSaved, HostState, make_host_loop, run_host
from .replay import ReplayBuffer, Transition, add, add_batch, init_buffer, make_transition, sample
from .sac import (
    METRICS,
    Actor,
    SACConfig,
    SACState,
    TwinCritic,
    actor_loss,
    alpha_loss,
    critic_loss,
    critic_target,
    gradient_steps,
    init_sac,
    policy,
    polyak,
    update,
)

__all__ = [
    "Agent",
    "SACParams",
    "SACPolicy",
    "learns",
    "policy_template",
    "sac_agent",
    "training_metrics",
    "uniform_action",
    "warming_up",
    "CompiledRun",
    "RunSpec",
    "make_train",
    "shard_seeds",
    "ActionBounds",
    "JaxEnv",
    "check_env_name",
    "env_spec",
    "is_jax_env",
    "make_gym_env",
    "make_jax_env",
    "evaluate_gym",
    "evaluate_jax",
    "evaluate_policies",
    "HostLoop",
    "HostSaved",
    "HostState",
    "make_host_loop",
    "run_host",
    "ReplayBuffer",
    "Transition",
    "add",
    "add_batch",
    "init_buffer",
    "make_transition",
    "sample",
    "METRICS",
    "Actor",
    "SACConfig",
    "SACState",
    "TwinCritic",
    "actor_loss",
    "alpha_loss",
    "critic_loss",
    "critic_target",
    "gradient_steps",
    "init_sac",
    "policy",
    "polyak",
    "update",
]

"""Soft Actor-Critic: replay buffer, networks, losses, one jitted update, and its two loops: the
Gymnasium host loop (`train_host`) and the compiled loop on JAX-native environments (`make_train`)."""

from .host import HostLoopResult, make_gym_env, train_host
from .replay import ReplayBuffer, Transition, add, add_batch, init_buffer, sample
from .train import CompiledRun, RunSpec, make_train, shard_seeds
from .sac import (
    ActionBounds, Actor, SACConfig, SACState, TwinCritic, actor_loss, alpha_loss, critic_loss,
    critic_target, init_sac, policy, polyak, update,
)

__all__ = [
    "CompiledRun", "HostLoopResult", "RunSpec", "make_gym_env", "make_train", "shard_seeds", "train_host",
    "ActionBounds", "Actor", "ReplayBuffer", "SACConfig", "SACState", "Transition", "TwinCritic",
    "actor_loss", "add", "add_batch", "alpha_loss", "critic_loss", "critic_target", "init_buffer",
    "init_sac", "policy", "polyak", "sample", "update",
]

"""Soft Actor-Critic: replay buffer, networks, losses and the jitted update (training loops to come)."""

from .replay import ReplayBuffer, Transition, add, add_batch, init_buffer, sample
from .sac import (
    ActionBounds, Actor, SACConfig, SACState, TwinCritic, actor_loss, alpha_loss, critic_loss,
    critic_target, init_sac, policy, polyak, update,
)

__all__ = [
    "ActionBounds", "Actor", "ReplayBuffer", "SACConfig", "SACState", "Transition", "TwinCritic",
    "actor_loss", "add", "add_batch", "alpha_loss", "critic_loss", "critic_target", "init_buffer",
    "init_sac", "policy", "polyak", "sample", "update",
]

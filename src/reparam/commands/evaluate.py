"""`reparam evaluate RUN`: score the saved policies of a `reparam sac` run with deterministic actions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console

from ..rl.agent import policy_template, sac_agent
from ..rl.evaluate import evaluate_policies
from ..runs import load_run_config, load_serialised
from .sac import SACCommand


@dataclass(frozen=True)
class EvaluateCommand:
    """Evaluate the saved policy of a `reparam sac` run (deterministic actions), one score per seed."""

    run_dir: tyro.conf.Positional[Path]
    """The run folder written by `reparam sac`."""
    episodes: int = 10
    """Episodes per seed."""
    seed: int = 123
    """Random seed of the evaluation episodes."""


def main(config: EvaluateCommand, console: Console | None = None) -> list[float]:
    """Mean return of `episodes` episodes per seed of the run's saved policies (either loop)."""
    console = console or Console()
    if config.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {config.episodes}")
    run = load_run_config(config.run_dir, "sac", SACCommand)  # one-line errors for other folders
    path = Path(config.run_dir) / "policy.eqx"
    if not path.is_file():
        raise FileNotFoundError(
            f"{config.run_dir} has no policy.eqx yet: the run has not finished "
            f"(continue it with reparam sac --resume {config.run_dir})"
        )
    agent = sac_agent(run.sac)
    policies = load_serialised(path, policy_template(agent, run.env, run.num_seeds))
    returns = evaluate_policies(agent, run.env, policies, config.episodes, config.seed)
    console.print(
        f"{run.env}: mean return over {config.episodes} episodes per seed: " + ", ".join(f"{r:.1f}" for r in returns),
        soft_wrap=True,
    )
    return returns


COMMAND = ("evaluate", EvaluateCommand, main)
"""This module's entry in the `reparam` command table: (name, config dataclass, main)."""

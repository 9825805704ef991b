"""The `reparam` command line: one tyro dataclass config per command."""

from __future__ import annotations

import sys
import tyro
from rich.console import Console

from .estimators import lab
from .models import run as vae_run
from .rl import run as sac_run

COMMANDS = {"sac": sac_run.SACRunConfig, "evaluate": sac_run.EvaluateConfig, "estimators": lab.EstimatorsConfig,
            "vae": vae_run.VAERunConfig}
RUNNERS = {sac_run.SACRunConfig: sac_run.run, sac_run.EvaluateConfig: sac_run.evaluate_run, lab.EstimatorsConfig: lab.run,
           vae_run.VAERunConfig: vae_run.run}


def main(argv: list[str] | None = None) -> int:
    config = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="reparam")
    console = Console()
    try:
        RUNNERS[type(config)](config, console)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:  # one line, no traceback
        console.print(f"[bold red]reparam: error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `reparam` command line: one tyro dataclass config per command."""

from __future__ import annotations

import sys
import tyro
from rich.console import Console

from .estimators import lab

COMMANDS = {"estimators": lab.EstimatorsConfig}
RUNNERS = {lab.EstimatorsConfig: lab.run}


def main(argv: list[str] | None = None) -> int:
    config = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="reparam")
    console = Console()
    try:
        RUNNERS[type(config)](config, console)
    except (ValueError, FileNotFoundError) as error:  # user mistakes: one line, no traceback
        console.print(f"[bold red]reparam: error:[/] {error}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

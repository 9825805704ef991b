"""The `reparam` command line: one table of commands, each a config dataclass and a `main`."""

from __future__ import annotations

import sys
from collections.abc import Callable

import tyro
from rich.console import Console

from .commands import bnn, estimators, evaluate, sac, vae

COMMANDS: dict[str, tuple[type, Callable]] = {
    "sac": (sac.SACCommand, sac.main),
    "evaluate": (evaluate.EvaluateCommand, evaluate.main),
    "estimators": (estimators.EstimatorsCommand, estimators.main),
    "vae": (vae.VAECommand, vae.main),
    "bnn": (bnn.BNNCommand, bnn.main),
}
"""name -> (config dataclass, `main(config, console)`); `reparam <name> --help` lists the options."""

USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
"""What a user's input can cause: printed as one line, exit status 2, no traceback."""


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default `sys.argv[1:]`), run the command, return the exit status."""
    config = tyro.extras.subcommand_cli_from_dict(
        {name: spec[0] for name, spec in COMMANDS.items()}, args=argv, prog="reparam"
    )
    console = Console()
    run = next(spec[1] for spec in COMMANDS.values() if isinstance(config, spec[0]))
    try:
        run(config, console)
    except USER_ERRORS as error:
        console.print(f"[bold red]reparam: error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

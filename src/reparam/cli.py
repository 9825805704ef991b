"""The `reparam` command line: every module of `reparam.commands` that defines `COMMAND` is a command.

A command module declares `COMMAND = (name, config dataclass, main)`; adding a command is adding a
module, with no table to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable

import tyro
from rich.console import Console

from . import commands


def discover_commands() -> dict[str, tuple[type, Callable]]:
    """name -> (config dataclass, `main(config, console)`), from every `reparam.commands` module's `COMMAND`."""
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            name, config, run = module.COMMAND
            found[name] = (config, run)
    return found


COMMANDS: dict[str, tuple[type, Callable]] = discover_commands()
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

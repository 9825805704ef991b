"""One module per CLI command: its config dataclass (the options, with defaults and a docstring
each) and `main(config, console)`, which builds a `runs.Job` (`init` / `advance` / `finish`) and
hands it to `runs.drive`."""

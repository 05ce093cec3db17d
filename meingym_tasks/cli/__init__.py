"""The ``meingym-tasks`` command line: ``main`` is the console script."""

from meingym_tasks.cli.main import cli, main

__all__ = ["cli", "main"]

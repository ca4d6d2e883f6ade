"""Registry commands: ``import`` and ``demo``."""

import typer


def register(app: typer.Typer) -> None:
    """Add the registry's commands to ``app``."""

"""Commands of this capability (registered on the ``jingfang`` app by ``registry.cli``)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this capability's commands to ``app``."""

"""模板目录 Where the Jinja templates live, in a checkout and in an installed wheel.

The design fixes ``templates/`` at the repository root (README "Layout"). A checkout or an
editable install reads it there; a wheel ships the same directory as the package
``jingfang_templates`` (``pyproject.toml``: ``package-dir``), so ``pip install .`` works too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPOSITORY_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def template_dir(name: str) -> Path:
    """The directory ``templates/<name>`` (``lists``, ``report``, ``web``)."""
    local = REPOSITORY_TEMPLATES / name
    if local.is_dir():
        return local
    spec = importlib.util.find_spec("jingfang_templates")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / name).is_dir():
                return Path(location) / name
    raise FileNotFoundError(f"templates/{name} not found (neither in the checkout nor as jingfang_templates)")

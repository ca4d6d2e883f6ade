"""五单排版进程 The processes that lay the 五单's PDFs out (issue 17), in a module of their own so it is
light: ``jingfang lists`` imports it first and starts its render processes before it imports
anything else (SQLAlchemy and the models, the schema check: ≈ 0.6 s of the command), so the render
processes import WeasyPrint and warm up on the second core meanwhile (docs/scheduler.md "Speed").
It imports ``registry.pdf``, ``registry.resources`` and ``schedules.list_pages`` only (and
``registry.config`` when the number of processes is asked); what goes on each list is
``schedules.lists``.
"""

from __future__ import annotations

from pathlib import Path

from registry import pdf
from registry.resources import template_dir
from schedules.list_pages import TEMPLATE, WorkList, render_html

TEMPLATES = template_dir("lists")
STYLESHEET = TEMPLATES / "list.css"
MAX_RENDER_WORKERS = 8  # each worker holds WeasyPrint and fonts (~100 MB); more rarely pays


def render_workers(townships: int) -> int:
    """Processes for rendering: one per CPU this process may run on (WeasyPrint is CPU-bound), at
    most ``MAX_RENDER_WORKERS`` and one per township; ``JINGFANG_RENDER_WORKERS`` overrides the
    CPU count (1 renders in this process)."""
    from registry.config import parallelism  # noqa: PLC0415 - pydantic: not before it is asked

    return max(1, min(parallelism("JINGFANG_RENDER_WORKERS", MAX_RENDER_WORKERS), townships))


def warm_up() -> None:
    """A render process's start: WeasyPrint, fonts and the lists' stylesheet ready
    (``registry.pdf.warm_up``), the Jinja2 template compiled."""
    pdf.warm_up([STYLESHEET])
    pdf.paper_templates().get_template(TEMPLATE)


def render_pool(workers: int, *, preload_here: bool = True):
    """排版进程 ``workers`` processes for the PDFs, started now (``registry.pdf.render_pool``): they warm
    up (``warm_up``) while the caller still reads the database. ``preload_here``: WeasyPrint is
    imported here once before forking (the caller has imported SQLAlchemy and the models already,
    and renders several townships) — else each process imports it itself, in parallel with the
    caller (``jingfang lists``, which starts them before its own imports). The caller shuts the
    pool down (``with render_pool(n) as pool``)."""
    return pdf.render_pool(workers, warm_up, preload_here=preload_here)


def write_pdf(html: str, path: Path) -> Path:
    """One list's PDF from its HTML."""
    pdf.write_pdf(html, path, base_url=str(TEMPLATES), stylesheets=[STYLESHEET])
    return path


def write_list_pdf(head: dict, wl: WorkList, path: Path, generated: str) -> Path:
    """One list's PDF (a render process's task: the week's heading ``head`` and the list, no database)."""
    return write_pdf(render_html(head, wl, generated), path)

"""排版 What the PDF writers share (the 五单 and the monthly report): WeasyPrint with a lean
user-agent stylesheet, one font configuration per process, stylesheets parsed once.

Why (issue 17, profiled with cProfile): WeasyPrint's HTML5 user-agent stylesheet has six rules
on universal pseudo-elements (``::marker``, ``::footnote-call``, ``::footnote-marker``,
``::note-call``, ``::note-marker``, ``::note-callback``). They match every element, so every
table cell got six extra computed styles: 10,000 of the 12,000 style computations of a
township's 随访任务单. Our documents have no footnotes, and list markers only on ``li``, so
``LeanHTML`` uses the same stylesheet with the five footnote/note rules dropped and ``::marker``
narrowed to ``li::marker`` (the look is unchanged). WeasyPrint is pinned
(pyproject): ``_ua_stylesheets`` is the hook it overrides.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

UNUSED_UA_RULES = ("::footnote-", "::note-")


@lru_cache(maxsize=1)
def _lean_ua():
    import weasyprint  # noqa: PLC0415 - heavy, loaded when a PDF is written
    from weasyprint import CSS  # noqa: PLC0415
    from weasyprint.html import UA_COUNTER_STYLE  # noqa: PLC0415

    source = (Path(weasyprint.__file__).parent / "css" / "html5_ua.css").read_text(encoding="utf-8")
    kept = "\n".join("li" + line if line.startswith("::marker") else line
                     for line in source.splitlines() if not line.startswith(UNUSED_UA_RULES))
    return CSS(string=kept, counter_style=UA_COUNTER_STYLE)


@lru_cache(maxsize=1)
def font_config():
    """One font configuration per process (fontconfig set up once, fonts loaded once)."""
    from weasyprint.text.fonts import FontConfiguration  # noqa: PLC0415

    return FontConfiguration()


@lru_cache(maxsize=16)
def stylesheet(path: str):
    """A CSS file parsed once per process (with the shared font configuration)."""
    from weasyprint import CSS  # noqa: PLC0415

    return CSS(filename=path, font_config=font_config())


@lru_cache(maxsize=1)
def _lean_class():
    import weasyprint  # noqa: PLC0415

    class LeanHTML(weasyprint.HTML):
        """weasyprint.HTML with the lean user-agent stylesheet."""

        def _ua_stylesheets(self, forms=False):
            return [_lean_ua()]

    return LeanHTML


def lean_html(html: str, base_url: str):
    """A WeasyPrint document of ``html`` using the lean user-agent stylesheet."""
    return _lean_class()(string=html, base_url=base_url)


def render(html: str, base_url: str, stylesheets: list[str] = ()):
    """Lay out ``html`` (with the CSS files ``stylesheets``): a WeasyPrint ``Document``."""
    return lean_html(html, base_url).render(stylesheets=[stylesheet(str(s)) for s in stylesheets],
                                            font_config=font_config())


def write_pdf(html: str, target, base_url: str, stylesheets: list[str] = ()) -> None:
    """Render ``html`` and write the PDF to ``target`` (a path or a binary file)."""
    render(html, base_url, stylesheets).write_pdf(target)


@lru_cache(maxsize=4)
def paper_templates(folder: str = "lists"):
    """纸质文件模板 The Jinja2 environment of the printed documents' templates (``templates/<folder>``):
    the 五单, the ledger, the payout list, the emergency record — one environment per process."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape  # noqa: PLC0415

    from registry.resources import template_dir  # noqa: PLC0415

    return Environment(loader=FileSystemLoader(str(template_dir(folder))), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined)

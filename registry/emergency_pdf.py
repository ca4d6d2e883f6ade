"""应急处置记录单 PDF The record for the paper file (rules.md §9), Chinese font (registry.pdf).

The caller passes the record as the reader may see it (``registry.web.emergencies.view``:
police without the diagnosis, rules.md §8) and the form's sections; this module only lays it out.
"""

from __future__ import annotations

import io

from registry.pdf import paper_templates, write_pdf
from registry.resources import template_dir

TEMPLATES = template_dir("lists")


def emergency_html(record: dict, sections: list[dict]) -> str:
    """The record as HTML (the lists' stylesheet: A4, Noto Sans CJK SC)."""
    env = paper_templates()
    rows = []
    for section in sections:
        for w in section["fields"]:
            name = w["name"]
            value = record.get(name + "_label") if name in ("situations", "measures", "diagnosis_certainty") else None
            rows.append((section["title"], w["label"], value or record.get(name) or ""))
    return env.get_template("emergency.html").render(record=record, rows=rows)


def emergency_pdf_bytes(record: dict, *, sections: list[dict]) -> bytes:
    """应急处置记录单 The record as PDF bytes."""
    out = io.BytesIO()
    write_pdf(emergency_html(record, sections), out, base_url=str(TEMPLATES), stylesheets=[TEMPLATES / "list.css"])
    return out.getvalue()

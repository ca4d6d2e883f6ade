"""月报 The monthly PDF rate report: context as data, a Jinja2 template, WeasyPrint (issue 3).

Contents (issue 3 "Monthly PDF"): a title page; the region's indicators against targets,
coloured met / unmet; a ranked table of every child region with numerators, denominators
and rates; a 12-month trend chart of 规范管理率 and 治疗率 (a small SVG written in Python, embedded); the
patients that keep the region off target (overdue task, not 规范管理, not treated) by patient
id and village with ID numbers masked; definitions and the 规范管理 variant as footnotes;
"第 N 页 / 共 M 页". ``publish_month`` (called by the scheduler on the 1st) freezes the closed
month and writes the county's and every township's report.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.codes import TaskStatus
from registry import models
from registry.rates import month_state, snapshots
from registry.clock import local_today
from registry.config import get_settings
from registry.ids import mask
from registry.rates.indicators import (
    BY_KEY,
    INDICATORS,
    VARIANT_LABELS,
    VARIANT_NAMES,
    patient_state_query,
    resolve_variant,
    tune_for_reporting,
)
from registry.periods import Period
from registry.regions import RegionTree
from registry.register import in_register_sql
from registry.rates.compute import freeze, indicator_values, region_counts, resolve_target_set
from registry.resources import template_dir
from registry.rates.targets import TargetSet

TEMPLATE_DIR = template_dir("report")
STYLESHEET = TEMPLATE_DIR / "report.css"  # parsed once per process (registry.pdf.stylesheet)
FONT_FAMILY = "Noto Sans CJK SC"
PATIENT_LIST_LIMIT = 100
# The ranked child table shows the indicators that have a default target first.
CHILD_TABLE_KEYS = (
    "standard_management_rate", "treatment_rate", "management_rate", "schizophrenia_treatment_rate",
    "rehabilitation_rate", "psych_support_rate",
)
CHILD_TABLE_MORE_KEYS = (
    "regular_medication_rate", "stable_rate", "face_to_face_rate", "health_check_rate", "incident_rate",
    "reported_prevalence",
)
TREND_KEYS = ("standard_management_rate", "treatment_rate")


@dataclass(frozen=True)
class Cell:
    """一格 One indicator value as printed: numerator, denominator, rate text, target text, met."""

    key: str
    name: str
    numerator: int
    denominator: int | None
    rate: str
    target: str
    met: bool | None


@dataclass(frozen=True)
class ChildRow:
    rank: int
    code: str
    name: str
    registered: int
    cells: dict[str, Cell]


@dataclass(frozen=True)
class ListedPatient:
    """未达标患者 One patient keeping the region off target."""

    patient_id: str
    name: str
    id_number: str
    village: str
    reasons: str


@dataclass(frozen=True)
class ReportContext:
    """月报内容 Everything the template prints (plain data, no ORM objects)."""

    title: str
    org_name: str
    region_code: str
    region_name: str
    month: str
    open_month: bool  # 月中 (indicators.md "Open months"): not coloured against full-month targets
    as_of: str
    window: str
    generated_on: str
    variant: str
    variant_label: str
    variant_name: str  # 按季度 / 按次数, what the page prints (issue 16)
    target_set: str
    target_source: str
    frozen: bool
    headline: list[Cell]
    child_level: str
    children: list[ChildRow]
    child_keys: list[tuple[str, str]]
    child_more_keys: list[tuple[str, str]]
    joint_ranking: list[ChildRow]  # the child regions by joint_visit_complete_rate (rules.md §6.2, issue 14)
    trend_svg: str
    trend_rows: list[tuple[str, str, str]]
    patients: list[ListedPatient]
    patients_limit: int
    not_standard: int
    not_treated: int
    overdue_total: int | None
    overdue_available: bool
    definitions: list[tuple[str, str, str, str]] = field(default_factory=list)


def format_rate(value: float | None, unit: str) -> str:
    """73.21% / 4.00‰ / — (no denominator)."""
    if value is None:
        return "—"
    if unit == "permille":
        return f"{value:.2f}‰"
    return f"{value * 100:.2f}%"


def format_target(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"≥{value:.2f}‰" if unit == "permille" else f"≥{value * 100:g}%"


def cells_for(values: dict) -> dict[str, Cell]:
    out = {}
    for ind in INDICATORS:
        v = values[ind.key]
        out[ind.key] = Cell(ind.key, ind.name, v["numerator"], v["denominator"],
                            str(v["numerator"]) if ind.unit == "count" else format_rate(v["rate"], ind.unit),
                            format_target(v["target"], ind.unit), v["met"])
    return out


JOINT_KEY = "joint_visit_complete_rate"


def joint_ranking(children: list[ChildRow]) -> list[ChildRow]:
    """联合随访到位率排名 The child regions by ``joint_visit_complete_rate`` (highest first; no joint task
    closed — no rate — last; ties by the number closed 到位, then code), ranks renumbered."""
    def key(row: ChildRow) -> tuple:
        c = row.cells[JOINT_KEY]
        rate = c.numerator / c.denominator if c.denominator else None
        return (rate is None, -(rate or 0), -c.numerator, row.code)

    return [ChildRow(i, r.code, r.name, r.registered, r.cells) for i, r in enumerate(sorted(children, key=key), start=1)]


def _rank_key(row: tuple[str, dict[str, Cell], dict]) -> tuple:
    code, _cells, values = row
    sm, tr = values["standard_management_rate"]["rate"], values["treatment_rate"]["rate"]
    return (sm is None, -(sm or 0), tr is None, -(tr or 0), code)


# --------------------------------------------------------------------------- trend chart


TREND_COLOURS = {"standard_management_rate": "#1f5fa8", "treatment_rate": "#c8641e"}


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def trend_chart(months: list[str], series: dict[str, list[float | None]], targets: dict[str, float | None],
                width: float = 720, height: float = 260, hollow_last: bool = False) -> str:
    """趋势图 A small SVG line chart of the rate series (percent, 0–100), targets dashed.

    Written by hand (issue 3: "SVG generated in Python … embedded"): a few dozen ``<line>``,
    ``<polyline>``, ``<circle>`` and ``<text>`` elements. matplotlib's SVG (every glyph and
    marker a path) cost WeasyPrint far more to lay out and paint, and importing matplotlib took
    ~1 s per process. A missing value (no denominator) breaks the line. ``hollow_last``: the last
    month is open (月中): its point is drawn hollow (indicators.md "Open months").
    """
    left, right, top, bottom = 44.0, 12.0, 34.0, 28.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(months), 1)
    step = plot_w / n

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(percent: float) -> float:
        return top + plot_h * (1 - max(0.0, min(100.0, percent)) / 100)

    # the report's CJK font by name: without it the SVG text falls back to two more faces
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
           f'viewBox="0 0 {width:g} {height:g}" font-family="{FONT_FAMILY}" font-size="11" fill="#333">']
    for tick in range(0, 101, 20):  # horizontal grid + y labels
        yy = y(tick)
        out.append(f'<line x1="{left:g}" y1="{yy:.1f}" x2="{width - right:g}" y2="{yy:.1f}" '
                   f'stroke="{"#999" if tick == 0 else "#ddd"}" stroke-width="{1 if tick == 0 else 0.6}"/>')
        out.append(f'<text x="{left - 6:g}" y="{yy + 4:.1f}" text-anchor="end">{tick}%</text>')
    for i, month in enumerate(months):  # x labels: 25.11
        out.append(f'<text x="{x(i):.1f}" y="{height - 9:g}" text-anchor="middle">{_xml(month[2:].replace("-", "."))}</text>')
    legend_x = left
    for key, values in series.items():
        colour = TREND_COLOURS.get(key, "#333333")
        target = targets.get(key)
        if target is not None:
            ty = y(target * 100)
            out.append(f'<line x1="{left:g}" y1="{ty:.1f}" x2="{width - right:g}" y2="{ty:.1f}" stroke="{colour}" '
                       f'stroke-width="0.9" stroke-dasharray="5 3" opacity="0.75"/>')
        run: list[str] = []
        for i, v in enumerate(values + [None]):  # a None ends the current segment
            if v is None:
                if len(run) > 1:
                    out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v * 100):.1f}")
            if hollow_last and i == len(values) - 1:
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(v * 100):.1f}" r="3" fill="#fff" stroke="{colour}" '
                           f'stroke-width="1.4"/>')
            else:
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(v * 100):.1f}" r="2.6" fill="{colour}"/>')
        out.append(f'<line x1="{legend_x:g}" y1="14" x2="{legend_x + 22:g}" y2="14" stroke="{colour}" stroke-width="1.8"/>')
        out.append(f'<text x="{legend_x + 28:g}" y="18">{_xml(BY_KEY[key].name)}</text>')
        legend_x += 28 + 12 * len(BY_KEY[key].name) + 24
    out.append("</svg>")
    return "\n".join(out)


def trend_series(engine: Engine, tree: RegionTree, period: Period, variant: str, region_code: str,
                 current: dict[str, int], today: date | None = None) -> tuple[list[str], dict[str, list[float | None]]]:
    """12 months up to M for the region: frozen counts where published, else computed (one query each)."""
    months = period.trailing(12)
    with engine.connect() as conn:
        frozen = snapshots.frozen_months(conn, region_code, variant, [m.label for m in months])
    series: dict[str, list[float | None]] = {k: [] for k in TREND_KEYS}
    for m in months:
        if m.label == period.label:  # the month itself (an open month is cut at today)
            counts = current
        elif m.label in frozen:
            counts = frozen[m.label]
        else:
            counts = region_counts(engine, period=m, variant=variant, region_code=region_code, tree=tree,
                                   use_snapshot=False, today=today)[region_code]
        for key in TREND_KEYS:
            ind = BY_KEY[key]
            den = counts.get(ind.denominator_column) or 0
            series[key].append(round(counts.get(ind.numerator_column, 0) / den, 4) if den else None)
    return [m.label for m in months], series


# --------------------------------------------------------------------------- patient list


def off_target_patients(engine: Engine, tree: RegionTree, period: Period, variant: str, region_code: str,
                        as_of: date, limit: int = PATIENT_LIST_LIMIT) -> tuple[list[ListedPatient], int | None, bool]:
    """未达标患者名单 在册 patients with an overdue open task, not 规范管理, or not treated.

    The same per-patient state as the indicators, filtered, ordered by patient id and cut at
    ``limit``: PostgreSQL streams it (merge join + group aggregate in patient-id order) and stops
    after ``limit`` rows instead of scanning the whole register. Overdue = the scheduler's open
    visit_task due before ``as_of``, when that table exists. Returns (rows, number of patients with
    an overdue task or None without the table, whether the table exists).
    """
    p = models.Patient.__table__
    whole = len(tree.roots()) == 1 and region_code == tree.roots()[0]
    villages = None if whole else tree.descendants_and_self(region_code)
    # plain=True: the register-ordered join streams and stops after ``limit`` rows (0.01–0.03 s on
    # the benchmark county); aggregating all follow-ups first would not (0.2 s).
    source, columns, pp = patient_state_query(period, variant, villages, plain=True)
    source = source.join(p, p.c.patient_id == pp.c.patient_id)
    overdue_total = None
    with engine.connect() as conn:
        tune_for_reporting(conn)
        has_tasks = sa.inspect(conn).has_table("visit_task")
        overdue = None
        if has_tasks:
            t = sa.table("visit_task", sa.column("patient_id"), sa.column("status"), sa.column("due_on", sa.Date))
            overdue = (sa.select(t.c.patient_id, sa.func.min(t.c.due_on).label("due_on"))
                       .where(t.c.status == TaskStatus.OPEN.value, t.c.due_on < as_of).group_by(t.c.patient_id).subquery("od"))
            source = source.outerjoin(overdue, overdue.c.patient_id == pp.c.patient_id)
            counted = (sa.select(sa.func.count()).select_from(overdue.join(p, p.c.patient_id == overdue.c.patient_id))
                       .where(in_register_sql(p, period.as_of)))
            if villages is not None:
                counted = counted.where(p.c.village_code.in_(villages))
            overdue_total = int(conn.execute(counted).scalar_one())
        standard, treated = columns["standard"], columns["treated"]
        failing = [standard == 0, treated == 0]
        cols = [pp.c.patient_id, p.c.name, p.c.id_number, pp.c.village_code, standard.label("standard"),
                treated.label("treated")]
        if overdue is not None:
            failing.append(overdue.c.due_on.is_not(None))
            cols.append(overdue.c.due_on.label("overdue_on"))
        stmt = (sa.select(*cols).select_from(source).where(sa.or_(*failing))
                .order_by(pp.c.patient_id).limit(limit))
        rows = conn.execute(stmt).mappings().all()
    out = []
    for r in rows:
        reasons = []
        if r.get("overdue_on") is not None:
            due = r["overdue_on"]
            reasons.append(f"任务逾期（应于 {due.isoformat() if hasattr(due, 'isoformat') else due}）")
        if not r["standard"]:
            reasons.append("未规范管理")
        if not r["treated"]:
            reasons.append("未治疗")
        name = r["name"] or ""
        out.append(ListedPatient(r["patient_id"], (name[:1] + "*" * (len(name) - 1)) if name else "",
                                 mask(r["id_number"]), tree.names.get(r["village_code"], r["village_code"]),
                                 "；".join(reasons)))
    return out, overdue_total, has_tasks


# --------------------------------------------------------------------------- context + render


def build_context(engine: Engine, *, month: str, region_code: str | None = None, variant: str | None = None,
                  targets: str | None = None, today: date | None = None,
                  counts: dict[str, dict[str, int]] | None = None) -> ReportContext:
    """月报内容 Everything the PDF prints. ``counts``: the month's counts of the region and every region
    below it when the caller has already computed them (``region_counts`` for the same month,
    variant and region), so the report is rendered from those numbers instead of computing the
    month a second time; default: frozen counts, else computed here."""
    today = today or local_today()
    period = Period.requested(month, today)  # an open month: 月中, D = today (indicators.md "Open months")
    variant = resolve_variant(variant)
    target_set: TargetSet = resolve_target_set(targets)
    with engine.connect() as conn:
        tree = RegionTree.load(conn)
        frozen = snapshots.is_frozen(conn, period.label, variant)
    region_code = tree.check(region_code) if region_code else tree.default_region()
    if counts is None or region_code not in counts:
        counts = region_counts(engine, period=period, variant=variant, region_code=region_code, tree=tree, today=today)

    def values(code: str) -> dict:
        return indicator_values(counts[code], tree.population(code), target_set, code, period.year)

    headline = list(cells_for(values(region_code)).values())
    kids = [(c, cells_for(v), v) for c in tree.children.get(region_code, []) for v in [values(c)]]
    kids.sort(key=_rank_key)
    children = [ChildRow(i, code, tree.names[code], cells["registered"].numerator, cells)
                for i, (code, cells, _v) in enumerate(kids, start=1)]
    levels = {tree.levels.get(c) for c in tree.children.get(region_code, [])}
    child_level = "乡镇(街道)" if levels == {"township"} else "村(社区)" if levels == {"village"} else "下级地区"

    months, series = trend_series(engine, tree, period, variant, region_code, counts[region_code], today)
    trend_targets = {k: target_set.target_for(k, region_code, period.year) for k in TREND_KEYS}
    svg = trend_chart(months, series, trend_targets, hollow_last=period.is_open)
    trend_rows = [(m, *(format_rate(series[k][i], "percent") for k in TREND_KEYS)) for i, m in enumerate(months)]

    as_of_list = min(period.as_of, today)
    patients, overdue_total, has_tasks = off_target_patients(engine, tree, period, variant, region_code, as_of_list,
                                                             PATIENT_LIST_LIMIT)
    mine = counts[region_code]
    region_name = tree.path_name(region_code)
    return ReportContext(
        title=f"{region_name}严重精神障碍患者管理月报" + ("（月中）" if period.is_open else ""),
        org_name=get_settings().org_name,
        region_code=region_code,
        region_name=region_name,
        month=period.title(),
        open_month=period.is_open,
        as_of=period.as_of.isoformat(),
        window=f"{period.start.isoformat()} 至 {period.as_of.isoformat()}",
        generated_on=today.isoformat(),
        variant=variant,
        variant_label=VARIANT_LABELS[variant],
        variant_name=VARIANT_NAMES[variant],
        target_set=target_set.title,
        target_source=target_set.source,
        frozen=frozen,
        headline=headline,
        child_level=child_level,
        children=children,
        child_keys=[(k, BY_KEY[k].name) for k in CHILD_TABLE_KEYS],
        child_more_keys=[(k, BY_KEY[k].name) for k in CHILD_TABLE_MORE_KEYS],
        joint_ranking=joint_ranking(children),
        trend_svg="data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii"),
        trend_rows=trend_rows,
        patients=patients,
        patients_limit=PATIENT_LIST_LIMIT,
        not_standard=mine["registered"] - mine["standard"],
        not_treated=mine["registered"] - mine["treated"],
        overdue_total=overdue_total,
        overdue_available=has_tasks,
        definitions=[(i.name, i.numerator, i.denominator, i.unit) for i in INDICATORS],
    )


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # noqa: PLC0415

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(context: ReportContext) -> str:
    return _environment().get_template("monthly.html").render(r=context, font=FONT_FAMILY)


def write_monthly_report(engine: Engine, *, month: str, region_code: str | None, out_path: Path | str,
                         variant: str | None = None, targets: str | None = None, today: date | None = None,
                         counts: dict[str, dict[str, int]] | None = None, renderer=None) -> Path:
    """写月报 Render the month's PDF for a region (default: the top region) to ``out_path``.

    ``counts``: already computed counts of the month (see ``build_context``). ``renderer``
    (``registry.pdf.background_renderer``, started before the database is read): the PDF is laid
    out and written in that process, which imported WeasyPrint and warmed up meanwhile; default: in
    this one. Both write the same PDF (tests/test_report.py)."""
    from registry import pdf  # noqa: PLC0415 - WeasyPrint with the lean user-agent sheet, fonts shared

    context = build_context(engine, month=month, region_code=region_code, variant=variant, targets=targets, today=today,
                            counts=counts)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    args = (render_html(context), str(out_path), str(TEMPLATE_DIR), [str(STYLESHEET)])
    if renderer is None:
        pdf.write_pdf(*args)
    else:
        renderer.submit(pdf.write_pdf, *args).result()
    return out_path


def publish_month(engine: Engine, *, month: str, out_dir: Path | str | None = None, today: date | None = None,
                  variant: str | None = None) -> list[Path]:
    """发布月报 Freeze a closed month and write the top region's and every township's report.

    Afterwards the patient-month state of the months before it is dropped (``month_state.prune``:
    retention; the month itself is kept as the base of the next).

    Called by the scheduler on the 1st for the month just ended. Files go to ``out_dir``
    (default ``$JINGFANG_REPORT_DIR`` or ``./out/reports``) as ``<month>/<month>-<region>.pdf``.
    Publishing again reuses the frozen counts, so the files come out the same.
    """
    period = Period.parse(month)
    variant = resolve_variant(variant)
    today = today or local_today()
    if period.as_of < today:
        freeze(engine, month=period.label, variant=variant, today=today)
    base = Path(out_dir or get_settings().report_dir or "out/reports") / period.label
    with engine.connect() as conn:
        tree = RegionTree.load(conn)
    written = []
    for root in tree.roots():
        regions = [root] + [c for c in tree.descendants_and_self(root) if tree.levels.get(c) == "township"]
        for code in regions:
            written.append(write_monthly_report(engine, month=period.label, region_code=code,
                                                out_path=base / f"{period.label}-{code}.pdf", variant=variant,
                                                today=today))
    if period.as_of < today:  # retention, after the reports (their trends may have built older months)
        month_state.prune(engine, before_year_month=month_state.year_month(period))
    return written


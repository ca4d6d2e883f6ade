"""月报 PDF The monthly rate report: numbers present (pdftotext), a CJK font embedded (pdffonts),
page numbers, masked ID numbers, the off-target patient list with overdue tasks, publish_month;
the trend page rendered to PNG (tests/artifacts/) and checked: size, ink, the chart's colours. Both databases."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from registry import models
from tests.waiting import wait_until_ended
from registry.rates import month_state
from registry.rates.indicators import Period
from jingfang.cli import app
from registry.ids import make, mask
from registry.importing import import_path
from registry.rates.reporting import build_context, format_rate, publish_month, trend_chart, write_monthly_report
from registry.rates.snapshots import is_frozen

ARTIFACTS = Path(__file__).parent / "artifacts"
ID_NUMBER = make("440781", date(1980, 1, 1), 17)


@pytest.fixture
def county(database, small_county):
    engine = database.engine
    import_path(engine, small_county, today=date(2026, 6, 10))
    with engine.begin() as conn:
        conn.execute(sa.update(models.Patient.__table__).where(models.Patient.__table__.c.patient_id == "B")
                     .values(id_number=ID_NUMBER))
        # an open task for A, overdue at the end of June (the scheduler's table, rules.md §5)
        conn.execute(sa.text(
            "INSERT INTO visit_task (patient_id, kind, basis, basis_on, due_on, nominal_due_on, status, roles, joint,"
            " rule, calendar_estimated, created_at) VALUES ('A', 'follow_up', 'follow_up:3', :b, :d, :d, 'open',"
            " 'doctor', :f, 'national-2018@1:§5 基本稳定(未稳定)+1月', :f, :now)"),
            {"b": date(2026, 4, 29), "d": date(2026, 5, 29), "f": False, "now": models.utcnow()})
    return database


def text_of(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def fonts_of(pdf: Path) -> str:
    return subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True, text=True).stdout


def test_monthly_pdf_has_the_numbers_fonts_and_page_numbers(county, tmp_path):
    out = write_monthly_report(county.engine, month="2026-06", region_code=None, out_path=tmp_path / "county.pdf",
                               today=date(2026, 7, 1))
    text = text_of(out)
    flat = re.sub(r"\s+", "", text)
    assert "县严重精神障碍患者管理月报" in flat and "2026年6月" in flat
    for number in ("25.00%", "33.33%", "50.00%", "4.00‰", "≥90%", "≥80%"):
        assert number in text, number
    # 报告患病率: 4 在册 over 1000 residents, printed as the count (indicators.md [2026-12]), never "4000"
    assert "4000" not in text and re.search(r"报告患病率\S*\s+4\s+1000\s+4\.00‰", text), text
    assert "未达标" in text and "规范管理口径" in flat and "按季度" in text and "quarterly" not in text  # issue 16: labels
    for name in ("在册患者规范管理率", "在册患者治疗率（服药率）", "居家患者社区康复参与率", "肇事肇祸率"):
        assert name in flat
    # the definitions footnote prints numerator and denominator in plain Chinese
    assert "分母=在册患者数" in flat and "当年内至少有1次有效随访的在册患者数" in flat
    pages = re.findall(r"第(\d+)页/共(\d+)页", flat)
    assert pages and pages[0] == ("1", pages[0][1]) and len(pages) == int(pages[0][1])
    # patients keeping the county off target: B, C1, D (not 规范管理) and A (overdue task); ID masked
    assert "任务逾期（应于2026-05-29）" in flat
    assert "未规范管理3人、未治疗3人、随访任务逾期1人" in flat and "共4人" in flat
    assert mask(ID_NUMBER) in text and ID_NUMBER not in text
    fonts = fonts_of(out)
    assert re.search(r"Noto-Sans-CJK-SC\S*\s+CID Type 0C.*yes\s+yes", fonts), fonts
    assert "Serif" not in fonts  # the page-number margin box uses the sans font too


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout


def pixels_near(counts: list[tuple[int, tuple[int, int, int]]], colour: str, tolerance: int = 40) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` (#rrggbb) in every channel."""
    target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for n, rgb in counts if all(abs(a - b) <= tolerance for a, b in zip(rgb, target)))


def test_the_trend_page_renders_its_headings_and_chart(county, tmp_path):
    """The page with the 12-month trend, rendered (pdftoppm, 100 dpi; kept in tests/artifacts/ for a
    human look): an A4 page with ink on it, the chart's two series in their colours, and the headings
    of sections 三 and 四 plus the chart's legend as text."""
    from PIL import Image

    from registry.rates.reporting import TREND_COLOURS

    out = write_monthly_report(county.engine, month="2026-06", region_code="C", out_path=tmp_path / "c.pdf",
                               today=date(2026, 7, 1))
    texts = {page: re.sub(r"\s+", "", page_text(out, page)) for page in range(1, page_count(out) + 1)}
    page = next(p for p, text in texts.items() if "三、近12个月趋势" in text)
    assert "三、近12个月趋势（规范管理率、治疗率）" in texts[page] and "四、影响达标的患者名单" in texts[page]
    assert "在册患者规范管理率" in texts[page] and "在册患者治疗率（服药率）" in texts[page]  # the chart's legend
    ARTIFACTS.mkdir(exist_ok=True)
    prefix = ARTIFACTS / f"report-{county.backend}-trend"
    subprocess.run(["pdftoppm", "-png", "-r", "100", "-f", str(page), "-l", str(page), "-singlefile", str(out),
                    str(prefix)], check=True)
    with Image.open(prefix.with_suffix(".png")) as image:
        rgb = image.convert("RGB")
    assert rgb.size == (827, 1170)  # A4 portrait (210 × 297 mm) at 100 dpi, rounded up
    counts = rgb.getcolors(maxcolors=rgb.width * rgb.height)
    ink = sum(n for n, colour in counts if min(colour) < 200) / (rgb.width * rgb.height)
    assert 0.01 < ink < 0.3, ink  # text, rules and a chart: neither a blank nor a blacked-out page
    # the two series (and their dashed targets) in their own colours; nothing else on the page is orange
    assert pixels_near(counts, TREND_COLOURS["standard_management_rate"]) > 300
    assert pixels_near(counts, TREND_COLOURS["treatment_rate"]) > 300


def test_context_ranks_children_and_lists_the_trend(county):
    ctx = build_context(county.engine, month="2026-06", today=date(2026, 7, 1))
    assert [c.code for c in ctx.children] == ["T"] and ctx.children[0].rank == 1
    assert ctx.children[0].cells["standard_management_rate"].met is False
    assert [m for m, *_ in ctx.trend_rows] == [f"2025-{m:02d}" for m in range(7, 13)] + [f"2026-{m:02d}" for m in range(1, 7)]
    assert ctx.trend_rows[-1][1:] == ("25.00%", "25.00%")
    assert {p.patient_id for p in ctx.patients} == {"A", "B", "C1", "D"}
    assert format_rate(None, "percent") == "—"


def test_trend_chart_is_a_small_svg_with_a_point_per_month_and_gaps():
    """The chart is SVG written in Python: one marker per month with a value, the line broken
    where a month has no denominator, the target dashed at its height, month labels, legend."""
    import xml.etree.ElementTree as ET

    months = [f"2026-{m:02d}" for m in range(1, 7)]
    series = {"standard_management_rate": [0.5, None, 0.25, 0.75, 0.8, 1.0],
              "treatment_rate": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    svg = trend_chart(months, series, {"standard_management_rate": 0.9, "treatment_rate": None})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 5 + 6
    lines = [pl.get("points").split() for pl in root.findall(f"{ns}polyline")]
    assert sorted(len(points) for points in lines) == [4, 6]  # 0.5 alone (no line), then 4 points; 6 points
    dashed = [ln for ln in root.findall(f"{ns}line") if ln.get("stroke-dasharray")]
    top, bottom = 34.0, 260 - 28.0
    assert len(dashed) == 1 and float(dashed[0].get("y1")) == pytest.approx(bottom - 0.9 * (bottom - top), abs=0.1)
    texts = [t.text for t in root.findall(f"{ns}text")]
    assert {"26.01", "26.06", "100%", "0%", "在册患者规范管理率", "在册患者治疗率（服药率）"} <= set(texts)
    assert len(svg) < 8000  # a few dozen elements, not matplotlib's paths


def test_report_command_and_publish_month(county, tmp_path):
    out = tmp_path / "r.pdf"
    result = CliRunner().invoke(app, ["report", "--month", "2026-06", "--region", "T", "--out", str(out),
                                      "--db", county.url])
    assert result.exit_code == 0, result.output
    assert "镇严重精神障碍患者管理月报" in re.sub(r"\s+", "", text_of(out))
    bad = CliRunner().invoke(app, ["report", "--month", "2026-00", "--out", str(out), "--db", county.url])
    assert bad.exit_code == 1 and "BAD_MONTH" in bad.stderr
    for month in ("2026-04", "2026-05"):  # states of earlier months, dropped once June is published
        month_state.ensure(county.engine, Period.parse(month), date(2026, 7, 1))
    paths = publish_month(county.engine, month="2026-06", out_dir=tmp_path / "pub", today=date(2026, 7, 1))
    assert [p.name for p in paths] == ["2026-06-C.pdf", "2026-06-T.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    with county.engine.connect() as conn:
        assert is_frozen(conn, "2026-06", "quarterly")
        kept = conn.execute(sa.select(month_state.PatientMonthStateBuild.__table__.c.year_month)).scalars().all()
    assert kept == [202606]  # retention: the published month stays as the base of July
    assert "本月数据已冻结发布" in re.sub(r"\s+", "", text_of(paths[0]))


def test_demo_step_writes_the_last_closed_month_and_prints_rates(county, tmp_path):
    """indicators.md "Open months": the demo reports the last closed month, never the unfinished one."""
    from jingfang.demo_rates import demo_step

    lines: list[str] = []
    path = demo_step(county.engine, tmp_path, today=date(2026, 7, 15), echo=lines.append)
    assert path.name == "月报-2026-06-C.pdf" and path.stat().st_size > 0
    assert any("在册患者规范管理率" in line and "25.00%" in line for line in lines)
    assert any("2026-06（截至 2026-06-30" in line for line in lines) and not any("月中" in line for line in lines)
    assert demo_step(county.engine, tmp_path, today=date(2026, 6, 15), echo=lines.append).name == "月报-2026-05-C.pdf"


def test_report_for_an_empty_township_prints_dashes_not_zero_percent(county, tmp_path):
    with county.engine.begin() as conn:
        conn.execute(sa.insert(models.Region.__table__),
                     [dict(code="T2", name="新镇", level="township", parent_code="C", population=None)])
    out = write_monthly_report(county.engine, month="2026-06", region_code="T2", out_path=tmp_path / "t2.pdf",
                               today=date(2026, 7, 1))
    flat = re.sub(r"\s+", "", text_of(out))
    assert "新镇严重精神障碍患者管理月报" in flat and "本地区无下级地区" in flat
    assert "0.00%" not in flat and "未规范管理0人、未治疗0人" in flat
    ctx = build_context(county.engine, month="2026-06", region_code="C", today=date(2026, 7, 1))
    assert [c.code for c in ctx.children] == ["T", "T2"]  # ranked: null rates last
    assert ctx.children[1].cells["standard_management_rate"].rate == "—"


def test_the_render_process_writes_the_pdf_written_here(county, tmp_path):
    """排版进程 (issue 17): ``jingfang report`` lays the PDF out in a process started before the month is
    read (``registry.pdf.background_renderer``); it writes the same PDF, byte for byte, as rendering
    in the calling process."""
    from registry import pdf

    here = write_monthly_report(county.engine, month="2026-06", region_code="C", out_path=tmp_path / "here.pdf",
                                today=date(2026, 7, 1))
    with pdf.background_renderer() as renderer:
        there = write_monthly_report(county.engine, month="2026-06", region_code="C",
                                     out_path=tmp_path / "there.pdf", today=date(2026, 7, 1), renderer=renderer)
    assert there.read_bytes() == here.read_bytes()
    assert "县严重精神障碍患者管理月报" in re.sub(r"\s+", "", text_of(there))
    assert re.search(r"Noto-Sans-CJK-SC\S*\s+CID Type 0C.*yes\s+yes", fonts_of(there))


def test_a_refused_report_ends_its_render_process(county, tmp_path):
    """A report refused after its render process started (an unknown region) exits 1 with the error
    and writes nothing; leaving the renderer by an exception ends the process (not waiting for it)."""
    from registry import pdf

    out = tmp_path / "r.pdf"
    result = CliRunner().invoke(app, ["report", "--month", "2026-06", "--region", "NOPE", "--out", str(out),
                                      "--db", county.url])
    assert result.exit_code == 1 and "REGION_NOT_FOUND" in result.stderr and not out.exists()
    with pytest.raises(RuntimeError), pdf.background_renderer() as renderer:
        pids = [process.pid for process in renderer._processes.values()]
        raise RuntimeError("a query failed")
    assert pids
    for pid in pids:
        assert wait_until_ended(pid, timeout=10.0), f"render process {pid} still runs"

"""排版 How the 五单 are rendered (issue 17): the font subsetting pass of ``registry.pdf`` gives the
bytes WeasyPrint's own gives, and the render processes (``schedules.lists.render_pool``, warmed up
before the data is read) write the same PDFs as rendering here."""

from __future__ import annotations

import io
from datetime import date

from registry import pdf
from schedules.lists import TEMPLATES, build_lists, render_files, render_pool
from tests.test_schedule_lists import pdftext, prepare
from tests.waiting import wait_until_ended

PAGE = ("<h1>随访任务单</h1><table><thead><tr><th>姓名</th><th>住址</th></tr></thead><tbody>"
        "<tr><td>王小明</td><td>幸福路8号 Room 12</td></tr><tr><td>李𠀋</td><td>东风村</td></tr></tbody></table>")


def test_one_subsetting_pass_gives_weasyprint_s_bytes():
    document = pdf.render(PAGE, str(TEMPLATES), [TEMPLATES / "list.css"])
    document.write_pdf(io.BytesIO())
    from weasyprint.pdf.fonts import Font

    assert Font._harfbuzz_subset is pdf._subset_font  # installed when the first PDF was written
    fonts = list(document.fonts.values())
    assert {font.weight for font in fonts} == {400, 700}  # the table's cells and its bold header row
    for font in fonts:
        glyphs = dict(font.to_unicode)
        pdf._weasyprint_subset(font, glyphs, False)  # WeasyPrint's two passes, on the whole face
        theirs = font.file_content
        pdf._subset_font(font, glyphs, False)
        assert font.file_content == theirs and 0 < len(theirs) < 2_000_000


def test_the_parser_compiles_each_character_class_once():
    import tinyhtml5.inputstream

    pdf.render(PAGE, str(TEMPLATES), [TEMPLATES / "list.css"])
    cache = tinyhtml5.inputstream.characters_until_regex
    assert isinstance(cache, pdf._RegexCache) and cache
    assert all(isinstance(opposite, bool) and not hasattr(characters, "pattern") for characters, opposite in cache)
    before = dict(cache)
    pdf.render(PAGE, str(TEMPLATES), [TEMPLATES / "list.css"])
    assert cache == before  # the second document compiled nothing


def test_render_processes_write_the_pdfs_rendered_here(database, small_county, tmp_path):
    prepare(database, small_county)
    data = build_lists(database.engine, township_code="T", week=date(2026, 6, 10))
    here = render_files(data, tmp_path / "here", "2026-06-08 09:00")
    with render_pool(2) as pool:
        there = render_files(data, tmp_path / "pool", "2026-06-08 09:00", pool=pool)
    assert [p.name for p in there] == [p.name for p in here] and len(here) == 10
    for mine, theirs in zip(here, there):
        if mine.suffix == ".pdf":
            assert theirs.read_bytes() == mine.read_bytes(), mine.name
            assert "随访任务单" in pdftext(theirs) or mine.name.split("_")[2] != "1"


def test_the_cell_rule_fast_path_paints_what_weasyprint_paints(tmp_path):
    """The rule under a table cell (one solid side, square corners: the report's tables, its headings)
    is painted by ``registry.pdf._draw_border`` without WeasyPrint's clipping; rasterised (pdftoppm,
    150 dpi) it is the same picture within anti-aliasing, and it is used."""
    import subprocess

    import weasyprint.draw
    from PIL import Image, ImageChops

    page = ('<style>td { border-bottom: 0.5pt solid #d5d5d5; padding: 1mm } h2 { border-bottom: 1.5pt solid #1f5fa8 }'
            ' th { border-top: 2pt solid #333; border-left: 1pt solid #333 }</style><h2>一、主要指标</h2><table>'
            '<tr><th>指标</th><th>率</th></tr>' + "<tr><td>在册患者规范管理率</td><td>73.21%</td></tr>" * 8 + "</table>")
    pdf.render(page, str(tmp_path)).write_pdf(tmp_path / "fast.pdf")
    assert weasyprint.draw.draw_border is pdf._draw_border
    weasyprint.draw.draw_border = pdf._weasyprint_draw_border
    try:
        pdf.render(page, str(tmp_path)).write_pdf(tmp_path / "general.pdf")
    finally:
        weasyprint.draw.draw_border = pdf._draw_border
    images = []
    for name in ("fast", "general"):
        subprocess.run(["pdftoppm", "-png", "-r", "150", "-singlefile", str(tmp_path / f"{name}.pdf"),
                        str(tmp_path / name)], check=True)
        with Image.open(tmp_path / f"{name}.png") as image:
            images.append(image.convert("L"))
    fast, general = images
    assert fast.size == general.size
    difference = ImageChops.difference(fast, general)
    assert difference.getextrema()[1] <= 64  # edge pixels of the rules, anti-aliased a little differently
    ink = [sum((255 - v) * n for v, n in enumerate(image.histogram())) for image in images]
    assert abs(ink[0] - ink[1]) <= 0.01 * ink[1]  # the same rules, as much of them


def test_weasyprint_is_imported_with_find_library_put_back():
    """WeasyPrint's libraries load by their Linux sonames without ``ctypes.util.find_library``'s
    subprocesses (``registry.pdf._import_weasyprint``); the function is put back afterwards."""
    import ctypes.util

    find_library = ctypes.util.find_library
    weasyprint = pdf._import_weasyprint()
    assert ctypes.util.find_library is find_library
    from weasyprint.text.ffi import harfbuzz, pango

    assert weasyprint.HTML and pango.pango_version() > 0 and harfbuzz.hb_version_atleast(1, 0, 0)


def test_the_command_s_render_processes_write_the_pdfs_rendered_here(database, small_county, tmp_path):
    """``jingfang lists`` starts its render processes before its imports (``schedules.list_renderer``,
    ``preload_here=False``: each imports WeasyPrint itself). They get each list as data and write the
    same PDFs as rendering here; ``stop`` ends a pool at once, even while its processes warm up."""
    from schedules import list_renderer

    prepare(database, small_county)
    data = build_lists(database.engine, township_code="T", week=date(2026, 6, 10))
    here = render_files(data, tmp_path / "here", "2026-06-08 09:00")
    pool = list_renderer.render_pool(2, preload_here=False)
    try:
        there = render_files(data, tmp_path / "pool", "2026-06-08 09:00", pool=pool)
    finally:
        pdf.close(pool)
    stopped = list_renderer.render_pool(2, preload_here=False)
    pids = [process.pid for process in stopped._processes.values()]
    pdf.stop(stopped)  # at once, while the processes still import WeasyPrint (the command's early errors)
    assert pids and all(wait_until_ended(pid) for pid in pids)
    assert [p.name for p in there] == [p.name for p in here] and len(here) == 10
    for mine, theirs in zip(here, there):
        if mine.suffix == ".pdf":
            assert theirs.read_bytes() == mine.read_bytes(), mine.name

"""排版 What the PDF writers share (the 五单 and the monthly report): WeasyPrint with a lean
user-agent stylesheet, one font configuration per process, stylesheets parsed once, fonts
subset in one pass.

Why (issue 17, profiled with cProfile): WeasyPrint's HTML5 user-agent stylesheet has six rules
on universal pseudo-elements (``::marker``, ``::footnote-call``, ``::footnote-marker``,
``::note-call``, ``::note-marker``, ``::note-callback``). They match every element, so every
table cell got six extra computed styles: 10,000 of the 12,000 style computations of a
township's 随访任务单. Our documents have no footnotes, and list markers only on ``li``, so
``LeanHTML`` uses the same stylesheet with the five footnote/note rules dropped and ``::marker``
narrowed to ``li::marker`` (the look is unchanged). WeasyPrint is pinned
(pyproject): ``_ua_stylesheets`` is the hook it overrides.

字体子集 (issue 17, second profile): every PDF embeds a subset of each Noto Sans CJK face it uses
(regular and bold). WeasyPrint subsets with HarfBuzz twice per face and document: once keeping
the glyph ids (``RETAIN_GIDS``: the page content names glyphs by their ids in the whole font),
then the result again "to drop the glyphs after the last one used" and the hinting — 38 ms per
face, ten faces per township, while the first pass alone (13 ms) already ends at the last glyph
used. ``_subset_font`` is that first pass with the second's flags (no hinting) and WeasyPrint's
list of dropped tables: the embedded fonts, hence the PDFs, are the same bytes as before
(tests/test_lists_rendering.py). Installed over ``Font._harfbuzz_subset`` (pinned WeasyPrint, as
above) when a PDF is first written; should HarfBuzz fail, WeasyPrint's own method runs. (Each PDF
stays about 300 KB: with the ids kept, each embedded face carries 59,000 glyph slots, mostly
empty, whose CFF offsets compress poorly; dropping the ids would change what the page content
refers to. One subset for several PDFs is not made on purpose: a police list would carry the
characters of the doctor's list.)

tinyhtml5 (the HTML parser WeasyPrint uses) caches its compiled character-class regexps under the
wrong key, so it compiles one again for every text run of the document; ``_RegexCache`` keys it
right (about 2 % of a township's 五单 rendering).

边框 (issue 17, the monthly report): a border on one side only (the rule under each table cell,
the heading's underline) takes WeasyPrint's general path — clip to the side's trapezoid, then fill
the ring between border and padding box — about 150 Python calls per cell and side: half the CPU
of writing the report's PDF (its ~1,100 ruled cells). ``_draw_border`` fills the sides' strips
without the clips (one colour, square corners: the clips remove nothing that another strip does
not paint); installed over ``weasyprint.draw.draw_border`` with the subsetting pass, everything
else (four sides, rounded corners, other styles, several colours) still WeasyPrint's. The 五单's
tables use it too (third profile): their grid is drawn as separate borders (each cell's right and
bottom rule, the header cells' top rule, the table's left rule) instead of collapsed ones, whose
painting (one clipped segment per cell edge) took a quarter of a list's CPU. Rasterised, the pages
are the same within anti-aliasing of the rules' edges (tests/test_lists_rendering.py).

排版进程 (issue 17): ``render_pool`` starts the processes that lay the PDFs out before the caller
reads the database, so WeasyPrint's import (≈ 0.6–1 s of CPU) and warm-up overlap the queries on a
second core. The 五单 (``schedules.lists``: one process per CPU, WeasyPrint imported once before
forking) and the monthly report (``background_renderer``: one process, which imports WeasyPrint
itself while the caller reads) use it. The workers run ``write_pdf``: they never touch the database.

导入 (issue 17, third profile): WeasyPrint loads its C libraries (gobject, pango, harfbuzz,
fontconfig) through cffi, trying Windows and macOS names before the Linux sonames; for each name
that does not load, cffi asks ``ctypes.util.find_library``, which runs ``ldconfig`` and ``gcc``:
18 subprocesses, ≈ 0.1 s of wall time of a 0.35 s import. ``_import_weasyprint`` imports it (on
Linux) with ``find_library`` answering "not found", so the sonames WeasyPrint lists load as they
would anyway; should a library not load so, the import is done again the usual way.

排版进程先行 (issue 17, third profile): ``jingfang lists`` starts its two render processes before
its own imports (``schedules.list_renderer``, ``preload_here`` False): each imports WeasyPrint
itself while the command imports SQLAlchemy and reads the week. (A fork server importing
WeasyPrint once for both was measured, 2.62 → 2.38 s for one township, and taken out again: its
stop on an early error could hang the caller.)

垃圾回收 (issue 17, third profile): a township's five PDFs allocate about a million objects; each
full collection walked the whole heap — WeasyPrint, fonts, SQLAlchemy and the models inherited
from the parent — again: ≈ 20 % of the render processes' CPU. ``render_pool`` freezes the parent's
heap while forking (``gc.freeze``: the children inherit it frozen; the parent unfreezes at once)
and each render process freezes what its warm-up added (``_start_renderer``): the collector then
only looks at the documents' own objects.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

UNUSED_UA_RULES = ("::footnote-", "::note-")
# tables left out of an embedded font subset (WeasyPrint's own list)
DROPPED_FONT_TABLES = (b"BASE", b"DSIG", b"EBDT", b"EBLC", b"EBSC", b"GPOS", b"GSUB", b"JSTF", b"LTSH", b"PCLT", b"SVG ")


@lru_cache(maxsize=1)
def _import_weasyprint():
    """WeasyPrint imported without ``ctypes.util.find_library`` on Linux (see the module docstring,
    导入): its libraries load by their sonames, as they would anyway; should one not load so, the
    import runs again the usual way."""
    if "weasyprint" in sys.modules or not sys.platform.startswith("linux"):
        import weasyprint  # noqa: PLC0415

        return weasyprint
    import contextlib  # noqa: PLC0415
    import ctypes.util  # noqa: PLC0415
    import io  # noqa: PLC0415

    find_library = ctypes.util.find_library
    ctypes.util.find_library = lambda name: None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # WeasyPrint prints its install advice on failure
            import weasyprint  # noqa: PLC0415

        return weasyprint
    except OSError:
        for name in [name for name in sys.modules if name == "weasyprint" or name.startswith("weasyprint.")]:
            del sys.modules[name]
    finally:
        ctypes.util.find_library = find_library
    import weasyprint  # noqa: PLC0415

    return weasyprint


@lru_cache(maxsize=1)
def _lean_ua():
    weasyprint = _import_weasyprint()  # heavy, loaded when a PDF is written
    from weasyprint import CSS  # noqa: PLC0415
    from weasyprint.html import UA_COUNTER_STYLE  # noqa: PLC0415

    source = (Path(weasyprint.__file__).parent / "css" / "html5_ua.css").read_text(encoding="utf-8")
    kept = "\n".join("li" + line if line.startswith("::marker") else line
                     for line in source.splitlines() if not line.startswith(UNUSED_UA_RULES))
    return CSS(string=kept, counter_style=UA_COUNTER_STYLE)


@lru_cache(maxsize=1)
def font_config():
    """One font configuration per process (fontconfig set up once, fonts loaded once)."""
    _import_weasyprint()
    from weasyprint.text.fonts import FontConfiguration  # noqa: PLC0415

    return FontConfiguration()


@lru_cache(maxsize=16)
def stylesheet(path: str):
    """A CSS file parsed once per process (with the shared font configuration)."""
    _import_weasyprint()
    from weasyprint import CSS  # noqa: PLC0415

    return CSS(filename=path, font_config=font_config())


def _subset_font(font, to_unicode, hinting) -> None:
    """字体子集 One HarfBuzz pass over ``font`` (a ``weasyprint.pdf.fonts.Font``): the glyphs used,
    their ids kept, hinting as asked, ``DROPPED_FONT_TABLES`` left out (see the module docstring)."""
    from weasyprint.text.ffi import ffi, harfbuzz, harfbuzz_subset  # noqa: PLC0415
    from weasyprint.text.fonts import get_hb_object_data  # noqa: PLC0415

    subset_input = ffi.gc(harfbuzz_subset.hb_subset_input_create_or_fail(), harfbuzz_subset.hb_subset_input_destroy)
    glyphs = sorted(to_unicode)
    harfbuzz.hb_set_add_sorted_array(harfbuzz_subset.hb_subset_input_glyph_set(subset_input),
                                     ffi.new(f"hb_codepoint_t[{len(glyphs)}]", glyphs), len(glyphs))
    flags = (harfbuzz_subset.HB_SUBSET_FLAGS_RETAIN_GIDS | harfbuzz_subset.HB_SUBSET_FLAGS_PASSTHROUGH_UNRECOGNIZED
             | harfbuzz_subset.HB_SUBSET_FLAGS_DESUBROUTINIZE)
    if not hinting:
        flags |= harfbuzz_subset.HB_SUBSET_FLAGS_NO_HINTING
    if font.missing:
        flags |= harfbuzz_subset.HB_SUBSET_FLAGS_NOTDEF_OUTLINE
    harfbuzz_subset.hb_subset_input_set_flags(subset_input, flags)
    tags = sorted(harfbuzz.hb_tag_from_string(name, -1) for name in DROPPED_FONT_TABLES)
    harfbuzz.hb_set_add_sorted_array(
        harfbuzz_subset.hb_subset_input_set(subset_input, harfbuzz_subset.HB_SUBSET_SETS_DROP_TABLE_TAG),
        ffi.new(f"hb_codepoint_t[{len(tags)}]", tags), len(tags))
    face = harfbuzz_subset.hb_subset_or_fail(font.hb_face, subset_input)
    content = None
    if face != ffi.NULL:
        content = get_hb_object_data(face)
        harfbuzz.hb_face_destroy(face)
    if content:
        font.file_content = content
    else:  # HarfBuzz could not: WeasyPrint's own way (it warns when that fails too)
        _weasyprint_subset(font, to_unicode, hinting)


_weasyprint_subset = None

SIDES = ("top", "right", "bottom", "left")


def _draw_border(stream, box) -> None:
    """边框 WeasyPrint's ``draw_border``, with a fast path for a box ruled on one to three sides (the
    rule under a report's table cell, the 五单's cell rules on the right and below): solid sides of
    one colour, square corners — each side's strip filled as one path, which is what WeasyPrint's
    general path paints (the strips meet at the corners, one colour) without clipping to each
    side's trapezoid first (~150 Python calls per side; see the module docstring). Four sides are
    WeasyPrint's own simple case, left to it."""
    widths = (box.border_top_width, box.border_right_width, box.border_bottom_width, box.border_left_width)
    drawn = [SIDES[i] for i, width in enumerate(widths) if width]
    style = box.style
    if 0 < len(drawn) < 4 and style["visibility"] == "visible" and style["border_image_source"][0] == "none" \
            and style["column_width"] == "auto" and style["column_count"] == "auto":
        from weasyprint.draw.color import get_color  # noqa: PLC0415

        color = get_color(style, f"border_{drawn[0]}_color")
        x, y, width, height, *radii = box.rounded_border_box()
        if color.alpha and all(style[f"border_{side}_style"] == "solid" for side in drawn) \
                and all(get_color(style, f"border_{side}_color") == color for side in drawn[1:]) \
                and not any(any(r) for r in radii):
            top, right, bottom, left = widths
            with stream.artifact(), stream.stacked():
                stream.set_color(color)
                if top:
                    stream.rectangle(x, y, width, top)
                if right:
                    stream.rectangle(x + width - right, y, right, height)
                if bottom:
                    stream.rectangle(x, y + height - bottom, width, bottom)
                if left:
                    stream.rectangle(x, y, left, height)
                stream.fill()
            return
    _weasyprint_draw_border(stream, box)


_weasyprint_draw_border = None


class _RegexCache(dict):
    """tinyhtml5's ``characters_until_regex``, keyed by (characters, opposite) as its lookup is."""

    def __missing__(self, key):
        characters, opposite = key
        regex = "".join(f"\\x{ord(character):02x}" for character in characters)
        value = self[key] = re.compile(f"[{regex}]+" if opposite else f"[^{regex}]+")
        return value


@lru_cache(maxsize=1)
def _install() -> None:
    """The subsetting pass, the parser's cache and the cell-rule fast path (see the module
    docstring), once per process."""
    global _weasyprint_subset, _weasyprint_draw_border
    _import_weasyprint()
    import tinyhtml5.inputstream  # noqa: PLC0415
    import weasyprint.draw  # noqa: PLC0415
    from weasyprint.pdf.fonts import Font  # noqa: PLC0415
    from weasyprint.text.ffi import harfbuzz, harfbuzz_subset  # noqa: PLC0415

    if harfbuzz_subset is not None and harfbuzz.hb_version_atleast(4, 1, 0) and hasattr(Font, "_harfbuzz_subset"):
        _weasyprint_subset = Font._harfbuzz_subset
        Font._harfbuzz_subset = _subset_font
    if isinstance(getattr(tinyhtml5.inputstream, "characters_until_regex", None), dict):
        tinyhtml5.inputstream.characters_until_regex = _RegexCache()
    if callable(getattr(weasyprint.draw, "draw_border", None)):
        _weasyprint_draw_border = weasyprint.draw.draw_border
        weasyprint.draw.draw_border = _draw_border


@lru_cache(maxsize=1)
def _lean_class():
    weasyprint = _import_weasyprint()
    _install()

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


def preload() -> None:
    """WeasyPrint imported (and its font subsetting installed), nothing laid out: for a process about
    to fork its render processes. Not ``warm_up``: Pango starts a thread when it first loads fonts,
    and a process with threads must not fork."""
    _lean_class()


WARM_UP_HTML = "<h1>精防</h1><table><thead><tr><th>患者</th></tr></thead><tbody><tr><td>一历五单 0</td></tr></tbody></table>"


def warm_up(stylesheets: list[str] = ()) -> None:
    """预热 A render process's start: WeasyPrint imported, fonts configured and loaded (a small
    Chinese page laid out, regular and bold), the user-agent sheet and ``stylesheets`` parsed — what
    the first document would otherwise pay, done while the parent is still reading the database."""
    render(WARM_UP_HTML, str(Path.cwd()), stylesheets)


def single_threaded() -> bool:
    """Whether this process runs one thread, counting the threads of C libraries (Linux: Pango starts
    one once it has loaded fonts) as well as Python's."""
    import threading  # noqa: PLC0415

    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1


def render_pool(workers: int, initializer=warm_up, initargs: tuple = (), *, preload_here: bool = True):
    """排版进程 ``workers`` processes for PDFs, started now: each runs ``initializer(*initargs)``
    (default ``warm_up``: WeasyPrint, fonts, stylesheets) while the caller still reads the database.

    Fork when this process runs no other thread (``single_threaded``), else spawn (the scheduler
    service runs a thread pool; a spawned child spends about a second on imports, in its warm-up).
    ``preload_here`` (fork only): WeasyPrint is imported here first (``preload``, about 0.3 s of CPU,
    once for all children) — worth it when this process has its own imports done; else each child
    imports it itself, beside this process's work (``background_renderer``, ``jingfang lists``). The
    caller shuts the pool down (``close``; ``stop`` ends it at once)."""
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    method = "fork" if single_threaded() and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork" and preload_here:
        preload()
    if method == "fork":
        gc.freeze()  # the children inherit this heap as frozen (see _start_renderer)
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_start_renderer, initargs=(initializer, initargs))
        for _ in range(workers):  # every process starts now (a spawning pool starts one per task waiting)
            pool.submit(int)
    finally:
        if method == "fork":
            gc.unfreeze()  # this process goes on collecting as before
    return pool


def close(pool) -> None:
    """Shut a ``render_pool`` down: wait for the PDFs submitted, then for the processes' end."""
    pool.shutdown()


def _start_renderer(initializer, initargs: tuple) -> None:
    """A render process's start: ``initializer(*initargs)`` (the warm-up), then everything the
    process holds so far — modules, fonts, stylesheets — frozen out of the garbage collector's
    reach (``gc.freeze``): a document's layout allocates hundreds of thousands of objects, and every
    full collection would otherwise walk WeasyPrint's and the caller's whole heap again (≈ 20 % of
    the CPU of a township's five PDFs; see the module docstring, 垃圾回收)."""
    initializer(*initargs)
    gc.freeze()


@contextmanager
def background_renderer(stylesheets: list[str] = ()):
    """后台排版 One render process (``render_pool``), started now and warming up (``warm_up`` with
    ``stylesheets``) while the ``with`` block reads the database; ``submit(write_pdf, …)`` to it.

    Leaving the block normally waits for the PDFs submitted; leaving it by an exception (a region
    refused, a database error) ends the process at once instead of waiting for its warm-up."""
    pool = render_pool(1, warm_up, ([str(s) for s in stylesheets],), preload_here=False)
    try:
        yield pool
    except BaseException:
        stop(pool)
        raise
    pool.shutdown()


def stop(pool) -> None:
    """End a ``render_pool``'s processes at once, without waiting for their warm-up or their work
    (the caller failed, or found it has nothing to render)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


@lru_cache(maxsize=4)
def paper_templates(folder: str = "lists"):
    """纸质文件模板 The Jinja2 environment of the printed documents' templates (``templates/<folder>``):
    the 五单, the ledger, the payout list, the emergency record — one environment per process."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape  # noqa: PLC0415

    from registry.resources import template_dir  # noqa: PLC0415

    return Environment(loader=FileSystemLoader(str(template_dir(folder))), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined)

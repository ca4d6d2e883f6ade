"""五单存档 The weekly 五单 kept as issued (rules.md §7: "Every issued week is kept as issued (the
ledger, 台账): its rows, the files and their SHA-256, who downloaded them; re-running a past week
shows the archived lists, never a recomputed version. Paper sign-in sheets can be recorded back
against the archived rows.").

* **Issue** (签发): the first time a township's week is written on or after its Monday (the weekly
  job, ``jingfang lists``, the demo), the five lists' rows (``list_issue_row``, one JSON object per
  row as issued), the ten files (``list_issue_file``: the PDF and XLSX bytes in the database, with
  their SHA-256) and who issued it and when (``list_issue``) are stored in the same transaction as
  the export's audit row and its notifications. A week written before its Monday is a preview and
  is not archived.
* **Served, never recomputed**: writing an archived week again writes the archived bytes
  (byte-identical, whatever the register says now); the web download serves them too. Only an
  explicit ``jingfang lists --reissue`` recomputes: it adds version 2, 3, … and keeps every older
  version (the highest is the one served).
* **Downloads** (``list_download``): who fetched which file of which week, when, through which
  channel (web or command line) and the SHA-256 of the bytes served; each also an audit row.
* **Paper sign-in** (``list_sign_in``): who signed, whether the visit took place, the date and a
  note, recorded against an archived row by the township doctor or the county admin; audited.

Files are stored in the database (not a directory): one transaction holds the rows, the files and
the audit row, a backup of the database is a backup of the archive, and both databases behave the
same. One township's week is about 0.2–1 MB (ten files).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry.audit import audit_row
from registry.errors import InvalidInput, NotFound
from registry.models import AuditLog
from registry.storable_text import bad_text
from schedules.models import ListDownload, ListIssue, ListIssueFile, ListIssueRow, ListSignIn

ISSUE = ListIssue.__table__
FILE = ListIssueFile.__table__
ROW = ListIssueRow.__table__
SIGN_IN = ListSignIn.__table__
DOWNLOAD = ListDownload.__table__
FORMATS = ("pdf", "xlsx")


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def issuable(week: date, today: date) -> bool:
    """签发 Whether writing the week ``week`` on ``today`` issues it (archives it): its Monday has come.
    A week written earlier is a preview (rules.md §7: the lists are issued every Monday)."""
    return monday_of(week) <= today


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# ---------------------------------------------------------------- reading the archive


def latest_issue(conn: Connection, township_code: str, week: date):
    """The served (highest) version of a township's week, or None when the week was never issued."""
    return conn.execute(
        sa.select(ISSUE).where(ISSUE.c.township_code == township_code, ISSUE.c.week == monday_of(week))
        .order_by(ISSUE.c.version.desc()).limit(1)
    ).first()


def latest_issues(conn: Connection, township_codes: list[str], week: date) -> dict[str, object]:
    """The served issue of ``week`` for each of ``township_codes`` that has one (one query)."""
    if not township_codes:
        return {}
    top = (sa.select(ISSUE.c.township_code, sa.func.max(ISSUE.c.version).label("version"))
           .where(ISSUE.c.week == monday_of(week), ISSUE.c.township_code.in_(township_codes))
           .group_by(ISSUE.c.township_code).subquery())
    rows = conn.execute(sa.select(ISSUE).join(top, sa.and_(top.c.township_code == ISSUE.c.township_code,
                                                           top.c.version == ISSUE.c.version))
                        .where(ISSUE.c.week == monday_of(week)))
    return {r.township_code: r for r in rows}


def issue_files(conn: Connection, issue_id: int, *, content: bool = False) -> list:
    """The files of an issue in the order they were issued (the PDFs, then the workbooks, list by list)."""
    cols = [FILE.c.id, FILE.c.issue_id, FILE.c.slug, FILE.c.fmt, FILE.c.file_name, FILE.c.sha256, FILE.c.size]
    if content:
        cols.append(FILE.c.content)
    return conn.execute(sa.select(*cols).where(FILE.c.issue_id == issue_id).order_by(FILE.c.id)).all()


def archived_file(conn: Connection, township_code: str, week: date, slug: str, fmt: str):
    """The served version's file ``slug``.``fmt`` of a township's week (with its bytes), or None."""
    issue = latest_issue(conn, township_code, week)
    if issue is None:
        return None
    row = conn.execute(sa.select(FILE).where(FILE.c.issue_id == issue.id, FILE.c.slug == slug, FILE.c.fmt == fmt)).first()
    return None if row is None else (issue, row)


def write_issue(engine: Engine, issue_id: int, out_dir: Path) -> list[Path]:
    """存档文件写出 Write an issue's files, byte for byte as issued, into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn:
        files = issue_files(conn, issue_id, content=True)
    paths = []
    for f in files:
        path = out_dir / f.file_name
        path.write_bytes(bytes(f.content))
        paths.append(path)
    return paths


# ---------------------------------------------------------------- issuing


def _json_value(value):
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def store_issue(conn: Connection, data: dict, files: list[Path], *, actor: str, reason: str | None = None) -> int:
    """存档 Store a township's week as issued: the lists' rows, the files' bytes and SHA-256, the issuer;
    the next version of the week (1 the first time). In the caller's transaction; two processes
    issuing the same week at once: the second fails on the unique (township, week, version)."""
    week = monday_of(data["week"])
    previous = conn.execute(sa.select(sa.func.max(ISSUE.c.version)).where(
        ISSUE.c.township_code == data["township_code"], ISSUE.c.week == week)).scalar()
    issue_id = conn.execute(sa.insert(ISSUE).values(
        township_code=data["township_code"], week=week, version=(previous or 0) + 1,
        issued_at=_now(), issued_by=actor[:120],
        counts=json.dumps(data["counts"], ensure_ascii=False), reason=(reason or None) and reason[:500],
    ).returning(ISSUE.c.id)).scalar_one()
    file_rows = []
    for path in files:
        path = Path(path)
        fmt = path.suffix.lstrip(".")
        wl = next(w for w in data["lists"] if path.name.endswith(f"_{w.number}_{w.title}.{fmt}"))
        content = path.read_bytes()
        file_rows.append({"issue_id": issue_id, "slug": wl.slug, "fmt": fmt, "file_name": path.name,
                          "sha256": sha256(content), "size": len(content), "content": content})
    if file_rows:
        conn.execute(sa.insert(FILE), file_rows)
    rows = []
    for wl in data["lists"]:
        for section, items in (("rows", wl.rows), ("checks", wl.checks)):
            for position, item in enumerate(items):
                rows.append({"issue_id": issue_id, "slug": wl.slug, "section": section, "position": position,
                             "patient_id": str(item.get("patient_id", ""))[:64], "village": str(item.get("village", ""))[:100],
                             "data": json.dumps(item, ensure_ascii=False, default=_json_value, sort_keys=True)})
    if rows:
        conn.execute(sa.insert(ROW), rows)
    return issue_id


def _now():
    from registry.clock import now_utc

    return now_utc()


# ---------------------------------------------------------------- downloads


def record_download(conn: Connection, *, township_code: str, week: date, slug: str, fmt: str, content: bytes,
                    actor: str, channel: str, file_id: int | None = None, role: str | None = None,
                    source: str | None = None, detail: str | None = None) -> None:
    """下载记录 One download (``list_download``) and its export audit row, in the caller's transaction."""
    digest = sha256(content)
    conn.execute(sa.insert(DOWNLOAD).values(
        file_id=file_id, township_code=township_code, week=monday_of(week), slug=slug, fmt=fmt, sha256=digest,
        actor=actor[:120], role=role, channel=channel, source=(source or None) and source[:100], downloaded_at=_now()))
    conn.execute(sa.insert(AuditLog).values(**audit_row(
        actor=actor, action="export", object_type="list", object_id=f"{township_code}/{monday_of(week)}/{slug}",
        region_code=township_code, detail=detail or f"{fmt.upper()} {'存档' if file_id else '即时生成'} sha256:{digest[:16]}",
        source=source)))


# ---------------------------------------------------------------- paper sign-in


def _sign_in_text(value, field: str, label: str, max_len: int, required: bool) -> str | None:
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            raise InvalidInput.single("REQUIRED", f"{label}不能为空", column=field)
        return None
    if len(text) > max_len:
        raise InvalidInput.single("TOO_LONG", f"{label}不能超过 {max_len} 个字", column=field)
    if bad_text(text):
        raise InvalidInput.single("BAD_TEXT", f"{label}含有无效字符", column=field)
    return text


def sign_in_values(*, signed_by, visited, signed_on, note, week: date, today: date) -> dict:
    """纸质签到校验 The checked values of a paper sign-in (rules.md §7): the signer (required), whether the
    visit took place (是/否), the date (between the week's Monday and today), a note. InvalidInput
    naming the field otherwise."""
    who = _sign_in_text(signed_by, "signed_by", "签名人", 100, True)
    if isinstance(visited, bool):
        done = visited
    elif str(visited).strip() in ("1", "true", "是"):
        done = True
    elif str(visited).strip() in ("0", "false", "否"):
        done = False
    else:
        raise InvalidInput.single("BAD_CODE", "是否到访应为“是”或“否”", column="visited")
    if isinstance(signed_on, date):
        day = signed_on
    else:
        try:
            day = date.fromisoformat(str(signed_on or "").strip())
        except ValueError:
            raise InvalidInput.single("BAD_DATE", f"签到日期“{str(signed_on)[:20]}”无效，应为 YYYY-MM-DD",
                                      column="signed_on") from None
    if day > today:
        raise InvalidInput.single("FUTURE_DATE", "签到日期不能晚于今天", column="signed_on")
    if day < monday_of(week):
        raise InvalidInput.single("BEFORE_WEEK", f"签到日期不能早于该周周一 {monday_of(week)}", column="signed_on")
    return {"signed_by": who, "visited": done, "signed_on": day,
            "note": _sign_in_text(note, "note", "备注", 500, False)}


def archived_row(conn: Connection, row_id: int):
    """An archived row with its issue's township and week, or NotFound."""
    row = conn.execute(
        sa.select(ROW, ISSUE.c.township_code, ISSUE.c.week, ISSUE.c.version)
        .join(ISSUE, ISSUE.c.id == ROW.c.issue_id).where(ROW.c.id == row_id)).first()
    if row is None:
        raise NotFound(message=f"存档行 {row_id} 不存在", code="LIST_ROW_NOT_FOUND")
    return row


def record_sign_in(engine: Engine, row_id: int, *, allowed_townships, actor: str, today: date, signed_by, visited,
                   signed_on, note=None, source: str | None = None) -> dict:
    """签到回录 Record a paper sign-in result against archived row ``row_id`` (rules.md §7), for a user
    whose townships are ``allowed_townships`` (a row elsewhere is NotFound: no hint it exists).
    The sign-in and its audit row in one transaction; refused input writes nothing."""
    with engine.begin() as conn:
        row = archived_row(conn, row_id)
        if row.township_code not in allowed_townships:
            raise NotFound(message=f"存档行 {row_id} 不存在", code="LIST_ROW_NOT_FOUND")
        values = sign_in_values(signed_by=signed_by, visited=visited, signed_on=signed_on, note=note, week=row.week,
                                today=today)
        sign_in_id = conn.execute(sa.insert(SIGN_IN).values(row_id=row_id, recorded_by=actor[:120], recorded_at=_now(),
                                                            **values).returning(SIGN_IN.c.id)).scalar_one()
        conn.execute(sa.insert(AuditLog).values(**audit_row(
            actor=actor, action="sign_in", object_type="list_row", object_id=str(row_id), region_code=row.township_code,
            detail=f"{row.week} {row.slug} 第{row.position + 1}行 {'已到访' if values['visited'] else '未到访'}", source=source)))
    return {"id": sign_in_id, "row_id": row_id, "patient_id": row.patient_id, **values,
            "signed_on": values["signed_on"].isoformat()}


# ---------------------------------------------------------------- the supervision page


def township_archive(engine: Engine, township_code: str, *, slugs: tuple[str, ...], weeks: int = 26,
                     downloads: bool = True) -> list[dict]:
    """资料查验 A township's issued weeks, newest first (every version), with the files of ``slugs``,
    their SHA-256 and download counts, and the sign-ins recorded per list. Four queries."""
    with engine.connect() as conn:
        issues = conn.execute(sa.select(ISSUE).where(ISSUE.c.township_code == township_code)
                              .order_by(ISSUE.c.week.desc(), ISSUE.c.version.desc()).limit(weeks)).all()
        ids = [i.id for i in issues]
        if not ids:
            return []
        files = conn.execute(sa.select(FILE.c.id, FILE.c.issue_id, FILE.c.slug, FILE.c.fmt, FILE.c.file_name,
                                       FILE.c.sha256, FILE.c.size)
                             .where(FILE.c.issue_id.in_(ids), FILE.c.slug.in_(slugs)).order_by(FILE.c.id)).all()
        counts = dict(conn.execute(sa.select(DOWNLOAD.c.file_id, sa.func.count()).where(
            DOWNLOAD.c.file_id.in_([f.id for f in files] or [-1])).group_by(DOWNLOAD.c.file_id)).all())
        signed = conn.execute(sa.select(ROW.c.issue_id, ROW.c.slug, sa.func.count(sa.distinct(ROW.c.id)).label("rows"),
                                        sa.func.count(SIGN_IN.c.id).label("sign_ins"))
                              .select_from(ROW.outerjoin(SIGN_IN, SIGN_IN.c.row_id == ROW.c.id))
                              .where(ROW.c.issue_id.in_(ids), ROW.c.slug.in_(slugs))
                              .group_by(ROW.c.issue_id, ROW.c.slug)).all()
    by_issue: dict[int, dict] = {}
    for i in issues:
        by_issue[i.id] = {"id": i.id, "week": i.week, "version": i.version, "issued_at": i.issued_at, "issued_by": i.issued_by,
                          "reason": i.reason, "counts": json.loads(i.counts), "files": [], "sign_ins": {}}
    for f in files:
        by_issue[f.issue_id]["files"].append({"id": f.id, "slug": f.slug, "fmt": f.fmt, "file_name": f.file_name,
                                               "sha256": f.sha256, "size": f.size,
                                               "downloads": counts.get(f.id, 0) if downloads else None})
    for s in signed:
        by_issue[s.issue_id]["sign_ins"][s.slug] = {"rows": s.rows, "sign_ins": s.sign_ins}
    return [by_issue[i] for i in ids]


def recent_downloads(engine: Engine, township_code: str, limit: int = 50) -> list:
    """The township's latest downloads (who, what, when, channel, SHA-256)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(DOWNLOAD).where(DOWNLOAD.c.township_code == township_code)
                            .order_by(DOWNLOAD.c.downloaded_at.desc(), DOWNLOAD.c.id.desc()).limit(limit)).all()


def issue_list_rows(engine: Engine, issue_id: int, slug: str) -> tuple[object, list[dict]]:
    """一单存档行 An issue and its list ``slug``'s archived rows (as issued), each with its sign-ins."""
    with engine.connect() as conn:
        issue = conn.execute(sa.select(ISSUE).where(ISSUE.c.id == issue_id)).first()
        if issue is None:
            raise NotFound(message=f"存档 {issue_id} 不存在", code="LIST_ISSUE_NOT_FOUND")
        rows = conn.execute(sa.select(ROW).where(ROW.c.issue_id == issue_id, ROW.c.slug == slug)
                            .order_by(ROW.c.section.desc(), ROW.c.position)).all()
        signs = conn.execute(sa.select(SIGN_IN).where(SIGN_IN.c.row_id.in_([r.id for r in rows] or [-1]))
                             .order_by(SIGN_IN.c.row_id, SIGN_IN.c.id)).all()
    by_row: dict[int, list] = {}
    for s in signs:
        by_row.setdefault(s.row_id, []).append(s)
    return issue, [{"id": r.id, "section": r.section, "position": r.position, "patient_id": r.patient_id,
                    "village": r.village, "data": json.loads(r.data), "sign_ins": by_row.get(r.id, [])} for r in rows]

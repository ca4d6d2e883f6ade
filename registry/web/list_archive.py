"""五单存档页面 The archive of the issued weekly 五单 per township, for supervision (资料查验), and paper
sign-in (rules.md §7 "Every issued week is kept as issued … Paper sign-in sheets can be recorded back
against the archived rows"; issue 15; ``schedules.archive``).

* ``/lists/archive?township=`` — the township's issued weeks (every version), each file with its
  SHA-256, size and download count, the sign-ins recorded per list, and the latest downloads.
  Readers: the county admin (any township of the county) and the township doctor (own township);
  police and civil affairs (own township) see only the files of their own lists (``LIST_READERS``)
  and no download log or rows; an account linked to its member and not a supervisor none at all
  (``Scope.require_township_lists``, rules.md §6.1: as the week's lists). Every view is audited.
* ``/lists/archive/files/<id>`` — an archived file, byte for byte as issued; a download
  (``list_download``) and an export audit row.
* ``/lists/archive/<issue>/<list>`` — the list's rows as issued, each with its sign-ins and a form
  to record one (doctor, county admin); ``POST /lists/archive/rows/<id>/sign-in``.
* API: ``GET /api/lists/archive?township=`` and ``POST /api/lists/rows/<id>/sign-ins``.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from registry import audit
from registry.accounts import UserRole
from registry.errors import InvalidInput, NotFound, PermissionDenied
from registry.web.auth import Current, client_ip, current
from registry.web.deps import CurrentUser
from registry.web.pages import form_data, render
from registry.web.scopes import ARCHIVE_ROLES
from schedules import archive
from schedules.lists import LIST_READERS, LISTS

router = APIRouter()
SIGN_IN_ROLES = (UserRole.COUNTY_ADMIN.value, UserRole.TOWNSHIP_DOCTOR.value)
TITLES = {slug: (number, title) for number, slug, title, _readers in LISTS}
MEDIA = {"pdf": "application/pdf", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def actor_label(actor: str) -> str:
    """签发人 / 下载人 as a person reads it: a login name, 命令行（系统用户）, 调度服务, 演示."""
    from registry.web.queries import AUDIT_SOURCE_LABELS

    if actor.startswith("cli:"):
        return f"命令行（{actor[4:]}）"
    return AUDIT_SOURCE_LABELS.get(actor, actor)


def allowed_townships(request: Request, cur: Current) -> list[str]:
    """The townships whose archive the user may open: the county admin's townships, else the own one."""
    tree = request.app.state.ctx.tree
    if cur.user.role == UserRole.COUNTY_ADMIN.value:
        return tree.townships_under(cur.user.region_code)
    own = tree.township_of(cur.user.region_code)
    return [own] if own else []


def readable_slugs(role: str) -> tuple[str, ...]:
    """The lists whose archived files a role sees: all for the doctor and the admin, else its own."""
    if role in SIGN_IN_ROLES:
        return tuple(TITLES)
    return tuple(slug for slug in TITLES if role in LIST_READERS[slug])


def _township(request: Request, cur: Current, township: str) -> tuple[str, list[str]]:
    cur.scope.require_role(*ARCHIVE_ROLES)
    cur.scope.require_township_lists()  # as the week's lists (rules.md §6.1): a linked member works from its own
    towns = allowed_townships(request, cur)
    if len(township) > 32:
        raise InvalidInput.single("BAD_TEXT", "乡镇编码过长", column="township")
    if township and township not in towns:
        raise PermissionDenied(f"乡镇 {township[:20]} 不在您的管辖范围内", code="REGION_FORBIDDEN")
    if not towns:
        raise PermissionDenied("您的辖区没有乡镇", code="REGION_FORBIDDEN")
    return township or towns[0], towns


def _overview(request: Request, cur: Current, township: str) -> dict:
    ctx = request.app.state.ctx
    code, towns = _township(request, cur, township)
    full = cur.user.role in SIGN_IN_ROLES
    issues = archive.township_archive(ctx.engine, code, slugs=readable_slugs(cur.user.role), downloads=full)
    downloads = archive.recent_downloads(ctx.engine, code) if full else []
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="list_archive", object_id=code,
                 region_code=code, detail=f"{len(issues)} 期存档", source=client_ip(request))
    return {"township": code, "townships": towns, "issues": issues, "downloads": downloads, "full": full}


@router.get("/lists/archive", response_class=HTMLResponse, include_in_schema=False)
def archive_page(request: Request, township: str = ""):
    """五单存档 A township's issued weeks for supervision (资料查验); audited."""
    cur = current(request)
    data = _overview(request, cur, township)
    tree = request.app.state.ctx.tree
    return render(request, "list_archive.html", titles=TITLES, township_name=tree.name(data["township"]), actor=actor_label,
                  town_names={t: tree.name(t) for t in data["townships"]}, **data)


@router.get("/lists/archive/files/{file_id}", include_in_schema=False)
def archived_file(request: Request, file_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]):
    """存档文件 An archived file as issued, for a reader of its list in its township; a recorded download."""
    cur = current(request)
    cur.scope.require_role(*ARCHIVE_ROLES)
    cur.scope.require_township_lists()
    ctx = request.app.state.ctx
    with ctx.engine.begin() as conn:
        hit = conn.execute(sa.select(archive.FILE, archive.ISSUE.c.township_code, archive.ISSUE.c.week,
                                             archive.ISSUE.c.version)
                           .join(archive.ISSUE, archive.ISSUE.c.id == archive.FILE.c.issue_id)
                           .where(archive.FILE.c.id == file_id)).first()
        if hit is None or hit.township_code not in allowed_townships(request, cur) \
                or hit.slug not in readable_slugs(cur.user.role):
            raise NotFound(message="存档文件不存在或不发给您的岗位", code="LIST_FILE_NOT_FOUND")
        content = bytes(hit.content)
        archive.record_download(conn, township_code=hit.township_code, week=hit.week, slug=hit.slug, fmt=hit.fmt,
                                content=content, actor=cur.user.username, role=cur.user.role, channel="web",
                                file_id=hit.id, source=client_ip(request),
                                detail=f"{hit.file_name} 存档第{hit.version}版")
    ascii_name = f"{hit.week}_{hit.township_code}_{hit.slug}_v{hit.version}.{hit.fmt}"
    return Response(content, media_type=MEDIA[hit.fmt], headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(hit.file_name)}",
        "X-Content-SHA256": hit.sha256})


def _rows_context(request: Request, cur: Current, issue_id: int, slug: str) -> dict:
    cur.scope.require_role(*SIGN_IN_ROLES)
    if slug not in TITLES:
        raise NotFound(message=f"没有名为“{slug[:20]}”的清单", code="LIST_NOT_FOUND")
    ctx = request.app.state.ctx
    issue, rows = archive.issue_list_rows(ctx.engine, issue_id, slug)
    if issue.township_code not in allowed_townships(request, cur):
        raise NotFound(message=f"存档 {issue_id} 不存在", code="LIST_ISSUE_NOT_FOUND")
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="list_archive",
                 object_id=f"{issue.township_code}/{issue.week}/{slug}/v{issue.version}", region_code=issue.township_code,
                 detail=f"{len(rows)} 行", source=client_ip(request))
    from schedules.lists import LIST_COLUMNS

    return {"actor": actor_label, "issue": issue, "rows": rows, "slug": slug, "title": TITLES[slug][1], "columns": LIST_COLUMNS[slug][:6],
            "township_name": ctx.tree.name(issue.township_code)}


@router.get("/lists/archive/{issue_id}/{slug}", response_class=HTMLResponse, include_in_schema=False)
def archived_rows(request: Request, issue_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
                  slug: Annotated[str, PathParam(max_length=20)], saved: str = ""):
    """存档行与签到 A list's rows as issued, with their paper sign-ins and the form to record one."""
    cur = current(request)
    return render(request, "list_archive_rows.html", saved=bool(saved), error=None, form={}, error_row=None,
                  **_rows_context(request, cur, issue_id, slug))


@router.post("/lists/archive/rows/{row_id}/sign-in", include_in_schema=False)
async def sign_in_submit(request: Request, row_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]):
    """签到回录 Record a paper sign-in against an archived row (doctor, county admin)."""
    cur = current(request)
    cur.scope.require_role(*SIGN_IN_ROLES)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    with ctx.engine.connect() as conn:
        row = archive.archived_row(conn, row_id)
    try:
        archive.record_sign_in(ctx.engine, row_id, allowed_townships=allowed_townships(request, cur),
                               actor=cur.user.username, today=ctx.today(), signed_by=data.get("signed_by"),
                               visited=data.get("visited", ""), signed_on=data.get("signed_on"), note=data.get("note"),
                               source=client_ip(request))
    except InvalidInput as exc:
        context = _rows_context(request, cur, row.issue_id, row.slug)
        return render(request, "list_archive_rows.html", status_code=422, saved=False, error=exc.message, form=data,
                      error_row=row_id, **context)
    return RedirectResponse(f"/lists/archive/{row.issue_id}/{row.slug}?saved=1#row-{row_id}", status_code=303)


# ---------------------------------------------------------------- API


class SignInBody(BaseModel):
    """纸质签到 Who signed, whether the visit took place, the date, a note."""
    model_config = ConfigDict(strict=True, extra="forbid")
    signed_by: str = Field(max_length=100, description="签名人")
    visited: bool = Field(description="是否到访")
    signed_on: str = Field(max_length=10, description="签到日期 YYYY-MM-DD")
    note: str | None = Field(default=None, max_length=500, description="备注")


@router.post("/api/lists/rows/{row_id}/sign-ins", summary="纸质签到回录（乡镇精防医生、县级管理员）")
def sign_in_api(request: Request, cur: CurrentUser, row_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
                body: SignInBody) -> dict:
    """签到回录 Record a paper sign-in against an archived row of an issued 五单 (rules.md §7)."""
    cur.scope.require_role(*SIGN_IN_ROLES)
    ctx = request.app.state.ctx
    return archive.record_sign_in(ctx.engine, row_id, allowed_townships=allowed_townships(request, cur),
                                  actor=cur.user.username, today=ctx.today(), signed_by=body.signed_by,
                                  visited=body.visited, signed_on=body.signed_on, note=body.note, source=client_ip(request))


@router.get("/api/lists/archive", summary="五单存档（资料查验）")
def archive_api(request: Request, cur: CurrentUser, township: Annotated[str, Query(max_length=32)] = "") -> dict:
    """五单存档 A township's issued weeks: versions, issuer, files with SHA-256 and download counts, sign-ins."""
    data = _overview(request, cur, township)
    return {"township": data["township"], "issues": [
        {"id": i["id"], "week": i["week"].isoformat(), "version": i["version"], "issued_at": i["issued_at"].isoformat(),
         "issued_by": i["issued_by"], "reason": i["reason"], "counts": i["counts"], "sign_ins": i["sign_ins"],
         "files": [{k: f[k] for k in ("id", "slug", "fmt", "file_name", "sha256", "size", "downloads")} for f in i["files"]]}
        for i in data["issues"]]}

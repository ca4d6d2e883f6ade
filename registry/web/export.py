"""导出页面 ``/export``: the register in the import format for the county admin (issue 13, rules.md §8).

The page offers two downloads of the admin's region (``registry.exporting``): a zip of the CSV
files (UTF-8 with BOM; they re-import with ``jingfang import``) and one .xlsx workbook (a sheet per
file; no cell is ever a formula). County admin only (403 for every other role: the export holds
diagnoses and ID numbers); every download is audited (action ``export``) with the user and the
client address. The file is written to a temporary directory and removed after the response.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from registry.accounts import UserRole
from registry.exporting import EXPORTS
from registry.web.auth import client_ip, current
from registry.web.pages import render

router = APIRouter()
EXPORT_ROLES = (UserRole.COUNTY_ADMIN.value,)


@router.get("/export", response_class=HTMLResponse, include_in_schema=False)
def export_page(request: Request):
    """导出 The page with the two downloads (county admin only)."""
    cur = current(request)
    cur.scope.require_role(*EXPORT_ROLES)
    return render(request, "export.html", files=[f"{stem}.csv" for stem in EXPORTS])


def _download(request: Request, fmt: str) -> FileResponse:
    from registry.exporting import export_register

    cur = current(request)
    cur.scope.require_role(*EXPORT_ROLES)
    ctx = request.app.state.ctx
    region = cur.user.region_code
    work = Path(tempfile.mkdtemp(prefix="jingfang-export-"))
    cleanup = BackgroundTask(shutil.rmtree, work, ignore_errors=True)
    stamp = ctx.today().isoformat()
    try:
        if fmt == "xlsx":
            path = work / f"register-{region}-{stamp}.xlsx"
            export_register(ctx.engine, xlsx=path, region=region, actor=cur.user.username, source=client_ip(request),
                            target="网页下载 Excel 工作簿")
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        else:
            folder = work / "csv"
            result = export_register(ctx.engine, directory=folder, region=region, actor=cur.user.username,
                                     source=client_ip(request), target="网页下载 CSV 压缩包")
            path = work / f"register-{region}-{stamp}.zip"
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for file in result.paths:
                    archive.write(file, file.name)
            media = "application/zip"
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(path, media_type=media, filename=path.name, background=cleanup)


@router.get("/export/register.zip", include_in_schema=False)
def export_zip(request: Request):
    """导出 CSV The region's register as a zip of the import files; audited."""
    return _download(request, "zip")


@router.get("/export/register.xlsx", include_in_schema=False)
def export_xlsx(request: Request):
    """导出 Excel The region's register as one workbook; audited."""
    return _download(request, "xlsx")

"""修改与迁移页面 Pages and API of patient edits, their history and moves between townships (issue 13).

Pages: ``/patients/{id}/edit`` (修改信息: every editable field, generic over the patient field
specs), ``/patients/{id}/history`` (变更记录 tab), ``/patients/{id}/transfer`` (迁出) and
``/transfers`` (待接收: accept with a village, or refuse with a reason; the region's moves both
ways). API: ``PATCH /api/patients/{id}`` (changed fields only), ``GET /api/patients/{id}/history``,
``POST /api/patients/{id}/transfer``, ``GET /api/transfers``, ``POST /api/transfers/{id}/accept``
and ``/refuse``. The rules: ``registry.patient_edits``; the writes: ``registry.web.edits``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, select

from registry import codes, patient_edits
from registry.errors import InvalidInput
from registry.models import Region
from registry.validation import iso_date
from registry.web import edits, forms
from registry.web.api import ERRORS, PatientId, _specs, body_checked, checked, write_body
from registry.web.auth import client_ip, current
from registry.web.deps import ClientIp, CurrentUser, EngineDep, Today, api_user
from registry.web.pages import _record_read, form_data, render

router = APIRouter()
# authentication runs before body validation, so an anonymous call is 401 whatever it sends (as in api.py)
api_router = APIRouter(dependencies=[Depends(api_user)], responses=ERRORS)
TransferId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="迁移申请编号")]


# ---------------------------------------------------------------- the edit form, generic over the specs

def edit_sections(id_hint: str = "") -> list[tuple[str, list[forms.Widget]]]:
    """修改表单 The registration form's sections (without the key), the status, then every other
    editable field of the specs (a field added to ``registry.validation`` appears here unchanged).
    ``id_hint``: the ID number's hint for a user who never sees it unmasked (blank = unchanged)."""
    sections = [(title, [replace(w, hint=id_hint) if w.name == "id_number" and id_hint else w
                         for w in widgets if w.name != "patient_id"]) for title, widgets in forms.PATIENT_SECTIONS]
    sections.append(("状态", [
        forms.pt("status", "radio", [(m.value, m.label) for m in codes.PatientStatus]),
        forms.pt("status_on", "date", hint="死亡或迁出（离开本县）时填写"),
        forms.pt("status_detail", "longtext"),
    ]))
    placed = {w.name for _t, ws in sections for w in ws}
    rest = [forms.pt(s.name, "date" if s.parse is iso_date else "text") for s in patient_edits.editable_specs()
            if s.name not in placed]
    if rest:
        sections.append(("其他信息", rest))
    return [(t, ws) for t, ws in sections if ws]


def _form_values(patient_values: dict, unmasked: bool) -> dict[str, str]:
    values = {k: patient_edits.as_text(v) or "" for k, v in patient_values.items()}
    if not unmasked:
        values["id_number"] = ""  # never shown unmasked but to the doctor (rules.md §8); blank = unchanged
    return values


def _edit_form(request: Request, cur, patient_id: str, values: dict | None, errors: dict, status_code: int = 200):
    ctx = request.app.state.ctx
    record = _record_read(request, cur, patient_id)
    with Session(ctx.engine) as session:
        patient = cur.scope.check_patient(session, patient_id)
        stored = edits.current_values(patient)
        villages = session.exec(select(Region.code, Region.name).where(Region.level == "village",
                                                                       Region.code.in_(sorted(cur.scope.region_codes)))
                                .order_by(Region.code)).all()
    if values is None:
        values = _form_values(stored, cur.scope.sees_unmasked_id)
    id_hint = "" if cur.scope.sees_unmasked_id else "不显示原号码；留空表示不修改"
    return render(request, "patient_edit.html", status_code=status_code, p=record, sections=edit_sections(id_hint),
                  values=values, errors=errors, villages=[(c, f"{n}（{c}）") for c, n in villages],
                  reason_fields=[patient_edits.field_label(f) for f in patient_edits.REASON_ORDER])


@router.get("/patients/{patient_id}/edit", response_class=HTMLResponse, include_in_schema=False)
def edit_page(request: Request, patient_id: str):
    """修改信息 The edit form with the stored values (doctor of the patient's township, county admin)."""
    cur = current(request)
    cur.scope.require_role(*edits.EDIT_ROLES)
    return _edit_form(request, cur, patient_id, None, {})


@router.post("/patients/{patient_id}/edit", response_class=HTMLResponse, include_in_schema=False)
async def edit_submit(request: Request, patient_id: str):
    """修改信息 Save the changed fields (history rows, audit, replan) or show the form again."""
    cur = current(request)
    data = await form_data(request, cur)
    if not cur.scope.sees_unmasked_id and not data.get("id_number"):
        data.pop("id_number", None)
    ctx = request.app.state.ctx
    try:
        edit = edits.edit_patient(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return _edit_form(request, cur, patient_id, data, forms.errors_by_field(exc.issues), status_code=422)
    return RedirectResponse(f"/patients/{patient_id}/history?saved={len(edit.changes)}", status_code=303)


@router.get("/patients/{patient_id}/history", response_class=HTMLResponse, include_in_schema=False)
def history_page(request: Request, patient_id: str, saved: int = -1):
    """变更记录 The patient's change history and moves (full-record roles); audited."""
    cur = current(request)
    ctx = request.app.state.ctx
    data = edits.history(ctx.engine, cur.scope, patient_id, source=client_ip(request))
    return render(request, "patient_history.html", h=data, saved=saved)


# ---------------------------------------------------------------- 迁出 / 待接收

def _transfer_form(request: Request, cur, patient_id: str, values: dict, errors: dict, status_code: int = 200):
    ctx = request.app.state.ctx
    record = _record_read(request, cur, patient_id)
    with Session(ctx.engine) as session:
        own = edits.township_of(session, record["village_code"])
        townships = session.exec(select(Region.code, Region.name).where(Region.level == codes.RegionLevel.TOWNSHIP.value,
                                                                        Region.code != own).order_by(Region.code)).all()
    return render(request, "transfer_form.html", status_code=status_code, p=record, values=values, errors=errors,
                  townships=[(c, f"{n}（{c}）") for c, n in townships])


@router.get("/patients/{patient_id}/transfer", response_class=HTMLResponse, include_in_schema=False)
def transfer_page(request: Request, patient_id: str):
    """迁出 The move-out form: the receiving township and the reason."""
    cur = current(request)
    cur.scope.require_role(*edits.EDIT_ROLES)
    return _transfer_form(request, cur, patient_id, {}, {})


@router.post("/patients/{patient_id}/transfer", response_class=HTMLResponse, include_in_schema=False)
async def transfer_submit(request: Request, patient_id: str):
    """迁出 Save a move-out (待接收) or show the form again."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        edits.request_transfer(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return _transfer_form(request, cur, patient_id, data, forms.errors_by_field(exc.issues), status_code=422)
    return RedirectResponse(f"/patients/{patient_id}/history", status_code=303)


@router.get("/transfers", response_class=HTMLResponse, include_in_schema=False)
def transfers_page(request: Request, done: str = ""):
    """待接收 Moves into the region waiting for a decision, and the region's moves both ways; audited."""
    cur = current(request)
    ctx = request.app.state.ctx
    data = edits.pending_transfers(ctx.engine, cur.scope, source=client_ip(request))
    return render(request, "transfers.html", data=data, errors={}, failed=None, done=done[:20])


async def _decide(request: Request, transfer_id: int, accept: bool):
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        edits.decide_transfer(ctx.engine, cur.scope, transfer_id, accept, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        listing = edits.pending_transfers(ctx.engine, cur.scope, source=client_ip(request))
        return render(request, "transfers.html", status_code=422, data=listing, errors=forms.errors_by_field(exc.issues),
                      failed=transfer_id, done="")
    return RedirectResponse(f"/transfers?done={'accepted' if accept else 'refused'}", status_code=303)


@router.post("/transfers/{transfer_id}/accept", response_class=HTMLResponse, include_in_schema=False)
async def accept_submit(request: Request, transfer_id: TransferId):
    """接收 Accept a move into a village of the township."""
    return await _decide(request, transfer_id, True)


@router.post("/transfers/{transfer_id}/refuse", response_class=HTMLResponse, include_in_schema=False)
async def refuse_submit(request: Request, transfer_id: TransferId):
    """拒收 Refuse a move with a reason."""
    return await _decide(request, transfer_id, False)


# ---------------------------------------------------------------- API

PatientEditBody = write_body(
    "PatientEditBody", "修改患者信息 Only the changed fields (import contract patients.csv names) and ``reason`` "
    "(变更原因; required when 姓名、性别、出生日期、身份证号、状态 or 知情同意 changes).",
    _specs(patient_edits.editable_specs()) + [(patient_edits.REASON_FIELD.name, patient_edits.REASON_FIELD.label)])
TransferBody = write_body("TransferBody", "迁出 The receiving township's code and the reason.",
                          [(s.name, s.label) for s in edits.TRANSFER_FIELDS])
AcceptBody = write_body("AcceptBody", "接收 The village of the receiving township.", [("village_code", "接收村(社区)")])
RefuseBody = write_body("RefuseBody", "拒收 The reason (required).", [("reason", "拒收原因")])


@api_router.patch("/api/patients/{patient_id}", summary="修改患者信息（乡镇精防医生、县级管理员）")
def patch_patient(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
                  body: PatientEditBody) -> dict:
    """修改患者信息 The changed fields only; each change is a history row; a change the schedule reads
    replans the patient at once. 422 with the validation codes (``REASON_REQUIRED`` …), 403 outside scope."""
    checked(patient_id, "patient_id")
    edit = edits.edit_patient(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip)
    return {"patient_id": patient_id, "replanned": edit.replans and bool(edit.changes),
            "changes": [{"field": c.field, "old_value": c.old, "new_value": c.new} for c in edit.changes]}


@api_router.get("/api/patients/{patient_id}/history", summary="患者变更记录（乡镇精防医生、县级管理员）")
def patient_history(cur: CurrentUser, engine: EngineDep, ip: ClientIp, patient_id: PatientId) -> dict:
    """变更记录 Every change (newest first) and every move of the patient; audited."""
    checked(patient_id, "patient_id")
    return edits.history(engine, cur.scope, patient_id, source=ip)


@api_router.post("/api/patients/{patient_id}/transfer", status_code=201, summary="迁出至其他乡镇（待接收）")
def transfer(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
             body: TransferBody) -> dict:
    """迁出 {"to_township": CODE, "reason": …}: the move waits for the receiving township (待接收)."""
    checked(patient_id, "patient_id")
    move = edits.request_transfer(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip)
    return edits.transfer_view(move)


@api_router.get("/api/transfers", summary="待接收与本地区迁移记录")
def transfers(cur: CurrentUser, engine: EngineDep, ip: ClientIp) -> dict:
    """待接收 Moves into the caller's region waiting for a decision; the region's moves both ways."""
    data = edits.pending_transfers(engine, cur.scope, source=ip)
    return {"pending": [{k: v for k, v in t.items() if k != "villages"} for t in data["pending"]],
            "transfers": data["transfers"]}


@api_router.post("/api/transfers/{transfer_id}/accept", summary="接收迁入（接收乡镇）")
def accept(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, transfer_id: TransferId,
           body: AcceptBody) -> dict:
    """接收 {"village_code": CODE}: the patient moves to that village; a first visit is due within 14 days."""
    return edits.transfer_view(edits.decide_transfer(engine, cur.scope, transfer_id, True, body_checked(body),
                                                     today=today, source=ip))


@api_router.post("/api/transfers/{transfer_id}/refuse", summary="拒绝接收（接收乡镇）")
def refuse(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, transfer_id: TransferId,
           body: RefuseBody) -> dict:
    """拒收 {"reason": …}: the patient stays with the sending township."""
    return edits.transfer_view(edits.decide_transfer(engine, cur.scope, transfer_id, False, body_checked(body),
                                                     today=today, source=ip))

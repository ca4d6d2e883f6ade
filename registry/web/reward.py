"""以奖代补页面 Guardian-years on the web: the township's payout list, enrolment, civil affairs'
decision and payment (rules.md §11, §8).

- ``/reward?year=&township=`` (page) and ``GET /api/guardian-years?year=`` (JSON): the guardian-years
  of the year in the user's region with each duty met or not (``schedules.reward_files.payout_rows``,
  the set-based twin), status, amount and payment; ``/reward/files/{pdf|xlsx}`` the payout list files.
  Readers: 民政专干, 乡镇精防医生, 县级管理员. **[decision]** The payout list of year Y is itself a
  civil-affairs list (§11): it holds the year's guardian-year holders of the region and only the
  payout's fields (name, masked ID, village, guardian, duties met or not, status, amount) — never
  diagnosis or medication. So civil affairs can pay last year's guardians in January although
  list 5 (and the patient pages) moved on to the current year.
- ``GET /api/guardian-years/{patient_id}/{year}``: one guardian-year with each duty's evidence.
- ``POST /api/guardian-years`` / the page's enrol form: enrol (乡镇精防医生, 县级管理员, 民政专干; the
  patient must be within the user's scope, ``Scope.check_patient``).
- ``POST /api/guardian-years/{patient_id}/{year}/decision`` and ``/payment`` (and the page's forms):
  民政专干 only; approve needs every duty met, withhold a reason; a second payment is a 409
  ``REWARD_ALREADY_PAID``. Every read and write is audited.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from datetime import date
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from registry import audit, guardian_years
from registry.accounts import UserRole
from registry.errors import InvalidInput, JingfangError, PermissionDenied
from registry.models import GuardianYear, Patient
from registry.profile import current_profile
from registry.regions import villages_under
from registry.storable_text import bad_text, bad_text_message
from registry.web.auth import Current, audit_refused, client_ip, current
from registry.web.deps import CurrentUser
from registry.web.pages import form_data, render
from schedules.ledger_files import region_row
from schedules.reward_files import payout_rows, write_payout

router = APIRouter()
READ_ROLES = (UserRole.CIVIL_AFFAIRS.value, UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value)
ENROL_ROLES = READ_ROLES
DECIDE_ROLES = (UserRole.CIVIL_AFFAIRS.value,)
PatientId = Annotated[str, PathParam(min_length=1, max_length=64)]
Year = Annotated[int, PathParam(ge=2000, le=2100)]


def year_arg(text: str | int | None, today: date) -> int:
    """年度 ``year`` (2000–2100; blank: this year), else InvalidInput naming the field."""
    if text in (None, ""):
        return today.year
    try:
        year = int(str(text).strip())
    except ValueError:
        year = 0
    if not 2000 <= year <= 2100:
        raise InvalidInput.single("BAD_YEAR", f"年度“{str(text)[:10]}”无效，应为 2000 至 2100", column="year",
                                  value=str(text)[:10])
    return year


def _region(request: Request, cur: Current, township: str) -> tuple[str, str | None]:
    """The region read: the user's own, or one township below a county user's region."""
    if bad_text(township, multiline=False):
        raise InvalidInput.single("BAD_TEXT", "乡镇编码含有无效字符", column="township")
    if not township or township == cur.user.region_code:
        return cur.user.region_code, cur.scope.region_level
    code, _name, level = region_row(request.app.state.ctx.engine, township[:32], township=True)
    if code not in cur.scope.region_codes:
        raise PermissionDenied(f"无权查看“{code}”：不在您的管辖范围", code="REGION_FORBIDDEN")
    return code, level


def _in_region_with_year(engine, cur: Current, patient_id: str, year: int) -> None:
    """民政 The payout list's own scope: a guardian-year of ``year`` of a patient in the user's region."""
    if bad_text(patient_id, multiline=False):
        raise PermissionDenied("无权查看该患者：患者编号无效", code="PATIENT_FORBIDDEN")
    p, g = Patient.__table__, GuardianYear.__table__
    with engine.connect() as conn:
        hit = conn.execute(sa.select(g.c.id).select_from(g.join(p, p.c.patient_id == g.c.patient_id)).where(
            g.c.patient_id == patient_id, g.c.year == year,
            p.c.village_code.in_(villages_under(cur.user.region_code, cur.scope.region_level)))).first()
    if hit is None:
        raise PermissionDenied(f"无权查看患者 {patient_id[:64]} 的 {year} 年以奖代补：不在您的管辖范围", code="PATIENT_FORBIDDEN")


def _rows(request: Request, cur: Current, year: int, township: str) -> tuple[str, list[dict]]:
    cur.scope.require_role(*READ_ROLES)
    ctx = request.app.state.ctx
    code, level = _region(request, cur, township)
    rows = payout_rows(ctx.engine, year=year, today=ctx.today(), region_code=code, level=level)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="guardian_reward",
                 object_id=f"{code}:{year}", region_code=code, detail=f"{len(rows)} 户", source=client_ip(request))
    return code, rows


def _page(request: Request, cur: Current, year: int, township: str, *, error: str = "", saved: bool = False,
          status_code: int = 200) -> HTMLResponse:
    code, rows = _rows(request, cur, year, township)
    return render(request, "reward.html", status_code=status_code, year=year, township=code, rows=rows,
                  amount=current_profile().reward.amount_for(year), can_decide=cur.user.role in DECIDE_ROLES,
                  can_enrol=cur.user.role in ENROL_ROLES,
                  is_township=cur.scope.region_level == "township" or code != cur.user.region_code,
                  csrf_token=cur.csrf_token, error=error, saved=saved)


@router.get("/reward", response_class=HTMLResponse, include_in_schema=False)
def reward_page(request: Request, year: str = "", township: str = "", saved: str = ""):
    """以奖代补 The region's guardian-years of the year with the duties, status and payment; audited."""
    cur = current(request)
    return _page(request, cur, year_arg(year[:10], request.app.state.ctx.today()), township[:32], saved=saved == "1")


@router.get("/reward/files/{fmt}", include_in_schema=False)
def reward_file(request: Request, fmt: str, year: str = "", township: str = ""):
    """以奖代补发放名单 The township's payout list as PDF or XLSX; audited as an export."""
    cur = current(request)
    cur.scope.require_role(*READ_ROLES)
    if fmt not in ("pdf", "xlsx"):
        raise InvalidInput.single("BAD_FORMAT", "格式应为 pdf 或 xlsx", column="format")
    ctx = request.app.state.ctx
    y = year_arg(year[:10], ctx.today())
    code, _level = _region(request, cur, township[:32])
    with tempfile.TemporaryDirectory() as tmp:
        result = write_payout(ctx.engine, township_code=code, year=y, today=ctx.today(), out_dir=Path(tmp),
                              actor=cur.user.username, source=client_ip(request), formats=(fmt,))
        path = result["files"][0]
        content = path.read_bytes()
    media = "application/pdf" if fmt == "pdf" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(content, media_type=media, headers={
        "Content-Disposition": f"attachment; filename=\"reward_{code}_{y}.{fmt}\"; "
                               f"filename*=UTF-8''{urllib.parse.quote(path.name)}"})


def _one(request: Request, cur: Current, patient_id: str, year: int) -> dict:
    cur.scope.require_role(*READ_ROLES)
    ctx = request.app.state.ctx
    _in_region_with_year(ctx.engine, cur, patient_id, year)
    rules = current_profile().reward
    with ctx.engine.connect() as conn:
        row, result = guardian_years.assess_one(conn, patient_id=patient_id, year=year, today=ctx.today(), rules=rules)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="guardian_year",
                 object_id=f"{patient_id}:{year}", region_code=cur.user.region_code, source=client_ip(request))
    return guardian_years.record_json(row, result, ctx.today(), rules)


def _enrol(request: Request, cur: Current, patient_id: str, year: int, enrolled_from: date | None,
           enrolled_to: date | None) -> dict:
    cur.scope.require_role(*ENROL_ROLES)
    ctx = request.app.state.ctx
    with Session(ctx.engine) as s:
        cur.scope.check_patient(s, patient_id)
    return guardian_years.enrol(ctx.engine, patient_id=patient_id, year=year, actor=cur.user.username,
                                source=client_ip(request), enrolled_from=enrolled_from, enrolled_to=enrolled_to)


def _decide(request: Request, cur: Current, patient_id: str, year: int, approve: bool, reason: str | None) -> dict:
    cur.scope.require_role(*DECIDE_ROLES)
    ctx = request.app.state.ctx
    _in_region_with_year(ctx.engine, cur, patient_id, year)
    message = bad_text_message(reason or "", multiline=True)
    if message:
        raise InvalidInput.single("BAD_TEXT", f"理由：{message}", column="reason")
    return guardian_years.decide(ctx.engine, patient_id=patient_id, year=year, approve=approve, reason=reason,
                                 actor=cur.user.username, today=ctx.today(), rules=current_profile().reward,
                                 source=client_ip(request))


def _pay(request: Request, cur: Current, patient_id: str, year: int, paid_on: date, amount: int | None) -> dict:
    cur.scope.require_role(*DECIDE_ROLES)
    ctx = request.app.state.ctx
    _in_region_with_year(ctx.engine, cur, patient_id, year)
    if paid_on > ctx.today():
        raise InvalidInput.single("PAID_IN_FUTURE", "发放日期不能晚于今天", column="paid_on",
                                  value=paid_on.isoformat())
    return guardian_years.pay(ctx.engine, patient_id=patient_id, year=year, paid_on=paid_on, amount=amount,
                              actor=cur.user.username, rules=current_profile().reward, source=client_ip(request))


# ---------------------------------------------------------------------------------- pages' forms


def _date_field(data: dict, key: str, label: str) -> date | None:
    text = (data.get(key) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidInput.single("BAD_DATE", f"{label}“{text[:20]}”无效，应为 YYYY-MM-DD", column=key,
                                  value=text[:20]) from None


def _back(year: int, township: str) -> RedirectResponse:
    query = urllib.parse.urlencode({"year": year, **({"township": township[:32]} if township else {}), "saved": "1"})
    return RedirectResponse(f"/reward?{query}", status_code=303)


def _refused(request: Request, cur: Current, year: int, township: str, exc: JingfangError) -> HTMLResponse:
    """A refused form write (nothing was written): the page again with the reason, the error's status; a
    403 (a patient or year outside the caller's scope) audited as every refusal is (issue 18, rules.md §8)."""
    if isinstance(exc, PermissionDenied):
        if cur.user.role not in READ_ROLES:
            raise exc  # no page to show: the error page (audited by the app's handler)
        audit_refused(request, exc)
    return _page(request, cur, year, township[:32], error=exc.message, status_code=exc.http_status)


@router.post("/reward/enrol", include_in_schema=False)
async def reward_enrol_form(request: Request):
    """纳入以奖代补 The page's enrol form."""
    cur = current(request)
    data = await form_data(request, cur)
    year = year_arg(data.get("year"), request.app.state.ctx.today())
    try:
        _enrol(request, cur, (data.get("patient_id") or "").strip()[:64], year,
               _date_field(data, "enrolled_from", "纳入起"), _date_field(data, "enrolled_to", "纳入止"))
    except JingfangError as exc:
        return _refused(request, cur, year, data.get("township", ""), exc)
    return _back(year, data.get("township", ""))


@router.post("/reward/{patient_id}/{year}/decision", include_in_schema=False)
async def reward_decision_form(request: Request, patient_id: PatientId, year: Year):
    """核准或不予发放 The page's decision form (民政专干)."""
    cur = current(request)
    data = await form_data(request, cur)
    try:
        _decide(request, cur, patient_id, year, data.get("decision") == "approve", data.get("reason"))
    except JingfangError as exc:
        return _refused(request, cur, year, data.get("township", ""), exc)
    return _back(year, data.get("township", ""))


@router.post("/reward/{patient_id}/{year}/payment", include_in_schema=False)
async def reward_payment_form(request: Request, patient_id: PatientId, year: Year):
    """记录发放 The page's payment form (民政专干)."""
    cur = current(request)
    data = await form_data(request, cur)
    try:
        amount_text = (data.get("paid_amount") or "").strip()
        if amount_text and not amount_text.isdigit():
            raise InvalidInput.single("BAD_AMOUNT", f"发放金额“{amount_text[:12]}”无效，应为正整数（元）",
                                      column="paid_amount", value=amount_text[:12])
        paid_on = _date_field(data, "paid_on", "发放日期") or request.app.state.ctx.today()
        _pay(request, cur, patient_id, year, paid_on, int(amount_text) if amount_text else None)
    except JingfangError as exc:
        return _refused(request, cur, year, data.get("township", ""), exc)
    return _back(year, data.get("township", ""))


# ---------------------------------------------------------------------------------- JSON API


class EnrolBody(BaseModel):
    """纳入以奖代补 A patient's guardian-year (the enrolled part defaults to the whole year)."""
    model_config = ConfigDict(strict=True, extra="forbid")
    patient_id: str = Field(min_length=1, max_length=64)
    year: int = Field(ge=2000, le=2100)
    enrolled_from: date | None = Field(default=None, strict=False)  # an ISO date string in JSON
    enrolled_to: date | None = Field(default=None, strict=False)


class DecisionBody(BaseModel):
    """核准或不予发放 ``approve`` true or false; a reason is required to withhold."""
    model_config = ConfigDict(strict=True, extra="forbid")
    approve: bool
    reason: str | None = Field(default=None, max_length=500)


class PaymentBody(BaseModel):
    """记录发放 The payment date and amount (元; default: the county's amount for the year)."""
    model_config = ConfigDict(strict=True, extra="forbid")
    paid_on: date = Field(strict=False)  # an ISO date string in JSON
    paid_amount: int | None = Field(default=None, ge=1, le=1_000_000)


@router.get("/api/guardian-years", summary="以奖代补发放名单（民政专干、乡镇精防医生、县级管理员）")
def guardian_years_api(request: Request, cur: CurrentUser, year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
                       township: Annotated[str, Query(max_length=32)] = "") -> list[dict]:
    """以奖代补 The year's guardian-years of the user's region (or one township): duties met or not,
    status, amount and payment."""
    _code, rows = _rows(request, cur, year_arg(year, request.app.state.ctx.today()), township)
    keys = ("patient_id", "village", "period", "duties", "eligible_flag", "status_code", "amount", "paid", "reason")
    return [{("eligible" if k == "eligible_flag" else "status" if k == "status_code" else k): r[k] for k in keys}
            for r in rows]


@router.get("/api/guardian-years/{patient_id}/{year}", summary="一个以奖代补年度及各项职责的依据")
def guardian_year_api(request: Request, cur: CurrentUser, patient_id: PatientId, year: Year) -> dict:
    """以奖代补年度 One guardian-year with each duty met or not and its evidence."""
    return _one(request, cur, patient_id, year)


@router.post("/api/guardian-years", summary="纳入以奖代补（乡镇精防医生、县级管理员、民政专干）")
def enrol_api(request: Request, cur: CurrentUser, body: EnrolBody) -> dict:
    """纳入以奖代补 Enrol the patient's guardian for the year; 409 ``GUARDIAN_YEAR_EXISTS`` when already enrolled."""
    return _enrol(request, cur, body.patient_id, body.year, body.enrolled_from, body.enrolled_to)


@router.post("/api/guardian-years/{patient_id}/{year}/decision", summary="核准或不予发放（民政专干）")
def decision_api(request: Request, cur: CurrentUser, patient_id: PatientId, year: Year, body: DecisionBody) -> dict:
    """核准或不予发放 Civil affairs' decision on the final assessment."""
    return _decide(request, cur, patient_id, year, body.approve, body.reason)


@router.post("/api/guardian-years/{patient_id}/{year}/payment", summary="记录发放（民政专干）")
def payment_api(request: Request, cur: CurrentUser, patient_id: PatientId, year: Year, body: PaymentBody) -> dict:
    """记录发放 The payment date and amount; 409 ``REWARD_ALREADY_PAID`` for a second payment."""
    return _pay(request, cur, patient_id, year, body.paid_on, body.paid_amount)

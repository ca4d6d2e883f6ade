"""联合入户预约 Appointment routes: the doctor proposes, the named members answer (rules.md §6.1; issue 14).

* ``POST /tasks/{task_id}/appointments`` (form on the patient page) and
  ``POST /api/tasks/{task_id}/appointments`` — the township doctor of the patient proposes a local
  date and time (and a place note) for an open joint task. One transaction: the appointment, the
  identifier-free message for the township's webhooks (``schedules.notify.queue_appointment_message``:
  counts and a link to ``/mylist``) and the audit row; a refused proposal writes nothing.
* ``POST /appointments/{appointment_id}/reply`` (form on ``/mylist``) and
  ``POST /api/appointments/{appointment_id}/reply`` — a linked account answers for its own member
  only (a responsible member of the task, ``registry.appointments.reply``); anyone else gets 403.

The rules live in ``registry.appointments``; this module does scope, parsing, audit and messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from registry import appointments, audit, clock
from registry.accounts import UserRole
from registry.codes import AppointmentAnswer, TeamRole
from registry.errors import InvalidInput, PermissionDenied
from registry.models import VisitTask
from registry.web.api import ERRORS
from registry.web.auth import client_ip, current
from registry.web.deps import ClientIp, Ctx, CurrentUser, api_user
from registry.web.pages import form_data, my_list, patient_page_again
from registry.web.scopes import Scope
from schedules.notify import queue_appointment_message

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", dependencies=[Depends(api_user)], responses=ERRORS)
TaskId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
AppointmentId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def parse_when(raw: str | None) -> datetime:
    """预约时间 'YYYY-MM-DDTHH:MM' (or with a space) as a local datetime; ``BAD_DATETIME`` otherwise."""
    text = (raw or "").strip()
    try:
        if not 16 <= len(text) <= 19:
            raise ValueError
        return datetime.fromisoformat(text).replace(second=0, microsecond=0, tzinfo=None)
    except ValueError:
        raise InvalidInput.single("BAD_DATETIME", "预约时间：应为 YYYY-MM-DD HH:MM", column="proposed_at",
                                  value=text[:30]) from None


def propose(ctx, scope: Scope, task_id: int, raw_when: str | None, place: str | None, *, source: str | None) -> dict:
    """提出预约 The township doctor's proposal (rules.md §6.1), one transaction with its message and audit row."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    when = parse_when(raw_when)
    now_local = datetime.combine(ctx.today(), clock.local_time())
    with Session(ctx.engine) as session:
        task = session.get(VisitTask, task_id)
        if task is None:
            raise PermissionDenied(f"无权操作任务 {task_id}", code="TASK_FORBIDDEN")
        try:
            patient = scope.check_patient(session, task.patient_id)
        except PermissionDenied:  # never name the patient of a task the caller cannot see
            raise PermissionDenied(f"无权操作任务 {task_id}", code="TASK_FORBIDDEN") from None
        conn = session.connection()
        out = appointments.propose(conn, task_id=task_id, proposed_at=when, place=place, actor=scope.user.username,
                                   now_local=now_local)
        township, _name = appointments.township_of(conn, task.patient_id)
        named = sorted({m for _r, m in out["recipients"] if m})
        out["queued"] = queue_appointment_message(conn, township_code=township, key=f"appointment:{out['id']}",
                                                  members=len(named)) if township else 0
        audit.record(conn, actor=scope.user.username, action="write", object_type="appointment",
                     object_id=f"{task.patient_id}/{task_id}/{out['id']}", region_code=patient.village_code,
                     detail=f"预约联合入户 {when:%Y-%m-%d %H:%M}，待{len(named)}名成员答复", source=source)
        session.commit()
    out["proposed_at"] = when.strftime("%Y-%m-%dT%H:%M")
    out["recipients"] = [{"role": r, "member_id": m} for r, m in out["recipients"]]
    return out


def answer(ctx, scope: Scope, appointment_id: int, answer_code: str | None, reason: str | None, *,
           source: str | None) -> dict:
    """答复预约 A linked account's answer for its own member; others 403 (rules.md §6.1)."""
    member_id = getattr(scope.user, "member_id", None)
    if not member_id:
        raise PermissionDenied("只有关联到团队成员的账号可以答复预约", code="APPOINTMENT_FORBIDDEN")
    with Session(ctx.engine) as session:
        conn = session.connection()
        out = appointments.reply(conn, appointment_id=appointment_id, member_id=member_id, answer=answer_code,
                                 reason=reason, actor=scope.user.username)
        audit.record(conn, actor=scope.user.username, action="write", object_type="appointment_reply",
                     object_id=f"{out['patient_id']}/{appointment_id}/{member_id}", region_code=scope.user.region_code,
                     detail=f"{TeamRole(out['role']).label}答复：{AppointmentAnswer(out['answer']).label}", source=source)
        session.commit()
    return {k: v for k, v in out.items() if k != "patient_id"}


# ------------------------------------------------------------------------------------ pages


def _task_patient(ctx, scope: Scope, task_id: int) -> str:
    """The patient of a task the doctor may plan (``TASK_FORBIDDEN`` otherwise, never naming it)."""
    with Session(ctx.engine) as session:
        task = session.get(VisitTask, task_id)
        try:
            if task is None:
                raise PermissionDenied("")
            scope.check_patient(session, task.patient_id)
        except PermissionDenied:
            raise PermissionDenied(f"无权操作任务 {task_id}", code="TASK_FORBIDDEN") from None
        return task.patient_id


@router.post("/tasks/{task_id}/appointments")
async def propose_submit(request: Request, task_id: TaskId):
    """提出预约 The form on the patient page's task. A refused proposal (a time in the past, a closed
    task, …) shows the patient page again with the message under that task's form and the time and
    place typed kept (422), not an error page."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        out = propose(ctx, cur.scope, task_id, data.get("proposed_at"), data.get("place"), source=client_ip(request))
    except InvalidInput as exc:
        patient_id = _task_patient(ctx, cur.scope, task_id)
        return patient_page_again(request, cur, patient_id,
                                  appointment_errors={task_id: [i.message for i in exc.issues]},
                                  appointment_values={task_id: data})
    return RedirectResponse(f"/patients/{out['patient_id']}#task-{task_id}", status_code=303)


@router.post("/appointments/{appointment_id}/reply")
async def reply_submit(request: Request, appointment_id: AppointmentId):
    """答复预约 The form on ``/mylist``. A refused answer (不能参加 without a reason) shows the list
    again with the message next to that appointment's form and the answer and reason kept (422)."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        answer(ctx, cur.scope, appointment_id, data.get("answer"), data.get("reason"), source=client_ip(request))
    except InvalidInput as exc:
        return my_list(request, cur, status_code=422,
                       reply_errors={appointment_id: [i.message for i in exc.issues]},
                       reply_values={appointment_id: data})
    return RedirectResponse("/mylist#appointments", status_code=303)


# ------------------------------------------------------------------------------------ API


class ProposalBody(BaseModel):
    """联合入户预约 The proposed local date and time, and an optional place note."""
    model_config = ConfigDict(strict=True, extra="forbid")
    proposed_at: str = Field(max_length=19, title="预约时间", description="本地时间 YYYY-MM-DDTHH:MM")
    place: str | None = Field(default=None, max_length=200, title="地点")


class ReplyBody(BaseModel):
    """预约答复 confirmed, or declined with a reason."""
    model_config = ConfigDict(strict=True, extra="forbid")
    answer: str = Field(max_length=16, title="答复", description="confirmed / declined")
    reason: str | None = Field(default=None, max_length=200, title="原因", description="不能参加时必填")


@api_router.post("/tasks/{task_id}/appointments", status_code=201, summary="提出联合入户预约（乡镇精防医生）")
def propose_api(cur: CurrentUser, ctx: Ctx, ip: ClientIp, task_id: TaskId, body: ProposalBody) -> dict:
    """提出预约 Propose a date and time for an open joint task; the named members are told (no identifiers)."""
    return propose(ctx, cur.scope, task_id, body.proposed_at, body.place, source=ip)


@api_router.post("/appointments/{appointment_id}/reply", summary="答复联合入户预约（责任人本人）")
def reply_api(cur: CurrentUser, ctx: Ctx, ip: ClientIp, appointment_id: AppointmentId, body: ReplyBody) -> dict:
    """答复预约 The linked member's own answer: confirmed, or declined with a reason."""
    return answer(ctx, cur.scope, appointment_id, body.answer, body.reason, source=ip)

"""一历读取 The patient read shared by the page and the API (rules.md §7, §8).

``patient_read(request, patient_id)`` is the one way the web reads a patient's record: the
session, the scope check (403 ``PATIENT_FORBIDDEN`` for a patient outside scope or unknown), the
record shaped for the caller's role and the read's audit row in the read's own transaction.
Doctors and county admins on PostgreSQL take the one-statement read (``registry.web.fast``);
list roles, SQLite and odd tokens or patient numbers take the generic ORM path
(``queries.patient_record``). Both give the same record (tests/test_web_fast.py).
``patient_page_read`` adds the doctor's panels of the page (团队指派, 联合入户预约), from the same
statement on the fast path.
"""

from __future__ import annotations

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from registry import appointments, audit
from registry.accounts import UserRole
from registry.web import fast, queries, writes
from registry.web.auth import Current, client_ip, current


async def patient_read(request, patient_id: str) -> tuple[Current, dict]:
    """一历 (Current, record) for ``patient_id``, audited; raises NotAuthenticated / PermissionDenied."""
    fast_read = await fast.patient_page_async(request, patient_id, client_ip(request))
    if fast_read is not None:  # PostgreSQL, doctor or admin: one statement with its audit row; see fast.py
        return fast_read
    return await run_in_threadpool(_generic_read, request, patient_id)


async def patient_page_read(request, patient_id: str) -> tuple[Current, dict, dict]:
    """一历页 (Current, record, panels) for the patient page: ``patient_read`` and the doctor's panels
    (``{"assignments", "appointment_tasks"}``: 团队指派 and 联合入户预约, rules.md §6.1). On the fast path
    the panels come from the record's one statement; otherwise the generic reads run in the thread
    pool (never on the event loop)."""
    fast_read = await fast.patient_page_async(request, patient_id, client_ip(request), panels=True)
    if fast_read is not None:
        return fast_read
    return await run_in_threadpool(_generic_page_read, request, patient_id)


def _generic_page_read(request, patient_id: str) -> tuple[Current, dict, dict]:
    cur, record = _generic_read(request, patient_id)
    return cur, record, panels_of(request.app.state.ctx, cur, patient_id)


def panels_of(ctx, cur: Current, patient_id: str) -> dict:
    """The doctor's panels of the patient page the generic way (``writes.assignments_of``,
    ``appointments.joint_tasks_of_patient``); ``fast.no_panels()`` for every other role."""
    if cur.user.role != UserRole.TOWNSHIP_DOCTOR.value:
        return fast.no_panels()
    with ctx.engine.connect() as conn:
        tasks = appointments.joint_tasks_of_patient(conn, patient_id)
    return {"assignments": writes.assignments_of(ctx.engine, cur.scope, patient_id), "appointment_tasks": tasks}


def _generic_read(request, patient_id: str) -> tuple[Current, dict]:
    """The generic path: one connection and transaction for the session lookup, the record's reads
    and its audit row."""
    ctx = request.app.state.ctx
    source = client_ip(request)
    with Session(ctx.engine, expire_on_commit=False) as session:
        cur = current(request, session)

        def audit_read(conn, patient) -> None:  # rules.md §8: in the read's own transaction
            audit.record(conn, actor=cur.user.username, action="read", object_type="patient", object_id=patient_id,
                         region_code=patient.village_code, source=source)

        record = queries.patient_record(session, cur.scope, ctx.tree, patient_id, as_of=ctx.today(), on_read=audit_read)
    return cur, record

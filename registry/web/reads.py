"""一历读取 The patient read shared by the page and the API (rules.md §7, §8).

``patient_read(request, patient_id)`` is the one way the web reads a patient's record: the
session, the scope check (403 ``PATIENT_FORBIDDEN`` for a patient outside scope or unknown), the
record shaped for the caller's role and the read's audit row in the read's own transaction.
Doctors and county admins on PostgreSQL take the one-statement read (``registry.web.fast``);
list roles, SQLite and odd tokens or patient numbers take the generic ORM path
(``queries.patient_record``). Both give the same record (tests/test_web_fast.py).
"""

from __future__ import annotations

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from registry import audit
from registry.web import fast, queries
from registry.web.auth import Current, client_ip, current


async def patient_read(request, patient_id: str) -> tuple[Current, dict]:
    """一历 (Current, record) for ``patient_id``, audited; raises NotAuthenticated / PermissionDenied."""
    fast_read = await fast.patient_page_async(request, patient_id, client_ip(request))
    if fast_read is not None:  # PostgreSQL, doctor or admin: one statement with its audit row; see fast.py
        return fast_read
    return await run_in_threadpool(_generic_read, request, patient_id)


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

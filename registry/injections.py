"""长效针剂注射记录 The LAI history and the plan's last injection (rules.md §5; contract.md injections.csv).

One rule, one home: the plan's last injection (``patient.lai_last_on``, which the scheduler's
injection task keys off) is the latest ``injection`` row, and every plan's last injection is a row.
Both statements are set-based; the importer runs them over the register after writing, the web's
registration and injection form over their one patient (``patient_ids``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import models
from registry.models import utcnow


def sync_last_injection(conn: Connection, patient_ids: list[str] | None = None) -> int:
    """末次注射同步 ``patient.lai_last_on`` = the latest injection row, for patients on a plan whose stored
    last injection is older than their latest row (contract.md: the plan's last injection is the latest
    row; the scheduler keys the injection task off ``lai_last_on``, rules.md §5). One UPDATE over the
    register (or ``patient_ids``); returns the patients changed."""
    p, i = models.Patient.__table__, models.Injection.__table__
    latest = sa.select(sa.func.max(i.c.given_on)).where(i.c.patient_id == p.c.patient_id).scalar_subquery()
    newer = sa.exists().where(i.c.patient_id == p.c.patient_id,
                              sa.or_(p.c.lai_last_on.is_(None), i.c.given_on > p.c.lai_last_on))
    stmt = sa.update(p).where(p.c.lai_drug.is_not(None), newer).values(lai_last_on=latest, updated_at=utcnow())
    if patient_ids is not None:
        stmt = stmt.where(p.c.patient_id.in_(patient_ids))
    return conn.execute(stmt).rowcount


def record_last_injection(conn: Connection, patient_ids: list[str] | None = None) -> int:
    """末次注射记录 Every plan's last injection (``patient.lai_last_on``) is an ``injection`` row: one INSERT
    of the missing ones (the plan's drug and dose), over the register (or ``patient_ids``). Returns the
    rows added."""
    p, i = models.Patient.__table__, models.Injection.__table__
    missing = (sa.select(p.c.patient_id, p.c.lai_last_on, p.c.lai_drug, p.c.lai_dose, sa.literal(utcnow(), models.UTCDateTime()))
               .where(p.c.lai_last_on.is_not(None),
                      ~sa.exists().where(i.c.patient_id == p.c.patient_id, i.c.given_on == p.c.lai_last_on)))
    if patient_ids is not None:
        missing = missing.where(p.c.patient_id.in_(patient_ids))
    return conn.execute(i.insert().from_select(["patient_id", "given_on", "drug", "dose", "updated_at"], missing)).rowcount

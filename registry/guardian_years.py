"""以奖代补监护年度 Enrolment, assessment, civil affairs' decision and the payment of guardian-years
(rules.md §11). Each write is one transaction together with its audit row (rules.md §8); a refused
write writes nothing.

- ``enrol``: a guardian-year for (patient, year); the enrolled part defaults to the whole year from
  the later of Jan 1 and the registration date. A second enrolment of the same year is a Conflict
  ``GUARDIAN_YEAR_EXISTS`` (the import skips it: ``enrol_for_import``).
- ``decide``: civil affairs approves or withholds a **final** assessment (after the year): approval
  needs every duty met (``REWARD_NOT_ELIGIBLE`` otherwise), withholding needs a reason
  (``REWARD_REASON_REQUIRED``); a paid year cannot be decided again (Conflict ``REWARD_ALREADY_PAID``).
- ``pay``: records the payment date and amount (default: the county's amount for the year,
  ``RewardRules.amount_for``) of an approved year. **Nothing is paid twice**: a second payment is a
  Conflict ``REWARD_ALREADY_PAID``; the UPDATE itself only changes an ``approved`` row, so two
  concurrent payments cannot both succeed.
"""

from __future__ import annotations

from datetime import date
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry import audit
from registry.codes import GuardianYearStatus
from registry.errors import Conflict, InvalidInput, NotFound
from registry.guardian_reward import Assessment, assess, check_period, effective_status, is_provisional, year_bounds
from registry.emergencies import reward_event_days
from registry.models import Emergency, FollowUp, GuardianYear, Patient, utcnow
from registry.profile import RewardRules

REASON_MAX = 500


def _patient(conn: Connection, patient_id: str):
    p = Patient.__table__
    row = conn.execute(sa.select(p.c.patient_id, p.c.registered_on, p.c.village_code)
                       .where(p.c.patient_id == patient_id)).first()
    if row is None:
        raise NotFound(message=f"患者 {patient_id[:64]} 不存在", code="PATIENT_NOT_FOUND")
    return row


def _row(conn: Connection, patient_id: str, year: int, *, lock: bool = False):
    g = GuardianYear.__table__
    stmt = sa.select(g).where(g.c.patient_id == patient_id, g.c.year == year)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(message=f"患者 {patient_id[:64]} 没有 {year} 年的以奖代补记录", code="GUARDIAN_YEAR_NOT_FOUND")
    return row


def default_period(year: int, registered_on: date) -> tuple[date, date]:
    """纳入期间 The whole year, from registration when the patient was registered during it."""
    first, last = year_bounds(year)
    return max(first, registered_on) if registered_on <= last else first, last


def enrol(engine: Engine, *, patient_id: str, year: int, actor: str, source: str | None = None,
          enrolled_from: date | None = None, enrolled_to: date | None = None) -> dict:
    """纳入以奖代补 Enrol the patient's guardian for ``year`` (audited); Conflict when already enrolled."""
    with engine.begin() as conn:
        pat = _patient(conn, patient_id)
        if not 2000 <= year <= 2100:
            check_period(year, date(2000, 1, 1), date(2000, 1, 1))  # raises BAD_YEAR
        start, end = default_period(year, pat.registered_on)
        start, end = enrolled_from or start, enrolled_to or end
        check_period(year, start, end)
        row = _insert(conn, patient_id=patient_id, year=year, start=start, end=end, actor=actor)
        if row is None:
            raise Conflict(message=f"患者 {patient_id[:64]} 已纳入 {year} 年以奖代补", code="GUARDIAN_YEAR_EXISTS")
        p = Patient.__table__  # the patient's 以奖代补 flag (pages, import) follows an enrolment from any path
        conn.execute(sa.update(p).where(p.c.patient_id == patient_id, p.c.guardian_reward.is_not(True))
                     .values(guardian_reward=True, updated_at=utcnow()))
        audit.record(conn, actor=actor, action="write", object_type="guardian_year", object_id=f"{patient_id}:{year}",
                     detail=f"纳入以奖代补 {start.isoformat()} 至 {end.isoformat()}", source=source)
    return {"patient_id": patient_id, "year": year, "enrolled_from": start.isoformat(), "enrolled_to": end.isoformat(),
            "status": GuardianYearStatus.PROVISIONAL.value}


def _insert(conn: Connection, *, patient_id: str, year: int, start: date, end: date, actor: str):
    """Insert unless (patient, year) exists: the new id, or None (a savepoint keeps the transaction usable)."""
    g = GuardianYear.__table__
    if conn.execute(sa.select(g.c.id).where(g.c.patient_id == patient_id, g.c.year == year)).first() is not None:
        return None
    try:
        with conn.begin_nested():
            now = utcnow()
            return conn.execute(g.insert().values(
                patient_id=patient_id, year=year, enrolled_from=start, enrolled_to=end,
                status=GuardianYearStatus.PROVISIONAL.value, enrolled_by=actor[:100], created_at=now, updated_at=now,
            )).inserted_primary_key[0]
    except sa.exc.IntegrityError:
        return None  # a concurrent enrolment won


def enrol_for_import(conn: Connection, rows: Iterable[tuple[str, date]], *, year: int, actor: str) -> int:
    """导入纳入 The import's ``guardian_reward`` = 1 rows (patient id, registration date): a guardian-year
    for ``year`` each (the whole year, from registration), set-based in the import's transaction; an
    existing one is kept as it is, a patient registered after the year gets none. Returns how many
    were new."""
    g = GuardianYear.__table__
    wanted = {pid: registered_on for pid, registered_on in rows if registered_on <= year_bounds(year)[1]}
    if not wanted:
        return 0
    existing: set[str] = set()
    ids = sorted(wanted)
    for i in range(0, len(ids), 5000):
        existing |= set(conn.execute(sa.select(g.c.patient_id).where(g.c.year == year,
                                                                       g.c.patient_id.in_(ids[i:i + 5000]))).scalars())
    now = utcnow()
    new = []
    for pid in ids:
        if pid not in existing:
            start, end = default_period(year, wanted[pid])
            new.append({"patient_id": pid, "year": year, "enrolled_from": start, "enrolled_to": end,
                        "status": GuardianYearStatus.PROVISIONAL.value, "enrolled_by": actor[:100],
                        "created_at": now, "updated_at": now})
    if new:
        conn.execute(g.insert(), new)
    return len(new)


def follow_ups_of(conn: Connection, patient_id: str, year: int) -> list:
    f = FollowUp.__table__
    first, last = year_bounds(year)
    return list(conn.execute(sa.select(f).where(f.c.patient_id == patient_id, f.c.visit_on >= first,
                                                f.c.visit_on <= last)))


def assess_one(conn: Connection, *, patient_id: str, year: int, today: date, rules: RewardRules,
               emergencies: Iterable[date] | None = None) -> tuple[object, Assessment]:
    """One guardian-year and its assessment as of ``today`` (``registry.guardian_reward.assess``);
    ``emergencies`` default: the patient's own emergency records of situation 2 (rules.md §11 duty 2)."""
    pat = _patient(conn, patient_id)
    if emergencies is None:
        e = Emergency.__table__
        emergencies = reward_event_days(conn.execute(sa.select(e.c.situations, e.c.started_at, e.c.reported_at)
                                                     .where(e.c.patient_id == patient_id)))
    row = _row(conn, patient_id, year)
    result = assess(patient_id=patient_id, year=year, enrolled_from=row.enrolled_from, enrolled_to=row.enrolled_to,
                    registered_on=pat.registered_on, follow_ups=follow_ups_of(conn, patient_id, year), today=today,
                    rules=rules, emergencies=emergencies)
    return row, result


def record_json(row, result: Assessment, today: date, rules: RewardRules) -> dict:
    """The API's guardian-year: period, status, decision, payment, amount and the duties with evidence."""
    return {
        "patient_id": row.patient_id, "year": row.year,
        "enrolled_from": row.enrolled_from.isoformat(), "enrolled_to": row.enrolled_to.isoformat(),
        "status": effective_status(row.status, row.year, today).value,
        "status_label": effective_status(row.status, row.year, today).label,
        "decided_by": row.decided_by, "reason": row.reason,
        "paid_on": row.paid_on.isoformat() if row.paid_on else None, "paid_amount": row.paid_amount,
        "amount": rules.amount_for(row.year), **{k: v for k, v in result.as_json().items() if k not in ("patient_id", "year")},
    }


def decide(engine: Engine, *, patient_id: str, year: int, approve: bool, reason: str | None, actor: str, today: date,
           rules: RewardRules, source: str | None = None, emergencies: Iterable[date] | None = None) -> dict:
    """核准或不予发放 Civil affairs' decision on a final assessment (audited)."""
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise InvalidInput.single("REASON_TOO_LONG", f"理由不能超过 {REASON_MAX} 字", column="reason")
    if not approve and not reason:
        raise InvalidInput.single("REWARD_REASON_REQUIRED", "不予发放必须填写理由", column="reason")
    with engine.begin() as conn:
        row, result = assess_one(conn, patient_id=patient_id, year=year, today=today, rules=rules, emergencies=emergencies)
        if row.status == GuardianYearStatus.PAID.value:
            raise Conflict(message=f"患者 {patient_id[:64]} 的 {year} 年以奖代补已于 {row.paid_on} 发放，不能再改",
                           code="REWARD_ALREADY_PAID")
        if is_provisional(year, today):
            raise InvalidInput.single("REWARD_YEAR_NOT_OVER", f"{year} 年尚未结束，评定为暂评，不能核准或不予发放",
                                      column="year", value=year)
        if approve and not result.eligible:
            unmet = "、".join(d.duty.label for d in result.duties if not d.met)
            raise InvalidInput.single("REWARD_NOT_ELIGIBLE", f"未履行职责（{unmet}），不能核准发放", column="status")
        status = GuardianYearStatus.APPROVED if approve else GuardianYearStatus.WITHHELD
        g = GuardianYear.__table__
        now = utcnow()
        done = conn.execute(g.update().where(g.c.id == row.id, g.c.status != GuardianYearStatus.PAID.value).values(
            status=status.value, decided_by=actor[:100], decided_at=now, reason=reason or None, updated_at=now))
        if done.rowcount != 1:
            raise Conflict(message=f"患者 {patient_id[:64]} 的 {year} 年以奖代补已发放", code="REWARD_ALREADY_PAID")
        audit.record(conn, actor=actor, action="write", object_type="guardian_year", object_id=f"{patient_id}:{year}",
                     detail=f"{status.label}" + (f"：{reason}" if reason else ""), source=source)
    return {"patient_id": patient_id, "year": year, "status": status.value, "reason": reason or None}


def pay(engine: Engine, *, patient_id: str, year: int, paid_on: date, actor: str, rules: RewardRules,
        amount: int | None = None, source: str | None = None) -> dict:
    """记录发放 The payment date and amount of an approved guardian-year (audited); never twice."""
    amount = rules.amount_for(year) if amount is None else amount
    if not 0 < amount <= 1_000_000:
        raise InvalidInput.single("BAD_AMOUNT", f"发放金额“{amount}”无效，应为正整数（元）",
                                  column="paid_amount", value=amount)
    if not date(2000, 1, 1) <= paid_on <= date(2100, 12, 31):
        raise InvalidInput.single("BAD_DATE", "发放日期无效", column="paid_on", value=paid_on.isoformat())
    with engine.begin() as conn:
        row = _row(conn, patient_id, year, lock=True)
        g = GuardianYear.__table__
        done = conn.execute(g.update().where(g.c.id == row.id, g.c.status == GuardianYearStatus.APPROVED.value).values(
            status=GuardianYearStatus.PAID.value, paid_on=paid_on, paid_amount=amount, updated_at=utcnow()))
        if done.rowcount != 1:
            current = conn.execute(sa.select(g.c.status, g.c.paid_on).where(g.c.id == row.id)).first()
            if current.status == GuardianYearStatus.PAID.value:
                raise Conflict(message=f"患者 {patient_id[:64]} 的 {year} 年以奖代补已于 {current.paid_on} 发放，不能重复发放",
                               code="REWARD_ALREADY_PAID")
            raise InvalidInput.single("REWARD_NOT_APPROVED", f"{year} 年以奖代补尚未核准，不能记录发放", column="status",
                                      value=current.status)
        audit.record(conn, actor=actor, action="write", object_type="guardian_year", object_id=f"{patient_id}:{year}",
                     detail=f"发放 {amount} 元，{paid_on.isoformat()}", source=source)
    return {"patient_id": patient_id, "year": year, "status": GuardianYearStatus.PAID.value,
            "paid_on": paid_on.isoformat(), "paid_amount": amount}

"""在册 / 在管 / 居家 Who is on the register, managed, at home, and owed tasks (rules.md §1, §5; indicators.md).

The one home of each rule, Python and its SQL twin side by side (see ``registry.rules``). The
SQL twins take a ``patient`` table or alias ``p`` (``*_sql(p, as_of)``) or a ``follow_up`` one
``f``; ``tests/test_rule_twins.py`` compares each pair on random rows on both databases.

- 在册 at D (rules.md §1, indicators.md): registered on or before D and neither dead nor moved
  out on or before D. (A status other than ``active`` always carries its date: the
  ``status_on_required`` constraint; a missing date counts as "already left".)
- eligible for tasks (rules.md §5, last row): 在册, and not a type-2 (六类病种登记) patient who
  refuses community management (知情同意 0): such a patient stays 在册 but gets no tasks.
- owed the annual health check (rules.md §5 "every 在册 patient with consent"): eligible and with
  consent (知情同意 1), whatever the report type: a type-1 (发病报告) patient without consent is
  managed (visits continue, rules.md §1) but gets no health check; an open one is cancelled
  ``consent_refused`` (``health_check_cancel_reason``).
- a visit task's basis stands (rules.md §5, session 13): a first visit is owed for the patient's
  registration date, any other visit task for a follow-up attempt dated on or after it (the
  attempts that count, ``registry.attempts``). A task whose basis no longer stands — a transfer in
  or re-registration set a later date, or the date was corrected — is cancelled ``re_registered``
  (``codes.CloseReason``), not closed as done: no follow-up closed it (``basis_stands``).
- 在管 (indicators.md): 在册 with at least one complete follow-up (``registry.rules.is_complete``)
  in the window W; 居家: 在管 whose latest complete follow-up in W (``registry.attempts``) is
  not 目前正在住院.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa

from registry.codes import CloseReason, Consent, HospitalStatus, PatientStatus, ReportType, TaskKind
from registry.rules import is_complete


def has_left(status: str, status_on: date | None, as_of: date) -> bool:
    """死亡/迁出 Dead or moved out on or before ``as_of`` (rules.md §1)."""
    return status != PatientStatus.ACTIVE and (status_on is None or status_on <= as_of)


def left_sql(p, as_of: date) -> sa.ColumnElement[bool]:
    """死亡/迁出 SQL twin of ``has_left``."""
    return sa.and_(p.c.status != PatientStatus.ACTIVE.value, sa.or_(p.c.status_on.is_(None), p.c.status_on <= as_of))


def in_register(registered_on: date, status: str, status_on: date | None, as_of: date) -> bool:
    """在册 Registered on or before ``as_of`` and not dead or moved out by then (rules.md §1)."""
    return registered_on <= as_of and not has_left(status, status_on, as_of)


def in_register_sql(p, as_of: date) -> sa.ColumnElement[bool]:
    """在册 SQL twin of ``in_register``."""
    return sa.and_(p.c.registered_on <= as_of, sa.not_(left_sql(p, as_of)))


def consent_refused(report_type: int, consent: int) -> bool:
    """拒绝管理 A type-2 (六类病种登记) patient who refuses community management (rules.md §1, §5)."""
    return report_type == ReportType.REGISTRATION and consent == Consent.REFUSES


def consent_refused_sql(p) -> sa.ColumnElement[bool]:
    """拒绝管理 SQL twin of ``consent_refused``."""
    return sa.and_(p.c.report_type == ReportType.REGISTRATION.value, p.c.consent == Consent.REFUSES.value)


def consents(consent: int) -> bool:
    """知情同意 The patient agrees to community management (consent 1), whatever the report type:
    the annual health check needs it (rules.md §5)."""
    return consent == Consent.AGREES


def consents_sql(p) -> sa.ColumnElement[bool]:
    """知情同意 SQL twin of ``consents``."""
    return p.c.consent == Consent.AGREES.value


CONSENT_REFUSED = CloseReason.CONSENT_REFUSED.value  # the cancel reason (visit_task.close_reason) of a refused consent
RE_REGISTERED = CloseReason.RE_REGISTERED.value  # the cancel reason of a visit task whose basis no longer stands


def cancel_reason(status: str, status_on: date | None, report_type: int, consent: int, as_of: date) -> str | None:
    """取消原因 Why a registered patient gets no tasks as of ``as_of`` (rules.md §5 last row), or None:
    the status (``dead`` / ``moved_out``) or ``consent_refused``."""
    if has_left(status, status_on, as_of):
        return status
    if consent_refused(report_type, consent):
        return CONSENT_REFUSED
    return None


def cancel_reason_sql(p, as_of: date) -> sa.ColumnElement:
    """取消原因 SQL twin of ``cancel_reason`` (NULL when there is none)."""
    return sa.case((left_sql(p, as_of), p.c.status), (consent_refused_sql(p), CONSENT_REFUSED), else_=sa.null())


def basis_stands(kind: str, basis_on: date, registered_on: date) -> bool:
    """任务依据有效 Whether a visit task (``kind`` one of ``codes.VISIT_KINDS``) with basis date
    ``basis_on`` belongs to the registration of ``registered_on`` (rules.md §5): a first visit to that
    very date ("newly registered or transferred in … registered + 14 days"), any other visit task to
    a follow-up dated on or after it (attempts before registration do not count)."""
    if kind == TaskKind.FIRST_VISIT:
        return basis_on == registered_on
    return basis_on >= registered_on


def basis_stands_sql(t, p) -> sa.ColumnElement[bool]:
    """任务依据有效 SQL twin of ``basis_stands`` (``t``: a ``visit_task`` table or alias of a visit
    kind, ``p``: its patient)."""
    first = t.c.kind == TaskKind.FIRST_VISIT.value
    return sa.or_(sa.and_(first, t.c.basis_on == p.c.registered_on),
                  sa.and_(sa.not_(first), t.c.basis_on >= p.c.registered_on))


def eligible(registered_on: date, status: str, status_on: date | None, report_type: int, consent: int,
             as_of: date) -> bool:
    """应管 Owed tasks as of ``as_of``: 在册 and no refused consent (rules.md §1, §5)."""
    return registered_on <= as_of and cancel_reason(status, status_on, report_type, consent, as_of) is None


def eligible_sql(p, as_of: date) -> sa.ColumnElement[bool]:
    """应管 SQL twin of ``eligible`` (the scheduler's and the 五单's population)."""
    return sa.and_(
        p.c.registered_on <= as_of,
        sa.not_(left_sql(p, as_of)),
        sa.not_(consent_refused_sql(p)),
    )


def health_check_cancel_reason(status: str, status_on: date | None, report_type: int, consent: int,
                               as_of: date) -> str | None:
    """体检取消原因 Why a registered patient gets no annual health check as of ``as_of``, or None
    (rules.md §5 "every 在册 patient with consent"): ``cancel_reason``, else ``consent_refused`` for a
    patient without consent of either report type (a type-1 patient keeps their visits)."""
    reason = cancel_reason(status, status_on, report_type, consent, as_of)
    if reason is None and not consents(consent):
        return CONSENT_REFUSED
    return reason


def health_check_cancel_reason_sql(p, as_of: date) -> sa.ColumnElement:
    """体检取消原因 SQL twin of ``health_check_cancel_reason`` (NULL when there is none)."""
    return sa.case((left_sql(p, as_of), p.c.status), (sa.not_(consents_sql(p)), CONSENT_REFUSED), else_=sa.null())


def health_check_owed(registered_on: date, status: str, status_on: date | None, report_type: int, consent: int,
                      as_of: date) -> bool:
    """应体检 Owed the year's health check as of ``as_of``: 在册 with consent (rules.md §5)."""
    return registered_on <= as_of and health_check_cancel_reason(status, status_on, report_type, consent, as_of) is None


def health_check_owed_sql(p, as_of: date) -> sa.ColumnElement[bool]:
    """应体检 SQL twin of ``health_check_owed`` (``eligible_sql`` and ``consents_sql``)."""
    return sa.and_(eligible_sql(p, as_of), consents_sql(p))


def is_managed(follow_ups_in_window: Iterable[Any]) -> bool:
    """在管 (given 在册) At least one complete follow-up in W (indicators.md)."""
    return any(is_complete(f.lost_reason, f.risk_level, f.hospital_status) for f in follow_ups_in_window)


def at_home(hospital_status: int | None) -> bool:
    """居家 (given 在管) The latest complete follow-up in W is not 目前正在住院 (indicators.md)."""
    return hospital_status != HospitalStatus.IN_HOSPITAL


def at_home_sql(f) -> sa.ColumnElement[bool]:
    """居家 SQL twin of ``at_home``, over the latest complete follow-up's row ``f``
    (the set-based 在管 is ``registry.rules.complete_sql`` aggregated over W: ``registry.rates.indicators``)."""
    return sa.or_(f.c.hospital_status.is_(None), f.c.hospital_status != HospitalStatus.IN_HOSPITAL.value)

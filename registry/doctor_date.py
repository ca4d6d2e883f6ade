"""医生指定下次随访日期 The doctor's own date (rules.md §5 [decision, 2026-12]), in Python and in SQL, side by side.

The form's 下次随访日期 (``follow_up.next_visit_on``) is the doctor's clinical judgement. When the
patient's latest attempt (dated d) is complete (a follow-up or a discharge check is owed) and its
next visit date lies strictly after d and strictly before the date the table of rules.md §5 gives,
the task is due on the doctor's date; the working-day rule then applies to it as to any due date.
A date on or before d, on or after the table's date, or on an incomplete attempt changes nothing:
a later date never delays the table's date.

``doctor_due`` is the per-patient rule (``schedules.planning``); ``doctor_due_sql`` builds the same
rule from column expressions (``schedules.generation``). ``tests/test_doctor_date.py`` compares the
twins on random rows on both databases. A task due on the doctor's date names the profile's
``doctor_date`` clause in its ``rule`` (``Profile.doctor_date_clause``, e.g. ``§5 医生指定``).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa


def doctor_date_applies(table_due: date, visit_on: date, next_visit_on: date | None, complete: bool) -> bool:
    """医生指定日期生效 The doctor's date replaces the table's: the latest attempt is complete and
    d < ``next_visit_on`` < ``table_due`` (rules.md §5 [decision, 2026-12])."""
    return bool(complete and next_visit_on is not None and visit_on < next_visit_on < table_due)


def doctor_due(table_due: date, visit_on: date, next_visit_on: date | None, complete: bool) -> date:
    """到期日（含医生指定）The nominal due date: the doctor's date when it applies, else the table's."""
    return next_visit_on if doctor_date_applies(table_due, visit_on, next_visit_on, complete) else table_due


# ------------------------------------------------------------------------------------ SQL twin


def doctor_date_applies_sql(table_due, visit_on, next_visit_on, complete) -> sa.ColumnElement[bool]:
    """``doctor_date_applies`` in SQL: ``complete`` a boolean expression; NULL ``next_visit_on`` is false."""
    return sa.and_(complete, next_visit_on.is_not(None), next_visit_on > visit_on, next_visit_on < table_due)


def doctor_due_sql(table_due, visit_on, next_visit_on, complete) -> sa.ColumnElement:
    """``doctor_due`` in SQL: the doctor's date when it applies, else ``table_due``."""
    return sa.case((doctor_date_applies_sql(table_due, visit_on, next_visit_on, complete), next_visit_on),
                   else_=table_due)

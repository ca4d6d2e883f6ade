"""规则孪生测试工具 Harness for comparing a rule's Python form with its SQL twin on real databases.

``seed`` inserts patients and follow-ups (random rows from the strategies below) inside a
transaction that the caller rolls back (``scratch``); ``sql_values`` evaluates an SQL expression
over the inserted rows and returns its value per key; ``truth`` wraps a boolean condition the
way every consumer uses it (``WHERE`` / ``CASE WHEN``: NULL counts as false).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from registry.codes import PatientStatus
from registry.models import FollowUp, Patient

TWIN_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                         max_examples=25, deadline=None, derandomize=True)
VILLAGE = "V1"
DAY0 = date(2025, 1, 1)


@contextmanager
def scratch(engine: sa.Engine):
    """A connection whose writes are rolled back at the end (each hypothesis example starts empty)."""
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()


def seed(conn: sa.Connection, patients: list[dict], follow_ups: list[dict] = ()) -> None:
    """Insert the village, ``patients`` (partial rows: defaults filled in) and ``follow_ups``."""
    conn.execute(sa.insert(sa.table("region", sa.column("code"), sa.column("name"), sa.column("level"))),
                 [{"code": VILLAGE, "name": "村", "level": "village"}])
    base = {"name": "x", "sex": 1, "birth_date": date(1980, 1, 1), "village_code": VILLAGE,
            "diagnosis": "schizophrenia", "registered_on": DAY0}
    if patients:
        conn.execute(sa.insert(Patient.__table__), [{**base, **p} for p in patients])
    if follow_ups:
        conn.execute(sa.insert(FollowUp.__table__), list(follow_ups))


def truth(condition) -> sa.ColumnElement[bool]:
    """A condition as consumers read it: true, or false (NULL is false)."""
    return sa.case((condition, True), else_=False)


def sql_values(conn: sa.Connection, key, expression, source=None, where=()) -> dict:
    """Value of ``expression`` per ``key`` over ``source`` (a table, alias or join)."""
    stmt = sa.select(key.label("k"), expression.label("v"))
    if source is not None:
        stmt = stmt.select_from(source)
    return {r.k: r.v for r in conn.execute(stmt.where(*where))}


def as_bool(values: dict) -> dict:
    """SQLite returns 0/1 for booleans: normalise."""
    return {k: None if v is None else bool(v) for k, v in values.items()}


# ----------------------------------------------------------------------------- strategies

_maybe = lambda values: st.sampled_from([None, *values])  # noqa: E731


FIELD_VALUES = {
    "mode": [1, 2, 3],
    "lost_reason": [1, 2, 3, 4, 5],
    "risk_level": [0, 1, 2, 3, 4, 5],
    "classification": [1, 2, 3],
    "hospital_status": [0, 1, 2],
    "insight": [1, 2, 3],
    "symptoms_obvious": [True, False],
    "symptoms": ["", "1", "2,7"],
    "sf_self_care": [1, 2, 3],
    "sf_housework": [1, 2, 3],
    "sf_work": [1, 2, 3, 9],
    "sf_study": [1, 2, 3],
    "sf_social": [1, 2, 3],
    "adverse_reaction_serious": [True, False],
    "physical_illness_serious": [True, False],
}


@st.composite
def follow_up_fields(draw) -> dict:
    """The coded fields of one follow-up, valid under the table's checks: a few fields set (so
    that each single criterion decides some rows), the others NULL."""
    chosen = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=5))
    row = {name: (draw(st.sampled_from(FIELD_VALUES[name])) if name in chosen else None) for name in FIELD_VALUES}
    if draw(st.booleans()):  # half the rows carry a risk level: completeness and classification need it
        row["risk_level"] = draw(st.sampled_from(FIELD_VALUES["risk_level"]))
    risk, cls = row["risk_level"], row["classification"]
    if cls is not None and risk is not None and ((cls == 3 and risk >= 1) or (risk >= 3 and cls != 1)):
        row["classification"] = None  # classification_matches_risk
    row["incidents_disturbance"] = draw(_maybe([0, 1, 2]))  # 肇事 / 肇祸 counts (registry.rules.is_incident)
    row["incidents_crime"] = draw(_maybe([0, 1]))
    return row


def _day(draw, lo: int, hi: int) -> date:
    """Dates on a 10-day grid: equal dates (same-day attempts, status on the as-of date) are common."""
    return DAY0 + timedelta(days=10 * draw(st.integers(lo, hi)))


@st.composite
def patient_fields(draw) -> dict:
    """Register fields of one patient (status date present whenever the status is not active)."""
    registered_on = _day(draw, 0, 4)
    status = draw(st.sampled_from([s.value for s in PatientStatus]))
    status_on = (registered_on + timedelta(days=10 * draw(st.integers(0, 4)))
                 if status != PatientStatus.ACTIVE.value else draw(_maybe([registered_on + timedelta(days=30)])))
    return {"registered_on": registered_on, "status": status, "status_on": status_on,
            "report_type": draw(st.sampled_from([1, 2])), "consent": draw(st.sampled_from([0, 1]))}


@st.composite
def as_of_dates(draw) -> date:
    return _day(draw, -1, 9)


@st.composite
def follow_up_batch(draw, max_size: int = 40) -> list[dict]:
    """Follow-up rows of one patient ``P`` (distinct (visit_on, seq) keys)."""
    fields = draw(st.lists(follow_up_fields(), min_size=1, max_size=max_size))
    return [{"patient_id": "P", "visit_on": DAY0, "seq": i + 1, **f} for i, f in enumerate(fields)]


@st.composite
def attempt_histories(draw, patients: int = 6, max_attempts: int = 8) -> tuple[list[dict], list[dict]]:
    """Patients with registration dates and follow-up attempts around them, several on one day."""
    people, rows = [], []
    for n in range(draw(st.integers(1, patients))):
        pid = f"P{n}"
        people.append({"patient_id": pid, "registered_on": _day(draw, 0, 3)})
        days = draw(st.lists(st.integers(-1, 8), max_size=max_attempts))
        for seq, day in enumerate(days, 1):
            rows.append({"patient_id": pid, "visit_on": DAY0 + timedelta(days=10 * day), "seq": seq,
                         **draw(follow_up_fields())})
    order = draw(st.permutations(range(len(rows))))  # entry order (id) independent of the date
    return people, [rows[i] for i in order]

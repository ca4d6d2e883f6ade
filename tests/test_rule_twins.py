"""规则孪生 Each rule's Python form and its SQL twin agree on random rows, on both databases.

The rule homes: ``registry.rules`` (complete, face-to-face, 肇事肇祸, classification, stable),
``registry.register`` (在册, 应管, cancel reason, consent and the health check's, 居家), ``registry.attempts`` (the order:
latest attempt, latest and previous complete, the MAX key, one before another) and ``registry.validation`` (the latest reached visit). Harness: ``tests/twins.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from registry import attempts, register, rules
from registry.models import FollowUp, Patient
from twins import (TWIN_SETTINGS, as_bool, as_of_dates, attempt_histories, follow_up_batch, patient_fields,
                         scratch, seed, sql_values, truth)

FOLLOW_UP_RULES = {
    "reached": (lambda r: rules.is_reached(r.lost_reason), lambda f: truth(rules.reached_sql(f))),
    "complete": (lambda r: rules.is_complete(r.lost_reason, r.risk_level, r.hospital_status),
                 lambda f: truth(rules.complete_sql(f))),
    "face_to_face": (lambda r: rules.is_face_to_face(r.mode), lambda f: truth(rules.face_to_face_sql(f))),
    "incident": (lambda r: rules.is_incident(r.incidents_disturbance, r.incidents_crime),
                 lambda f: truth(rules.incident_sql(f))),
    "classification": (lambda r: None if rules.classification_of(r) is None else int(rules.classification_of(r)),
                       rules.classification_sql),
    "computed_classification": (
        lambda r: (lambda c: None if c is None else int(c))(rules.classification_of(SimpleNamespace(
            **{**r._asdict(), "classification": None}))),
        rules.computed_classification_sql),
    "stable": (rules.is_stable, lambda f: truth(rules.stable_sql(f))),
    "at_home": (lambda r: register.at_home(r.hospital_status), lambda f: truth(register.at_home_sql(f))),
}


@pytest.mark.parametrize("rule", sorted(FOLLOW_UP_RULES))
def test_follow_up_rule_matches_its_sql_twin(database, rule):
    python_rule, sql_rule = FOLLOW_UP_RULES[rule]
    f = FollowUp.__table__

    @TWIN_SETTINGS
    @given(rows=follow_up_batch())
    def check(rows):
        with scratch(database.engine) as conn:
            seed(conn, [{"patient_id": "P"}], rows)
            stored = {r.id: r for r in conn.execute(sa.select(f))}
            got = sql_values(conn, f.c.id, sql_rule(f))
        if rule in ("classification", "computed_classification"):
            got = {k: None if v is None else int(v) for k, v in got.items()}
            expected = {k: python_rule(r) for k, r in stored.items()}
        else:
            got, expected = as_bool(got), {k: bool(python_rule(r)) for k, r in stored.items()}
        assert got == expected

    check()


REGISTER_RULES = {
    "has_left": (lambda r, d: register.has_left(r.status, r.status_on, d), lambda p, d: truth(register.left_sql(p, d))),
    "in_register": (lambda r, d: register.in_register(r.registered_on, r.status, r.status_on, d),
                    lambda p, d: truth(register.in_register_sql(p, d))),
    "consent_refused": (lambda r, d: register.consent_refused(r.report_type, r.consent),
                        lambda p, d: truth(register.consent_refused_sql(p))),
    "eligible": (lambda r, d: register.eligible(r.registered_on, r.status, r.status_on, r.report_type, r.consent, d),
                 lambda p, d: truth(register.eligible_sql(p, d))),
    "cancel_reason": (lambda r, d: register.cancel_reason(r.status, r.status_on, r.report_type, r.consent, d),
                      register.cancel_reason_sql),
    # rules.md §5: the health check needs consent whatever the report type (audit gap 7)
    "consents": (lambda r, d: register.consents(r.consent), lambda p, d: truth(register.consents_sql(p))),
    "health_check_owed": (
        lambda r, d: register.health_check_owed(r.registered_on, r.status, r.status_on, r.report_type, r.consent, d),
        lambda p, d: truth(register.health_check_owed_sql(p, d))),
    "health_check_cancel_reason": (
        lambda r, d: register.health_check_cancel_reason(r.status, r.status_on, r.report_type, r.consent, d),
        register.health_check_cancel_reason_sql),
}
REASON_RULES = ("cancel_reason", "health_check_cancel_reason")  # compared as values, the others as truth


@pytest.mark.parametrize("rule", sorted(REGISTER_RULES))
def test_register_rule_matches_its_sql_twin(database, rule):
    python_rule, sql_rule = REGISTER_RULES[rule]
    p = Patient.__table__

    @TWIN_SETTINGS
    @given(people=st.lists(patient_fields(), min_size=1, max_size=30), as_of=as_of_dates())
    def check(people, as_of):
        with scratch(database.engine) as conn:
            seed(conn, [{"patient_id": f"P{i}", **row} for i, row in enumerate(people)])
            stored = {r.patient_id: r for r in conn.execute(sa.select(p))}
            got = sql_values(conn, p.c.patient_id, sql_rule(p, as_of))
        expected = {k: python_rule(r, as_of) for k, r in stored.items()}
        if rule not in REASON_RULES:
            got, expected = as_bool(got), {k: bool(v) for k, v in expected.items()}
        assert got == expected

    check()


def test_basis_stands_matches_its_sql_twin(database):
    """A visit task's basis belongs to the registration (``register.basis_stands``, session 13):
    stored visit tasks of every visit kind with basis dates around the registration."""
    from datetime import timedelta

    from registry.codes import VISIT_KINDS
    from registry.models import VisitTask

    p, t = Patient.__table__, VisitTask.__table__

    @TWIN_SETTINGS
    @given(people=st.lists(patient_fields(), min_size=1, max_size=6),
           tasks=st.lists(st.tuples(st.integers(0, 5), st.sampled_from([k.value for k in VISIT_KINDS]),
                                    st.integers(-2, 2)), min_size=1, max_size=20))
    def check(people, tasks):
        with scratch(database.engine) as conn:
            seed(conn, [{"patient_id": f"P{i}", **row} for i, row in enumerate(people)])
            rows = [{"patient_id": f"P{n % len(people)}", "kind": kind, "basis": f"test:{i}",
                     "basis_on": people[n % len(people)]["registered_on"] + timedelta(days=10 * shift),
                     "due_on": people[0]["registered_on"],
                     "nominal_due_on": people[0]["registered_on"], "rule": "test"}
                    for i, (n, kind, shift) in enumerate(tasks)]
            conn.execute(sa.insert(t), rows)
            stored = {r.id: r for r in conn.execute(sa.select(t.c.id, t.c.kind, t.c.basis_on, p.c.registered_on)
                                                     .select_from(t.join(p, p.c.patient_id == t.c.patient_id)))}
            got = sql_values(conn, t.c.id, truth(register.basis_stands_sql(t, p)),
                             source=t.join(p, p.c.patient_id == t.c.patient_id))
        assert as_bool(got) == {k: register.basis_stands(r.kind, r.basis_on, r.registered_on) for k, r in stored.items()}

    check()


def test_attempt_order_matches_its_sql_twins(database):
    """Latest attempt, latest complete and previous complete (rank_sql over usable_sql), and the
    latest complete by ``MAX(order_key_sql)``, against ``registry.attempts`` in Python."""
    f, p = FollowUp.__table__, Patient.__table__

    @TWIN_SETTINGS
    @given(history=attempt_histories(), as_of=as_of_dates())
    def check(history, as_of):
        people, rows = history
        with scratch(database.engine) as conn:
            seed(conn, people, rows)
            stored = conn.execute(sa.select(f)).all()
            registered = {r.patient_id: r.registered_on for r in conn.execute(sa.select(p))}
            joined = f.join(p, p.c.patient_id == f.c.patient_id)
            ranked = (sa.select(f.c.patient_id, f.c.id, rules.complete_sql(f).label("complete"),
                                attempts.rank_sql(f).label("rn"))
                      .select_from(joined).where(attempts.usable_sql(f, p, as_of)).subquery())
            latest = dict(conn.execute(sa.select(ranked.c.patient_id, ranked.c.id).where(ranked.c.rn == 1)).all())
            cranked = (sa.select(f.c.patient_id, f.c.id, attempts.rank_sql(f).label("rn")).select_from(joined)
                       .where(attempts.usable_sql(f, p, as_of), rules.complete_sql(f)).subquery())
            lc = dict(conn.execute(sa.select(cranked.c.patient_id, cranked.c.id).where(cranked.c.rn == 1)).all())
            pc = dict(conn.execute(sa.select(cranked.c.patient_id, cranked.c.id).where(cranked.c.rn == 2)).all())
            keys = dict(conn.execute(
                sa.select(f.c.patient_id, sa.func.max(attempts.order_key_sql(f))).select_from(joined)
                .where(attempts.usable_sql(f, p, as_of), rules.complete_sql(f)).group_by(f.c.patient_id)).all())
            a1, a2 = f.alias("a1"), f.alias("a2")
            before = set(conn.execute(sa.select(a1.c.id, a2.c.id).where(a1.c.patient_id == a2.c.patient_id,
                                                                        attempts.precedes_sql(a1, a2))).all())
        by_patient = {pid: [r for r in stored if r.patient_id == pid] for pid in registered}

        def ids(pick):
            out = {}
            for pid, rows_ in by_patient.items():
                a = pick(rows_, registered[pid], as_of)
                if a is not None:
                    out[pid] = a.id
            return out

        assert latest == ids(attempts.latest_attempt)
        assert lc == ids(attempts.latest_complete)
        assert pc == ids(attempts.previous_complete)
        expected_keys = {pid: attempts.order_key(a.visit_on, a.id)
                         for pid, rows_ in by_patient.items()
                         if (a := attempts.latest_complete(rows_, registered[pid], as_of)) is not None}
        assert {k: int(v) for k, v in keys.items()} == expected_keys
        assert before == {(a.id, b.id) for a in stored for b in stored
                          if a.patient_id == b.patient_id and attempts.precedes(a, b)}

    check()


def test_latest_reached_visit_matches_its_sql_twin(database):
    """最近访到日期 ``validation.latest_reached_visit`` (the bound of a death or move-out date, rules.md
    §1, §3) and ``latest_reached_visits_sql`` agree per patient on random histories; so do
    ``is_reached_visit`` and ``reached_visits_sql`` (the keys of the reached rows, read by the import)."""
    from registry.validation import is_reached_visit, latest_reached_visit, latest_reached_visits_sql, reached_visits_sql

    f = FollowUp.__table__

    @TWIN_SETTINGS
    @given(history=attempt_histories())
    def check(history):
        people, rows = history
        with scratch(database.engine) as conn:
            seed(conn, people, rows)
            stored = conn.execute(sa.select(f)).all()
            got = dict(conn.execute(latest_reached_visits_sql(f)).all())
            keys = {tuple(r) for r in conn.execute(reached_visits_sql(f))}
        expected = {}
        for pid in {r["patient_id"] for r in people}:
            on = latest_reached_visit([r for r in stored if r.patient_id == pid])
            if on is not None:
                expected[pid] = on
        assert got == expected
        assert keys == {(r.patient_id, r.visit_on, r.seq) for r in stored if is_reached_visit(r._mapping)}

    check()


def test_fast_patient_sql_lists_follow_ups_in_the_home_order():
    """The fast web path's raw SQL lists a patient's follow-ups in ``registry.attempts`` order."""
    from sqlalchemy.dialects import postgresql

    from registry.web import fast

    f = sa.table("follow_up", sa.column("visit_on"), sa.column("id")).alias("f")
    order = ", ".join(str(t.compile(dialect=postgresql.dialect())) for t in attempts.latest_first_sql(f))
    assert order == "f.visit_on DESC, f.id DESC"
    assert f"row_to_json(f) ORDER BY {order})" in fast.PATIENT_SQL

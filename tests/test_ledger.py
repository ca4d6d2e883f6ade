"""易肇事肇祸台账 (rules.md §10): the rule's Python form (the definition, day by day) against its SQL
twin on random histories on SQLite and PostgreSQL, ``released_on`` against the window's
definition, and hand-built histories (entry by risk, by incident, both on one day, leaving after
12 stable months, re-entry, death while on the ledger, a follow-up before registration, month ends)."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from registry.codes import LedgerExit, LedgerReason
from registry.ledger import LedgerEntry, ledger_entries, ledger_history, released_on
from registry.periods import add_months
from tests.twins import TWIN_SETTINGS, scratch, seed

BASE = date(2027, 1, 1)  # the random histories span Feb 29 2028


def test_released_on_is_the_first_day_whose_window_drops_the_date():
    day = date(2026, 1, 1)
    while day < date(2033, 1, 1):
        t = day + timedelta(days=1)
        while not add_months(t, -12) > day:
            t += timedelta(days=1)
        assert released_on(day) == t, day
        day += timedelta(days=1)


# ----------------------------------------------------------------------------- random histories


@st.composite
def histories(draw):
    """Patients (registration, status) with follow-ups and emergencies on days that cluster, so
    that same-day events, 12-month gaps and Feb 28/29 all occur."""
    people, rows, emergencies = [], [], []
    anchors = [0, 58, 59, 60, 365, 423, 424, 425, 790]  # Jan 1, Feb 28/29/Mar 1 2027–2028 …
    day = st.one_of(st.integers(0, 1300), st.sampled_from(anchors).flatmap(lambda a: st.integers(a - 2, a + 2)),
                    st.sampled_from(anchors).map(lambda a: a + 366), st.sampled_from(anchors).map(lambda a: a + 365))
    for n in range(draw(st.integers(1, 5))):
        pid = f"P{n}"
        registered = BASE + timedelta(days=draw(st.integers(-30, 200)))
        status = draw(st.sampled_from(["active", "active", "dead", "moved_out"]))
        status_on = BASE + timedelta(days=draw(st.integers(100, 1400))) if status != "active" else None
        people.append({"patient_id": pid, "registered_on": registered, "status": status, "status_on": status_on})
        for seq, d in enumerate(draw(st.lists(day, max_size=12)), 1):
            kind = draw(st.sampled_from(["calm", "calm", "calm", "risk", "incident", "both", "lost", "hospital"]))
            row = {"patient_id": pid, "visit_on": BASE + timedelta(days=d), "seq": seq, "risk_level": 0,
                   "lost_reason": None, "hospital_status": None, "incidents_disturbance": 0, "incidents_crime": 0}
            if kind in ("risk", "both"):
                row["risk_level"] = draw(st.integers(3, 5))
            if kind in ("incident", "both"):
                row[draw(st.sampled_from(["incidents_disturbance", "incidents_crime"]))] = draw(st.integers(1, 2))
            if kind == "lost":
                row.update(lost_reason=draw(st.sampled_from([1, 5])), risk_level=None,
                           incidents_crime=draw(st.sampled_from([0, 1])))
            if kind == "hospital":
                row.update(hospital_status=1, risk_level=None)
            rows.append(row)
        for d in draw(st.lists(day, max_size=2)):
            emergencies.append((pid, BASE + timedelta(days=d)))
    as_of = BASE + timedelta(days=draw(st.integers(0, 1500)))
    return people, rows, sorted(set(emergencies)), as_of


def _python_ledger(people, rows, emergencies, as_of) -> list[LedgerEntry]:
    out = []
    for person in sorted(people, key=lambda p: p["patient_id"]):
        pid = person["patient_id"]
        out += ledger_history(
            patient_id=pid, registered_on=person["registered_on"], status=person["status"],
            status_on=person["status_on"], as_of=as_of,
            follow_ups=[SimpleNamespace(**r) for r in rows if r["patient_id"] == pid],
            emergencies=[d for p, d in emergencies if p == pid])
    return out


def _emergency_select(emergencies):
    if not emergencies:
        return None
    return sa.union_all(*(sa.select(sa.literal(pid, sa.String).label("patient_id"),
                                    sa.literal(day, sa.Date).label("occurred_on")) for pid, day in emergencies))


@TWIN_SETTINGS
@given(history=histories())
def test_sql_twin_matches_the_definition(database, history):
    people, rows, emergencies, as_of = history
    with scratch(database.engine) as conn:
        seed(conn, people, rows)
        got = ledger_entries(conn, as_of, emergencies=_emergency_select(emergencies))
    assert got == _python_ledger(people, rows, emergencies, as_of)


# ----------------------------------------------------------------------------- hand-built cases


def fu(day: str, risk=0, *, disturbance=0, crime=0, lost=None, hospital=None, pid="P1") -> dict:
    return {"patient_id": pid, "visit_on": date.fromisoformat(day), "risk_level": None if lost else risk,
            "lost_reason": lost, "hospital_status": hospital, "incidents_disturbance": disturbance,
            "incidents_crime": crime}


def both_forms(database, follow_ups, as_of: str, *, registered="2025-01-01", status="active", status_on=None,
               emergencies=()) -> list[tuple]:
    """The ledger by both forms (they must agree), as plain tuples."""
    person = {"patient_id": "P1", "registered_on": date.fromisoformat(registered), "status": status,
              "status_on": date.fromisoformat(status_on) if status_on else None}
    rows = [{**r, "seq": i} for i, r in enumerate(follow_ups, 1)]
    em = [("P1", date.fromisoformat(d)) for d in emergencies]
    with scratch(database.engine) as conn:
        seed(conn, [person], rows)
        sql = ledger_entries(conn, date.fromisoformat(as_of), emergencies=_emergency_select(em))
    python = _python_ledger([person], rows, em, date.fromisoformat(as_of))
    assert sql == python
    return [(e.entered_on.isoformat(), e.reason.value, e.left_on and e.left_on.isoformat(),
             e.left_reason and e.left_reason.value) for e in sql]


def test_entry_by_risk_and_still_on(database):
    assert both_forms(database, [fu("2026-01-10", 1), fu("2026-02-01", 4), fu("2026-03-01", 2)], "2026-06-30") == [
        ("2026-02-01", "risk", None, None)]


def test_risk_on_an_incomplete_follow_up_does_not_enter(database):
    # lost (not reached): not complete, so its risk cannot count; nothing else enters
    rows = [fu("2026-02-01", lost=1)]
    rows[0]["risk_level"] = 4
    assert both_forms(database, rows, "2026-06-30") == []


def test_entry_by_incident_even_when_not_reached(database):
    assert both_forms(database, [fu("2026-03-05", lost=5, crime=1)], "2026-06-30") == [
        ("2026-03-05", "incident", None, None)]


def test_risk_and_incident_on_one_follow_up_is_incident(database):
    assert both_forms(database, [fu("2026-03-05", 5, disturbance=2)], "2026-06-30") == [
        ("2026-03-05", "incident", None, None)]


def test_risk_and_incident_on_two_follow_ups_of_one_day_is_incident(database):
    assert both_forms(database, [fu("2026-03-05", 4), fu("2026-03-05", 0, crime=1)], "2026-06-30") == [
        ("2026-03-05", "incident", None, None)]


def test_emergency_enters_and_ranks_between_incident_and_risk(database):
    assert both_forms(database, [fu("2026-03-05", 4)], "2026-06-30", emergencies=["2026-03-05"]) == [
        ("2026-03-05", "emergency", None, None)]
    assert both_forms(database, [], "2026-06-30", emergencies=["2026-04-01"]) == [("2026-04-01", "emergency", None, None)]


def test_leaving_after_12_stable_months(database):
    rows = [fu("2026-02-01", 4), fu("2026-05-01", 1), fu("2026-11-01", 0), fu("2027-01-15", 0)]
    # the window [t − 12 months, t] stops holding Feb 1 2026 on Feb 2 2027, and holds complete ones
    assert both_forms(database, rows, "2027-02-01") == [("2026-02-01", "risk", None, None)]
    assert both_forms(database, rows, "2027-06-30") == [("2026-02-01", "risk", "2027-02-02", "stable_12_months")]


def test_leaving_waits_for_a_complete_follow_up(database):
    # no complete follow-up in the year after the event: the first one after that year ends it
    rows = [fu("2026-02-01", 4), fu("2026-08-01", lost=1), fu("2027-04-10", 0)]
    assert both_forms(database, rows, "2027-04-09") == [("2026-02-01", "risk", None, None)]
    assert both_forms(database, rows, "2027-12-31") == [("2026-02-01", "risk", "2027-04-10", "stable_12_months")]


def test_a_new_event_while_on_the_ledger_restarts_the_year(database):
    rows = [fu("2026-02-01", 4), fu("2026-09-01", 3), fu("2027-03-01", 0), fu("2027-08-01", 0)]
    assert both_forms(database, rows, "2027-12-31") == [("2026-02-01", "risk", "2027-09-02", "stable_12_months")]


def test_re_entry_starts_a_new_entry(database):
    rows = [fu("2025-02-01", 3), fu("2025-12-01", 0), fu("2026-03-01", 0, disturbance=1), fu("2026-06-01", 1)]
    assert both_forms(database, rows, "2026-12-31") == [
        ("2025-02-01", "risk", "2026-02-02", "stable_12_months"),
        ("2026-03-01", "incident", None, None)]


def test_death_while_on_the_ledger(database):
    rows = [fu("2026-02-01", 4), fu("2026-05-01", 0)]
    assert both_forms(database, rows, "2026-09-30", status="dead", status_on="2026-07-15") == [
        ("2026-02-01", "risk", "2026-07-15", "dead")]
    # not yet dead as of an earlier date: still on
    assert both_forms(database, rows, "2026-07-14", status="dead", status_on="2026-07-15") == [
        ("2026-02-01", "risk", None, None)]
    assert both_forms(database, rows, "2026-09-30", status="moved_out", status_on="2026-07-15") == [
        ("2026-02-01", "risk", "2026-07-15", "moved_out")]


def test_death_after_a_stable_exit_changes_nothing(database):
    rows = [fu("2025-02-01", 4), fu("2025-12-01", 0)]
    assert both_forms(database, rows, "2026-09-30", status="dead", status_on="2026-07-15") == [
        ("2025-02-01", "risk", "2026-02-02", "stable_12_months")]


def test_a_follow_up_before_registration_is_ignored(database):
    rows = [fu("2025-11-01", 5, crime=1), fu("2026-02-01", 0)]
    assert both_forms(database, rows, "2026-12-31", registered="2026-01-01") == []
    assert both_forms(database, rows, "2026-12-31", registered="2025-11-01") == [
        ("2025-11-01", "incident", "2026-11-02", "stable_12_months")]


def test_entry_on_feb_29_leaves_on_mar_1_a_year_later(database):
    rows = [fu("2028-02-29", 4), fu("2028-10-01", 0)]
    # Feb 28 2029: window [Feb 28 2028, Feb 28 2029] still holds Feb 29 2028
    assert both_forms(database, rows, "2029-02-28", registered="2027-01-01") == [("2028-02-29", "risk", None, None)]
    assert both_forms(database, rows, "2029-06-30", registered="2027-01-01") == [
        ("2028-02-29", "risk", "2029-03-01", "stable_12_months")]


def test_a_feb_28_event_is_in_the_window_of_feb_29(database):
    # Feb 29 2028 − 12 months = Feb 28 2027 (clamped): an event on Feb 28 2027 is still in its window
    rows = [fu("2027-02-28", 4), fu("2027-06-01", 0)]
    assert both_forms(database, rows, "2028-12-31", registered="2027-01-01") == [
        ("2027-02-28", "risk", "2028-03-01", "stable_12_months")]


def test_entry_on_aug_31(database):
    rows = [fu("2026-08-31", 3), fu("2027-01-10", 0)]
    assert both_forms(database, rows, "2027-08-31") == [("2026-08-31", "risk", None, None)]
    assert both_forms(database, rows, "2027-12-31") == [("2026-08-31", "risk", "2027-09-01", "stable_12_months")]


def test_complete_follow_up_on_feb_29_after_a_feb_28_event_never_counts(database):
    # Feb 29 2028 is in no window that drops Feb 28 2028; the leave waits for the next complete one
    rows = [fu("2028-02-28", 4), fu("2028-02-29", 0), fu("2029-05-01", 0)]
    assert both_forms(database, rows, "2029-12-31", registered="2027-01-01") == [
        ("2028-02-28", "risk", "2029-05-01", "stable_12_months")]


@pytest.mark.parametrize("reason", list(LedgerReason))
def test_labels_are_chinese(reason):
    assert reason.label and not reason.label.isascii()
    assert all(not e.label.isascii() for e in LedgerExit)


def test_the_emergency_record_feeds_the_ledger_by_default(database):
    """rules.md §9, §10: an emergency of situation 1 or 2 from the 应急处置记录单 enters (dated on its start,
    else its report), one of situation 3 or 4 does not; the ledger reads the record without being told."""
    from datetime import datetime

    from registry.emergencies import ledger_event_days
    from registry.models import Emergency

    person = {"patient_id": "P1", "registered_on": date(2025, 1, 1), "status": "active", "status_on": None}
    records = [
        {"situations": "3,4", "reported_at": datetime(2026, 2, 1, 9), "started_at": None},
        {"situations": "2,3", "reported_at": datetime(2026, 3, 6, 0, 30), "started_at": datetime(2026, 3, 5, 23, 40)},
        {"situations": "1", "reported_at": datetime(2026, 5, 1, 9), "started_at": None},
    ]
    with scratch(database.engine) as conn:
        seed(conn, [person])
        conn.execute(sa.insert(Emergency.__table__), [{**r, "patient_id": "P1", "opened_by": "t"} for r in records])
        sql = ledger_entries(conn, date(2026, 6, 30))
    days = ledger_event_days([SimpleNamespace(**r) for r in records])
    assert days == [date(2026, 3, 5), date(2026, 5, 1)]
    python = ledger_history(patient_id="P1", registered_on=date(2025, 1, 1), status="active", status_on=None,
                            follow_ups=[], as_of=date(2026, 6, 30), emergencies=days)
    assert sql == python == [LedgerEntry("P1", date(2026, 3, 5), LedgerReason.EMERGENCY)]


def test_events_on_feb_28_and_29_are_one_stay_from_feb_28(database):
    # Feb 28 and Feb 29 2028 share one released_on (Mar 1 2029): the SQL takes them as one event
    # day — the entry begins on Feb 28 with Feb 28's reason, and leaves as the Feb 29 event does
    rows = [fu("2028-02-28", 4), fu("2028-02-29", 0, crime=1), fu("2028-10-01", 0)]
    assert both_forms(database, rows, "2029-02-28", registered="2027-01-01") == [("2028-02-28", "risk", None, None)]
    assert both_forms(database, rows, "2029-06-30", registered="2027-01-01") == [
        ("2028-02-28", "risk", "2029-03-01", "stable_12_months")]


def test_a_complete_follow_up_on_the_event_day_is_not_after_it(database):
    # several rows on one day: the best reason names the entry, and a calm complete follow-up of
    # that same day does not end the stay a year later
    rows = [fu("2026-03-05", 0), fu("2026-03-05", 4), fu("2026-03-05", 1)]
    assert both_forms(database, rows, "2027-12-31", emergencies=["2026-03-05"]) == [
        ("2026-03-05", "emergency", None, None)]


def test_follow_ups_after_an_emergency_count_towards_leaving(database):
    # the only entering event is an emergency: the follow-ups before it change nothing, the
    # complete one after it lets the patient leave
    rows = [fu("2026-01-10", 0), fu("2026-06-01", 0)]
    assert both_forms(database, rows, "2027-06-30", emergencies=["2026-02-01"]) == [
        ("2026-02-01", "emergency", "2027-02-02", "stable_12_months")]

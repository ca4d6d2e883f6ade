"""Table-driven rule tests with literal dates: rules.md §5 (next visit), §6 (roles), working days."""

from __future__ import annotations

from datetime import date

import pytest

from schedules.calendar import WorkCalendar, parse_calendar_csv
from schedules.planning import Attempt, PatientRecord, add_months, plan, plan_patient
from registry.profile import load_profile, parse_profile
from registry.errors import InvalidInput

D = date.fromisoformat
PROFILE = load_profile("national-2018")
NO_SHIFT = WorkCalendar()


def att(i, day, *, lost=None, risk=None, hosp=None, cls=None, insight=None, dist=None, crime=None, sf_work=None,
        next_on=None):
    return Attempt(id=i, visit_on=D(day), lost_reason=lost, risk_level=risk, hospital_status=hosp,
                   classification=cls, insight=insight, incidents_disturbance=dist, incidents_crime=crime,
                   sf_work=sf_work, next_visit_on=D(next_on) if next_on else None)


def rec(*attempts, registered="2025-01-01", **kw):
    return PatientRecord(patient_id="P", registered_on=D(registered), attempts=tuple(attempts), **kw)


def visit(record, today):
    tasks = [t for t in plan_patient(record, PROFILE, D(today)) if t.kind not in ("health_check", "injection")]
    assert len(tasks) == 1
    return tasks[0]


@pytest.mark.parametrize("day, months, expected", [
    ("2026-01-31", 1, "2026-02-28"),
    ("2028-01-31", 1, "2028-02-29"),
    ("2026-03-31", 1, "2026-04-30"),
    ("2026-01-15", 1, "2026-02-15"),
    ("2025-11-30", 3, "2026-02-28"),
    ("2026-12-31", 3, "2027-03-31"),
    ("2026-08-31", 3, "2026-11-30"),
    ("2027-02-28", -12, "2026-02-28"),
    ("2028-02-29", -12, "2027-02-28"),
])
def test_month_arithmetic_clamps_to_month_end(day, months, expected):
    assert add_months(D(day), months) == D(expected)


# rules.md §5: (attempts, registered, today) → (kind, basis, nominal due, clause)
SECTION5 = [
    pytest.param([att(1, "2026-03-10", risk=3)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:1", "2026-03-24", "§5 不稳定+14d"), id="unstable+14d"),
    pytest.param([att(1, "2026-03-10", risk=0, insight=3)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:1", "2026-03-24", "§5 不稳定+14d"), id="unstable-by-insight"),
    pytest.param([att(1, "2026-01-20", risk=0), att(2, "2026-03-10", risk=1)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:2", "2026-03-24", "§5 基本稳定(新近恶化)+14d"), id="fairly-stable-after-stable"),
    pytest.param([att(1, "2026-03-10", risk=1)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:1", "2026-03-24", "§5 基本稳定(新近恶化)+14d"), id="fairly-stable-first-ever"),
    pytest.param([att(1, "2026-02-24", risk=2), att(2, "2026-03-10", risk=1)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:2", "2026-04-10", "§5 基本稳定(未稳定)+1月"), id="fairly-stable-second-visit"),
    pytest.param([att(1, "2026-01-17", risk=4), att(2, "2026-01-31", risk=0, sf_work=3)], "2025-01-01", "2026-02-05",
                 ("follow_up", "follow_up:2", "2026-02-28", "§5 基本稳定(未稳定)+1月"), id="fairly-stable-after-unstable-clamped"),
    pytest.param([att(1, "2026-02-24", risk=2), att(2, "2026-03-01", lost=1), att(3, "2026-03-10", risk=1)],
                 "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:3", "2026-04-10", "§5 基本稳定(未稳定)+1月"), id="previous-complete-skips-unreached"),
    pytest.param([att(1, "2025-11-30", risk=0)], "2025-01-01", "2025-12-01",
                 ("follow_up", "follow_up:1", "2026-02-28", "§5 稳定+3月"), id="stable+3m-clamped"),
    pytest.param([att(1, "2026-01-20", risk=0)], "2025-01-01", "2026-02-01",
                 ("follow_up", "follow_up:1", "2026-04-20", "§5 稳定+3月"), id="stable+3m"),
    pytest.param([att(1, "2026-03-10", risk=4, hosp=1)], "2025-01-01", "2026-03-20",
                 ("discharge_check", "follow_up:1", "2026-04-09", "§5 住院+30d"), id="in-hospital-first"),
    pytest.param([att(1, "2026-03-10", lost=1, hosp=1)], "2025-01-01", "2026-03-20",
                 ("discharge_check", "follow_up:1", "2026-04-09", "§5 住院+30d"), id="in-hospital-not-met"),
    pytest.param([], "2026-05-20", "2026-06-10",
                 ("first_visit", "registration:2026-05-20", "2026-06-03", "§5 新登记首次面访+14d"), id="first-visit"),
    pytest.param([att(1, "2026-04-01", lost=1)], "2025-01-01", "2026-04-02",
                 ("retry", "follow_up:1", "2026-04-08", "§5 未访到+7d"), id="retry-1st-miss"),
    pytest.param([att(1, "2026-04-01", lost=1), att(2, "2026-04-08", lost=5)], "2025-01-01", "2026-04-10",
                 ("retry", "follow_up:2", "2026-04-15", "§5 未访到+7d"), id="retry-2nd-miss"),
    pytest.param([att(1, "2026-04-01", lost=1), att(2, "2026-04-08", lost=5), att(3, "2026-04-15", lost=5)],
                 "2025-01-01", "2026-04-20",
                 ("locate", "follow_up:3", "2026-04-22", "§5 失访查找+7d"), id="locate-3rd-miss"),
    pytest.param([att(1, "2026-04-01", lost=4)], "2025-01-01", "2026-04-02",
                 ("locate", "follow_up:1", "2026-04-08", "§5 失访查找+7d"), id="locate-reason-4"),
    pytest.param([att(1, "2026-03-01", lost=1), att(2, "2026-03-08", lost=2), att(3, "2026-03-15", risk=0),
                  att(4, "2026-04-01", lost=3), att(5, "2026-04-08", lost=1)], "2025-01-01", "2026-04-10",
                 ("retry", "follow_up:5", "2026-04-15", "§5 未访到+7d"), id="reached-breaks-streak"),
    pytest.param([att(1, "2026-04-01")], "2025-01-01", "2026-04-02",
                 ("retry", "follow_up:1", "2026-04-08", "§5 随访不完整+7d [decision]"), id="reached-incomplete"),
    pytest.param([att(2, "2026-03-10", risk=0), att(1, "2026-03-10", risk=3)], "2025-01-01", "2026-03-20",
                 ("follow_up", "follow_up:2", "2026-06-10", "§5 稳定+3月"), id="same-day-entered-last-wins"),
    pytest.param([att(1, "2025-12-01", risk=3)], "2026-01-05", "2026-01-10",
                 ("first_visit", "registration:2026-01-05", "2026-01-19", "§5 新登记首次面访+14d"), id="before-registration-ignored"),
    pytest.param([att(1, "2026-01-20", risk=0), att(2, "2026-03-01", risk=3)], "2025-01-01", "2026-02-01",
                 ("follow_up", "follow_up:1", "2026-04-20", "§5 稳定+3月"), id="after-today-ignored"),
]


@pytest.mark.parametrize("attempts, registered, today, expected", SECTION5)
def test_section5_next_visit(attempts, registered, today, expected):
    task = visit(rec(*attempts, registered=registered), today)
    kind, basis, due, clause = expected
    assert (task.kind, task.basis, task.nominal_due_on.isoformat(), task.rule) == (kind, basis, due, f"national-2018@1:{clause}")


@pytest.mark.parametrize("kw, reason", [
    ({"status": "dead", "status_on": D("2026-03-01")}, "dead"),
    ({"status": "moved_out", "status_on": D("2026-03-01")}, "moved_out"),
    ({"consent": 0, "report_type": 2}, "consent_refused"),
])
def test_section5_no_tasks_for_dead_moved_refusing(kw, reason):
    from schedules.planning import cancel_reason

    record = rec(att(1, "2026-01-20", risk=0), lai_drug="x", lai_interval_weeks=4, lai_last_on=D("2026-02-01"), **kw)
    assert plan_patient(record, PROFILE, D("2026-03-10")) == []
    assert cancel_reason(record, D("2026-03-10")) == reason


def test_type1_report_without_consent_is_still_managed_without_a_health_check():
    """rules.md §1: a type-1 (发病报告) patient is managed without consent (visits and injections
    continue); §5: the annual health check is for patients with consent only (audit gap 7)."""
    from registry import register

    record = rec(att(1, "2026-01-20", risk=0), consent=0, report_type=1,
                 lai_drug="x", lai_interval_weeks=4, lai_last_on=D("2026-02-01"))
    assert [t.kind for t in plan_patient(record, PROFILE, D("2026-03-10"))] == ["follow_up", "injection"]
    assert register.cancel_reason(record.status, record.status_on, 1, 0, D("2026-03-10")) is None
    assert register.health_check_cancel_reason(record.status, record.status_on, 1, 0, D("2026-03-10")) == "consent_refused"
    agreeing = rec(att(1, "2026-01-20", risk=0), consent=1, report_type=1)
    assert [t.kind for t in plan_patient(agreeing, PROFILE, D("2026-03-10"))] == ["follow_up", "health_check"]


def test_dead_after_today_still_planned():
    record = rec(att(1, "2026-01-20", risk=0), status="dead", status_on=D("2026-05-01"))
    assert [t.kind for t in plan_patient(record, PROFILE, D("2026-03-10"))] == ["follow_up", "health_check"]


@pytest.mark.parametrize("checks, today, expected", [
    ((), "2026-03-10", ("2026-06-30", "year:2026")),
    ((D("2025-05-01"),), "2026-03-10", ("2026-06-30", "year:2026")),
    ((D("2026-01-02"),), "2026-03-10", None),
    ((D("2026-12-01"),), "2026-03-10", ("2026-06-30", "year:2026")),  # a future check does not count yet
])
def test_annual_health_check(checks, today, expected):
    tasks = [t for t in plan_patient(rec(att(1, "2026-01-20", risk=0), health_checks=checks), PROFILE, D(today))
             if t.kind == "health_check"]
    if expected is None:
        assert tasks == []
    else:
        assert [(t.nominal_due_on.isoformat(), t.basis, t.roles) for t in tasks] == [(expected[0], expected[1], ("doctor",))]


@pytest.mark.parametrize("last, weeks, due, start, end", [
    ("2026-05-01", 4, "2026-05-29", "2026-05-26", "2026-06-05"),
    ("2026-01-31", 2, "2026-02-14", "2026-02-11", "2026-02-21"),
])
def test_long_acting_injection(last, weeks, due, start, end):
    record = rec(att(1, "2026-01-20", risk=0), lai_drug="棕榈酸帕利哌酮", lai_interval_weeks=weeks, lai_last_on=D(last))
    [task] = [t for t in plan_patient(record, PROFILE, D("2026-05-10")) if t.kind == "injection"]
    assert (task.nominal_due_on, task.window_start, task.window_end, task.basis, task.roles) == (
        D(due), D(start), D(end), f"lai:{last}", ("doctor",))


# rules.md §6: (attempts, record kw, today) → roles of the visit task
SECTION6 = [
    pytest.param([att(1, "2026-03-01", risk=0)], {}, "2026-03-10", ("doctor",), id="doctor-only"),
    pytest.param([att(1, "2026-03-01", risk=3)], {}, "2026-03-10", ("doctor", "police", "village"), id="risk3-police"),
    pytest.param([att(1, "2026-03-01", risk=0, insight=3)], {}, "2026-03-10", ("doctor", "police", "village"), id="unstable-police"),
    pytest.param([att(1, "2026-03-01", risk=2)], {}, "2026-03-10", ("doctor",), id="risk2-no-police"),
    pytest.param([att(1, "2025-03-10", risk=1, dist=1), att(2, "2026-03-01", risk=0)], {}, "2026-03-10",
                 ("doctor", "police", "village"), id="disturbance-exactly-12-months"),
    pytest.param([att(1, "2025-03-09", risk=1, dist=1), att(2, "2026-03-01", risk=0)], {}, "2026-03-10",
                 ("doctor",), id="disturbance-older-than-12-months"),
    pytest.param([att(1, "2025-10-01", risk=1, crime=2), att(2, "2026-03-01", risk=0)], {}, "2026-03-10",
                 ("doctor", "police", "village"), id="crime-within-12-months"),
    pytest.param([att(1, "2026-03-01", risk=3), att(2, "2026-03-08", risk=0)], {}, "2026-03-10",
                 ("doctor",), id="latest-complete-decides"),
    pytest.param([att(1, "2026-03-01", risk=0), att(2, "2026-03-02", lost=4)], {}, "2026-03-10",
                 ("doctor", "police", "village"), id="locate-police-village"),
    pytest.param([att(1, "2026-03-01", risk=0)], {"has_guardian": False}, "2026-03-10",
                 ("doctor", "village", "civil_affairs"), id="no-guardian"),
    pytest.param([att(1, "2026-03-01", risk=0)], {"poor": True}, "2026-03-10",
                 ("doctor", "civil_affairs"), id="poor"),
    pytest.param([att(1, "2026-03-01", risk=5)], {"poor": True, "has_guardian": False}, "2026-03-10",
                 ("doctor", "police", "village", "civil_affairs"), id="all-roles"),
    pytest.param([], {"has_guardian": False, "poor": True}, "2026-03-10",
                 ("doctor", "village", "civil_affairs"), id="first-visit-no-guardian-poor"),
]


@pytest.mark.parametrize("attempts, kw, today, roles", SECTION6)
def test_section6_roles(attempts, kw, today, roles):
    task = visit(rec(*attempts, **kw), today)
    assert task.roles == roles
    assert task.joint == (roles != ("doctor",))


def test_health_check_and_injection_need_the_doctor_only():
    record = rec(att(1, "2026-03-01", risk=5), has_guardian=False, poor=True, lai_drug="x", lai_interval_weeks=4,
                 lai_last_on=D("2026-03-01"))
    others = [t for t in plan_patient(record, PROFILE, D("2026-03-10")) if t.kind in ("health_check", "injection")]
    assert [(t.kind, t.roles, t.joint) for t in others] == [("health_check", ("doctor",), False), ("injection", ("doctor",), False)]


# Working days (rules.md §5 [decision]): nominal → shifted, across 国庆 and 春节 with 调休 days
HOLIDAYS = [
    ("2026-10-05", "2026-09-30"),  # 国庆 2026 (10-01…10-07)
    ("2026-10-08", "2026-10-08"),
    ("2026-10-10", "2026-10-10"),  # 调休 Saturday works
    ("2026-10-11", "2026-10-10"),
    ("2026-02-23", "2026-02-14"),  # 春节 2026 (02-15…02-23), 02-14 调休 Saturday
    ("2026-02-28", "2026-02-28"),  # 调休 Saturday
    ("2026-03-01", "2026-02-28"),
    ("2025-10-08", "2025-09-30"),  # 国庆 2025 (10-01…10-08)
    ("2025-10-12", "2025-10-11"),  # 10-11 调休 Saturday
    ("2025-02-04", "2025-01-27"),  # 春节 2025 (01-28…02-04)
    ("2025-02-09", "2025-02-08"),  # 02-08 调休 Saturday
    ("2026-06-21", "2026-06-18"),  # 端午 2026
    ("2026-06-13", "2026-06-12"),  # ordinary weekend
]


@pytest.mark.parametrize("nominal, shifted", HOLIDAYS)
def test_due_date_moves_to_previous_working_day(nominal, shifted):
    assert NO_SHIFT.previous_working_day(D(nominal)) == (D(shifted), False)


def test_shift_map_matches_day_by_day():
    rows = NO_SHIFT.shift_map(D("2025-12-20"), D("2027-01-20"))
    assert all(NO_SHIFT.previous_working_day(day) == (s, e) for day, s, e in rows)
    assert len(rows) == 397


def test_planned_task_is_shifted_and_keeps_nominal():
    # stable on 2026-07-05 → +3 months = 2026-10-05 (国庆) → 2026-09-30
    [task, _hc] = plan(rec(att(1, "2026-07-05", risk=0)), PROFILE, D("2026-07-10"), NO_SHIFT)
    assert (task.nominal_due_on, task.due_on, task.calendar_estimated) == (D("2026-10-05"), D("2026-09-30"), False)


def test_unknown_year_is_weekends_only_and_estimated_until_a_table_is_loaded():
    # 2027 is not in chinesecalendar 1.11: Sat 2027-01-02 → Fri 2027-01-01, estimated
    assert NO_SHIFT.previous_working_day(D("2027-01-02")) == (D("2027-01-01"), True)
    assert NO_SHIFT.previous_working_day(D("2027-03-03")) == (D("2027-03-03"), True)
    rows = parse_calendar_csv("day,working,name\n2027-01-01,0,元旦\n2027-02-06,1,春节调休\n")
    table = WorkCalendar.from_rows([(d, w) for d, w, _ in rows])
    assert table.previous_working_day(D("2027-01-02")) == (D("2026-12-31"), False)
    assert table.previous_working_day(D("2027-02-06")) == (D("2027-02-06"), False)
    # a walk back from a known year into an unknown one stays estimated
    assert NO_SHIFT.previous_working_day(D("2027-01-01")) == (D("2027-01-01"), True)


def test_operator_rows_for_a_known_year_change_those_days_only():
    """A local correction in a year chinesecalendar knows keeps the national holidays around it."""
    table = WorkCalendar.from_rows([(D("2026-05-06"), False), (D("2026-06-13"), True)])
    assert table.previous_working_day(D("2026-05-06")) == (D("2026-04-30"), False)  # listed: 劳动节 one day longer
    assert table.previous_working_day(D("2026-06-13")) == (D("2026-06-13"), False)  # listed: a Saturday worked
    assert table.previous_working_day(D("2026-10-05")) == (D("2026-09-30"), False)  # 国庆 still a holiday
    assert table.previous_working_day(D("2026-02-23")) == (D("2026-02-14"), False)  # 春节 still a holiday


def test_bad_calendar_file_names_the_row():
    with pytest.raises(InvalidInput) as err:
        parse_calendar_csv("日期,上班\n2027-13-01,0\n2027-01-02,x\n", file="2027.csv")
    assert [(i.line, i.column) for i in err.value.issues] == [(2, "day"), (3, "working")]


def test_profile_is_data_and_validated(tmp_path, monkeypatch):
    import json

    data = json.loads((__import__("registry.profile", fromlist=["PROFILE_DIR"]).PROFILE_DIR / "national-2018.json").read_text("utf-8"))
    data.update(name="county-x", version=3)
    data["visit"]["stable"] = {"months": 2, "days": 0, "clause": "县规 稳定+2月"}
    (tmp_path / "county-x.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    monkeypatch.setenv("JINGFANG_PROFILE_DIR", str(tmp_path))
    profile = load_profile("county-x")
    [task, _] = plan_patient(rec(att(1, "2026-01-20", risk=0)), profile, D("2026-02-01"))
    assert (task.nominal_due_on, task.rule) == (D("2026-03-20"), "county-x@3:县规 稳定+2月")
    data["visit"]["stable"] = {"months": 0, "days": 0, "clause": "x"}
    with pytest.raises(InvalidInput):
        parse_profile(data)
    with pytest.raises(InvalidInput):
        load_profile("no-such-profile")


# rules.md §5 [decision, 2026-12]: the doctor's own date (下次随访日期). d = 2026-01-20.
DOCTOR = "national-2018@1:§5 医生指定"


@pytest.mark.parametrize("attempt, next_on, expected, rule", [
    # 稳定: the table gives d + 3 months = 2026-04-20
    ("stable", "2026-01-10", "2026-04-20", "national-2018@1:§5 稳定+3月"),      # before d: ignored
    ("stable", "2026-01-20", "2026-04-20", "national-2018@1:§5 稳定+3月"),      # equal to d: ignored
    ("stable", "2026-01-21", "2026-01-21", DOCTOR),                            # the day after d
    ("stable", "2026-02-20", "2026-02-20", DOCTOR),                            # between: the doctor's date
    ("stable", "2026-04-19", "2026-04-19", DOCTOR),                            # the day before the table's
    ("stable", "2026-04-20", "2026-04-20", "national-2018@1:§5 稳定+3月"),      # equal to the table's date
    ("stable", "2026-06-01", "2026-04-20", "national-2018@1:§5 稳定+3月"),      # after: never delays
    ("stable", None, "2026-04-20", "national-2018@1:§5 稳定+3月"),
    # 住院: the discharge check, d + 30 days = 2026-02-19
    ("hospital", "2026-02-05", "2026-02-05", DOCTOR),
    ("hospital", "2026-02-19", "2026-02-19", "national-2018@1:§5 住院+30d"),
    ("hospital", "2026-03-01", "2026-02-19", "national-2018@1:§5 住院+30d"),
    # 不稳定: d + 14 days = 2026-02-03
    ("unstable", "2026-01-27", "2026-01-27", DOCTOR),
    ("unstable", "2026-02-10", "2026-02-03", "national-2018@1:§5 不稳定+14d"),
    # not complete: no doctor's date (retry, d + 7 days)
    ("unreached", "2026-01-22", "2026-01-27", "national-2018@1:§5 未访到+7d"),
    ("no_risk", "2026-01-22", "2026-01-27", "national-2018@1:§5 随访不完整+7d [decision]"),
])
def test_section5_doctors_own_date(attempt, next_on, expected, rule):
    fields = {"stable": dict(risk=0), "hospital": dict(hosp=1), "unstable": dict(risk=3),
              "unreached": dict(lost=1), "no_risk": dict()}[attempt]
    task = visit(rec(att(1, "2026-01-20", next_on=next_on, **fields)), "2026-01-20")
    assert (task.nominal_due_on, task.rule) == (D(expected), rule)


def test_doctors_date_only_from_the_latest_attempt():
    """An earlier visit's 下次随访日期 does not bind the task the latest visit decides."""
    record = rec(att(1, "2026-01-20", risk=0, next_on="2026-02-01"), att(2, "2026-01-25", risk=0))
    assert visit(record, "2026-01-26").nominal_due_on == D("2026-04-25")


def test_doctors_date_then_moves_to_a_working_day():
    """The working-day rule applies to the doctor's date (2026-10-03 is in the National Day holiday)."""
    record = rec(att(1, "2026-09-20", risk=0, next_on="2026-10-03"))
    [task] = [t for t in plan(record, PROFILE, D("2026-09-21"), NO_SHIFT)
              if t.kind == "follow_up"]
    assert task.nominal_due_on == D("2026-10-03") and task.due_on == D("2026-09-30") and task.rule == DOCTOR

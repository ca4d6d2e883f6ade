"""以奖代补 Guardian-years (rules.md §11): the four duties on hand-built cases, the SQL twin against the
Python rule on random histories (both databases), civil affairs' decision and the payment (never twice)."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from registry import guardian_years
from registry.codes import GuardianYearStatus, RewardDuty
from registry.errors import Conflict, InvalidInput
from registry.guardian_reward import DUTY_COLUMNS, assess, duties_select, effective_status
from registry.models import AuditLog, GuardianYear
from registry.profile import RewardRules, load_profile
from twins import TWIN_SETTINGS, scratch, seed

RULES = RewardRules()
YEAR = 2025
REGISTERED = date(2024, 6, 1)


def fu(day: date, *, risk=0, lost=None, hospital=None, disturbance=0, crime=0, lock=1, adherence=1):
    return SimpleNamespace(visit_on=day, lost_reason=lost, risk_level=risk, hospital_status=hospital,
                           incidents_disturbance=disturbance, incidents_crime=crime, lock_status=lock, adherence=adherence)


def quarterly(**overrides) -> list:
    return [fu(date(YEAR, m, 15), **overrides) for m in (2, 5, 8, 11)]


def run(follow_ups, *, today=date(YEAR + 1, 1, 10), start=date(YEAR, 1, 1), end=date(YEAR, 12, 31), emergencies=()):
    return assess(patient_id="P", year=YEAR, enrolled_from=start, enrolled_to=end, registered_on=REGISTERED,
                  follow_ups=follow_ups, today=today, rules=RULES, emergencies=emergencies)


def test_a_good_year_meets_every_duty_and_is_final_after_the_year():
    result = run(quarterly())
    assert result.eligible and not result.provisional
    assert [d.duty for d in result.duties] == list(RewardDuty)
    assert "第4季度完整随访1次" in result.duty(RewardDuty.QUARTERLY_VISITS).evidence
    assert "4/4（100%）" in result.duty(RewardDuty.ADHERENCE).evidence


def test_a_quarter_without_a_visit_fails_duty_1_naming_the_quarter():
    rows = [r for r in quarterly() if r.visit_on.month != 5]
    rows.append(fu(date(YEAR, 5, 20), lost=1, risk=None))  # an attempt that did not reach the patient
    duty = run(rows).duty(RewardDuty.QUARTERLY_VISITS)
    assert not duty.met
    assert "第2季度（2025-04-01至2025-06-30）完整随访0次" in duty.evidence
    assert not run(rows).eligible


def test_a_year_with_a_zhaoshi_fails_duty_2_with_the_follow_up_date():
    rows = quarterly()
    rows[2] = fu(date(YEAR, 8, 15), disturbance=1)
    result = run(rows)
    duty = result.duty(RewardDuty.NO_INCIDENT)
    assert not duty.met and "2025-08-15 随访记录肇事1次" in duty.evidence
    assert result.duty(RewardDuty.QUARTERLY_VISITS).met and not result.eligible


def test_an_emergency_of_situation_2_fails_duty_2_through_its_seam():
    duty = run(quarterly(), emergencies=[date(YEAR, 3, 3)]).duty(RewardDuty.NO_INCIDENT)
    assert not duty.met and "应急处置" in duty.evidence and "2025-03-03" in duty.evidence
    assert run(quarterly(), emergencies=[date(YEAR - 1, 12, 31)]).duty(RewardDuty.NO_INCIDENT).met


def test_a_lock_up_fails_duty_3_and_a_released_one_does_not():
    rows = quarterly()
    rows[1] = fu(date(YEAR, 5, 15), lock=2)
    duty = run(rows).duty(RewardDuty.NO_LOCK_UP)
    assert not duty.met and "2025-05-15 随访记录关锁" in duty.evidence
    rows[1] = fu(date(YEAR, 5, 15), lock=3)
    assert run(rows).duty(RewardDuty.NO_LOCK_UP).met


def test_adherence_needs_three_quarters_of_the_complete_follow_ups():
    rows = quarterly()
    rows[0] = fu(date(YEAR, 2, 15), adherence=2)
    assert run(rows).duty(RewardDuty.ADHERENCE).met  # 3/4 = 75 %
    rows[1] = fu(date(YEAR, 5, 15), adherence=3)
    duty = run(rows).duty(RewardDuty.ADHERENCE)
    assert not duty.met and "2/4（50%）" in duty.evidence
    assert run(quarterly(adherence=4)).duty(RewardDuty.ADHERENCE).met  # 医嘱勿需服药 counts
    assert not run([]).duty(RewardDuty.ADHERENCE).met


def test_during_the_year_a_quarter_not_over_is_pending_not_failed():
    rows = [fu(date(YEAR, 2, 15)), fu(date(YEAR, 5, 15))]
    result = run(rows, today=date(YEAR, 8, 1))
    assert result.provisional and result.eligible
    assert "第3季度完整随访0次（未到期）" in result.duty(RewardDuty.QUARTERLY_VISITS).evidence
    assert not run(rows, today=date(YEAR, 10, 1)).duty(RewardDuty.QUARTERLY_VISITS).met


def test_only_the_enrolled_quarters_need_a_visit():
    rows = [fu(date(YEAR, 8, 15)), fu(date(YEAR, 11, 15))]
    assert run(rows, start=date(YEAR, 7, 1)).eligible
    # enrolled from Jul 20: the visit of Jul 10 is outside the enrolled part of Q3
    assert not run([fu(date(YEAR, 7, 10)), fu(date(YEAR, 11, 15))], start=date(YEAR, 7, 20)).eligible


def test_the_profile_holds_the_duties_and_the_amount():
    reward = load_profile("national-2018").reward
    assert reward.min_adherence_share == 0.75 and set(reward.adherence_codes) == {1, 4}
    assert 1200 <= reward.amount_for(2026) <= 2400
    assert RewardRules(amounts=((2026, 2400),)).amount_for(2026) == 2400
    assert effective_status("provisional", YEAR, date(YEAR + 1, 1, 1)) == GuardianYearStatus.FINAL
    assert effective_status("provisional", YEAR, date(YEAR, 12, 31)) == GuardianYearStatus.PROVISIONAL


# ----------------------------------------------------------------------------- the SQL twin

DAYS = [date(YEAR - 1, 12, 20) + timedelta(days=23 * i) for i in range(18)]  # across the year and its edges


@st.composite
def histories(draw):
    people, guardians, rows, emergencies = [], [], [], []
    for n in range(draw(st.integers(1, 4))):
        pid = f"P{n}"
        people.append({"patient_id": pid, "registered_on": draw(st.sampled_from([REGISTERED, date(YEAR, 3, 10)]))})
        lo, hi = sorted(draw(st.lists(st.sampled_from(DAYS[1:-2]), min_size=2, max_size=2)))
        guardians.append({"patient_id": pid, "year": YEAR, "enrolled_from": max(lo, date(YEAR, 1, 1)),
                          "enrolled_to": min(hi, date(YEAR, 12, 31)), "status": "provisional"})
        for seq, day in enumerate(draw(st.lists(st.sampled_from(DAYS), max_size=8)), 1):
            rows.append({"patient_id": pid, "visit_on": day, "seq": seq,
                         "risk_level": draw(st.sampled_from([None, 0, 0, 1])),
                         "lost_reason": draw(st.sampled_from([None, None, None, 1])),
                         "hospital_status": draw(st.sampled_from([None, 0, 1])),
                         "incidents_disturbance": draw(st.sampled_from([None, 0, 0, 0, 1])),
                         "incidents_crime": draw(st.sampled_from([None, 0, 0, 0, 1])),
                         "lock_status": draw(st.sampled_from([None, 1, 1, 2, 3])),
                         "adherence": draw(st.sampled_from([None, 1, 1, 2, 3, 4]))})
        emergencies += [(pid, d) for d in draw(st.lists(st.sampled_from(DAYS), max_size=1))]
    today = draw(st.sampled_from([date(YEAR, 4, 1), date(YEAR, 6, 30), date(YEAR, 9, 30), date(YEAR + 1, 2, 1)]))
    return people, guardians, rows, emergencies, today


def test_duties_match_their_sql_twin(database):
    g = GuardianYear.__table__

    @TWIN_SETTINGS
    @given(case=histories(), with_emergencies=st.booleans())
    def check(case, with_emergencies):
        people, guardians, rows, emergencies, today = case
        if not with_emergencies:
            emergencies = []
        with scratch(database.engine) as conn:
            seed(conn, people, rows)
            conn.execute(g.insert(), guardians)
            em = None
            if with_emergencies:
                em = sa.union_all(*(sa.select(sa.literal(pid).label("patient_id"),
                                              sa.literal(day, sa.Date).label("occurred_on"))
                                    for pid, day in [("-", date(2000, 1, 1)), *emergencies]))
            got = {r.patient_id: r for r in conn.execute(duties_select(YEAR, today, RULES, emergencies=em))}
        registered = {p["patient_id"]: p["registered_on"] for p in people}
        for row in guardians:
            pid = row["patient_id"]
            expected = assess(patient_id=pid, year=YEAR, enrolled_from=row["enrolled_from"],
                              enrolled_to=row["enrolled_to"], registered_on=registered[pid],
                              follow_ups=[SimpleNamespace(**r) for r in rows if r["patient_id"] == pid], today=today,
                              rules=RULES, emergencies=[d for p, d in emergencies if p == pid])
            for duty, column in DUTY_COLUMNS.items():
                assert bool(getattr(got[pid], column)) == expected.duty(duty).met, (pid, duty)
            assert bool(got[pid].eligible) == expected.eligible

    check()


# ----------------------------------------------------------------------------- decision and payment


def _enrolled_with(database, follow_ups) -> None:
    from registry.models import FollowUp

    with database.engine.begin() as conn:
        seed(conn, [{"patient_id": "P", "registered_on": REGISTERED}])
        if follow_ups:
            conn.execute(FollowUp.__table__.insert(), [
                {"patient_id": "P", "seq": 1, **{k: v for k, v in vars(f).items()}} for f in follow_ups])
    guardian_years.enrol(database.engine, patient_id="P", year=YEAR, actor="tester")


def test_enrolment_twice_is_a_conflict(database):
    _enrolled_with(database, quarterly())
    with pytest.raises(Conflict) as err:
        guardian_years.enrol(database.engine, patient_id="P", year=YEAR, actor="tester")
    assert err.value.code == "GUARDIAN_YEAR_EXISTS"
    with pytest.raises(InvalidInput) as bad:
        guardian_years.enrol(database.engine, patient_id="P", year=YEAR + 1, actor="t",
                             enrolled_from=date(YEAR + 1, 5, 1), enrolled_to=date(YEAR + 1, 4, 1))
    assert bad.value.code == "BAD_ENROLMENT_PERIOD"


def test_approve_pay_and_a_second_payment_is_refused(database):
    _enrolled_with(database, quarterly())
    engine, after = database.engine, date(YEAR + 1, 1, 15)
    with pytest.raises(InvalidInput) as early:
        guardian_years.decide(engine, patient_id="P", year=YEAR, approve=True, reason=None, actor="mz",
                              today=date(YEAR, 12, 1), rules=RULES)
    assert early.value.code == "REWARD_YEAR_NOT_OVER"
    with pytest.raises(InvalidInput) as unapproved:
        guardian_years.pay(engine, patient_id="P", year=YEAR, paid_on=after, actor="mz", rules=RULES)
    assert unapproved.value.code == "REWARD_NOT_APPROVED"
    guardian_years.decide(engine, patient_id="P", year=YEAR, approve=True, reason=None, actor="mz", today=after, rules=RULES)
    paid = guardian_years.pay(engine, patient_id="P", year=YEAR, paid_on=after, actor="mz", rules=RULES)
    assert paid["paid_amount"] == RULES.amount_for(YEAR)
    with pytest.raises(Conflict) as twice:
        guardian_years.pay(engine, patient_id="P", year=YEAR, paid_on=after, actor="mz", rules=RULES, amount=999)
    assert twice.value.code == "REWARD_ALREADY_PAID"
    with pytest.raises(Conflict):
        guardian_years.decide(engine, patient_id="P", year=YEAR, approve=False, reason="复核", actor="mz", today=after,
                              rules=RULES)
    g, a = GuardianYear.__table__, AuditLog.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(g)).one()
        audited = conn.execute(sa.select(a.c.detail).where(a.c.object_type == "guardian_year")).scalars().all()
    assert (row.status, row.paid_amount, row.paid_on) == ("paid", RULES.amount_for(YEAR), after)
    assert len(audited) == 3  # enrolment, approval, one payment


def test_withholding_needs_a_reason_and_an_unmet_duty_cannot_be_approved(database):
    rows = quarterly()
    rows[0] = fu(date(YEAR, 2, 15), crime=1)
    _enrolled_with(database, rows)
    engine, after = database.engine, date(YEAR + 1, 1, 15)
    with pytest.raises(InvalidInput) as not_eligible:
        guardian_years.decide(engine, patient_id="P", year=YEAR, approve=True, reason=None, actor="mz", today=after,
                              rules=RULES)
    assert not_eligible.value.code == "REWARD_NOT_ELIGIBLE" and "无肇事肇祸" in not_eligible.value.message
    with pytest.raises(InvalidInput) as no_reason:
        guardian_years.decide(engine, patient_id="P", year=YEAR, approve=False, reason="  ", actor="mz", today=after,
                              rules=RULES)
    assert no_reason.value.code == "REWARD_REASON_REQUIRED"
    done = guardian_years.decide(engine, patient_id="P", year=YEAR, approve=False, reason="2025-02-15 肇祸",
                                 actor="mz", today=after, rules=RULES)
    assert done["status"] == "withheld"
    with engine.connect() as conn:
        row, result = guardian_years.assess_one(conn, patient_id="P", year=YEAR, today=after, rules=RULES)
    assert (row.status, row.reason, result.eligible) == ("withheld", "2025-02-15 肇祸", False)


def test_a_recorded_emergency_of_situation_2_fails_duty_2_in_both_forms(database):
    """rules.md §11 duty 2 fed by the emergency record itself (rules.md §9): situation 2 counts,
    situation 1 alone does not; the per-patient assessment and the payout list's SQL agree."""
    from datetime import datetime

    from registry.emergencies import reward_events_select
    from registry.models import Emergency

    _enrolled_with(database, quarterly())
    engine, after = database.engine, date(YEAR + 1, 1, 15)
    e = Emergency.__table__

    def duty_2() -> tuple[bool, int]:
        with engine.connect() as conn:
            _, result = guardian_years.assess_one(conn, patient_id="P", year=YEAR, today=after, rules=RULES)
            row = conn.execute(duties_select(YEAR, after, RULES, emergencies=reward_events_select())).one()
        met = {d.duty: d.met for d in result.duties}[RewardDuty.NO_INCIDENT]
        return met, row.emergencies

    assert duty_2() == (True, 0)
    with engine.begin() as conn:
        conn.execute(sa.insert(e), [{"patient_id": "P", "situations": "1", "reported_at": datetime(YEAR, 3, 2, 9, 0),
                                     "opened_by": "doc"}])
    assert duty_2() == (True, 0)  # situation 1 (self-harm) is not duty 2's
    with engine.begin() as conn:
        conn.execute(sa.insert(e), [{"patient_id": "P", "situations": "1,2", "reported_at": datetime(YEAR, 7, 1, 22, 0),
                                     "started_at": datetime(YEAR, 7, 1, 21, 30), "opened_by": "doc"}])
    assert duty_2() == (False, 1)

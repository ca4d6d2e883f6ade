"""考核指标 Hand-computed small populations for every indicator and every edge (indicators.md),
the same numbers on SQLite and PostgreSQL.

Every case lives in its own township (one village of 1,000 residents), so ONE county-wide
compute per month checks all cases at once through ``children``; expected numbers are written
by hand next to the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa

from registry import models
from registry.errors import InvalidInput, NotFound
from registry.rates.indicators import INDICATOR_KEYS, INDICATORS, Period, rate
from registry.rates.compute import compute_rates

D = date.fromisoformat


@dataclass
class Case:
    """One township: its patients, follow-ups, health checks and expected values per (month, variant)."""

    name: str
    patients: list[dict]
    followups: list[dict] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)
    expect: dict[tuple[str, str], dict] = field(default_factory=dict)


def pt(pid: str, registered: str, diagnosis: str = "schizophrenia", status: str = "active", status_on: str | None = None):
    return dict(patient_id=pid, registered_on=D(registered), diagnosis=diagnosis, status=status,
                status_on=D(status_on) if status_on else None)


def fu(pid: str, on: str, seq: int = 1, **fields):
    """A complete, stable, face-to-face follow-up at home with regular medication, unless overridden."""
    row = dict(patient_id=pid, visit_on=D(on), seq=seq, mode=2, lost_reason=None, risk_level=0, insight=1,
               symptoms_obvious=False, sf_self_care=1, sf_housework=1, sf_work=1, sf_study=1, sf_social=1,
               incidents_disturbance=0, incidents_crime=0, hospital_status=0, adherence=1, classification=None,
               psych_support_patient=False, psych_support_family=False, rehabilitation=False)
    row.update(fields)
    return row


def lost(pid: str, on: str, **fields):
    """An unreached attempt: lost reason recorded, the assessment blank."""
    row = {k: None for k in fu(pid, on)}
    row.update(patient_id=pid, visit_on=D(on), seq=1, mode=2, lost_reason=1)
    row.update(fields)
    return row


Q, C = "quarterly", "count"
JUN, MAY, MAR, JUL = "2026-06", "2026-05", "2026-03", "2026-07"

CASES = [
    Case("full", [pt("full", "2025-01-01")],
         [fu("full", "2026-02-10", rehabilitation=True), fu("full", "2026-05-10", classification=3)],
         expect={(JUN, Q): dict(registered=1, management_rate=(1, 1), standard_management_rate=(1, 1),
                                treatment_rate=(1, 1), regular_medication_rate=(1, 1),
                                schizophrenia_treatment_rate=(1, 1), stable_rate=(1, 1), face_to_face_rate=(1, 1),
                                rehabilitation_rate=(1, 1), psych_support_rate=(0, 1), incident_rate=(0, 1),
                                health_check_rate=(0, 1), reported_prevalence=(1, 1000))}),  # [2026-12]: the count itself
    # Registered after Q1 ended: only Q2 is required; phone-only → not 面访; 间断 → treated, not regular.
    Case("midyear", [pt("mid", "2026-04-20", diagnosis="bipolar")],
         [fu("mid", "2026-05-01", mode=3, adherence=2)],
         expect={(JUN, Q): dict(registered=1, management_rate=(1, 1), standard_management_rate=(1, 1),
                                treatment_rate=(1, 1), regular_medication_rate=(0, 1), face_to_face_rate=(0, 1),
                                schizophrenia_treatment_rate=(0, 0), stable_rate=(1, 1))}),
    # The 03-01 follow-up predates registration (03-15): ignored for Q1, 面访, 心理疏导 and 肇事.
    Case("before_registration", [pt("early", "2026-03-15")],
         [fu("early", "2026-03-01", psych_support_patient=True, incidents_crime=1),
          fu("early", "2026-05-05", mode=3, adherence=3)],
         expect={(JUN, Q): dict(registered=1, management_rate=(1, 1), standard_management_rate=(0, 1),
                                treatment_rate=(0, 1), face_to_face_rate=(0, 1), psych_support_rate=(0, 1),
                                incident_rate=(0, 1))}),
    # Dead inside W and moved out on D itself: not 在册 → every rate null (an empty township).
    Case("gone", [pt("dead", "2025-01-01", status="dead", status_on="2026-04-10"),
                  pt("moved", "2025-01-01", status="moved_out", status_on="2026-06-30")],
         [fu("dead", "2026-02-01"), fu("moved", "2026-02-01")],
         expect={(JUN, Q): dict(registered=0, management_rate=(0, 0), standard_management_rate=(0, 0),
                                stable_rate=(0, 0), reported_prevalence=(0, 1000))}),
    # Died after D: still 在册 at D, never visited.
    Case("dies_later", [pt("later", "2025-01-01", status="dead", status_on="2026-07-15")],
         expect={(JUN, Q): dict(registered=1, management_rate=(0, 1), standard_management_rate=(0, 1),
                                treatment_rate=(0, 1), stable_rate=(0, 0), rehabilitation_rate=(0, 0))}),
    # In hospital at the latest visit (complete without a risk level): treated, not 居家 (so neither
    # 康复 nor 心理疏导 counts: both are over 居家, indicators.md [2026-12]).
    Case("hospital", [pt("hosp", "2025-01-01")],
         [fu("hosp", "2026-01-15"), fu("hosp", "2026-06-01", mode=1, risk_level=None, hospital_status=1, adherence=None,
                                       rehabilitation=True, psych_support_family=True)],
         expect={(JUN, Q): dict(management_rate=(1, 1), standard_management_rate=(1, 1), treatment_rate=(1, 1),
                                regular_medication_rate=(0, 1), stable_rate=(0, 0), rehabilitation_rate=(0, 0),
                                face_to_face_rate=(1, 1), psych_support_rate=(0, 0))}),
    # Same-day tie: the one entered last (higher id) is the latest — here not treated, 基本稳定.
    Case("tie_last_bad", [pt("tie1", "2025-01-01")],
         [fu("tie1", "2026-02-01"), fu("tie1", "2026-06-10", seq=1, classification=3),
          fu("tie1", "2026-06-10", seq=2, adherence=3, risk_level=1)],
         expect={(JUN, Q): dict(treatment_rate=(0, 1), regular_medication_rate=(0, 1), stable_rate=(0, 1))}),
    Case("tie_last_good", [pt("tie2", "2025-01-01")],
         [fu("tie2", "2026-02-01"), fu("tie2", "2026-06-10", seq=2, adherence=3, risk_level=1),
          fu("tie2", "2026-06-10", seq=1, classification=3)],
         expect={(JUN, Q): dict(treatment_rate=(1, 1), regular_medication_rate=(1, 1), stable_rate=(1, 1))}),
    # Only unreached attempts: not 在管, so not 居家: the family's 心理疏导 on that visit does not count
    # (psych_support_rate is over 居家, indicators.md [2026-12]; it was over 在册 before).
    Case("unreached", [pt("lost", "2025-01-01")],
         [lost("lost", "2026-03-01", psych_support_family=True), lost("lost", "2026-04-01")],
         expect={(JUN, Q): dict(management_rate=(0, 1), face_to_face_rate=(0, 1), standard_management_rate=(0, 1),
                                psych_support_rate=(0, 0), stable_rate=(0, 0), treatment_rate=(0, 1))}),
    # 居家 with 心理疏导 on an unreached attempt in W: counts (any follow-up in W, indicators.md).
    Case("support_at_home", [pt("sup", "2025-01-01")],
         [lost("sup", "2026-03-01", psych_support_family=True), fu("sup", "2026-04-01")],
         expect={(JUN, Q): dict(psych_support_rate=(1, 1), stable_rate=(1, 1))}),
    Case("incident", [pt("inc", "2025-01-01")],
         [fu("inc", "2026-03-10", incidents_disturbance=1, psych_support_patient=True, risk_level=1),
          fu("inc", "2026-04-10")],
         expect={(JUN, Q): dict(incident_rate=(1, 1), psych_support_rate=(1, 1), standard_management_rate=(1, 1))}),
    # Health checks: only those dated in W count (2025-12-31 and 2026-07-01 do not).
    Case("health_checks", [pt("hc1", "2025-01-01"), pt("hc2", "2025-01-01")],
         checks=[("hc1", "2025-12-31"), ("hc1", "2026-07-01"), ("hc2", "2026-01-01")],
         expect={(JUN, Q): dict(health_check_rate=(1, 2)), (MAR, Q): dict(health_check_rate=(1, 2))}),
    # Quarter boundaries: 03-31 is Q1, 04-01 is Q2.
    Case("quarter_edges", [pt("qa", "2025-01-01"), pt("qb", "2025-01-01"), pt("qc", "2025-01-01")],
         [fu("qa", "2026-03-31"), fu("qa", "2026-04-01"),
          fu("qb", "2026-04-01"), fu("qb", "2026-06-30"),
          fu("qc", "2026-01-05")],
         expect={(MAR, Q): dict(standard_management_rate=(2, 3)),   # qa, qc (qb has nothing in Q1 by 03-31)
                 (MAY, Q): dict(standard_management_rate=(2, 3)),   # Q2 not over yet: qa, qc
                 (JUN, Q): dict(standard_management_rate=(1, 3))}),  # only qa has Q1 and Q2
    # First visit not yet due: registered on or after D − 13 days with no follow-up.
    Case("new_registration", [pt("n20", "2026-05-20"), pt("n18", "2026-05-18"), pt("n17", "2026-05-17")],
         expect={(MAY, Q): dict(registered=3, standard_management_rate=(2, 3), management_rate=(0, 3)),
                 (JUN, Q): dict(standard_management_rate=(0, 3))}),  # Q2 ended after registration
    Case("registered_after_d", [pt("future", "2026-07-05")], [fu("future", "2026-07-06")],
         expect={(JUN, Q): dict(registered=0, management_rate=(0, 0)),
                 (JUL, Q): dict(registered=1, management_rate=(1, 1))}),
    # count variant: ⌈M/3⌉ complete follow-ups in W (June → 2, July → 3); unreached ones don't count.
    Case("count_variant", [pt("cnt", "2025-01-01")],
         [fu("cnt", "2026-01-10"), fu("cnt", "2026-02-10"), lost("cnt", "2026-05-10")],
         expect={(JUN, C): dict(standard_management_rate=(1, 1)), (JUN, Q): dict(standard_management_rate=(0, 1)),
                 (JUL, C): dict(standard_management_rate=(0, 1))}),
    # Classification: blank → computed (insight 2 → 基本稳定); recorded 稳定 wins.
    Case("classification", [pt("computed", "2025-01-01"), pt("recorded", "2025-01-01")],
         [fu("computed", "2026-06-01", insight=2), fu("recorded", "2026-06-01", insight=2, classification=3)],
         expect={(JUN, Q): dict(stable_rate=(1, 2), schizophrenia_treatment_rate=(2, 2))}),
]
EMPTY = "T_empty"
MONTHS = sorted({key for case in CASES for key in case.expect})


def build(database) -> None:
    """Insert the county: one township + village per case, plus a township with nothing in it."""
    region, patient, follow_up, health = (models.Region.__table__, models.Patient.__table__,
                                          models.FollowUp.__table__, models.HealthCheck.__table__)
    with database.engine.begin() as conn:
        conn.execute(sa.insert(region), [dict(code="C0", name="测试县", level="county", parent_code=None, population=None)])
        conn.execute(sa.insert(region), [dict(code=EMPTY, name="空镇", level="township", parent_code="C0", population=None)])
        for case in CASES:
            conn.execute(sa.insert(region), [dict(code=f"T_{case.name}", name=case.name, level="township",
                                                  parent_code="C0", population=None)])
            conn.execute(sa.insert(region), [dict(code=f"V_{case.name}", name=case.name, level="village",
                                                  parent_code=f"T_{case.name}", population=1000)])
            for p in case.patients:
                conn.execute(sa.insert(patient), [dict(p, name="测试", sex=1, birth_date=date(1980, 1, 1),
                                                       village_code=f"V_{case.name}")])
            for row in case.followups:  # one statement each: ids follow the listed (entry) order
                conn.execute(sa.insert(follow_up), [row])
            for pid, on in case.checks:
                conn.execute(sa.insert(health), [dict(patient_id=pid, checked_on=D(on))])


def check_document(doc: dict) -> None:
    """Invariants of every rates document: all keys, numerator ≤ denominator, null rate iff no denominator."""
    for entry in [doc, *doc["children"]]:
        assert list(entry["indicators"]) == list(INDICATOR_KEYS)
        for ind in INDICATORS:
            v = entry["indicators"][ind.key]
            if v["denominator"] in (None, 0):
                assert v["rate"] is None and v["met"] is None
            else:
                # ‰: numerator × 1000 / denominator, the numerator being the count (indicators.md [2026-12])
                scale = Decimal(1000) if ind.unit == "permille" else Decimal(1)
                exact = (Decimal(v["numerator"]) * scale / Decimal(v["denominator"])).quantize(Decimal("0.0001"), ROUND_HALF_UP)
                assert v["rate"] == float(exact)
                if ind.unit == "percent":
                    assert 0 <= v["numerator"] <= v["denominator"]


def test_every_indicator_and_edge(database):
    build(database)
    failures = []
    for month, variant in MONTHS:
        doc = compute_rates(database.engine, month=month, region_code="C0", variant=variant)
        assert doc["variant"] == variant and doc["as_of"] == Period.parse(month).as_of.isoformat()
        check_document(doc)
        children = {c["region"]: c["indicators"] for c in doc["children"]}
        assert set(children) == {EMPTY, *(f"T_{c.name}" for c in CASES)}
        for case in CASES:
            for key, want in case.expect.get((month, variant), {}).items():
                got = children[f"T_{case.name}"][key]
                have = got["numerator"] if key == "registered" else (got["numerator"], got["denominator"])
                if have != want:
                    failures.append(f"{case.name} {month} {variant} {key}: got {have}, want {want}")
        # the empty township: zeros and nulls, never 0%
        empty = children[EMPTY]
        assert empty["registered"]["numerator"] == 0
        assert all(v["rate"] is None for v in empty.values())
        # the county is the sum of its townships
        for key in INDICATOR_KEYS:
            total = sum(c[key]["numerator"] for c in children.values())
            assert doc["indicators"][key]["numerator"] == total, key
    assert not failures, "\n".join(failures)


def test_rates_json_shape_and_targets(database):
    build(database)
    doc = compute_rates(database.engine, month=JUN, variant=Q)
    assert doc["region"] == "C0"  # the top region by default
    sm = doc["indicators"]["standard_management_rate"]
    assert sm["target"] == 0.9 and sm["met"] is (sm["rate"] >= 0.9)
    assert doc["indicators"]["stable_rate"]["target"] is None
    # county population = the sum of its villages (its own figure is blank)
    assert doc["indicators"]["reported_prevalence"]["denominator"] == 1000 * len(CASES)
    taishan = compute_rates(database.engine, month=JUN, variant=Q, targets="taishan-2019")
    assert taishan["indicators"]["treatment_rate"]["target"] == 0.7
    assert taishan["indicators"]["management_rate"]["target"] is None
    shaoxing = compute_rates(database.engine, month=JUN, variant=Q, targets="shaoxing-2024")
    assert shaoxing["indicators"]["regular_medication_rate"]["target"] == 0.9
    township = compute_rates(database.engine, month=JUN, region_code="T_full", variant=Q)
    assert township["region"] == "T_full" and [c["region"] for c in township["children"]] == ["V_full"]
    assert township["indicators"]["standard_management_rate"]["met"] is True


def test_statement_count_does_not_depend_on_regions(database):
    build(database)
    statements = []

    def count(_conn, _cursor, statement, *_args, **_kw):
        statements.append(statement)

    live = []

    def count_live(*_args, **_kw):
        live.append(1)

    sa.event.listen(database.engine, "before_cursor_execute", count_live)
    try:
        compute_rates(database.engine, month=JUN, variant=Q, today=date(2026, 5, 15))  # M and M−1 open: live
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", count_live)
    # regions, frozen-month check, the one grouped query, the joint-visit tasks' grouped query
    # (joint_visit_complete_rate, issue 14) (+ SET LOCAL jit on PostgreSQL)
    assert len(live) <= 5

    with database.engine.begin() as conn:  # the data was entered long before (not within the stamp margin)
        for table in ("follow_up", "patient"):
            conn.execute(sa.text(f"UPDATE {table} SET updated_at = :t"), {"t": datetime(2026, 7, 1, tzinfo=timezone.utc)})
    compute_rates(database.engine, month=JUN, variant=Q, today=date(2026, 7, 2))  # builds June's month state
    sa.event.listen(database.engine, "before_cursor_execute", count)
    try:
        compute_rates(database.engine, month=JUN, variant=Q, today=date(2026, 7, 2))
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", count)
    # closed month: + the state's freshness check (lock, stamp, build row, changed patients), still
    # a fixed number of statements, whatever the number of regions or patients (+1: the joint visits)
    assert len(statements) <= 9, statements


@pytest.mark.parametrize("kwargs, error, code", [
    (dict(month="2026-13"), InvalidInput, "BAD_MONTH"),
    (dict(month="June"), InvalidInput, "BAD_MONTH"),
    (dict(month="2026-06", region_code="nowhere"), NotFound, "REGION_NOT_FOUND"),
    (dict(month="2026-06", variant="yearly"), InvalidInput, "BAD_VARIANT"),
    (dict(month="2026-06", targets="no-such-set"), InvalidInput, "TARGET_SET_NOT_FOUND"),
])
def test_bad_input_is_a_named_error(database, kwargs, error, code):
    build(database)
    with pytest.raises(error) as info:
        compute_rates(database.engine, **kwargs)
    assert info.value.code == code


def test_variant_comes_from_the_rule_profile(database, tmp_path, monkeypatch):
    build(database)
    (tmp_path / "county-x.json").write_text(json.dumps({"name": "county-x", "standard_management_variant": "count"}))
    monkeypatch.setenv("JINGFANG_PROFILE_DIR", str(tmp_path))
    monkeypatch.setenv("JINGFANG_PROFILE", "county-x")
    from registry.config import get_settings
    doc = compute_rates(database.engine, month=JUN, region_code="T_count_variant")
    assert doc["variant"] == "count"
    assert (doc["indicators"]["standard_management_rate"]["numerator"], doc["variant"]) == (1, "count")
    monkeypatch.setenv("JINGFANG_PROFILE", "national-2018")  # ships without the key → quarterly
    get_settings.cache_clear()
    assert compute_rates(database.engine, month=JUN)["variant"] == "quarterly"


@pytest.mark.parametrize("numerator, denominator, expected", [
    (1, 3, 0.3333), (2, 3, 0.6667), (1, 20000, 0.0001), (3, 80000, 0.0), (4000, 1000, 4.0), (0, 4, 0.0),
    (1, 0, None), (0, 0, None),
])
def test_rate_is_rounded_half_up_to_4_decimals_and_null_without_denominator(numerator, denominator, expected):
    assert rate(numerator, denominator) == expected

"""指标契约 The spec's acceptance check (small-county → expected-rates-2026-06.json, exactly), the
``jingfang rates`` command, target sets as data, and frozen months — on both databases."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from registry import models
from jingfang.cli import app
from registry.errors import InvalidInput
from registry.importing import import_path
from registry.rates.compute import compute_rates, freeze
from registry.rates.snapshots import is_frozen, unfreeze
from registry.rates.targets import bundled_sets, load_target_set, meets, parse_target_set


@pytest.fixture
def county(database, small_county):
    import_path(database.engine, small_county, today=date(2026, 6, 10))
    return database


def expected(small_county) -> dict:
    return json.loads((small_county / "expected-rates-2026-06.json").read_text(encoding="utf-8"))


def test_small_county_matches_the_spec_exactly(county, small_county):
    assert compute_rates(county.engine, month="2026-06") == expected(small_county)


def test_rates_command_prints_the_contract_json(county, small_county):
    result = CliRunner().invoke(app, ["rates", "--month", "2026-06", "--json", "--db", county.url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected(small_county)
    table = CliRunner().invoke(app, ["rates", "--month", "2026-06", "--db", county.url])
    assert table.exit_code == 0 and "在册患者规范管理率" in table.stdout and "25.00%" in table.stdout


@pytest.mark.parametrize("args, code", [
    (["--month", "2026-13"], "BAD_MONTH"),
    (["--month", "2026-06", "--region", "ZZ"], "REGION_NOT_FOUND"),
    (["--month", "2026-06", "--variant", "weekly"], "BAD_VARIANT"),
])
def test_rates_command_bad_input_exits_1_with_a_chinese_message(county, args, code):
    result = CliRunner().invoke(app, ["rates", *args, "--json", "--db", county.url])
    assert result.exit_code == 1
    assert code in result.stderr


def test_a_published_month_never_changes_silently(county):
    engine = county.engine
    before = compute_rates(engine, month="2026-06")
    with pytest.raises(InvalidInput) as info:
        freeze(engine, month="2026-06", variant="quarterly", today=date(2026, 6, 30))
    assert info.value.code == "MONTH_NOT_CLOSED"
    assert freeze(engine, month="2026-06", variant="quarterly", today=date(2026, 7, 1)) is True
    assert freeze(engine, month="2026-06", variant="quarterly", today=date(2026, 7, 1)) is False  # once
    # a late entry for June: B's first visit, complete and face to face
    with engine.begin() as conn:
        conn.execute(sa.insert(models.FollowUp.__table__), [dict(patient_id="B", visit_on=date(2026, 6, 2), seq=1,
                                                               mode=2, risk_level=0, hospital_status=0, adherence=1)])
    with engine.connect() as conn:
        assert is_frozen(conn, "2026-06", "quarterly")
    assert compute_rates(engine, month="2026-06") == before  # frozen
    assert compute_rates(engine, month="2026-06", variant="count")["indicators"]["management_rate"]["numerator"] == 3
    assert unfreeze(engine, month="2026-06", variant="quarterly") > 0
    assert compute_rates(engine, month="2026-06")["indicators"]["management_rate"]["numerator"] == 3


def test_bundled_target_sets():
    assert bundled_sets() == ["default", "pilot-2021", "shaoxing-2024", "taishan-2019"]
    default = load_target_set()
    assert {t.indicator: t.value for t in default.targets} == {
        "standard_management_rate": 0.9, "treatment_rate": 0.8, "schizophrenia_treatment_rate": 0.8,
        "management_rate": 0.8, "rehabilitation_rate": 0.6, "psych_support_rate": 0.5}
    taishan = load_target_set("taishan-2019")
    assert [taishan.target_for(k, "any", 2026) for k in
            ("standard_management_rate", "treatment_rate", "schizophrenia_treatment_rate")] == [0.9, 0.7, 0.85]
    assert taishan.target_for("treatment_rate", "any", 2018) is None  # not yet in force
    pilot = load_target_set("pilot-2021")
    assert {t.value for t in pilot.targets} == {0.8} and len(pilot.targets) == 3
    shaoxing = load_target_set("shaoxing-2024")
    assert shaoxing.target_for("regular_medication_rate", "x", 2024) == 0.9


def test_target_lookup_prefers_the_region_then_the_latest_year():
    ts = parse_target_set({"targets": [
        {"indicator": "treatment_rate", "region": "*", "year": None, "value": 0.7},
        {"indicator": "treatment_rate", "region": "*", "year": 2025, "value": 0.75},
        {"indicator": "treatment_rate", "region": "T1", "year": 2024, "value": 0.6},
    ]})
    assert ts.target_for("treatment_rate", "T2", 2024) == 0.7
    assert ts.target_for("treatment_rate", "T2", 2026) == 0.75
    assert ts.target_for("treatment_rate", "T1", 2026) == 0.6
    assert ts.target_for("management_rate", "T1", 2026) is None


@pytest.mark.parametrize("numerator, denominator, target, met", [
    (9, 10, 0.9, True), (8, 10, 0.9, False), (89996, 100000, 0.9, False), (0, 0, 0.9, None), (1, 2, None, None),
])
def test_met_is_rate_at_least_target_exactly(numerator, denominator, target, met):
    assert meets(numerator, denominator, target) is met


@pytest.mark.parametrize("document", [
    {"targets": [{"indicator": "nonsense", "value": 0.9}]},
    {"targets": [{"indicator": "treatment_rate", "value": "high"}]},
    {"targets": [{"indicator": "treatment_rate", "value": 0.9, "year": 1800}]},
    {"no": "targets"},
])
def test_bad_target_files_are_refused(tmp_path, document):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_target_set(str(path))
    assert info.value.code == "BAD_TARGET_SET"

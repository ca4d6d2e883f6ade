"""合成县 The demo county is deterministic, valid and realistic."""

from datetime import date

import sqlalchemy as sa

from registry.importing import import_path
from registry.synthetic import write_county_csv

TODAY = date(2026, 11, 23)


def test_same_seed_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_county_csv(a, patients=200, seed=7, today=TODAY)
    write_county_csv(b, patients=200, seed=7, today=TODAY)
    for name in ("regions.csv", "patients.csv", "followups.csv", "health_checks.csv", "team_members.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_county_imports_and_looks_like_a_county(database, tmp_path):
    counts = write_county_csv(tmp_path, patients=1500, seed=3, today=TODAY)
    import_path(database.engine, tmp_path, today=TODAY)
    conn = database.engine.connect()
    q = lambda sql: conn.execute(sa.text(sql)).scalar_one()  # noqa: E731
    assert q("SELECT count(*) FROM region WHERE level = 'township'") == 12
    assert 140 <= q("SELECT count(*) FROM region WHERE level = 'village'") <= 160
    assert q("SELECT count(*) FROM patient") == 1500
    assert counts["followups"] > 1500 * 5  # two years of visits
    # every village has a village team member; every township a doctor and a police officer
    assert q("SELECT count(*) FROM region r WHERE level = 'village' AND NOT EXISTS "
             "(SELECT 1 FROM team_member m WHERE m.region_code = r.code AND m.role = 'village')") == 0
    assert q("SELECT count(*) FROM region r WHERE level = 'township' AND NOT EXISTS "
             "(SELECT 1 FROM team_member m WHERE m.region_code = r.code AND m.role = 'police')") == 0
    for sql in (
        "SELECT count(*) FROM patient WHERE status = 'dead'",
        "SELECT count(*) FROM patient WHERE status = 'moved_out'",
        "SELECT count(*) FROM patient WHERE lai_drug IS NOT NULL",
        "SELECT count(*) FROM patient WHERE guardian_name IS NULL",
        "SELECT count(*) FROM patient WHERE economic_status = 1",
        "SELECT count(*) FROM patient WHERE consent = 0",
        "SELECT count(*) FROM follow_up WHERE lost_reason IS NOT NULL",
        "SELECT count(*) FROM follow_up WHERE hospital_status = 1",
        "SELECT count(*) FROM follow_up WHERE risk_level >= 3",
        "SELECT count(*) FROM follow_up WHERE mode = 3",
        "SELECT count(*) FROM follow_up WHERE classification IS NULL AND risk_level IS NOT NULL",
    ):
        assert q(sql) > 0, sql
    assert q("SELECT count(*) FROM patient WHERE registered_on > '2026-10-20'") > 0  # first visits due
    conn.close()

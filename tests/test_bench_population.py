"""The set-based province (benchmarks/population.py) at small size: its rows pass the app's own checks.

The province the web benchmark seeds at 1,000,000 patients is written by INSERT…SELECT, past the
importer's validation. Here 2,000 patients are written the same way on PostgreSQL, exported
(``registry.exporting``) and imported into an empty SQLite database (``registry.importing``, every
row check of contract.md; all-or-nothing, so one bad row fails the test), the injection histories
already complete (the import adds no last injection); then the scheduler's full generation runs and
a township doctor's work list and one of the township's patient pages render through the app.
The region shape shared with the indicator benchmark is checked against its old literal rows.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from benchmarks.population import RATES_SHAPE, build_province, region_statements, run_statements, village_of
from benchmarks.scratch import TODAY
from registry.accounts import User, start_session
from registry.db import make_engine, upgrade
from registry.exporting import export_register
from registry.importing import import_path
from registry.web.app import create_app
from schedules.generation import generate

pytestmark = pytest.mark.postgresql_only  # generate_series, setseed: the seed is PostgreSQL SQL

TABLES = ("region", "team_member", "patient", "follow_up", "health_check", "injection")


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_province_rows_pass_the_importer_and_the_pages_render(database, tmp_path):
    engine = database.engine
    shape = build_province(engine, 2000, TODAY)
    counts = _counts(engine)
    assert counts["patient"] == 2000 and counts["region"] == 1 + shape.township_count + shape.village_count
    assert counts["follow_up"] > 3 * 2000 and counts["health_check"] > 0 and counts["injection"] > 0
    with engine.connect() as conn:  # contract.md: a member serves a township or a village, never the county
        served = set(conn.execute(sa.text("SELECT DISTINCT r.level FROM team_member m JOIN region r ON r.code = m.region_code")).scalars())
    assert served == {"township", "village"}

    export_register(engine, directory=tmp_path / "export", actor="test")
    check = make_engine(f"sqlite:///{tmp_path / 'check.db'}")
    upgrade(check)
    result = import_path(check, tmp_path / "export", today=TODAY)  # ImportRejected on any bad row
    assert not result.issues
    assert _counts(check) == counts  # nothing refused, no injection row added (the plans' last injections exist)
    check.dispose()

    run = generate(engine, as_of=TODAY)
    assert run["open"] > 0
    with engine.connect() as conn:
        township, patient_id = conn.execute(sa.text(
            "SELECT v.parent_code, k.patient_id FROM visit_task k JOIN patient p ON p.patient_id = k.patient_id"
            " JOIN region v ON v.code = p.village_code WHERE k.status = 'open' ORDER BY k.patient_id LIMIT 1")).one()
    with Session(engine) as s:
        user = User(username="doctor-1", password_hash="x", role="township_doctor", region_code=township, display_name="医生")
        s.add(user)
        s.flush()
        token, _ = start_session(s, user, source="test")
        s.commit()
    with TestClient(create_app(engine, today=lambda: TODAY)) as client:  # with lifespan: the fast path
        client.cookies.set("jf_session", token)
        worklist = client.get("/worklist", follow_redirects=False)
        page = client.get(f"/patients/{patient_id}", follow_redirects=False)
    assert worklist.status_code == 200 and "今日工作清单" in worklist.text
    assert page.status_code == 200 and patient_id in page.text


def test_rates_shape_is_the_indicator_benchmarks_county(database):
    """benchmarks/rates.py's county through the shared shape: the rows its literal statements wrote."""
    run_statements(database.engine, region_statements(RATES_SHAPE))
    with database.engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.text("SELECT code, name, level, parent_code, population FROM region"))}
        villages = conn.execute(sa.text(f"SELECT {village_of(RATES_SHAPE, 'i')} FROM generate_series(1, 3) i")).scalars().all()
    expected = {("B", "基准县", "county", None, None)}
    expected |= {(f"B{t:02d}", f"第{t}镇", "township", "B", None) for t in range(1, 21)}
    expected |= {(f"B{t:02d}{v:03d}", f"第{t}镇{v}村", "village", f"B{t:02d}", 20000) for t in range(1, 21) for v in range(1, 26)}
    assert rows == expected
    assert villages == ["B02001", "B03001", "B04001"]  # township 1 + i % 20, village 1 + (i / 20) % 25


def test_check_digit_sql_is_check_digit(database):
    """registry.ids.check_digit_sql, the set-based twin of check_digit, on random 17-digit prefixes."""
    import random

    from registry.ids import check_digit, check_digit_sql

    rng = random.Random(7)
    prefixes = [f"{rng.randrange(10 ** 17):017d}" for _ in range(300)]
    with database.engine.connect() as conn:
        got = conn.execute(sa.text(f"SELECT {check_digit_sql('x')} FROM unnest(CAST(:xs AS text[])) WITH ORDINALITY AS u(x, n)"
                                   " ORDER BY n"), {"xs": prefixes}).scalars().all()
    assert got == [check_digit(p) for p in prefixes]

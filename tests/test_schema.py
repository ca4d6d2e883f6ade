"""数据库结构 The Alembic migrations build exactly the schema the models describe, on both databases;
a migration that reshapes a table keeps its rows."""

import os
from datetime import date

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from registry.migrations_check import significant
from registry.db import make_engine
from registry.schema import metadata
from tests.conftest import BACKENDS, PG_SERVER


def test_migrations_match_models(database):
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = significant(compare_metadata(ctx, metadata()))
    assert diff == []


def test_check_constraints_refuse_bad_codes(database):
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    with database.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO region (code, name, level) VALUES ('C', '县', 'county')"))
    for stmt in (
        "INSERT INTO region (code, name, level) VALUES ('X', 'x', 'province')",
        "INSERT INTO region (code, name, level, population) VALUES ('Y', 'y', 'county', -1)",
    ):
        try:
            with database.engine.begin() as conn:
                conn.execute(sa.text(stmt))
        except IntegrityError:
            continue
        raise AssertionError(f"accepted: {stmt}")


@pytest.fixture(params=BACKENDS)
def blank_engine(request, tmp_path):
    """An engine on an empty database of its own (the migration test goes down and up again, which
    the shared test database must not)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/migrate.db")
        yield engine
        engine.dispose()
        return
    name = f"jf_test_migrate_{os.getpid()}"
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    engine = make_engine(f"{PG_SERVER}/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_attendance_per_person_migration_keeps_the_rows(blank_engine):
    """0015_attendance_per_person (rules.md §6.2 [2026-12]): the rows keyed by (follow-up, role) come
    through with their values and a new id; afterwards a second officer of a visit is a row of its
    own, a member twice or a second unnamed row of a role is refused; down again keeps one row per
    (follow-up, role)."""
    from alembic import command

    from registry.db import alembic_config
    from registry.models import FollowUp, Patient, Region, TeamMember

    engine = blank_engine
    cfg = alembic_config(engine)
    command.upgrade(cfg, "heads")
    command.downgrade(cfg, "0014_one_pending_move")  # 0015 only: every other head stays
    assert [c for c in sa.inspect(engine).get_columns("follow_up_participant") if c["name"] == "id"] == []
    with engine.begin() as conn:
        conn.execute(sa.insert(Region.__table__), [{"code": "V", "name": "村", "level": "village"}])
        conn.execute(sa.insert(TeamMember.__table__), [{"member_id": m, "name": m, "role": "police", "region_code": "V"}
                                                       for m in ("M1", "M2")])
        conn.execute(sa.insert(Patient.__table__), [{"patient_id": "P", "name": "x", "sex": 1, "village_code": "V",
                                                     "birth_date": date(1980, 1, 1), "diagnosis": "schizophrenia",
                                                     "registered_on": date(2025, 1, 1)}])
        conn.execute(sa.insert(FollowUp.__table__), [{"id": i, "patient_id": "P", "visit_on": date(2026, 1, i), "seq": 1}
                                                     for i in (1, 2)])
        conn.execute(sa.text(
            "INSERT INTO follow_up_participant (follow_up_id, role, member_id, attended, reason, source, recorded_by) VALUES "
            "(1, 'police', 'M1', :f, '值班', 'self', 'p1'), (1, 'village', NULL, :t, NULL, 'doctor', 'doc'), "
            "(2, 'police', NULL, :t, NULL, 'doctor', 'import')"), {"t": True, "f": False})
    command.upgrade(cfg, "heads")
    columns = "follow_up_id, role, member_id, attended, reason, source, recorded_by"
    with engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM follow_up_participant"))}
        ids = list(conn.execute(sa.text("SELECT id FROM follow_up_participant")).scalars())
    assert rows == {(1, "police", "M1", False, "值班", "self", "p1"), (1, "village", None, True, None, "doctor", "doc"),
                    (2, "police", None, True, None, "doctor", "import")}
    assert len(set(ids)) == 3 and None not in ids
    insert = sa.text("INSERT INTO follow_up_participant (follow_up_id, role, member_id, attended, source) "
                     "VALUES (:f, 'police', :m, :a, 'doctor')")
    with engine.begin() as conn:  # a second officer, and the unnamed row beside a named one: rows of their own
        conn.execute(insert, [{"f": 1, "m": "M2", "a": True}, {"f": 1, "m": None, "a": True}])
    for params in ({"f": 1, "m": "M1", "a": True}, {"f": 2, "m": None, "a": False}):
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(insert, params)
    with engine.connect() as conn:  # the new rows are numbered past the old ones
        assert conn.execute(sa.text("SELECT count(DISTINCT id) FROM follow_up_participant")).scalar() == 5
    command.downgrade(cfg, "0014_one_pending_move")
    with engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM follow_up_participant"))}
    assert rows == {(1, "police", None, True, None, "doctor", None), (1, "village", None, True, None, "doctor", "doc"),
                    (2, "police", None, True, None, "doctor", "import")}
    command.upgrade(cfg, "heads")

"""数据库结构 The Alembic migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from registry.migrations_check import significant
from registry.schema import metadata


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

"""Alembic environment: uses the engine handed over by ``registry.db.upgrade``."""

from alembic import context

from registry.schema import metadata

config = context.config
target_metadata = metadata()


def include_object(obj, name, type_, reflected, compare_to):
    # APScheduler owns its job table; Alembic must never propose to drop it.
    return not (type_ == "table" and name.startswith("apscheduler_"))


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from registry.db import make_engine

        engine = make_engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()

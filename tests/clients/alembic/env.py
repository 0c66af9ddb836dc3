"""Alembic environment for the sqlkeeper client test (online mode only).

The test script passes its Engine in ``config.attributes["engine"]``; run from
the command line, the engine is built from ``sqlalchemy.url``.
"""
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            # What `alembic check` compares the database with (the test's models).
            target_metadata=config.attributes.get("target_metadata"),
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline mode is not used by this test")
run_migrations_online()

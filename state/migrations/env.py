"""Alembic environment for the state database.

Normally run by ``state.database.Database.migrate``, which passes its own connection in
``config.attributes["connection"]`` so the migration shares the caller's transaction (and,
for ``sqlite://``, its only connection). Without one (the ``alembic`` command line, pointed
here by ``script_location``), it connects to ``sqlalchemy.url`` itself.

Deliberately no ``logging.config.fileConfig``: the application owns logging configuration.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from state.models import TABLES

config = context.config
target_metadata = TABLES[0].metadata


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) for a DBA to apply."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        run_migrations_on(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    try:
        with engine.begin() as own:
            run_migrations_on(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Alembic environment: the engine comes from the caller (gateway.store.sql.migrate)."""

from __future__ import annotations

from alembic import context

import gateway.store.sql.auth_tables  # noqa: F401 - registers the authorization server's tables
from gateway.store.sql.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` command line: GATEWAY_DATABASE_URL or the default SQLite file
    from gateway.config import get_settings
    from gateway.store.sql.store import make_engine

    engine = make_engine(get_settings().resolved_database_url())

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()

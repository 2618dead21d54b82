"""Migration 0009 on SQLite and PostgreSQL: a database at 0008 (the job core) gains the ingest_run,
subscription_delivery and console_session tables with its jobs kept; the downgrade removes exactly those."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tests.conftest import own_database

NEW = {"ingest_run", "subscription_delivery", "console_session"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with own_database(request.param, tmp_path, "mig") as url:
        yield url


def test_0009_adds_the_feeds_and_session_tables_and_its_downgrade_removes_them(db: str) -> None:
    from alembic import command

    from gateway.store.sql.migrate import alembic_config, upgrade
    from gateway.store.sql.store import make_engine

    engine = make_engine(db)
    try:
        upgrade(engine, "0008")
        assert not NEW & set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO job (id, kind, status, client_id, request_url, params, transaction_time, "
                              "created, heartbeat, attempts, progress, lease_expires) VALUES ('j1', 'export', "
                              "'queued', 'c', 'u', '{}', 't', 't', 0, 0, '{}', 0)"))
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= NEW
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM job")).scalar_one() == "j1"
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0009"
        command.downgrade(alembic_config(engine), "0008")
        tables = set(inspect(engine).get_table_names())
        assert not NEW & tables and "job" in tables
    finally:
        engine.dispose()

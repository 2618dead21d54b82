"""Shared fixtures: a store per backend (SQLite file, PostgreSQL database), an HTTP client on the ASGI app.

PostgreSQL: each test session creates its own database on 127.0.0.1:5432 and drops it at the end. When no
server answers the PostgreSQL variants are skipped with that reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import (
    CONSOLE_SESSION,
    FEED_POSITION,
    HISTORY,
    IDX,
    INGEST_RUN,
    JOB,
    RESOURCE,
    SUBSCRIPTION_DELIVERY,
)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE = "http://testserver/fhir"
PG_ADMIN = os.environ.get("GATEWAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable at 127.0.0.1:5432 ({type(exc).__name__})"


def _admin_exec(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(autouse=True, scope="session")
def _operation_registry() -> None:
    """The app assembly installs the operation registry it collects into the authorization policy when it
    builds an app; tests that classify requests with the policy before (or without) building one get the
    same registry."""
    from gateway.app import REGISTRY
    from gateway.auth import policy

    policy.install(REGISTRY)


def in_ci() -> bool:
    """True under CI=true, where every test must run: what a test needs and lacks is a failure there."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str, ci_reason: str | None = None) -> None:
    """Skip with ``reason`` when something a test needs is missing (a server, a tool, the corpus); under
    CI=true fail instead, with ``ci_reason`` when given. The one place that rule lives."""
    if in_ci():
        pytest.fail(ci_reason or reason)
    pytest.skip(reason)


def require_pg(what: str = "PostgreSQL tests") -> None:
    """Skip with the reason when no PostgreSQL server answers; under CI=true fail instead."""
    reason = pg_available()
    if reason:
        skip_or_fail(reason, f"{reason}; {what} must run under CI")


@contextmanager
def own_pg_database(prefix: str = "gw_test") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database named ``prefix_<random>``, dropped (connections and all)
    when the block ends: for a server or store that must not share the session database with other modules."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_database(kind: str, folder: Path, name: str, what: str = "PostgreSQL tests") -> Iterator[str]:
    """A fresh database of its own for ``kind`` ("sqlite" or "postgres"): the SQLite file ``name``.sqlite3 in
    ``folder``, or a PostgreSQL database ``gw_<name>_<random>`` dropped when the block ends (skipped, or failed
    under CI=true, without a server; ``what`` says what needed it)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'{name}.sqlite3'}"
        return
    require_pg(what)
    with own_pg_database(f"gw_{name}") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL for a console script or server: a SQLite file, or the session PostgreSQL
    database with its resources and internal tables wiped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'g.sqlite3'}"
    from gateway.store.sql.internal import clear

    url: str = request.getfixturevalue("pg_url")
    store = SqlStore(url)
    wipe(store)
    clear(store.engine)
    store.close()
    return url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    require_pg()
    with own_pg_database() as url:
        yield url


def _make_store(kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> SqlStore:
    if kind == "sqlite":
        path = tmp_path_factory.mktemp("db") / "gateway.sqlite3"
        return SqlStore(f"sqlite:///{path}")
    return SqlStore(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def session_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    store = _make_store(request.param, tmp_path_factory, request)
    yield store
    store.close()


def wipe(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        for t in [*IDX.values(), HISTORY, RESOURCE, JOB, FEED_POSITION, INGEST_RUN, SUBSCRIPTION_DELIVERY,
                  CONSOLE_SESSION]:
            conn.execute(t.delete())


@pytest.fixture()
def store(session_store: SqlStore) -> SqlStore:
    wipe(session_store)
    return session_store


def make_client(store: SqlStore, **settings: Any) -> TestClient:
    # no Subscription notifier thread unless a test asks for one: it would POST to the endpoints that
    # fixtures name (outside this machine) and change Subscriptions under the tests' feet
    settings.setdefault("subscription_notifier", False)
    s = Settings(base_url=BASE, auth="off", **settings)
    return TestClient(create_app(s, store=store, access_log=False), base_url="http://testserver")


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with make_client(store) as c:
        yield c


def gateway_exe() -> str:
    """The console script of the environment running the tests (falls back to PATH)."""
    here = Path(sys.executable).parent / "fhir-gateway"
    if here.exists():
        return str(here)
    found = shutil.which("fhir-gateway")
    assert found, "the fhir-gateway console script is not installed (pip install -e .)"
    return found


def clean_env() -> dict[str, str]:
    """The current environment without GATEWAY_* settings, so only the command line configures a run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


SHARED_REASON = ("needs the fixture corpus '../shared' beside this checkout (IG examples, eCQM and mapping test "
                 "data, spec digests), which is not part of the repository; place it there to run these tests")


def shared_missing() -> bool:
    """True when the fixture corpus is not beside the checkout (a public clone)."""
    return not SHARED.is_dir()


def require_shared() -> None:
    """Call first in a test or helper that lists or reads the corpus: without it, skip with the named reason
    (a folder glob over a missing corpus is silently empty, so such tests must ask); under CI=true, fail."""
    if shared_missing():
        skip_or_fail(SHARED_REASON, f"{SHARED_REASON} (CI=true: the corpus must be present)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Without the corpus, a test that failed because it reached for a file in '../shared' is reported as
    skipped with that reason instead (any other failure stays a failure). Under CI=true nothing changes: the
    corpus must be there, and its absence fails the run."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed or call.excinfo is None or not shared_missing() or in_ci():
        return
    if str(SHARED) in str(call.excinfo.getrepr(showlocals=False, style="short")):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {SHARED_REASON}")


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def shared_json(rel: str) -> Any:
    return json.loads((SHARED / rel).read_text())

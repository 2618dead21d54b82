"""The export benchmark's fast loader must produce the database the gateway itself writes.

The same population (shared providers, members' 50-resource charts, the Group) is written once through
``SqlSession.write`` and once by ``bench/export_loader.py`` (rows cloned from a template, inserted with
``executemany`` or ``COPY``); every row of ``resource``, ``resource_history`` and the index tables must be equal,
and the next ordinary write must get the same keys in both.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import HISTORY, IDX, IDX_COLUMNS, RESOURCE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import export_loader  # noqa: E402

NOW = "2026-03-04T05:06:07.890Z"
MEMBERS, PER = 7, 3  # two practitioners, so the practitioner placeholder takes two values


def snapshot(store: SqlStore) -> dict[str, Any]:
    with store.engine.connect() as conn:
        out: dict[str, Any] = {
            "resource": [tuple(r) for r in conn.execute(select(RESOURCE).order_by(RESOURCE.c.pk))],
            "history": [tuple(r) for r in conn.execute(select(HISTORY).order_by(HISTORY.c.pk))],
        }
        for kind, table in IDX.items():
            cols = [table.c.res_pk, table.c.res_type, *(table.c[c] for c in IDX_COLUMNS[kind])]
            out[kind] = Counter(tuple(r) for r in conn.execute(select(*cols)))
    out["resource"] = [(*r[:6], bytes(r[6])) for r in out["resource"]]
    out["history"] = [(*r[:6], bytes(r[6]) if r[6] is not None else None) for r in out["history"]]
    return out


def write_normally(store: SqlStore) -> None:
    with store.session() as s:
        s._now = NOW
        for r in export_loader.population(MEMBERS, "g-bench", PER):
            s.write(r, "POST", known_new=True)


def next_keys(store: SqlStore) -> tuple[int, int]:
    with store.session() as s:
        s.write({"resourceType": "Patient", "id": "after-load"}, "PUT")
    with store.engine.connect() as conn:
        res = conn.execute(select(RESOURCE.c.pk).where(RESOURCE.c.res_id == "after-load")).scalar_one()
        hist = conn.execute(select(HISTORY.c.pk).where(HISTORY.c.res_id == "after-load")).scalar_one()
    return res, hist


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'normal.sqlite3'}", f"sqlite:///{tmp_path / 'cloned.sqlite3'}"
        return
    import psycopg

    base = request.getfixturevalue("pg_url").rsplit("/", 1)[0]
    admin = base.replace("postgresql+psycopg", "postgresql") + "/postgres"
    names = [f"gw_test_loader_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(admin, autocommit=True) as conn:
        for n in names:
            conn.execute(f'CREATE DATABASE "{n}"')
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for n in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')


def test_cloned_load_equals_the_write_path(two_urls: tuple[str, str]) -> None:
    normal_url, cloned_url = two_urls
    normal = SqlStore(normal_url)
    write_normally(normal)
    loaded = export_loader.load(cloned_url, MEMBERS, "g-bench", NOW, per=PER, batch=3)
    cloned = SqlStore(cloned_url, migrate=False)
    try:
        a, b = snapshot(normal), snapshot(cloned)
        assert loaded == len(a["resource"]) == 2 + 2 * 2 + MEMBERS * 50 + 1
        types = Counter(r[1] for r in b["resource"])
        assert types["Observation"] == MEMBERS * 20 and types["Location"] == 2 and types["Group"] == 1
        assert {r[2] for r in b["resource"] if r[1] == "Patient"} == {f"m{i}" for i in range(MEMBERS)}
        assert b"zzmemberzz" not in b"".join(r[6] for r in b["resource"])
        for key in a:
            assert a[key] == b[key], key
        assert sum(len(b[k]) for k in IDX) > MEMBERS * 400
        assert next_keys(normal) == next_keys(cloned)
    finally:
        normal.close()
        cloned.close()

"""The prepare stage in a worker process (what large inputs get) gives the same outcome as in one process:
the same counts, the same rejects in the same order, the same stored resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from gateway.ingest.service import Ingestor
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, FIXTURES
from tests.mapping.helpers import counts, read

CLAIMS = FIXTURES / "mapping" / "claims.csv"


def corrupted(tmp_path: Path) -> Path:
    lines = CLAIMS.read_text().splitlines()
    lines.append(lines[1].replace("C1,1,1", "C7,1,1").replace(",Z1231,", ",Z12  31,"))  # invalid FHIR code
    lines.append(lines[1].replace("C1,1,1", "C8,1,1").replace(",professional,", ",dental,"))  # unknown code
    lines.append(lines[1].replace("C1,1,1", "C9,1,1").replace("2025-03-01,2025-03-01", "2025-13-01,2025-03-01"))
    lines.append(lines[1].replace("C1,1,1", "C6,1,1"))  # a good claim after the bad ones
    path = tmp_path / "claims.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_worker_process_gives_the_same_outcome(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = corrupted(tmp_path)
    local = SqlStore(f"sqlite:///{tmp_path / 'local.sqlite3'}")
    try:
        one = Ingestor(RestService(local, BASE), "claims-csv", parallel=False).ingest([path])
        expected = counts(local)
        eob = read(local, "ExplanationOfBenefit", "claim-P1-C6")
    finally:
        local.close()
    two = Ingestor(RestService(store, BASE), "claims-csv", parallel=True).ingest([path])
    assert two.to_json() == one.to_json()
    # the read reject first, then the mapping's (the unknown code), then validation's (the invalid resource):
    # claims go through the claim-version step in batches, so a batch's mapping rejects come out before its
    # validation rejects
    assert [r.where for r in two.rejects] == [r.where for r in one.rejects] == ["claims.csv:9", "claims.csv:8",
                                                                              "claims.csv:7"]
    assert [r.reason for r in two.rejects] == [r.reason for r in one.rejects]
    assert two.created == one.created > 0
    assert counts(store) == expected
    got = read(store, "ExplanationOfBenefit", "claim-P1-C6")
    assert {k: v for k, v in got.items() if k != "meta"} == {k: v for k, v in eob.items() if k != "meta"}
    again = Ingestor(RestService(store, BASE), "claims-csv", parallel=True).ingest([path])
    assert again.created == again.updated == 0 and again.unchanged == one.created


def test_worker_errors_reach_the_caller(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An unreadable input is an OSError (the CLI's exit 1) whichever process reads it."""
    for parallel in (False, True):
        with pytest.raises(OSError, match="missing.csv: cannot read"):
            Ingestor(RestService(store, BASE), "claims-csv", parallel=parallel).ingest([tmp_path / "missing.csv"])


def test_index_rows_do_not_depend_on_version_or_time() -> None:
    """The prepare stage indexes a resource before the store gives it its version and time: that is only right
    while no search parameter reads meta.versionId or meta.lastUpdated from the resource."""
    from gateway.mapping.engine import Engine
    from gateway.mapping.readers import read_input
    from gateway.mapping.spec import find_spec
    from gateway.search.index import index_resource

    spec = find_spec("claims-csv")
    rd = read_input(spec, [CLAIMS])
    seen = set()
    for unit in Engine(spec).run(rd.records, rd.rejects):
        for r in unit.resources:
            seen.add(r["resourceType"])
            stamped = {**r, "meta": {**r.get("meta", {}), "versionId": "7", "lastUpdated": "2001-02-03T04:05:06.789Z"}}
            assert index_resource(stamped) == index_resource(r), r["resourceType"]
    assert {"ExplanationOfBenefit", "Patient", "Coverage", "Procedure"} <= seen


def test_the_collector_runs_less_often_during_an_ingest_and_as_before_after(store) -> None:  # type: ignore[no-untyped-def]
    import gc

    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    Ingestor(RestService(store, BASE), "claims-csv", progress=lambda n: during.append(gc.get_threshold()),
             parallel=False).ingest([CLAIMS])
    assert during and all(t[0] == 100_000 for t in during)
    assert gc.get_threshold() == before


@pytest.mark.postgres
def test_a_large_load_refreshes_the_planner_statistics_on_postgres(pg_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With autovacuum off or behind, a table that grew from nothing keeps the statistics of an empty one; an
    ingest refreshes them as it grows (here from the 5th resource on) and once at its end for every table."""
    import uuid

    from sqlalchemy import text

    import gateway.ingest.service as ingest_module
    from tests.conftest import PG_ADMIN, _admin_exec

    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    store = SqlStore(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        def reltuples(table: str) -> float:
            with store.engine.connect() as conn:
                return conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table}).scalar()

        assert reltuples("resource") < 0 and reltuples("idx_token") < 0  # never analysed
        monkeypatch.setattr(ingest_module, "ANALYZE_FIRST", 5)
        summary = Ingestor(RestService(store, BASE), "claims-csv", parallel=False).ingest([CLAIMS])
        assert summary.created > 5
        assert reltuples("resource") == summary.created and reltuples("idx_token") > 0
    finally:
        store.close()
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


INDEX_TABLES = ("idx_string", "idx_token", "idx_date", "idx_ref", "idx_number", "idx_uri", "idx_composite")


def index_rows(store: SqlStore) -> dict[str, list[str]]:
    """Every search-index row the store holds, by table, named by its resource's type and id (not its key)."""
    out: dict[str, list[str]] = {}
    schema = inspect(store.engine)
    with store.engine.connect() as conn:
        for t in INDEX_TABLES:
            cols = ", ".join(f"i.{c['name']}" for c in schema.get_columns(t) if c["name"] not in ("id", "res_pk"))
            q = f"SELECT r.res_type, r.res_id, {cols} FROM {t} i JOIN resource r ON r.pk = i.res_pk"
            out[t] = sorted(repr(tuple(row)) for row in conn.execute(text(q)))
    return out


def test_worker_index_rows_equal_one_process(tmp_path: Path) -> None:
    """Through the worker process (index rows computed there, pickled, written here) the store ends up with
    the rows one process writes."""
    lines = CLAIMS.read_text().splitlines()
    assert lines[1].startswith("C1,1,1,")
    body = [lines[1].replace("C1,1,1,", f"X{n},1,1,", 1) for n in range(3000)]
    path = tmp_path / "claims.csv"
    path.write_text("\n".join([lines[0], *body]) + "\n")
    got = {}
    for parallel in (False, True):
        st = SqlStore(f"sqlite:///{tmp_path / f'{parallel}.sqlite3'}")
        try:
            summary = Ingestor(RestService(st, BASE), "claims-csv", parallel=parallel).ingest([path])
            assert not summary.rejects and summary.records == 3000
            got[parallel] = index_rows(st)
        finally:
            st.close()
    assert got[True] == got[False]

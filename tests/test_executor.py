"""The same chunk function runs in-process, in a process pool and on a (local) Dask cluster."""

from __future__ import annotations

import pytest

from gateway.measure.executor import chunked, make_executor


def square_all(chunk: list[int]) -> list[int]:
    return [x * x for x in chunk]


@pytest.mark.parametrize("spec", ["inprocess", "processes:2", "dask://local"])
def test_executors_agree(spec: str) -> None:
    ex = make_executor(spec)
    try:
        results = sorted(x for part in ex.map(square_all, chunked(list(range(50)), 7)) for x in part)
    finally:
        ex.close()
    assert results == [x * x for x in range(50)]


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match="Unknown executor"):
        make_executor("threads")


@pytest.fixture(scope="module")
def cms130_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file holding the CMS130 measure and its test patients (ids made unique per case)."""
    import json

    from gateway.ingest.loader import Loader
    from gateway.measure.cases import case_paths
    from gateway.resources.rest import RestService
    from gateway.resources.transaction import BundleProcessor
    from gateway.store.sql.store import SqlStore
    from tests.test_evaluate_measure import ECQM, as_transaction

    url = f"sqlite:///{tmp_path_factory.mktemp('exec') / 'cms130.sqlite3'}"
    store = SqlStore(url)
    rest = RestService(store, "http://testserver/fhir")
    assert Loader(rest, "lenient").load([ECQM / "CMS130" / "measure-bundle.json"]).errors == []
    proc = BundleProcessor(rest, enforce_references=False, validation_level="lenient")
    for path in case_paths(ECQM / "CMS130"):
        proc.process(as_transaction(json.loads(path.read_text())))
    store.close()
    return url


@pytest.mark.parametrize("spec", ["processes:2", "dask://local"])
def test_population_runs_agree_across_executors(cms130_db: str, spec: str) -> None:
    from gateway.auth.context import SYSTEM, acting_as
    from gateway.deqm.evaluation import MeasureService
    from gateway.store.sql.store import SqlStore

    store = SqlStore(cms130_db)
    try:
        base = MeasureService(store, "http://testserver/fhir")
        measure = base.find_measure("ColonCancerScreeningFHIR", None)
        expected = base.evaluate(measure, "2025-01-01", "2025-12-31", "subject-list", None)
        spread = MeasureService(store, "http://testserver/fhir", executor=spec, chunk_size=10)
        with acting_as(SYSTEM):  # the workers read under the caller's grant: here the server's own (as the CLI)
            got = spread.evaluate(measure, "2025-01-01", "2025-12-31", "subject-list", None)
    finally:
        store.close()
    assert got["group"][0]["population"] == expected["group"][0]["population"]
    assert got["contained"] == expected["contained"]
    ip = next(p["count"] for p in got["group"][0]["population"] if p["code"]["coding"][0]["code"] == "initial-population")
    assert ip == 51  # the published CMS130 cases sum to IP=51

"""Population runs spread over worker processes read through the store gate, under the caller's grant.

A worker opens its own store on the same database; before this rule it read with no gate at all, so a caller
whose grant hides some patients got their data evaluated anyway once a run was large enough to be spread.
Each worker now carries the caller's grant record and reads through ``GatedStore``; a chunk with no record
reads nothing."""

from __future__ import annotations

import orjson
import pytest

from gateway.auth.context import SYSTEM, Grant, NoGrant, acting_as
from gateway.auth.gated import GatedStore
from gateway.auth.scopes import ScopeSet
from gateway.deqm.evaluation import MeasureService
from gateway.deqm.population import ChunkTask, evaluate_chunk
from gateway.measure.calculator import SubjectResult
from gateway.store.sql.store import SqlStore
from tests.test_executor import cms130_db  # noqa: F401  (the CMS130 database fixture)

BASE = "http://testserver/fhir"
PERIOD = ("2025-01-01", "2025-12-31")


def _populations(results: list[SubjectResult]) -> list[tuple[str, list[dict[str, list[str]]]]]:
    """Per subject, the population members of each group: what a report is built from."""
    return [(r.subject, [g.members for g in r.groups]) for r in results]


def _run(url: str, grant: Grant, executor: str) -> tuple[list[SubjectResult], list[str]]:
    store = SqlStore(url)
    try:
        with acting_as(SYSTEM):
            ids = sorted(s.id for s in store.iter_current("Patient"))
            measure = MeasureService(store, BASE).find_measure("ColonCancerScreeningFHIR", None)
        svc = MeasureService(GatedStore(store, BASE, opt_out=""), BASE, executor=executor, chunk_size=10)
        with acting_as(grant):
            results, _ = svc.results(measure, PERIOD, ids)
    finally:
        store.close()
    return results, ids


def test_worker_processes_read_under_the_callers_grant(cms130_db: str) -> None:  # noqa: F811
    store = SqlStore(cms130_db)
    with acting_as(SYSTEM):
        one = sorted(s.id for s in store.iter_current("Patient"))[0]
    store.close()
    patient_grant = Grant(client_id="app", scopes=ScopeSet.parse("patient/*.rs"), patient=one)

    in_process, ids = _run(cms130_db, patient_grant, "inprocess")
    spread, _ = _run(cms130_db, patient_grant, "processes:2")
    everyone, _ = _run(cms130_db, SYSTEM, "processes:2")

    assert len(ids) > 20  # large enough to be spread over chunks of 10
    # the spread run sees exactly what the caller may see in process ...
    assert _populations(spread) == _populations(in_process)
    # ... which is less than the whole population: the gate applied inside the workers
    assert _populations(spread) != _populations(everyone)


def test_a_chunk_without_a_grant_reads_nothing(cms130_db: str) -> None:  # noqa: F811
    store = SqlStore(cms130_db)
    with acting_as(SYSTEM):
        measure = MeasureService(store, BASE).find_measure("ColonCancerScreeningFHIR", None)
        ids = tuple(sorted(s.id for s in store.iter_current("Patient"))[:3])
    store.close()
    task = ChunkTask(cms130_db, BASE, orjson.dumps(measure), PERIOD[0], PERIOD[1], ids, "", None)
    with pytest.raises(NoGrant):
        evaluate_chunk(task)
    forged = ChunkTask(cms130_db, BASE, orjson.dumps(measure), PERIOD[0], PERIOD[1], ids, "", {"scope": "x"})
    with pytest.raises(NoGrant):
        evaluate_chunk(forged)

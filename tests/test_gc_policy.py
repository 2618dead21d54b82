"""A population run raises the cyclic collector's first-generation threshold while it runs (fewer collections
of the short-lived resource dicts it parses) and puts the process's thresholds back when the last run ends,
also when a run is abandoned half-way or fails; a single-patient evaluation leaves them alone."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from gateway.measure.gcpolicy import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_raised_inside_and_restored_after(default_thresholds: tuple[int, int, int]) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        with fewer_collections():  # nested: one raise
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the outer run is still going
    assert gc.get_threshold() == default_thresholds


def test_restored_when_a_run_fails(default_thresholds: tuple[int, int, int]) -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a patient failed")
    assert gc.get_threshold() == default_thresholds


def test_concurrent_runs_restore_once_the_last_ends(default_thresholds: tuple[int, int, int]) -> None:
    inside = threading.Barrier(3)
    leave = threading.Event()

    def run() -> None:
        with fewer_collections():
            inside.wait()
            leave.wait(10)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    leave.set()
    for t in threads:
        t.join()
    assert gc.get_threshold() == default_thresholds


@pytest.mark.parametrize("first_out", ["ingest", "population"])
def test_an_ingest_and_a_population_run_overlapping_restore_the_thresholds(
        default_thresholds: tuple[int, int, int], first_out: str) -> None:
    # both kinds of run share one policy: whichever ends first, the other's raise holds while it lasts, and
    # the process's own thresholds come back after the last (two separate policies left 100,000 behind)
    from gateway.ingest.service import INGEST_YOUNG_THRESHOLD

    ingest, population = fewer_collections(INGEST_YOUNG_THRESHOLD), fewer_collections()
    ingest.__enter__()
    population.__enter__()
    assert gc.get_threshold() == (INGEST_YOUNG_THRESHOLD, 10, 10)
    first, second = (ingest, population) if first_out == "ingest" else (population, ingest)
    first.__exit__(None, None, None)
    expected = YOUNG_THRESHOLD if first_out == "ingest" else INGEST_YOUNG_THRESHOLD
    assert gc.get_threshold() == (expected, 10, 10)
    second.__exit__(None, None, None)
    assert gc.get_threshold() == default_thresholds


def test_population_run_raises_it_and_an_abandoned_run_restores_it(
        client: object, default_thresholds: tuple[int, int, int]) -> None:
    """Through MeasureService: the threshold is raised while a two-patient run yields, and back when the
    caller stops reading half-way."""
    from fastapi.testclient import TestClient

    from gateway.auth.context import SYSTEM, acting_as
    from gateway.deqm.evaluation import MeasureService

    assert isinstance(client, TestClient)
    measure = {"resourceType": "Measure", "id": "m", "url": "http://example.org/Measure/m", "status": "active",
               "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                                       "code": "cohort"}]},
               "group": [{"population": [{"code": {"coding": [{
                   "system": "http://terminology.hl7.org/CodeSystem/measure-population",
                   "code": "initial-population"}]},
                   "criteria": {"language": "text/fhirpath", "expression": "Patient.gender = 'female'"}}]}]}
    for pid in ("a", "b"):
        assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                                         "gender": "female"}).status_code == 201
    svc = MeasureService(client.app.state.store, "http://testserver/fhir")  # type: ignore[attr-defined]
    with acting_as(SYSTEM):
        run = svc.iter_results(measure, ("2025-01-01", "2025-12-31"), ["a", "b"], distribute=False)
        next(run)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        run.close()
        assert gc.get_threshold() == default_thresholds
        results = list(svc.iter_results(measure, ("2025-01-01", "2025-12-31"), ["a"], distribute=False))
        assert len(results) == 1 and gc.get_threshold() == default_thresholds

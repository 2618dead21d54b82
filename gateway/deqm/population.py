"""Population runs split into chunks of patients for an executor (in-process, process pool or Dask).

Workers rebuild what they need from a picklable ``ChunkTask``: a store on the same database URL and the
measure compiled once per worker process (cached), then evaluate their patients and return, with the chunk's
index and size, either the chunk's ``ReportTally`` (``tally_chunk``: what a population report needs, nothing
per patient) or its SubjectResults (``evaluate_chunk``: for callers that need each patient's result).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..measure.aggregate import ReportTally
from ..measure.calculator import SubjectResult


@dataclass(frozen=True)
class ChunkTask:
    database_url: str
    base_url: str
    measure_json: bytes
    period_start: str
    period_end: str
    patient_ids: tuple[str, ...]
    index: int = 0  # the chunk's place in the run (results are put back in order)
    subject_lists: bool = False  # tally_chunk: keep the chunk's subjects per population


@lru_cache(maxsize=4)
def _service(database_url: str, base_url: str) -> Any:
    from ..store.sql.store import SqlStore
    from .evaluation import MeasureService

    return MeasureService(SqlStore(database_url, migrate=False), base_url)


def _results(task: ChunkTask) -> tuple[Any, Iterator[SubjectResult]]:
    import orjson

    svc = _service(task.database_url, task.base_url)
    prepared = svc.prepare(orjson.loads(task.measure_json))
    _, interval = svc.period(task.period_start, task.period_end)
    shared: dict[str, list[dict[str, Any]]] = {}
    return prepared, (svc.evaluate_patient(prepared, pid, interval, shared, data, track=False)[0]
                      for pid, data in svc.with_data(prepared, list(task.patient_ids)))


def evaluate_chunk(task: ChunkTask) -> tuple[int, int, list[SubjectResult]]:
    _, results = _results(task)
    return task.index, len(task.patient_ids), list(results)


def tally_chunk(task: ChunkTask) -> tuple[int, int, ReportTally]:
    prepared, results = _results(task)
    tally = ReportTally(prepared.measure, subject_lists=task.subject_lists, spool=False)
    for r in results:
        tally.add(r)
    return task.index, len(task.patient_ids), tally

"""Population runs split into chunks of patients for an executor (in-process, process pool or Dask).

Workers rebuild what they need from a picklable ``ChunkTask``: a store on the same database URL and the
measure compiled once per worker process (cached), then evaluate their patients and return SubjectResults.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..measure.calculator import SubjectResult


@dataclass(frozen=True)
class ChunkTask:
    database_url: str
    base_url: str
    measure_json: bytes
    period_start: str
    period_end: str
    patient_ids: tuple[str, ...]


@lru_cache(maxsize=4)
def _service(database_url: str, base_url: str) -> Any:
    from ..store.sql.store import SqlStore
    from .evaluation import MeasureService

    return MeasureService(SqlStore(database_url, migrate=False), base_url)


def evaluate_chunk(task: ChunkTask) -> list[SubjectResult]:
    import orjson

    svc = _service(task.database_url, task.base_url)
    prepared = svc.prepare(orjson.loads(task.measure_json))
    _, interval = svc.period(task.period_start, task.period_end)
    shared: dict[str, list[dict[str, Any]]] = {}
    return [svc.evaluate_patient(prepared, pid, interval, shared, data, track=False)[0]
            for pid, data in svc.with_data(prepared, list(task.patient_ids))]

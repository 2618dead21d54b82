"""Population runs split into chunks of patients for an executor (in-process, process pool or Dask).

Workers rebuild what they need from a picklable ``ChunkTask``: a store on the same database URL and the
measure compiled once per worker process (cached), then evaluate their patients and return SubjectResults.

A worker reads stored data like every other path: through the store gate, under the grant of the caller
that started the run, carried in the task as a grant record (auth/grant_record.py). A task without a usable
record reads nothing (the gate fails closed).
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
    grant: dict[str, Any] | None = None  # the caller's grant record; None reads nothing


@lru_cache(maxsize=4)
def _service(database_url: str, base_url: str) -> Any:
    from ..auth.gated import GatedStore
    from ..store.sql.store import SqlStore
    from .evaluation import MeasureService

    return MeasureService(GatedStore(SqlStore(database_url, migrate=False), base_url), base_url)


def evaluate_chunk(task: ChunkTask) -> list[SubjectResult]:
    import orjson

    from ..auth.context import NoGrant, acting_as
    from ..auth.grant_record import restore

    grant = restore(task.grant)
    if grant is None:
        raise NoGrant("a population chunk carries no grant record: it reads nothing")
    svc = _service(task.database_url, task.base_url)
    with acting_as(grant):
        prepared = svc.prepare(orjson.loads(task.measure_json))
        _, interval = svc.period(task.period_start, task.period_end)
        shared: dict[str, list[dict[str, Any]]] = {}
        return [svc.evaluate_patient(prepared, pid, interval, shared, data, track=False)[0]
                for pid, data in svc.with_data(prepared, list(task.patient_ids))]

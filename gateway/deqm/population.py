"""Population runs split into chunks of patients for an executor (in-process, process pool or Dask).

Workers rebuild what they need from a picklable ``ChunkTask``: a store on the same database URL and the
measure compiled once per worker process (cached), then evaluate their patients and return, with the chunk's
index and size, either the chunk's ``ReportTally`` (``tally_chunk``: what a population report needs, nothing
per patient) or its SubjectResults (``evaluate_chunk``: for callers that need each patient's result).

A worker reads stored data like every other path: through the store gate, under the grant of the caller
that started the run, carried in the task as a grant record (auth/grant_record.py). A task without a usable
record reads nothing (the gate fails closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from ..cql.values import CqlError
from ..fhir.errors import FhirError
from ..measure.aggregate import ReportTally
from ..measure.calculator import SubjectResult

log = logging.getLogger("gateway.measure")
T = TypeVar("T")


class ChunkFailed(Exception):
    """A chunk that failed on a worker for a reason outside the measure's logic (the database out of reach,
    a fault of the worker), as plain text that crosses any executor's pickling; the message is meant for the
    caller and holds neither the database URL nor the driver's message (those go to the worker's log)."""


@dataclass(frozen=True)
class ChunkTask:
    database_url: str
    base_url: str
    measure_json: bytes
    period_start: str
    period_end: str
    patient_ids: tuple[str, ...]
    opt_out: str  # the configured Provider Access opt-outs of the caller's gate (auth/gated.py GatedStore)
    grant: dict[str, Any] | None = None  # the caller's grant record; None reads nothing
    index: int = 0  # the chunk's place in the run (results are put back in order)
    subject_lists: bool = False  # tally_chunk: keep the chunk's subjects per population


@lru_cache(maxsize=4)
def _service(database_url: str, base_url: str, opt_out: str) -> Any:
    from ..auth.gated import GatedStore
    from ..store.sql.store import SqlStore
    from .evaluation import MeasureService

    return MeasureService(GatedStore(SqlStore(database_url, migrate=False), base_url, opt_out=opt_out), base_url)


def _run(task: ChunkTask, consume: Callable[[Any, Iterator[SubjectResult]], T]) -> T:
    """Evaluate the chunk's patients under the task's grant and hand the results, as they come, to
    ``consume`` (inside the grant: the results are computed while they are consumed)."""
    import orjson

    from ..auth.context import NoGrant, acting_as
    from ..auth.grant_record import restore

    grant = restore(task.grant)
    if grant is None:
        raise NoGrant("a population chunk carries no grant record: it reads nothing")
    svc = _service(task.database_url, task.base_url, task.opt_out)
    with acting_as(grant):
        prepared = svc.prepare(orjson.loads(task.measure_json))
        _, interval = svc.period(task.period_start, task.period_end)
        shared: dict[str, list[dict[str, Any]]] = {}
        results = (svc.evaluate_patient(prepared, pid, interval, shared, data, track=False)[0]
                   for pid, data in svc.with_data(prepared, list(task.patient_ids)))
        return consume(prepared, results)


def _guarded(task: ChunkTask, consume: Callable[[Any, Iterator[SubjectResult]], T]) -> T:
    """``_run`` with a worker's faults made safe for the caller: a CQL error is the measure's fault and passes
    as it is; a database that does not answer, or any other fault of the worker, becomes ``ChunkFailed``."""
    try:
        return _run(task, consume)
    except (CqlError, FhirError) as exc:
        if isinstance(exc, FhirError) and exc.status >= 500:
            log.error("population chunk failed in the database", extra={"error": exc.diagnostics})
            raise ChunkFailed("a population worker could not read the database (it answered: "
                              f"{exc.code}); the run was stopped") from None
        raise
    except Exception as exc:  # noqa: BLE001 - whatever failed, the caller gets a plain, safe message
        from sqlalchemy.exc import DBAPIError

        from ..auth.context import NoGrant

        if isinstance(exc, NoGrant):  # a chunk sent without its caller's grant: a programming error, kept as is
            raise
        log.error("population chunk failed", extra={"error_kind": type(exc).__name__, "error": str(exc)})
        if isinstance(exc, DBAPIError):
            raise ChunkFailed(f"a population worker could not reach the database ({type(exc.orig).__name__}); "
                              "the run was stopped") from None
        raise ChunkFailed(f"a population worker failed ({type(exc).__name__}); the run was stopped") from None


def evaluate_chunk(task: ChunkTask) -> tuple[int, int, list[SubjectResult]]:
    """(chunk index, patients, each patient's result)."""
    return task.index, len(task.patient_ids), _guarded(task, lambda _, results: list(results))


def tally_chunk(task: ChunkTask) -> tuple[int, int, ReportTally]:
    """(chunk index, patients, the chunk's report tally): nothing per patient crosses back."""
    def tally(prepared: Any, results: Iterator[SubjectResult]) -> ReportTally:
        t = ReportTally(prepared.measure, subject_lists=task.subject_lists, spool=False)
        for r in results:
            t.add(r)
        return t

    return task.index, len(task.patient_ids), _guarded(task, tally)

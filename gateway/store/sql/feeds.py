"""The rows behind the console's "Data feeds" screen that are not FHIR resources: ingest runs (table
``ingest_run``) and the last notification sent for each Subscription (table ``subscription_delivery``).

Only SQL lives here. Who may read a run is decided by the operation's declared policy before these are
reached (``ingest/runs.py``); a Subscription's delivery is answered only after the store gate let the caller
read that Subscription (``subscriptions/status.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, insert, select, update

from .tables import INGEST_RUN, SUBSCRIPTION_DELIVERY

if TYPE_CHECKING:
    from .store import SqlStore

R = INGEST_RUN.c
D = SUBSCRIPTION_DELIVERY.c


@dataclass
class IngestRun:
    """One recorded ingest run; ``rejects`` holds the first examples, ``rejected`` the exact count."""
    id: str
    format: str
    via: str
    client_id: str | None
    subject: str | None
    files: list[str]
    strictness: str | None
    mapping_version: str | None
    started: str
    ended: str
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    warned: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def _run(row: Any, full: bool) -> IngestRun:
    return IngestRun(row.id, row.format, row.via, row.client_id, row.subject, list(orjson.loads(row.files)),
                     row.strictness, row.mapping_version, row.started, row.ended, row.records, row.created,
                     row.updated, row.unchanged, row.rejected, row.warned,
                     list(orjson.loads(row.rejects)) if full else [], dict(orjson.loads(row.report)) if full else {})


class IngestRuns:
    """The ingest runs recorded in one database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def record(self, run: IngestRun) -> None:
        """Store one finished run (a single insert: a run is recorded whole or not at all)."""
        lock = getattr(self.store, "_write_lock", None)
        if lock:
            lock.acquire()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(INGEST_RUN).values(
                    id=run.id, format=run.format, via=run.via, client_id=run.client_id, subject=run.subject,
                    files=orjson.dumps(run.files).decode(), strictness=run.strictness,
                    mapping_version=run.mapping_version, started=run.started, ended=run.ended, records=run.records,
                    created=run.created, updated=run.updated, unchanged=run.unchanged, rejected=run.rejected,
                    warned=run.warned, rejects=orjson.dumps(run.rejects).decode(),
                    report=orjson.dumps(run.report).decode()))
        finally:
            if lock:
                lock.release()

    def recent(self, count: int, fmt: str | None = None) -> tuple[list[IngestRun], int]:
        """The ``count`` newest runs (of ``fmt``) without their rejects and report, and how many there are."""
        cond = [R.format == fmt] if fmt else []
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(INGEST_RUN).where(*cond).order_by(R.started.desc(), R.id.desc())
                                .limit(count)).all()
            total = conn.execute(select(func.count()).select_from(INGEST_RUN).where(*cond)).scalar_one()
        return [_run(row, full=False) for row in rows], int(total)

    def get(self, run_id: str) -> IngestRun | None:
        """One run with its reject examples and data-quality report, or None."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(INGEST_RUN).where(R.id == run_id)).first()
        return _run(row, full=True) if row else None


@dataclass
class Delivery:
    """The last notification sent for one Subscription."""
    subscription_id: str
    at: str
    kind: str
    outcome: str
    error: str | None
    sent: int


def now_instant() -> str:
    """The current time as a FHIR instant (UTC, milliseconds)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Deliveries:
    """The last notification of each Subscription, written by the notifier after every POST."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def note(self, subscription_id: str, kind: str, error: str | None) -> None:
        """Record a notification just sent: delivered when ``error`` is None, else failed with the reason."""
        values = {"at": now_instant(), "kind": kind, "outcome": "failed" if error else "delivered",
                  "error": error}
        lock = getattr(self.store, "_write_lock", None)
        if lock:
            lock.acquire()
        try:
            with self.store.engine.begin() as conn:
                done = conn.execute(update(SUBSCRIPTION_DELIVERY).where(D.subscription_id == subscription_id)
                                    .values(sent=D.sent + 1, **values)).rowcount
                if not done:
                    conn.execute(insert(SUBSCRIPTION_DELIVERY).values(subscription_id=subscription_id, sent=1,
                                                                      **values))
        finally:
            if lock:
                lock.release()

    def get(self, subscription_id: str) -> Delivery | None:
        """The last notification of a Subscription, or None when none was sent yet."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(SUBSCRIPTION_DELIVERY).where(D.subscription_id == subscription_id)).first()
        return Delivery(row.subscription_id, row.at, row.kind, row.outcome, row.error, row.sent) if row else None

"""Persistence of Bulk Data export jobs (table ``export_job``): create, claim, checkpoint, finish, expire.

A job is claimed by one worker at a time: claiming is a conditional UPDATE, and a running job whose worker
stopped sending heartbeats (the process died) can be claimed again and resumed from its checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, func, insert, or_, select, update

from .tables import EXPORT_JOB

if TYPE_CHECKING:
    from .store import SqlStore

J = EXPORT_JOB.c
ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: str
    status: str
    client_id: str | None
    request_url: str
    params: dict[str, Any]
    transaction_time: str
    created: str
    heartbeat: float = 0.0
    attempts: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    expires: float | None = None
    subject: str | None = None  # who started it: the token's sub (a user, or the backend client itself)


def _job(row: Any) -> Job:
    return Job(row.id, row.status, row.client_id, row.request_url, orjson.loads(row.params), row.transaction_time,
               row.created, row.heartbeat, row.attempts, orjson.loads(row.progress or b"{}"), row.message,
               row.expires, row.subject)


class JobStore:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    @contextmanager
    def _write(self) -> Iterator[Any]:
        lock = getattr(self.store, "_write_lock", None)
        if lock:
            lock.acquire()
        try:
            with self.store.engine.connect() as conn:
                conn.info["write"] = True
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.info["write"] = False
        finally:
            if lock:
                lock.release()

    def create(self, job: Job) -> None:
        with self._write() as conn:
            conn.execute(insert(EXPORT_JOB).values(
                id=job.id, status=job.status, client_id=job.client_id, request_url=job.request_url,
                params=orjson.dumps(job.params).decode(), transaction_time=job.transaction_time, created=job.created,
                heartbeat=job.heartbeat, attempts=job.attempts, progress=orjson.dumps(job.progress).decode(),
                message=job.message, expires=job.expires, subject=job.subject))

    def get(self, job_id: str) -> Job | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(EXPORT_JOB).where(J.id == job_id)).first()
        return _job(row) if row else None

    def active_count(self, client_id: str | None) -> int:
        cond = J.client_id.is_(None) if client_id is None else J.client_id == client_id
        with self.store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(EXPORT_JOB)
                                .where(cond, J.status.in_(ACTIVE))).scalar_one()

    def claim(self, stale_seconds: float, only: str | None = None) -> Job | None:
        """Take the oldest queued job, or a running one whose worker went silent; None when there is none."""
        now = time.time()
        cond = or_(J.status == "queued", (J.status == "running") & (J.heartbeat < now - stale_seconds))
        if only is not None:
            cond = cond & (J.id == only)
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(J.id, J.status, J.heartbeat).where(cond).order_by(J.created).limit(5)).all()
        for jid, status, beat in rows:
            with self._write() as conn:
                done = conn.execute(update(EXPORT_JOB).where(J.id == jid, J.status == status, J.heartbeat == beat)
                                    .values(status="running", heartbeat=now, attempts=J.attempts + 1)).rowcount
            if done:
                return self.get(jid)
        return None

    def checkpoint(self, job_id: str, progress: dict[str, Any]) -> str | None:
        """Record progress and a heartbeat; returns the job's status (so the worker sees a cancel)."""
        with self._write() as conn:
            conn.execute(update(EXPORT_JOB).where(J.id == job_id, J.status == "running").values(
                progress=orjson.dumps(progress).decode(), heartbeat=time.time()))
            return conn.execute(select(J.status).where(J.id == job_id)).scalar_one_or_none()

    def beat(self, job_id: str) -> str | None:
        with self._write() as conn:
            conn.execute(update(EXPORT_JOB).where(J.id == job_id, J.status == "running").values(heartbeat=time.time()))
            return conn.execute(select(J.status).where(J.id == job_id)).scalar_one_or_none()

    def release(self, job_id: str) -> None:
        """Hand a running job back (its worker is stopping): any worker may resume it at once."""
        with self._write() as conn:
            conn.execute(update(EXPORT_JOB).where(J.id == job_id, J.status == "running").values(heartbeat=0.0))

    def finish(self, job_id: str, status: str, progress: dict[str, Any], expires: float,
               message: str | None = None) -> bool:
        with self._write() as conn:
            return bool(conn.execute(update(EXPORT_JOB).where(J.id == job_id, J.status == "running").values(
                status=status, progress=orjson.dumps(progress).decode(), message=message, expires=expires,
                heartbeat=time.time())).rowcount)

    def cancel(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(update(EXPORT_JOB).where(J.id == job_id).values(status="cancelled", expires=time.time() + 60))

    def expired(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(J.id).where(J.expires.is_not(None), J.expires < now,
                                                                  J.status.not_in(ACTIVE)))]

    def delete(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(delete(EXPORT_JOB).where(J.id == job_id))

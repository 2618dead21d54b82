"""The job core's rows (table ``job``): every asynchronous job of the gateway — a Bulk export, an asynchronous
``$care-gaps``, a bulk submission — with its owner, recorded grant, progress, outcome and lease.

Several gateway instances share one database. A job is run by the instance that holds its lease:

- ``claim`` takes a runnable job (queued, or running under a lease that expired because its instance died or
  stopped renewing it) in one atomic step: on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` then an UPDATE in
  the same transaction, on SQLite the same inside ``BEGIN IMMEDIATE`` (one writer at a time across processes);
- ``beat`` renews the lease, ``checkpoint`` saves progress, ``finish`` records the outcome — each only while
  this instance still holds the lease, so an instance that lost its job (taken over after a stall) can
  neither overwrite progress nor finish it a second time; a finished job is never claimable again;
- ``release`` and ``release_all`` hand leases back (a stopping instance), so another instance takes the jobs
  at once instead of waiting for the lease to expire.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .tables import JOB

if TYPE_CHECKING:
    from .store import SqlStore

J = JOB.c
ACTIVE = ("queued", "running")
SUMMARY = [c for c in JOB.c if c.name != "result"]  # a job's row without its (possibly large) result


def instance_name() -> str:
    """A name for this process among the gateway instances on one database: host, pid and a random tag."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
    kind: str = "export"
    lease_owner: str | None = None
    lease_expires: float = 0.0


@dataclass
class Change:
    """What ``JobStore.modify`` writes in its one transaction: a record's new progress, new jobs to store, and
    jobs to cancel (those still queued or running)."""
    progress: dict[str, Any]
    create: list[Job] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


def _job(row: Any) -> Job:
    return Job(row.id, row.status, row.client_id, row.request_url, orjson.loads(row.params), row.transaction_time,
               row.created, row.heartbeat, row.attempts, orjson.loads(row.progress or b"{}"), row.message,
               row.expires, row.subject, row.kind, row.lease_owner, row.lease_expires)


def _row(job: Job) -> dict[str, Any]:
    return dict(id=job.id, kind=job.kind, status=job.status, client_id=job.client_id, request_url=job.request_url,
                params=orjson.dumps(job.params).decode(), transaction_time=job.transaction_time, created=job.created,
                heartbeat=job.heartbeat, attempts=job.attempts, progress=orjson.dumps(job.progress).decode(),
                message=job.message, expires=job.expires, subject=job.subject, lease_owner=job.lease_owner,
                lease_expires=job.lease_expires)


class JobStore:
    """The job rows of one database as seen by one gateway instance (``owner``), whose leases last
    ``lease_seconds`` unless renewed."""

    def __init__(self, store: SqlStore, owner: str | None = None, lease_seconds: float = 30.0) -> None:
        self.store = store
        self.owner = owner or instance_name()
        self.lease_seconds = lease_seconds

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
        """Store a new job (normally ``queued``)."""
        with self._write() as conn:
            conn.execute(insert(JOB).values(**_row(job)))

    def create_if_absent(self, job: Job) -> bool:
        """Store a new job unless a row with its id exists (two requests creating the same record at once:
        one of them stores it, neither fails); True when this call stored it."""
        try:
            self.create(job)
        except IntegrityError:
            return False
        return True

    def modify(self, job_id: str, change: Callable[[Job], Change]) -> Job:
        """Read-modify-write of a record no worker runs (a bulk submission), atomically across threads,
        processes and instances: the row is read under the write lock (``SELECT … FOR UPDATE`` on PostgreSQL;
        SQLite's ``BEGIN IMMEDIATE`` holds the one database write lock), ``change`` decides from what is stored
        now, and its new progress, new jobs and cancellations commit together — or not at all when ``change``
        raises. Two concurrent updates therefore both land instead of one overwriting the other's."""
        pick = select(*SUMMARY).where(J.id == job_id)
        if self.store.engine.dialect.name == "postgresql":
            pick = pick.with_for_update()
        with self._write() as conn:
            row = conn.execute(pick).first()
            if row is None:
                raise KeyError(job_id)
            job = _job(row)
            done = change(job)
            for new in done.create:
                conn.execute(insert(JOB).values(**_row(new)))
            for gone in done.cancel:
                conn.execute(update(JOB).where(J.id == gone, J.status.in_(ACTIVE)).values(
                    status="cancelled", expires=time.time() + 60, lease_owner=None, lease_expires=0.0))
            conn.execute(update(JOB).where(J.id == job_id).values(progress=orjson.dumps(done.progress).decode()))
        job.progress = done.progress
        return job

    def get(self, job_id: str) -> Job | None:
        """The job (without its result), or None."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(*SUMMARY).where(J.id == job_id)).first()
        return _job(row) if row else None

    def result(self, job_id: str) -> bytes | None:
        """The stored result of a finished job (NDJSON of a small job), or None."""
        with self.store.engine.connect() as conn:
            value = conn.execute(select(J.result).where(J.id == job_id)).scalar_one_or_none()
        return bytes(value) if value is not None else None

    def active_count(self, client_id: str | None, kind: str | None = None) -> int:
        """How many jobs (of ``kind``) of a client are queued or running."""
        cond = J.client_id.is_(None) if client_id is None else J.client_id == client_id
        if kind is not None:
            cond = cond & (J.kind == kind)
        with self.store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(JOB)
                                .where(cond, J.status.in_(ACTIVE))).scalar_one()

    def listing(self, count: int, owner: tuple[str | None, str | None] | None = None,
                user: str | None = None) -> tuple[list[Job], int]:
        """The ``count`` newest jobs and how many there are: every job (``owner`` None), or those of the
        (client, subject) ``owner`` and, with ``user``, the jobs that user started through any client (a job
        whose subject is not its client, so a backend client's jobs never match a user of the same name)."""
        cond: Any = None
        if owner is not None:
            client, subject = owner
            cond = ((J.client_id.is_(None) if client is None else J.client_id == client)
                    & (J.subject.is_(None) if subject is None else J.subject == subject))
            if user is not None:
                cond = or_(cond, (J.subject == user) & (J.client_id.is_(None) | (J.client_id != J.subject)))
        where = [] if cond is None else [cond]
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(*SUMMARY).where(*where).order_by(J.created.desc(), J.id).limit(count)).all()
            total = conn.execute(select(func.count()).select_from(JOB).where(*where)).scalar_one()
        return [_job(r) for r in rows], int(total)

    def claim(self, kinds: tuple[str, ...] | None = None, only: str | None = None) -> Job | None:
        """Take the oldest runnable job (queued, or running under an expired lease) of the given kinds, for
        this instance, atomically; None when there is none. The claim counts an attempt."""
        now = time.time()
        cond = or_(J.status == "queued", (J.status == "running") & (J.lease_expires < now))
        if kinds is not None:
            cond = cond & J.kind.in_(kinds)
        if only is not None:
            cond = cond & (J.id == only)
        pick = select(J.id).where(cond).order_by(J.created, J.id).limit(1)
        with self.store.engine.connect() as conn:  # a plain read first: idle workers take no write lock
            if conn.execute(pick).first() is None:
                return None
        if self.store.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)  # another instance's candidate is skipped, not awaited
        with self._write() as conn:
            job_id = conn.execute(pick).scalar_one_or_none()
            if job_id is None:
                return None
            # the condition again: on SQLite the select and update share the one write lock; on PostgreSQL
            # the row is locked since the select, so this cannot miss, but it keeps the rule in one place
            done = conn.execute(update(JOB).where(J.id == job_id, cond).values(
                status="running", lease_owner=self.owner, lease_expires=now + self.lease_seconds, heartbeat=now,
                attempts=J.attempts + 1)).rowcount
            if not done:
                return None
            row = conn.execute(select(*SUMMARY).where(J.id == job_id)).first()
        return _job(row)

    def _held(self, job_id: str) -> Any:
        return (J.id == job_id) & (J.status == "running") & (J.lease_owner == self.owner)

    def _state(self, conn: Any, job_id: str) -> str | None:
        row = conn.execute(select(J.status, J.lease_owner).where(J.id == job_id)).first()
        if row is None:
            return None
        return row[0] if row[0] != "running" or row[1] == self.owner else "lost"

    def beat(self, job_id: str) -> str | None:
        """Renew this instance's lease on a running job; returns the job's status as this instance should see
        it: ``running`` while it holds the lease, ``lost`` when another instance took it over (or it was handed
        back), ``cancelled`` etc., None when the job is gone."""
        now = time.time()
        with self._write() as conn:
            conn.execute(update(JOB).where(self._held(job_id)).values(heartbeat=now,
                                                                      lease_expires=now + self.lease_seconds))
            return self._state(conn, job_id)

    def checkpoint(self, job_id: str, progress: dict[str, Any]) -> str | None:
        """Record progress and renew the lease, only while this instance holds it; returns the status as
        ``beat`` does (so the runner sees a cancel or a lost lease)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(update(JOB).where(self._held(job_id)).values(
                progress=orjson.dumps(progress).decode(), heartbeat=now, lease_expires=now + self.lease_seconds))
            return self._state(conn, job_id)

    def release(self, job_id: str) -> None:
        """Hand a running job back (this instance is stopping): any instance may take it over at once, and
        resumes it from its last checkpoint."""
        with self._write() as conn:
            conn.execute(update(JOB).where(self._held(job_id)).values(lease_owner=None, lease_expires=0.0))

    def release_all(self) -> int:
        """Hand back every job this instance holds; returns how many."""
        with self._write() as conn:
            return int(conn.execute(update(JOB).where(J.status == "running", J.lease_owner == self.owner)
                                    .values(lease_owner=None, lease_expires=0.0)).rowcount)

    def finish(self, job_id: str, status: str, progress: dict[str, Any], expires: float,
               message: str | None = None, result: bytes | None = None) -> bool:
        """Record a job's end (complete or failed) with its outcome, only while this instance holds its
        lease; False when it does not (cancelled, or taken over by another instance, which finishes it)."""
        values: dict[str, Any] = {"status": status, "progress": orjson.dumps(progress).decode(), "message": message,
                                  "expires": expires, "heartbeat": time.time(), "lease_expires": 0.0}
        if result is not None:
            values["result"] = result
        with self._write() as conn:
            return bool(conn.execute(update(JOB).where(self._held(job_id)).values(**values)).rowcount)

    def update_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """Replace a job's progress whatever its state (a record no worker runs, such as a submission)."""
        with self._write() as conn:
            conn.execute(update(JOB).where(J.id == job_id).values(progress=orjson.dumps(progress).decode()))

    def cancel(self, job_id: str) -> None:
        """Mark a job cancelled (its runner notices at its next beat); the row goes a minute later."""
        with self._write() as conn:
            conn.execute(update(JOB).where(J.id == job_id).values(status="cancelled", expires=time.time() + 60,
                                                                  lease_owner=None, lease_expires=0.0))

    def expired(self, now: float | None = None) -> list[tuple[str, str]]:
        """(id, kind) of the finished jobs past their expiry time."""
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(select(J.id, J.kind).where(
                J.expires.is_not(None), J.expires < now, J.status.not_in(ACTIVE)))]

    def delete(self, job_id: str) -> None:
        """Remove a job's row."""
        with self._write() as conn:
            conn.execute(delete(JOB).where(J.id == job_id))

"""The job worker every ``serve`` process runs: threads that claim runnable jobs from the job table
(``store/sql/jobs.py``), run each with the handler its kind registered, renew the job's lease while it runs,
and hand leases back when the process stops.

A handler (the Bulk export runner, asynchronous ``$care-gaps``, bulk submission) gets the claimed job and a
``Heartbeat``; it restores the job's recorded grant and works through the store gate under it, saves its
progress with ``JobStore.checkpoint`` and records its end with ``JobStore.finish`` — both refused once this
instance no longer holds the lease, so a job taken over by another instance is finished exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..store.sql.jobs import Job, JobStore

log = logging.getLogger("gateway.jobs")


class Heartbeat:
    """Renews a running job's lease from its own thread, so long work that saves no checkpoint for a while
    keeps its lease; ``lost`` turns true when the job stops being this instance's to run (cancelled, handed
    back, or taken over), and ``cancelled`` when it was cancelled."""

    def __init__(self, jobs: JobStore, job_id: str, seconds: float) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.seconds = seconds
        self.lost = False
        self.cancelled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-beat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._done.wait(self.seconds):
            try:
                state = self.jobs.beat(self.job_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job itself reports real failures
                log.warning("heartbeat of job %s failed", self.job_id)
                continue
            if state != "running":
                self.lost = True
                self.cancelled = state in ("cancelled", None)


class JobHandler(Protocol):
    """What a job kind registers: how to run a claimed job (returning its final status, or ``interrupted``
    when the process is stopping and the job was handed back), how to drop what an expired job left behind,
    and how to be told the process is stopping."""

    def run(self, job: Job, heart: Heartbeat) -> str: ...

    def discard(self, job_id: str) -> None: ...

    def stop(self) -> None: ...


_WORKERS: set[JobWorker] = set()  # the started workers of this process (shutdown hands their leases back)


class JobWorker:
    """``threads`` loops that claim and run jobs of the registered kinds, and delete expired jobs."""

    def __init__(self, jobs: JobStore, threads: int = 2, idle_seconds: float = 1.0, cleanup_seconds: float = 60.0,
                 max_attempts: int = 3, retention_seconds: float = 86400) -> None:
        self.jobs = jobs
        self.threads = max(1, threads)
        self.idle_seconds = idle_seconds
        self.cleanup_seconds = cleanup_seconds
        self.max_attempts = max_attempts
        self.retention_seconds = retention_seconds
        self.handlers: dict[str, JobHandler] = {}
        self.beat_seconds = max(0.2, min(5.0, jobs.lease_seconds / 3))
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_cleanup = 0.0
        self.on_claim: Callable[[Job], None] | None = None  # tests: observe each claim

    def register(self, kind: str, handler: JobHandler) -> None:
        """Run jobs of ``kind`` with ``handler``."""
        self.handlers[kind] = handler

    @property
    def started(self) -> bool:
        """Whether the worker threads were started (and not yet stopped)."""
        return bool(self._threads)

    def start(self) -> None:
        """Start the worker threads."""
        self._stop.clear()
        for n in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"job-worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        _WORKERS.add(self)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next idle tick."""
        with self._wake:
            self._wake.notify_all()

    def drain(self) -> None:
        """Stop claiming jobs and ask running handlers to stop at their next checkpoint (which hands the job
        back); returns at once."""
        self._stop.set()
        for handler in self.handlers.values():
            handler.stop()
        self.wake()

    def stop(self, timeout: float = 10.0) -> int:
        """Drain, wait up to ``timeout`` seconds for the threads, then hand back every lease still held (a
        handler that cannot stop mid-way keeps computing, but can no longer finish the job: another instance
        does); returns the number of leases handed back."""
        self.drain()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        _WORKERS.discard(self)
        return self.release_all()

    def release_all(self) -> int:
        """Hand back every lease this instance holds (logged); 0 when the database cannot be reached."""
        try:
            n = self.jobs.release_all()
        except Exception:  # noqa: BLE001 - the leases then expire on their own
            log.warning("could not hand job leases back; they expire in %g s", self.jobs.lease_seconds)
            return 0
        if n:
            log.info("handed %d job lease(s) back", n)
        return n

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._cleanup()
                job = self.jobs.claim(tuple(self.handlers))
                if job is not None:
                    self.run(job)
                    continue
            except Exception:  # noqa: BLE001 - the worker outlives a database hiccup
                log.exception("job worker error")
            with self._wake:
                self._wake.wait(self.idle_seconds)

    def run(self, job: Job) -> str:
        """Run one claimed job with its kind's handler, renewing its lease meanwhile; returns the status."""
        if self.on_claim is not None:
            self.on_claim(job)
        log.info("job %s (%s) started, attempt %d", job.id, job.kind, job.attempts)
        if job.attempts > self.max_attempts:
            self.jobs.finish(job.id, "failed", job.progress, time.time() + self.retention_seconds,
                             f"The job was interrupted {job.attempts - 1} times and was abandoned; start it again")
            return "failed"
        with Heartbeat(self.jobs, job.id, self.beat_seconds) as heart:
            status = self.handlers[job.kind].run(job, heart)
        log.info("job %s (%s) %s", job.id, job.kind, status)
        return status

    def _cleanup(self) -> None:
        if time.monotonic() - self._last_cleanup < self.cleanup_seconds:
            return
        self._last_cleanup = time.monotonic()
        cleanup_expired(self.jobs, self.handlers)


def cleanup_expired(jobs: JobStore, handlers: dict[str, Any], now: float | None = None) -> int:
    """Delete finished jobs past their expiry time, with what their handler left behind (files); returns
    how many went."""
    gone = 0
    for job_id, kind in jobs.expired(now):
        handler = handlers.get(kind)
        if handler is not None:
            handler.discard(job_id)
        jobs.delete(job_id)
        gone += 1
    return gone


def runs_jobs(settings: Any, store: Any) -> bool:
    """Whether this process runs the job worker: when configured to (``export_worker``), and not on an
    in-memory SQLite database (one connection shared by every thread: no background worker on it)."""
    return bool(settings.export_worker) and getattr(store, "url", "") not in ("sqlite://", "sqlite:///:memory:")


def drain_all() -> None:
    """Every started worker of this process stops claiming (the process received SIGTERM)."""
    for worker in list(_WORKERS):
        worker.drain()


def release_all() -> int:
    """Every started worker of this process hands its leases back (the shutdown bound is reached)."""
    return sum(worker.release_all() for worker in list(_WORKERS))

"""The export worker: a thread inside the gateway process that claims queued jobs (and jobs whose worker
died) and runs them one at a time, and that deletes expired jobs with their files."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from ..store.sql.export_jobs import JobStore
from .runner import ExportRunner, job_dir

log = logging.getLogger("gateway.bulk")


def cleanup_expired(jobs: JobStore, export_dir: Path, now: float | None = None) -> int:
    """Delete finished jobs past their expiry time and their files; returns how many went."""
    gone = 0
    for job_id in jobs.expired(now):
        shutil.rmtree(job_dir(export_dir, job_id), ignore_errors=True)
        jobs.delete(job_id)
        gone += 1
    return gone


class ExportWorker:
    def __init__(self, runner: ExportRunner, jobs: JobStore, stale_seconds: float, idle_seconds: float = 1.0,
                 cleanup_seconds: float = 60.0) -> None:
        self.runner = runner
        self.jobs = jobs
        self.stale_seconds = stale_seconds
        self.idle_seconds = idle_seconds
        self.cleanup_seconds = cleanup_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="export-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.runner.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        last_cleanup = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_cleanup > self.cleanup_seconds:
                    last_cleanup = time.monotonic()
                    cleanup_expired(self.jobs, self.runner.export_dir)
                job = self.jobs.claim(self.stale_seconds)
                if job is not None:
                    log.info("export job %s started (attempt %d)", job.id, job.attempts)
                    status = self.runner.run(job)
                    log.info("export job %s %s", job.id, status)
                    continue
            except Exception:  # noqa: BLE001 - the worker outlives a database hiccup
                log.exception("export worker error")
            self._wake.wait(self.idle_seconds)
            self._wake.clear()

"""The job table's lease rules on SQLite and PostgreSQL: racing claims take each job once, only the lease holder
may checkpoint or finish, an expired lease is taken over, a handed-back lease at once, a finished job never."""

from __future__ import annotations

import threading
import time
from collections import Counter

from gateway.store.sql.jobs import Job, JobStore
from gateway.store.sql.store import SqlStore


def _job(n: int, kind: str = "export") -> Job:
    return Job(f"job-{n:03d}", "queued", "c", "http://x/$export", {}, "2026-01-01T00:00:00Z",
               f"2026-01-01T00:00:{n % 60:02d}Z", kind=kind)


def test_racing_claims_take_each_job_once(store: SqlStore) -> None:
    for n in range(30):
        JobStore(store).create(_job(n))
    taken: Counter[str] = Counter()
    lock = threading.Lock()

    def instance() -> None:
        jobs = JobStore(store, lease_seconds=60)  # an instance of its own
        while (job := jobs.claim(("export",))) is not None:
            with lock:
                taken[job.id] += 1

    threads = [threading.Thread(target=instance) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(taken) == 30 and set(taken.values()) == {1}


def test_only_the_lease_holder_finishes_and_a_finished_job_is_never_run_again(store: SqlStore) -> None:
    a, b = JobStore(store, "a", lease_seconds=0.3), JobStore(store, "b", lease_seconds=30)
    a.create(_job(1, "care-gaps"))
    assert b.claim(("export",)) is None  # another kind
    job = a.claim(("care-gaps",))
    assert job is not None and job.lease_owner == "a" and job.attempts == 1
    assert b.claim() is None  # the lease holds
    assert a.beat(job.id) == "running"
    time.sleep(0.5)  # A stalls past its lease
    taken = b.claim()
    assert taken is not None and taken.id == job.id and taken.attempts == 2
    assert a.beat(job.id) == "lost" and a.checkpoint(job.id, {"x": 1}) == "lost"
    assert not a.finish(job.id, "complete", {}, time.time() + 60, result=b"a\n")  # A can no longer finish it
    assert b.finish(job.id, "complete", {"count": 1}, time.time() + 60, result=b"b\n")
    assert b.result(job.id) == b"b\n"
    assert a.claim() is None and b.claim() is None  # finished: never claimable again


def test_a_handed_back_lease_is_taken_at_once(store: SqlStore) -> None:
    a, b = JobStore(store, "a", lease_seconds=600), JobStore(store, "b", lease_seconds=600)
    a.create(_job(1))
    a.create(_job(2))
    assert a.claim() is not None and a.claim() is not None
    assert b.claim() is None
    assert a.release_all() == 2
    got = {b.claim().id, b.claim().id}  # type: ignore[union-attr]
    assert got == {"job-001", "job-002"}
    a.cancel("job-001")
    assert b.beat("job-001") == "cancelled" and b.beat("job-002") == "running"


def test_the_upgrade_keeps_export_jobs_of_the_old_table(db: str) -> None:
    """A database at migration 0006 with an export job in ``export_job``: after the upgrade the job is a row
    of ``job`` of kind export, claimable, and the downgrade gives the old table back."""
    from sqlalchemy import text

    from gateway.store.sql.migrate import alembic_config, upgrade
    from gateway.store.sql.store import make_engine

    engine = make_engine(db)
    upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO export_job (id, status, client_id, request_url, params, transaction_time, "
                          "created, heartbeat, attempts, progress) VALUES ('old', 'queued', 'c', 'u', '{}', 't', "
                          "'t', 0, 0, '{}')"))
    upgrade(engine)
    store = SqlStore(db, migrate=False)
    try:
        job = JobStore(store, "x").claim()
        assert job is not None and job.id == "old" and job.kind == "export" and job.lease_owner == "x"
    finally:
        store.close()
    from alembic import command

    command.downgrade(alembic_config(engine), "0006")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM export_job")).scalar_one() == "old"
    engine.dispose()

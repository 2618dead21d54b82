"""Population runs on a real Dask cluster: a `dask scheduler` and `dask worker` processes on 127.0.0.1 (the
`[dask]` extra) evaluate a measure over a PostgreSQL database with the same per-patient results as the
in-process executor, finish with the same results when a worker is killed (SIGKILL) in the middle of the run,
and a worker that cannot reach the database fails the run with a clear OperationOutcome, not a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.context import SYSTEM, acting_as
from gateway.demo import DEMO_PERIOD_YEAR, DEMO_SEED
from gateway.demo.synth import demo_measures, iter_resources
from gateway.deqm.evaluation import MeasureService
from gateway.fhir.errors import FhirError, operation_outcome
from gateway.ingest.loader import Loader, LoadSummary
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, own_pg_database, require_pg
from tests.test_live_server import free_port, stop_process

pytestmark = [pytest.mark.postgres]
BASE = "http://127.0.0.1/fhir"
PERIOD = (f"{DEMO_PERIOD_YEAR}-01-01", f"{DEMO_PERIOD_YEAR}-12-31")
MEASURE = "demo-diabetes-a1c-poor-control"
READY_TIMEOUT = 90.0
PATIENTS = 80


def per_patient(r: Any) -> tuple[Any, ...]:
    """What a patient's result says: population members, strata, observations, the resources that fed each
    population, supplemental data and messages (the evaluated resources' in-memory nodes left out)."""
    return (r.subject, [(g.members, g.strata, repr(g.observations), g.used) for g in r.groups],
            repr(r.supplemental), r.messages)


def dask_exe() -> str:
    here = Path(sys.executable).parent / "dask"
    return str(here) if here.exists() else "dask"


@dataclass
class DaskCluster:
    """A scheduler and its workers, each a process of its own; logs in ``workdir``."""

    workdir: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        return subprocess.Popen([dask_exe(), *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                env={**clean_env(), **self.env, **(env or {})})

    def start_scheduler(self) -> None:
        self.port = free_port()
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                                   "--no-dashboard"])

    def add_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A worker with one thread and no nanny (so a killed worker stays dead)."""
        n = len(self.workers)
        proc = self._spawn(f"worker-{n}", ["worker", f"tcp://{self.address}", "--nthreads", "1", "--no-nanny",
                                           "--no-dashboard", "--host", "127.0.0.1",
                                           "--local-directory", str(self.workdir / f"w{n}")], env)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int) -> None:
        """Until ``n`` workers are connected (the scheduler's count), or fail with the logs."""
        from dask.distributed import Client

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in self.workdir.glob("*.log"))
                    raise AssertionError(f"{n} Dask workers did not join within {READY_TIMEOUT:.0f} s\n{logs}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        procs = [*self.workers, *([self.scheduler] if self.scheduler else [])]
        for p in procs:  # all asked at once, then waited for
            if p.poll() is None:
                p.terminate()
        for p in procs:
            stop_process(p)


def dask_cluster(workdir: Path, workers: int, worker_env: dict[str, str] | None = None) -> DaskCluster:
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = DaskCluster(workdir)
    cluster.start_scheduler()
    for _ in range(workers):
        cluster.add_worker(worker_env)
    try:
        cluster.wait_for_workers(workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def population() -> Iterator[tuple[SqlStore, dict[str, Any], list[str]]]:
    """A PostgreSQL database with the demo measures and PATIENTS of the demo's synthetic patients."""
    require_pg("Dask cluster tests")
    with own_pg_database("gw_dask") as url:
        store = SqlStore(url)
        try:
            loader = Loader(RestService(store, BASE), level="strict")
            summary = LoadSummary()
            loader._write([(m["id"], m) for m in demo_measures()], summary)
            loader._write([(r["id"], r) for r in iter_resources(PATIENTS, DEMO_SEED, DEMO_PERIOD_YEAR)], summary)
            assert not summary.errors, summary.errors[:3]
            svc = MeasureService(store, BASE)
            measure = svc.find_measure(MEASURE, None)
            ids = sorted(s.id for s in store.iter_current("Patient"))
            yield store, measure, ids
        finally:
            store.close()


@pytest.fixture(scope="module")
def expected(population: tuple[SqlStore, dict[str, Any], list[str]]) -> list[Any]:
    store, measure, ids = population
    with acting_as(SYSTEM):
        results, _ = MeasureService(store, BASE).results(measure, PERIOD, ids, distribute=False)
    return results


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    c = dask_cluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield c
    finally:
        c.stop()


def test_a_dask_cluster_gives_the_in_process_results_patient_by_patient(
        population: tuple[SqlStore, dict[str, Any], list[str]], expected: list[Any], cluster: DaskCluster) -> None:
    store, measure, ids = population
    svc = MeasureService(store, BASE, executor=f"dask://{cluster.address}", chunk_size=10)
    assert svc._distributes(len(ids))
    with acting_as(SYSTEM):  # the caller's grant, which the workers read under
        got, _ = svc.results(measure, PERIOD, ids)
    assert [r.subject for r in got] == [f"Patient/{i}" for i in ids]
    assert [per_patient(r) for r in got] == [per_patient(r) for r in expected]
    assert any(g.count("numerator") for r in got for g in r.groups)  # a real population, not all 0
    # both workers evaluated chunks: each compiled the measure service once
    from dask.distributed import Client

    with Client(cluster.address, timeout=10) as client:
        built = client.run(lambda: __import__("gateway.deqm.population", fromlist=["_service"])
                           ._service.cache_info().currsize)
    assert len(built) == 2 and all(n == 1 for n in built.values()), built


def test_a_worker_killed_mid_run_loses_nothing(population: tuple[SqlStore, dict[str, Any], list[str]],
                                               expected: list[Any], cluster: DaskCluster) -> None:
    store, measure, ids = population
    victim = cluster.add_worker()
    cluster.wait_for_workers(3)
    finished = [0]
    killed_after: list[int] = []

    def progress(done: int, total: int) -> None:
        finished[0] += done
        if done and not killed_after:  # the first chunk is back: the rest are queued or running
            assert victim.poll() is None
            os.kill(victim.pid, signal.SIGKILL)
            killed_after.append(finished[0])

    svc = MeasureService(store, BASE, executor=f"dask://{cluster.address}", chunk_size=4)
    with acting_as(SYSTEM):
        got, _ = svc.results(measure, PERIOD, ids, progress=progress)
    assert killed_after and killed_after[0] < len(ids)  # killed in the middle of the run
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert [per_patient(r) for r in got] == [per_patient(r) for r in expected]
    assert finished[0] == len(ids)


def test_a_worker_that_cannot_reach_the_database_fails_the_run_clearly(
        population: tuple[SqlStore, dict[str, Any], list[str]], tmp_path: Path) -> None:
    store, measure, ids = population
    # libpq's PGHOSTADDR sends this worker's connections to an address where no database listens
    cut_off = dask_cluster(tmp_path / "cut-off", workers=1, worker_env={"PGHOSTADDR": "127.0.0.2"})
    try:
        svc = MeasureService(store, BASE, executor=f"dask://{cut_off.address}", chunk_size=20)
        started = time.monotonic()
        with acting_as(SYSTEM), pytest.raises(FhirError) as caught:
            svc.results(measure, PERIOD, ids)
        elapsed = time.monotonic() - started
    finally:
        cut_off.stop()
    assert caught.value.status == 503
    outcome = operation_outcome(caught.value.issues)
    text = outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["code"] == "transient"
    assert "could not reach the database" in text and cut_off.address in text, text
    assert "postgres" not in text.lower()  # neither the database URL nor the driver's message
    assert elapsed < 60, elapsed  # a bounded failure, not a hang

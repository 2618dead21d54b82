"""Crash test: a live ``fhir-gateway serve`` killed (SIGKILL) in the middle of a group export, restarted on
the same database and export directory; the job must resume and complete with correct counts, and no file
may be presented before it is complete. Also: a job that keeps being interrupted fails with an
OperationOutcome rather than looping."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.store.sql.jobs import JobStore
from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import load_population
from tests.conftest import clean_env, gateway_exe
from tests.test_live_server import LiveServer, free_port, stop_server

pytestmark = pytest.mark.live
MEMBERS = 3000


def _start(db: str, workdir: Path, export_dir: Path, tag: str) -> LiveServer:
    port = free_port()
    env = clean_env() | {"GATEWAY_EXPORT_DIR": str(export_dir), "GATEWAY_EXPORT_MAX_FILE_BYTES": "20000",
                         "GATEWAY_JOB_LEASE_SECONDS": "1", "GATEWAY_EXPORT_POLL_MIN_SECONDS": "0"}
    out, err = workdir / f"{tag}.stdout", workdir / f"{tag}.stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen([gateway_exe(), "serve", "--port", str(port), "--auth", "off", "--database", db],
                                stdout=fo, stderr=fe, env=env, cwd=workdir)
    server = LiveServer(proc, port, out, err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, server.output()
        try:
            if httpx.get(f"{server.root}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    stop_server(server)
    raise AssertionError("server did not start\n" + server.output())


def test_export_survives_a_killed_gateway(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.sqlite3'}"
    export_dir = tmp_path / "export"
    store = SqlStore(db)
    load_population(store, MEMBERS, "big")
    store.close()

    first = _start(db, tmp_path, export_dir, "first")
    try:
        r = httpx.get(f"{first.base}/Group/big/$export", params={"_type": "Patient,Coverage"},
                      headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert r.status_code == 202, r.text
        status_url = r.headers["Content-Location"]
        deadline = time.monotonic() + 60
        while True:  # wait until some files are complete, then kill the process without warning
            s = httpx.get(status_url)
            assert s.status_code == 202, f"export ended before the kill: {s.status_code} {s.text[:200]}"
            if s.headers["X-Progress"].split(" ")[0].isdigit() and int(s.headers["X-Progress"].split(" ")[0]) > 0:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.proc.kill()
        first.proc.wait(10)
    finally:
        stop_server(first)
    job_id = status_url.rsplit("/", 1)[1]
    job = JobStore(SqlStore(db, migrate=False)).get(job_id)
    assert job is not None and job.status == "running" and job.progress["outputs"]  # interrupted mid-way
    done_before = {o["file"] for o in job.progress["outputs"]}

    second = _start(db, tmp_path, export_dir, "second")
    try:
        deadline = time.monotonic() + 120
        while True:
            s = httpx.get(status_url.replace(f":{first.port}/", f":{second.port}/"))
            if s.status_code != 202:
                break
            assert time.monotonic() < deadline, "the resumed export did not finish"
            time.sleep(0.1)
        assert s.status_code == 200, s.text
        manifest = s.json()
        counts: dict[str, int] = {}
        ids: dict[str, list[str]] = {}
        for item in manifest["output"]:
            url = item["url"].replace(f":{first.port}/", f":{second.port}/")
            body = httpx.get(url).text
            lines = [json.loads(x) for x in body.splitlines()]
            assert len(lines) == item["count"]  # every listed file is whole
            counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
            ids.setdefault(item["type"], []).extend(x["id"] for x in lines)
        assert counts == {"Patient": MEMBERS, "Coverage": MEMBERS}
        assert len(set(ids["Patient"])) == MEMBERS and len(set(ids["Coverage"])) == MEMBERS  # nothing twice
        assert done_before <= {i["url"].rsplit("/", 1)[1] for i in manifest["output"]}
        assert not list((export_dir / job_id).glob("*.part"))
        job = JobStore(SqlStore(db, migrate=False)).get(job_id)
        assert job is not None and job.attempts == 2
    finally:
        stop_server(second)


def test_a_job_interrupted_too_often_fails_with_an_outcome(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import Settings
    from tests.conftest import BASE

    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    load_population(store, 5, "g")
    settings = Settings(base_url=BASE, auth="off", export_dir=tmp_path / "x", export_poll_min_seconds=0,
                        export_worker=False)
    with TestClient(create_app(settings, store=store, access_log=False), base_url="http://testserver") as c:
        r = c.get("/fhir/Group/g/$export", headers={"Prefer": "respond-async"})
        job_id = r.headers["Content-Location"].rsplit("/", 1)[1]
        svc = c.app.state.bulk
        for _ in range(4):  # claimed four times (as if the process had died under it each time)
            job = svc.jobs.claim(only=job_id)
            assert job is not None
            svc.jobs.release(job_id)
        job = svc.jobs.claim(only=job_id)
        assert svc.runner.run(job) == "failed"
        s = c.get(r.headers["Content-Location"].replace("http://testserver", ""))
        assert s.status_code == 500
        assert "interrupted" in s.json()["issue"][0]["diagnostics"]
        assert not (tmp_path / "x" / job_id).exists()

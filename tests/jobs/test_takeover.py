"""The job core across gateway instances, over real HTTP: two ``fhir-gateway serve`` processes on one database.

- jobs accepted by instance A, A killed (SIGKILL) in the middle: instance B takes them over when their lease
  expires and finishes them, complete and once (an export and an asynchronous ``$care-gaps``);
- many jobs sent to both instances at once: each is run by exactly one instance, once;
- SIGTERM during a long request: the process stops accepting, exits within its shutdown bound and hands its
  job leases back, so the other instance takes the job at once (its lease had a minute left).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import load_population
from tests.conftest import own_pg_database, require_pg
from tests.jobs.harness import (
    ASYNC,
    CARE_GAPS,
    DEMO_MEASURES,
    EVALUATE_LONG,
    instances,
    job_row,
    load_world,
    poll_done,
    wait_for,
)

pytestmark = pytest.mark.live
MEMBERS = 3000


def _env(tmp_path: Path, lease: float) -> dict[str, str]:
    return {"GATEWAY_JOB_LEASE_SECONDS": str(lease), "GATEWAY_EXPORT_DIR": str(tmp_path / "export"),
            "GATEWAY_EXPORT_MAX_FILE_BYTES": "20000", "GATEWAY_EXPORT_POLL_MIN_SECONDS": "0",
            "GATEWAY_EXPORT_MAX_ACTIVE_JOBS": "50", "GATEWAY_SUBSCRIPTION_NOTIFIER": "false"}


def _on(url: str, src: Any, dst: Any) -> str:
    return url.replace(f":{src.port}/", f":{dst.port}/")


def _ndjson(url: str) -> list[dict[str, Any]]:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def _gap_subjects(bundles: list[dict[str, Any]]) -> list[str]:
    return [next(e["resource"]["subject"]["reference"] for e in b["entry"]
                 if e["resource"]["resourceType"] == "Composition") for b in bundles]


def test_jobs_of_a_killed_instance_are_finished_by_the_other(db: str, tmp_path: Path) -> None:
    load_world(db)
    store = SqlStore(db)
    load_population(store, MEMBERS, "big")
    store.close()
    with instances(db, tmp_path, ("a", "b"), _env(tmp_path, lease=2)) as (a, b):
        os.kill(b.proc.pid, signal.SIGSTOP)  # B frozen while A accepts and starts both jobs
        export = httpx.get(f"{a.base}/Group/big/$export", params={"_type": "Patient,Coverage"}, headers=ASYNC,
                           timeout=30)
        assert export.status_code == 202, export.text
        export_url = export.headers["Content-Location"]
        export_id = export_url.rsplit("/", 1)[1]
        wait_for(lambda: job_row(db, export_id).progress.get("outputs"), 60, "export files written on A", 0.02)
        gaps = httpx.get(f"{a.base}/Measure/$care-gaps", params=CARE_GAPS, headers=ASYNC, timeout=30)
        assert gaps.status_code == 202, gaps.text
        gaps_url = gaps.headers["Content-Location"]
        gaps_id = gaps_url.rsplit("/", 1)[1]
        wait_for(lambda: job_row(db, gaps_id).status == "running", 30, "the $care-gaps job running on A", 0.02)
        os.kill(a.proc.pid, signal.SIGSTOP)  # stopped at once, then killed: no chance to finish anything
        held = [job_row(db, export_id), job_row(db, gaps_id)]
        assert all(j.status == "running" and str(a.proc.pid) in (j.lease_owner or "") for j in held), held
        done_before = {o["file"] for o in held[0].progress["outputs"]}
        a.proc.kill()
        a.proc.wait(10)
        os.kill(b.proc.pid, signal.SIGCONT)

        # B answers the status of jobs A accepted, and finishes them once their lease ran out
        s = poll_done(_on(export_url, a, b))
        assert s.status_code == 200, s.text
        counts: dict[str, int] = {}
        ids: dict[str, set[str]] = {}
        for item in s.json()["output"]:
            lines = _ndjson(_on(item["url"], a, b))
            assert len(lines) == item["count"]
            counts[item["type"]] = counts.get(item["type"], 0) + len(lines)
            ids.setdefault(item["type"], set()).update(x["id"] for x in lines)
        assert counts == {"Patient": MEMBERS, "Coverage": MEMBERS}  # complete, and nothing twice
        assert len(ids["Patient"]) == MEMBERS and len(ids["Coverage"]) == MEMBERS
        assert done_before <= {i["url"].rsplit("/", 1)[1] for i in s.json()["output"]}  # resumed, not redone

        g = poll_done(_on(gaps_url, a, b))
        assert g.status_code == 200, g.text
        bundles = _ndjson(_on(g.json()["output"][0]["url"], a, b))
        sync = httpx.get(f"{b.base}/Measure/$care-gaps", params=CARE_GAPS, timeout=120)
        assert sync.status_code == 200, sync.text
        expected = sorted(_gap_subjects([p["resource"] for p in sync.json()["parameter"]]))
        assert sorted(_gap_subjects(bundles)) == expected and expected  # the same gaps as a direct call
        assert g.json()["output"][0]["count"] == len(bundles)

        for job_id in (export_id, gaps_id):
            row = job_row(db, job_id)
            assert row.status == "complete" and row.attempts == 2, row
            assert a.job_events(job_id) == ["started"]  # A never finished it
            assert b.job_events(job_id) == ["started", "complete"]


@pytest.mark.postgres
def test_two_instances_never_run_a_job_twice(tmp_path: Path) -> None:
    require_pg()
    with own_pg_database("gw_jobs") as db:
        load_world(db)
        with instances(db, tmp_path, ("a", "b"), _env(tmp_path, lease=5)) as (a, b):
            urls = []
            for n in range(12):  # sent to both instances at once, alternating
                inst = (a, b)[n % 2]
                if n % 3 == 2:
                    r = httpx.get(f"{inst.base}/Measure/$care-gaps", headers=ASYNC, timeout=30, params=[
                        ("periodStart", "2025-01-01"), ("periodEnd", "2025-12-31"), ("status", "open-gap"),
                        ("subject", "Group/demo-group-attributed-2025"),
                        ("measureId", "demo-breast-cancer-screening")])
                else:
                    r = httpx.get(f"{inst.base}/$export", params={"_type": "Patient,Coverage"}, headers=ASYNC,
                                  timeout=30)
                assert r.status_code == 202, r.text
                urls.append(r.headers["Content-Location"])
            for url in urls:
                assert poll_done(url).status_code == 200
            for url in urls:
                job_id = url.rsplit("/", 1)[1]
                assert job_row(db, job_id).attempts == 1
                runs = a.job_events(job_id) + b.job_events(job_id)
                assert runs == ["started", "complete"], (job_id, runs)


def test_sigterm_exits_within_the_bound_and_hands_leases_back(db: str, tmp_path: Path) -> None:
    load_world(db)
    bound = 3.0
    with instances(db, tmp_path, ("a", "b"), _env(tmp_path, lease=60),
                   args=("--shutdown-timeout", str(bound))) as (a, b):
        os.kill(b.proc.pid, signal.SIGSTOP)
        # gaps of all three demo measures: a job long enough to be still running when A is told to stop
        every_measure = [p for p in CARE_GAPS if p[0] != "measureId"] + [("measureId", m) for m in DEMO_MEASURES]
        r = httpx.get(f"{a.base}/Measure/$care-gaps", params=every_measure, headers=ASYNC, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.headers["Content-Location"].rsplit("/", 1)[1]
        wait_for(lambda: job_row(db, job_id).status == "running", 30, "the job running on A")
        outcome: dict[str, Any] = {}

        def long_request() -> None:  # many seconds of measure evaluation, answered synchronously
            try:
                outcome["response"] = httpx.get(f"{a.base}/Measure/$evaluate", params=EVALUATE_LONG, timeout=60)
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), "the long request ended too soon to test anything"
        began = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx.get(f"{a.base.removesuffix('/fhir')}/healthz", timeout=1)
            except httpx.TransportError:
                return True
            return False

        wait_for(refused, bound, "A to stop accepting connections")
        a.proc.wait(bound + 5)
        took = time.monotonic() - began
        assert took <= bound + 1.5, f"A took {took:.1f} s to exit (bound {bound} s)"
        t.join(30)
        assert "error" in outcome or outcome["response"].status_code >= 500  # cut off by the bound
        row = job_row(db, job_id)
        assert row.status == "running" and row.lease_owner is None and row.lease_expires == 0.0  # handed back
        os.kill(b.proc.pid, signal.SIGCONT)
        began = time.monotonic()
        wait_for(lambda: b.job_events(job_id), 15, "B taking the job over")  # the lease had a minute left
        assert time.monotonic() - began < 15
        row = job_row(db, job_id)
        assert row.attempts == 2 and str(b.proc.pid) in (row.lease_owner or "")  # B runs it (finishing a taken-
        # over job is proven by test_jobs_of_a_killed_instance_are_finished_by_the_other)

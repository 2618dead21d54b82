"""Concurrent ``$bulk-submit`` requests for one submission over real HTTP, against two live instances on one
database (SQLite file and PostgreSQL): each request adds a manifest to the submission's record, and every one
of them is still there afterwards — an update is a locked read-modify-write of the record, so two requests
arriving together cannot overwrite each other's manifest."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.bulk.submit import submission_key
from tests.jobs.harness import FileServer, instances, job_row, manifest, submit_params

pytestmark = pytest.mark.live
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
REQUESTS = 16


def test_concurrent_updates_of_one_submission_all_survive(db: str, tmp_path: Path) -> None:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    with FileServer(routes) as files:
        for n in range(REQUESTS + 1):
            routes[f"/drop/m{n}.json"] = (200, {}, manifest(files.url("/drop"), []))
        env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
               "GATEWAY_BULK_SUBMIT_SOURCES": files.url("/drop"), "GATEWAY_SUBSCRIPTION_NOTIFIER": "false",
               "GATEWAY_EXPORT_MAX_ACTIVE_JOBS": str(REQUESTS * 2)}
        with instances(db, tmp_path, ("a", "b"), env) as (a, b):
            first = httpx.post(f"{a.base}/$bulk-submit", headers=JSON, timeout=30,
                               json=submit_params("racer", "r-1", files.url("/drop/m0.json")))
            assert first.status_code == 202, first.text

            def announce(n: int) -> int:
                base = (a, b)[n % 2].base
                r = httpx.post(f"{base}/$bulk-submit", headers=JSON, timeout=60,
                               json=submit_params("racer", "r-1", files.url(f"/drop/m{n}.json")))
                return r.status_code

            with ThreadPoolExecutor(REQUESTS) as pool:
                codes = list(pool.map(announce, range(1, REQUESTS + 1)))
            assert codes == [202] * REQUESTS
            key = submission_key(None, "http://example.org/submitters|racer", "r-1")
            stored = job_row(db, key).progress["manifests"]
            urls = sorted(m["manifestUrl"] for m in stored)
            assert urls == sorted(files.url(f"/drop/m{n}.json") for n in range(REQUESTS + 1))
            assert len({m["job"] for m in stored}) == REQUESTS + 1
            # and each announced manifest has its job
            assert all(job_row(db, m["job"]).kind == "bulk-submit" for m in stored)

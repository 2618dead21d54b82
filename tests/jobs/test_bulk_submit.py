"""Bulk submission end to end over real HTTP: a live ``fhir-gateway serve`` on SQLite and on PostgreSQL, a Data
Provider's NDJSON files on a file server on 127.0.0.1 (allowed by explicit configuration only), ``$bulk-submit``
with a good file and a bad one (per-file outcomes; the bad file loads nothing), a manifest outside the
allow-list (400 OperationOutcome, nothing stored), and DEQM ``Measure/$bulk-submit-data``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.jobs.harness import FileServer, instances, manifest, ndjson, poll_done, submit_params

pytestmark = pytest.mark.live
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PATIENTS = [{"resourceType": "Patient", "id": f"bs-{n}", "name": [{"family": f"Submitted{n}"}]} for n in range(3)]
BAD = (json.dumps({"resourceType": "Observation", "id": "bs-o1", "status": "final", "code": {"text": "x"}})
       + "\n{not json\n").encode()
REPORT = {"resourceType": "MeasureReport", "id": "bs-mr", "status": "complete", "type": "data-collection",
          "measure": "http://example.org/Measure/m", "period": {"start": "2025-01-01", "end": "2025-12-31"}}


def _count(base: str, query: str) -> int:
    r = httpx.get(f"{base}/{query}&_summary=count", headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_bulk_submission_end_to_end(db: str, tmp_path: Path) -> None:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    with FileServer(routes) as files:
        routes["/ok/Patient.ndjson"] = (200, {"Content-Type": "application/fhir+ndjson"}, ndjson(PATIENTS))
        routes["/ok/bad.ndjson"] = (200, {}, BAD)
        routes["/ok/manifest.json"] = (200, {"Content-Type": "application/json"}, manifest(
            files.url("/ok"), [("Patient", "Patient.ndjson"), ("Observation", files.url("/ok/bad.ndjson"))]))
        routes["/ok/deqm.json"] = (200, {}, manifest(files.url("/ok"), [("Patient", "Patient.ndjson")]))
        routes["/other/manifest.json"] = routes["/ok/manifest.json"]
        env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
               "GATEWAY_BULK_SUBMIT_SOURCES": files.url("/ok"), "GATEWAY_SUBSCRIPTION_NOTIFIER": "false"}
        with instances(db, tmp_path, ("a",), env) as (a,):
            r = httpx.post(f"{a.base}/$bulk-submit", headers=JSON, timeout=30,
                           json=submit_params("acme", "s-1", files.url("/ok/manifest.json")))
            assert r.status_code == 202, r.text
            status_url = r.headers["Content-Location"]
            assert httpx.get(status_url, timeout=30).status_code == 202  # the submission is still open
            done = httpx.post(f"{a.base}/$bulk-submit", headers=JSON, timeout=30,
                              json=submit_params("acme", "s-1", status="completed"))
            assert done.status_code == 202 and done.headers["Content-Location"] == status_url
            s = poll_done(status_url, 60)
            assert s.status_code == 200, s.text
            report = s.json()
            assert report["submissionId"] == "s-1" and report["submissionStatus"] == "completed"
            assert [(o["type"], o["count"]) for o in report["output"]] == [("Patient", 3)]
            assert len(report["error"]) == 1 and "bad.ndjson line 2 is not JSON" in report["error"][0]["diagnostics"]
            outcomes = httpx.get(report["error"][0]["url"], timeout=30)
            assert outcomes.status_code == 200 and "OperationOutcome" in outcomes.text
            assert _count(a.base, "Patient?_id=bs-0,bs-1,bs-2") == 3
            assert _count(a.base, "Observation?_id=bs-o1") == 0  # the bad file loaded nothing of itself
            # the same submission, asked for by submitter and submissionId
            by_id = httpx.post(f"{a.base}/$bulk-submit-status", headers=JSON, timeout=30,
                               json=submit_params("acme", "s-1"))
            assert by_id.status_code == 200 and by_id.json()["output"] == report["output"]
            # a completed submission takes no more requests
            again = httpx.post(f"{a.base}/$bulk-submit", headers=JSON, timeout=30,
                               json=submit_params("acme", "s-1", files.url("/ok/manifest.json")))
            assert again.status_code == 409

            # a manifest outside the allow-list: refused before anything is stored
            hits = len(files.hits)
            out = httpx.post(f"{a.base}/$bulk-submit", headers=JSON, timeout=30,
                             json=submit_params("acme", "s-2", files.url("/other/manifest.json")))
            assert out.status_code == 400, out.text
            oo = out.json()
            assert oo["resourceType"] == "OperationOutcome" and "allow-list" in oo["issue"][0]["diagnostics"]
            assert len(files.hits) == hits  # not even fetched
            gone = httpx.post(f"{a.base}/$bulk-submit-status", headers=JSON, timeout=30,
                              json=submit_params("acme", "s-2"))
            assert gone.status_code == 404  # no submission was recorded

            # DEQM $bulk-submit-data: the data-collection report stored, the data loaded
            body = {"resourceType": "Parameters", "parameter": [
                {"name": "measureReport", "resource": REPORT}, {"name": "exportType", "valueCode": "static"},
                {"name": "exportUrl", "valueUrl": files.url("/ok/deqm.json")}]}
            d = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, json=body, timeout=30)
            assert d.status_code == 202, d.text
            ds = poll_done(d.headers["Content-Location"], 60)
            assert ds.status_code == 200 and [o["count"] for o in ds.json()["output"]] == [3]
            assert _count(a.base, "MeasureReport?_id=bs-mr") == 1
            bad = {**body, "parameter": [*body["parameter"][:2],
                                         {"name": "exportUrl", "valueUrl": files.url("/other/manifest.json")}]}
            bad["parameter"][0] = {"name": "measureReport", "resource": {**REPORT, "id": "bs-mr-2"}}
            refused = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, json=bad, timeout=30)
            assert refused.status_code == 400 and "allow-list" in refused.text
            assert _count(a.base, "MeasureReport?_id=bs-mr-2") == 0  # nothing stored

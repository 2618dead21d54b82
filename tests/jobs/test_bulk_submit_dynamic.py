"""DEQM ``Measure/$bulk-submit-data`` with ``exportType`` dynamic, end to end over real HTTP: gateway A (a live
``serve``, SQLite file or PostgreSQL) pulls the data itself from gateway B (a second live ``serve --auth smart``
with the demo data) by running B's Bulk Data ``$export`` as a SMART Backend Services client — B holds A's
public key as a registered client's JWKS, A the private key in its GATEWAY_BULK_SUBMIT_CREDENTIALS file. A
discovers B's token endpoint, kicks off, polls, downloads the files with the token and loads each file; the
status shows each file's count, and what A stored equals what B exports.

Bad inputs: an exportUrl or fhirBaseUrl outside the allow-list, and a provider for which A has no client of its
own, answer 400 with an OperationOutcome before anything is fetched or stored; a provider whose token endpoint
refuses A's client fails the submission with that reason, and A never kicks off there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.harness import FileServer, export_at, instances, poll_done, provider

pytestmark = pytest.mark.live
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
TYPES = "Patient,Condition"


def report(rid: str) -> dict[str, Any]:
    return {"resourceType": "MeasureReport", "id": rid, "status": "complete", "type": "data-collection",
            "measure": "http://example.org/Measure/m", "period": {"start": "2025-01-01", "end": "2025-12-31"}}


def dynamic(rid: str, export_url: str, **more: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "measureReport", "resource": report(rid)},
                                    {"name": "exportType", "valueCode": "dynamic"},
                                    {"name": "exportUrl", "valueUrl": export_url}]
    params += [{"name": k, "valueString" if k.startswith("_") else "valueUrl": v} for k, v in more.items()]
    return {"resourceType": "Parameters", "parameter": params}


def stored(base: str, rtype: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{base}/{rtype}", params={"_count": "1000"}, headers=JSON, timeout=60)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert not [link for link in bundle.get("link", []) if link["relation"] == "next"]
    return {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])}


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def test_dynamic_bulk_submit_data_pulls_from_a_second_gateway(db: str, tmp_path: Path) -> None:
    stub_routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    with FileServer(stub_routes) as stub, FileServer({}) as other:
        # a provider whose token endpoint refuses this gateway's client
        stub_routes["/refusing/fhir/.well-known/smart-configuration"] = (200, {}, json.dumps(
            {"token_endpoint": stub.url("/refusing/auth/token")}).encode())
        stub_routes["/refusing/auth/token"] = (401, {"Content-Type": "application/json"}, json.dumps(
            {"error": "invalid_client", "error_description": "no such key"}).encode())
        extra = [{"source": stub.url("/refusing/fhir"), "clientId": "consumer", "keyFile": "consumer.jwk"}]
        with provider(tmp_path, extra) as b:
            env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
                   "GATEWAY_BULK_SUBMIT_SOURCES": f"{b.root}/,{stub.url('/refusing')},{stub.url('/nocred')}",
                   "GATEWAY_BULK_SUBMIT_CREDENTIALS": str(b.credentials),
                   "GATEWAY_SUBSCRIPTION_NOTIFIER": "false"}
            with instances(db, tmp_path, ("a",), env) as (a,):
                r = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, timeout=30,
                               json=dynamic("dyn-mr", f"{b.base}/$export", _type=TYPES, fhirBaseUrl=b.base))
                assert r.status_code == 202, r.text
                s = poll_done(r.headers["Content-Location"], 180)
                assert s.status_code == 200, s.text
                status = s.json()
                assert status["error"] == [], status["error"]
                expected = export_at(b, TYPES)
                counts: dict[str, int] = {}
                for item in status["output"]:
                    counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
                    assert item["manifestUrl"] == f"{b.base}/$export"
                    assert item["file"].startswith(f"{b.base}/$export-file/")
                assert counts == {t: len(rs) for t, rs in expected.items()}
                assert set(counts) == set(TYPES.split(",")) and all(counts.values())
                for rtype, resources in expected.items():
                    here = stored(a.base, rtype)
                    assert sorted(here) == sorted(x["id"] for x in resources)
                    for x in resources:
                        assert without_meta(here[x["id"]]) == without_meta(x)
                assert stored(a.base, "Observation") == {}  # _type was passed on: nothing else exported
                assert "dyn-mr" in stored(a.base, "MeasureReport")
                # A released the export at B once it had the files (DELETE of the status URL)
                pulled_status = status["output"][0]["file"].split("/$export-file/")[1].split("/")[0]
                released = httpx.get(f"{b.base}/$export-status/{pulled_status}", timeout=30,
                                     headers={**b.token("system/Patient.rs system/Condition.rs"),
                                              "Accept": "application/fhir+json"})
                assert released.status_code in (404, 410), released.text

                # exportUrl, or fhirBaseUrl, outside the allow-list: 400 OperationOutcome, nothing fetched or stored
                for bad in (dynamic("dyn-bad-1", other.url("/fhir/$export")),
                            dynamic("dyn-bad-2", f"{b.base}/$export", fhirBaseUrl=other.url("/fhir"))):
                    refused = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, json=bad, timeout=30)
                    assert refused.status_code == 400, refused.text
                    oo = refused.json()
                    assert oo["resourceType"] == "OperationOutcome"
                    assert "allow-list" in oo["issue"][0]["diagnostics"]
                assert other.hits == []
                here = stored(a.base, "MeasureReport")
                assert "dyn-bad-1" not in here and "dyn-bad-2" not in here

                # an allowed provider for which this gateway has no client of its own: 400, nothing fetched
                hits = len(stub.hits)
                nocred = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, timeout=30,
                                    json=dynamic("dyn-nocred", stub.url("/nocred/fhir/$export")))
                assert nocred.status_code == 400 and "no Backend Services client" in nocred.text
                assert len(stub.hits) == hits and "dyn-nocred" not in stored(a.base, "MeasureReport")

                # the provider's token endpoint refuses this gateway's client: the submission fails, saying so
                r = httpx.post(f"{a.base}/Measure/$bulk-submit-data", headers=JSON, timeout=30,
                               json=dynamic("dyn-refused", stub.url("/refusing/fhir/$export")))
                assert r.status_code == 202, r.text
                s = poll_done(r.headers["Content-Location"], 60)
                assert s.status_code == 200 and s.json()["output"] == []
                errors = s.json()["error"]
                assert len(errors) == 1 and "refused this gateway's client" in errors[0]["diagnostics"]
                assert "invalid_client" in errors[0]["diagnostics"]
                outcome = httpx.get(errors[0]["url"], timeout=30)
                assert outcome.status_code == 200 and "invalid_client" in outcome.text
                assert "/refusing/fhir/$export" not in stub.hits  # no kick-off without a token

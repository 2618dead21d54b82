"""Helpers for the Bulk Data and ATR tests: load the official ATR examples, run an export to its end."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from gateway.demo.attribution import synthetic_population
from tests.conftest import SHARED, require_shared

ATR_DIR = SHARED / "examples" / "atr"


def atr_examples() -> list[dict[str, Any]]:
    require_shared()
    out = []
    for f in sorted(ATR_DIR.glob("*.json")):
        r = json.loads(f.read_text())
        if r["resourceType"] != "Subscription":
            out.append(r)
    return out


def load_examples(client: TestClient) -> list[dict[str, Any]]:
    resources = atr_examples()
    for r in resources:
        resp = client.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r)
        assert resp.status_code in (200, 201), resp.text
    return resources


def load_population(store: Any, n: int, group_id: str = "big", prefix: str = "m") -> None:
    with store.session() as s:
        for r in synthetic_population(n, group_id, prefix):
            s.write(r, "POST", known_new=True)


def path(url: str) -> str:
    return url.replace("http://testserver", "")


def kickoff(client: TestClient, url: str, body: dict[str, Any] | None = None, **headers: str) -> str:
    h = {"Prefer": "respond-async", "Accept": "application/fhir+json", **headers}
    r = client.post(url, json=body, headers=h) if body is not None else client.get(url, headers=h)
    assert r.status_code == 202, r.text
    loc = r.headers["Content-Location"]
    assert loc.startswith("http://testserver/fhir/$export-status/")
    return loc


def wait(client: TestClient, status_url: str, timeout: float = 30.0, **headers: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(path(status_url), headers={"Accept": "application/json", **headers})
        if r.status_code != 202:
            return r
        assert r.headers["Retry-After"].isdigit() and len(r.headers["X-Progress"]) < 100
        time.sleep(0.05)
    raise AssertionError("export did not finish in time")


def download(client: TestClient, manifest: dict[str, Any], key: str = "output", **headers: str) -> dict[str, list]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[key]:
        r = client.get(path(item["url"]), headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert len(lines) == item["count"]
        assert all(x["resourceType"] == item["type"] for x in lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


def export(client: TestClient, url: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    r = wait(client, kickoff(client, url, body))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    manifest = r.json()
    return manifest, download(client, manifest)

"""A real ``fhir-gateway serve`` process on a free loopback port, exercised over HTTP with httpx.

One server per module on a temporary SQLite file with ``--demo``; one more on the session PostgreSQL
database. Each server is terminated at fixture teardown, whatever the tests did.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.ingest.loader import DEMO_PATIENTS
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe, wipe

pytestmark = pytest.mark.live

START_TIMEOUT = 90.0  # a loaded 2-core machine takes over 30 s to migrate and load the demo on PostgreSQL
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}






def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_resources() -> list[dict[str, Any]]:
    data = pkg_resources.files("gateway.demo").joinpath("demo-bundle.json").read_bytes()
    return [e["resource"] for e in json.loads(data)["entry"]]


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.root}/fhir"

    def stdout_lines(self) -> list[str]:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def output(self) -> str:
        return (f"--- stdout\n{self.stdout_path.read_text(errors='replace')[-4000:]}\n"
                f"--- stderr\n{self.stderr_path.read_text(errors='replace')[-4000:]}")


def start_server(database: str, workdir: Path, demo: bool, auth: str | None = "off",
                 timeout: float = START_TIMEOUT, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> LiveServer:
    """``auth=None`` leaves --auth out, so the command line's default applies; ``env`` adds GATEWAY_*
    settings and ``args`` options to the command line."""
    port = free_port()
    out, err = workdir / "server.stdout", workdir / "server.stderr"
    cmd = [gateway_exe(), "serve", "--host", "127.0.0.1", "--port", str(port), "--database", database]
    if auth is not None:
        cmd += ["--auth", auth]
    if demo:
        cmd.append("--demo")
    cmd += args
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env={**clean_env(), **(env or {})}, cwd=workdir)
    server = LiveServer(proc, port, out, err)
    wait_until_up(proc, f"{server.root}/healthz", timeout, server.output)
    return server


def wait_until_up(proc: subprocess.Popen[Any], url: str, timeout: float, output: Callable[[], str],
                  verify: Any = True) -> None:
    """Poll ``url`` until it answers 200; if ``proc`` exits first or ``timeout`` passes, stop it and fail with
    ``output()`` (its log). Every test that starts a server process waits this way."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode} before answering\n{output()}")
        try:
            if httpx.get(url, timeout=2.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(f"{url} did not answer within {timeout:.0f} s\n{output()}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate ``proc`` and wait; kill it when it does not stop within 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def stop_server(server: LiveServer) -> None:
    stop_process(server.proc)


@contextmanager
def serving(database: str, workdir: Path, demo: bool) -> Iterator[LiveServer]:
    """A server on ``database`` for the enclosed block, stopped afterwards whatever happened. A PostgreSQL
    database (shared by the session) is emptied before the server starts and after it stops."""
    postgres = database.startswith("postgresql")
    if postgres:
        store = SqlStore(database)
        wipe(store)
        store.close()
    server = start_server(database, workdir, demo=demo)
    try:
        yield server
    finally:
        stop_server(server)
        if postgres:
            store = SqlStore(database)
            wipe(store)
            store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("live")
    with serving(f"sqlite:///{workdir / 'live.sqlite3'}", workdir, demo=True) as server:
        yield server


@pytest.fixture()
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=30.0) as c:
        yield c


# -- SQLite server with demo data --------------------------------------------------------------------------


def test_metadata_is_r4_capability_statement(http: httpx.Client) -> None:
    r = http.get("/metadata", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    types = {res["type"] for rest in cs["rest"] for res in rest.get("resource", [])}
    assert {"Patient", "Observation"} <= types


def test_demo_data_is_loaded(http: httpx.Client) -> None:
    demo_patients = [r for r in demo_resources() if r["resourceType"] == "Patient"]
    r = http.get("/Patient", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] > 0
    assert bundle["total"] == len(demo_patients) + DEMO_PATIENTS
    first = demo_patients[0]
    got = http.get(f"/Patient/{first['id']}")
    assert got.status_code == 200 and got.json()["id"] == first["id"]


def test_observation_crud_and_search_roundtrip(http: httpx.Client) -> None:
    patient_id = next(r["id"] for r in demo_resources() if r["resourceType"] == "Patient")
    code = uuid.uuid4().hex
    obs = {"resourceType": "Observation", "status": "preliminary",
           "code": {"coding": [{"system": "urn:test:live", "code": code}]},
           "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": "2025-03-01",
           "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                             "code": "mm[Hg]"}}

    created = http.post("/Observation", json=obs, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    base = str(http.base_url).rstrip("/")
    assert created.headers["location"] == f"{base}/Observation/{oid}/_history/1"
    assert created.headers["etag"] == 'W/"1"'

    read = http.get(f"/Observation/{oid}")
    assert read.status_code == 200
    body = read.json()
    assert body["status"] == "preliminary" and body["meta"]["versionId"] == "1"
    assert body["subject"]["reference"] == f"Patient/{patient_id}"

    body["status"] = "final"
    updated = http.put(f"/Observation/{oid}", json=body, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == 'W/"2"'
    assert http.get(f"/Observation/{oid}").json()["status"] == "final"

    search = http.get("/Observation", params={"code": f"urn:test:live|{code}", "subject": f"Patient/{patient_id}"})
    assert search.status_code == 200, search.text
    found = search.json()
    assert found["total"] == 1
    assert [e["resource"]["id"] for e in found["entry"]] == [oid]
    assert found["entry"][0]["resource"]["status"] == "final"
    assert http.get("/Observation", params={"code": f"urn:test:live|{code}", "status": "preliminary"}
                    ).json()["total"] == 0

    deleted = http.delete(f"/Observation/{oid}")
    assert deleted.status_code in (200, 204), deleted.text
    assert http.get(f"/Observation/{oid}").status_code == 410
    assert http.get("/Observation", params={"code": f"urn:test:live|{code}"}).json()["total"] == 0


def test_transaction_bundle(http: httpx.Client) -> None:
    pat_url, obs_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    ident = uuid.uuid4().hex
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": obs_url, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                                          "subject": {"reference": pat_url}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": pat_url, "resource": {"resourceType": "Patient",
                                          "identifier": [{"system": "urn:test:live", "value": ident}]},
         "request": {"method": "POST", "url": "Patient"}},
    ]}
    r = http.post("", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["resourceType"] == "Bundle" and resp["type"] == "transaction-response"
    assert [e["response"]["status"].split()[0] for e in resp["entry"]] == ["201", "201"]
    obs_loc, pat_loc = (e["response"]["location"] for e in resp["entry"])
    obs_ref, pat_ref = (loc.split("/_history")[0].split("/fhir/")[-1] for loc in (obs_loc, pat_loc))
    assert pat_ref.startswith("Patient/") and obs_ref.startswith("Observation/")
    obs = http.get(f"/{obs_ref}").json()
    assert obs["subject"]["reference"] == pat_ref
    search = http.get("/Patient", params={"identifier": f"urn:test:live|{ident}"}).json()
    assert search["total"] == 1 and search["entry"][0]["resource"]["id"] == pat_ref.split("/")[1]


def _log_records(live: LiveServer) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in live.stdout_lines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"stdout line is not JSON: {line!r}") from None
        assert isinstance(rec, dict), line
        records.append(rec)
    return records


def _wait_for_log(live: LiveServer, request_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in _log_records(live) if r.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_structured_logs_carry_the_request_id(live: LiveServer, http: httpx.Client) -> None:
    r = http.get("/Patient", params={"_count": "1"})
    assert r.status_code == 200
    rid = r.headers.get("x-request-id")
    assert rid, "no X-Request-ID response header"
    lines = _wait_for_log(live, rid)
    assert lines, f"no log line with request_id {rid}\n{live.output()}"
    assert any(rec.get("path") == "/fhir/Patient" for rec in lines), lines
    for rec in lines:
        assert {"ts", "level", "msg"} <= set(rec), rec

    mine = f"live-{uuid.uuid4().hex[:16]}"
    r2 = http.get("/metadata", headers={"X-Request-ID": mine})
    assert r2.headers.get("x-request-id") == mine
    assert _wait_for_log(live, mine), f"no log line with request_id {mine}\n{live.output()}"

    records = _log_records(live)  # every stdout line is one JSON object
    assert records and all({"ts", "level", "msg", "request_id"} <= set(rec) for rec in records)


def test_auth_off_on_all_interfaces_is_refused(tmp_path: Path) -> None:
    cmd = [gateway_exe(), "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--auth", "off",
           "--database", f"sqlite:///{tmp_path / 'refused.sqlite3'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    message = proc.stderr + proc.stdout
    assert "0.0.0.0" in message and "auth" in message.lower(), message


# -- PostgreSQL server -------------------------------------------------------------------------------------


@pytest.fixture()
def pg_live(pg_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    with serving(pg_url, tmp_path, demo=True) as server:
        yield server


@pytest.mark.postgres
def test_postgres_read_create_search(pg_live: LiveServer) -> None:
    demo = demo_resources()
    patient = next(r for r in demo if r["resourceType"] == "Patient")
    with httpx.Client(base_url=pg_live.base, timeout=30.0) as http:
        read = http.get(f"/Patient/{patient['id']}")
        assert read.status_code == 200, read.text
        assert read.json()["id"] == patient["id"]
        assert read.json().get("name") == patient.get("name")

        code = uuid.uuid4().hex
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "urn:test:live-pg", "code": code}]},
               "subject": {"reference": f"Patient/{patient['id']}"}, "valueString": "ok"}
        created = http.post("/Observation", json=obs, headers=FHIR_JSON)
        assert created.status_code == 201, created.text
        oid = created.json()["id"]
        assert http.get(f"/Observation/{oid}").json()["valueString"] == "ok"

        found = http.get("/Observation", params={"code": f"urn:test:live-pg|{code}"}).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == oid
        by_patient = http.get("/Observation", params={"patient": patient["id"], "code": f"urn:test:live-pg|{code}"})
        assert by_patient.json()["total"] == 1
        all_patients = http.get("/Patient", params={"_summary": "count"}).json()
        assert all_patients["total"] == sum(1 for r in demo if r["resourceType"] == "Patient") + DEMO_PATIENTS

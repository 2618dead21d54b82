"""Several ``fhir-gateway serve`` processes on one database, for the job-core tests: start, freeze, kill,
read each instance's job log lines, and read job rows straight from the database."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.gated import GatedStore
from gateway.ingest.loader import load_demo
from gateway.resources.rest import RestService
from gateway.store.sql.jobs import Job, JobStore
from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import RESOURCE
from tests.conftest import clean_env, gateway_exe
from tests.test_live_server import free_port, stop_process, wait_until_up

# a demo measure over every demo patient: a second or more of evaluation, long enough to kill mid-run; all
# three of them for a request that outlasts a shutdown bound of a few seconds
DEMO_MEASURES = ("demo-diabetes-a1c-poor-control", "demo-controlling-blood-pressure", "demo-breast-cancer-screening")
CARE_GAPS = [("periodStart", "2025-01-01"), ("periodEnd", "2025-12-31"), ("subject", "Group/all"),
             ("status", "open-gap"), ("status", "closed-gap"), ("measureId", DEMO_MEASURES[0])]
# DEQM Measure/$evaluate of all three for every patient, one report each: a long measure evaluation (13 s on
# SQLite on a loaded 2-core machine), which a shutdown bound of a few seconds must cut short
EVALUATE_LONG = [("periodStart", "2025-01-01"), ("periodEnd", "2025-12-31"), ("subject", "Group/all"),
                 ("reportType", "subject"), *(("measureId", m) for m in DEMO_MEASURES)]
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@dataclass
class Instance:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def job_events(self, job_id: str) -> list[str]:
        """What this instance logged about a job: ``started``, then its end status."""
        out = []
        for line in self.lines():
            msg = str(line.get("msg", ""))
            if msg.startswith(f"job {job_id} "):
                out.append("started" if " started" in msg else msg.rsplit(" ", 1)[1])
        return out


def start(db: str, workdir: Path, name: str, env: dict[str, str] | None = None,
          args: tuple[str, ...] = ()) -> Instance:
    """A ``serve`` process on ``db`` (auth off), answering on a free port."""
    port = free_port()
    log = workdir / f"{name}.log"
    cmd = [gateway_exe(), "serve", "--host", "127.0.0.1", "--port", str(port), "--auth", "off", "--database", db,
           *args]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**clean_env(), **(env or {})},
                                cwd=workdir)
    inst = Instance(name, proc, port, log)
    wait_until_up(proc, f"http://127.0.0.1:{port}/healthz", 60, lambda: log.read_text(errors="replace")[-4000:])
    return inst


@contextmanager
def instances(db: str, workdir: Path, names: tuple[str, ...], env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> Iterator[list[Instance]]:
    """Start one instance per name; stop whatever is left at the end."""
    started: list[Instance] = []
    try:
        for name in names:
            started.append(start(db, workdir, name, env, args))
        yield started
    finally:
        for inst in started:
            if inst.proc.poll() is None:
                inst.proc.send_signal(18)  # SIGCONT, should a test have frozen it
            stop_process(inst.proc)


def load_world(db: str) -> None:
    """The demo data (patients, claims, the three demo measures) and Group/all listing every patient."""
    store = SqlStore(db)
    try:
        rest = RestService(GatedStore(store, "http://localhost/fhir", opt_out=""), "http://localhost/fhir")
        with acting_as(SYSTEM):
            load_demo(rest, claims=False)  # the claims feed no test here
            with store.engine.connect() as conn:
                ids = [r[0] for r in conn.execute(select(RESOURCE.c.res_id).where(
                    RESOURCE.c.res_type == "Patient", RESOURCE.c.deleted.is_(False)))]
            rest.update("Group", "all", {"resourceType": "Group", "id": "all", "type": "person", "actual": True,
                                         "member": [{"entity": {"reference": f"Patient/{i}"}} for i in sorted(ids)]})
    finally:
        store.close()


def job_row(db: str, job_id: str) -> Job:
    """The job's row as the database holds it now."""
    store = SqlStore(db, migrate=False)
    try:
        job = JobStore(store).get(job_id)
    finally:
        store.close()
    assert job is not None, f"no job {job_id}"
    return job


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def poll_done(url: str, timeout: float = 120) -> httpx.Response:
    """Poll a job status URL until it stops answering 202."""
    def done() -> httpx.Response | None:
        r = httpx.get(url, timeout=30)
        return None if r.status_code == 202 else r

    result: httpx.Response = wait_for(done, timeout, f"{url} to finish", 0.2)
    return result


class FileServer:
    """A Data Provider's file host on 127.0.0.1 (``http.server`` in a thread): ``routes`` maps a path to
    (status, headers, body); anything else is 404. ``url(path)`` is the address of a path."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        import http.server

        self.routes = routes
        self.hits: list[str] = []
        self.authorization: dict[str, str | None] = {}  # path -> the Authorization header it was asked with
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                outer.hits.append(self.path)
                outer.authorization[self.path] = self.headers.get("Authorization")
                status, headers, body = outer.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name (a stub token endpoint)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        import threading

        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    """Resources as NDJSON bytes."""
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


def submit_params(submitter: str, submission_id: str, manifest_url: str | None = None,
                  status: str | None = None, replaces: str | None = None) -> dict[str, Any]:
    """A ``$bulk-submit`` Parameters body."""
    params: list[dict[str, Any]] = [
        {"name": "submitter", "valueIdentifier": {"system": "http://example.org/submitters", "value": submitter}},
        {"name": "submissionId", "valueString": submission_id}]
    if manifest_url:
        params.append({"name": "manifestUrl", "valueUrl": manifest_url})
    if replaces:
        params.append({"name": "replacesManifestUrl", "valueUrl": replaces})
    if status:
        params.append({"name": "submissionStatus",
                       "valueCoding": {"system": "http://hl7.org/fhir/event-status", "code": status}})
    return {"resourceType": "Parameters", "parameter": params}


def manifest(base: str, files: list[tuple[str, str]]) -> bytes:
    """A Bulk Data manifest listing (type, url) files."""
    return json.dumps({"transactionTime": "2026-01-01T00:00:00Z", "request": f"{base}/$export",
                       "requiresAccessToken": False,
                       "output": [{"type": t, "url": u} for t, u in files], "error": []}).encode()


@dataclass
class Provider:
    """A second live gateway acting as the Data Provider (``serve --auth smart``, demo data) with a Backend
    Services client registered for the consuming gateway's key; ``credentials`` is the consuming gateway's
    GATEWAY_BULK_SUBMIT_CREDENTIALS file naming that client and the private key."""
    server: Any
    client_id: str
    jwk: dict[str, Any]
    credentials: Path

    @property
    def base(self) -> str:
        return str(self.server.base)

    @property
    def root(self) -> str:
        return str(self.server.root)

    def token(self, scope: str) -> dict[str, str]:
        """An Authorization header of the consumer's own client at the provider (for comparing exports)."""
        from gateway.auth.assertion_client import fetch_token

        with httpx.Client(timeout=30) as h:
            return {"Authorization": f"Bearer {fetch_token(self.base, self.client_id, self.jwk, scope, h)['access_token']}"}


@contextmanager
def provider(workdir: Path, extra: list[dict[str, Any]] | None = None) -> Iterator[Provider]:
    """Start the Data Provider gateway on its own SQLite database with the demo data, register the consumer's
    Backend Services client there (its public key as the registration's JWKS) and write the consumer's
    credentials file (``extra``: more entries for it, their ``keyFile`` the same key)."""
    from gateway.auth.assertion_client import generate_client_key
    from gateway.auth.clients import ClientStore
    from tests.test_live_server import start_server

    folder = workdir / "provider"
    folder.mkdir()
    db = f"sqlite:///{folder / 'provider.sqlite3'}"
    load_world(db)
    key = generate_client_key("ES384")
    store = SqlStore(db, migrate=False)
    try:
        client, _ = ClientStore(store.engine).register("consumer gateway", "system/*.rs",
                                                      jwks={"keys": [key.as_dict(private=False)]})
    finally:
        store.close()
    jwk = key.as_dict(private=True)
    (workdir / "consumer.jwk").write_text(json.dumps(jwk))
    server = start_server(db, folder, demo=False, auth="smart")
    try:
        creds = workdir / "bulk-submit-credentials.json"
        creds.write_text(json.dumps([{"source": server.base, "clientId": client.client_id,
                                      "keyFile": "consumer.jwk"}, *(extra or [])]))
        yield Provider(server, client.client_id, jwk, creds)
    finally:
        stop_process(server.proc)


def finished_export(provider: Provider, types: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Run a Bulk Data export of ``types`` at the provider as the consumer's client until it is done: (status
    URL, manifest, the headers that read it)."""
    headers = {**provider.token(" ".join(f"system/{t}.rs" for t in types.split(","))),
               "Accept": "application/fhir+json", "Prefer": "respond-async"}
    r = httpx.get(f"{provider.base}/$export", params={"_type": types}, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]

    def done() -> httpx.Response | None:
        s = httpx.get(status_url, headers=headers, timeout=30)
        return None if s.status_code == 202 else s

    final: httpx.Response = wait_for(done, 120, "the provider's export", 0.3)
    assert final.status_code == 200, final.text
    return status_url, final.json(), headers


def export_at(provider: Provider, types: str) -> dict[str, list[dict[str, Any]]]:
    """Run a Bulk Data export of ``types`` at the provider as the consumer's client; resources by type."""
    _, manifest, headers = finished_export(provider, types)
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        body = httpx.get(item["url"], headers=headers, timeout=30)
        assert body.status_code == 200, body.text
        out.setdefault(item["type"], []).extend(json.loads(line) for line in body.text.splitlines() if line)
    return out

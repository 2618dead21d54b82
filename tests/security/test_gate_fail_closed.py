"""The store gate fails closed: stored data reached with no grant set is refused, while the CLI, ``--auth off``
and asynchronous jobs act under an explicit grant (SYSTEM, or the grant of the caller that started a job)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from gateway.auth.context import SYSTEM, NoGrant, acting_as, current
from gateway.auth.gated import GatedStore
from gateway.resources.rest import RestService
from gateway.search.query import QueryParser
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe, make_client
from tests.smart.conftest import issue, make_auth_client

BASE = "http://localhost/fhir"


def test_no_grant_means_no_access(store: SqlStore) -> None:
    RestService(store, BASE).update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    gated = GatedStore(store, BASE, opt_out="")
    assert current.get() is None
    q = QueryParser(BASE).parse("Patient", [])
    refused = [lambda: gated.read("Patient", "p1"), lambda: gated.vread("Patient", "p1", 1),
               lambda: gated.search(q), lambda: gated.history(None, None, None, 10, 0),
               lambda: list(gated.iter_current("Patient")), lambda: gated.read_many("Patient", ["p1"]),
               lambda: gated.count("Patient"), lambda: gated.session().__enter__()]
    for call in refused:
        with pytest.raises(NoGrant):
            call()
    rest = RestService(gated, BASE)
    with pytest.raises(NoGrant):
        rest.create("Patient", {"resourceType": "Patient"})
    with pytest.raises(NoGrant):
        rest.delete("Patient", "p1")
    assert store.read("Patient", "p1").version == 1  # nothing changed
    with acting_as(SYSTEM):
        assert gated.read("Patient", "p1") is not None
        assert rest.create("Patient", {"resourceType": "Patient"}).status == 201
    assert current.get() is None  # the grant is gone with the block


def test_a_session_refuses_a_write_once_the_grant_is_gone(store: SqlStore) -> None:
    gated = GatedStore(store, BASE, opt_out="")
    with acting_as(SYSTEM), gated.session() as s:
        token = current.set(None)
        try:
            with pytest.raises(NoGrant):
                s.write({"resourceType": "Patient", "id": "x"}, "PUT")
        finally:
            current.reset(token)
    assert store.read("Patient", "x") is None


def test_services_in_the_app_have_no_grant_outside_a_request(store: SqlStore) -> None:
    with make_client(store) as c:  # --auth off
        r = c.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Off"}]},
                   headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        assert c.get(f"/fhir/Patient/{pid}").status_code == 200
        assert c.get("/fhir/Patient?family=Off").json()["total"] == 1
        assert c.get("/fhir/_history").json()["total"] == 1
        with pytest.raises(NoGrant):  # the app's services are gated: no request, no grant, no data
            c.app.state.rest.read("Patient", pid)


def test_cli_load_acts_under_the_system_grant(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite3"
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "c1"}},
        {"resource": {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": "Patient/c1"}}]}}]}))
    run = subprocess.run([gateway_exe(), "load", str(data), "--database", f"sqlite:///{db}", "--quiet"],
                         capture_output=True, text=True, env=clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    store = SqlStore(f"sqlite:///{db}")
    try:
        assert store.read("Patient", "c1") is not None and store.read("Group", "g") is not None
    finally:
        store.close()


def test_async_job_runs_under_the_grant_that_started_it(store: SqlStore) -> None:
    """A patient token's asynchronous job sees that patient's data only, though a job worker runs it after
    the request has ended (the job row records the grant; before: the thread had no grant, which meant
    everything)."""
    with make_auth_client(store) as c:
        rest = RestService(store, BASE)
        for pid in ("a1", "a2"):
            rest.update("Patient", pid, {"resourceType": "Patient", "id": pid})
        jobs = c.app.state.async_jobs
        grant = c.app.state.authority.tokens.validate(issue(c, "patient/*.rs", "a1"))

        def work(_: dict[str, object]) -> list[dict[str, object]]:
            _, found = c.app.state.rest.search("Patient", [])
            return [{"resourceType": "Basic", "id": m.id} for m in found.matches]

        jobs.register("grant-probe", work)
        with acting_as(grant):
            job = jobs.start("grant-probe", "test", {}, grant.client_id, grant.subject)
        status = "queued"
        for _ in range(200):
            status = jobs.jobs.get(job).status
            if status not in ("queued", "in-progress", "running"):
                break
            time.sleep(0.05)
        assert status == "complete", status
        out = jobs.output("grant-probe", job, grant.client_id, grant.subject)
        assert out.count(b"\n") == 1 and b'"a1"' in out

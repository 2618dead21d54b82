"""The Data feeds operations over HTTP with authorization on, on SQLite and PostgreSQL: every ingest run (HTTP
and command line) is recorded and read back through $ingest-runs with its rejects and data-quality report as
the run itself answered them; $jobs lists a user's own jobs (from any app it signed in to), everyone's only
with gateway.jobs.read-all; Subscription/[id]/$notification-status tells the last notification the notifier
sent and its outcome. The subscriber's endpoint is outside the gateway: respx stands in, as in
tests/test_subscriptions.py."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from gateway.fhir.subscription_topic import FILTER, TOPIC
from gateway.ingest.report import REPORT_EXTENSION
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe
from tests.feeds.helpers import bad_remittance, parts, report, runs, top
from tests.smart.conftest import make_auth_client, wipe_auth

H = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
HOOK = "https://subscriber.example/hooks/feeds"
FEEDS = "gateway.feeds.read"
ALL_JOBS = "gateway.jobs.read-all"


@pytest.fixture()
def api(store: SqlStore) -> Iterator[TestClient]:
    wipe_auth(store)
    with make_auth_client(store) as c:
        c.app.state.notifier.prime()
        yield c


def token(client: TestClient, client_id: str, scope: str, user: str | None = None,
          context: dict[str, Any] | None = None) -> dict[str, str]:
    """A bearer header for a token the gateway signed (as its token endpoint would issue it)."""
    issued = client.app.state.authority.tokens.issue_access(client_id, scope, 300, f"family-{client_id}-{user}", user,
                                                            context or {})
    return {**H, "Authorization": f"Bearer {issued.token}"}


def test_an_http_ingest_run_is_recorded_with_its_rejects_and_report(api: TestClient, tmp_path: Path) -> None:
    feeder = token(api, "claims-feed", "system/*.cruds")
    staff = token(api, "console", f"openid user/*.rs {FEEDS}", "staff")
    assert top(api.get("/fhir/$ingest-runs", headers=staff).json(), "total")[0]["valueInteger"] == 0
    body = bad_remittance(tmp_path).read_bytes()
    r = api.post("/fhir/$ingest/x12-835?filename=remit-bad.835", content=body,
                 headers={"Authorization": feeder["Authorization"]})
    assert r.status_code == 200, r.text
    outcome = r.json()
    answered = json.loads(base64.b64decode(next(x for x in outcome["extension"] if x["url"] == REPORT_EXTENSION)
                                           ["valueAttachment"]["data"]))
    errors = [i["diagnostics"] for i in outcome["issue"] if i["severity"] == "error"]
    assert len(errors) == 1
    where, _, reason = errors[0].partition(": ")
    file, line = where.split(":")[:2]

    listed = api.get("/fhir/$ingest-runs", headers=staff)
    assert listed.status_code == 200, listed.text
    assert top(listed.json(), "total")[0]["valueInteger"] == 1
    (run,) = runs(listed.json())
    assert run["format"] == ["x12-835"] and run["via"] == ["http"] and run["file"] == ["remit-bad.835"]
    assert run["client"] == ["claims-feed"] and run["user"] == ["claims-feed"]
    assert run["records"] == [answered["recordsRead"]] and run["rejected"] == [answered["rejected"]] == [1]
    assert run["loadedWithWarnings"] == [answered["loadedWithWarnings"]]
    assert run["started"][0] <= run["ended"][0]
    assert "reject" not in run and "report" not in run  # the listing is the summary only

    one = api.get(f"/fhir/$ingest-runs/{run['id'][0]}", headers=staff)
    assert one.status_code == 200, one.text
    (full,) = runs(one.json())
    (reject,) = [parts(p) for p in full["reject"]]
    assert reject["file"] == [file] and reject["line"] == [int(line)] and reject["reason"] == [reason]
    assert report(full) == answered  # the stored report is the one the run answered with
    assert answered["warnings"] and sum(g["count"] for g in answered["warnings"]) >= 2

    # bad input: a clear OperationOutcome
    for bad in ("0", "101", "x"):
        r = api.get("/fhir/$ingest-runs", params={"_count": bad}, headers=staff)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", bad
    assert api.get("/fhir/$ingest-runs/" + "0" * 32, headers=staff).status_code == 404
    assert api.get("/fhir/$ingest-runs/not-a-run", headers=staff).status_code == 404
    # a body that is no interchange at all is a run with one reject, recorded too
    r = api.post("/fhir/$ingest/x12-835?filename=junk.835", content=b"nothing here",
                 headers={"Authorization": feeder["Authorization"]})
    assert r.status_code == 200, r.text
    newest = runs(api.get("/fhir/$ingest-runs", headers=staff).json())
    assert [x["file"] for x in newest] == [["junk.835"], ["remit-bad.835"]]  # newest first
    assert newest[0]["rejected"] == [1] and newest[0]["records"] == [0]
    # format narrows the listing
    assert runs(api.get("/fhir/$ingest-runs", params={"format": "hl7v2"}, headers=staff).json()) == []


@pytest.mark.live
def test_a_command_line_run_is_recorded_as_the_local_operator(fresh_db_url: str, tmp_path: Path) -> None:
    bad = bad_remittance(tmp_path)
    quality = tmp_path / "quality.json"
    done = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", fresh_db_url, "--format", "x12-835",
                           "--report", str(quality), str(bad)], capture_output=True, text=True, env=clean_env(),
                          timeout=300)
    assert done.returncode == 3, done.stderr  # some records rejected
    store = SqlStore(fresh_db_url)
    try:
        wipe_auth(store)
        with make_auth_client(store) as api:
            staff = token(api, "console", f"user/*.rs {FEEDS}", "staff")
            (run,) = runs(api.get("/fhir/$ingest-runs", headers=staff).json())
            assert run["via"] == ["cli"] and run["user"] == ["local-operator"] and "client" not in run
            assert run["file"] == [bad.name]
            (full,) = runs(api.get(f"/fhir/$ingest-runs/{run['id'][0]}", headers=staff).json())
            assert report(full) == json.loads(quality.read_text())
            (reject,) = [parts(p) for p in full["reject"]]
            assert reject["file"] == [bad.name] and "CLP03 'ABC' is not an amount" in reject["reason"][0]
    finally:
        store.close()


def _export(api: TestClient, headers: dict[str, str]) -> str:
    r = api.get("/fhir/$export", params={"_type": "Patient"}, headers={**headers, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    return r.headers["Content-Location"].rsplit("/", 1)[1]


def _jobs(api: TestClient, headers: dict[str, str]) -> dict[str, dict[str, list[Any]]]:
    r = api.get("/fhir/$jobs", headers=headers)
    assert r.status_code == 200, r.text
    return {j["id"][0]: j for j in (parts(p) for p in top(r.json(), "job"))}


def test_jobs_lists_ones_own_jobs_and_everyones_with_the_operator_scope(api: TestClient) -> None:
    alice = token(api, "console", "user/*.rs", "alice")
    job = _export(api, alice)
    mine = _jobs(api, alice)
    assert set(mine) == {job}
    assert mine[job]["kind"] == ["export"] and mine[job]["user"] == ["alice"] and mine[job]["client"] == ["console"]
    status = api.get(f"/fhir/$export-status/{job}", headers=alice)
    assert mine[job]["status"][0] in ("queued", "running", "complete")
    assert mine[job]["statusUrl"][0].endswith(f"/$export-status/{job}") and status.status_code in (200, 202)
    # the same user through another app sees it; another user, and a backend client named like her, do not
    assert set(_jobs(api, token(api, "chart-app", "user/*.rs", "alice"))) == {job}
    bob = token(api, "console", "user/*.rs", "bob")
    assert _jobs(api, bob) == {}
    assert _jobs(api, token(api, "alice", "system/*.rs")) == {}
    bobs = _export(api, bob)
    assert set(_jobs(api, alice)) == {job} and set(_jobs(api, bob)) == {bobs}
    # the operator scope shows every job
    assert set(_jobs(api, token(api, "console", f"user/*.rs {ALL_JOBS}", "carol"))) == {job, bobs}
    assert api.get("/fhir/$jobs", params={"_count": "0"}, headers=alice).status_code == 400


def _subscription(sid: str, gid: str) -> dict[str, Any]:
    return {"resourceType": "Subscription", "id": sid, "status": "requested", "reason": "feeds test",
            "criteria": TOPIC, "_criteria": {"extension": [{"url": FILTER, "valueString": f"Group/{gid}"}]},
            "channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+json"}}


def _status(api: TestClient, sid: str, headers: dict[str, str]) -> dict[str, Any]:
    r = api.get(f"/fhir/Subscription/{sid}/$notification-status", headers=headers)
    assert r.status_code == 200, r.text
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in r.json()["parameter"]}


def test_notification_status_tells_the_last_notification_and_its_outcome(api: TestClient) -> None:
    system = token(api, "subscriber-admin", "system/*.cruds")
    staff = token(api, "console", "user/*.rs", "staff")
    notifier = api.app.state.notifier
    api.put("/fhir/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
            headers=system)
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        assert api.put("/fhir/Subscription/s1", json=_subscription("s1", "g1"), headers=system).status_code == 201
        before = _status(api, "s1", staff)
        assert before["status"] == "requested" and before["notificationsSent"] == 0
        assert "lastNotification" not in before
        assert notifier.tick() == 1
        after = _status(api, "s1", staff)
        assert after["status"] == "active" and after["lastKind"] == "handshake"
        assert after["lastOutcome"] == "delivered" and after["notificationsSent"] == 1 and "lastError" not in after
        assert len(hook.calls) == 1
        hook.mock(return_value=httpx.Response(503))
        api.put("/fhir/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person", "actual": False},
                headers=system)
        assert notifier.tick() == 1
        failed = _status(api, "s1", staff)
        assert failed["lastKind"] == "event-notification" and failed["lastOutcome"] == "failed"
        assert failed["lastError"] == "the endpoint answered HTTP 503" and failed["status"] == "error"
        assert failed["notificationsSent"] == 2 and failed["lastNotification"] >= after["lastNotification"]
    assert api.get("/fhir/Subscription/none/$notification-status", headers=staff).status_code == 404

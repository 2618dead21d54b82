"""Attacks on the Data feeds paths ($ingest-runs, $jobs, Subscription/[id]/$notification-status) with
authorization on, on SQLite and PostgreSQL: no token is 401; a patient/ token is refused every one of them
even holding the feeds scope; without gateway.feeds.read no run is listed or read, and a known run id is
refused exactly like an unknown one; another user's jobs stay out of a listing; a Subscription the grant may
not read has no status to tell; hostile ids find nothing and get an OperationOutcome."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.fhir.subscription_topic import FILTER, TOPIC
from gateway.ingest.runs import record
from gateway.ingest.service import IngestSummary
from gateway.mapping.records import Reject
from gateway.store.sql.store import SqlStore
from tests.feeds.helpers import parts, top
from tests.smart.conftest import make_auth_client, wipe_auth

FEEDS = "gateway.feeds.read"
ALL_JOBS = "gateway.jobs.read-all"
H = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture()
def api(store: SqlStore) -> Iterator[TestClient]:
    wipe_auth(store)
    with make_auth_client(store) as c:
        yield c


def bearer(client: TestClient, client_id: str, scope: str, user: str | None = None,
           patient: str | None = None) -> dict[str, str]:
    ctx = {"patient": patient} if patient else {}
    issued = client.app.state.authority.tokens.issue_access(client_id, scope, 300, f"f-{client_id}-{user}", user, ctx)
    return {**H, "Authorization": f"Bearer {issued.token}"}


def a_run(api: TestClient) -> str:
    """A recorded run with a reject naming a patient's claim (what must not leak)."""
    summary = IngestSummary("claims-csv", "1.0.0", files=1, records=3, created=2,
                            rejects=[Reject("claims.csv:3", "member MBR-SECRET-1 has no coverage")])
    return record(api.app.state.store, summary, ["claims.csv"], "http", "2026-01-01T00:00:00.000Z",
                  "claims-feed", "claims-feed").id


def test_no_token_is_unauthorized(api: TestClient) -> None:
    run = a_run(api)
    for path in ("/fhir/$ingest-runs", f"/fhir/$ingest-runs/{run}", "/fhir/$jobs",
                 "/fhir/Subscription/s1/$notification-status"):
        r = api.get(path)
        assert r.status_code == 401, (path, r.text)
        assert "MBR-SECRET" not in r.text


def test_a_patient_token_is_refused_everything_even_with_the_feeds_scope(api: TestClient) -> None:
    run = a_run(api)
    patient = bearer(api, "chart-app", f"patient/*.rs launch/patient {FEEDS} {ALL_JOBS}", "pat", patient="p1")
    for path in ("/fhir/$ingest-runs", f"/fhir/$ingest-runs/{run}", "/fhir/$jobs",
                 "/fhir/Subscription/s1/$notification-status"):
        r = api.get(path, headers=patient)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and "MBR-SECRET" not in r.text


def test_without_the_feeds_scope_no_run_is_seen_and_a_known_id_looks_like_an_unknown_one(api: TestClient) -> None:
    run = a_run(api)
    for scope in ("user/*.rs", "system/*.cruds", f"user/*.rs {ALL_JOBS}", "user/*.rs gateway.feeds",
                  "user/*.rs gateway.feeds.read.extra"):
        h = bearer(api, "console", scope, "staff")
        listing = api.get("/fhir/$ingest-runs", headers=h)
        assert listing.status_code == 403 and FEEDS in listing.text and "MBR-SECRET" not in listing.text, scope
        known = api.get(f"/fhir/$ingest-runs/{run}", headers=h)
        unknown = api.get(f"/fhir/$ingest-runs/{'f' * 32}", headers=h)
        assert known.status_code == unknown.status_code == 403
        assert known.json()["issue"] == unknown.json()["issue"]
    # with the scope, the same run is there (so the refusals above were about the scope)
    ok = api.get(f"/fhir/$ingest-runs/{run}", headers=bearer(api, "console", f"user/*.rs {FEEDS}", "staff"))
    assert ok.status_code == 200 and "MBR-SECRET-1" in ok.text


def test_hostile_run_ids_find_nothing(api: TestClient) -> None:
    a_run(api)
    h = bearer(api, "console", f"user/*.rs {FEEDS}", "staff")
    for rid in ("' OR '1'='1", "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 300, "*", "%25"):
        r = api.get(f"/fhir/$ingest-runs/{rid}", headers=h)
        assert r.status_code in (400, 404), (rid, r.status_code)
        assert r.json()["resourceType"] == "OperationOutcome" and "MBR-SECRET" not in r.text
    r = api.get("/fhir/$ingest-runs", params={"format": "' OR 1=1 --"}, headers=h)
    assert r.status_code == 200 and top(r.json(), "run") == []


def _job_ids(api: TestClient, h: dict[str, str]) -> set[str]:
    r = api.get("/fhir/$jobs", headers=h)
    assert r.status_code == 200, r.text
    return {parts(p)["id"][0] for p in top(r.json(), "job")}


def test_another_users_jobs_are_not_listed_nor_readable(api: TestClient) -> None:
    alice = bearer(api, "console", "user/*.rs", "alice")
    r = api.get("/fhir/$export", params={"_type": "Patient"}, headers={**alice, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    job = r.headers["Content-Location"].rsplit("/", 1)[1]
    mallory = bearer(api, "console", "user/*.rs", "mallory")
    assert job not in _job_ids(api, mallory)
    assert api.get(f"/fhir/$export-status/{job}", headers=mallory).status_code in (403, 404)
    # a scope that only looks like the operator's, or the operator's scope on a patient token, shows nothing more
    for scope in ("user/*.rs gateway.jobs", "user/*.rs gateway.jobs.read-all.x", "user/*.rs GATEWAY.JOBS.READ-ALL"):
        assert job not in _job_ids(api, bearer(api, "console", scope, "mallory")), scope
    assert job in _job_ids(api, bearer(api, "console", f"user/*.rs {ALL_JOBS}", "operator"))


def test_a_subscription_the_grant_may_not_read_has_no_status(api: TestClient) -> None:
    system = bearer(api, "admin", "system/*.cruds")
    api.put("/fhir/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
            headers=system)
    sub: dict[str, Any] = {
        "resourceType": "Subscription", "id": "s1", "status": "requested", "reason": "x", "criteria": TOPIC,
        "_criteria": {"extension": [{"url": FILTER, "valueString": "Group/g1"}]},
        "channel": {"type": "rest-hook", "endpoint": "https://subscriber.example/hook"}}
    r = api.put("/fhir/Subscription/s1", json=sub, headers=system)
    assert r.status_code == 201, r.text
    # a grant without Subscription read is refused; one whose scope filter excludes it finds nothing, exactly
    # as for a Subscription that does not exist
    assert api.get("/fhir/Subscription/s1/$notification-status",
                   headers=bearer(api, "console", "user/Group.rs", "staff")).status_code == 403
    filtered = bearer(api, "console", "user/Subscription.rs?status=off", "staff")
    hidden = api.get("/fhir/Subscription/s1/$notification-status", headers=filtered)
    missing = api.get("/fhir/Subscription/nope/$notification-status", headers=filtered)
    assert hidden.status_code == missing.status_code == 404
    assert "requested" not in hidden.text
    # the filter was what hid it: a filter it matches shows the status
    shown = api.get("/fhir/Subscription/s1/$notification-status",
                    headers=bearer(api, "console", "user/Subscription.rs?status=requested", "staff"))
    assert shown.status_code == 200 and '"requested"' in shown.text


def test_the_runs_table_is_never_written_by_a_read(api: TestClient) -> None:
    """Reading runs is a GET only: other methods on the operation are not routes."""
    run = a_run(api)
    h = bearer(api, "console", f"user/*.rs {FEEDS}", "staff")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = api.request(method, f"/fhir/$ingest-runs/{run}", headers=h)
        assert r.status_code in (403, 404, 405), (method, r.status_code)
    assert api.get(f"/fhir/$ingest-runs/{run}", headers=h).status_code == 200

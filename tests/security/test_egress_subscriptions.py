"""Subscriptions over HTTP with real tokens (issue 13, defects 9 and 19): subscribing to an attribution list
is reading it, so patient apps, clients without Group access, attribution-restricted clients naming another
organization's list and filtered scopes the Group does not match are refused with 403 before anything is
stored or sent; `channel.header` entries that would frame or route the gateway's POST are refused; and
`Subscription/$validate` runs every check a write runs. SQLite and PostgreSQL (the Group is read from the
store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.assertion_client import generate_client_key
from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import Backend, bearer, issue, make_auth_client
from tests.test_subscriptions import H, group, subscription

from .receiver import Receiver, receiver


@pytest.fixture()
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


@pytest.fixture()
def app(store: SqlStore, hook: Receiver) -> Iterator[TestClient]:
    """Authorization on; deliveries to the live receiver allowed (loopback, http, by explicit settings)."""
    with make_auth_client(store, egress_allow_networks="loopback", subscription_endpoints=hook.url("/")) as c:
        c.app.state.notifier.prime()
        rest = c.app.state.rest
        with acting_as(SYSTEM):  # test set-up, on behalf of the system
            rest.update("Organization", "o1", {"resourceType": "Organization", "id": "o1", "name": "Riverside"})
            rest.update("Organization", "o2", {"resourceType": "Organization", "id": "o2", "name": "Lakeside"})
            rest.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
            rest.update("Patient", "p2", {"resourceType": "Patient", "id": "p2"})
            for gid, org in (("g-mine", "o1"), ("g-other", "o2")):
                rest.update("Group", gid, {**group(gid), "managingEntity": {"reference": f"Organization/{org}"},
                                           "member": [{"entity": {"reference": "Patient/p1"}},
                                                      {"entity": {"reference": "Patient/p2"}}]})
        yield c


def _sub(hook: Receiver, sid: str, gid: str, **channel: Any) -> dict[str, Any]:
    return subscription(sid, gid, endpoint=hook.url("/atr"), **channel)


def _org_token(c: TestClient, org: str, scope: str = "system/Group.rs system/Subscription.cruds") -> dict[str, str]:
    """A Backend Services client acting for an organization (attribution-restricted), token from /auth/token."""
    key = generate_client_key("ES384")
    client, _ = c.app.state.authority.clients.register(f"{org} backend", scope, fhir_user=f"Organization/{org}",
                                                       jwks={"keys": [key.as_dict(private=False)]})
    return bearer(Backend(c, client.client_id, key).token(scope))


def _nothing_stored_or_sent(c: TestClient, hook: Receiver, sid: str) -> None:
    assert c.app.state.notifier.tick() == 0
    assert hook.requests == []
    assert c.app.state.store.read("Subscription", sid) is None


def _refused(r: Any, status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, r.text
    out = r.json()
    assert out["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text and "Error" not in out["issue"][0].get("diagnostics", "")
    return out


@pytest.mark.parametrize("scope", ["patient/*.cruds", "patient/Group.rs patient/Subscription.cruds",
                                   "patient/*.read patient/*.write"])
def test_patient_apps_cannot_subscribe_to_attribution_lists(app: TestClient, hook: Receiver, scope: str) -> None:
    token = bearer(issue(app, scope, patient="p1"))  # p1 is a member of both lists
    for gid in ("g-mine", "g-other"):
        _refused(app.put(f"/fhir/Subscription/s-{gid}", json=_sub(hook, f"s-{gid}", gid), headers={**H, **token}))
        _nothing_stored_or_sent(app, hook, f"s-{gid}")
    _refused(app.post("/fhir/Subscription", json=_sub(hook, "ignored", "g-mine"), headers={**H, **token}))
    assert app.app.state.notifier.tick() == 0 and hook.requests == []


def test_attribution_restricted_clients_subscribe_only_to_their_own_lists(app: TestClient, hook: Receiver) -> None:
    token = _org_token(app, "o1")
    other = _refused(app.put("/fhir/Subscription/s2", json=_sub(hook, "s2", "g-other"), headers={**H, **token}))
    _nothing_stored_or_sent(app, hook, "s2")
    missing = _refused(app.put("/fhir/Subscription/s3", json=_sub(hook, "s3", "g-none"), headers={**H, **token}))
    _nothing_stored_or_sent(app, hook, "s3")
    # a list that does not exist is refused in the same words: the refusal is no existence oracle
    assert other["issue"][0]["diagnostics"].replace("g-other", "X") == \
        missing["issue"][0]["diagnostics"].replace("g-none", "X")
    # a transaction entry is held to the same rule, and the whole transaction writes nothing
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "id": "o3", "name": "Written?"},
         "request": {"method": "PUT", "url": "Organization/o3"}},
        {"resource": _sub(hook, "s4", "g-other"), "request": {"method": "PUT", "url": "Subscription/s4"}}]}
    r = app.post("/fhir", json=bundle, headers={**H, **_org_token(app, "o1", "system/*.cruds")})
    assert r.status_code == 403, r.text
    _nothing_stored_or_sent(app, hook, "s4")
    assert app.app.state.store.read("Organization", "o3") is None
    # its own list: accepted, and the handshake goes out
    assert app.put("/fhir/Subscription/s1", json=_sub(hook, "s1", "g-mine"), headers={**H, **token}).status_code == 201
    assert app.app.state.notifier.tick() == 1
    assert len(hook.requests) == 1 and json.loads(hook.requests[0].body)["type"] == "history"


@pytest.mark.parametrize("scope, status", [
    ("user/Subscription.cruds user/Patient.rs", 403),  # no read access to Groups at all
    ("user/Subscription.cruds user/Group.rs?type=device", 403),  # a filtered scope g-other does not match
    ("user/Subscription.cruds user/Group.rs?type=person", 201),
    ("user/Subscription.cruds user/Group.rs", 201),
])
def test_subscribing_needs_read_access_to_the_group(app: TestClient, hook: Receiver, scope: str, status: int) -> None:
    r = app.put("/fhir/Subscription/s1", json=_sub(hook, "s1", "g-other"),
                headers={**H, **bearer(issue(app, scope))})
    assert r.status_code == status, r.text
    if status == 403:
        _refused(r)
        _nothing_stored_or_sent(app, hook, "s1")
    else:
        assert app.app.state.notifier.tick() == 1 and len(hook.requests) == 1


@pytest.mark.parametrize("header", [
    "Host: metadata.internal",
    "X-Tenant: a\r\nHost: metadata.internal",
    "X-Tenant: a\nX-Other: b",
    "X-Tenant: a\x00b",
    "X-Tenant: a\n",
    "X-Tenant: a\r",
    "Content-Length: 0",
    "content-length: 5",
    "Transfer-Encoding: chunked",
    "Connection: close",
    "Cookie: session=stolen",
    "Content-Type: text/plain",
    "Proxy-Authorization: Basic eDp5",
    "X-Forwarded-For: 127.0.0.1",
    "Bad Name: x",
    "NoColonHere",
    ": empty name",
    "X-Tenant: caf\u00e9",
])
def test_channel_headers_that_frame_or_route_the_request_are_refused(app: TestClient, hook: Receiver,
                                                                     header: str) -> None:
    token = bearer(issue(app, "user/*.cruds"))
    sub = _sub(hook, "s1", "g-mine", header=["Authorization: Bearer subscriber-secret", header])
    out = _refused(app.put("/fhir/Subscription/s1", json=sub, headers={**H, **token}), 400)
    _nothing_stored_or_sent(app, hook, "s1")
    if "\x00" in header:  # refused already when the body is parsed: FHIR strings never hold a NUL
        assert "NUL" in json.dumps(out)
        return
    assert "channel.header" in json.dumps(out)
    # Subscription/$validate reports the same header as an error
    v = app.post("/fhir/Subscription/$validate", json=sub, headers={**H, **token})
    assert v.status_code == 200 and any(i["severity"] == "error" and "channel.header" in i["diagnostics"]
                                        for i in v.json()["issue"]), v.text


def test_authorization_and_custom_headers_are_sent(app: TestClient, hook: Receiver) -> None:
    token = bearer(issue(app, "user/*.cruds"))
    sub = _sub(hook, "s1", "g-mine", header=["Authorization: Bearer subscriber-secret", "X-Tenant:  riverside  "])
    assert app.put("/fhir/Subscription/s1", json=sub, headers={**H, **token}).status_code == 201
    assert app.app.state.notifier.tick() == 1
    seen = hook.requests[0].headers
    assert seen["authorization"] == "Bearer subscriber-secret" and seen["x-tenant"] == "riverside"
    assert seen["content-type"] == "application/fhir+json" and seen["host"] == f"127.0.0.1:{hook.port}"


@pytest.mark.parametrize("endpoint, why", [
    ("https://partner.example.org@169.254.169.254/latest", "userinfo"),
    ("https://169.254.169.254/latest", "link-local"),
    ("https://10.1.2.3/hook", "private"),
    ("https://partner.example.org/hook", "allow-list"),
    ("http://127.0.0.1:1/elsewhere", "allow-list"),
])
def test_validate_runs_the_endpoint_rules_of_a_write(app: TestClient, hook: Receiver, endpoint: str, why: str) -> None:
    token = bearer(issue(app, "user/*.cruds"))
    sub = subscription("s1", "g-mine", endpoint=endpoint)
    v = app.post("/fhir/Subscription/$validate", json=sub, headers={**H, **token})
    assert v.status_code == 200
    errors = [i["diagnostics"] for i in v.json()["issue"] if i["severity"] == "error"]
    assert any(why in e for e in errors), v.text
    w = app.put("/fhir/Subscription/s1", json=sub, headers={**H, **token})
    assert w.status_code == 400 and why in w.text
    _nothing_stored_or_sent(app, hook, "s1")
    ok = app.post("/fhir/Subscription/$validate", json=_sub(hook, "s1", "g-mine"), headers={**H, **token})
    assert [i["severity"] for i in ok.json()["issue"]] == ["information"], ok.text


def test_validate_refuses_a_group_the_caller_cannot_read(app: TestClient, hook: Receiver) -> None:
    token = _org_token(app, "o1")
    _refused(app.post("/fhir/Subscription/$validate", json=_sub(hook, "s1", "g-other"), headers={**H, **token}))
    ok = app.post("/fhir/Subscription/$validate", json=_sub(hook, "s1", "g-mine"), headers={**H, **token})
    assert ok.status_code == 200 and [i["severity"] for i in ok.json()["issue"]] == ["information"], ok.text

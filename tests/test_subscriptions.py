"""ATR list-change Subscriptions (Subscriptions R5 Backport on R4): validation on write, the rest-hook
handshake, id-only event notifications for every change of the filtered Group, heartbeats, and endpoint
failures recorded on the Subscription. The subscriber's endpoint is outside the gateway: respx stands in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from gateway.fhir.subscription_topic import FILTER, TOPIC
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, SHARED, make_client

H = {"Content-Type": "application/fhir+json"}
HOOK = "https://subscriber.example/hooks/atr"


def group(gid: str, name: str = "Attribution list") -> dict[str, Any]:
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "name": name}


def subscription(sid: str, gid: str, **channel: Any) -> dict[str, Any]:
    return {"resourceType": "Subscription", "id": sid, "status": "requested", "reason": "ATR list changes",
            "criteria": TOPIC, "_criteria": {"extension": [{"url": FILTER, "valueString": f"Group/{gid}"}]},
            "channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+json",
                        "header": ["Authorization: Bearer subscriber-secret"], **channel}}


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with make_client(store, subscription_notifier=False) as c:  # ticks driven by the tests
        c.app.state.notifier.prime()
        yield c


def params(body: dict[str, Any]) -> dict[str, Any]:
    first = body["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters"
    return {p["name"]: p for p in first["parameter"]}


def test_handshake_then_one_notification_per_change_of_the_group(client: TestClient) -> None:
    notifier = client.app.state.notifier
    client.put("/fhir/Group/g1", json=group("g1"), headers=H)
    client.put("/fhir/Group/other", json=group("other"), headers=H)
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        assert client.put("/fhir/Subscription/s1", json=subscription("s1", "g1"), headers=H).status_code == 201
        assert notifier.tick() == 1  # the handshake
        shake = json.loads(hook.calls[0].request.content)
        assert shake["type"] == "history" and params(shake)["type"]["valueCode"] == "handshake"
        assert hook.calls[0].request.headers["authorization"] == "Bearer subscriber-secret"
        assert client.get("/fhir/Subscription/s1").json()["status"] == "active"
        assert notifier.tick() == 0  # the status update itself is not an event
        client.put("/fhir/Group/g1", json=group("g1", "Renamed"), headers=H)
        client.put("/fhir/Group/other", json=group("other", "Renamed"), headers=H)  # not subscribed
        assert notifier.tick() == 1
        event = json.loads(hook.calls[1].request.content)
        p = params(event)
        assert p["type"]["valueCode"] == "event-notification"
        assert p["topic"]["valueCanonical"] == TOPIC
        assert p["subscription"]["valueReference"]["reference"] == f"{BASE}/Subscription/s1"
        assert p["events-since-subscription-start"]["valueString"] == "1"
        parts = {q["name"]: q for q in p["notification-event"]["part"]}
        assert parts["event-number"]["valueString"] == "1"
        assert parts["focus"]["valueReference"]["reference"] == f"{BASE}/Group/g1"
        assert event["entry"][1] == {"fullUrl": f"{BASE}/Group/g1", "request": {"method": "PUT", "url": "Group/g1"},
                                     "response": {"status": "200", "etag": 'W/"2"'}}
        assert "resource" not in event["entry"][1]  # id-only
        client.put("/fhir/Group/g1", json=group("g1", "Again"), headers=H)
        assert notifier.tick() == 1
        assert params(json.loads(hook.calls[2].request.content))["events-since-subscription-start"]["valueString"] == "2"
        # $member-add style writes go through the same history: a delete is a change too
        client.delete("/fhir/Group/g1")
        assert notifier.tick() == 1
        assert len(hook.calls) == 4


def test_endpoint_failure_puts_the_subscription_in_error(client: TestClient) -> None:
    notifier = client.app.state.notifier
    client.put("/fhir/Group/g1", json=group("g1"), headers=H)
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        client.put("/fhir/Subscription/s1", json=subscription("s1", "g1"), headers=H)
        notifier.tick()
        hook.mock(return_value=httpx.Response(503))
        client.put("/fhir/Group/g1", json=group("g1", "Renamed"), headers=H)
        notifier.tick()
        sub = client.get("/fhir/Subscription/s1").json()
        assert sub["status"] == "error" and "503" in sub["error"]
        client.put("/fhir/Group/g1", json=group("g1", "Later"), headers=H)
        assert notifier.tick() == 0  # not active any more
        assert len(hook.calls) == 2
    with respx.mock(assert_all_called=False) as mock:  # an unreachable endpoint fails the handshake
        mock.post(HOOK).mock(side_effect=httpx.ConnectError("refused"))
        client.put("/fhir/Subscription/s2", json=subscription("s2", "g1"), headers=H)
        notifier.tick()
        sub = client.get("/fhir/Subscription/s2").json()
        assert sub["status"] == "error" and "ConnectError" in sub["error"]


def test_heartbeat_when_nothing_else_was_sent(client: TestClient) -> None:
    notifier = client.app.state.notifier
    now = [1000.0]
    notifier.clock = lambda: now[0]
    client.put("/fhir/Group/g1", json=group("g1"), headers=H)
    hb = [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period",
           "valueUnsignedInt": 60}]
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        client.put("/fhir/Subscription/s1", json=subscription("s1", "g1", extension=hb), headers=H)
        assert notifier.tick() == 1  # handshake
        now[0] += 30
        assert notifier.tick() == 0
        now[0] += 31
        assert notifier.tick() == 1
        assert params(json.loads(hook.calls[1].request.content))["type"]["valueCode"] == "heartbeat"
        assert notifier.tick() == 0


@pytest.mark.parametrize("change, why", [
    ({"criteria": "Observation?code=1234"}, "topic"),
    ({"_criteria": {"extension": [{"url": FILTER, "valueString": "Patient/p1"}]}}, "Group"),
    ({"channel": {"type": "websocket", "endpoint": HOOK}}, "rest-hook"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://subscriber.example/hook"}}, "https"),
    ({"channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+json",
                  "_payload": {"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                                     "StructureDefinition/backport-payload-content",
                                              "valueCode": "full-resource"}]}}}, "full-resource"),
])
def test_subscriptions_the_gateway_cannot_serve_are_refused(client: TestClient, change: dict[str, Any],
                                                            why: str) -> None:
    r = client.put("/fhir/Subscription/bad", json={**subscription("bad", "g1"), **change}, headers=H)
    assert r.status_code == 400, r.text
    out = r.json()
    assert out["resourceType"] == "OperationOutcome" and why in json.dumps(out)
    assert client.get("/fhir/Subscription/bad").status_code == 404


def test_the_official_example_subscription_is_accepted(client: TestClient) -> None:
    example = json.loads((SHARED / "examples" / "atr" /
                          "Subscription-atr-list-change-subscription-example.json").read_text())
    r = client.put(f"/fhir/Subscription/{example['id']}", json=example, headers=H)
    assert r.status_code == 201, r.text


def test_the_notifier_thread_sends_on_its_own(store: SqlStore) -> None:
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(202))
        with make_client(store, subscription_notifier=True, subscription_poll_seconds=0.05) as c:
            c.put("/fhir/Group/g1", json=group("g1"), headers=H)
            c.put("/fhir/Subscription/s1", json=subscription("s1", "g1"), headers=H)
            deadline = time.monotonic() + 10
            while c.get("/fhir/Subscription/s1").json()["status"] != "active":
                assert time.monotonic() < deadline, "no handshake"
                time.sleep(0.05)
            c.put("/fhir/Group/g1", json=group("g1", "Renamed"), headers=H)
            while len(hook.calls) < 2:
                assert time.monotonic() < deadline, "no event notification"
                time.sleep(0.05)
        assert params(json.loads(hook.calls[1].request.content))["type"]["valueCode"] == "event-notification"


def test_one_process_sends(store: SqlStore) -> None:
    """Two gateways on one database (uvicorn workers, or several hosts on PostgreSQL): only the holder of
    the lease sends; the other takes over once it stops, from the position the first one saved, so the
    change written between the two is sent too."""
    from gateway.subscriptions.notifier import Notifier

    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        with make_client(store, subscription_notifier=False) as c:
            a, b = Notifier(store, BASE, opt_out=""), Notifier(store, BASE, opt_out="")
            try:
                a.prime()
                b.prime()
                c.put("/fhir/Group/g1", json=group("g1"), headers=H)
                c.put("/fhir/Subscription/s1", json=subscription("s1", "g1"), headers=H)
                assert a.tick() == 1 and b.tick() == 0
                a.stop()  # releases the lease
                c.put("/fhir/Group/g1", json=group("g1", "Renamed"), headers=H)
                assert b.tick() == 1  # took over where a stopped: the rename is sent
                c.put("/fhir/Group/g1", json=group("g1", "Again"), headers=H)
                assert b.tick() == 1
                assert b.tick() == 0  # nothing twice
            finally:
                a.stop()
                b.stop()
        assert len(hook.calls) == 3


def test_changes_written_while_no_notifier_ran_are_sent_by_the_next(store: SqlStore) -> None:
    """The sender's position is saved in the database: a notifier started after a stop sends what was
    written meanwhile, once."""
    from gateway.subscriptions.notifier import Notifier

    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).mock(return_value=httpx.Response(200))
        with make_client(store, subscription_notifier=False) as c:
            first = Notifier(store, BASE, opt_out="")
            first.prime()
            c.put("/fhir/Group/g1", json=group("g1"), headers=H)
            c.put("/fhir/Subscription/s1", json=subscription("s1", "g1"), headers=H)
            assert first.tick() == 1  # the handshake
            first.stop()
            c.put("/fhir/Group/g1", json=group("g1", "While stopped"), headers=H)
            c.put("/fhir/Group/g1", json=group("g1", "Still stopped"), headers=H)
            again = Notifier(store, BASE, opt_out="")
            try:
                again.prime()
                assert again.tick() == 2
                assert again.tick() == 0
            finally:
                again.stop()
        events = [params(json.loads(call.request.content)) for call in hook.calls[1:]]
        assert [e["events-since-subscription-start"]["valueString"] for e in events] == ["1", "2"]


def test_capability_statement_names_the_topic(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    sub = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Subscription")
    assert {"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                   "capabilitystatement-subscriptiontopic-canonical", "valueCanonical": TOPIC} in sub["extension"]


def test_endpoint_allow_list(store: SqlStore) -> None:
    with make_client(store, subscription_notifier=False,
                     subscription_endpoints="https://partner-a.example/hooks/, https://partner-b.example/") as c:
        ok = subscription("s1", "g1")
        ok["channel"]["endpoint"] = "https://partner-a.example/hooks/atr"
        assert c.put("/fhir/Subscription/s1", json=ok, headers=H).status_code == 201
        r = c.put("/fhir/Subscription/s2", json=subscription("s2", "g1"), headers=H)  # subscriber.example
        assert r.status_code == 400 and "GATEWAY_SUBSCRIPTION_ENDPOINTS" in r.text

"""Subscription notifications from two `fhir-gateway serve` processes on one PostgreSQL database: one
notification per change of the Group whichever instance wrote it, and the changes written while every
instance was stopped are sent once one starts again. The subscriber is a local receiver on 127.0.0.1, which
the servers may reach only because their configuration says so (GATEWAY_EGRESS_*, an endpoint allow-list)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.fhir.subscription_topic import FILTER, TOPIC
from gateway.store.sql.store import SqlStore
from tests.cluster.harness import Cluster, pg_cluster
from tests.security.receiver import Receiver, receiver

pytestmark = [pytest.mark.live, pytest.mark.postgres]
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
QUIET = 3.0  # seconds of silence (many notifier passes) before counting that nothing more is sent


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, hook: Receiver) -> Iterator[Cluster]:
    env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
           "GATEWAY_SUBSCRIPTION_ENDPOINTS": hook.url("/hooks/"), "GATEWAY_SUBSCRIPTION_POLL_SECONDS": "0.2"}
    with pg_cluster(tmp_path_factory.mktemp("subs"), instances=2, env=env) as c:
        yield c


def group(gid: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "name": name}


def notifications(hook: Receiver, path: str) -> list[dict[str, Any]]:
    """What the receiver got on ``path``, each as its Parameters (name → parameter)."""
    out = []
    for seen in list(hook.requests):
        if seen.path == path:
            first = json.loads(seen.body)["entry"][0]["resource"]
            out.append({p["name"]: p for p in first["parameter"]})
    return out


def events(hook: Receiver, path: str) -> list[int]:
    return [int(p["events-since-subscription-start"]["valueString"]) for p in notifications(hook, path)
            if p["type"]["valueCode"] == "event-notification"]


def wait_for(what: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_each_change_is_notified_once_whichever_instance_wrote_it(cluster: Cluster, hook: Receiver) -> None:
    gid, path = f"g-{uuid.uuid4().hex[:8]}", f"/hooks/{uuid.uuid4().hex}"
    a, b = (httpx.Client(base_url=base, timeout=30.0) for base in cluster.bases)
    try:
        assert a.put(f"/Group/{gid}", json=group(gid, "v1"), headers=FHIR_JSON).status_code == 201
        sub = {"resourceType": "Subscription", "id": f"s-{gid}", "status": "requested", "reason": "ATR changes",
               "criteria": TOPIC, "_criteria": {"extension": [{"url": FILTER, "valueString": f"Group/{gid}"}]},
               "channel": {"type": "rest-hook", "endpoint": hook.url(path), "payload": "application/fhir+json"}}
        r = b.put(f"/Subscription/{sub['id']}", json=sub, headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        wait_for("the handshake", lambda: b.get(f"/Subscription/{sub['id']}").json()["status"] == "active")
        for i in range(6):  # alternate the writing instance
            client = (a, b)[i % 2]
            w = client.put(f"/Group/{gid}", json=group(gid, f"change {i}"), headers=FHIR_JSON)
            assert w.status_code == 200, w.text
        wait_for("six event notifications", lambda: len(events(hook, path)) >= 6)
        time.sleep(QUIET)
        assert events(hook, path) == [1, 2, 3, 4, 5, 6]
        kinds = [p["type"]["valueCode"] for p in notifications(hook, path)]
        assert kinds.count("handshake") == 1

        # every instance down; two changes are written meanwhile (an operator's load, a batch job)
        cluster.stop_all()
        store = SqlStore(cluster.database, migrate=False)
        try:
            for name in ("offline 1", "offline 2"):
                with store.session() as s:
                    s.write(group(gid, name), "PUT")
        finally:
            store.close()
        cluster.start_all()
        wait_for("the notifications missed while down", lambda: len(events(hook, path)) >= 8)
        time.sleep(QUIET)
        assert events(hook, path) == [1, 2, 3, 4, 5, 6, 7, 8]
    finally:
        a.close()
        b.close()

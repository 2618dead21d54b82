"""Subscription notifications are checked against the owner's grant when they are sent (issue 13, gap 2),
with the real notifier, real tokens and the live receiver, on SQLite and PostgreSQL:

- every Subscription write records the grant it was made under (an extension the gated store sets, replacing
  any the client sent);
- each event notification and heartbeat goes out only when that grant may read the Group now, decided by the
  store gate: a list that stopped being the subscriber's, a patient-scoped owner and a Subscription with no
  recorded owner get nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, Grant, acting_as
from gateway.auth.grant_record import OWNER_EXTENSION, owner_of, stamp_owner
from gateway.auth.scopes import ScopeSet
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, make_auth_client
from tests.test_subscriptions import H, group, subscription

from .receiver import Receiver, receiver


@pytest.fixture()
def hook() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


def _list(gid: str, org: str, *patients: str) -> dict[str, Any]:
    return {**group(gid), "managingEntity": {"reference": f"Organization/{org}"},
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients]}


@pytest.fixture()
def app(store: SqlStore, hook: Receiver) -> Iterator[TestClient]:
    with make_auth_client(store, egress_allow_networks="loopback", subscription_endpoints=hook.url("/")) as c:
        c.app.state.notifier.prime()
        with acting_as(SYSTEM):  # test set-up, on behalf of the system
            for r in ({"resourceType": "Organization", "id": "o1"}, {"resourceType": "Organization", "id": "o2"},
                      {"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"},
                      _list("g1", "o1", "p1", "p2"), _list("g2", "o2", "p2")):
                c.app.state.rest.update(r["resourceType"], r["id"], r)
        yield c


def _system_put(c: TestClient, resource: dict[str, Any]) -> None:
    with acting_as(SYSTEM):
        c.app.state.rest.update(resource["resourceType"], resource["id"], resource)


def _events(hook: Receiver) -> list[str]:
    """The notification types the receiver got, in order."""
    out = []
    for seen in hook.requests:
        params = {p["name"]: p for p in json.loads(seen.body)["entry"][0]["resource"]["parameter"]}
        out.append(params["type"]["valueCode"])
    return out


def _org_token(c: TestClient, org: str) -> dict[str, str]:
    auth = c.app.state.authority
    return bearer(auth.tokens.issue_access(f"{org}-backend", "system/Group.rs system/Subscription.cruds", 300,
                                           f"fam-{org}", f"{org}-backend", {"fhirUser": f"Organization/{org}"}).token)


def test_a_list_that_stops_being_the_subscribers_is_not_notified(app: TestClient, hook: Receiver) -> None:
    notifier = app.app.state.notifier
    sub = subscription("s1", "g1", endpoint=hook.url("/atr"))
    # a forged owner record in the body is replaced by the writer's own grant
    stamp_owner(sub, SYSTEM)
    r = app.put("/fhir/Subscription/s1", json=sub, headers={**H, **_org_token(app, "o1")})
    assert r.status_code == 201, r.text
    stored = app.app.state.store.read("Subscription", "s1")
    owner = owner_of(orjson.loads(stored.content))
    assert owner is not None and not owner.system
    assert (owner.client_id, owner.fhir_user) == ("o1-backend", "Organization/o1")
    assert notifier.tick() == 1 and _events(hook) == ["handshake"]
    _system_put(app, {**_list("g1", "o1", "p1", "p2"), "name": "renamed"})  # still o1's list: sent
    assert notifier.tick() == 1 and _events(hook) == ["handshake", "event-notification"]
    _system_put(app, _list("g1", "o2", "p1", "p2"))  # handed to another organization: o1 may not read it
    _system_put(app, _list("g1", "o2", "p2"))
    assert notifier.tick() == 0
    assert _events(hook) == ["handshake", "event-notification"]
    # the Group is still readable to o1's token? no: the REST read agrees with the notifier
    assert app.get("/fhir/Group/g1", headers=_org_token(app, "o1")).status_code == 404


def _raw_subscription(c: TestClient, sid: str, gid: str, hook: Receiver, owner: Grant | None) -> None:
    """A Subscription as stored before owners were recorded (no owner) or with a given owner record, written
    below the gate (the gated store would stamp the writer)."""
    sub = {**subscription(sid, gid, endpoint=hook.url("/atr")), "status": "active"}
    if owner is not None:
        stamp_owner(sub, owner)
    with c.app.state.store.session() as s:  # the raw store: what the notifier reads
        s.write(sub, "PUT")


def test_patient_scoped_owner_gets_no_change_of_other_patients(app: TestClient, hook: Receiver) -> None:
    notifier = app.app.state.notifier
    patient = Grant(client_id="patient-app", scopes=ScopeSet.parse("patient/*.rs"), subject="u1", patient="p1")
    _raw_subscription(app, "s-other", "g2", hook, patient)  # g2 lists only p2
    _raw_subscription(app, "s-own", "g1", hook, patient)  # g1 lists p1 and p2
    notifier.tick()
    hook.requests.clear()
    _system_put(app, _list("g2", "o2", "p2", "p3"))  # another patient's list changes
    _system_put(app, _list("g1", "o1", "p1", "p2", "p3"))  # p1's list gains someone else
    assert notifier.tick() == 0
    assert hook.requests == []
    # the same Subscriptions owned by an unrestricted grant are notified: the owner is what decides
    admin = Grant(client_id="payer", scopes=ScopeSet.parse("system/Group.rs"), subject="payer")
    _raw_subscription(app, "s-other", "g2", hook, admin)
    notifier.tick()
    _system_put(app, _list("g2", "o2", "p2"))
    assert notifier.tick() == 1 and _events(hook) == ["event-notification"]


def test_subscription_without_recorded_owner_notifies_nobody(app: TestClient, hook: Receiver) -> None:
    notifier = app.app.state.notifier
    _raw_subscription(app, "s-legacy", "g1", hook, None)
    notifier.tick()
    _system_put(app, _list("g1", "o1", "p1"))
    assert notifier.tick() == 0 and hook.requests == []
    # a requested one gets no handshake either: it is put in error, saying why
    sub = subscription("s-new", "g1", endpoint=hook.url("/atr"))
    with app.app.state.store.session() as s:
        s.write(sub, "PUT")
    assert notifier.tick() == 0 and hook.requests == []
    stored = orjson.loads(app.app.state.store.read("Subscription", "s-new").content)
    assert stored["status"] == "error" and "owner" in stored["error"]
    assert not any(e.get("url") == OWNER_EXTENSION for e in stored.get("meta", {}).get("extension", []))

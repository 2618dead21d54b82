"""Outbound calls against live receivers on 127.0.0.1 (issue 13, defect 8): rest-hook deliveries and JWKS
fetches reach loopback only when configuration allows it, a name is resolved and checked when the
connection is opened and the connection goes to the checked address, redirects are not followed, and the
prefix-string allow-list's bypasses are gone. Runs the real app (SQLite and PostgreSQL where stored
Subscriptions matter) and the real httpx client the gateway sends with."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM
from gateway.auth.grant_record import stamp_owner
from gateway.net.egress import EgressPolicy, egress_client, refusal, system_resolve
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.smart import conftest as smart
from tests.smart.conftest import Backend, bearer, make_auth_client, register_backend
from tests.test_subscriptions import H, group, params, subscription

from .receiver import receiver

# the SMART fixtures (an app with authorization on over a SQLite store), shared with tests/smart
sqlite_store, auth_app, auth_client = smart.sqlite_store, smart.auth_app, smart.auth_client


def _sub(sid: str, endpoint: str, **channel: Any) -> dict[str, Any]:
    return subscription(sid, "g1", endpoint=endpoint, **channel)


def _fake_dns(names: dict[str, list[str]]) -> Any:
    """A resolver answering for made-up names (as a DNS server under an attacker's control would)."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return names[host] if host in names else system_resolve(host, port)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def _use_resolver(c: TestClient, resolver: Any) -> None:
    notifier = c.app.state.notifier
    notifier.http = egress_client(notifier.egress.with_resolver(resolver))


def test_live_delivery_when_loopback_is_explicitly_allowed(store: SqlStore) -> None:
    with receiver() as rec, make_client(store, egress_allow_networks="loopback",
                     subscription_endpoints=rec.url("/hooks/")) as c:
        notifier = c.app.state.notifier
        notifier.prime()
        c.put("/fhir/Group/g1", json=group("g1"), headers=H)
        sub = _sub("s1", rec.url("/hooks/atr"), header=["Authorization: Bearer subscriber-secret"])
        assert c.put("/fhir/Subscription/s1", json=sub, headers=H).status_code == 201
        assert notifier.tick() == 1
        assert c.get("/fhir/Subscription/s1").json()["status"] == "active"
        c.put("/fhir/Group/g1", json=group("g1", "Renamed"), headers=H)
        assert notifier.tick() == 1
    assert [r.path for r in rec.requests] == ["/hooks/atr", "/hooks/atr"]
    first = rec.requests[0]
    assert first.headers["authorization"] == "Bearer subscriber-secret"
    assert first.headers["content-type"] == "application/fhir+json"
    assert params(json.loads(first.body))["type"]["valueCode"] == "handshake"
    assert params(json.loads(rec.requests[1].body))["type"]["valueCode"] == "event-notification"


@pytest.mark.parametrize("endpoint, why", [
    ("https://127.0.0.1:{port}/hook", "loopback"),
    ("https://localhost:{port}/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]:{port}/hook", "loopback"),
    ("https://2130706433:{port}/hook", "ambiguous"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://10.0.0.5/hook", "private"),
    ("https://[fd12::5]/hook", "unique-local"),
    ("http://127.0.0.1:{port}/hook", "loopback"),  # both rules refuse it; the address is named first
])
def test_default_policy_refuses_internal_endpoints(store: SqlStore, endpoint: str, why: str) -> None:
    with receiver() as rec, make_client(store) as c:
        c.app.state.notifier.prime()
        r = c.put("/fhir/Subscription/bad", json=_sub("bad", endpoint.format(port=rec.port)), headers=H)
        assert r.status_code == 400 and why in r.text, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert c.get("/fhir/Subscription/bad").status_code == 404
        assert c.app.state.notifier.tick() == 0
    assert rec.requests == []


@pytest.mark.parametrize("endpoint", [
    "https://partner.example.org@169.254.169.254/latest/meta-data",
    "https://partner.example.org.evil.example/hooks",
    "https://partner.example.org:8443/hooks",
    "https://partner.example.orgevil.example/",
])
def test_allow_list_is_not_a_string_prefix(store: SqlStore, endpoint: str) -> None:
    with make_client(store, subscription_endpoints="https://partner.example.org") as c:
        r = c.put("/fhir/Subscription/bad", json=_sub("bad", endpoint), headers=H)
        assert r.status_code == 400, r.text
        assert c.put("/fhir/Subscription/ok", json=_sub("ok", "https://partner.example.org/hooks/atr"),
                     headers=H).status_code == 201


def test_name_resolving_to_loopback_is_refused_at_send_time(store: SqlStore) -> None:
    """The name passes every check at creation; when the notification is sent it resolves to 127.0.0.1
    (DNS rebinding), so nothing is sent and the Subscription records why."""
    with receiver() as rec, make_client(store, egress_allow_http=True) as c:
        notifier = c.app.state.notifier
        notifier.prime()
        _use_resolver(c, _fake_dns({"hooks.partner.test": ["127.0.0.1"]}))
        c.put("/fhir/Group/g1", json=group("g1"), headers=H)
        sub = _sub("s1", rec.url("/hook", host="hooks.partner.test"))
        assert c.put("/fhir/Subscription/s1", json=sub, headers=H).status_code == 201
        notifier.tick()
        stored = c.get("/fhir/Subscription/s1").json()
        assert stored["status"] == "error" and "loopback" in stored["error"], stored
        # `localhost` itself, in a Subscription stored while the policy allowed it, is refused the same way
        legacy = _sub("s2", rec.url("/hook", host="localhost"))
        stamp_owner(legacy, SYSTEM)  # its owner recorded, as the gated store does under --auth off
        with store.session() as s:
            s.write(legacy, "PUT")
        notifier.tick()
        stored = c.get("/fhir/Subscription/s2").json()
        assert stored["status"] == "error" and "loopback" in stored["error"], stored
    assert rec.requests == []


def test_the_connection_goes_to_the_checked_address(store: SqlStore) -> None:
    """The system resolver knows nothing of `hooks.partner.test`: the delivery reaches the receiver only
    because the connection is opened to the address the policy resolved and checked."""
    dns = _fake_dns({"hooks.partner.test": ["127.0.0.1"]})
    with receiver() as rec:
        url = rec.url("/hook", host="hooks.partner.test")
        with make_client(store, egress_allow_networks="loopback", subscription_endpoints=url) as c:
            notifier = c.app.state.notifier
            notifier.prime()
            _use_resolver(c, dns)
            c.put("/fhir/Group/g1", json=group("g1"), headers=H)
            assert c.put("/fhir/Subscription/s1", json=_sub("s1", url), headers=H).status_code == 201
            assert notifier.tick() == 1
            assert c.get("/fhir/Subscription/s1").json()["status"] == "active"
    assert len(rec.requests) == 1
    assert rec.requests[0].headers["host"] == f"hooks.partner.test:{rec.port}"
    assert "hooks.partner.test" in dns.calls


def test_a_name_resolving_to_public_and_loopback_addresses_is_refused() -> None:
    policy = EgressPolicy(allow_http=True).with_resolver(
        _fake_dns({"mixed.partner.test": ["93.184.215.14", "127.0.0.1"]}))
    with receiver() as rec, egress_client(policy) as http:
        with pytest.raises(httpx.ConnectError) as info:
            http.post(rec.url("/hook", host="mixed.partner.test"), content=b"{}")
        assert refusal(info.value) is not None and "loopback" in str(refusal(info.value))
        with pytest.raises(httpx.ConnectError):
            http.get(rec.url("/hook", host="localhost"))
    assert rec.requests == []


def test_redirects_are_not_followed(store: SqlStore) -> None:
    with receiver() as target, receiver() as hook:
        hook.status, hook.headers = 307, {"Location": target.url("/elsewhere")}
        with make_client(store, egress_allow_networks="loopback", egress_allow_http=True) as c:
            notifier = c.app.state.notifier
            notifier.prime()
            c.put("/fhir/Group/g1", json=group("g1"), headers=H)
            c.put("/fhir/Subscription/s1", json=_sub("s1", hook.url("/hook")), headers=H)
            notifier.tick()
            stored = c.get("/fhir/Subscription/s1").json()
            assert stored["status"] == "error" and "307" in stored["error"]
    assert len(hook.requests) == 1 and target.requests == []


# -- JWKS fetches ------------------------------------------------------------------------------------------------

def _admin(c: TestClient) -> dict[str, str]:
    return bearer(register_backend(c, "__admin system/*.rs").token("__admin"))


@pytest.mark.parametrize("jwks_uri, why", [
    ("http://localhost@evil.example/jwks", "userinfo"),
    ("https://localhost/jwks", "loopback"),
    ("https://127.0.0.1:8443/jwks", "loopback"),
    ("https://169.254.169.254/latest/meta-data/iam", "link-local"),
    ("https://[::ffff:10.0.0.1]/jwks", "private"),
    ("http://keys.example.org/jwks", "https"),
    ("https://0x7f.1/jwks", "ambiguous"),
])
def test_jwks_uri_registration_keeps_to_the_egress_rules(auth_client: TestClient, jwks_uri: str, why: str) -> None:
    r = auth_client.post("/auth/admin/clients", headers=_admin(auth_client),
                         json={"client_name": "keys elsewhere", "scope": "system/*.rs", "jwks_uri": jwks_uri})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata", r.text
    assert why in r.json()["error_description"]
    ok = auth_client.post("/auth/admin/clients", headers=_admin(auth_client),
                          json={"client_name": "ok", "scope": "system/*.rs",
                                "jwks_uri": "https://keys.example.org/jwks.json"})
    assert ok.status_code == 201, ok.text


def test_jwks_fetched_live_only_where_allowed(sqlite_store: SqlStore) -> None:
    from gateway.auth.assertion_client import generate_client_key

    key = generate_client_key("ES384")
    with receiver() as rec:
        rec.body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
        rec.headers = {"Content-Type": "application/json"}
        with make_auth_client(sqlite_store, egress_allow_networks="loopback", egress_allow_http=True) as c:
            client, _ = c.app.state.authority.clients.register("live keys", "system/*.rs", jwks_uri=rec.url("/jwks"))
            assert Backend(c, client.client_id, key).token_request().status_code == 200
        assert [r.path for r in rec.requests] == ["/jwks"]
        # the same registration under the default policy: the fetch is refused before any connection
        with make_auth_client(sqlite_store) as c:
            r = Backend(c, client.client_id, key).token_request()
            assert r.status_code == 400 and r.json()["error"] == "invalid_client"
        assert len(rec.requests) == 1


def test_idp_jwks_uri_is_checked_at_start(sqlite_store: SqlStore) -> None:
    with pytest.raises(ValueError, match="GATEWAY_IDP_JWKS_URI"):
        make_auth_client(sqlite_store, idp_issuer="https://idp.example.org",
                         idp_jwks_uri="https://169.254.169.254/keys")

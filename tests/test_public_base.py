"""Absolute URLs follow the request (issue 14, defect 4): a live ``fhir-gateway serve`` on 127.0.0.1,
addressed as ``localhost`` or ``127.0.0.1``, behind a trusted proxy or an untrusted one, and with a
configured ``--base-url``, which always wins. Checked on Bundle links and fullUrls, Location, history,
the CapabilityStatement's implementation.url and a bulk export's Content-Location."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.test_live_server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str] | None = None,
            args: tuple[str, ...] = ()) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(name)
    live = start_server(f"sqlite:///{workdir / 'base.sqlite3'}", workdir, demo=False, env=env, args=args)
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No base URL configured; forwarding headers trusted from loopback (the default)."""
    yield from _server(tmp_path_factory, "plain")


@pytest.fixture(scope="module")
def distrustful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No base URL configured; the only trusted proxy is elsewhere, so a loopback client is not one."""
    yield from _server(tmp_path_factory, "distrustful", env={"GATEWAY_TRUSTED_PROXIES": "192.0.2.10"})


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, "configured", args=("--base-url", "https://fhir.example.org/r4/"))


def urls(live: LiveServer, headers: dict[str, str]) -> list[str]:
    """Every absolute URL the server builds for one client: create (Location), search and history Bundles
    (links, fullUrls), the CapabilityStatement and a bulk export kick-off (Content-Location)."""
    with httpx.Client(base_url=live.base, timeout=60.0, headers=JSON | headers) as c:
        tag = uuid.uuid4().hex
        out = []
        for _ in range(2):
            r = c.post("/Patient", json={"resourceType": "Patient",
                                         "identifier": [{"system": "urn:test:base", "value": tag}]})
            assert r.status_code == 201, r.text
            out.append(r.headers["Location"])
        pid = r.json()["id"]
        updated = c.put(f"/Patient/{pid}", json=r.json() | {"gender": "female"})
        assert updated.status_code == 200, updated.text
        for path in (f"/Patient?identifier=urn:test:base|{tag}&_count=1", f"/Patient/{pid}/_history?_count=1",
                     "/_history?_count=1"):
            body = c.get(path).json()
            assert body["resourceType"] == "Bundle", body
            assert {x["relation"] for x in body["link"]} >= {"self", "next"}
            out += [x["url"] for x in body["link"]]
            out += [e["fullUrl"] for e in body["entry"]]
        out.append(c.get("/metadata").json()["implementation"]["url"])
        kick = c.get("/Patient/$export", headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})
        assert kick.status_code == 202, kick.text
        out.append(kick.headers["Content-Location"])
        # cancel it through the address this test really reaches
        status = kick.headers["Content-Location"]
        assert c.delete("/" + status[status.index("$export-status/"):]).status_code == 202
        # the links lead back to this server (followed here through the real address)
        nxt = next(x["url"] for x in c.get(f"/Patient?identifier=urn:test:base|{tag}&_count=1").json()["link"]
                   if x["relation"] == "next")
        followed = c.get("/Patient?" + nxt.split("/Patient?", 1)[1])
        assert followed.status_code == 200 and followed.json()["entry"][0]["resource"]["id"] == pid
        return out


def all_start_with(found: list[str], base: str) -> None:
    wrong = [u for u in found if not u.startswith(base + "/") and u != base]
    assert not wrong, f"not under {base}: {wrong}"
    assert len(found) >= 12


def test_links_follow_the_host_the_client_used(plain: LiveServer) -> None:
    all_start_with(urls(plain, {}), f"http://127.0.0.1:{plain.port}/fhir")
    all_start_with(urls(plain, {"Host": f"localhost:{plain.port}"}), f"http://localhost:{plain.port}/fhir")


def test_forwarded_headers_from_a_trusted_proxy_are_honoured(plain: LiveServer) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw.example.org",
                 "X-Forwarded-Prefix": "/payer-api/"}
    all_start_with(urls(plain, forwarded), "https://gw.example.org/payer-api/fhir")
    all_start_with(urls(plain, forwarded | {"X-Forwarded-Port": "8443"}),
                   "https://gw.example.org:8443/payer-api/fhir")
    # the last value is the nearest proxy's; a default port is left out
    all_start_with(urls(plain, {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example:443"}),
                   "https://b.example/fhir")
    # RFC 7239
    all_start_with(urls(plain, {"Forwarded": 'for=198.51.100.7;proto=https;host="fw.example.org"'}),
                   "https://fw.example.org/fhir")


def test_forwarded_headers_from_anyone_else_are_ignored(distrustful: LiveServer) -> None:
    base = f"http://127.0.0.1:{distrustful.port}/fhir"
    all_start_with(urls(distrustful, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                                      "X-Forwarded-Prefix": "/x", "X-Forwarded-Port": "1"}), base)
    all_start_with(urls(distrustful, {"Forwarded": "proto=https;host=evil.example"}), base)
    # the Host header still counts: it is how the client addressed this server
    all_start_with(urls(distrustful, {"Host": f"localhost:{distrustful.port}"}), f"http://localhost:{distrustful.port}/fhir")


def test_a_configured_base_url_wins(configured: LiveServer) -> None:
    for headers in ({}, {"Host": f"localhost:{configured.port}"},
                    {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "other.example"}):
        all_start_with(urls(configured, headers), "https://fhir.example.org/r4")


@pytest.mark.parametrize("host", ["evil.example/<script>", "a b", "x" * 400, "[::1", "host:99999999"])
def test_a_malformed_host_falls_back_to_the_listening_address(plain: LiveServer, host: str) -> None:
    r = httpx.get(f"{plain.base}/Patient?_count=1", headers=JSON | {"Host": host}, timeout=30.0)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        body: dict[str, Any] = r.json()
        assert all(x["url"].startswith(f"http://127.0.0.1:{plain.port}/fhir/") for x in body["link"]), body["link"]


def scope(headers: dict[str, str], client: str = "127.0.0.1", scheme: str = "http") -> dict[str, Any]:
    return {"type": "http", "scheme": scheme, "client": (client, 50000), "server": ("127.0.0.1", 8080),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize(("headers", "client", "expected"), [
    ({"Host": "[::1]:8080"}, "::1", "http://[::1]:8080/fhir"),
    ({"Host": "gw.example:80"}, "10.0.0.9", "http://gw.example/fhir"),  # the scheme's default port is left out
    ({}, "10.0.0.9", "http://127.0.0.1:8080/fhir"),  # no Host: the listening address
    ({"Host": "a", "Forwarded": 'for=1.2.3.4, proto=https;host="x.example:8443"'}, "::1", "https://x.example:8443/fhir"),
    ({"Host": "a", "X-Forwarded-Prefix": "//evil.example"}, "127.0.0.1", "http://a/fhir"),  # not a path: ignored
    ({"Host": "a", "X-Forwarded-Proto": "javascript"}, "127.0.0.1", "http://a/fhir"),
    ({"Host": "a", "X-Forwarded-Host": "bad host"}, "127.0.0.1", "http://a/fhir"),
    ({"Host": "a", "X-Forwarded-Port": "99999"}, "127.0.0.1", "http://a/fhir"),
    ({"Host": "a", "X-Forwarded-Host": "b"}, "10.1.2.3", "http://a/fhir"),  # not a trusted proxy
    ({"Host": "a", "X-Forwarded-Host": "b"}, "192.168.7.7", "http://b/fhir"),  # inside a trusted network
])
def test_request_base_rules(headers: dict[str, str], client: str, expected: str) -> None:
    from gateway.api.baseurl import TrustedProxies, request_base

    assert request_base(scope(headers, client), TrustedProxies("127.0.0.1, ::1, 192.168.0.0/16")) == expected


def test_trusted_proxies_setting() -> None:
    from gateway.api.baseurl import TrustedProxies

    assert TrustedProxies("*").trusts("203.0.113.9")
    assert not TrustedProxies("").trusts("127.0.0.1")
    assert not TrustedProxies("127.0.0.1").trusts("testclient")  # not an address
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies("proxy.example")

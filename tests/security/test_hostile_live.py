"""Hostile input against a real ``fhir-gateway serve`` process on a loopback port, over real sockets: the
nesting, NUL, shape and overflow cases that used to reset the connection or answer 500 each get an answer,
none of them a 500, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.security.hostile_corpus import ALWAYS, SEED, hostile_bodies
from tests.test_live_server import LiveServer, serving

pytestmark = pytest.mark.live


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hostile_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("hostile-live")
    database = f"sqlite:///{workdir / 'live.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with serving(database, workdir, demo=False) as server:  # a PostgreSQL database starts empty
        yield server


def _requests() -> list[tuple[str, str, bytes | None, str]]:
    out: list[tuple[str, str, bytes | None, str]] = []
    for method, path, rtype in (("POST", "/fhir/Patient", "Patient"), ("PUT", "/fhir/Patient/p1", "Patient"),
                                ("POST", "/fhir", "Bundle"), ("POST", "/fhir/Patient/$validate", "Patient"),
                                ("POST", "/fhir/Measure/$evaluate-measure", "Parameters"),
                                ("POST", "/fhir/$cql", "Parameters"),
                                ("POST", "/fhir/Library/l1/$evaluate", "Parameters"),
                                ("POST", "/fhir/Group/g1/$member-add", "Parameters"),
                                ("PATCH", "/fhir/Patient/p1", "Patient")):
        for label, body, ctype in hostile_bodies(rtype):
            if label in ALWAYS or label.startswith(("parameters-", "patch-", "bundle-")):
                out.append((method, path, body, ctype))
    for path in ("/fhir/Patient/p1/_history/" + "9" * 25, "/fhir/Patient?_id=%00", "/fhir/Patient/p1%00",
                 "/fhir/Measure/%00/$evaluate-measure", "/fhir/$export-status/%00",
                 "/fhir/Measure/m1/$evaluate-measure?periodStart=2025&periodEnd=2025",
                 "/fhir/$cql?expression=%00", "/fhir/$cql?expression=" + "(" * 3000 + "1" + ")" * 3000,
                 "/fhir/$cql?expression=1&subject=Patient/%00", "/fhir/Library/%00/$evaluate?subject=Patient/p1",
                 "/fhir/$export?_type=" + ",".join(["Patient"] * 2000)):
        out.append(("GET", path, None, ""))
    return out


def test_hostile_requests_over_real_sockets(hostile_live: LiveServer) -> None:
    problems: list[str] = []
    n = 0
    with httpx.Client(base_url=hostile_live.root, timeout=60.0) as http:
        for res in SEED:
            r = http.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
            assert r.status_code in (200, 201), r.text
        for method, path, body, ctype in _requests():
            n += 1
            headers = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
            if body is not None:
                headers["Content-Type"] = ctype
            try:
                r = http.request(method, path, content=body, headers=headers)
            except httpx.TransportError as exc:
                problems.append(f"{method} {path[:80]} {body[:60] if body else b''!r}: no answer ({exc!r})")
                continue
            if r.status_code >= 500:
                problems.append(f"{method} {path[:80]} {body[:60] if body else b''!r}: {r.status_code} {r.text[:200]}")
        # the server is still up and serving
        assert http.get("/fhir/Patient/p1").status_code == 200
    assert n >= 150
    assert not problems, f"{len(problems)} of {n} requests misbehaved\n" + "\n".join(problems) + \
        "\n" + hostile_live.output()

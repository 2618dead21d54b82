"""Keyset paging over live HTTP (issue 14, defect 3): a client that follows the server's ``next`` links while
another client deletes and creates resources sees every resource that existed throughout exactly once.

A ``fhir-gateway serve`` process per backend (SQLite file, PostgreSQL database) on a free loopback port;
the paging client and the writing client are two httpx clients. With offset links (the gateway before
cursors) deleting two resources already read shifts the rest forward and two others are never returned, and
resources created at the front of a ``-_lastUpdated`` order push earlier rows onto later pages again.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from gateway.store.sql.store import SqlStore
from tests.conftest import wipe
from tests.test_live_server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SYSTEM = "urn:test:keyset"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(f"keyset-{request.param}")
    if request.param == "sqlite":
        database = f"sqlite:///{workdir / 'keyset.sqlite3'}"
    else:
        database = request.getfixturevalue("pg_url")
        store = SqlStore(database)
        wipe(store)
        store.close()
    live = start_server(database, workdir, demo=False)
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=60.0, headers=JSON) as c:
        yield c


def birth_date(i: int) -> str | None:
    """Every seventh patient has no birth date (NULL sort keys) and dates repeat (ties on the sort key)."""
    return None if i % 7 == 3 else f"19{50 + i % 12:02d}-0{1 + i % 3}-15"


def patient(tag: str, i: int) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}],
                         "name": [{"family": f"Fam{i % 5}", "given": [f"P{i}"]}]}
    if birth_date(i):
        p["birthDate"] = birth_date(i)
    return p


def seed(http: httpx.Client, tag: str, n: int, start: int = 0) -> list[str]:
    """``n`` Patients carrying the ``tag`` identifier, created one by one (ids in creation order)."""
    ids = []
    for i in range(start, start + n):
        r = http.post("/Patient", json=patient(tag, i))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def get(http: httpx.Client, url: str) -> dict[str, Any]:
    r = http.get(url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle", body
    return body


def matches(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def walk(http: httpx.Client, url: str, after_page: Callable[[int, list[str]], None] | None = None
         ) -> list[list[str]]:
    """The match ids page by page, following ``next`` links from ``url`` (``after_page`` runs between)."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        body = get(http, next_url)
        pages.append(matches(body))
        assert len(pages) < 50, "the next links do not end"
        if after_page is not None:
            after_page(len(pages), pages[-1])
        next_url = link(body, "next")
    return pages


def with_cursor(url: str, change: Callable[[str], str]) -> str:
    """``url`` with its ``_cursor`` value passed through ``change``."""
    parts = urlsplit(url)
    query = [(k, change(v) if k == "_cursor" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


SORTS = ["", "birthdate", "-_lastUpdated", "-birthdate,family", "_id"]


@pytest.mark.parametrize("sort", SORTS)
def test_paging_while_another_client_deletes_and_creates(server: LiveServer, http: httpx.Client, sort: str) -> None:
    tag = uuid.uuid4().hex
    ids = seed(http, tag, 30)
    query = {"identifier": f"{SYSTEM}|{tag}", "_count": "10"} | ({"_sort": sort} if sort else {})
    gone_seen: list[str] = []
    gone_unseen: list[str] = []
    created: list[str] = []

    def writer(page: int, seen: list[str]) -> None:
        if page != 1:
            return
        with httpx.Client(base_url=server.base, timeout=60.0, headers=JSON) as other:
            unseen = [i for i in ids if i not in seen]
            for rid in seen[:2] + unseen[-2:]:  # two already read, two not yet read
                assert other.delete(f"/Patient/{rid}").status_code in (200, 204)
            gone_seen.extend(seen[:2])
            gone_unseen.extend(unseen[-2:])
            created.extend(seed(other, tag, 3, start=100))

    pages = walk(http, f"/Patient?{urlencode(query)}", writer)
    seen = Counter(i for page in pages for i in page)
    throughout = [i for i in ids if i not in gone_unseen]
    assert [i for i in throughout if seen[i] != 1] == [], f"skipped or repeated with _sort={sort!r}: {seen}"
    assert [i for i, n in seen.items() if n > 1] == []
    assert not set(gone_unseen) & set(seen), "a resource deleted before it was reached was still returned"
    assert set(seen) <= set(ids) | set(created)
    assert all(len(p) <= 10 for p in pages)


@pytest.mark.parametrize("sort", SORTS)
def test_pages_concatenate_to_the_unpaged_order_and_walk_back(http: httpx.Client, sort: str) -> None:
    tag = uuid.uuid4().hex
    ids = seed(http, tag, 23)
    query = {"identifier": f"{SYSTEM}|{tag}"} | ({"_sort": sort} if sort else {})
    whole = matches(get(http, f"/Patient?{urlencode(query | {'_count': '100'})}"))
    assert sorted(whole) == sorted(ids)
    forward: list[list[str]] = []
    body = get(http, f"/Patient?{urlencode(query | {'_count': '5'})}")
    while True:
        forward.append(matches(body))
        nxt = link(body, "next")
        if nxt is None:
            break
        body = get(http, nxt)
    assert [i for p in forward for i in p] == whole, f"_sort={sort!r}"
    assert [len(p) for p in forward] == [5, 5, 5, 5, 3]
    # back from the last page with the previous links (fhir-kit-client's prevPage follows them)
    backward = [matches(body)]
    while (prev := link(body, "previous")) is not None:
        body = get(http, prev)
        backward.append(matches(body))
        assert len(backward) < 20
    assert backward[::-1] == forward
    # the last link: the final page of the order
    last = get(http, str(link(get(http, f"/Patient?{urlencode(query | {'_count': '5'})}"), "last")))
    assert matches(last) == whole[-5:]
    assert link(last, "next") is None and link(last, "previous") is not None


def test_includes_totals_elements_summary_and_chains_page_by_cursor(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    pids = seed(http, tag, 12)
    for n, pid in enumerate(pids):
        obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
               "valueQuantity": {"value": 5 + n / 10, "unit": "%"}}
        assert http.post("/Observation", json=obs).status_code == 201
    chained = {"subject:Patient.identifier": f"{SYSTEM}|{tag}", "_count": "5", "_total": "accurate",
               "_include": "Observation:subject", "_sort": "-value-quantity"}
    body = get(http, f"/Observation?{urlencode(chained)}")
    seen: list[str] = []
    while True:
        assert body["total"] == 12
        page_obs = [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        included = {e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "include"}
        # each page includes the subjects of that page's matches, and only those
        assert included == {o["subject"]["reference"].split("/")[1] for o in page_obs}
        seen += [o["id"] for o in page_obs]
        values = [o["valueQuantity"]["value"] for o in page_obs]
        assert values == sorted(values, reverse=True)
        nxt = link(body, "next")
        if nxt is None:
            break
        assert "_offset" not in nxt and "_cursor=" in nxt
        body = get(http, nxt)
    assert len(seen) == len(set(seen)) == 12
    # _revinclude: each page of Patients carries the Observations about its own Patients
    rev = {"identifier": f"{SYSTEM}|{tag}", "_count": "5", "_revinclude": "Observation:subject",
           "_sort": "-birthdate"}
    body, patients = get(http, f"/Patient?{urlencode(rev)}"), []
    while True:
        page = matches(body)
        about = {e["resource"]["subject"]["reference"] for e in body.get("entry", [])
                 if e["search"]["mode"] == "include"}
        assert about == {f"Patient/{p}" for p in page}
        patients += page
        nxt = link(body, "next")
        if nxt is None:
            break
        body = get(http, nxt)
    assert sorted(patients) == sorted(pids)
    # _elements holds on the pages a cursor reaches
    first = get(http, f"/Patient?{urlencode({'identifier': f'{SYSTEM}|{tag}', '_count': '5', '_elements': 'birthDate'})}")
    second = get(http, str(link(first, "next")))
    assert all("name" not in e["resource"] for e in second["entry"])
    # _summary=count: the total alone, no page links
    counted = get(http, f"/Patient?{urlencode({'identifier': f'{SYSTEM}|{tag}', '_summary': 'count'})}")
    assert counted["total"] == 12 and "entry" not in counted
    assert {x["relation"] for x in counted["link"]} == {"self"}


def test_an_explicit_offset_is_still_served_and_its_links_use_cursors(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    ids = seed(http, tag, 9)
    body = get(http, f"/Patient?{urlencode({'identifier': f'{SYSTEM}|{tag}', '_count': '4', '_offset': '4'})}")
    assert matches(body) == ids[4:8]
    nxt = str(link(body, "next"))
    assert "_offset" not in nxt and matches(get(http, nxt)) == ids[8:]
    assert matches(get(http, str(link(body, "previous")))) == ids[:4]


def test_history_paging_while_versions_are_written(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    (pid,) = seed(http, tag, 1)
    for v in range(2, 26):
        body = patient(tag, v) | {"id": pid}
        assert http.put(f"/Patient/{pid}", json=body).status_code == 200
    for url in (f"/Patient/{pid}/_history?_count=10", "/Patient/_history?_count=10"):
        before = {e["response"]["etag"] for e in get(http, f"/Patient/{pid}/_history?_count=1000")["entry"]}
        assert len(before) >= 25
        ours: list[str] = []
        body = get(http, url)
        page = 0
        while True:
            page += 1
            ours += [e["response"]["etag"] for e in body.get("entry", []) if e["fullUrl"].endswith(f"/Patient/{pid}")]
            if page == 1:  # another client writes five newer versions
                for _ in range(5):
                    r = http.put(f"/Patient/{pid}", json=patient(tag, 99) | {"id": pid})
                    assert r.status_code == 200
            nxt = link(body, "next")
            if nxt is None:
                break
            assert "_cursor=" in nxt
            body = get(http, nxt)
        counts = Counter(ours)
        assert {e for e in before if counts[e] != 1} == set(), (url, counts)
        assert max(counts.values()) == 1, url
        # and back: the previous links of the last page lead up to the newest versions, written meanwhile
        back, steps = body, 0
        while (prev := link(back, "previous")) is not None and steps < 100:
            back, steps = get(http, prev), steps + 1
        assert link(back, "previous") is None
        current = http.get(f"/Patient/{pid}").headers["ETag"]
        assert back["entry"][0]["response"]["etag"] == current


def outcome(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "invalid", body
    assert "cursor" in body["issue"][0]["diagnostics"]
    return body


def test_tampered_or_foreign_cursors_get_400(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    seed(http, tag, 4)
    first = get(http, f"/Patient?{urlencode({'identifier': f'{SYSTEM}|{tag}', '_count': '2', '_sort': 'birthdate'})}")
    nxt = str(link(first, "next"))
    assert matches(get(http, nxt))

    def flip(token: str) -> str:  # change the position inside the signed payload
        payload, mac = token.split(".")
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(b'"d":"n"', b'"d":"p"')
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + mac

    outcome(http.get(with_cursor(nxt, flip)))
    outcome(http.get(with_cursor(nxt, lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"))))
    for garbage in ("x", "", ".", "a.b.c", "%%%", "eyJ9.AAAA", "A" * 5000):
        outcome(http.get(f"/Patient?_cursor={garbage}"))
    # a cursor is bound to its sort and type: replayed on another search it is refused
    outcome(http.get(nxt.replace("_sort=birthdate", "_sort=-birthdate")))
    outcome(http.get(f"/Observation?_count=2&_sort=date&_cursor={dict(parse_qsl(urlsplit(nxt).query))['_cursor']}"))
    hist = get(http, "/Patient/_history?_count=1")
    hnext = str(link(hist, "next"))
    outcome(http.get(with_cursor(hnext, flip)))
    outcome(http.get("/_history?_cursor=" + dict(parse_qsl(urlsplit(hnext).query))["_cursor"]))


def next_after_restart(tmp_path: Path, env: dict[str, str]) -> int:
    """Status of a ``next`` link made by one server process when a new process on the same database
    follows it."""
    database = f"sqlite:///{tmp_path / 'restart.sqlite3'}"
    live = start_server(database, tmp_path, demo=False, env=env)
    try:
        with httpx.Client(base_url=live.base, timeout=60.0, headers=JSON) as c:
            seed(c, "restart", 3)
            nxt = str(link(get(c, f"/Patient?identifier={SYSTEM}|restart&_count=1"), "next"))
    finally:
        stop_server(live)
    live = start_server(database, tmp_path, demo=False, env=env)
    try:
        r = httpx.get(nxt.replace(urlsplit(nxt).netloc, f"127.0.0.1:{live.port}"), headers=JSON, timeout=60.0)
        if r.status_code != 200:
            outcome(r)
        return r.status_code
    finally:
        stop_server(live)


def test_cursors_across_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without GATEWAY_PAGING_KEY each process signs with a key of its own: a cursor from before a restart
    is a 400 saying to start again (never a 500); with the key configured the cursor outlives the process."""
    assert next_after_restart(tmp_path_factory.mktemp("nokey"), {}) == 400
    assert next_after_restart(tmp_path_factory.mktemp("key"), {"GATEWAY_PAGING_KEY": "k" * 32}) == 200

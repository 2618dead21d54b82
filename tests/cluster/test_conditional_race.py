"""Conditional create, update and delete are atomic on PostgreSQL: 50 racing requests over real HTTP, against
one live server and split across two `fhir-gateway serve` processes on the same database, leave exactly one
resource, one version per update and one deletion; `If-Match` updates through both instances lose none."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.cluster.harness import Cluster, pg_cluster

pytestmark = [pytest.mark.live, pytest.mark.postgres]
RACERS = 50
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pg_cluster(tmp_path_factory.mktemp("race"), instances=2) as c:
        yield c


def race(bases: list[str], send: Callable[[httpx.Client, int], httpx.Response]) -> list[httpx.Response]:
    """``RACERS`` requests released together from as many threads, request ``i`` to ``bases[i % len]``."""
    gate = threading.Barrier(RACERS)
    clients = [httpx.Client(base_url=b, timeout=120.0, limits=httpx.Limits(max_connections=RACERS)) for b in bases]

    def one(i: int) -> httpx.Response:
        gate.wait()
        return send(clients[i % len(clients)], i)

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            return list(pool.map(one, range(RACERS)))
    finally:
        for c in clients:
            c.close()


def patients(base: str, system: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/Patient", params={"identifier": f"{system}|", "_count": "200"}, timeout=60)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def history_total(base: str, rid: str) -> int:
    r = httpx.get(f"{base}/Patient/{rid}/_history", params={"_count": "200"}, timeout=60)
    assert r.status_code == 200, r.text
    return len(r.json().get("entry", []))


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


@pytest.mark.parametrize("split", [False, True], ids=["one-instance", "two-instances"])
def test_racing_conditional_creates_make_one_resource(cluster: Cluster, split: bool) -> None:
    system = f"urn:race:create:{uuid.uuid4().hex}"
    bases = cluster.bases if split else cluster.bases[:1]
    body = {"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]}
    responses = race(bases, lambda c, i: c.post("/Patient", json=body, headers={
        **FHIR_JSON, "If-None-Exist": f"identifier={system}|1"}))
    statuses = _statuses(responses)
    assert statuses == [200] * (RACERS - 1) + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    found = patients(cluster.bases[-1], system)
    assert len(found) == 1
    assert {r.json()["id"] for r in responses} == {found[0]["id"]}  # every answer names the one resource


@pytest.mark.parametrize("split", [False, True], ids=["one-instance", "two-instances"])
def test_racing_conditional_updates_make_one_resource_and_lose_no_version(cluster: Cluster, split: bool) -> None:
    system = f"urn:race:update:{uuid.uuid4().hex}"
    bases = cluster.bases if split else cluster.bases[:1]

    def send(c: httpx.Client, i: int) -> httpx.Response:
        body = {"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}],
                "name": [{"family": f"writer-{i}"}]}
        return c.put("/Patient", params={"identifier": f"{system}|1"}, json=body, headers=FHIR_JSON)

    responses = race(bases, send)
    statuses = _statuses(responses)
    assert statuses == [200] * (RACERS - 1) + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    found = patients(cluster.bases[-1], system)
    assert len(found) == 1
    # each request wrote its own version: 1..50, none lost or written twice
    assert sorted(int(r.json()["meta"]["versionId"]) for r in responses) == list(range(1, RACERS + 1))
    assert found[0]["meta"]["versionId"] == str(RACERS)
    assert history_total(cluster.bases[0], found[0]["id"]) == RACERS


@pytest.mark.parametrize("split", [False, True], ids=["one-instance", "two-instances"])
def test_racing_conditional_deletes_delete_once(cluster: Cluster, split: bool) -> None:
    system = f"urn:race:delete:{uuid.uuid4().hex}"
    bases = cluster.bases if split else cluster.bases[:1]
    created = httpx.post(f"{cluster.bases[0]}/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]}, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    responses = race(bases, lambda c, i: c.delete("/Patient", params={"identifier": f"{system}|1"},
                                                  headers={"Accept": "application/fhir+json"}))
    assert _statuses(responses) == [200] * RACERS, [r.text for r in responses if r.status_code != 200]
    said = [r.json()["issue"][0]["diagnostics"] for r in responses]
    assert said.count("1 Patient resource(s) deleted") == 1
    assert said.count("0 Patient resource(s) deleted") == RACERS - 1
    assert history_total(cluster.bases[-1], rid) == 2  # the create and one deletion
    assert httpx.get(f"{cluster.bases[-1]}/Patient/{rid}").status_code == 410


def test_racing_conditional_entries_in_transaction_bundles_make_one_resource(cluster: Cluster) -> None:
    """ifNoneExist and conditional PUT entries of transaction Bundles, racing through both instances."""
    system = f"urn:race:bundle:{uuid.uuid4().hex}"

    def send(c: httpx.Client, i: int) -> httpx.Response:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0f4bd0c5-59c4-4a4e-9a4e-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": "p"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|p"}},
            {"resource": {"resourceType": "Organization", "identifier": [{"system": system, "value": "o"}],
                          "name": f"writer-{i}"},
             "request": {"method": "PUT", "url": f"Organization?identifier={system}|o"}}]}
        return c.post("", json=bundle, headers=FHIR_JSON)

    responses = race(cluster.bases, send)
    assert _statuses(responses) == [200] * RACERS, [r.text for r in responses if r.status_code != 200]
    found = patients(cluster.bases[0], system)
    assert len(found) == 1
    orgs = httpx.get(f"{cluster.bases[1]}/Organization", params={"identifier": f"{system}|o"}).json()
    assert len(orgs.get("entry", [])) == 1
    assert orgs["entry"][0]["resource"]["meta"]["versionId"] == str(RACERS)


def test_if_match_updates_through_both_instances_lose_nothing(cluster: Cluster) -> None:
    """Writers on both instances read, change and write back with If-Match, retrying on 412/409: every change
    they were told succeeded is in the final version, and the version count equals the successes."""
    created = httpx.post(f"{cluster.bases[0]}/Patient", json={
        "resourceType": "Patient", "name": [{"family": "shared", "given": ["start"]}]}, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    writers, each = 4, 5
    done: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with httpx.Client(base_url=cluster.bases[w % 2], timeout=60.0) as c:
            for k in range(each):
                mark = f"w{w}k{k}"
                for _ in range(200):
                    cur = c.get(f"/Patient/{rid}")
                    assert cur.status_code == 200, cur.text
                    body = cur.json()
                    body["name"][0]["given"] = [*body["name"][0].get("given", []), mark]
                    put = c.put(f"/Patient/{rid}", json=body,
                                headers={**FHIR_JSON, "If-Match": cur.headers["ETag"]})
                    if put.status_code == 200:
                        with lock:
                            done.append(mark)
                        break
                    assert put.status_code in (409, 412), put.text
                else:
                    raise AssertionError(f"{mark} never got through")

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))
    final = httpx.get(f"{cluster.bases[1]}/Patient/{rid}").json()
    assert sorted(final["name"][0]["given"]) == sorted(["start", *done])
    assert len(done) == writers * each
    assert final["meta"]["versionId"] == str(writers * each + 1)

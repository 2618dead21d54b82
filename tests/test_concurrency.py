"""Concurrent writers: versions stay consecutive, nothing is half-written, conflicts are 409s."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore


def test_concurrent_updates_keep_history_consistent(store: SqlStore) -> None:
    rest = RestService(store, "http://testserver/fhir")
    rest.update("Patient", "c1", {"resourceType": "Patient", "id": "c1"})

    def write(i: int) -> int:
        try:
            rest.update("Patient", "c1", {"resourceType": "Patient", "id": "c1", "gender": "other",
                                          "name": [{"text": f"writer {i}"}]})
            return 200
        except Exception as exc:  # noqa: BLE001 - the status is what we look at
            return getattr(exc, "status", 500)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(write, range(40)))
    assert set(statuses) <= {200, 409}
    ok = statuses.count(200)
    assert ok >= 1
    current = store.read("Patient", "c1")
    assert current is not None and current.version == ok + 1
    entries, total = store.history("Patient", "c1", None, 100, 0)
    assert total == ok + 1
    assert sorted(e.stored.version for e in entries) == list(range(1, ok + 2))


def test_concurrent_creates_all_land(store: SqlStore) -> None:
    rest = RestService(store, "http://testserver/fhir")
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: rest.create("Patient", {"resourceType": "Patient",
                                                               "identifier": [{"system": "urn:t", "value": str(i)}]}),
                             range(50)))
    assert len({o.stored.id for o in outs}) == 50
    assert store.count("Patient") == 50


def test_racing_conditional_creates_and_updates_make_one_resource(store: SqlStore) -> None:
    """50 threads, each its own unit of work: the conditional claim (Session.claim) makes one resource on
    SQLite and on PostgreSQL, and each conditional update one version (tests/cluster does it over HTTP)."""
    import threading

    rest = RestService(store, "http://testserver/fhir")
    gate = threading.Barrier(50)

    def create(i: int) -> int:
        gate.wait()
        return rest.create("Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:c", "value": "1"}]},
                           if_none_exist="identifier=urn:c|1").status

    def update(i: int) -> int:
        gate.wait()
        return int(rest.conditional_update("Patient", "identifier=urn:u|1", {
            "resourceType": "Patient", "identifier": [{"system": "urn:u", "value": "1"}],
            "name": [{"text": f"writer {i}"}]}).stored.version)

    with ThreadPoolExecutor(50) as pool:
        created = sorted(pool.map(create, range(50)))
    assert created == [200] * 49 + [201]
    gate.reset()
    with ThreadPoolExecutor(50) as pool:
        versions = sorted(pool.map(update, range(50)))
    assert versions == list(range(1, 51))
    assert store.count("Patient") == 2

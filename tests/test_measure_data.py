"""The store data port: prefetching a chunk of patients gives each patient exactly what the per-patient
compartment search gives, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from gateway.deqm.measure_data import StoreDataSource, prefetch
from gateway.store.sql.store import SqlStore


def _put(store: SqlStore, resources: list[dict[str, Any]]) -> None:
    with store.session() as tx:
        for r in resources:
            tx.write(r, "PUT")


def _obs(oid: str, subject: str, performer: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                         "code": {"text": "x"}, "subject": {"reference": subject}}
    if performer:
        r["performer"] = [{"reference": performer}]
    return r


def _ids(resources: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for r in resources)


def test_prefetch_matches_compartment_search(store: SqlStore) -> None:
    _put(store, [
        {"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"},
        {"resourceType": "Patient", "id": "p3"},
        _obs("o1", "Patient/p1"), _obs("o2", "Patient/p1"),
        _obs("o3", "Patient/p2", performer="Patient/p1"),  # in both compartments (performer is a compartment param)
        _obs("gone", "Patient/p1"),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"}},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "Patient/p3"}},
        # a Patient reference only in an element that is not a compartment parameter
        {"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": {"reference": "Group/g1"},
         "reasonReference": [{"reference": "Patient/p1"}]},
    ])
    with store.session() as tx:
        tx.delete("Observation", "gone")
    types = {"Observation", "Condition", "Encounter", "Procedure", "Patient"}
    data = prefetch(store, ["p1", "p2", "p3", "missing"], types)
    assert set(data) == {"p1", "p2", "p3", "missing"}
    assert data["missing"].patient is None
    assert _ids(data["p1"].by_type["Observation"]) == ["o1", "o2", "o3"]
    assert _ids(data["p2"].by_type["Observation"]) == ["o3"]
    assert data["p1"].by_type["Procedure"] == []  # reasonReference does not put it in p1's compartment
    for pid in ("p1", "p2", "p3"):
        lazy = StoreDataSource(store, pid)
        eager = StoreDataSource(store, pid, prefetched=data[pid])
        assert eager.patient() == lazy.patient()
        for t in sorted(types - {"Patient"}):
            assert _ids(eager.retrieve(t)) == _ids(lazy.retrieve(t)), (pid, t)
    # a type that was not prefetched still comes from the store
    _put(store, [{"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"}}])
    assert _ids(StoreDataSource(store, "p1", prefetched=data["p1"]).retrieve("AllergyIntolerance")) == ["a1"]

"""Libraries sent as CQL are translated on write under the writer's grant: an ``include`` of a Library the
writer may not read resolves to nothing (a translation warning), the stored Library it names is neither read
nor disclosed, and writing needs the create grant as before."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.security.worlds import issued_token, loaded_world

SECRET_CQL = "library Secret version '1'\ndefine function Hidden(): 'the-secret-formula'\n"
PROBE_CQL = "library Probe version '1'\ninclude Secret version '1' called S\ndefine A: S.Hidden()\n"
OO = {"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"}


def library(name: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Library", "id": name.lower(), "name": name, "version": "1", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                 "code": "logic-library"}]},
            "content": [{"contentType": "text/cql", "data": base64.b64encode(text.encode()).decode()}]}


@pytest.fixture()
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, [library("Secret", SECRET_CQL)]) as client:
        yield client


def test_no_grant_is_401(world: TestClient) -> None:
    assert world.post("/fhir/Library", json=library("Probe", PROBE_CQL), headers=OO).status_code == 401


def test_an_include_the_writer_may_not_read_is_not_resolved(world: TestClient) -> None:
    h = {**OO, **issued_token(world, "system/Library.c")}
    r = world.post("/fhir/Library", json=library("Probe", PROBE_CQL), headers=h)
    assert r.status_code == 201, r.text
    diagnostics = " ".join(i["diagnostics"] for i in r.json()["issue"])
    assert "could not load library Secret" in diagnostics
    assert "the-secret-formula" not in r.text


def test_a_readable_include_is_resolved(world: TestClient) -> None:
    h = {**OO, **issued_token(world, "system/Library.cr")}
    r = world.post("/fhir/Library", json=library("Probe", PROBE_CQL), headers=h)
    assert r.status_code == 201, r.text
    assert [i["severity"] for i in r.json()["issue"]] == ["information"]


def test_writing_still_needs_the_create_grant(world: TestClient) -> None:
    h = {**OO, **issued_token(world, "system/Library.r")}
    assert world.post("/fhir/Library", json=library("Probe", PROBE_CQL), headers=h).status_code == 403

"""A one-source query whose where clause compares the alias's id with a value that does not read the alias
(``[Encounter] E where E.id = reference.getId()``, how QI-Core measures follow references) is answered from
an index of the source's keys built once per evaluation (``ops_query._key_lookup``): the results equal those
of the query run row by row, whatever the data (duplicate ids, resources without an id, references that
match nothing or are missing), and the index is built once however many times the query runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.cql import ops_query
from gateway.cql.compiler import translate_library
from gateway.cql.datasource import BundleDataSource
from gateway.cql.datetime import parse_datetime
from gateway.cql.engine import Context, Engine
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.terminology import ValueSetIndex

TEXT = """library Lookup version '1'
using FHIR version '4.0.1'
context Patient
define function EncounterOf(ref FHIR.Reference):
  [Encounter] E where E.id = Last(Split(ref.reference.value, '/'))
define function EncounterBackwards(ref FHIR.Reference):
  [Encounter] E where Last(Split(ref.reference.value, '/')) = E.id.value
define function SameStatus(ref FHIR.Reference):
  [Encounter] E where E.status.value = 'finished' and E.id = Last(Split(ref.reference.value, '/'))
define Found: [Observation] O return { id: O.id.value, encounters: ((EncounterOf(O.encounter)) E return all E.id.value) }
define Backwards: [Observation] O return { id: O.id.value, encounters: ((EncounterBackwards(O.encounter)) E return all E.id.value) }
define Mixed: [Observation] O return { id: O.id.value, encounters: ((SameStatus(O.encounter)) E return all E.id.value) }
"""
NAMES = ["Found", "Backwards", "Mixed"]


def _obs(oid: str, encounter: str | None) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"},
                         "subject": {"reference": "Patient/p"}}
    if encounter is not None:
        r["encounter"] = {"reference": encounter}
    return r


def _enc(eid: str | None, status: str = "finished") -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Encounter", "status": status, "class": {"code": "AMB"},
                         "subject": {"reference": "Patient/p"}}
    if eid is not None:
        r["id"] = eid
    return r


DATA = [
    {"resourceType": "Patient", "id": "p"},
    _enc("e1"), _enc("e2", "in-progress"), _enc("dup"), _enc("dup", "cancelled"), _enc(None),
    _obs("o1", "Encounter/e1"), _obs("o2", "Encounter/e2"), _obs("o3", "Encounter/dup"),
    _obs("o4", "Encounter/nowhere"), _obs("o5", None),
]


def _evaluate(resources: list[dict[str, Any]]) -> dict[str, Any]:
    result = translate_library(TEXT)
    assert result.ok, [e.as_dict() for e in result.errors]
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(result.elm))
    ctx = Context(data=BundleDataSource(copy.deepcopy(resources)), terminology=ValueSetIndex(),
                  now=parse_datetime("2026-01-01T00:00:00.000Z"))
    return Engine(manager).evaluate(lib, NAMES, ctx)


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_query, "_key_lookup", lambda node, c: None)


def test_indexed_results_equal_row_by_row_results(monkeypatch: pytest.MonkeyPatch) -> None:
    indexed = _evaluate(DATA)
    _plain(monkeypatch)
    plain = _evaluate(DATA)
    assert indexed == plain
    found = {r["id"]: sorted(r["encounters"]) for r in indexed["Found"]}
    assert found == {"o1": ["e1"], "o2": ["e2"], "o3": ["dup", "dup"], "o4": [], "o5": []}
    assert {r["id"]: sorted(r["encounters"]) for r in indexed["Backwards"]} == found
    assert {r["id"]: sorted(r["encounters"]) for r in indexed["Mixed"]}["o2"] == []  # the rest of the where holds


def test_the_index_is_built_once_per_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    original = ops_query._key_lookup

    def counting(node: dict[str, Any], c: Any) -> Any:
        narrow = original(node, c)
        if narrow is None:
            return None

        def wrapped(ctx: Any, pending: list[Any]) -> list[Any]:
            before = {k for k in ctx.retrieve_cache if isinstance(k, tuple) and k[:1] == ("key-index",)}
            out = narrow(ctx, pending)
            after = {k for k in ctx.retrieve_cache if isinstance(k, tuple) and k[:1] == ("key-index",)}
            built.append(len(after - before))
            return out

        return wrapped

    monkeypatch.setattr(ops_query, "_key_lookup", counting)
    _evaluate(DATA)
    assert len(built) >= 10  # the lookups ran for the observations with an encounter reference ...
    # ... and the index of each of the two plain comparisons was built once (SameStatus, a comparison within
    # an ``and``, runs as written)
    assert sum(built) == 2


def test_queries_reading_the_alias_on_both_sides_are_not_indexed() -> None:
    text = """library NotIndexed version '1'
using FHIR version '4.0.1'
context Patient
define Self: [Encounter] E where E.id = E.id
"""
    result = translate_library(text)
    assert result.ok
    query = next(d for d in result.elm["library"]["statements"]["def"] if d["name"] == "Self")["expression"]
    assert ops_query._alias_path(query["where"]["operand"][0], "E")
    assert ops_query._reads(query["where"]["operand"][1], "E")

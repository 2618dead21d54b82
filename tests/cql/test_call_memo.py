"""Function results are kept per (function, arguments) within one evaluation (``ops_refs._memo_call``): the
results equal those of an evaluation without the memo, FHIR elements are told apart by identity (two resources
with equal content are two keys), values that have no stable key are not memoised, and an evaluation that
tracks the resources it reads (individual reports, ``evaluatedResource``) does not use the memo at all."""

from __future__ import annotations

import copy
from typing import Any

from gateway.cql.compiler import translate_library
from gateway.cql.datasource import BundleDataSource
from gateway.cql.datetime import parse_datetime
from gateway.cql.engine import Context, Engine
from gateway.cql.fhirmodel import Node
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.ops_refs import _call_key
from gateway.cql.terminology import ValueSetIndex

TEXT = """library Memo version '1'
using FHIR version '4.0.1'
context Patient
define function Status(e FHIR.Encounter): e.status.value
define function Twice(x Integer): x * 2
define Statuses: [Encounter] E return all Status(E)
define Pairs: [Encounter] E with [Encounter] F such that Status(E) = Status(F) and E.id.value != F.id.value
  return E.id.value
define Numbers: ({ 1, 2, 2, 3 }) N return all Twice(N)
define Listed: ({ { 1 }, { 1 } }) L return all Count(L)
"""
NAMES = ["Statuses", "Pairs", "Numbers", "Listed"]


def encounter(eid: str, status: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": status, "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p"}}


def evaluate(resources: list[dict[str, Any]], track: bool) -> tuple[dict[str, Any], Context]:
    result = translate_library(TEXT)
    assert result.ok, [e.as_dict() for e in result.errors]
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(result.elm))
    ctx = Context(data=BundleDataSource(copy.deepcopy(resources)), terminology=ValueSetIndex(),
                  now=parse_datetime("2026-01-01T00:00:00.000Z"), evaluated={} if track else None)
    return Engine(manager).evaluate(lib, NAMES, ctx), ctx


PATIENT = [{"resourceType": "Patient", "id": "p"}, encounter("a", "finished"), encounter("b", "finished"),
           encounter("c", "in-progress")]


def test_memoised_results_equal_unmemoised_ones() -> None:
    memo, ctx = evaluate(PATIENT, track=False)
    plain, tracked = evaluate(PATIENT, track=True)
    assert memo == plain
    assert sorted(memo["Statuses"]) == ["finished", "finished", "in-progress"]
    assert sorted(memo["Pairs"]) == ["a", "b"]
    assert memo["Numbers"] == [2, 4, 4, 6]
    assert memo["Listed"] == [1, 1]
    assert ctx.calls and not tracked.calls  # the tracking evaluation never memoises


def test_elements_are_keyed_by_identity_and_calls_repeat_from_the_memo() -> None:
    same = [{"resourceType": "Patient", "id": "p"}, encounter("x", "finished"), encounter("x", "finished")]
    out, ctx = evaluate(same, track=False)
    assert out["Statuses"] == ["finished", "finished"]
    status_keys = [k for k in ctx.calls if isinstance(k[1], tuple) and k[1][1] == "Encounter"]
    assert len(status_keys) == 2  # two resources of equal content: two entries, each computed once
    numbers = [k for k in ctx.calls if k[1:] in (((int, 1),), ((int, 2),), ((int, 3),))]
    assert len(numbers) == 3  # Twice(2) twice: one entry
    for args, _ in ctx.calls.values():  # the memo holds its arguments: no identity is reused while it lives
        assert all(a is None or isinstance(a, (Node, int, str, bool)) for a in args)


def test_values_without_a_stable_key_are_not_memoised() -> None:
    assert _call_key("f", [[1]]) is None
    assert _call_key("f", [{"a": 1}]) is None
    assert _call_key("f", [1]) != _call_key("f", [True])  # equal in Python, different CQL values
    node = Node({"status": "finished"}, "Encounter")
    assert _call_key("f", [node]) == _call_key("f", [Node(node.value, "Encounter")])
    assert _call_key("f", [node]) != _call_key("f", [Node(dict(node.value), "Encounter")])

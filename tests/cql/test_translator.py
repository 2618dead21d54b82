"""Our CQL-to-ELM translator (``gateway/cql/compiler``): syntax and semantic errors with line and column,
libraries with functions, parameters, terminology and queries run by the engine, and end-to-end parity on the
HL7 CQL conformance suite: every test's CQL text translated by us and evaluated by the engine gives the same
outcome as the fixture ELM from the reference translator (``docs/cql-translator.md`` is the generated table).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.cql.compiler import translate_library
from gateway.cql.compiler.parity import (
    DOC_END,
    DOC_START,
    KNOWN_DIFFERENCES,
    SAME,
    ParityResult,
    render_section,
    run_parity,
)
from gateway.cql.conformance import load_suite
from gateway.cql.datasource import BundleDataSource
from gateway.cql.datetime import parse_datetime
from gateway.cql.engine import Context, Engine
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.terminology import ValueSetIndex
from tests.conftest import ROOT, SHARED, require_shared

SUITE = SHARED / "testdata" / "cql-tests"
DOC = ROOT / "docs" / "cql-translator.md"


def run_cql(text: str, names: list[str], **parameters: Any) -> dict[str, Any]:
    """Translate ``text`` with our translator (it must translate cleanly), then evaluate ``names``."""
    result = translate_library(text)
    assert result.ok, [e.as_dict() for e in result.errors]
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(result.elm))
    ctx = Context(data=BundleDataSource([]), terminology=ValueSetIndex(), parameters=parameters,
                  now=parse_datetime("2026-01-01T00:00:00.000Z"))
    return Engine(manager).evaluate(lib, names, ctx)


def test_syntax_error_has_line_and_column() -> None:
    result = translate_library("library L\n\ndefine A: 1 +\ndefine B: 2")
    assert result.elm is None
    (e,) = result.errors
    assert (e.line, e.col) == (4, 1), e
    assert "expected an expression" in e.message


def test_semantic_errors_are_per_definition_with_position() -> None:
    result = translate_library("library L\ndefine Good: 1 + 1\ndefine Bad:\n  Good + 'text'\ndefine Unknown: Nope")
    assert result.elm is not None
    by_name = {e.statement: e for e in result.errors}
    assert set(by_name) == {"Bad", "Unknown"}
    assert (by_name["Bad"].line, by_name["Bad"].col) == (4, 8)
    assert "Add" in by_name["Bad"].message and "String" in by_name["Bad"].message
    assert (by_name["Unknown"].line, by_name["Unknown"].col) == (5, 17)
    names = [d["name"] for d in result.elm["library"]["statements"]["def"]]
    assert names == ["Good"]


def test_precedence_and_implicit_conversions() -> None:
    out = run_cql("""library L
define Arith: 2 + 3 * 4 ^ 2 - -1
define Mixed: 1 + 0.5
define LongMix: 1 * 1L
define Logic: not false and true or false implies true
define Between: 5 between 1 and 4 + 1
define Cmp: 1 < 2 = true
define Concat: 'a' & null & 'b'
""", ["Arith", "Mixed", "LongMix", "Logic", "Between", "Cmp", "Concat"])
    assert out == {"Arith": 51, "Mixed": Decimal("1.5"), "LongMix": 1, "Logic": True, "Between": True,
                   "Cmp": True, "Concat": "ab"}
    elm = translate_library("define Mixed: 1 + 0.5").elm
    assert elm is not None
    add = elm["library"]["statements"]["def"][0]["expression"]
    assert add["type"] == "Add" and add["operand"][0]["type"] == "ToDecimal"


def test_library_with_functions_parameters_terminology_and_queries() -> None:
    text = """library Demo version '1.0.0'
using FHIR version '4.0.1'
codesystem "LOINC": 'http://loinc.org'
code "Glucose": '2345-7' from "LOINC" display 'Glucose'
parameter Threshold Integer default 3
define function Double(x Integer) returns Integer: x * 2
define fluent function plus(x Integer, y Integer): x + y
define Numbers: { 5, 1, 4, 2, 3 }
define Big: Numbers N where N > Threshold return Double(N) sort desc
define Paired: from Numbers A, ({ 1, 2 }) B where A = B return A + B
define WithLet: Numbers N let M: N.plus(10) with ({ 4 }) F such that F = N return M
define Without: Numbers N without ({ 1, 2, 3 }) F such that F = N sort asc
define Total: Numbers N aggregate all S starting 0: S + N
define Tuples: ({ Tuple { k: 2, v: 'b' }, Tuple { k: 1, v: 'a' } }) T sort by k
define CodeValue: "Glucose".code
define Inside: Interval[@2024-01-01, @2024-12-31] includes @2024-06-15
define Timing: @2024-01-10 3 days or less after @2024-01-08
"""
    out = run_cql(text, ["Big", "Paired", "WithLet", "Without", "Total", "Tuples", "CodeValue", "Inside", "Timing"])
    assert out["Big"] == [10, 8]
    assert out["Paired"] == [2, 4]
    assert out["WithLet"] == [14]
    assert out["Without"] == [4, 5]
    assert out["Total"] == 15
    assert [t["v"] for t in out["Tuples"]] == ["a", "b"]
    assert out["CodeValue"] == "2345-7"
    assert out["Inside"] is True and out["Timing"] is True
    assert run_cql(text, ["Big"], Threshold=4)["Big"] == [10]


def test_translation_is_json_ready_elm() -> None:
    result = translate_library("library L\ndefine Q: 5 'mg'\ndefine D: @2024-03-01T10:30:00.000-05:00")
    assert result.elm is not None
    lib = result.elm["library"]
    assert lib["identifier"] == {"id": "L"}
    q, d = lib["statements"]["def"]
    assert q["expression"] == {"type": "Quantity", "value": Decimal("5"), "unit": "mg",
                               "resultTypeName": "{urn:hl7-org:elm-types:r1}Quantity"}
    assert d["expression"]["timezoneOffset"]["value"] == "-5.0"
    assert d["expression"]["minute"]["value"] == "30"


def test_or_less_offset_needs_a_known_boundary() -> None:
    """``ends 1 hour or less on or before start of B`` is false, not null, when B's start is unknown (the spec's
    and the reference translator's ``and start of B is not null``); with a known start it is the range test."""
    text = """library L
define Known: Interval[@2026-01-01T09:00:00, @2026-01-01T09:30:00]
  ends 1 hour or less on or before start of Interval[@2026-01-01T10:00:00, @2026-01-01T11:00:00]
define TooEarly: Interval[@2026-01-01T07:00:00, @2026-01-01T08:30:00]
  ends 1 hour or less on or before start of Interval[@2026-01-01T10:00:00, @2026-01-01T11:00:00]
define UnknownStart: Interval[@2026-01-01T09:00:00, @2026-01-01T09:30:00]
  ends 1 hour or less on or before start of Interval(null as DateTime, @2026-01-01T11:00:00]
"""
    assert run_cql(text, ["Known", "TooEarly", "UnknownStart"]) == {
        "Known": True, "TooEarly": False, "UnknownStart": False}


def test_collapse_per_precision_is_a_decimal_quantity() -> None:
    """``collapse X per day`` writes the Quantity ``1.0 'day'`` the reference writes (a Quantity's value is a
    Decimal)."""
    result = translate_library("library L\ndefine C: collapse { Interval[@2026-01-01, @2026-01-03] } per day")
    assert result.ok
    (c,) = result.elm["library"]["statements"]["def"]
    per = c["expression"]["operand"][1]
    assert per["type"] == "Quantity" and per["unit"] == "day"
    assert str(per["value"]) == "1.0"


def test_union_chain_grouped_in_pairs() -> None:
    """``A union B union C union D union E`` is grouped as the reference translator groups it, neighbours in
    pairs and the pairs from left to right, and still evaluates to every distinct element."""
    text = "library L\ndefine U: {1} union {2} union {3} union {2, 4} union {5}\n"
    result = translate_library(text)
    assert result.ok

    def shape(n: dict[str, Any]) -> Any:
        if n["type"] == "Union":
            return [shape(o) for o in n["operand"]]
        return int(n["element"][-1]["value"])

    (u,) = result.elm["library"]["statements"]["def"]
    assert shape(u["expression"]) == [[[1, 2], [3, 4]], 5]
    assert run_cql(text, ["U"]) == {"U": [1, 2, 3, 4, 5]}


@pytest.fixture(scope="module")
def parity() -> list[ParityResult]:
    require_shared()
    results, _ = run_parity(load_suite(SUITE))
    return results


def test_parity_with_the_reference_translator(parity: list[ParityResult]) -> None:
    """Every suite test gives the same outcome from its CQL text as from the fixture ELM, except the listed
    differences (each with its reason, and each must still differ)."""
    assert len(parity) == 1823
    differing = {r.test.key: r for r in parity if r.verdict != SAME}
    unexplained = {k: (r.verdict, r.fixture.status, r.ours.status, r.our_errors or r.ours.detail)
                   for k, r in differing.items() if k not in KNOWN_DIFFERENCES}
    assert not unexplained
    assert set(KNOWN_DIFFERENCES) <= set(differing), "a listed difference is gone: drop it from the list"


def test_parity_doc_matches_run(parity: list[ParityResult]) -> None:
    """docs/cql-translator.md holds this run's table (``python tools/cql_translator_parity.py`` rewrites it)."""
    doc = DOC.read_text()
    section = DOC_START + doc.split(DOC_START, 1)[1].split(DOC_END, 1)[0] + DOC_END
    assert section == render_section(parity)


def test_hostile_text_gives_diagnostics_not_crashes() -> None:
    deep = translate_library("define A: " + "(" * 5000 + "1" + ")" * 5000)
    assert deep.elm is None and "nested too deeply" in deep.errors[0].message
    for text in ("define A: 'unterminated", "define A: @2024-13-01", "define A: 1 +* 2", "define \"A\": [",
                 "define A: Interval[1, 'a']"):
        result = translate_library(text)
        assert result.errors and all(e.line >= 1 and e.col >= 1 for e in result.errors), text

"""Run the HL7 CQL engine conformance suite (``cqframework/cql-tests``, translated to ELM JSON) through the engine.

The suite lives in ``../shared/testdata/cql-tests`` (one JSON file per suite XML file; its README gives the
format). Each test is one CQL expression with its expected output, both translated to ELM definitions. The
rules, from the suite's schema and the fixture README:

- a value test (``invalid`` absent or ``false``) passes when the result matches the expected output (see
  ``same_result``);
- ``invalid="true"`` expects an error while the expression is evaluated. An error raised earlier, by the
  translator refusing the expression or the engine refusing to compile it, also counts: the expression does
  not produce a value, which is what the test checks;
- ``invalid="semantic"`` / ``"syntax"`` expect the expression to be refused before evaluation: by the
  translator (the ELM is missing) or by the engine when it compiles the definition.

A test is *not applicable* when it is listed in ``NOT_APPLICABLE`` with the reason (the spec section that makes
it so). Such a test is still run, and reported as not applicable, never as passed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .datasource import BundleDataSource
from .datetime import parse_datetime
from .engine import Context, Engine
from .library import ElmLibrary, LibraryManager
from .terminology import ValueSetIndex

#: The evaluation instant of ``Now()`` / ``Today()`` in the suite runs (no test depends on its value, only
#: on it being fixed for the whole evaluation)
EVALUATION_NOW = "2026-01-01T00:00:00.000Z"

PASSED, FAILED, ERRORED, NOT_APPLICABLE = "passed", "failed", "errored", "not applicable"


@dataclass(frozen=True)
class SuiteTest:
    """One test of the suite: where it is, what it expects and its ELM."""

    file: str  # suite file stem, e.g. CqlArithmeticFunctionsTest
    group: str
    name: str
    record: dict[str, Any]
    template: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.file}/{self.group}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    """What running one test gave: the status and, unless it passed, why."""

    test: SuiteTest
    status: str
    detail: str = ""


def load_suite(folder: Path) -> list[SuiteTest]:
    """Every test of every suite file in ``folder``, in file then suite order. Decimals keep their scale."""
    out: list[SuiteTest] = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text(), parse_float=Decimal)
        for rec in doc["tests"]:
            out.append(SuiteTest(path.stem, rec["group"], rec["name"], rec, doc["elm_library_template"]))
    return out


def load_not_applicable(path: Path) -> dict[str, str]:
    """The checked-in list of tests that do not apply: ``file/group/name`` -> reason."""
    data = json.loads(path.read_text())
    return {entry["test"]: entry["reason"] for entry in data["tests"]}


def load_not_applicable_kinds(path: Path) -> dict[str, str]:
    """The kind of reason of each listed test (``file/group/name`` -> kind), for the summary by kind."""
    data = json.loads(path.read_text())
    return {entry["test"]: entry["kind"] for entry in data["tests"]}


def _library(test: SuiteTest) -> ElmLibrary:
    defs = [d for d in [test.record.get("elm_expression"), *(test.record.get("elm_outputs") or [])] if d]
    return ElmLibrary.from_elm({"library": {**test.template, "statements": {"def": defs}}})


def _context() -> Context:
    # strict_messages: a Message with severity Error stops evaluation, as the spec says (§ Message); the
    # measure runs keep the lenient default the published eCQM results were computed with
    return Context(data=BundleDataSource([]), terminology=ValueSetIndex(), now=parse_datetime(EVALUATION_NOW),
                   strict_messages=True)


def run_test(test: SuiteTest) -> Outcome:
    """Compile and evaluate one test, classify the result (without the not-applicable list)."""
    rec = test.record
    invalid = rec.get("invalid")
    if invalid in ("semantic", "syntax"):
        return _expect_refusal(test)
    if rec.get("elm_expression") is None:
        errors = "; ".join(e["message"] for e in rec.get("translation_errors") or [])
        if invalid == "true":
            return Outcome(test, PASSED, f"refused by the translator: {errors}")
        return Outcome(test, ERRORED, f"the translator refused the expression: {errors}")
    manager = LibraryManager()
    lib = manager.add(_library(test))
    engine = Engine(manager)
    comp = engine.compiler(lib)
    if invalid == "true":
        try:
            value = comp.definition("Expression")(_context())
        except Exception as exc:  # noqa: BLE001 - any error is what the test expects
            return Outcome(test, PASSED, f"{type(exc).__name__}: {exc}")
        return Outcome(test, FAILED, f"expected an error, got {show(value)}")
    if not rec.get("elm_outputs") or rec["elm_outputs"][0] is None:
        return Outcome(test, ERRORED, "the expected output did not translate")
    try:
        expected = comp.definition("Output0")(_context())
    except Exception as exc:  # noqa: BLE001
        return Outcome(test, ERRORED, f"expected output fails: {type(exc).__name__}: {exc}")
    try:
        value = comp.definition("Expression")(_context())
    except Exception as exc:  # noqa: BLE001 - reported, the suite goes on
        return Outcome(test, ERRORED, f"{type(exc).__name__}: {exc}")
    if same_result(value, expected):
        return Outcome(test, PASSED)
    return Outcome(test, FAILED, f"expected {show(expected)}, got {show(value)}")


def _expect_refusal(test: SuiteTest) -> Outcome:
    rec = test.record
    if rec.get("elm_expression") is None:
        errors = "; ".join(e["message"] for e in rec.get("translation_errors") or [])
        return Outcome(test, PASSED, f"refused by the translator: {errors}")
    manager = LibraryManager()
    lib = manager.add(_library(test))
    try:
        Engine(manager).compiler(lib).definition("Expression")
    except Exception as exc:  # noqa: BLE001 - a refusal is what the test expects
        return Outcome(test, PASSED, f"refused at compile time: {type(exc).__name__}: {exc}")
    return Outcome(test, FAILED, "expected the expression to be refused before evaluation; it compiled")


def same_result(actual: Any, expected: Any) -> bool:
    """The pass rule: CQL equivalence (§12.4 Equivalent) of the result and the expected output, made stricter
    where equivalence would hide a wrong result: strings must be equal (equivalence ignores case and
    whitespace, so ``Upper('a')`` would match ``'a'``), decimals must be equal in value (equivalence rounds to
    the fewer decimal places of the two, so ``0.3`` would match ``0.33333333``), and the types must agree
    except that an Integer matches the Decimal of the same value (implicit conversion) and an uncertainty
    (a duration between values of different precisions, §"Uncertainty") matches the closed interval the
    suite writes for it."""
    from .ops_comparison import cql_equivalent

    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, (int, Decimal)) and isinstance(expected, (int, Decimal)):
        return actual == expected  # by value: 10 matches 10.0 (Integer converts implicitly to Decimal)
    if isinstance(actual, (int, Decimal, str)) or isinstance(expected, (int, Decimal, str)):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, list) or isinstance(expected, list):
        return (isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected)
                and all(same_result(a, e) for a, e in zip(actual, expected, strict=True)))
    if isinstance(actual, dict) or isinstance(expected, dict):
        return (isinstance(actual, dict) and isinstance(expected, dict) and set(actual) == set(expected)
                and all(same_result(actual[k], expected[k]) for k in actual))
    if type(actual) is not type(expected) and {type(actual).__name__, type(expected).__name__} not in (
            {"Uncertainty", "Interval"}, {"Date", "DateTime"}):  # uncertainty as interval; Date converts
        return False
    parts = _parts(actual)
    if parts is not None:
        other = _parts(expected)
        return other is not None and len(parts) == len(other) and all(
            same_result(a, e) for a, e in zip(parts, other, strict=True))
    return cql_equivalent(actual, expected)


def _parts(v: Any) -> list[Any] | None:
    """The components of an interval, quantity or ratio, compared one by one with ``same_result``."""
    name = type(v).__name__
    if name == "Interval":
        return [v.low, v.high, v.low_closed, v.high_closed]
    if name == "Uncertainty":  # a duration between values of different precisions: the closed range it spans
        return [v.low, v.high, True, True]
    if name == "Quantity":
        return [v.value, v.unit]
    if name == "Ratio":
        return [v.numerator, v.denominator]
    return None


def show(v: Any) -> str:
    """A short readable form of a value for failure messages."""
    text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


def run_suite(tests: list[SuiteTest], not_applicable: dict[str, str]) -> Iterator[Outcome]:
    """Run every test; listed tests come out as not applicable (with their reason), whatever they gave."""
    for test in tests:
        outcome = run_test(test)
        if test.key in not_applicable:
            yield Outcome(test, NOT_APPLICABLE, not_applicable[test.key])
        else:
            yield outcome


DOC_HEADER = """# CQL engine: HL7 conformance suite

Generated by `python tools/cql_conformance.py` from the HL7 CQL engine conformance suite
(`cqframework/cql-tests`, 16 files, 1,823 tests) as translated to ELM JSON in `../shared/testdata/cql-tests`
(loaded from there, not copied into this repository; its README gives the format and the translator).
`tests/cql/test_conformance_suite.py` runs every test as its own pytest case and asserts that this page matches
the run.

How a test is judged (`gateway/cql/conformance.py`):

- **value tests**: the expression and the expected output are both evaluated; the test passes when the two
  are the same value: CQL equivalence (§12.4 Equivalent), made stricter where equivalence would hide a wrong
  result (strings must be equal, not equal ignoring case; decimals equal in value, not after rounding to the
  less precise; types must agree), except that an Integer matches the Decimal of the same value and a Date
  the DateTime it converts to (implicit conversions), and an uncertainty (a duration between values of
  different precisions) matches the closed interval the suite writes for it;
- **`invalid="true"`**: passes when evaluation raises an error. A translator refusal (no ELM) or a compile-time
  refusal counts too: the expression yields no value either way;
- **`invalid="semantic"` / `"syntax"`**: passes when the expression is refused before evaluation, by the
  translator or when the engine compiles it (e.g. an Integer literal out of range);
- the suite runs with `strict_messages`: a `Message` with severity `Error` stops evaluation (§ Message). The
  measure runs keep the engine's lenient default (`docs/measures.md`, "Engine decisions").

A test is **not applicable** only when it is listed, with the reason, in
`tests/fixtures/cql-conformance-not-applicable.json`: it is still run and reported here as not applicable,
never counted as passed. **Failed** means a wrong result, **errored** an unexpected error.

"""


def render(outcomes: list[Outcome], total_tests: int, kinds: dict[str, str]) -> str:
    """The Markdown page of a suite run: per-file counts, totals, the not-applicable tests by kind of reason
    and one by one with their reasons, and every failure or error with its detail."""
    files: dict[str, dict[str, int]] = {}
    for o in outcomes:
        counts = files.setdefault(o.test.file, {PASSED: 0, FAILED: 0, ERRORED: 0, NOT_APPLICABLE: 0})
        counts[o.status] += 1
    totals = {s: sum(c[s] for c in files.values()) for s in (PASSED, FAILED, ERRORED, NOT_APPLICABLE)}
    applicable = total_tests - totals[NOT_APPLICABLE]
    lines = [DOC_HEADER.rstrip("\n"), "",
             f"**{totals[PASSED]:,} of {total_tests:,} tests pass** ({totals[PASSED] / total_tests:.1%}); "
             f"{totals[NOT_APPLICABLE]} are not applicable (reasons below), so {totals[PASSED]:,} of the "
             f"{applicable:,} applicable tests pass; {totals[FAILED]} fail and {totals[ERRORED]} error.", "",
             "| file | tests | passed | failed | errored | not applicable |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in sorted(files.items()):
        lines.append(f"| {name} | {sum(c.values())} | {c[PASSED]} | {c[FAILED]} | {c[ERRORED]} | "
                     f"{c[NOT_APPLICABLE]} |")
    lines.append(f"| **total** | **{total_tests}** | **{totals[PASSED]}** | **{totals[FAILED]}** | "
                 f"**{totals[ERRORED]}** | **{totals[NOT_APPLICABLE]}** |")
    listed = [o for o in outcomes if o.status == NOT_APPLICABLE]
    by_kind = Counter(kinds.get(o.test.key, "unclassified") for o in listed)
    lines += ["", "## Not applicable", "", "| kind of reason | tests |", "|---|---:|"]
    lines += [f"| {kind} | {n} |" for kind, n in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "| test | reason |", "|---|---|"]
    lines += [f"| {o.test.key} | {_cell(o.detail)} |" for o in listed]
    broken = [o for o in outcomes if o.status in (FAILED, ERRORED)]
    lines += ["", "## Failed and errored", ""]
    if broken:
        lines += ["| test | status | detail |", "|---|---|---|"]
        lines += [f"| {o.test.key} | {o.status} | {_cell(o.detail)} |" for o in broken]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

"""The HL7 CQL engine conformance suite (``cqframework/cql-tests``, 1,823 tests translated to ELM JSON in
``../shared/testdata/cql-tests``) through the engine: one pytest case per suite test.

Every test must pass, except those listed with a reason in ``tests/fixtures/cql-conformance-not-applicable.json``;
a listed test is still run, and the list may not hide a test that passes. ``docs/cql-conformance.md`` is the
generated pass table (``python tools/cql_conformance.py``); a test asserts it matches this run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.cql.conformance import (
    NOT_APPLICABLE,
    PASSED,
    Outcome,
    load_not_applicable,
    load_not_applicable_kinds,
    load_suite,
    render,
    run_test,
    same_result,
)
from gateway.cql.datetime import Uncertainty, parse_date, parse_datetime
from gateway.cql.interval import Interval
from tests.conftest import FIXTURES, ROOT, SHARED, require_shared

SUITE = SHARED / "testdata" / "cql-tests"
NA_FILE = FIXTURES / "cql-conformance-not-applicable.json"
DOC = ROOT / "docs" / "cql-conformance.md"
SUITE_SIZE = 1823


def _keys() -> list[str]:
    """The suite's test keys for parametrization (one placeholder when the corpus is absent, so the module
    reports the named skip, or fails under CI=true, instead of collecting nothing)."""
    if not SUITE.is_dir():
        return ["<suite missing>"]
    return [t.key for t in load_suite(SUITE)]


@pytest.fixture(scope="module")
def run() -> dict[str, tuple[Outcome, Outcome]]:
    """Every suite test run once (each library compiled once): key -> (raw outcome, reported outcome)."""
    require_shared()
    not_applicable = load_not_applicable(NA_FILE)
    out: dict[str, tuple[Outcome, Outcome]] = {}
    for test in load_suite(SUITE):
        raw = run_test(test)
        reported = Outcome(test, NOT_APPLICABLE, not_applicable[test.key]) if test.key in not_applicable else raw
        out[test.key] = (raw, reported)
    return out


@pytest.mark.parametrize("key", _keys())
def test_suite_case(key: str, run: dict[str, tuple[Outcome, Outcome]]) -> None:
    """One suite test: it passes, or it is listed as not applicable (and then it does not pass by itself)."""
    raw, reported = run[key]
    if reported.status == NOT_APPLICABLE:
        assert raw.status != PASSED, f"{key} is listed as not applicable but passes: drop it from the list"
        return
    assert raw.status == PASSED, f"{key}: {raw.status}: {raw.detail} (expression: {raw.test.record['expression']})"


def test_suite_is_complete(run: dict[str, tuple[Outcome, Outcome]]) -> None:
    """All 1,823 tests are there, and every not-applicable entry names a real test and gives a reason."""
    assert len(run) == SUITE_SIZE
    not_applicable = load_not_applicable(NA_FILE)
    assert set(not_applicable) <= set(run), sorted(set(not_applicable) - set(run))
    assert all(len(reason) > 40 for reason in not_applicable.values())
    assert set(load_not_applicable_kinds(NA_FILE)) == set(not_applicable)


def test_doc_matches_run(run: dict[str, tuple[Outcome, Outcome]]) -> None:
    """docs/cql-conformance.md is what the generator writes for this run (regenerate it with
    ``python tools/cql_conformance.py`` after an engine change)."""
    page = render([reported for _, reported in run.values()], len(run), load_not_applicable_kinds(NA_FILE))
    assert DOC.read_text() == page, "docs/cql-conformance.md is stale: run python tools/cql_conformance.py"


@pytest.mark.parametrize(("actual", "expected", "same"), [
    ("ABC", "abc", False),  # equivalence would ignore case
    ("a b", "a\tb", False),
    (Decimal("0.3"), Decimal("0.33333333"), False),  # equivalence would round to one place
    (Decimal("1.0"), Decimal("1.00"), True),
    (10, Decimal("10.0"), True),
    (True, 1, False),
    (None, None, True),
    (None, False, False),
    ([1, 2], [1, 2], True),
    ([1, 2], [2, 1], False),
    ({"a": "x"}, {"a": "X"}, False),
    (Uncertainty(4, 5), Interval(4, 5), True),
    (Uncertainty(4, 5), Interval(4, 6), False),
    (parse_datetime("2012-01-01"), parse_date("2012-01-01"), True),
    (Interval(1, 5), Interval(1, 5, True, False), False),
])
def test_pass_rule(actual: Any, expected: Any, same: bool) -> None:
    """The pass rule is CQL equivalence made stricter where equivalence hides wrong results."""
    assert same_result(actual, expected) is same

"""Every eCQM test case in ../shared/testdata/ecqm: the engine's individual report must match the expected
population counts (and measure observations). Corrected expectations, where the published report contradicts
the CQL, come from tests/fixtures/ecqm-expectation-overrides.json with their evidence (docs/measures.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from gateway.measure.cases import MeasureFixture, case_paths, load_measure, load_overrides, run_case
from tests.conftest import FIXTURES, SHARED, require_shared

ECQM = SHARED / "testdata" / "ecqm"
OVERRIDES = load_overrides(FIXTURES / "ecqm-expectation-overrides.json")
MEASURES = sorted(p.name for p in ECQM.iterdir() if (p / "measure-bundle.json").exists()) if ECQM.exists() else []
CASES = [(m, p.stem) for m in MEASURES for p in case_paths(ECQM / m)]


@cache
def fixture(measure: str) -> MeasureFixture:
    return load_measure(ECQM / measure)


def test_corpus_is_there() -> None:
    require_shared()
    assert len(MEASURES) == 8 and len(CASES) == 495


@pytest.mark.parametrize(("measure", "case"), CASES, ids=[f"{m}-{c[:8]}" for m, c in CASES])
def test_case(measure: str, case: str) -> None:
    result = run_case(fixture(measure), ECQM / measure / "tests" / f"{case}.json", OVERRIDES)
    assert result.error is None, result.error
    assert result.actual == result.expected, result.description
    # the published reports list every resource of the case the measure logic touched (MADiE lists them
    # generously); the engine's evaluatedResource must never name a resource outside that list
    assert result.evaluated and set(result.evaluated) <= set(result.published_evaluated), \
        sorted(set(result.evaluated) - set(result.published_evaluated))


def test_overrides_name_real_cases_that_still_differ_from_the_publication() -> None:
    for (measure, case), o in OVERRIDES.items():
        path = Path(ECQM / measure / "tests" / f"{case}.json")
        assert path.exists(), case
        r = run_case(fixture(measure), path, OVERRIDES)
        assert r.published is not None and r.published != o["expected"], case

"""The eCQM corpus from CQL text alone: every Library of the 8 measure bundles is stripped of its published ELM
and translated by our translator from its ``text/cql``; every one of the 495 test cases must then give the
populations the published ELM gives (the expectations of tests/test_ecqm_cases.py, with the same overrides,
which record what the published ELM computes where the published report contradicts the CQL)."""

from __future__ import annotations

import json
from functools import cache

import pytest

from gateway.cql.compiler.fidelity import DOC_END as FIDELITY_END
from gateway.cql.compiler.fidelity import DOC_START as FIDELITY_START
from gateway.cql.compiler.fidelity import compare, explain, render_section
from gateway.cql.compiler.resources import ELM_TYPE, content_type, translate_resources
from gateway.cql.engine import Engine
from gateway.cql.library import LibraryManager
from gateway.measure.cases import MeasureFixture, case_paths, load_measure, load_overrides, run_case
from tests.conftest import FIXTURES, ROOT, SHARED, require_shared

ECQM = SHARED / "testdata" / "ecqm"
OVERRIDES = load_overrides(FIXTURES / "ecqm-expectation-overrides.json")
MEASURES = sorted(p.name for p in ECQM.iterdir() if (p / "measure-bundle.json").exists()) if ECQM.exists() else []


@cache
def text_fixture(measure: str) -> MeasureFixture:
    """The measure with every Library's ELM replaced by our translation of its CQL."""
    published = load_measure(ECQM / measure)
    bundle = json.loads((ECQM / measure / "measure-bundle.json").read_text())
    stripped = []
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Library":
            r = {**r, "content": [a for a in r.get("content") or [] if content_type(a) != ELM_TYPE]}
        stripped.append(r)
    resources, report = translate_resources(stripped)
    errors = [f"{t.name} {e.line}:{e.col} {e.message}" for t in report for e in t.errors]
    assert not errors, errors
    assert all(any(content_type(a) == ELM_TYPE for a in r["content"]) for r in resources
               if r["resourceType"] == "Library")
    manager = LibraryManager()
    manager.add_resources(resources)
    library = manager.by_canonical(published.measure.library_url)
    return MeasureFixture(published.name, published.measure, manager, Engine(manager), library,
                          published.terminology)


@pytest.mark.parametrize("measure", MEASURES or ["<corpus missing>"])
def test_measure_from_cql_text(measure: str) -> None:
    """Every case of the measure gives the published ELM's populations from our translation."""
    require_shared()
    fixture = text_fixture(measure)
    wrong = {}
    for path in case_paths(ECQM / measure):
        result = run_case(fixture, path, OVERRIDES)
        if result.error is not None or result.actual != result.expected:
            wrong[path.stem] = result.error or (result.actual, result.expected)
    assert not wrong


def test_corpus_is_complete() -> None:
    require_shared()
    assert len(MEASURES) == 8
    assert sum(len(case_paths(ECQM / m)) for m in MEASURES) == 495


def test_elm_fidelity_every_difference_explained() -> None:
    """Every published eCQM definition is identical to our translation or differs only in the documented
    categories (``python tools/cql_translator_fidelity.py``), and docs/cql-translator.md holds this run's
    report."""
    require_shared()
    defs = compare(ECQM)
    assert len(defs) == 359
    left = [f"{d.library}.{d.name}: {d.difference}" for d in defs if not d.identical and not d.categories]
    assert not left
    doc = (ROOT / "docs" / "cql-translator.md").read_text()
    section = doc[doc.index(FIDELITY_START):doc.index(FIDELITY_END) + len(FIDELITY_END)]
    assert section == render_section(defs)


def test_fidelity_rewrites_explain_only_what_they_name() -> None:
    """A conversion written at another place is explained by its category; a different literal is not, and a
    category that is not needed is not reported."""
    status = {"type": "Property", "path": "status", "scope": "E"}
    converted = {"type": "FunctionRef", "name": "ToString", "libraryName": "FHIRHelpers", "operand": [status]}

    def equal(left: object, text: str) -> dict[str, object]:
        return {"type": "Equal", "operand": [
            left, {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}String", "value": text}]}

    ours = {"name": "D", "expression": equal(status, "finished")}
    assert explain(ours, {"name": "D", "expression": equal(converted, "finished")}) == (
        True, ("conversion-placement",), "")
    ok, categories, where = explain(ours, {"name": "D", "expression": equal(converted, "planned")})
    assert not ok and categories == ()
    assert "finished" in where and "planned" in where
    assert explain(ours, {"name": "D", "expression": equal(status, "finished")}) == (True, (), "")

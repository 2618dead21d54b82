"""The eCQM corpus with every ValueSet.expansion stripped from the measure bundles.

The published value sets in ../shared/testdata/ecqm carry only an expansion: not one has a compose, and the
bundles hold no CodeSystem, so nothing intensional (a filter over SNOMED CT or LOINC) can be recomputed
here. Two runs follow from that:

- stripped outright, no value set can be computed: the engine must report each one as unusable (never
  answer membership as an empty set), and a case that needs one must fail with the value set named;
- stripped and rewritten as the extensional compose it stands for (``compose.include`` by concept list,
  one include per system and version), the expansions the terminology kernel computes must give every case
  the same populations as the run on the published expansions, and the published expectations.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import cache
from typing import Any

import pytest

from gateway.cql.terminology import ValueSetIndex
from gateway.measure.cases import MeasureFixture, case_paths, load_measure, load_overrides, run_case
from tests.conftest import FIXTURES, SHARED, make_client, require_shared
from tests.test_evaluate_measure import load_measure as load_stored
from tests.test_evaluate_measure import measure_id, run_cases

ECQM = SHARED / "testdata" / "ecqm"
OVERRIDES = load_overrides(FIXTURES / "ecqm-expectation-overrides.json")
MEASURES = sorted(p.name for p in ECQM.iterdir() if (p / "measure-bundle.json").exists()) if ECQM.exists() else []


def valuesets(measure: str) -> list[dict[str, Any]]:
    bundle = json.loads((ECQM / measure / "measure-bundle.json").read_text())
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ValueSet"]


def as_compose(vs: dict[str, Any]) -> dict[str, Any]:
    """The value set with its expansion replaced by the extensional compose it lists."""
    out = {k: v for k, v in copy.deepcopy(vs).items() if k != "expansion"}
    groups: dict[tuple[str | None, str | None], list[dict[str, Any]]] = {}

    def walk(contains: list[dict[str, Any]]) -> None:
        for c in contains:
            if c.get("code") and not c.get("abstract"):
                groups.setdefault((c.get("system"), c.get("version")), []).append(
                    {k: c[k] for k in ("code", "display") if k in c})
            walk(c.get("contains") or [])

    walk(vs["expansion"].get("contains") or [])
    out["compose"] = {"include": [{"system": s, **({"version": v} if v else {}), "concept": concepts}
                                  for (s, v), concepts in groups.items()]}
    return out


@cache
def fixtures(measure: str) -> tuple[MeasureFixture, MeasureFixture]:
    published = load_measure(ECQM / measure)
    computed = dataclasses.replace(
        published, terminology=ValueSetIndex.from_resources(as_compose(v) for v in valuesets(measure)))
    return published, computed


def test_the_corpus_has_only_expansions_and_no_code_systems() -> None:
    require_shared()
    counts = {"ValueSet": 0, "with compose": 0, "with expansion": 0, "CodeSystem": 0}
    for m in MEASURES:
        bundle = json.loads((ECQM / m / "measure-bundle.json").read_text())
        for e in bundle["entry"]:
            r = e["resource"]
            if r["resourceType"] == "CodeSystem":
                counts["CodeSystem"] += 1
            if r["resourceType"] == "ValueSet":
                counts["ValueSet"] += 1
                counts["with compose"] += "compose" in r
                counts["with expansion"] += "expansion" in r
    assert len(MEASURES) == 8
    assert counts == {"ValueSet": 223, "with compose": 0, "with expansion": 223, "CodeSystem": 0}


@pytest.mark.parametrize("measure", MEASURES)
def test_stripped_outright_every_value_set_is_reported_not_emptied(measure: str) -> None:
    require_shared()
    stripped = [{k: v for k, v in vs.items() if k != "expansion"} for vs in valuesets(measure)]
    idx = ValueSetIndex.from_resources(stripped)
    assert stripped and all(not idx.knows(vs["url"]) for vs in stripped)
    assert all("neither an expansion nor a compose" in idx.unusable[vs["url"]] for vs in stripped)
    published, _ = fixtures(measure)
    fixture = dataclasses.replace(published, terminology=idx)
    case = case_paths(ECQM / measure)[0]
    result = run_case(fixture, case, OVERRIDES)
    assert result.error is not None and "Value set" in result.error, result.error


@pytest.mark.parametrize("measure", MEASURES)
def test_expansions_computed_from_compose_give_identical_results(measure: str) -> None:
    require_shared()
    published, computed = fixtures(measure)
    for vs in valuesets(measure):  # the same members, value set by value set
        assert computed.terminology.codes(vs["url"]) == published.terminology.codes(vs["url"]), vs["url"]
    cases = case_paths(ECQM / measure)
    assert cases
    for path in cases:
        a = run_case(published, path, OVERRIDES)
        b = run_case(computed, path, OVERRIDES)
        assert b.error is None, (path.stem, b.error)
        assert b.actual == a.actual == b.expected, (path.stem, b.description)
        assert b.evaluated == a.evaluated, path.stem


@pytest.fixture()
def client(store: Any) -> Any:
    # the published test cases reference practitioners and organizations they do not include
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


def test_stored_measure_with_computed_value_sets_through_http(client: Any) -> None:
    """CMS125 loaded into the store with every expansion replaced by its compose; its Mammography value set
    (the numerator's, 97 LOINC codes) becomes intensional (``is-a`` a root concept) over a stored LOINC
    CodeSystem fragment that holds its codes under that root. $evaluate-measure computes the value sets
    through the store and reproduces the published populations of every case."""
    require_shared()
    measure = "CMS125"
    load_stored(client, measure)
    sets = [as_compose(v) for v in valuesets(measure)]
    target = next(v for v in sets if v.get("name") == "Mammography")
    include = target["compose"]["include"][0]
    root = "ROOT-" + target["id"][-20:]
    fragment = {"resourceType": "CodeSystem", "id": "fragment-" + target["id"][-40:], "url": include["system"],
                "status": "active", "content": "fragment",
                "property": [{"code": "notSelectable", "type": "boolean"}],
                "concept": [{"code": root, "property": [{"code": "notSelectable", "valueBoolean": True}],
                             "concept": include["concept"]}]}
    target["compose"] = {"include": [{"system": include["system"],
                                      "filter": [{"property": "concept", "op": "is-a", "value": root}]}]}
    for res in (fragment, *sets):
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text
    stored = client.get(f"/fhir/ValueSet/{target['id']}").json()
    assert "expansion" not in stored and stored["compose"]["include"][0]["filter"]
    expanded = client.get(f"/fhir/ValueSet/{target['id']}/$expand").json()["expansion"]
    assert expanded["total"] == len(include["concept"]) + 1  # the root, flagged abstract (the engine drops it)
    assert expanded["contains"][0] == {"system": include["system"], "code": root, "abstract": True}
    paths = case_paths(ECQM / measure)
    reports = run_cases(client, measure, paths, load=False)  # each compared with its expected populations
    numerators = [p["count"] for r in reports for g in r["group"] for p in g["population"]
                  if p["code"]["coding"][0]["code"] == "numerator"]
    assert len(reports) == len(paths) and sum(numerators) > 0  # the computed value set found mammographies
    # a CodeSystem write reaches the prepared measure: with the codes moved out from under the root, the
    # value set is empty and the case that met the numerator no longer does
    met = next(r for r, n in zip(reports, numerators, strict=True) if n > 0)
    period = met["period"]
    fragment["concept"] = [{"code": root, "property": [{"code": "notSelectable", "valueBoolean": True}]},
                           *include["concept"]]
    assert client.put(f"/fhir/CodeSystem/{fragment['id']}", json=fragment).status_code == 200
    assert client.get(f"/fhir/ValueSet/{target['id']}/$expand").json()["expansion"]["total"] == 1
    again = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure", params={
        "subject": met["subject"]["reference"], "periodStart": period["start"], "periodEnd": period["end"]})
    assert again.status_code == 200, again.text
    assert [p["count"] for g in again.json()["group"] for p in g["population"]
            if p["code"]["coding"][0]["code"] == "numerator"] == [0]

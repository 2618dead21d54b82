"""The read-ahead of a population run leaves out resources no Retrieve of the measure could return
(gateway/cql/retrieve_scope.py, the store's ``IndexScope``), and nothing else.

- which Retrieves narrow their type (fixed value sets, codes, concepts, vital-signs profiles) and which do
  not (codes computed at run time, plain and QI-Core profile Retrieves), on a library translated from CQL;
- on SQLite and PostgreSQL: the store keeps exactly the resources whose index rows hold a scoped code or a
  declared profile (with or without a version), codes without a system and codes past the index width
  included, deleted ones and other patients' left out;
- on two published measures (CMS69 with its BMI profile Retrieve, CMS122) over their test patients and
  realistic charts, and for CMS69 copies of its test patients whose BMIs are BMIs only by a declared
  (versioned) profile or only by a code without a system: the population report read with scopes is the
  report read whole, while the scoped read-ahead really leaves resources out.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from gateway.auth.context import SYSTEM, acting_as
from gateway.cql.compiler import translate_library
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.retrieve_scope import TypeScope, retrieve_scopes
from gateway.cql.terminology import ValueSetIndex
from gateway.deqm.evaluation import MeasureService
from gateway.deqm.measure_data import index_scopes, prefetch
from gateway.store.base import IndexScope
from gateway.store.sql.store import SqlStore
from tests.conftest import SHARED, require_shared

BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
BMI = "http://hl7.org/fhir/StructureDefinition/bmi"

LIBRARY = """library Scopes version '1'
using FHIR version '4.0.1'
include Other version '1' called Other
codesystem "LOINC": 'http://loinc.org'
valueset "Lipids": 'http://example.org/ValueSet/lipids'
code "HbA1c": '4548-4' from "LOINC"
code "Glucose": '2345-7' from "LOINC"
concept "Sugars": { "HbA1c", "Glucose" }
parameter "Wanted" List<System.Code>
context Patient
define "By value set": [Observation: "Lipids"]
define "By code": [Observation: "HbA1c"]
define "By concept": [Condition: "Sugars"]
define "By list": [Procedure: { "HbA1c", "Glucose" }]
define "Included value set": [Encounter: type in Other."Visits"]
define "Computed codes": [MedicationRequest: medication in "Wanted"]
define "Everything": [Coverage]
define "Vital sign": ["observation-bmi"]
"""

OTHER = """library Other version '1'
using FHIR version '4.0.1'
valueset "Visits": 'http://example.org/ValueSet/visits'
context Patient
define "Visits seen": [Encounter: type in "Visits"]
"""


def _valueset(url: str, codes: list[tuple[str, str]]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "status": "active",
            "expansion": {"timestamp": "2026-01-01", "contains": [{"system": s, "code": c} for s, c in codes]}}


def _manager() -> LibraryManager:
    manager = LibraryManager()
    for text in (OTHER, LIBRARY):
        result = translate_library(text, {"Other": OTHER})
        assert result.ok, [e.as_dict() for e in result.errors]
        manager.add(ElmLibrary.from_elm(result.elm))
    return manager


def test_scopes_follow_the_retrieves_codes() -> None:
    manager = _manager()
    terminology = ValueSetIndex()
    terminology.add(_valueset("http://example.org/ValueSet/lipids", [(LOINC, "2093-3"), (LOINC, "13457-7")]))
    terminology.add(_valueset("http://example.org/ValueSet/visits", [("http://snomed.info/sct", "185349003")]))
    scopes = retrieve_scopes(manager, manager.libraries(), terminology)
    assert scopes["Observation"] == TypeScope((("code", frozenset({"2093-3", "13457-7", "4548-4", "39156-5"})),),
                                              frozenset({BMI}))
    assert scopes["Condition"] == TypeScope((("code", frozenset({"4548-4", "2345-7"})),), frozenset())
    assert scopes["Procedure"].codes == (("code", frozenset({"4548-4", "2345-7"})),)
    assert scopes["Encounter"].codes == (("type", frozenset({"185349003"})),)  # through the include
    assert "MedicationRequest" not in scopes  # codes from a parameter: known only at run time
    assert "Coverage" not in scopes  # no codes: every Coverage may qualify
    # code paths map to token parameters reading the element whole, choice elements included
    assert index_scopes(scopes)["Encounter"] == IndexScope((("type", ("185349003",)),))
    assert index_scopes({"MedicationRequest": TypeScope((("medication", frozenset({"1"})),), frozenset())}) == {
        "MedicationRequest": IndexScope((("code", ("1",)),))}
    # a path no token parameter reads whole: the type is read whole
    assert index_scopes({"Observation": TypeScope((("interpretation", frozenset({"1"})),), frozenset())}) == {}


def test_an_unknown_value_set_reads_the_type_whole() -> None:
    manager = _manager()
    scopes = retrieve_scopes(manager, manager.libraries(), ValueSetIndex())  # no value set is known
    assert "Observation" not in scopes and "Encounter" not in scopes
    assert scopes["Condition"].codes == (("code", frozenset({"4548-4", "2345-7"})),)


def _obs(oid: str, pid: str, code: str | None, system: str | None = LOINC,
         profile: str | None = None) -> dict[str, Any]:
    coding = {k: v for k, v in (("system", system), ("code", code)) if v is not None}
    r: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                         "code": {"coding": [coding]}, "subject": {"reference": f"Patient/{pid}"}}
    if profile:
        r["meta"] = {"profile": [profile]}
    return r


def test_store_keeps_what_the_index_places_in_scope(store: SqlStore) -> None:
    long_code = "9" * 300  # past the index width: the row holds it clipped
    resources = [
        {"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"},
        _obs("wanted", "p1", "39156-5"),
        _obs("no-system", "p1", "39156-5", system=None),
        _obs("other-code", "p1", "8867-4"),
        _obs("declares-bmi", "p1", "8867-4", profile=BMI),
        _obs("declares-bmi-version", "p1", "1-1", profile=BMI + "|4.0.1"),
        _obs("declares-other", "p1", "1-1", profile=BMI + "x"),
        _obs("long", "p1", long_code),
        _obs("gone", "p1", "39156-5"),
        _obs("p2-wanted", "p2", "39156-5"),
        {"resourceType": "Condition", "id": "c1", "code": {"text": "no coding"}, "subject": {"reference": "Patient/p1"}},
    ]
    with store.session() as tx:
        for r in resources:
            tx.write(r, "PUT")
        tx.delete("Observation", "gone")
    scope = {"Observation": IndexScope((("code", ("39156-5", long_code)),), (BMI,))}
    data = prefetch(store, ["p1"], {"Observation", "Condition"}, scope)
    kept = sorted(r["id"] for r in data["p1"].resources("Observation") or [])
    assert kept == ["declares-bmi", "declares-bmi-version", "long", "no-system", "wanted"]
    assert [r["id"] for r in data["p1"].resources("Condition") or []] == ["c1"]  # not scoped: read whole
    whole = prefetch(store, ["p1"], {"Observation"})
    assert len(whole["p1"].resources("Observation") or []) == 7
    # a scope no resource can meet (an empty value set) leaves the type empty, not whole
    empty = prefetch(store, ["p1"], {"Observation"}, {"Observation": IndexScope((("code", ()),))})
    assert empty["p1"].resources("Observation") == []


# -- published measures: scoped and whole read-aheads give the same report -----------------------------------
def _normal(report: dict[str, Any]) -> str:
    text = json.dumps(report, sort_keys=True)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "INSTANT", text)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)


def _renamed(resources: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """A copy of a test case with every id prefixed and references following."""
    text = json.dumps(resources)
    for r in resources:
        old = f"{r['resourceType']}/{r['id']}"
        text = text.replace(f'"{old}"', f'"{r["resourceType"]}/{prefix}{r["id"]}"')
    out = json.loads(text)
    for r in out:
        r["id"] = f"{prefix}{r['id']}"[:64]
    return out


BMI_VARIANTS = {
    # declares the BMI profile, carries another LOINC code: a BMI for the Retrieve by its profile alone
    "p": lambda o: o | {"meta": {"profile": [BMI]}, "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}},
    # the same with a versioned profile
    "v": lambda o: o | {"meta": {"profile": [BMI + "|4.0.1"]}, "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}},
    # declares no profile, the BMI code without a system: a BMI by its code alone
    "s": lambda o: {k: v for k, v in o.items() if k != "meta"} | {"code": {"coding": [{"code": "39156-5"}]}},
}


def _variants(resources: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Copies of a CMS69 test case whose BMI Observations are BMIs only in ways a scope could miss."""
    out = []
    for key, change in BMI_VARIANTS.items():
        copy = _renamed(resources, f"{key}-")
        out.append([change(r) if r["resourceType"] == "Observation" and "39156-5" in json.dumps(r.get("code"))
                    else r for r in copy])
    return out


@pytest.mark.parametrize("measure", ["CMS69", "CMS122"])
def test_population_reports_are_the_same_scoped_or_whole(store: SqlStore, measure: str) -> None:
    require_shared()
    from gateway.demo.charts import iter_charts
    from gateway.ingest.loader import Loader
    from gateway.resources.rest import RestService

    ecqm = SHARED / "testdata" / "ecqm" / measure
    assert Loader(RestService(store, BASE), "lenient").load([ecqm / "measure-bundle.json"]).errors == []
    ids: list[str] = []
    with store.session() as tx:
        for path in sorted((ecqm / "tests").glob("*.json")):
            case = [e["resource"] for e in json.loads(path.read_text())["entry"]
                    if e["resource"]["resourceType"] != "MeasureReport"]
            for copy in [case, *(_variants(case) if measure == "CMS69" else [])]:
                for r in copy:
                    tx.write(r, "PUT")
                    if r["resourceType"] == "Patient":
                        ids.append(r["id"])
        for r in iter_charts(12, seed=3, last_year=2025):
            tx.write(r, "PUT")
            if r["resourceType"] == "Patient":
                ids.append(r["id"])
    measure_res = next(orjson.loads(s.body) for s in store.iter_current("Measure"))
    reports = {}
    for mode in ("scoped", "whole"):
        svc = MeasureService(store, BASE, "inprocess")
        prepared = svc.prepare(measure_res)
        assert "Observation" in prepared.scopes
        if mode == "whole":
            prepared.scopes.clear()
        with acting_as(SYSTEM):
            reports[mode] = svc.evaluate(measure_res, "2025-01-01", "2025-12-31", "population", None,
                                         patient_ids=ids)
            read = prefetch(store, ids, set(prepared.data_types or ()), prepared.scopes)
        reports[mode + "-read"] = sum(len(d.resources(t) or []) for d in read.values() for t in d.types())
    assert _normal(reports["scoped"]) == _normal(reports["whole"])
    numerator = next(p["count"] for p in reports["scoped"]["group"][0]["population"]
                     if p["code"]["coding"][0]["code"] == "numerator")
    assert numerator > 0
    assert reports["scoped-read"] < reports["whole-read"] / 2  # the scope really leaves resources out

"""Measures with FHIRPath criteria (text/fhirpath): the three demo measures over hand-built patients whose
expected populations were worked out by hand (boundary ages, HbA1c exactly 9 %, BP 139/89 against 140/90,
no HbA1c in the inverse measure), an episode-based measure, and the errors a measure author sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources as pkg_resources
from typing import Any

import pytest

from gateway.deqm.evaluation import MeasureService
from gateway.fhir.errors import Unprocessable
from gateway.measure.fhirpath_criteria import (
    FhirPathCriteriaError,
    FhirPathSyntaxError,
    compile_expression,
    fhirpath_only,
)
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore, memory_store
from tests.conftest import BASE

DM = "demo-diabetes-a1c-poor-control"
BCS = "demo-breast-cancer-screening"
CBP = "demo-controlling-blood-pressure"
PERIOD = ("2025-01-01", "2025-12-31")
SCT, LOINC, ICD10, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm", \
    "http://unitsofmeasure.org"
POP_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"


# -- hand-built patients ----------------------------------------------------------------------------------------
def demo_measure(mid: str) -> dict[str, Any]:
    return json.loads(pkg_resources.files("gateway.demo").joinpath(f"measures/{mid}.json").read_text())


def patient(pid: str, birth: str, gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
            "name": [{"family": pid, "given": ["Test"]}]}


def encounter(pid: str, start: str, n: int = 1, status: str = "finished") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": f"{pid}-enc{n}", "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, "end": start}}


def condition(pid: str, system: str, code: str, clinical: str = "active", n: int = 1) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"{pid}-cond{n}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": clinical}]},
            "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": "2019-05-01T10:00:00Z"}


def a1c(pid: str, when: str, value: float, n: int = 1, status: str = "final", unit: str = "%") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{pid}-a1c{n}", "status": status,
            "code": {"coding": [{"system": LOINC, "code": "4548-4"}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def bp(pid: str, when: str, systolic: int, diastolic: int, n: int = 1) -> dict[str, Any]:
    def comp(code: str, value: int) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}

    return {"resourceType": "Observation", "id": f"{pid}-bp{n}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, "component": [comp("8480-6", systolic), comp("8462-4", diastolic)]}


def mammogram(pid: str, when: str, code: str = "71651007", status: str = "completed",
              as_period: bool = False) -> dict[str, Any]:
    res = {"resourceType": "Procedure", "id": f"{pid}-mammo", "status": status,
           "code": {"coding": [{"system": SCT, "code": code}]}, "subject": {"reference": f"Patient/{pid}"}}
    res.update({"performedPeriod": {"start": when, "end": when}} if as_period else {"performedDateTime": when})
    return res


def mammogram_obs(pid: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{pid}-mgobs", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "24606-6"}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, "valueString": "BI-RADS 1"}


def coverage(pid: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": f"{pid}-cov", "status": "active",
            "type": {"coding": [{"system": "https://nahdo.org/sopt", "code": code, "display": display}]},
            "beneficiary": {"reference": f"Patient/{pid}"}, "payor": [{"display": display}]}


ENC = "2025-03-03T10:00:00Z"
DM_DX = (SCT, "44054006")


def dm_case(pid: str, birth: str, *extra: dict[str, Any], dx: tuple[str, str] | None = DM_DX,
            enc: str | None = ENC, clinical: str = "active") -> list[dict[str, Any]]:
    out = [patient(pid, birth)]
    if dx:
        out.append(condition(pid, dx[0], dx[1], clinical))
    if enc:
        out.append(encounter(pid, enc))
    return out + list(extra)


# patient id -> expected (initial-population, denominator, numerator); worked out by hand from the measure text
DM_CASES: dict[str, tuple[list[dict[str, Any]], tuple[int, int, int]]] = {
    # exactly 75 on the last day of the period: in; most recent HbA1c 8 %: not poor control
    "dm-age75": (dm_case("dm-age75", "1950-12-31", a1c("dm-age75", "2025-06-01T09:00:00Z", 8.0)), (1, 1, 0)),
    # 76 on the last day of the period: out
    "dm-age76": (dm_case("dm-age76", "1949-12-31", a1c("dm-age76", "2025-06-01T09:00:00Z", 12.0)), (0, 0, 0)),
    # 18 on the last day of the period, no HbA1c at all: in, and in the numerator (inverse measure)
    "dm-age18-none": (dm_case("dm-age18-none", "2007-12-31"), (1, 1, 1)),
    # 17 at the end of the period: out
    "dm-age17": (dm_case("dm-age17", "2008-01-01"), (0, 0, 0)),
    # HbA1c exactly 9 %: not > 9
    "dm-a1c-9": (dm_case("dm-a1c-9", "1970-04-04", a1c("dm-a1c-9", "2025-05-05T09:00:00Z", 9.0)), (1, 1, 0)),
    "dm-a1c-9.1": (dm_case("dm-a1c-9.1", "1970-04-04", a1c("dm-a1c-9.1", "2025-05-05T09:00:00Z", 9.1)), (1, 1, 1)),
    # the most recent result counts, not the worst
    "dm-improved": (dm_case("dm-improved", "1965-02-02", a1c("dm-improved", "2025-02-01T09:00:00Z", 10.5, 1),
                            a1c("dm-improved", "2025-10-01T09:00:00Z", 7.2, 2)), (1, 1, 0)),
    "dm-worsened": (dm_case("dm-worsened", "1965-02-02", a1c("dm-worsened", "2025-02-01T09:00:00Z", 7.2, 1),
                            a1c("dm-worsened", "2025-11-20T09:00:00Z", 9.5, 2)), (1, 1, 1)),
    # ICD-10-CM E11.65 qualifies; an HbA1c before the period does not count, so no HbA1c: numerator
    "dm-icd10-prior": (dm_case("dm-icd10-prior", "1960-07-07", a1c("dm-icd10-prior", "2024-12-15T09:00:00Z", 6.0),
                               dx=(ICD10, "E11.65")), (1, 1, 1)),
    # type 1 diabetes (E10.9) is not in this measure
    "dm-type1": (dm_case("dm-type1", "1980-01-01", dx=(ICD10, "E10.9")), (0, 0, 0)),
    # no encounter in the period: out
    "dm-no-visit": (dm_case("dm-no-visit", "1970-01-01", enc="2024-06-01T10:00:00Z"), (0, 0, 0)),
    # resolved diagnosis: out
    "dm-resolved": (dm_case("dm-resolved", "1970-01-01", clinical="resolved"), (0, 0, 0)),
    # no diabetes: out whatever the HbA1c
    "dm-none": (dm_case("dm-none", "1970-01-01", a1c("dm-none", "2025-05-05T09:00:00Z", 12.0), dx=None), (0, 0, 0)),
    # an HbA1c entered in error is not a result: no HbA1c, numerator
    "dm-error": (dm_case("dm-error", "1970-01-01", a1c("dm-error", "2025-05-05T09:00:00Z", 6.0,
                                                      status="entered-in-error")), (1, 1, 1)),
}


def bcs_case(pid: str, birth: str, *extra: dict[str, Any], gender: str = "female") -> list[dict[str, Any]]:
    return [patient(pid, birth, gender), encounter(pid, ENC), *extra]


BCS_CASES = {
    "bcs-age50": (bcs_case("bcs-age50", "1975-12-31", mammogram("bcs-age50", "2024-05-01T10:00:00Z")), (1, 1, 1)),
    "bcs-age49": (bcs_case("bcs-age49", "1976-01-01", mammogram("bcs-age49", "2025-05-01T10:00:00Z")), (0, 0, 0)),
    "bcs-age74-obs": (bcs_case("bcs-age74-obs", "1951-01-01", mammogram_obs("bcs-age74-obs", "2025-02-01T10:00:00Z")),
                      (1, 1, 1)),
    "bcs-age75": (bcs_case("bcs-age75", "1950-12-31", mammogram("bcs-age75", "2025-05-01T10:00:00Z")), (0, 0, 0)),
    "bcs-male": (bcs_case("bcs-male", "1965-01-01", gender="male"), (0, 0, 0)),
    # the window opens 27 months before the end of the period (2023-09-30T23:59:59.999)
    "bcs-too-old": (bcs_case("bcs-too-old", "1965-01-01", mammogram("bcs-too-old", "2023-09-15T10:00:00Z")),
                    (1, 1, 0)),
    "bcs-window-start": (bcs_case("bcs-window-start", "1965-01-01",
                                  mammogram("bcs-window-start", "2023-10-01T10:00:00Z", code="24623002")), (1, 1, 1)),
    "bcs-none": (bcs_case("bcs-none", "1965-01-01"), (1, 1, 0)),
    "bcs-not-done": (bcs_case("bcs-not-done", "1965-01-01",
                              mammogram("bcs-not-done", "2025-03-01T10:00:00Z", status="not-done")), (1, 1, 0)),
    "bcs-period": (bcs_case("bcs-period", "1965-01-01",
                            mammogram("bcs-period", "2025-04-01T10:00:00Z", as_period=True)), (1, 1, 1)),
}


def cbp_case(pid: str, birth: str, *extra: dict[str, Any], htn: bool = True) -> list[dict[str, Any]]:
    out = [patient(pid, birth, "male"), encounter(pid, ENC)]
    if htn:
        out.append(condition(pid, SCT, "38341003"))
    return out + list(extra)


CBP_CASES = {
    "cbp-139-89": (cbp_case("cbp-139-89", "1970-01-01", bp("cbp-139-89", "2025-06-01T10:00:00Z", 139, 89),
                            coverage("cbp-139-89", "5", "Private health insurance")), (1, 1, 1)),
    "cbp-140-89": (cbp_case("cbp-140-89", "1970-01-01", bp("cbp-140-89", "2025-06-01T10:00:00Z", 140, 89),
                            coverage("cbp-140-89", "5", "Private health insurance")), (1, 1, 0)),
    "cbp-139-90": (cbp_case("cbp-139-90", "1970-01-01", bp("cbp-139-90", "2025-06-01T10:00:00Z", 139, 90),
                            coverage("cbp-139-90", "1", "Medicare")), (1, 1, 0)),
    "cbp-140-90": (cbp_case("cbp-140-90", "1970-01-01", bp("cbp-140-90", "2025-06-01T10:00:00Z", 140, 90)), (1, 1, 0)),
    # the most recent reading decides
    "cbp-improved": (cbp_case("cbp-improved", "1960-01-01", bp("cbp-improved", "2025-03-01T10:00:00Z", 162, 98, 1),
                              bp("cbp-improved", "2025-11-01T10:00:00Z", 128, 78, 2),
                              coverage("cbp-improved", "1", "Medicare")), (1, 1, 1)),
    "cbp-worsened": (cbp_case("cbp-worsened", "1960-01-01", bp("cbp-worsened", "2025-03-01T10:00:00Z", 128, 78, 1),
                              bp("cbp-worsened", "2025-11-01T10:00:00Z", 150, 92, 2)), (1, 1, 0)),
    # no reading in the period (one the year before): not controlled
    "cbp-no-reading": (cbp_case("cbp-no-reading", "1960-01-01", bp("cbp-no-reading", "2024-11-01T10:00:00Z", 120, 70)),
                       (1, 1, 0)),
    "cbp-age85": (cbp_case("cbp-age85", "1940-12-31", bp("cbp-age85", "2025-06-01T10:00:00Z", 130, 80)), (1, 1, 1)),
    "cbp-age86": (cbp_case("cbp-age86", "1939-12-31", bp("cbp-age86", "2025-06-01T10:00:00Z", 130, 80)), (0, 0, 0)),
    "cbp-no-htn": (cbp_case("cbp-no-htn", "1970-01-01", bp("cbp-no-htn", "2025-06-01T10:00:00Z", 120, 70), htn=False),
                   (0, 0, 0)),
}

ALL_CASES = {DM: DM_CASES, BCS: BCS_CASES, CBP: CBP_CASES}


def load(store: SqlStore, resources: list[dict[str, Any]]) -> None:
    rest = RestService(store, BASE)
    with store.session() as tx:
        for r in resources:
            rest.update(r["resourceType"], r["id"], r, tx=tx)


@pytest.fixture(scope="module")
def service() -> Iterator[MeasureService]:
    store = memory_store()
    resources = [demo_measure(m) for m in ALL_CASES]
    for cases in ALL_CASES.values():
        for res, _ in cases.values():
            resources.extend(res)
    load(store, resources)
    yield MeasureService(store, BASE)
    store.close()


def counts(report: dict[str, Any], group: int = 0) -> tuple[int, ...]:
    pops = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][group]["population"]}
    return pops["initial-population"], pops["denominator"], pops["numerator"]


# -- the demo measures --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("measure_id", "pid"), [(m, p) for m, cases in ALL_CASES.items() for p in cases])
def test_demo_measure_individual(service: MeasureService, measure_id: str, pid: str) -> None:
    expected = ALL_CASES[measure_id][pid][1]
    report = service.evaluate(service.find_measure(measure_id, None), *PERIOD, "subject", f"Patient/{pid}")
    assert report["type"] == "individual"
    assert counts(report) == expected, pid


# Over every hand-built patient: the measure's own cases summed, plus for breast cancer screening the eight women
# of the diabetes cases who are 50-74 with a visit in 2025 and no mammogram (dm-a1c-9, dm-a1c-9.1, dm-improved,
# dm-worsened, dm-icd10-prior, dm-resolved, dm-none, dm-error). Nobody outside the CBP cases has hypertension
# and nobody outside the DM cases has diabetes.
POPULATION = {DM: (8, 8, 5), BCS: (15, 15, 4), CBP: (8, 8, 3)}


@pytest.mark.parametrize("measure_id", list(ALL_CASES))
def test_demo_measure_population(service: MeasureService, measure_id: str) -> None:
    report = service.evaluate(service.find_measure(measure_id, None), *PERIOD, "population", None)
    assert report["type"] == "summary"
    assert counts(report) == POPULATION[measure_id]
    own = tuple(sum(exp[i] for _, exp in ALL_CASES[measure_id].values()) for i in range(3))
    assert own == ((7, 7, 4) if measure_id == BCS else POPULATION[measure_id])
    ip, _den, num = POPULATION[measure_id]
    assert report["group"][0]["measureScore"]["value"] == pytest.approx(num / ip)
    assert report["improvementNotation"]["coding"][0]["code"] == ("decrease" if measure_id == DM else "increase")


def test_stratifier_and_evaluated_resources(service: MeasureService) -> None:
    report = service.evaluate(service.find_measure(CBP, None), *PERIOD, "population", None)
    strata = {s["value"]["text"]: {p["code"]["coding"][0]["code"]: p["count"] for p in s["population"]}
              for s in report["group"][0]["stratifier"][0]["stratum"]}
    assert strata["Private health insurance"]["initial-population"] == 2
    assert strata["Private health insurance"]["numerator"] == 1
    assert strata["Medicare"] == {"initial-population": 2, "denominator": 2, "numerator": 1}
    assert strata["null"]["initial-population"] == 4
    one = service.evaluate(service.find_measure(CBP, None), *PERIOD, "subject", "Patient/cbp-improved")
    refs = {e["reference"] for e in one["evaluatedResource"]}
    assert {"Patient/cbp-improved", "Observation/cbp-improved-bp1", "Observation/cbp-improved-bp2",
            "Condition/cbp-improved-cond1", "Encounter/cbp-improved-enc1"} <= refs


def test_subject_list(service: MeasureService) -> None:
    report = service.evaluate(service.find_measure(DM, None), *PERIOD, "subject-list", None)
    lists = {c["id"]: {e["item"]["reference"] for e in c.get("entry", [])} for c in report["contained"]
             if c["resourceType"] == "List"}
    num = lists["subjects-g0-p2"]  # the third population: numerator
    assert num == {f"Patient/{p}" for p, (_, exp) in DM_CASES.items() if exp[2]}


def test_demo_measures_need_no_library(service: MeasureService) -> None:
    for mid in ALL_CASES:
        res = demo_measure(mid)
        assert "library" not in res and fhirpath_only(res)
        prepared = service.prepare(service.find_measure(mid, None))
        assert prepared.library is None
        assert prepared.measure.library_url == ""


def test_demo_measures_validate_r4b() -> None:
    from fhir.resources.R4B.measure import Measure

    for mid in ALL_CASES:
        res = demo_measure(mid)
        Measure.model_validate(res)
        assert res["url"] == f"http://fhir-vbc-gateway.example.org/Measure/{mid}"
        assert res["version"] == "1.0.0" and res["status"] == "active"
        for g in res["group"]:
            for p in g["population"]:
                assert p["criteria"]["language"] == "text/fhirpath" and p["description"]


# -- the engine ---------------------------------------------------------------------------------------------------
def test_compile_is_cached_and_strict() -> None:
    assert compile_expression("%patient.gender = 'female'") is compile_expression("%patient.gender = 'female'")
    for bad, msg in [("%patient.gender = ", "syntax error"), ("Patient.name.", "syntax error"),
                     ("gender bar", "syntax error"), ("%resources.sort(id)", "sort()"),
                     ("%nosuch.exists()", "%nosuch")]:
        with pytest.raises(FhirPathSyntaxError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            compile_expression(bad)


def fhirpath_measure(mid: str, populations: dict[str, str], basis: str | None = None, scoring: str = "proportion",
                     **extra: Any) -> dict[str, Any]:
    group: dict[str, Any] = {"id": "g1", "population": []}
    if basis:
        group["extension"] = [{"url": "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-populationBasis",
                               "valueCode": basis}]
    for code, expr in populations.items():
        pop: dict[str, Any] = {"id": code, "code": {"coding": [{"system": POP_SYSTEM, "code": code}]},
                               "criteria": {"language": "text/fhirpath", "expression": expr}}
        if code == "measure-observation":
            pop["extension"] = [
                {"url": "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-aggregateMethod",
                 "valueCode": "sum"},
                {"url": "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-criteriaReference",
                 "valueString": "measure-population"}]
        group["population"].append(pop)
    group.update(extra.pop("group_extra", {}))
    return {"resourceType": "Measure", "id": mid, "url": f"http://example.org/Measure/{mid}", "status": "active",
            "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                                    "code": scoring}]}, "group": [group], **extra}


def test_episode_based_continuous_variable() -> None:
    """Population basis Encounter: members are the encounters the expression returns (keyed Type/id); the
    stratifier and the observation are evaluated with the encounter as %context."""
    store = memory_store()
    pid = "ep1"
    obs = [a1c(pid, "2025-03-03T10:30:00Z", 7.0, 1), a1c(pid, "2025-03-03T10:40:00Z", 7.1, 2)]
    for o in obs:
        o["encounter"] = {"reference": f"Encounter/{pid}-enc1"}
    enc3 = encounter(pid, "2025-09-09T10:00:00Z", 3)
    enc3["class"]["code"] = "EMER"
    load(store, [patient(pid, "1970-01-01"), encounter(pid, ENC, 1), encounter(pid, "2024-05-05T10:00:00Z", 2),
                 enc3, *obs,
                 fhirpath_measure("ep", {
                     "initial-population": "%resources.ofType(Encounter).where(period.start >= %periodStart and "
                                           "period.start <= %periodEnd)",
                     "measure-population": "%resources.ofType(Encounter).where(status = 'finished')",
                     "measure-observation": "%resources.ofType(Observation).where(encounter.reference = "
                                            "'Encounter/' + %context.id).count()",
                 }, basis="Encounter", scoring="continuous-variable",
                     group_extra={"stratifier": [{"id": "class", "criteria": {"language": "text/fhirpath",
                                                                             "expression": "class.code"}}]})])
    svc = MeasureService(store, BASE)
    report = svc.evaluate(svc.find_measure("ep", None), *PERIOD, "population", None)
    g = report["group"][0]
    pops = {p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]}
    assert pops == {"initial-population": 2, "measure-population": 2}
    assert g["measureScore"]["value"] == 2  # 2 observations on enc1 + 0 on enc3
    strata = {s["value"]["text"]: s["population"][0]["count"] for s in g["stratifier"][0]["stratum"]}
    assert strata == {"AMB": 1, "EMER": 1}
    store.close()


def test_patient_based_result_must_be_boolean() -> None:
    store = memory_store()
    load(store, [patient("b1", "1970-01-01"), encounter("b1", ENC),
                 fhirpath_measure("notbool", {"initial-population": "%resources.ofType(Encounter)"})])
    svc = MeasureService(store, BASE)
    with pytest.raises(Unprocessable, match="single boolean") as err:
        svc.evaluate(svc.find_measure("notbool", None), *PERIOD, "population", None)
    assert "http://example.org/Measure/notbool" in err.value.diagnostics
    assert "group g1" in err.value.diagnostics and "initial-population" in err.value.diagnostics
    store.close()


def test_variables() -> None:
    store = memory_store()
    load(store, [patient("v1", "1970-01-01"),
                 fhirpath_measure("vars", {
                     "initial-population": "%context.id = 'v1' and %resource.id = %patient.id and "
                                           "%measure.id = 'vars' and %periodStart.toString() = "
                                           "'2025-01-01T00:00:00.000' and %periodEnd > %periodStart and "
                                           "%sct = 'http://snomed.info/sct' and %loinc = 'http://loinc.org' and "
                                           "%resources.empty()",
                 })])
    svc = MeasureService(store, BASE)
    report = svc.evaluate(svc.find_measure("vars", None), *PERIOD, "subject", "Patient/v1")
    assert counts_of(report) == {"initial-population": 1}
    store.close()


def counts_of(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_cql_criteria_without_library_are_refused() -> None:
    m = fhirpath_measure("mixed", {"initial-population": "true"})
    m["group"][0]["population"].append({"code": {"coding": [{"system": POP_SYSTEM, "code": "denominator"}]},
                                        "criteria": {"language": "text/cql-identifier", "expression": "Denominator"}})
    assert not fhirpath_only(m)
    store = memory_store()
    load(store, [m])
    svc = MeasureService(store, BASE)
    with pytest.raises(Unprocessable, match="names no library"):
        svc.prepare(svc.find_measure("mixed", None))
    store.close()


def test_resource_types_extension() -> None:
    from gateway.measure.fhirpath_criteria import RESOURCE_TYPES_EXT, _resource_types

    m = fhirpath_measure("ext", {"initial-population": "%resources.exists()"})
    assert _resource_types(m)[0] == "Encounter" and len(_resource_types(m)) == 10
    narrowed = fhirpath_measure("ext2", {"initial-population": "%resources.ofType(Condition).exists()"})
    assert _resource_types(narrowed) == ("Condition",)
    m["extension"] = [{"url": RESOURCE_TYPES_EXT, "valueCode": "AllergyIntolerance"}]
    assert _resource_types(m) == ("AllergyIntolerance",)
    m["extension"] = [{"url": RESOURCE_TYPES_EXT, "valueCode": "Organization"}]
    with pytest.raises(FhirPathCriteriaError, match="Patient compartment"):
        _resource_types(m)


# -- through HTTP -------------------------------------------------------------------------------------------------
def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


JSON = {"Content-Type": "application/fhir+json"}


def test_http_evaluate_demo_measure(client: Any) -> None:
    resources = [demo_measure(DM)] + [r for res, _ in DM_CASES.values() for r in res]
    assert client.post("/fhir", content=json.dumps(transaction(resources)), headers=JSON).status_code == 200
    r = client.get(f"/fhir/Measure/{DM}/$evaluate-measure", params={"periodStart": PERIOD[0], "periodEnd": PERIOD[1]})
    assert r.status_code == 200, r.text
    assert counts(r.json()) == (8, 8, 5)
    r = client.get("/fhir/Measure/$evaluate-measure", params={
        "measure": f"http://fhir-vbc-gateway.example.org/Measure/{DM}|1.0.0", "periodStart": PERIOD[0],
        "periodEnd": PERIOD[1], "subject": "Patient/dm-a1c-9.1"})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "individual" and counts(r.json()) == (1, 1, 1)


@pytest.mark.parametrize(("expression", "message"), [
    ("%patient.gender = ", "syntax error at line 1"),
    ("%resources.ofType(Encounter).where(status = 'finished'", "syntax error"),
    ("%resources.ofType(Encounter).sort(period.start).exists()", "function sort() is not supported"),
    ("%patinet.exists()", "unknown environment variable %patinet"),
])
def test_http_fhirpath_error_is_422(client: Any, expression: str, message: str) -> None:
    m = fhirpath_measure("broken", {"initial-population": "true", "numerator": expression})
    assert client.put("/fhir/Measure/broken", content=json.dumps(m), headers=JSON).status_code in (200, 201)
    r = client.get("/fhir/Measure/broken/$evaluate-measure", params={"periodStart": PERIOD[0],
                                                                    "periodEnd": PERIOD[1]})
    assert r.status_code == 422, r.text
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    diag = oo["issue"][0]["diagnostics"]
    assert message in diag
    assert "Measure http://example.org/Measure/broken" in diag and "group g1" in diag and "numerator" in diag


def test_http_runtime_error_is_422(client: Any) -> None:
    m = fhirpath_measure("runtime", {"initial-population": "%patient.name.given > 3"})
    load_via_http(client, [patient("rt1", "1970-01-01"), m])
    r = client.get("/fhir/Measure/runtime/$evaluate-measure", params={"periodStart": PERIOD[0],
                                                                     "periodEnd": PERIOD[1]})
    assert r.status_code == 422, r.text
    diag = r.json()["issue"][0]["diagnostics"]
    assert "Patient/rt1" in diag and "initial-population" in diag and "failed" in diag


def load_via_http(client: Any, resources: list[dict[str, Any]]) -> None:
    r = client.post("/fhir", content=json.dumps(transaction(resources)), headers=JSON)
    assert r.status_code == 200, r.text

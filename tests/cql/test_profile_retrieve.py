"""Vital-sign profile retrieves (``[Observation: "observation-bmi"]``) select what the reference engine
(fqm-execution) selects: an Observation that declares profiles is returned only if it declares the one asked
for; one that declares none is matched by the LOINC code the FHIR profile fixes."""

from __future__ import annotations

from typing import Any

from gateway.cql.datasource import BundleDataSource
from gateway.cql.engine import Context, Engine
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.terminology import ValueSetIndex
from tests.cql.elmutil import FHIR, library

BMI = "http://hl7.org/fhir/StructureDefinition/bmi"
QICORE_OBS = "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-observation"


def obs(oid: str, code: str, *profiles: str) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    if profiles:
        r["meta"] = {"profile": list(profiles)}
    return r


def retrieve_ids(template: str, resources: list[dict[str, Any]]) -> list[str]:
    node = {"type": "Retrieve", "dataType": FHIR + "Observation", "templateId": template}
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(library(node)))
    ctx = Context(data=BundleDataSource(resources), terminology=ValueSetIndex())
    return [n.value["id"] for n in Engine(manager).evaluate(lib, ["X"], ctx)["X"]]


def test_declared_profile_decides() -> None:
    data = [obs("tagged-bmi", "39156-5", BMI), obs("qicore-only", "39156-5", QICORE_OBS),
            obs("tagged-versioned", "39156-5", BMI + "|4.0.1"), obs("tagged-other-code", "1234-5", BMI)]
    assert retrieve_ids(BMI, data) == ["tagged-bmi", "tagged-versioned", "tagged-other-code"]


def test_untagged_observations_match_by_the_profile_code() -> None:
    data = [obs("bmi", "39156-5"), obs("weight", "29463-7"), obs("tagged", "39156-5", BMI)]
    assert retrieve_ids(BMI, data) == ["bmi", "tagged"]
    assert retrieve_ids("http://hl7.org/fhir/StructureDefinition/bodyweight", data) == ["weight"]

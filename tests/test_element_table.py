"""The element table (gateway/fhir/element-table.json): it equals what the installed fhir.resources models give,
and CQL navigation, _summary and the XML converter read it without importing fhir.resources."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cql.fhirmodel import Field, type_info
from gateway.fhir.element_table import TABLE_FILE, Element, TypeEntry, compute_table, table_bytes, type_entry
from gateway.fhir.elements import summary_elements
from gateway.fhir.xml import Elem, elements

ROOT = Path(__file__).resolve().parent.parent
RERUN = "run `python tools/gen_element_table.py` and commit gateway/fhir/element-table.json"


@pytest.fixture(scope="module")
def computed() -> dict[str, Any]:
    return compute_table()


def test_committed_table_equals_the_installed_models(computed: dict[str, Any]) -> None:
    committed = orjson.loads(TABLE_FILE.read_bytes())
    old, new = committed["types"], computed["types"]
    changed = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    assert not changed, (f"the element table ({committed['source']}) differs from the installed models "
                         f"({computed['source']}) in {len(changed)} types ({', '.join(changed[:10])}): {RERUN}")
    assert len(new) > 600 and {"Patient", "Observation", "EncounterHospitalization", "Element", "Resource"} <= set(new)
    # the layout type_entry reads (one type per line) is the generator's: the file is exactly what it writes
    assert TABLE_FILE.read_bytes() == table_bytes(committed), f"the file is not in the generator's layout: {RERUN}"


def test_every_type_reads_back_as_computed(computed: dict[str, Any]) -> None:
    for name, raw in computed["types"].items():
        elements_ = tuple(Element(r[0], r[1], bool(r[2]), r[3] if len(r) > 3 else None) for r in raw["e"])
        assert type_entry(name) == TypeEntry(elements_, frozenset(raw["s"]), tuple(raw["x"])), name


def test_type_info_choice_and_backbone_elements() -> None:
    obs = type_info("Observation")
    assert obs is not None and obs.name == "Observation"
    assert obs.fields["valueQuantity"] == Field("valueQuantity", "Quantity", False, "value")
    assert obs.fields["component"] == Field("component", "ObservationComponent", True, None)
    assert obs.fields["status"] == Field("status", "code", False, None)
    assert "value" not in obs.fields
    assert [f.json_name for f in obs.choices["value"]] == [
        "valueBoolean", "valueCodeableConcept", "valueDateTime", "valueInteger", "valuePeriod", "valueQuantity",
        "valueRange", "valueRatio", "valueSampledData", "valueString", "valueTime"]
    assert [f.type for f in obs.choices["effective"]] == ["dateTime", "instant", "Period", "Timing"]
    assert obs.fields["contained"] == Field("contained", "Resource", True, None)
    comp = type_info("ObservationComponent")
    assert comp is not None and [f.type for f in comp.choices["value"]][:3] == ["boolean", "CodeableConcept", "dateTime"]
    enc = type_info("Encounter")
    assert enc is not None and enc.fields["hospitalization"] == Field("hospitalization", "EncounterHospitalization",
                                                                      False, None)
    hosp = type_info("EncounterHospitalization")
    assert hosp is not None and hosp.choices == {}
    assert hosp.fields["dischargeDisposition"] == Field("dischargeDisposition", "CodeableConcept", False, None)
    assert hosp.fields["dietPreference"].is_list is True and hosp.fields["id"].type == "string"
    qty = type_info("Quantity")
    assert qty is not None and list(qty.fields) == ["extension", "id", "code", "comparator", "system", "unit", "value"]
    assert qty.fields["value"].type == "decimal"


@pytest.mark.parametrize("name", ["NotAType", "", "boolean", "Boolean", "string", "AccountStatus", "FHIR.Patient",
                                  "patient"])
def test_names_that_are_no_model_type(name: str) -> None:
    assert type_info(name) is None
    assert summary_elements(name) is None
    assert elements(name) == {}


def test_summary_elements() -> None:
    assert summary_elements("Patient") == {
        "active", "address", "birthDate", "deceasedBoolean", "deceasedDateTime", "gender", "id", "identifier",
        "implicitRules", "link", "managingOrganization", "meta", "name", "telecom"}
    obs = summary_elements("Observation")
    assert obs is not None and {"valueQuantity", "effectivePeriod", "code", "status"} <= obs and "note" not in obs
    assert summary_elements("Quantity") == {"comparator", "unit", "value", "code", "system"}
    assert summary_elements("EncounterHospitalization") == {"modifierExtension"}


def test_xml_elements_in_xml_order() -> None:
    assert list(elements("Patient"))[:10] == ["id", "meta", "implicitRules", "language", "text", "contained",
                                              "extension", "modifierExtension", "identifier", "active"]
    patient = elements("Patient")
    assert patient["contained"] == Elem("contained", "resource", "Resource", True)
    assert patient["name"] == Elem("name", "complex", "HumanName", True)
    assert patient["birthDate"] == Elem("birthDate", "primitive", "date", False)
    assert elements("Narrative")["div"] == Elem("div", "xhtml", "xhtml", False)
    assert elements("BundleEntry")["resource"] == Elem("resource", "resource", "Resource", False)
    assert elements("Observation")["valueQuantity"] == Elem("valueQuantity", "complex", "Quantity", False)


def test_navigation_summary_and_xml_do_not_import_fhir_resources() -> None:
    code = """
import sys
from gateway.cql.fhirmodel import children, type_info, wrap_resource
from gateway.fhir.elements import apply_summary
from gateway.fhir.xml import from_xml, to_xml
for t in ["Patient", "Encounter", "Observation", "EncounterHospitalization", "Period", "CodeableConcept"]:
    assert type_info(t) is not None, t
obs = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1}, "note": [{"text": "x"}]}
[value] = children(wrap_resource(obs), "value")
assert value.type == "Quantity", value
assert "note" not in apply_summary(dict(obs), "true")
assert from_xml(to_xml(obs)) == obs
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("fhir", "fhir_core"))
print(" ".join(loaded))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"modules of fhir.resources imported: {run.stdout.strip()}"


def test_table_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = config["tool"]["setuptools"]["package-data"]["gateway"]
    assert TABLE_FILE.relative_to(ROOT / "gateway").as_posix() in data

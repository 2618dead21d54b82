"""The hand-written R4 code lists in ``gateway.fhir.json_rules.TRUNCATED`` are complete and match R4.

The R4B models list the codes of a required binding in the element's short definition; where that definition
is cut short ("a | b +") the gateway carries the full R4 value set itself. These tests check that every such
cut-short element has a full list, that each list extends what the model names, and that each list has exactly
as many codes as the published R4 expansion (hl7.org/fhir/R4/valueset-<name>.html, "This value set contains N
concepts"), and that validation refuses a code outside the list and accepts every code in it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

from gateway.fhir.json_rules import TRUNCATED
from gateway.fhir.validation import validate_resource

# value set of each cut-short element and the number of concepts of its R4 (4.0.1) expansion
R4_VALUE_SETS: dict[tuple[str, str], tuple[str, int]] = {
    ("Observation", "status"): ("observation-status", 8),
    ("DetectedIssue", "status"): ("observation-status", 8),
    ("RiskAssessment", "status"): ("observation-status", 8),
    ("DiagnosticReport", "status"): ("diagnostic-report-status", 10),
    ("Encounter", "status"): ("encounter-status", 9),
    ("EncounterStatusHistory", "status"): ("encounter-status", 9),
    ("DeviceUseStatement", "status"): ("device-statement-status", 6),
    ("DeviceUdiCarrier", "entryType"): ("udi-entry-type", 6),
    ("SupplyRequest", "status"): ("supplyrequest-status", 7),
    ("Task", "status"): ("task-status", 12),
    ("QuestionnaireItem", "type"): ("item-type", 17),
    ("StructureMapGroupRuleTarget", "transform"): ("map-transform", 17),
}


def cut_short_elements() -> dict[tuple[str, str], list[str]]:
    """Every (model, element) of the R4B models whose listed codes end with '+', with the codes listed."""
    import fhir.resources.R4B as package

    found: dict[tuple[str, str], list[str]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith(("fhirtypes", "tests")):
            continue
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError:
            continue
        for name, obj in vars(module).items():
            fields: Any = getattr(obj, "model_fields", None)
            if not isinstance(fields, dict) or getattr(obj, "__module__", None) != module.__name__:
                continue
            for field_name, field in fields.items():
                extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
                listed = extra.get("enum_values")
                if isinstance(listed, list) and "+" in listed:
                    found[(name, field_name)] = [str(c) for c in listed if c != "+"]
    return found


def test_every_cut_short_required_binding_has_a_full_list() -> None:
    found = cut_short_elements()
    assert found, "the models list no cut-short bindings: the scan is broken"
    assert set(found) == set(TRUNCATED), (set(found) ^ set(TRUNCATED))
    for key, listed in found.items():
        assert set(listed) <= TRUNCATED[key], (key, set(listed) - TRUNCATED[key])


@pytest.mark.parametrize("key", sorted(R4_VALUE_SETS), ids=lambda k: ".".join(k))
def test_each_list_has_the_size_of_the_published_r4_expansion(key: tuple[str, str]) -> None:
    value_set, size = R4_VALUE_SETS[key]
    assert len(TRUNCATED[key]) == size, (key, value_set)


def test_tables_cover_the_same_elements() -> None:
    assert set(R4_VALUE_SETS) == set(TRUNCATED)


def test_validation_uses_the_full_list() -> None:
    base = {"resourceType": "Observation", "code": {"text": "x"}}
    for code in sorted(TRUNCATED[("Observation", "status")]):
        assert validate_resource({**base, "status": code}).ok, code
    assert not validate_resource({**base, "status": "done"}).ok
    task = {"resourceType": "Task", "intent": "order"}
    assert validate_resource({**task, "status": "entered-in-error"}).ok
    assert not validate_resource({**task, "status": "finished"}).ok

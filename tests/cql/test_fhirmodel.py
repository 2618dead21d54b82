"""FHIR model navigation for the interpreter: types of elements, choice elements, primitives' extensions."""

from __future__ import annotations

from gateway.cql.fhirmodel import children, is_subtype, type_info, wrap_resource


def test_type_info_from_models() -> None:
    obs = type_info("Observation")
    assert obs is not None
    assert obs.fields["code"].type == "CodeableConcept" and not obs.fields["code"].is_list
    assert obs.fields["component"].type == "ObservationComponent" and obs.fields["component"].is_list
    assert obs.fields["status"].type == "code"
    assert obs.fields["issued"].type == "instant"
    assert {f.type for f in obs.choices["effective"]} >= {"dateTime", "Period", "Timing", "instant"}
    assert type_info("Patient").fields["birthDate"].type == "date"  # type: ignore[union-attr]
    assert type_info("NotAType") is None


def test_navigation() -> None:
    obs = wrap_resource({"resourceType": "Observation", "status": "final", "effectivePeriod": {"start": "2024"},
                         "_status": {"extension": [{"url": "urn:x", "valueString": "y"}]},
                         "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1}}, {"code": {"text": "b"}}],
                         "contained": [{"resourceType": "Patient", "id": "p"}]})
    [eff] = children(obs, "effective")
    assert eff.type == "Period" and eff.value == {"start": "2024"}
    [start] = children(eff, "start")
    assert start.type == "dateTime"
    comps = children(obs, "component")
    assert [c.type for c in comps] == ["ObservationComponent", "ObservationComponent"]
    [val] = children(comps[0], "value")
    assert val.type == "Quantity"
    assert children(comps[1], "value") == []
    [status] = children(obs, "status")
    assert status.type == "code" and status.value == "final"
    assert [e.type for e in children(status, "extension")] == ["Extension"]
    [contained] = children(obs, "contained")
    assert contained.type == "Patient"


def test_subtypes() -> None:
    assert is_subtype("code", "string") and is_subtype("Age", "Quantity") and is_subtype("positiveInt", "integer")
    assert not is_subtype("string", "code")
    assert is_subtype("Patient", "Resource") and not is_subtype("Quantity", "Resource")

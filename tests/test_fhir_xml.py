"""FHIR XML converter (gateway/fhir/xml.py): the XML rules of R4 xml.html, and JSON → XML → JSON lossless on
every JSON example and fixture under ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import canonicalize, fromstring

import orjson
import pytest

from gateway.fhir.errors import BadRequest
from gateway.fhir.xml import FHIR_NS, elements, from_xml, html_entities, to_xml
from tests.conftest import SHARED, require_shared

F = "{" + FHIR_NS + "}"


def _norm(x: Any) -> Any:
    """``x`` with narrative XHTML in XML canonical form (the XML round trip keeps the XHTML, not its spelling:
    attribute quotes, ``<br/>`` versus ``<br />``, ``&nbsp;`` versus the character)."""
    if isinstance(x, dict):
        return {k: canonicalize(html_entities(v)) if k == "div" and isinstance(v, str) else _norm(v)
                for k, v in x.items()}
    if isinstance(x, list):
        return [_norm(v) for v in x]
    return x


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict) and isinstance(doc.get("resourceType"), str):
        yield doc
    elif isinstance(doc, list):
        for d in doc:
            yield from _resources(d)


def corpus() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource in a JSON file under ../shared/examples and ../shared/testdata (NDJSON excluded)."""
    found = []
    for top in ("examples", "testdata"):
        for path in sorted((SHARED / top).rglob("*.json")):
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue
            found += [(path, r) for r in _resources(doc)]
    return found


def test_round_trip_every_shared_example_and_fixture() -> None:
    require_shared()
    resources = corpus()
    # 588 of the 605 JSON files hold a resource (4,645 counting Bundle entries and contained resources); the
    # other 17 are the CQL test suites and a Bulk Data manifest
    assert len(resources) >= 588
    failures = []
    for path, res in resources:
        xml = to_xml(res)
        back = from_xml(xml)
        if _norm(back) != _norm(res):
            failures.append(str(path.relative_to(SHARED)))
    assert not failures, failures[:10]


def test_xml_rules() -> None:
    res = {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; b</p></div>'},
        "contained": [{"resourceType": "Patient", "id": "p", "active": True}],
        "extension": [{"url": "http://x/e", "valueDecimal": 1.5}],
        "code": {"coding": [{"id": "c1", "system": "http://loinc.org", "code": "1-8"}]},
        "subject": {"reference": "#p"},
        "effectiveDateTime": "2024-01-02",
        "_effectiveDateTime": {"extension": [{"url": "http://x/precision", "valueCode": "day"}]},
        "valueQuantity": {"value": 12.5, "unit": "mg"},
        "component": [{"code": {"text": "n"}, "valueInteger": 3}],
    }
    xml = to_xml(res)
    root = fromstring(xml)
    assert root.tag == F + "Observation"
    order = [c.tag.split("}")[1] for c in root]  # element order of the R4 definition, not of the JSON
    assert order == ["id", "text", "contained", "extension", "status", "code", "subject", "effectiveDateTime",
                     "valueQuantity", "component"]
    assert root.find(F + "contained/" + F + "Patient/" + F + "active").get("value") == "true"  # type: ignore[union-attr]
    ext = root.find(F + "extension")
    assert ext is not None and ext.get("url") == "http://x/e" and ext.find(F + "valueDecimal").get("value") == "1.5"  # type: ignore[union-attr]
    assert root.find(F + "code/" + F + "coding").get("id") == "c1"  # type: ignore[union-attr]
    eff = root.find(F + "effectiveDateTime")
    assert eff is not None and eff.get("value") == "2024-01-02" and eff.find(F + "extension") is not None
    assert root.find(F + "text/{http://www.w3.org/1999/xhtml}div/{http://www.w3.org/1999/xhtml}p") is not None
    assert from_xml(xml) == res
    pretty = to_xml(res, pretty=True)
    assert b'\n  <status value="final"/>\n' in pretty and from_xml(pretty) == res


def test_repeating_primitives_with_extensions_keep_their_alignment() -> None:
    res = {"resourceType": "Patient", "name": [{"given": ["A", None, "C"],
                                                "_given": [None, {"extension": [{"url": "u", "valueString": "B"}]},
                                                           {"id": "g3"}]}]}
    assert from_xml(to_xml(res)) == res


def test_primitive_types_come_back_typed() -> None:
    res = {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"},
           "prediction": [{"probabilityDecimal": 0.25}], "method": {"text": "m"}}
    assert from_xml(to_xml(res))["prediction"][0]["probabilityDecimal"] == 0.25
    xml = b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/><multipleBirthInteger value="2"/></Patient>'
    assert from_xml(xml) == {"resourceType": "Patient", "active": True, "multipleBirthInteger": 2}


@pytest.mark.parametrize(("xml", "says"), [
    (b"<Patient><active value='true'/></Patient>", "FHIR namespace"),
    (b"<Spaceship xmlns='http://hl7.org/fhir'/>", "Unknown resource type"),
    (b"<Patient xmlns='http://hl7.org/fhir'><colour value='red'/></Patient>", "unknown element"),
    (b"<Patient xmlns='http://hl7.org/fhir'><active value='yes'/></Patient>", "not a boolean"),
    (b"<Patient xmlns='http://hl7.org/fhir'><multipleBirthInteger value='1.5'/></Patient>", "not a valid integer"),
    (b"<Patient xmlns='http://hl7.org/fhir'><gender>female</gender></Patient>", "text content"),
    (b"<Patient xmlns='http://hl7.org/fhir'><gender value='male'/><gender value='female'/></Patient>", "only once"),
    (b"<Patient xmlns='http://hl7.org/fhir'><active/></Patient>", "needs a value"),
    (b"<Patient xmlns='http://hl7.org/fhir'><name", "Malformed XML"),
    (b"<Bundle xmlns='http://hl7.org/fhir'><entry><resource/></entry></Bundle>", "exactly one resource"),
])
def test_bad_xml_is_a_bad_request(xml: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as err:
        from_xml(xml)
    assert says in str(err.value.outcome())


def test_element_metadata_comes_from_the_models() -> None:
    obs = elements("Observation")
    assert obs["contained"].kind == "resource" and obs["contained"].is_list
    assert obs["valueQuantity"].kind == "complex" and obs["valueQuantity"].type == "Quantity"
    assert obs["status"].kind == "primitive" and obs["status"].type == "code"
    assert elements("Narrative")["div"].kind == "xhtml"
    assert elements("Spaceship") == {}

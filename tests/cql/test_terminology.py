"""Value-set membership from the eCQM bundles' expansions and from explicit compose concepts."""

from __future__ import annotations

import json

import pytest

from gateway.cql.terminology import UnknownValueSet, ValueSetIndex, in_valueset
from gateway.cql.values import Code, Concept
from tests.conftest import SHARED

GENDER = "http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113762.1.4.1"


@pytest.fixture(scope="module")
def cms122() -> ValueSetIndex:
    bundle = json.loads((SHARED / "testdata/ecqm/CMS122/measure-bundle.json").read_text())
    return ValueSetIndex.from_resources(e["resource"] for e in bundle["entry"]
                                        if e["resource"]["resourceType"] == "ValueSet")


def test_expansion_membership(cms122: ValueSetIndex) -> None:
    sys_ = "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender"
    assert in_valueset(Code("F", sys_), GENDER, cms122) is True
    assert in_valueset(Code("F", "http://other"), GENDER, cms122) is False
    assert in_valueset(Concept((Code("x", "y"), Code("M", sys_))), GENDER, cms122) is True
    assert in_valueset(None, GENDER, cms122) is False
    assert in_valueset([None, Code("M", sys_)], GENDER, cms122) is True
    assert in_valueset(Code("F", sys_), GENDER + "|20150331", cms122) is True
    assert len(cms122.expand(GENDER)) == 2


def test_every_cms122_valueset_is_usable(cms122: ValueSetIndex) -> None:
    assert cms122.unusable == {}


def test_compose_and_unknown() -> None:
    vs = {"resourceType": "ValueSet", "url": "urn:vs:a", "compose": {
        "include": [{"system": "urn:s", "concept": [{"code": "1"}, {"code": "2"}]}],
        "exclude": [{"system": "urn:s", "concept": [{"code": "2"}]}]}}
    filt = {"resourceType": "ValueSet", "url": "urn:vs:f", "compose": {
        "include": [{"system": "urn:s", "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}]}}
    idx = ValueSetIndex.from_resources([vs, filt])
    assert in_valueset(Code("1", "urn:s"), "urn:vs:a", idx) is True
    assert in_valueset(Code("2", "urn:s"), "urn:vs:a", idx) is False
    with pytest.raises(UnknownValueSet, match="filters"):
        in_valueset(Code("1", "urn:s"), "urn:vs:f", idx)
    with pytest.raises(UnknownValueSet, match="not known"):
        in_valueset(Code("1", "urn:s"), "urn:vs:none", idx)
    with pytest.raises(UnknownValueSet, match="version"):
        idx.codes("urn:vs:a|9")

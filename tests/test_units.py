"""Pure units: partial dates, the FHIRPath subset compiler, index extraction, query parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.fhir.dates import DateParseError, parse_range
from gateway.fhir.errors import BadRequest
from gateway.fhir.resource_types import profiles_dir
from gateway.search.fhirpath import compile_for_type
from gateway.search.index import index_resource, norm
from gateway.search.query import QueryParser, TokenValue, split_escaped


def test_partial_date_ranges() -> None:
    assert parse_range("2024") == ("2024-01-01T00:00:00.000000", "2024-12-31T23:59:59.999999")
    assert parse_range("2024-02") == ("2024-02-01T00:00:00.000000", "2024-02-29T23:59:59.999999")
    assert parse_range("2023-02-28") == ("2023-02-28T00:00:00.000000", "2023-02-28T23:59:59.999999")
    assert parse_range("2024-02-03T10:00:00+02:00")[0] == "2024-02-03T08:00:00.000000"
    assert parse_range("2024-02-03T10:00:00.5Z") == ("2024-02-03T10:00:00.500000", "2024-02-03T10:00:00.599999")
    for bad in ("2024-13", "2024-02-30", "24-01-01", "2024/01/01", "2024-01-01T25:00:00Z", ""):
        with pytest.raises(DateParseError):
            parse_range(bad)


@given(st.datetimes(timezones=st.just(None)))
def test_date_range_contains_itself(dt) -> None:  # type: ignore[no-untyped-def]
    s = dt.isoformat(timespec="seconds")
    lo, hi = parse_range(s + "Z")
    assert lo <= hi
    day_lo, day_hi = parse_range(s[:10])
    assert day_lo <= lo and hi <= day_hi


def test_every_official_expression_compiles() -> None:
    bundle = json.loads((profiles_dir() / "search-parameters.json").read_text())
    missing = []
    for e in bundle["entry"]:
        sp = e["resource"]
        for base in sp["base"]:
            expr = sp.get("expression")
            if expr and base not in ("Resource", "DomainResource") and compile_for_type(expr, base) is None:
                missing.append((sp["code"], base))
    assert missing == []


def test_fhirpath_subset() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "Group/g"}, "valueQuantity": {"value": 5},
           "effectivePeriod": {"start": "2020"}, "component": [{"valueCodeableConcept": {"text": "x"}}]}
    assert compile_for_type("Observation.subject.where(resolve() is Patient)", "Observation")(obs) == []
    assert compile_for_type("Observation.subject.where(resolve() is Group)", "Observation")(obs) == [{"reference": "Group/g"}]
    assert compile_for_type("(Observation.value as Quantity)", "Observation")(obs) == [{"value": 5}]
    assert compile_for_type("(Observation.value as CodeableConcept)", "Observation")(obs) == []
    assert compile_for_type("Observation.effective", "Observation")(obs) == [{"start": "2020"}]
    assert compile_for_type("(Observation.component.value as CodeableConcept).text", "Observation")(obs) == ["x"]
    assert compile_for_type("Patient.telecom.where(system='email')", "Patient")(
        {"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]}) == [
        {"system": "email", "value": "a@b"}]
    deceased = compile_for_type("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert deceased({"resourceType": "Patient", "deceasedDateTime": "2020"}) == [True]
    assert compile_for_type("Patient.name", "Observation") is None


def test_index_rows() -> None:
    rows = index_resource({"resourceType": "Patient", "id": "p", "name": [{"family": "Ñúñez", "given": ["Ana"]}],
                           "identifier": [{"system": "urn:s", "value": "1"}], "birthDate": "1970",
                           "generalPractitioner": [{"reference": "http://x.org/fhir/Practitioner/9/_history/2"}]})
    assert ("family", "nunez", "Ñúñez") in rows.strings
    assert ("identifier", "urn:s", "1", None) in rows.tokens
    assert ("birthdate", "1970-01-01T00:00:00.000000", "1970-12-31T23:59:59.999999") in rows.dates
    assert ("general-practitioner", "Practitioner", "9", "http://x.org/fhir/Practitioner/9") in rows.refs
    assert norm("  Crème   BRÛLÉE ") == "creme brulee"


def test_query_parser() -> None:
    p = QueryParser(base_url="http://h/fhir", strict=True)
    q = p.parse("Observation", [("code", r"http://loinc.org|1\,2,3"), ("_count", "5"), ("_sort", "-date")])
    assert q.criteria[0].values == [TokenValue("http://loinc.org", "1,2"), TokenValue(None, "3")]
    assert q.count == 5 and q.sort == [("date", True)]
    assert split_escaped(r"a\$b$c", "$") == ["a$b", "c"]
    with pytest.raises(BadRequest):
        p.parse("Observation", [("unknown-param", "1")])
    with pytest.raises(BadRequest):
        p.parse("Observation", [("code:exact", "1")])
    lenient = QueryParser(strict=False).parse("Observation", [("unknown-param", "1")])
    assert lenient.criteria == [] and lenient.warnings


def test_index_shortcut_matches_evaluating_every_parameter() -> None:
    """index_resource skips parameters whose top-level element is absent; it must lose nothing by that."""
    from pathlib import Path

    from gateway.search import index as idx
    from gateway.search.params import registry

    def every_parameter(resource: dict) -> idx.IndexRows:
        rows = idx.IndexRows()
        for sp in registry().params_for(resource["resourceType"]).values():
            if sp.extract is None or (sp.type == "composite" and len(sp.components) != 2):
                continue
            values = sp.extract(resource)
            if values:
                (idx._add_composite if sp.type == "composite" else idx._add)(rows, sp, values)
        return rows

    fixtures = sorted((Path(__file__).parent / "fixtures" / "resources").glob("*.json"))
    assert len(fixtures) >= 47
    for path in fixtures:
        res = json.loads(path.read_text())
        fast, full = idx.index_resource(res), every_parameter(res)
        for kind in ("strings", "tokens", "dates", "refs", "numbers", "uris", "composites"):
            assert sorted(map(repr, getattr(fast, kind))) == sorted(map(repr, getattr(full, kind))), (path.name, kind)

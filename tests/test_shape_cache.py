"""The shape cache (gateway/fhir/shapes.py): a resource of an already validated shape passes only when full
validation would pass it too. Each bad value below sits in a shape the cache knows, so a cache that skipped
its value checks would let it through and these tests would fail."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fhir.shapes import ShapeCache
from gateway.fhir.validation import validate_resource
from gateway.ingest.service import Ingestor
from gateway.mapping.engine import Engine
from gateway.mapping.readers import read_input
from gateway.mapping.spec import find_spec
from gateway.resources.rest import RestService
from tests.conftest import BASE, FIXTURES
from tests.mapping.helpers import counts, read

CLAIMS = FIXTURES / "mapping" / "claims.csv"


def mapped(rtype: str) -> dict[str, Any]:
    """The first resource of ``rtype`` the claims CSV mapping renders from the fixture file."""
    spec = find_spec("claims-csv")
    rd = read_input(spec, [CLAIMS])
    for unit in Engine(spec).run(rd.records, rd.rejects):
        for r in unit.resources:
            if r["resourceType"] == rtype:
                return r
    raise AssertionError(rtype)


def learned(res: dict[str, Any]) -> ShapeCache:
    assert validate_resource(res).ok and not validate_resource(res).warnings
    cache = ShapeCache()
    cache.learn(res)
    return cache


def test_a_known_shape_with_new_valid_values_passes() -> None:
    eob = mapped("ExplanationOfBenefit")
    cache = learned(eob)
    other = copy.deepcopy(eob)
    other["id"] = "claim-P1-other"
    other["billablePeriod"] = {"start": "2024-12-31", "end": "2025-01-02"}
    other["item"][0]["sequence"] = 7
    assert validate_resource(other).ok
    assert cache.passes(other) and cache.hits == 1


def test_unknown_shape_goes_to_full_validation() -> None:
    eob = mapped("ExplanationOfBenefit")
    cache = learned(eob)
    other = copy.deepcopy(eob)
    other["item"][0]["sequence"] = "1"  # a string where a positiveInt was: another shape
    assert not cache.passes(other)
    other = copy.deepcopy(eob)
    other["unknownElement"] = True
    assert not cache.passes(other) and not validate_resource(other).ok


def bad_variants(eob: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for what, path, value in [
        ("impossible date", ("billablePeriod", "start"), "2025-02-30"),
        ("month 13", ("billablePeriod", "end"), "2025-13-01"),
        ("dateTime without a zone", ("created",), "2025-03-10T10:00:00"),
        ("code with a double space", ("status",), "act  ive"),
        ("code with leading space", ("use",), " claim"),
        ("empty string", ("patient", "reference"), ""),
        ("positiveInt zero", ("item", 0, "sequence"), 0),
        ("negative positiveInt", ("careTeam", 0, "sequence"), -3),
        ("hour 25", ("created",), "2025-03-10T25:00:00Z"),
        ("id with a bad character", ("id",), "bad_id!"),
    ]:
        v = copy.deepcopy(eob)
        node: Any = v
        for p in path[:-1]:
            node = node[p]
        assert type(node[path[-1]]) is type(value), what  # the same JSON type: the shape is the known one
        node[path[-1]] = value
        out.append((what, v))
    return out


def test_bad_values_in_a_known_shape_are_rejected() -> None:
    eob = mapped("ExplanationOfBenefit")
    for what, bad in bad_variants(eob):
        cache = learned(eob)
        assert not cache.passes(bad), what
        assert not validate_resource(bad).ok, what
        assert cache.hits == 0


def test_a_bad_value_seen_after_good_ones_is_still_checked() -> None:
    """The verdict memo is keyed by element and value: a good value memoised does not vouch for a bad one."""
    eob = mapped("ExplanationOfBenefit")
    cache = learned(eob)
    for day in range(1, 28):
        good = copy.deepcopy(eob)
        good["billablePeriod"]["start"] = f"2025-02-{day:02d}"
        assert cache.passes(good)
    bad = copy.deepcopy(eob)
    bad["billablePeriod"]["start"] = "2025-02-29"
    assert not cache.passes(bad) and not validate_resource(bad).ok


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() if k != "resourceType" for p in _leaf_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaf_paths(v, (*path, i))]
    return [path]


EOB = mapped("ExplanationOfBenefit")
CACHE = learned(EOB)
PATHS = _leaf_paths(EOB)
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["2025-02-29", "2024-02-29", "2025-03-01T10:00:00Z",
                                                         "2025-03-01T25:00:00Z", "2025", "2025-3-1", "a b", "a  b",
                                                         " a", "urn:x", "-1", "1.5", "http://x/y z"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cache_verdict_equals_full_validation(data: st.DataObject) -> None:
    """Any value of the same JSON type put at any leaf: the cache says pass exactly when full validation does."""
    res = copy.deepcopy(EOB)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(PATHS))
        node: Any = res
        for p in path[:-1]:
            node = node[p]
        old = node[path[-1]]
        if isinstance(old, bool):
            continue
        if isinstance(old, int):
            node[path[-1]] = data.draw(st.integers(-5, 2**31 + 5))
        elif isinstance(old, float):
            node[path[-1]] = data.draw(st.floats(allow_nan=False, allow_infinity=False))
        elif isinstance(old, str):
            node[path[-1]] = data.draw(TEXT)
    assert CACHE.passes(res) == validate_resource(res).ok


def test_ingest_rejects_a_bad_value_in_a_cached_shape(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = CLAIMS.read_text().splitlines()
    # the last claim (a copy of C1, whose shapes the cache learns first) has a diagnosis code with two spaces:
    # not a FHIR code
    lines.append(lines[1].replace("C1,1,1", "C9,1,1").replace(",Z1231,", ",Z12  31,"))
    (tmp_path / "claims.csv").write_text("\n".join(lines) + "\n")
    ingestor = Ingestor(RestService(store, BASE), "claims-csv", parallel=False)
    summary = ingestor.ingest([tmp_path / "claims.csv"])
    assert ingestor.shapes.hits > 0  # the cache served this run
    assert [r.where for r in summary.rejects] == ["claims.csv:7"]
    assert "ExplanationOfBenefit/claim-P1-C9 is not valid" in summary.rejects[0].reason
    assert "diagnosisCodeableConcept.coding[0].code" in summary.rejects[0].reason
    assert counts(store)["ExplanationOfBenefit"] == 3  # the good claims loaded; nothing of C9 was written
    assert read(store, "ExplanationOfBenefit", "claim-P1-C1")["status"] == "active"

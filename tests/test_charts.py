"""Realistic synthetic charts (``fhir-gateway synth --charts``): deterministic by seed, 50-300 resources per
adult over several years, valid R4 (strict), references that resolve, and populations the CMS eCQMs find."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from gateway.demo.charts import chart, iter_charts, shared_resources
from tests.conftest import SHARED, require_shared

CLI = [sys.executable, "-m", "gateway.cli"]


def test_same_seed_same_chart_whatever_the_count() -> None:
    assert chart(7, 12, 2026) == chart(7, 12, 2026)
    assert chart(7, 12, 2026) != chart(8, 12, 2026)
    many = list(iter_charts(20, seed=7, last_year=2026, with_shared=False))
    assert many[: len(chart(7, 0, 2026))] == chart(7, 0, 2026)
    assert list(iter_charts(5, seed=7, last_year=2026, with_shared=False)) == many[: sum(
        len(chart(7, n, 2026)) for n in range(5))]


def test_sizes_span_and_types() -> None:
    sizes = []
    types: Counter[str] = Counter()
    years: set[int] = set()
    for n in range(300):
        rs = chart(3, n, 2026)
        sizes.append(len(rs))
        types.update(r["resourceType"] for r in rs)
        years.update(int(r["period"]["start"][:4]) for r in rs if r["resourceType"] == "Encounter")
    assert min(sizes) >= 40 and max(sizes) <= 330, (min(sizes), max(sizes))
    assert 90 <= statistics.median(sizes) <= 160
    assert sum(50 <= s <= 300 for s in sizes) >= 0.97 * len(sizes)
    assert years == {2022, 2023, 2024, 2025, 2026}
    for rtype in ("Patient", "Coverage", "Encounter", "Claim", "Condition", "Observation", "MedicationRequest",
                  "Procedure", "Immunization"):
        assert types[rtype] > 0, rtype
    assert types["Observation"] > types["Encounter"] > types["Patient"] * 10


def test_every_resource_validates_and_references_resolve() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    from gateway.fhir.validation import validate_resource

    resources = list(iter_charts(25, seed=5, last_year=2026))
    ids = {f"{r['resourceType']}/{r['id']}" for r in resources}
    assert len(ids) == len(resources)
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "reference" and isinstance(v, str):
                    refs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for r in resources:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
        result = validate_resource(r, "strict")
        assert result.ok and not result.warnings, (r["id"], result.errors, result.warnings)
        walk(r)
    assert refs and all(ref in ids for ref in refs), [ref for ref in refs if ref not in ids][:5]
    assert len(shared_resources()) == 5


def test_cli_writes_charts(tmp_path: Path) -> None:
    out = tmp_path / "charts.ndjson"
    done = subprocess.run([*CLI, "synth", "--charts", "--patients", "6", "--seed", "2", "--period-year", "2026",
                           "--years", "4", "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert lines == list(iter_charts(6, seed=2, last_year=2026, years=4))


def test_the_measures_find_their_populations_in_the_charts() -> None:
    """Every shared eCQM has patients in its initial population among 120 charts (the codes are the measures'
    own), and the proportion measures have some in the numerator."""
    require_shared()
    from gateway.cql.datasource import BundleDataSource
    from gateway.cql.datetime import parse_datetime
    from gateway.cql.engine import Context
    from gateway.cql.interval import Interval
    from gateway.measure.calculator import evaluate_subject
    from gateway.measure.cases import load_measure

    charts = [chart(1, n, 2026) for n in range(120)]
    shared = shared_resources()
    for name in ("CMS122", "CMS125", "CMS130", "CMS165", "CMS69", "CMS347", "CMS871", "CMS986"):
        fx = load_measure(SHARED / "testdata" / "ecqm" / name)
        year = "2026" if name in ("CMS871", "CMS986") else "2025"
        period = Interval(parse_datetime(f"{year}-01-01T00:00:00.000"), parse_datetime(f"{year}-12-31T23:59:59.999"),
                          True, True)
        counts: Counter[str] = Counter()
        for c in charts:
            ctx = Context(BundleDataSource(c + shared), fx.terminology, {"Measurement Period": period})
            result = evaluate_subject(fx.measure, fx.engine, fx.library, ctx, f"Patient/{c[0]['id']}")
            for code, keys in result.groups[0].members.items():
                counts[code] += len(keys)
        assert counts["initial-population"] > 0, name
        if name not in ("CMS871", "CMS986"):
            assert 0 < counts["numerator"] < counts["initial-population"], (name, counts)

"""Measure test cases in the MADiE export layout: a measure bundle (Measure, Libraries, ValueSets) and one
collection Bundle per case holding the patient's data and one expected individual MeasureReport.

Used by the data-driven tests and by ``tools/measure_table.py``, which writes the pass table in
docs/measures.md.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..cql.datasource import BundleDataSource
from ..cql.engine import Context, Engine
from ..cql.library import ElmLibrary, LibraryManager
from ..cql.terminology import ValueSetIndex
from .calculator import evaluate_subject
from .model import MeasureDef


@dataclass
class MeasureFixture:
    name: str
    measure: MeasureDef
    manager: LibraryManager
    engine: Engine
    library: ElmLibrary
    terminology: ValueSetIndex


def load_measure(dir_: Path) -> MeasureFixture:
    bundle = json.loads((dir_ / "measure-bundle.json").read_text())
    resources = [e["resource"] for e in bundle.get("entry", [])]
    measure_res = next(r for r in resources if r["resourceType"] == "Measure")
    manager = LibraryManager()
    manager.add_resources(resources)
    terminology = ValueSetIndex.from_resources(r for r in resources if r["resourceType"] == "ValueSet")
    measure = MeasureDef.from_resource(measure_res)
    library = manager.by_canonical(measure.library_url)
    return MeasureFixture(dir_.name, measure, manager, Engine(manager), library, terminology)


@dataclass
class CaseResult:
    case: str
    description: str
    expected: list[dict[str, Any]]
    actual: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    published: list[dict[str, Any]] | None = None  # the published expectation when an override replaced it
    override_reason: str | None = None
    evaluated: list[str] = field(default_factory=list)  # "Type/id" of the resources the evaluation read
    published_evaluated: list[str] = field(default_factory=list)  # the expected report's evaluatedResource

    @property
    def passed(self) -> bool:
        return self.error is None and self.expected == self.actual


def load_overrides(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Corrected expectations for cases whose published report contradicts the CQL (see docs/measures.md)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {(c["measure"], c["case"]): c for c in data.get("cases", [])}


def _counts(report_group: dict[str, Any]) -> dict[str, Any]:
    """Population counts by code; observations (test reports write one entry per observation, coded
    ``denominator-observation``, ``numerator-observation`` or ``measure-population-observation``, the
    observed value in ``count``) as a sorted multiset per code."""
    counts: dict[str, Any] = {}
    observations: dict[str, list[str]] = {}
    for p in report_group.get("population") or []:
        code = next((c.get("code") for c in (p.get("code") or {}).get("coding") or []), None)
        if code and code.endswith("-observation"):
            observations.setdefault(code, []).append(_num(p.get("count")))
        elif code:
            counts[code] = p.get("count", 0)
    for code, values in observations.items():
        counts[code] = sorted(Counter(values).items())
    return counts


def _num(v: Any) -> str:
    if v is None:
        return "null"
    d = Decimal(str(v)).normalize()
    return format(d, "f")


def measurement_period(report: dict[str, Any]) -> Any:
    from ..cql.datetime import parse_datetime
    from ..cql.interval import Interval

    start = report["period"]["start"][:10]
    end = report["period"]["end"][:10]
    return Interval(parse_datetime(start + "T00:00:00.000"), parse_datetime(end + "T23:59:59.999"), True, True)


def run_case(fixture: MeasureFixture, case_path: Path,
             overrides: dict[tuple[str, str], dict[str, Any]] | None = None) -> CaseResult:
    bundle = json.loads(case_path.read_text())
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    expected_report = next(r for r in reversed(resources) if r["resourceType"] == "MeasureReport")
    data = [r for r in resources if r is not expected_report]
    desc = next((e.get("valueMarkdown", "") for e in expected_report.get("extension") or []
                 if e.get("url", "").endswith("cqfm-testCaseDescription")), "")
    expected = [_counts(g) for g in expected_report.get("group") or []]
    result = CaseResult(case_path.stem, desc.strip(), expected)
    result.published_evaluated = ["/".join(r.get("reference", "").split("/")[-2:])
                                  for r in expected_report.get("evaluatedResource") or []]
    override = (overrides or {}).get((fixture.name, case_path.stem))
    if override is not None:
        result.published, result.expected = expected, override["expected"]
        result.override_reason = override["reason"]
    try:
        ds = BundleDataSource(data)
        patient = ds.patient()
        ctx = Context(ds, fixture.terminology, {"Measurement Period": measurement_period(expected_report)},
                      evaluated={})
        subject = f"Patient/{patient['id']}" if patient else "Patient/unknown"
        sr = evaluate_subject(fixture.measure, fixture.engine, fixture.library, ctx, subject)
        for gr in sr.groups:
            counts: dict[str, Any] = {code: len(keys) for code, keys in gr.members.items()}
            observed: dict[str, list[str]] = {}
            for target, _key, value in gr.observations:
                observed.setdefault(f"{target}-observation", []).append(_num(_obs_value(value)))
            for code, values in observed.items():
                counts[code] = sorted(Counter(values).items())
            result.actual.append(counts)
        result.evaluated = list(ctx.evaluated or {})
    except Exception as exc:  # noqa: BLE001 - a failing case is reported with its error, not raised
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _obs_value(v: Any) -> Any:
    value = getattr(v, "value", v)  # Quantity -> its value
    return value


def case_paths(dir_: Path) -> list[Path]:
    return sorted((dir_ / "tests").glob("*.json"))

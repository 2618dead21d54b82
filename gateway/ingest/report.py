"""The answer of ``$ingest``: an OperationOutcome carrying the run's summary, its rejects, its data-quality
warnings grouped by rule, and the whole data-quality report as a JSON attachment (extension ``REPORT_EXTENSION``)
for systems that read it mechanically."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..fhir.errors import Issue, operation_outcome
from .service import IngestSummary

REPORT_EXTENSION = "http://fhir-vbc-gateway.example.org/StructureDefinition/ingest-data-quality-report"


def ingest_outcome(fmt: str, summary: IngestSummary) -> dict[str, Any]:
    """The OperationOutcome for one ingest run: an information issue with the counts, an error issue per
    rejected record (where, why, which field), a warning issue per data-quality rule with its count and first
    example, and the data-quality report (``IngestSummary.quality``) as an ``application/json`` attachment."""
    report = summary.quality()
    issues = [Issue("information", "informational",
                    f"{fmt} mapping {summary.mapping_version}: {summary.records} records read, "
                    f"{summary.created} resources created, {summary.updated} updated, "
                    f"{summary.unchanged} unchanged, "
                    f"{len(summary.rejects)} records rejected, {summary.units_with_warnings} loaded with warnings")]
    issues += [Issue("error", "invalid", f"{r.where}: {r.reason}", [r.field] if r.field else [])
               for r in summary.rejects]
    for group in report["warnings"]:
        ex = group["examples"][0]
        issues.append(Issue("warning", "business-rule", f"data-quality rule {group['rule']}: {group['count']} "
                            f"time(s), loaded with a warning; first at {ex['where']}: {ex['message']}",
                            [ex["field"]] if ex.get("field") else []))
    outcome = operation_outcome(issues)
    data = base64.b64encode(json.dumps(report, sort_keys=True).encode()).decode()
    outcome["extension"] = [{"url": REPORT_EXTENSION,
                             "valueAttachment": {"contentType": "application/json", "data": data,
                                                 "title": "data-quality report"}}]
    return outcome

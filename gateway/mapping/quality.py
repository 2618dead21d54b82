"""The data-quality report of one ingest run (pure: no store, no HTTP).

A run reads records, loads some of them (some with warnings: a value kept although it failed a format check, an
implementation-guide rule the file breaks) and rejects the others with a reason. The report counts each, and
groups warnings and rejects by *rule* (a short, stable name such as ``code-format`` or ``x12-usage``) with the
number of occurrences and the first few examples (file, line, field, value), so a data team sees at a glance what
is wrong with a feed and where to look. The CLI prints it, ``--report`` writes it as JSON and ``$ingest`` returns
it with its OperationOutcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EXAMPLES = 5  # examples kept per rule

# rule names for the reasons readers, the template evaluator and the ingest pipeline give (first match wins)
_REJECT_RULES: list[tuple[str, re.Pattern[str]]] = [
    (rule, re.compile(pattern)) for rule, pattern in [
        ("unknown-code", r"unknown code"),
        ("bad-date", r"is not a date|is not an HL7 date"),
        ("bad-number", r"is not a (whole )?number|cannot apply 'int'|cannot apply 'decimal'"),
        ("column-count", r"columns, the header has"),
        ("missing-columns", r"header lacks column"),
        ("truncated-record", r"truncated .* record"),
        ("not-text", r"not UTF-8|not ASCII"),
        ("not-csv", r"not readable as CSV|header is not readable CSV"),
        ("x12-envelope", r"interchange envelope|functional group|transaction set"),
        ("x12-structure", r"^segment:|not a readable X12"),
        ("x12-usage", r"implementation guide"),
        ("no-claim-id", r"no control number"),
        ("invalid-resource", r"is not valid:"),
        ("not-storable", r"cannot be stored|not stored"),
        ("unknown-field", r"unknown field"),
    ]
]


@dataclass
class Finding:
    """One warning about a record that was loaded anyway: which rule, where (``file:line``), the field and value
    concerned and a sentence saying what was found and what was done about it."""

    where: str
    rule: str
    message: str
    field: str | None = None
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The finding as JSON for reports (absent field and value left out)."""
        return _example(self.where, self.message, self.field, self.value)


def reject_rule(reason: str, rule: str | None = None) -> str:
    """The rule a reject broke: the one its producer named, else the first whose pattern its reason matches."""
    if rule:
        return rule
    for name, pattern in _REJECT_RULES:
        if pattern.search(reason):
            return name
    return "other"


def _example(where: str, message: str, field: str | None, value: str | None) -> dict[str, Any]:
    file, _, line = where.rpartition(":")
    out: dict[str, Any] = {"where": where}
    if file and line.isdigit():
        out["file"], out["line"] = file, int(line)
    if field:
        out["field"] = field
    if value is not None:
        out["value"] = value
    out["message"] = message
    return out


def _groups(items: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    by_rule: dict[str, dict[str, Any]] = {}
    for rule, example in items:
        g = by_rule.setdefault(rule, {"rule": rule, "count": 0, "examples": []})
        g["count"] += 1
        if len(g["examples"]) < EXAMPLES:
            g["examples"].append(example)
    return sorted(by_rule.values(), key=lambda g: (-g["count"], g["rule"]))


def quality_report(records_read: int, loaded: int, loaded_with_warnings: int, warnings: Iterable[Finding],
                   rejects: Iterable[Any]) -> dict[str, Any]:
    """The report as JSON: counts of records read, loaded (with warnings among them) and rejected, and warnings
    and rejects grouped by rule, most frequent first. ``rejects`` are ``Reject``s (where, reason, field, and
    optionally rule and value)."""
    rejects = list(rejects)
    warnings = list(warnings)
    return {
        "recordsRead": records_read,
        "loaded": loaded,
        "loadedWithWarnings": loaded_with_warnings,
        "rejected": len(rejects),
        "warnings": _groups((w.rule, w.to_json()) for w in warnings),
        "rejects": _groups((reject_rule(r.reason, getattr(r, "rule", None)),
                            _example(r.where, r.reason, r.field, getattr(r, "value", None))) for r in rejects),
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as short lines of text for a terminal: the counts, then one line per rule with an example."""
    out = [f"data quality: {report['recordsRead']} records read, {report['loaded']} loaded "
           f"({report['loadedWithWarnings']} with warnings), {report['rejected']} rejected"]
    for kind in ("warnings", "rejects"):
        for g in report[kind]:
            ex = g["examples"][0]
            at = ex["where"] + (f" field {ex['field']}" if ex.get("field") else "")
            out.append(f"  {kind[:-1]} {g['rule']}: {g['count']} (first at {at}: {ex['message']})")
    return out

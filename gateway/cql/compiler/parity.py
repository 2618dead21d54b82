"""End-to-end parity on the HL7 CQL conformance suite: every test's CQL text (``expression`` and
``outputs``) translated by this translator and evaluated by the engine, judged by the same rules as the
fixture ELM (``gateway.cql.conformance``), and compared with the fixture ELM's outcome.

A test is **same** when both give the same pass/fail status, **translator error** when this translator
refused a definition the reference translator accepted (and the status differs), **different** otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from ..conformance import PASSED, Outcome, SuiteTest, run_test
from .library import translate_library

SAME, DIFFERENT, TRANSLATOR_ERROR = "same", "different", "translator error"


@dataclass(frozen=True)
class ParityResult:
    """One suite test run both ways."""

    test: SuiteTest
    fixture: Outcome
    ours: Outcome
    our_errors: list[str]
    verdict: str


def library_text(record: dict[str, Any]) -> str:
    """The CQL library the fixture was made from: the expression and each output as its own definition."""
    lines = ["library ConformanceTest version '1.0.0'", "", f'define "Expression":\n{record["expression"]}']
    for i, out in enumerate(record.get("outputs") or []):
        lines.append(f'define "Output{i}":\n{out}')
    return "\n\n".join(lines) + "\n"


def translate_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str], int]:
    """The test record with our ELM in place of the fixture's (None for a definition with an error), our
    error messages, and the number of CQL lines translated."""
    text = library_text(record)
    result = translate_library(text)
    defs: dict[str, Any] = {}
    if result.elm is not None:
        defs = {d["name"]: d for d in result.elm["library"]["statements"]["def"]}
    errors = [f"{e.statement or ''}@{e.line}:{e.col}: {e.message}" for e in result.errors]
    bad = {e.statement for e in result.errors}
    if result.elm is None:
        bad |= {"Expression"} | {f"Output{i}" for i in range(len(record.get("outputs") or []))}

    def pick(name: str) -> Any:
        return None if name in bad else defs.get(name)

    new = dict(record)
    new["elm_expression"] = pick("Expression")
    new["elm_outputs"] = [pick(f"Output{i}") for i in range(len(record.get("outputs") or []))]
    new["translation_errors"] = [{"message": m} for m in errors]
    return new, errors, text.count("\n")


def run_parity(tests: list[SuiteTest]) -> tuple[list[ParityResult], dict[str, float]]:
    """Every test both ways, with timing: translation seconds and CQL lines translated."""
    out: list[ParityResult] = []
    seconds = 0.0
    lines = 0
    for test in tests:
        fixture = run_test(test)
        t0 = time.perf_counter()
        record, errors, n = translate_record(test.record)
        seconds += time.perf_counter() - t0
        lines += n
        ours = run_test(replace(test, record=record))
        if ours.status == fixture.status:
            verdict = SAME
        elif errors and test.record.get("elm_expression") is not None and (
                record["elm_expression"] is None or None in record["elm_outputs"]):
            verdict = TRANSLATOR_ERROR
        else:
            verdict = DIFFERENT
        out.append(ParityResult(test, fixture, ours, errors, verdict))
    return out, {"seconds": seconds, "lines": float(lines)}


def render(results: list[ParityResult]) -> str:
    """The per-file parity table (Markdown)."""
    files: dict[str, dict[str, int]] = {}
    for r in results:
        c = files.setdefault(r.test.file, {SAME: 0, DIFFERENT: 0, TRANSLATOR_ERROR: 0, "passed": 0})
        c[r.verdict] += 1
        c["passed"] += r.ours.status == PASSED
    lines = ["| file | tests | same outcome | different | translator error | pass from text |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, c in sorted(files.items()):
        total = c[SAME] + c[DIFFERENT] + c[TRANSLATOR_ERROR]
        lines.append(f"| {name} | {total} | {c[SAME]} | {c[DIFFERENT]} | {c[TRANSLATOR_ERROR]} | {c['passed']} |")
    tot = {k: sum(c[k] for c in files.values()) for k in (SAME, DIFFERENT, TRANSLATOR_ERROR, "passed")}
    lines.append(f"| **total** | **{len(results)}** | **{tot[SAME]}** | **{tot[DIFFERENT]}** | "
                 f"**{tot[TRANSLATOR_ERROR]}** | **{tot['passed']}** |")
    return "\n".join(lines) + "\n"

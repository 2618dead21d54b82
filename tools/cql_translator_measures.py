"""The eCQM corpus from CQL text: strip every ELM attachment from the measure bundles' Libraries, translate
their CQL with our translator, and run every test case; compare with the published ELM's run.

Usage: python tools/cql_translator_measures.py [ECQM_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.compiler.resources import cql_text, translate_resources  # noqa: E402
from gateway.cql.engine import Engine  # noqa: E402
from gateway.cql.library import LibraryManager  # noqa: E402
from gateway.measure.cases import MeasureFixture, case_paths, load_measure, run_case  # noqa: E402

ECQM = ROOT.parent / "shared" / "testdata" / "ecqm"


def from_text(resources: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], int, float]:
    """The resources with every Library's ELM replaced by our translation of its CQL text; the translation
    errors, the lines of CQL translated and the seconds it took."""
    t0 = time.perf_counter()
    out, report = translate_resources(resources)
    seconds = time.perf_counter() - t0
    lines = sum((cql_text(r) or "").count("\n") + 1 for r in resources if r["resourceType"] == "Library")
    errors = [f"{t.name} {e.line}:{e.col} {e.message}" for t in report for e in t.errors]
    return out, errors, lines, seconds


def text_fixture(dir_: Path) -> tuple[MeasureFixture, list[str], int, float]:
    """The measure of ``dir_`` loaded from CQL text only."""
    published = load_measure(dir_)
    bundle = json.loads((dir_ / "measure-bundle.json").read_text())
    resources, errors, lines, seconds = from_text([e["resource"] for e in bundle.get("entry", [])])
    manager = LibraryManager()
    manager.add_resources(resources)
    library = manager.by_canonical(published.measure.library_url)
    fixture = MeasureFixture(published.name, published.measure, manager, Engine(manager), library,
                             published.terminology)
    return fixture, errors, lines, seconds


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else ECQM
    total = same = 0
    for dir_ in sorted(p for p in folder.iterdir() if (p / "measure-bundle.json").exists()):
        published = load_measure(dir_)
        ours, errors, lines, seconds = text_fixture(dir_)
        n = s = 0
        problems: dict[str, str] = {}
        for case in case_paths(dir_):
            a = run_case(published, case)
            b = run_case(ours, case)
            n += 1
            if a.actual == b.actual and (a.error is None) == (b.error is None):
                s += 1
            elif len(argv) > 2:
                problems[str(b.error)[:160] if b.error else "populations differ"] = case.stem
        total += n
        same += s
        for p, c in problems.items():
            print("   ", c, p)
        print(f"{dir_.name}: {s} of {n} cases same populations; {len(errors)} translation errors; "
              f"{lines} lines in {seconds:.2f} s")
    print(f"total: {same} of {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

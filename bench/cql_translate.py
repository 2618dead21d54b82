"""Translation speed of the built-in CQL-to-ELM translator, in lines of CQL per second.

Two workloads, each timed with ``time.perf_counter`` around the translator only (no evaluation):

- the HL7 CQL conformance suite: 1,823 small libraries (one per test: the expression and its outputs);
- the eCQM corpus: for each of the 8 measure bundles in ``../shared/testdata/ecqm``, every Library of the
  bundle translated from its CQL, each in full with the libraries it includes (FHIRHelpers, QICoreCommon,
  ...), as ``translate_resources`` does when a bundle's Libraries carry only CQL; lines count each Library
  once.

Usage: python bench/cql_translate.py [--repeat N]   (writes bench/results/cql-translate.json and .md)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.compiler import translate_library  # noqa: E402
from gateway.cql.compiler.parity import library_text  # noqa: E402
from gateway.cql.compiler.resources import cql_text, translate_resources  # noqa: E402
from gateway.cql.conformance import load_suite  # noqa: E402

SHARED = ROOT.parent / "shared" / "testdata"
RESULTS = ROOT / "bench" / "results"


def suite(repeat: int) -> dict[str, float]:
    texts = [library_text(t.record) for t in load_suite(SHARED / "cql-tests")]
    lines = sum(t.count("\n") for t in texts)
    best = min(_timed(lambda: [translate_library(t) for t in texts]) for _ in range(repeat))
    return {"libraries": len(texts), "lines": lines, "seconds": round(best, 3),
            "lines_per_second": round(lines / best)}


def ecqm(repeat: int) -> list[dict[str, object]]:
    out = []
    for bundle_path in sorted(SHARED.glob("ecqm/*/measure-bundle.json")):
        resources = [e["resource"] for e in json.loads(bundle_path.read_text())["entry"]]
        libraries = [r for r in resources if r["resourceType"] == "Library" and cql_text(r) is not None]
        lines = sum((cql_text(r) or "").count("\n") + 1 for r in libraries)
        best = min(_timed(lambda: translate_resources(resources)) for _ in range(repeat))  # noqa: B023
        largest = max(libraries, key=lambda r: len(cql_text(r) or ""))
        out.append({"measure": bundle_path.parent.name, "libraries": len(libraries), "lines": lines,
                    "largest_library": largest["name"], "seconds": round(best, 3),
                    "lines_per_second": round(lines / best)})
    return out


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="runs per workload; the fastest is reported")
    args = ap.parse_args()
    result = {"python": platform.python_version(), "machine": platform.machine(), "repeat": args.repeat,
              "suite": suite(args.repeat), "ecqm": ecqm(args.repeat)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cql-translate.json").write_text(json.dumps(result, indent=2) + "\n")
    s = result["suite"]
    md = ["# CQL translation speed", "",
          f"Python {result['python']} on {result['machine']}, fastest of {args.repeat} runs.", "",
          f"Conformance suite: {s['libraries']:,} libraries, {s['lines']:,} lines in {s['seconds']} s: "
          f"**{s['lines_per_second']:,} lines/s**.", "",
          "| measure bundle | Libraries | lines | largest Library | seconds | lines/s |",
          "|---|---:|---:|---|---:|---:|"]
    for r in result["ecqm"]:  # type: ignore[union-attr]
        md.append(f"| {r['measure']} | {r['libraries']} | {r['lines']:,} | {r['largest_library']} | "
                  f"{r['seconds']} | {r['lines_per_second']:,} |")
    (RESULTS / "cql-translate.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

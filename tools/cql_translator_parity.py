"""Translate every HL7 CQL conformance suite test from its CQL text with our translator, run it, compare
with the fixture ELM's outcome, and write the generated section of docs/cql-translator.md.

Usage: python tools/cql_translator_parity.py [SUITE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.compiler.parity import SAME, render_section, run_parity, splice  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from cql_conformance import suite_tests  # noqa: E402

DOC = ROOT / "docs" / "cql-translator.md"


def main(argv: list[str]) -> int:
    """Run the parity comparison, rewrite the doc's generated section, print the totals and the speed."""
    tests = suite_tests(argv)
    if tests is None:
        return 2
    results, timing = run_parity(tests)
    DOC.write_text(splice(DOC.read_text(), render_section(results)))
    same = sum(r.verdict == SAME for r in results)
    print(f"{same} of {len(results)} same outcome; translated {int(timing['lines'])} lines of CQL in "
          f"{timing['seconds']:.2f} s ({timing['lines'] / timing['seconds']:,.0f} lines/s); wrote "
          f"{DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""Run the HL7 CQL conformance suite in ../shared/testdata/cql-tests and write docs/cql-conformance.md.

Usage: python tools/cql_conformance.py [SUITE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.conformance import (  # noqa: E402
    SuiteTest,
    load_not_applicable,
    load_not_applicable_kinds,
    load_suite,
    render,
    run_suite,
)

SUITE = ROOT.parent / "shared" / "testdata" / "cql-tests"
NOT_APPLICABLE = ROOT / "tests" / "fixtures" / "cql-conformance-not-applicable.json"
DOC = ROOT / "docs" / "cql-conformance.md"


def suite_tests(argv: list[str]) -> list[SuiteTest] | None:
    """The suite tests of the folder named on the command line (default ../shared/testdata/cql-tests), or
    None, said on stderr, when it holds no suite file; shared with tools/cql_translator_parity.py."""
    folder = Path(argv[1]) if len(argv) > 1 else SUITE
    tests = load_suite(folder)
    if not tests:
        print(f"no suite files in {folder}", file=sys.stderr)
        return None
    return tests


def main(argv: list[str]) -> int:
    """Run every suite test and write the pass table; exit status 1 when a test fails or errors."""
    tests = suite_tests(argv)
    if tests is None:
        return 2
    outcomes = list(run_suite(tests, load_not_applicable(NOT_APPLICABLE)))
    DOC.write_text(render(outcomes, len(tests), load_not_applicable_kinds(NOT_APPLICABLE)))
    bad = [o for o in outcomes if o.status in ("failed", "errored")]
    print(f"{len(tests) - len(bad)} of {len(tests)} passed or not applicable; wrote {DOC.relative_to(ROOT)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

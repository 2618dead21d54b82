"""ELM fidelity: our translation of each eCQM Library's CQL compared structurally with the published ELM,
every differing definition classified (``gateway.cql.compiler.fidelity``); writes the generated section of
docs/cql-translator.md and prints the totals and each unexplained definition.

Usage: python tools/cql_translator_fidelity.py [ECQM_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.compiler.fidelity import compare, render_section, splice  # noqa: E402

ECQM = ROOT.parent / "shared" / "testdata" / "ecqm"
DOC = ROOT / "docs" / "cql-translator.md"


def main(argv: list[str]) -> int:
    """Compare, rewrite the doc's generated section, print the totals and what is left unexplained."""
    folder = Path(argv[1]) if len(argv) > 1 else ECQM
    if not any(folder.glob("*/measure-bundle.json")):
        print(f"no measure bundles under {folder}", file=sys.stderr)
        return 2
    defs = compare(folder)
    DOC.write_text(splice(DOC.read_text(), render_section(defs)))
    left = [d for d in defs if not d.identical and not d.categories]
    print(f"{sum(d.identical for d in defs)} of {len(defs)} definitions identical, "
          f"{sum(bool(d.categories) for d in defs)} explained, {len(left)} unexplained; wrote "
          f"{DOC.relative_to(ROOT)}")
    for d in left:
        print(f"  {d.library}.{d.name}: {d.difference}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

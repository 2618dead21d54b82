"""Write gateway/fhir/element-table.json: the elements of every FHIR R4B type, read from the installed
fhir.resources models.

Why: the CQL engine's property navigation, ``_summary=true`` and the XML converter need only element metadata
(JSON name, FHIR type, repetition, choice group, isSummary, XML order). Reading it from the fhir.resources
pydantic models costs every fresh process (a CLI run, a pool worker, a benchmark) about 0.3 s; the committed
table is read in a few milliseconds. ``gateway.fhir.element_table.compute_table`` does the reading; this
script only writes its result. Run it again after upgrading fhir.resources (``tests/test_element_table.py``
fails until the file matches the installed models).

Usage: python tools/gen_element_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.fhir.element_table import TABLE_FILE, compute_table, table_bytes  # noqa: E402


def main() -> None:
    """Compute the table from the installed models and write it next to gateway/fhir/element_table.py."""
    table = compute_table()
    data = table_bytes(table)
    TABLE_FILE.write_bytes(data)
    print(f"{TABLE_FILE.relative_to(ROOT)}: {len(table['types'])} types, {len(data):,} bytes "
          f"({table['source']})")


if __name__ == "__main__":
    main()

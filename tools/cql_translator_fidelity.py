"""ELM fidelity: our translation of each eCQM Library's CQL compared structurally with the published ELM.

Ignored: ``localId``, ``locator``, ``annotation``, result types (``resultTypeName``/``resultTypeSpecifier``),
``signature``, empty lists, and the Retrieve filters the published ELM carries empty (``include``,
``codeFilter``, ``dateFilter``, ``otherFilter``). A definition is *identical* when what remains is equal.

Usage: python tools/cql_translator_fidelity.py [ECQM_DIR]
"""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cql.compiler.resources import ELM_TYPE, content_type, translate_resources  # noqa: E402

ECQM = ROOT.parent / "shared" / "testdata" / "ecqm"
IGNORED = {"localId", "locator", "annotation", "resultTypeName", "resultTypeSpecifier", "signature", "include",
           "codeFilter", "dateFilter", "otherFilter"}


def normal(n: Any) -> Any:
    """The ELM with the ignored keys and empty lists removed, numbers as text."""
    if isinstance(n, dict):
        return {k: normal(v) for k, v in n.items() if k not in IGNORED and v != []}
    if isinstance(n, list):
        return [normal(x) for x in n]
    if isinstance(n, (int, float)) and not isinstance(n, bool):
        return str(n)
    return str(n) if type(n).__name__ == "Decimal" else n


def first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two normalised ELM trees first differ, and the node types there."""
    if type(a) is not type(b):
        return f"{path}: {_kind(a)} vs {_kind(b)}"
    if isinstance(a, dict):
        if a.get("type") != b.get("type"):
            return f"{path}: {a.get('type')} vs {b.get('type')}"
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{a.get('type', '')}.{k}: only in {'ours' if k in a else 'published'}"
            if a[k] != b[k]:
                return first_difference(a[k], b[k], f"{path}/{a.get('type', '')}.{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {str(a)[:40]!r} vs {str(b)[:40]!r}"


def _category(where: str) -> str:
    """A difference without its path prefix: the last step and what differs there."""
    path, _, what = where.partition(": ")
    return f"{path.rsplit('/', 1)[-1]}: {what}"[:90]


def _kind(x: Any) -> str:
    return x.get("type", "object") if isinstance(x, dict) else type(x).__name__


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else ECQM
    published: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*/measure-bundle.json")):
        for e in json.loads(path.read_text())["entry"]:
            r = e["resource"]
            if r["resourceType"] == "Library" and r["name"] not in resources:
                resources[r["name"]] = r
                for a in r.get("content") or []:
                    if content_type(a) == ELM_TYPE:
                        published[r["name"]] = json.loads(base64.b64decode(a["data"]))
    ours, _ = translate_resources(list(resources.values()))
    kinds: Counter[str] = Counter()
    total = same = 0
    print("| Library | definitions | identical |\n|---|---:|---:|")
    for r in ours:
        mine = json.loads(base64.b64decode(next(a["data"] for a in r["content"] if content_type(a) == ELM_TYPE)))
        theirs = published[r["name"]]
        a = {d["name"] + str(len(d.get("operand") or [])): normal(d) for d in mine["library"]["statements"]["def"]}
        b = {d["name"] + str(len(d.get("operand") or [])): normal(d)
             for d in theirs["library"]["statements"]["def"]}
        n = len(b)
        s = sum(1 for k in b if a.get(k) == b[k])
        total, same = total + n, same + s
        print(f"| {r['name']} | {n} | {s} |")
        for k in b:
            if a.get(k) != b[k]:
                where = first_difference(a.get(k), b[k]) if k in a else "missing"
                kinds[_category(where) if k in a else "missing"] += 1
    print(f"| **total** | **{total}** | **{same}** |")
    print()
    for k, v in kinds.most_common(25):
        print(v, k)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

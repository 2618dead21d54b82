"""Shared pieces of the Data feeds tests: an 835 remittance from the fixture corpus with one claim payment made
unreadable (so a run has one reject and data-quality warnings), and readers of the feeds operations' Parameters."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.conftest import SHARED, require_shared

REMITTANCE = SHARED / "testdata" / "internal" / "x12" / "835" / "managed-care.835"
BAD_CLAIM = ("CLP*8765432112*1*1200.00", "CLP*8765432112*1*ABC")  # CLP03 (the charge) is no amount


def bad_remittance(folder: Path, name: str = "remit-bad.835") -> Path:
    """The managed-care 835 of the corpus with its second claim payment's charge made unreadable: two records,
    one rejected (at the CLP segment's line), the other loaded with data-quality warnings."""
    require_shared()
    text = REMITTANCE.read_text(encoding="utf-8")
    assert BAD_CLAIM[0] in text
    path = folder / name
    path.write_text(text.replace(*BAD_CLAIM), encoding="utf-8")
    return path


def parts(param: dict[str, Any]) -> dict[str, list[Any]]:
    """A parameter's parts by name: each value[x], or the part itself when it has parts."""
    out: dict[str, list[Any]] = {}
    for p in param.get("part") or []:
        value = p if "part" in p else next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return out


def top(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The top-level parameters called ``name``."""
    assert body["resourceType"] == "Parameters", body
    return [p for p in body.get("parameter") or [] if p["name"] == name]


def runs(body: dict[str, Any]) -> list[dict[str, list[Any]]]:
    return [parts(p) for p in top(body, "run")]


def report(run: dict[str, list[Any]]) -> dict[str, Any]:
    """The data-quality report attached to one run."""
    att = run["report"][0]
    assert att["contentType"] == "application/json"
    return dict(json.loads(base64.b64decode(att["data"])))

"""The robustness corpus (issue 17): variants of a sample of every ingest format (tests/mapping/mutations.py:
unknown but well-formed codes, missing optional and situational segments, alternative delimiters, CRLF and
trailing blanks, repeated loops and rows) run through the real ingest into SQLite and PostgreSQL.

Properties, for every variant:
- no crash: the ingest returns a summary;
- every reject names a record of the input (``file:line`` within the file) and a reason, and its rule is known;
- nothing is lost silently: X12 claims read = claims loaded + claims rejected; claims CSV claims read (distinct
  CLAIM_ID) = claims loaded + claims rejected; a variant that only changes the form stores exactly what the
  sample stores;
- running the same input again loads nothing twice (no resource created or updated)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.ingest.service import Ingestor, IngestSummary
from gateway.mapping.quality import reject_rule
from gateway.resources.rest import RestService
from gateway.store.sql.tables import Resource
from tests.conftest import BASE, require_shared, wipe
from tests.mapping.helpers import read
from tests.mapping.mutations import Files, Variant, samples, variants

FORMATS = ["x12-837", "claims-csv", "cclf", "synthea-csv", "hl7v2"]


def _write(folder: Path, files: Files) -> list[Path]:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def _ingest(store: Any, fmt: str, paths: list[Path]) -> IngestSummary:
    return Ingestor(RestService(store, BASE), fmt, parallel=False).ingest(paths)


def _stored(store: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Everything stored, without the version metadata."""
    with store.engine.connect() as conn:
        keys = conn.execute(select(Resource.res_type, Resource.res_id)).all()  # type: ignore[call-overload]
    out = {}
    for rtype, rid in keys:
        res = read(store, rtype, rid)
        res.pop("meta", None)
        out[(rtype, rid)] = res
    return out


def _check_rejects(summary: IngestSummary, files: Files, variant: str) -> None:
    lines = {name: len(data.replace(b"\r\n", b"\n").split(b"\n")) for name, data in files.items()}
    for r in summary.rejects:
        name, _, line = r.where.rpartition(":")
        assert name in lines and line.isdigit() and 1 <= int(line) <= lines[name], (variant, r)
        assert r.reason.strip(), (variant, r)
        assert reject_rule(r.reason, r.rule) != "other", (variant, r)


def _claims_csv_ids(data: bytes) -> set[str]:
    text = data.decode("utf-8").replace("\r\n", "\n")
    try:
        return {row["CLAIM_ID"].strip() for row in csv.DictReader(io.StringIO(text)) if row.get("CLAIM_ID")}
    except KeyError:
        return set()


def _accounting(fmt: str, summary: IngestSummary, v: Variant) -> None:
    """Every claim read is loaded or rejected (X12 and the claims CSV, where a unit is a claim)."""
    if fmt == "x12-837":
        assert summary.records == summary.units + len(summary.rejects), (v.name, summary.to_json())
    elif fmt == "claims-csv":
        if not summary.records:
            assert summary.rejects and summary.units == 0, v.name  # a file refused whole, with its reason
            return
        ids = _claims_csv_ids(v.files["claims.csv"])
        claim_units = summary.by_type.get("ExplanationOfBenefit", 0)
        refused = {r.where for r in summary.rejects if r.reason.startswith("claim:")}
        assert claim_units + len(refused) >= len(ids), (v.name, claim_units, refused, len(ids))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_variant_loads_or_explains(store, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    require_shared()
    sample = samples()[fmt]
    base = _ingest(store, fmt, _write(tmp_path / "sample", sample))
    assert base.records > 0 and base.units > 0
    _check_rejects(base, sample, "sample")
    expected = _stored(store)
    for v in variants(fmt, sample):
        wipe(store)
        paths = _write(tmp_path / v.name, v.files)
        summary = _ingest(store, fmt, paths)
        _check_rejects(summary, v.files, v.name)
        _accounting(fmt, summary, v)
        report = summary.quality()
        assert report["rejected"] == len(summary.rejects) and report["loaded"] == summary.units
        assert sum(g["count"] for g in report["warnings"]) == len(summary.warnings)
        if v.benign:
            assert len(summary.rejects) == len(base.rejects), (v.name, summary.rejects)
            assert _stored(store) == expected, v.name
        again = _ingest(store, fmt, paths)
        assert (again.created, again.updated) == (0, 0), (v.name, again.to_json())
        assert len(again.rejects) == len(summary.rejects), v.name

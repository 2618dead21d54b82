"""``fhir-gateway synth --claims`` → ``ingest`` → ``extract`` end to end with the real console script, on a temporary
SQLite file and on a PostgreSQL database of the session server (issue 17, defects 3 and 4, and the data-quality
report). The CARIN Blue Button STU2 examples are read in place from ../shared; the variants of them (a name with
only ``text``, several names, extensions, a contained Practitioner) are written by the test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.ingest.extract import extract_internal
from gateway.mapping.outbound import load_outbound
from gateway.store.sql.store import SqlStore
from tests.conftest import SHARED, clean_env, gateway_exe, require_shared

CARIN = SHARED / "testdata" / "internal" / "carin_bb" / "stu2.0.0"


@pytest.fixture()
def db(fresh_db_url: str) -> str:
    """A fresh database URL (tests/conftest.py ``fresh_db_url``)."""
    return fresh_db_url


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([gateway_exe(), *args], capture_output=True, text=True, env=clean_env(), timeout=600)


def test_a_named_claims_file_is_always_read(db: str, tmp_path: Path) -> None:
    """Defect 4: ``synth --claims out.csv`` then ``ingest --format claims-csv out.csv`` used to read 0 files and
    exit 0. Now the named file is read and the report counts what it holds; a run that reads nothing fails."""
    out = tmp_path / "out.csv"
    r = _run("synth", "--patients", "5", "--seed", "3", "--claims", str(out))
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    claims = {row.split(",")[0] for row in lines[1:]}
    report = tmp_path / "report.json"
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", "--report", str(report), str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"1 files, {len(lines) - 1} records read" in r.stdout
    assert "data quality:" in r.stdout
    body = json.loads(report.read_text())
    assert body["format"] == "claims-csv" and body["recordsRead"] == len(lines) - 1 and body["rejected"] == 0
    assert body["loaded"] >= len(claims)  # every claim (and its member) is a loaded unit
    # again: nothing new
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", str(out))
    assert r.returncode == 0 and "0 resources created, 0 updated" in r.stdout

    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x00\x01 nothing a mapping reads\n")
    r = _run("ingest", "--quiet", "--database", db, "--format", "cclf", str(junk))
    assert r.returncode == 1 and "no records read" in r.stderr and "no table for this file" in r.stderr
    empty = tmp_path / "folder"
    empty.mkdir()
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", str(empty))
    assert r.returncode == 1 and "no records read" in r.stderr


def test_a_lenient_warning_and_a_strict_reject_on_the_command_line(db: str, tmp_path: Path) -> None:
    """The CLI summary names the rule; ``--strictness strict`` turns the warning into a reject (exit 3)."""
    out = tmp_path / "claims.csv"
    assert _run("synth", "--patients", "5", "--seed", "3", "--claims", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    col = lines[0].split(",").index("PROCEDURE_CODE")
    row = next(i for i, ln in enumerate(lines[1:], 1) if ln.split(",")[col])
    cells = lines[row].split(",")
    cells[col] = "478331"
    lines[row] = ",".join(cells)
    out.write_text("\n".join(lines) + "\n")
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 with warnings" in r.stdout and f"warning code-format: 1 (first at claims.csv:{row + 1} field " \
        "PROCEDURE_CODE" in r.stdout
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", "--strictness", "strict", str(out))
    assert r.returncode == 3 and "reject code-format: 1" in r.stdout and "'478331'" in r.stderr
    r = _run("ingest", "--quiet", "--database", db, "--format", "claims-csv", "--strictness", "loose", str(out))
    assert r.returncode == 1 and "strictness 'loose'" in r.stderr


def _carin_variants(folder: Path) -> list[dict[str, Any]]:
    """Variants of the official Practitioner1 and EOBProfessional1 in every shape R4 allows that a path written
    for ``name[0].family`` does not expect."""
    prac = json.loads((CARIN / "Practitioner-Practitioner1.json").read_text())
    text_only = {**prac, "id": "text-only", "name": [{"text": "Dr. Jane Q. Public"}]}
    several = {**prac, "id": "several", "name": [{"use": "old", "text": "J. Smith"}, *prac["name"]]}
    extended = {**prac, "id": "extended",
                "name": [{"extension": [{"url": "http://example.org/ext", "valueString": "x"}],
                          "_family": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent"
                                                     "-reason", "valueCode": "unknown"}]}, "given": ["Ann"]}]}
    nameless = {**prac, "id": "nameless"}
    nameless.pop("name", None)
    eob = json.loads((CARIN / "ExplanationOfBenefit-EOBProfessional1.json").read_text())
    contained = {**eob, "id": "contained-prac",
                 "contained": [{"resourceType": "Practitioner", "id": "p1", "name": [{"text": "Inline Doctor"}]}]}
    out = [text_only, several, extended, nameless, contained]
    for n, res in enumerate(out):
        (folder / f"v{n}.json").write_text(json.dumps(res))
    return out


def _providers(url: str) -> dict[str, Any]:
    store = SqlStore(url, migrate=False)
    try:
        with store.engine.connect() as conn:
            return dict(conn.execute(text("SELECT fhir_id, name FROM internal_provider")).all())  # type: ignore[arg-type]
    finally:
        store.close()


def test_extract_handles_every_name_shape_of_the_carin_examples(db: str, tmp_path: Path) -> None:
    """Defect 3: ``extract --to internal`` crashed on the CARIN STU2 examples (a HumanName reached a string
    column as a dict). Now each Practitioner's name column holds text."""
    require_shared()
    variants = tmp_path / "variants"
    variants.mkdir()
    _carin_variants(variants)
    r = _run("load", "--database", db, str(CARIN), str(variants))
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run("extract", "--quiet", "--to", "internal", "--database", db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 resources rejected" in r.stdout and "Traceback" not in r.stderr
    names = _providers(db)
    assert names["Practitioner1"] == "Dr. John Smith"  # the official example: prefix, given, family
    assert names["text-only"] == "Dr. Jane Q. Public"
    assert names["several"] == "J. Smith"  # the first name, as the column's path says
    assert names["extended"] == "Ann"
    assert names["nameless"] is None
    org = json.loads((CARIN / "Organization-ProviderOrganization1.json").read_text())
    assert names["ProviderOrganization1"] == org["name"]


def test_a_resource_that_cannot_be_mapped_is_a_reported_reject(db: str, tmp_path: Path) -> None:
    """A mapping rule that fails on one resource rejects that resource (named, with the reason) and extracts
    the rest."""
    require_shared()
    r = _run("load", "--database", db, str(CARIN / "Practitioner-Practitioner1.json"),
             str(CARIN / "Patient-Patient1.json"))
    assert r.returncode == 0, r.stderr
    spec = load_outbound()
    member = next(rule for rule in spec.rules if rule.table == "internal_member")
    member.columns["family_name"] = "name[0].family["  # a path step the evaluator cannot read
    store = SqlStore(db, migrate=False)
    try:
        summary = extract_internal(store, spec=spec)
    finally:
        store.close()
    assert [str(x).split(":")[0] for x in summary.rejects] == ["Patient/Patient1"]
    assert "cannot be mapped" in summary.rejects[0].reason
    assert summary.by_table.get("internal_provider") == 1 and "internal_member" not in summary.by_table

"""CCLF -> FHIR, file level: the CCLF warehouse tables (CSV) and the BCDA fixed-width files, read in place from
../shared/testdata/internal/cclf. Expected values were read off the source rows by hand (cited per test)."""

from __future__ import annotations

from pathlib import Path

from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

CCLF = INTERNAL / "cclf"
TUVA = CCLF / "csv_fixtures" / "tuva"
BCDA = CCLF / "fixed_width" / "bcda"
C4BB = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit-"


def test_fixed_width_bcda(store) -> None:  # type: ignore[no-untyped-def]
    summary = ingest(store, "cclf", BCDA)
    # ZC8 (7 records, the 6th repeated), ZC9 (6), the stubs (40 + 2 ZC9 lines); the ZC0 summaries are not read
    assert summary.rejects == [] and summary.records == 7 + 6 + 40 + 2
    # ZC8 record 1: MBI 1A69B98CD30, FnameOne, born 1940-10-27, sex 1
    p = read(store, "Patient", "mbi-1A69B98CD30")
    assert p["name"][0]["given"][0] == "FnameOne" and p["birthDate"] == "1940-10-27" and p["gender"] == "male"
    # ZC9: CD32 -> CD33 -> CD34 -> CD35, so the beneficiaries filed under CD32..CD35 are one person
    assert not search(store, "Patient", identifier="http://hl7.org/fhir/sid/us-mbi|1A69B98CD32")
    assert counts(store)["Coverage"] == 3


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_corrupted_files_reject_only_the_bad_records(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good8 = (BCDA / "T.BCD.A0001.ZC8Y18.D181120.T1000009").read_bytes().splitlines()
    bad = list(good8[:5])
    bad[1] = bad[1][:200]  # truncated record
    bad[2] = bad[2][:32] + b"1946-13-06" + bad[2][42:]  # bad date (month 13)
    bad[3] = bad[3][:42] + b"7" + bad[3][43:]  # unknown sex code
    bad[4] = bad[4][:81] + b"Fr\xe9d" + bad[4][85:]  # not UTF-8 (latin-1 e-acute)
    _write(tmp_path / "P.A0000.ACO.ZC8Y25.D251110.T1200000", bad)
    header = (TUVA / "partd_claims.csv").read_bytes().splitlines()
    row = header[1].split(b",")
    row[3] = b"00003089421"
    row[5] = b"2025-02-30"  # impossible date
    _write(tmp_path / "partd_claims.csv", [header[0], b",".join(row), header[2]])
    summary = ingest(store, "cclf", tmp_path)
    why = {r.where: r.reason for r in summary.rejects}
    assert set(why) == {"P.A0000.ACO.ZC8Y25.D251110.T1200000:2", "P.A0000.ACO.ZC8Y25.D251110.T1200000:3",
                        "P.A0000.ACO.ZC8Y25.D251110.T1200000:4", "P.A0000.ACO.ZC8Y25.D251110.T1200000:5",
                        "partd_claims.csv:2"}
    assert "truncated CCLF8 record: 200 characters" in why["P.A0000.ACO.ZC8Y25.D251110.T1200000:2"]
    assert "BENE_DOB" in why["P.A0000.ACO.ZC8Y25.D251110.T1200000:3"]
    assert "CLM_LINE_FROM_DT: '2025-02-30' is not a date" in why["partd_claims.csv:2"]
    assert "unknown code '7'" in why["P.A0000.ACO.ZC8Y25.D251110.T1200000:4"]
    assert "not UTF-8" in why["P.A0000.ACO.ZC8Y25.D251110.T1200000:5"]
    # the good records still load, and nothing of the rejected ones is stored
    assert [p["id"] for p in search(store, "Patient")] == ["mbi-1A69B98CD30"]
    assert counts(store)["Coverage"] == 1
    assert [e["id"] for e in search(store, "ExplanationOfBenefit")] == ["cclf-d-0000000001055"]
    assert not search(store, "MedicationDispense", _id="cclf-d-0000000001007-md")

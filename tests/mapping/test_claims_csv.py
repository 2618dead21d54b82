"""The generic flat claims CSV (mappings/claims-csv.inbound.yaml) on a small hand-made file
(tests/fixtures/mapping/claims.csv): versions, voids, pharmacy lines, rejects."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FIXTURES
from tests.mapping.helpers import counts, ingest, read

CLAIMS = FIXTURES / "mapping" / "claims.csv"


def test_claims_csv(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary = ingest(store, "claims-csv", CLAIMS)
    assert summary.rejects == [] and summary.records == 5
    c = counts(store)
    assert c["ExplanationOfBenefit"] == 3 and c["Patient"] == 1 and c["MedicationDispense"] == 1
    # C1 version 2 (replacement) wins: paid 160.00
    eob = read(store, "ExplanationOfBenefit", "claim-P1-C1")
    assert eob["item"][0]["adjudication"][1]["amount"]["value"] == 160.0 and eob["status"] == "active"
    assert read(store, "Observation", "claim-P1-C1-ln1-study")["code"]["coding"][0]["code"] == "24606-6"
    # C3 version 2 is a void (FREQUENCY 8): EOB and its facts retired
    assert read(store, "ExplanationOfBenefit", "claim-P1-C3")["status"] == "entered-in-error"
    assert read(store, "Procedure", "claim-P1-C3-ln1")["status"] == "entered-in-error"
    # a bad row is rejected, the rest of the file still loads
    lines = CLAIMS.read_text().splitlines()
    lines.append(lines[1].replace("C1,1,1", "C9,1,1").replace("2025-03-01,2025-03-01", "2025-13-01,2025-03-01"))
    lines.append(lines[1].replace("C1,1,1", "C8,1,1").replace(",professional,", ",dental,"))
    (tmp_path / "claims.csv").write_text("\n".join(lines) + "\n")
    again = ingest(store, "claims-csv", tmp_path / "claims.csv")
    why = {r.where: r.reason for r in again.rejects}
    assert "FROM_DATE" in why["claims.csv:7"] and "unknown code 'dental'" in why["claims.csv:8"]
    assert counts(store)["ExplanationOfBenefit"] == 3


def test_a_later_correction_updates_the_stored_claim(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Originals first, in one run; the replacement and the void in a later run: the stored EOBs get a new
    version, the resources whose content did not change keep theirs."""
    lines = CLAIMS.read_text().splitlines()
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "claims.csv").write_text("\n".join(lines[:2] + lines[3:5]) + "\n")  # version 1 rows
    first = ingest(store, "claims-csv", tmp_path / "first" / "claims.csv")
    assert first.rejects == [] and read(store, "ExplanationOfBenefit", "claim-P1-C1")["meta"]["versionId"] == "1"
    assert read(store, "ExplanationOfBenefit", "claim-P1-C1")["item"][0]["adjudication"][1]["amount"]["value"] == 150.0
    second = ingest(store, "claims-csv", CLAIMS)
    assert second.rejects == [] and second.created == 0 and second.updated > 0 and second.unchanged > 0
    c1 = read(store, "ExplanationOfBenefit", "claim-P1-C1")
    assert c1["meta"]["versionId"] == "2" and c1["item"][0]["adjudication"][1]["amount"]["value"] == 160.0
    c3 = read(store, "ExplanationOfBenefit", "claim-P1-C3")
    assert c3["meta"]["versionId"] == "2" and c3["status"] == "entered-in-error"
    assert read(store, "Procedure", "claim-P1-C3-ln1")["status"] == "entered-in-error"
    assert read(store, "Patient", "member-P1-M1")["meta"]["versionId"] == "1"  # same content: no new version
    assert read(store, "ExplanationOfBenefit", "claim-P1-C2")["meta"]["versionId"] == "1"


def test_a_value_the_store_reserves_is_a_reject_not_a_failure(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The bulk write path splices version and time into markers; a record that carries one of them is
    rejected with its line and the reason, and the other records load."""
    lines = CLAIMS.read_text().splitlines()
    lines.append(lines[1].replace("C1,1,1,professional,M1,Doe", "C7,1,1,professional,M7,@@gateway-last-updated@@"))
    (tmp_path / "claims.csv").write_text("\n".join(lines) + "\n")
    summary = ingest(store, "claims-csv", tmp_path / "claims.csv")
    assert [r.where for r in summary.rejects] == ["claims.csv:7"]
    assert "reserved by the server" in summary.rejects[0].reason
    assert counts(store)["Patient"] == 1 and counts(store)["ExplanationOfBenefit"] == 4

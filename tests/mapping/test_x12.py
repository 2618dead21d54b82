"""X12 837 -> FHIR through pyx12: TR3 example interchanges in ../shared/testdata/internal/x12. Values were read
off the files cited. pyx12 reads a file against its implementation-guide map (slow to load), so the tests use a
few files; the whole folder runs in bench/ingest.py."""

from __future__ import annotations

from pathlib import Path

from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

X12 = INTERNAL / "x12"
EXAMPLE1 = X12 / "837p" / "demo.example1.837"
TWO_CLAIMS = X12 / "837i" / "two-claims-single-provider.837i"
QUIRK = X12 / "837p" / "demo.example9.837"


def test_professional_and_institutional_claims(store) -> None:  # type: ignore[no-untyped-def]
    summary = ingest(store, "x12-837", EXAMPLE1, TWO_CLAIMS, QUIRK)
    assert summary.rejects == [] and summary.records == 4
    # demo.example1.837: CLM*26463774*100.00***11:B:1, billing NPI 1912301953, patient TED SMITH (dependent of
    # subscriber JS00111223333), born 19730501, HI*BK:0340*BF:V7389, four SV1 lines 99213 87070 99214 86663
    c = read(store, "Claim", "x12-1912301953-26463774")
    assert c["type"]["coding"][0]["code"] == "professional" and c["total"]["value"] == 100.0
    assert [i["productOrService"]["coding"][0]["code"] for i in c["item"]] == ["99213", "87070", "99214", "86663"]
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in c["diagnosis"]] == ["0340", "V7389"]
    p = read(store, "Patient", c["patient"]["reference"].split("/")[1])
    assert p["name"] == [{"family": "SMITH", "given": ["TED"]}] and p["birthDate"] == "1973-05-01"
    # two-claims-single-provider.837i: 756048Q (SV2 0305 85025, 0730 93005) and 756049Q for two subscribers
    claims = {c["id"]: c for c in search(store, "Claim") if c["type"]["coding"][0]["code"] == "institutional"}
    assert set(claims) == {"x12-1234567890-756048Q", "x12-1234567890-756049Q"}
    assert [i["revenue"]["coding"][0]["code"] for i in claims["x12-1234567890-756048Q"]["item"]] == ["0305", "0730"]
    # demo.example9.837 writes '>' for ':' inside CLM/HI/SV1 (TR3 example quirk): CLM05 22>B>1 still reads
    c9 = read(store, "Claim", "x12-2366554859-153829140")
    assert c9["type"]["coding"][0]["code"] == "professional" and c9["diagnosis"][0]["diagnosisCodeableConcept"][
        "coding"][0]["code"] == "36616"
    before = counts(store)
    assert ingest(store, "x12-837", EXAMPLE1).created == 0 and counts(store) == before


def test_malformed_interchanges_are_rejected(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = EXAMPLE1.read_text()
    (tmp_path / "envelope.837").write_text(text[:60])  # ISA cut short
    lines = text.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("CLM"))
    lines[i], lines[i + 2] = lines[i + 2], lines[i]  # HI before CLM: wrong segment order
    (tmp_path / "order.837").write_text("\n".join(lines) + "\n")
    (tmp_path / "ok.837").write_text(TWO_CLAIMS.read_text())
    summary = ingest(store, "x12-837", tmp_path)
    why = {r.where.split(":")[0]: r.reason for r in summary.rejects}
    assert set(why) == {"envelope.837", "order.837"}
    assert "not a readable X12 837 interchange" in why["envelope.837"]
    assert "segment" in why["order.837"]
    assert len(search(store, "Claim")) == 2  # the good file loads; nothing of the bad ones

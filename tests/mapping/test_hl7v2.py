"""HL7 v2 -> FHIR through python-hl7: the FHIR-Converter sample messages in ../shared/testdata/internal/hl7v2.
Values were read off the messages cited."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import clean_env, gateway_exe, make_client
from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

HL7 = INTERNAL / "hl7v2"


def test_all_sample_messages_load(store) -> None:  # type: ignore[no-untyped-def]
    summary = ingest(store, "hl7v2", HL7)
    assert summary.rejects == []
    # 68 files of one message each
    assert summary.files == 68 and summary.records == 68
    # LAB-ORU-1.hl7: PID 10006579 DUCK^DONALD^D, born 19241010, M; two OBR panels with 5 OBX each
    p = read(store, "Patient", "hl7-10006579")
    assert p["name"][0] == {"family": "DUCK", "given": ["DONALD", "D"]} and p["birthDate"] == "1924-10-10"
    obs = search(store, "Observation", subject="Patient/hl7-10006579", code="http://loinc.org|11273-0")
    # LAB-ORU-1: OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.06|tera.l-1||N|||P|||20141006062700+0700; LAB-ORU-2: 4.08
    assert sorted(o["valueQuantity"]["value"] for o in obs) == [4.06, 4.08]
    obs = [o for o in obs if o["valueQuantity"]["value"] == 4.06]
    assert obs[0]["status"] == "preliminary" and obs[0]["effectiveDateTime"] == "2014-10-06T06:27:00+07:00"
    # VXU-V04-01.hl7: an RXA administration -> one Immunization
    assert counts(store)["Immunization"] >= 1
    # loading again adds nothing
    before = counts(store)
    again = ingest(store, "hl7v2", HL7)
    assert again.rejects == [] and again.created == 0 and counts(store) == before


def test_bad_messages_are_rejected_and_the_rest_loads(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = (HL7 / "oru" / "LAB-ORU-1.hl7").read_text(encoding="utf-8-sig")
    (tmp_path / "order.hl7").write_text("OBX|1|NM|11156-7^LEUKOCYTES^LN||5|\n" + good)  # OBX before MSH
    (tmp_path / "status.hl7").write_text(good.replace("|N|||P|||20141006062700+0700", "|N|||Q|||20141006062700+0700",
                                                      1).replace("|182|", "|183|"))  # unknown OBX-11 status
    (tmp_path / "enc.hl7").write_bytes(good.replace("|182|", "|184|").encode("latin-1", "replace")
                                       .replace(b"DUCK^DONALD", b"D\xdcCK^DONALD"))  # wrong encoding
    summary = ingest(store, "hl7v2", tmp_path)
    why = {r.where: r.reason for r in summary.rejects}
    assert "wrong segment order" in why["order.hl7:1"]
    assert "unknown code 'Q'" in why["status.hl7:1"] and "OBX-11" in why["status.hl7:1"]
    assert "not UTF-8" in why["enc.hl7:2"]
    # order.hl7's message itself (after the stray OBX) loads: 10 observations; status.hl7's message is not stored
    assert counts(store)["Observation"] == 10


def test_cli_ingest_exit_codes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    ok = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", db, "--format", "hl7v2",
                         str(HL7 / "oru" / "LAB-ORU-1.hl7")], capture_output=True, text=True, env=clean_env())
    assert ok.returncode == 0, ok.stderr
    assert "2 records read" not in ok.stdout and "1 records read, 11 resources created" in ok.stdout
    bad = tmp_path / "bad.hl7"
    bad.write_text("PID|1||X\n")
    rej = tmp_path / "rejects.tsv"
    run = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", db, "--format", "hl7v2",
                          "--rejects", str(rej), str(bad)], capture_output=True, text=True, env=clean_env())
    assert run.returncode == 3 and "bad.hl7:1" in rej.read_text()
    missing = subprocess.run([gateway_exe(), "ingest", "--database", db, "--format", "hl7v2", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=clean_env())
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_ingest_api(store) -> None:  # type: ignore[no-untyped-def]
    with make_client(store) as client:
        body = (INTERNAL / "cclf" / "csv_fixtures" / "tuva" / "partd_claims.csv").read_bytes()
        r = client.post("/fhir/$ingest/cclf?filename=partd_claims.csv", content=body)
        assert r.status_code == 200, r.text
        assert "2 records read" in r.json()["issue"][0]["diagnostics"]
        assert client.get("/fhir/MedicationDispense/cclf-d-0000000001055-md").json()["medicationCodeableConcept"][
            "coding"][0]["code"] == "00093715698"
        assert client.post("/fhir/$ingest/nosuch", content=b"x").status_code == 404
        r = client.post("/fhir/$ingest/hl7v2?filename=x.hl7", content=b"OBX|1\n")
        assert r.status_code == 200 and r.json()["issue"][1]["severity"] == "error"

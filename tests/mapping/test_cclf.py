"""CCLF -> FHIR: the Tuva CCLF warehouse tables (CSV) and the BCDA fixed-width files, read in place from
../shared/testdata/internal/cclf. Expected values were read off the source rows by hand (cited per test)."""

from __future__ import annotations

import pytest

from tests.conftest import wipe
from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

CCLF = INTERNAL / "cclf"
TUVA = CCLF / "csv_fixtures" / "tuva"
BCDA = CCLF / "fixed_width" / "bcda"
C4BB = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit-"


@pytest.fixture(scope="module")
def loaded(session_store):  # type: ignore[no-untyped-def]
    wipe(session_store)
    summary = ingest(session_store, "cclf", TUVA)
    return session_store, summary


def test_tuva_tables_load_without_rejects(loaded) -> None:  # type: ignore[no-untyped-def]
    store, summary = loaded
    assert summary.rejects == []
    # 533 data rows in the eleven CSV files (39+156+2+119+33+4+2+81+25+39+33)
    assert summary.records == 533 and summary.files == 11
    c = counts(store)
    # README: the rows of 21 people (an MBI and every MBI linked to it through CCLF9 count as one person)
    assert c["Patient"] == 21 and c["Coverage"] == 21
    # two Part D events (CCLF7 has two rows, each its own claim)
    assert c["MedicationDispense"] == 2


def test_beneficiary_fields(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # beneficiary_demographics.csv row 2: 9TT0FK0XX01, 1945-06-12, sex 2, SYNALPHA Q CCLFTEST, HOLTSVILLE NY 00501
    p = read(store, "Patient", "mbi-9TT0FK0XX01")
    assert p["birthDate"] == "1945-06-12" and p["gender"] == "female"
    assert p["name"][0] == {"use": "official", "family": "CCLFTEST", "given": ["SYNALPHA", "Q"]}
    assert p["address"][0]["city"] == "HOLTSVILLE" and p["address"][0]["postalCode"] == "00501"
    assert p["identifier"][0]["system"] == "http://hl7.org/fhir/sid/us-mbi"
    assert p["meta"]["source"] == "urn:fhir-gateway:mapping:cclf|1.0.0"
    cov = read(store, "Coverage", "mbi-9TT0FK0XX01-medicare")
    assert cov["beneficiary"]["reference"] == "Patient/mbi-9TT0FK0XX01" and cov["period"]["start"] == "2010-06-01"


def test_mbi_history_merges_people(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # CCLF9: 9TT0FK0XX81 -> XX82 -> XX15; claim 1053 was billed under XX81 and belongs to the current MBI
    assert not search(store, "Patient", identifier="http://hl7.org/fhir/sid/us-mbi|9TT0FK0XX81")
    eob = search(store, "ExplanationOfBenefit", identifier="https://bluebutton.cms.gov/resources/variables/clm_id|0000000001053")
    assert [e["patient"]["reference"] for e in eob] == ["Patient/mbi-9TT0FK0XX15"]


def test_inpatient_claim(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # parta_claims_header.csv claim 1001: type 60, 2025-03-03..07, paid 11876.42, charges 32066.33, DRG 0291,
    # principal dx I5023; CCLF4 has its diagnoses, CCLF3 two ICD-10-PCS procedures (5A1D70Z, 30233N1)
    eob = read(store, "ExplanationOfBenefit", "cclf-a-00000000005001SYN")
    assert eob["meta"]["profile"] == [C4BB + "Inpatient-Institutional"]
    assert eob["billablePeriod"] == {"start": "2025-03-03", "end": "2025-03-07"}
    assert eob["payment"]["amount"]["value"] == 11876.42
    assert eob["total"][0]["amount"]["value"] == 32066.33
    assert eob["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "I50.23"
    assert [p["procedureCodeableConcept"]["coding"][0]["code"] for p in eob["procedure"]] == ["5A1D70Z", "30233N1"]
    assert [i["revenue"]["coding"][0]["code"] for i in eob["item"]][:2] == ["0120", "0250"]
    assert {p["code"]["coding"][0]["code"] for p in search(store, "Procedure", patient="mbi-9TT0FK0XX01")} >= {
        "5A1D70Z", "30233N1", "99214", "93000", "36415"}


def test_adjustments_resolve_to_latest_version(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # 5005: original 1008, cancel 1009 and adjustment 1010 on the same CLM_EFCTV_DT -> the adjustment (325.50)
    eob = read(store, "ExplanationOfBenefit", "cclf-a-00000000005005SYN")
    assert eob["status"] == "active" and eob["payment"]["amount"]["value"] == 325.5
    assert {"system": "https://bluebutton.cms.gov/resources/variables/clm_id", "value": "0000000001010"} in eob["identifier"]
    # 5032 -> 5034 -> (cancel 1038, adjustment 1039 on 2025-09-09): one EOB, the last adjustment (505.00)
    eob = read(store, "ExplanationOfBenefit", "cclf-a-00000000005032SYN")
    assert eob["payment"]["amount"]["value"] == 505.0
    assert not search(store, "ExplanationOfBenefit", identifier="urn:fhir-gateway:cclf:claim-control-number|00000000005034SYN")
    # 5011: its latest version is the cancellation 1019 (2025-10-07) -> retired with its facts
    eob = read(store, "ExplanationOfBenefit", "cclf-a-00000000005011SYN")
    assert eob["status"] == "entered-in-error"
    cond = read(store, "Condition", "cclf-a-00000000005011SYN-dx1")
    assert cond["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert read(store, "Encounter", "cclf-a-00000000005011SYN-enc")["status"] == "entered-in-error"
    # Part B 7016: 1067 (2025-08-15), then original 1066 and cancel 1065 both effective 2025-09-02 -> 1066
    eob = read(store, "ExplanationOfBenefit", "cclf-b-000000000007016")
    assert eob["status"] == "active"
    assert [i["productOrService"]["coding"][0]["code"] for i in eob["item"]] == ["99214", "93000", "80053"]
    # Part B 7018: cancelled by 1072
    assert read(store, "ExplanationOfBenefit", "cclf-b-000000000007018")["status"] == "entered-in-error"


def test_part_d_and_dme(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # partd_claims.csv row 2: 1007, NDC 00003089421, 30 units, 30 days, pharmacy 1999900149, 2025-01-15
    md = read(store, "MedicationDispense", "cclf-d-0000000001007-md")
    assert md["medicationCodeableConcept"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/ndc", "code": "00003089421"}
    assert md["daysSupply"]["value"] == 30 and md["whenHandedOver"] == "2025-01-15"
    eob = read(store, "ExplanationOfBenefit", "cclf-d-0000000001007")
    assert eob["meta"]["profile"] == [C4BB + "Pharmacy"]
    # partb_dme.csv 1006: E0601 and A7038, allowed 90.97 and 3.21
    eob = read(store, "ExplanationOfBenefit", "cclf-dme-00000000007002")
    assert [i["productOrService"]["coding"][0]["code"] for i in eob["item"]] == ["E0601", "A7038"]
    assert eob["item"][0]["adjudication"][0]["amount"]["value"] == 90.97


def test_every_eob_has_the_carin_required_elements(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    eobs = search(store, "ExplanationOfBenefit")
    assert len(eobs) == counts(store)["ExplanationOfBenefit"] > 30
    for e in eobs:
        assert e["meta"]["profile"][0].startswith(C4BB), e["id"]
        uc = [i for i in e["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "uc"]
        assert uc and uc[0]["value"], e["id"]
        for k in ("status", "type", "use", "patient", "billablePeriod", "created", "insurer", "provider", "outcome",
                  "item"):
            assert e.get(k), (e["id"], k)
        assert e["insurance"][0]["focal"] is True and e["insurance"][0]["coverage"]["reference"].startswith("Coverage/")
        for ref in (e["patient"], e["insurer"], e["provider"], e["insurance"][0]["coverage"]):
            rtype, rid = ref["reference"].split("/")
            assert read(store, rtype, rid)["id"] == rid  # every reference resolves


def test_loading_twice_changes_no_counts(loaded) -> None:  # type: ignore[no-untyped-def]
    store, first = loaded
    before = counts(store)
    again = ingest(store, "cclf", TUVA)
    assert again.rejects == [] and again.created == again.updated == 0 and again.unchanged == first.created
    assert counts(store) == before



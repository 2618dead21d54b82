"""Synthea CSV -> QI-Core shaped FHIR: the 21-patient Synthea v3.0.0 export in ../shared/testdata/internal. Counts
are the data rows of each file (every row is distinct); field values were read off the rows cited."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import wipe
from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

SYN = INTERNAL / "synthea_csv"
ROWS = {"Patient": 21, "Encounter": 469, "Condition": 304, "Observation": 673, "Procedure": 211,
        "MedicationRequest": 534, "Immunization": 23, "Coverage": 828, "Practitioner": 166,
        "Organization": 63 + 10}


@pytest.fixture(scope="module")
def loaded(session_store):  # type: ignore[no-untyped-def]
    wipe(session_store)
    return session_store, ingest(session_store, "synthea-csv", SYN)


def test_every_row_becomes_one_resource(loaded) -> None:  # type: ignore[no-untyped-def]
    store, summary = loaded
    assert summary.rejects == []
    assert {k: v for k, v in counts(store).items()} == ROWS


def test_patient_fields(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # patients.csv row 2: Maynard46 Mosciski958, born 2014-10-06, M, white, nonhispanic, SSN 999-17-5017
    p = read(store, "Patient", "syn-3edac2e3-d223-6fae-d515-daf96ef6bc76")
    assert p["name"][0]["given"] == ["Maynard46"] and p["name"][0]["family"] == "Mosciski958"
    assert p["birthDate"] == "2014-10-06" and p["gender"] == "male"
    assert {
        k: v for k, v in p["identifier"][1].items() if k != "type"} == {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-17-5017"}
    race = p["extension"][0]["extension"][0]["valueCoding"]
    assert race["code"] == "2106-3" and p["address"][0]["postalCode"] == "02155"


def test_lab_observation_has_loinc_and_ucum(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # observations.csv: 2023-08-11T18:37:13Z, patient 3a2fa41c..., 4548-4 HbA1c 6.4 %
    obs = search(store, "Observation", code="http://loinc.org|4548-4",
                 subject="Patient/syn-3a2fa41c-32a1-ca99-ecd8-fdacae38fc3e")
    assert len(obs) == 1
    o = obs[0]
    assert o["valueQuantity"] == {"value": 6.4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert o["effectiveDateTime"] == "2023-08-11T18:37:13Z" and o["category"][0]["coding"][0]["code"] == "laboratory"
    assert o["encounter"]["reference"] == "Encounter/syn-d3862223-2f2c-87b7-8a08-3ce13a6db97c"


def test_encounter_and_condition(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # encounters.csv row 2: ambulatory, SNOMED 185345009, reason 195662009 (acute viral pharyngitis)
    e = read(store, "Encounter", "syn-57f2562b-445c-f11c-ba40-edc55af3c84f")
    assert e["class"]["code"] == "AMB" and e["type"][0]["coding"][0]["code"] == "185345009"
    assert e["period"] == {"start": "2023-01-27T16:17:47Z", "end": "2023-01-27T16:32:47Z"}
    # conditions.csv row 2: 195662009 from 2023-01-27 to 2023-02-09 -> resolved
    conds = search(store, "Condition", encounter="Encounter/syn-57f2562b-445c-f11c-ba40-edc55af3c84f")
    assert [c["code"]["coding"][0]["code"] for c in conds] == ["195662009"]
    assert conds[0]["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert conds[0]["abatementDateTime"] == "2023-02-09"


def test_immunization_and_medication(loaded) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    # immunizations.csv row 2: CVX 140 on 2023-10-10T04:17:47Z for patient 3edac2e3...
    imm = search(store, "Immunization", patient="Patient/syn-3edac2e3-d223-6fae-d515-daf96ef6bc76",
                 **{"vaccine-code": "http://hl7.org/fhir/sid/cvx|140"})
    assert "2023-10-10T04:17:47Z" in [i["occurrenceDateTime"] for i in imm]
    # medications.csv row 2: NuvaRing (RxNorm 1367439), no STOP -> active, 10 dispenses
    meds = search(store, "MedicationRequest", code="http://www.nlm.nih.gov/research/umls/rxnorm|1367439",
                  subject="Patient/syn-1d3d16ce-a3a4-5e9e-1b4d-58a391895443")
    assert any(m["status"] == "active" and m["dispenseRequest"]["numberOfRepeatsAllowed"] == 10 for m in meds)


def test_loading_twice_changes_no_counts(loaded) -> None:  # type: ignore[no-untyped-def]
    store, first = loaded
    # the files with hashed ids are the ones where a duplicate could slip in
    again = ingest(store, "synthea-csv", SYN / "patients.csv", SYN / "observations.csv", SYN / "immunizations.csv")
    assert again.rejects == [] and again.created == again.updated == 0 and again.unchanged == 21 + 673 + 23
    assert counts(store) == ROWS


def test_bad_rows_are_rejected_with_line_and_field(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = (SYN / "encounters.csv").read_bytes().splitlines()[:4]
    cols = lines[2].split(b",")
    cols[7] = b"teleportation"  # ENCOUNTERCLASS: unknown code
    lines[2] = b",".join(cols)
    lines[3] = lines[3].replace(b"T", b"X", 1)  # bad date/time in START
    (tmp_path / "encounters.csv").write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest(store, "synthea-csv", tmp_path)
    why = {r.where: r.reason for r in summary.rejects}
    assert set(why) == {"encounters.csv:3", "encounters.csv:4"}
    assert "unknown code 'teleportation'" in why["encounters.csv:3"] and "ENCOUNTERCLASS" in why["encounters.csv:3"]
    assert "START" in why["encounters.csv:4"]
    assert counts(store) == {"Encounter": 1}

"""Synthetic claims for the demo patients: a deterministic generator of the generic flat claims CSV
(``claims-csv``, docs/guides/mappings.md) whose codes change the demo measures' results once the file goes
through the real ingest path.

The claims are those the synthetic payers (the Coverage of each synthetic patient from gateway/demo/synth.py)
paid for the same people. Every row names the patient in the optional ``PATIENT_ID`` column (a member the payer
has matched to the gateway's Patient), so the claims' facts join that patient's clinical record rather than
creating another Patient. What is billed (from ``random.Random``: the same arguments give the same file, byte
for byte):

- about half of the patients' visits in the period, as office visits (CPT 99213/99214, place of service 11)
  with the diagnoses the record holds (ICD-10-CM E11.9/E11.65 for diabetes, I10 for hypertension, else Z00.00);
- **screening mammograms** (CPT 77067 or HCPCS G0202) for most women of 50-74 who had a visit in the period but
  no mammogram in the record within 27 months of its end: the mapping makes a Procedure and an Observation
  LOINC 24606-6, which the demo breast cancer screening numerator accepts, so these claims **close gaps**;
- **diabetes known only to the payer**: a few adults with a visit and no diabetes in the record carry E11.9 on
  their billed visits, which puts them in the demo diabetes measure (usually as poor control: the record holds
  no HbA1c result, and claims carry the test, not its value);
- HbA1c test lines (CPT 83036) and metformin fills (NDC, a MedicationDispense) for some diabetics;
- corrections: some visit claims have a replacement (``VERSION`` 2, ``FREQUENCY`` 7) with a changed payment, and
  some mammogram claims are voided (``FREQUENCY`` 8): the gateway retires their facts, so they close no gap.

``fhir-gateway synth --claims FILE`` writes the file; ``serve --demo`` ingests the copy shipped as
``gateway/demo/claims.csv`` (``demo_claims_csv()`` regenerates it).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta
from typing import Any

from . import DEMO_PATIENTS, DEMO_PERIOD_YEAR, DEMO_SEED
from .synth import iter_resources

COLUMNS = ("CLAIM_ID", "VERSION", "FREQUENCY", "CLAIM_TYPE", "PATIENT_ID", "MEMBER_ID", "MEMBER_FAMILY",
           "MEMBER_GIVEN", "MEMBER_BIRTH_DATE", "MEMBER_SEX", "PAYER_ID", "PAYER_NAME", "BILLING_NPI",
           "RENDERING_NPI", "FROM_DATE", "THRU_DATE", "PLACE_OF_SERVICE", "DX1", "DX2", "DX3", "DX4", "LINE_NUMBER",
           "PROCEDURE_CODE", "REVENUE_CODE", "NDC", "UNITS", "CHARGE", "PAID", "ADJUDICATED_DATE")
VISITS = [("99213", 110.0, 78.0), ("99214", 165.0, 118.0)]
MAMMOGRAM = [("77067", 250.0, 142.0), ("G0202", 240.0, 138.0)]
METFORMIN_NDC = "00093104801"


def npi(base8: str) -> str:
    """A 10-digit NPI with its Luhn check digit (computed over the prefix 80840 + the first 9 digits)."""
    body = f"1{base8}"
    total = 0
    for i, ch in enumerate(reversed("80840" + body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


CLINIC = npi("90000100")
PROVIDERS = [npi("90000101"), npi("90000102")]
PHARMACY = npi("90000103")


class _Person:
    """What the claims need to know of one synthetic patient's record."""

    def __init__(self, patient: dict[str, Any]) -> None:
        self.patient = patient
        self.coverage: dict[str, Any] | None = None
        self.visits: list[date] = []
        self.diabetes: str | None = None  # ICD-10-CM without the dot
        self.hypertension = False
        self.mammogram: date | None = None


def _people(patients: int, seed: int, year: int) -> list[_Person]:
    by_id: dict[str, _Person] = {}
    for r in iter_resources(patients, seed, year):
        t = r["resourceType"]
        if t == "Patient":
            by_id[r["id"]] = _Person(r)
            continue
        ref = (r.get("subject") or r.get("beneficiary") or {}).get("reference", "")
        p = by_id.get(ref.removeprefix("Patient/"))
        if p is None:
            continue
        if t == "Coverage":
            p.coverage = r
        elif t == "Encounter" and r["period"]["start"][:4] == str(year):
            p.visits.append(date.fromisoformat(r["period"]["start"][:10]))
        elif t == "Condition":
            coding = r["code"]["coding"][0]
            if r["id"].endswith("-dm"):
                p.diabetes = coding["code"].replace(".", "") if "icd-10" in coding["system"] else "E119"
            elif r["id"].endswith("-htn"):
                p.hypertension = True
        elif r["id"].endswith("-mammo"):
            when = r.get("performedDateTime") or r.get("effectiveDateTime")
            p.mammogram = date.fromisoformat(when[:10])
    return list(by_id.values())


def _age(birth: str, on: date) -> int:
    b = date.fromisoformat(birth)
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


class _Claims:
    def __init__(self, seed: int, year: int) -> None:
        self.rng = random.Random(f"fhir-vbc-gateway-claims:{seed}:{year}")
        self.seed = seed
        self.year = year
        self.end = date(year, 12, 31)
        self.rows: list[dict[str, Any]] = []
        self.n = 0

    def member(self, p: _Person) -> dict[str, Any]:
        pat, cov = p.patient, p.coverage or {}
        payor = (cov.get("payor") or [{}])[0]
        return {"PATIENT_ID": pat["id"], "MEMBER_ID": cov.get("subscriberId") or pat["id"],
                "MEMBER_FAMILY": pat["name"][0]["family"], "MEMBER_GIVEN": pat["name"][0]["given"][0],
                "MEMBER_BIRTH_DATE": pat["birthDate"], "MEMBER_SEX": pat["gender"][0].upper(),
                "PAYER_ID": payor.get("reference", "Organization/synth-payer").removeprefix("Organization/"),
                "PAYER_NAME": payor.get("display") or "Synthetic payer"}

    def claim(self, member: dict[str, Any], kind: str, when: date, dx: list[str],
              lines: list[tuple[str, str, float, float]], version: int = 1, frequency: str = "1",
              claim_id: str | None = None) -> str:
        if claim_id is None:
            self.n += 1
            claim_id = f"SC{self.seed:02d}{self.n:06d}"
        adjudicated = when + timedelta(days=self.rng.randint(7, 21) + 15 * (version - 1))
        professional = kind == "professional"
        for ln, (code, ndc, charge, paid) in enumerate(lines, 1):
            self.rows.append({
                "CLAIM_ID": claim_id, "VERSION": version, "FREQUENCY": frequency, "CLAIM_TYPE": kind, **member,
                "BILLING_NPI": CLINIC if professional else PHARMACY,
                "RENDERING_NPI": self.rng.choice(PROVIDERS) if professional else "",
                "FROM_DATE": when.isoformat(), "THRU_DATE": when.isoformat(),
                "PLACE_OF_SERVICE": "11" if professional else "01",
                **{f"DX{i}": (dx[i - 1] if i <= len(dx) else "") for i in range(1, 5)},
                "LINE_NUMBER": ln, "PROCEDURE_CODE": code, "REVENUE_CODE": "", "NDC": ndc,
                "UNITS": 30 if ndc else 1, "CHARGE": f"{charge:.2f}", "PAID": f"{paid:.2f}",
                "ADJUDICATED_DATE": adjudicated.isoformat()})
        return claim_id

    def person(self, p: _Person) -> None:
        rng = self.rng
        if not p.visits or p.coverage is None:
            return
        age = _age(p.patient["birthDate"], self.end)
        diabetes = p.diabetes
        if diabetes is None and 18 <= age <= 75 and rng.random() < 0.06:
            diabetes = "E119"  # known to the payer only
        dx = ([diabetes] if diabetes else []) + (["I10"] if p.hypertension else [])
        member = self.member(p)
        billed = diabetes is not None and p.diabetes is None or rng.random() < 0.5
        if billed:
            for when in p.visits:
                code, charge, paid = rng.choice(VISITS)
                lines = [(code, "", charge, paid)]
                if diabetes and rng.random() < 0.4:
                    lines.append(("83036", "", 28.0, 13.0))
                cid = self.claim(member, "professional", when, dx or ["Z0000"], lines)
                if rng.random() < 0.08:  # a replacement with a corrected payment
                    self.claim(member, "professional", when, dx or ["Z0000"],
                               [(c, ndc, ch, round(pd * 0.9, 2)) for c, ndc, ch, pd in lines], 2, "7", cid)
        if diabetes and rng.random() < 0.5:
            fill = p.visits[0] + timedelta(days=rng.randint(1, 20))
            self.claim(member, "pharmacy", min(fill, self.end - timedelta(days=1)), [],
                       [("", METFORMIN_NDC, 12.0, 4.0)])
        window_start = date(self.year - 2, 10, 1)  # well inside the 27 months before the period's end
        screened = p.mammogram is not None and p.mammogram >= window_start
        if p.patient["gender"] == "female" and 50 <= age <= 74 and not screened and rng.random() < 0.65:
            when = rng.choice(p.visits) + timedelta(days=rng.randint(1, 25))
            when = min(when, self.end - timedelta(days=1))
            code, charge, paid = rng.choice(MAMMOGRAM)
            cid = self.claim(member, "professional", when, ["Z1231"], [(code, "", charge, paid)])
            if rng.random() < 0.15:  # billed in error: voided
                self.claim(member, "professional", when, ["Z1231"], [(code, "", charge, 0.0)], 2, "8", cid)


def claims_rows(patients: int = 200, seed: int = 1, period_year: int = 2025) -> list[dict[str, Any]]:
    """The claim lines for the synthetic patients ``synth`` makes with the same arguments."""
    gen = _Claims(seed, period_year)
    for p in _people(patients, seed, period_year):
        gen.person(p)
    return gen.rows


def claims_csv(patients: int = 200, seed: int = 1, period_year: int = 2025) -> str:
    """The claims as the generic claims CSV (header row, one row per claim line, ``\\n`` line ends)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(claims_rows(patients, seed, period_year))
    return buf.getvalue()


def demo_claims_csv() -> str:
    """The content of the shipped gateway/demo/claims.csv (the demo's 200 patients, seed 1, 2025)."""
    return claims_csv(DEMO_PATIENTS, DEMO_SEED, DEMO_PERIOD_YEAR)


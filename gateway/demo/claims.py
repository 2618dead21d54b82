"""Synthetic claims for the demo: a deterministic generator of the generic flat claims CSV (``claims-csv``,
docs/guides/mappings.md) whose codes feed the demo measures once the file goes through the real ingest path.

The members are people the synthetic plan knows only from claims (``PAYER_ID`` ``SYNTH-MA``, "Synthetic
Medicare Advantage Plan"): ingesting the file creates their Patient, Coverage and claims-derived facts, so they
join the demo measures' populations from claims alone. What each member gets (from ``random.Random``: the same
arguments give the same file, byte for byte):

- 1-3 office visits in the period (CPT 99213/99214, place of service 11): a finished **Encounter** each;
- diabetes for about a quarter of them (ICD-10-CM E11.9 / E11.65 on their visits: a **Condition**), some with an
  HbA1c test line (CPT 83036, no result: claims carry none) and a metformin fill (NDC: a **MedicationDispense**);
- hypertension for about a third (ICD-10-CM I10);
- for most women of 50-74 a screening mammogram (CPT 77067 or HCPCS G0202): a **Procedure** and an
  **Observation** LOINC 24606-6, which the demo breast cancer screening measure's numerator accepts;
- a few claims are corrected: a replacement (``VERSION`` 2, ``FREQUENCY`` 7) with a changed payment, and some
  mammogram claims voided (``FREQUENCY`` 8), whose facts the gateway then retires (they close no gap).

``fhir-gateway synth --claims FILE`` writes the file; ``serve --demo`` ingests the copy shipped as
``gateway/demo/claims.csv`` (``demo_claims_csv()`` regenerates it).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta
from typing import Any

COLUMNS = ("CLAIM_ID", "VERSION", "FREQUENCY", "CLAIM_TYPE", "MEMBER_ID", "MEMBER_FAMILY", "MEMBER_GIVEN",
           "MEMBER_BIRTH_DATE", "MEMBER_SEX", "PAYER_ID", "PAYER_NAME", "BILLING_NPI", "RENDERING_NPI", "FROM_DATE",
           "THRU_DATE", "PLACE_OF_SERVICE", "DX1", "DX2", "DX3", "DX4", "LINE_NUMBER", "PROCEDURE_CODE",
           "REVENUE_CODE", "NDC", "UNITS", "CHARGE", "PAID", "ADJUDICATED_DATE")
PAYER = ("SYNTH-MA", "Synthetic Medicare Advantage Plan")
DEMO_MEMBERS = 60
FEMALE = ["Beatriz", "Chloe", "Dana", "Esther", "Farah", "Gloria", "Helen", "Irene", "Julia", "Kaori"]
MALE = ["Andre", "Bruno", "Cedric", "Dmitri", "Emil", "Felix", "Gustavo", "Henrik", "Isaac", "Jamal"]
FAMILY = ["Adeyemi", "Bauer", "Castillo", "Dubois", "Eriksen", "Fischer", "Gomez", "Hansen", "Ito", "Jensen"]
VISITS = [("99213", 110.0, 78.0), ("99214", 165.0, 118.0)]
MAMMOGRAM = [("77067", 250.0, 142.0), ("G0202", 240.0, 138.0)]
DIABETES_DX = ["E119", "E1165"]
METFORMIN_NDC = "00093104801"


def npi(base8: str) -> str:
    """A 10-digit NPI with its Luhn check digit (computed over the prefix 80840 + the first 9 digits)."""
    body = f"1{base8}"
    digits = [int(d) for d in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


PROVIDERS = [npi("90000101"), npi("90000102"), npi("90000103")]
CLINIC = npi("90000100")


class _Claims:
    def __init__(self, seed: int, period_year: int) -> None:
        self.rng = random.Random(f"fhir-vbc-gateway-claims:{seed}:{period_year}")
        self.seed = seed
        self.year = period_year
        self.rows: list[dict[str, Any]] = []
        self.n = 0

    def day(self, lo: date, hi: date) -> date:
        d = lo + timedelta(days=self.rng.randint(0, (hi - lo).days))
        return d if (d.month, d.day) not in ((1, 1), (12, 31)) else d + timedelta(days=1 if d.month == 1 else -1)

    def claim(self, member: dict[str, Any], kind: str, when: date, dx: list[str],
              lines: list[tuple[str, str, float, float]], version: int = 1, frequency: str = "1",
              claim_id: str | None = None) -> str:
        if claim_id is None:
            self.n += 1
            claim_id = f"SC{self.seed:02d}{self.n:06d}"
        adjudicated = when + timedelta(days=self.rng.randint(7, 21) + 10 * (version - 1))
        for ln, (code, ndc, charge, paid) in enumerate(lines, 1):
            self.rows.append({
                "CLAIM_ID": claim_id, "VERSION": version, "FREQUENCY": frequency, "CLAIM_TYPE": kind,
                **member, "PAYER_ID": PAYER[0], "PAYER_NAME": PAYER[1],
                "BILLING_NPI": CLINIC if kind == "professional" else PROVIDERS[2],
                "RENDERING_NPI": self.rng.choice(PROVIDERS[:2]) if kind == "professional" else "",
                "FROM_DATE": when.isoformat(), "THRU_DATE": when.isoformat(),
                "PLACE_OF_SERVICE": "11" if kind == "professional" else "01",
                **{f"DX{i}": (dx[i - 1] if i <= len(dx) else "") for i in range(1, 5)},
                "LINE_NUMBER": ln, "PROCEDURE_CODE": code, "REVENUE_CODE": "", "NDC": ndc,
                "UNITS": 30 if ndc else 1, "CHARGE": f"{charge:.2f}", "PAID": f"{paid:.2f}",
                "ADJUDICATED_DATE": adjudicated.isoformat()})
        return claim_id

    def member(self, n: int) -> None:
        rng = self.rng
        sex = rng.choice("FM")
        age = rng.choice((rng.randint(40, 64), rng.randint(50, 74), rng.randint(65, 84)))
        birth = date(self.year - age, 12, 31) - timedelta(days=rng.randint(0, 364))
        member = {"MEMBER_ID": f"M{self.seed:02d}{n:05d}", "MEMBER_FAMILY": rng.choice(FAMILY),
                  "MEMBER_GIVEN": rng.choice(FEMALE if sex == "F" else MALE),
                  "MEMBER_BIRTH_DATE": birth.isoformat(), "MEMBER_SEX": sex}
        start, end = date(self.year, 1, 1), date(self.year, 12, 31)
        diabetic = rng.random() < 0.25
        hypertensive = rng.random() < 0.35
        dx = ([rng.choice(DIABETES_DX)] if diabetic else []) + (["I10"] if hypertensive else [])
        for _ in range(rng.randint(1, 3)):
            when = self.day(start, end)
            code, charge, paid = rng.choice(VISITS)
            lines = [(code, "", charge, paid)]
            if diabetic and rng.random() < 0.5:
                lines.append(("83036", "", 28.0, 13.0))
            cid = self.claim(member, "professional", when, dx or ["Z0000"], lines)
            if rng.random() < 0.1:  # a replacement with a corrected payment
                self.claim(member, "professional", when, dx or ["Z0000"],
                           [(c, ndc, ch, round(p * 0.9, 2)) for c, ndc, ch, p in lines], 2, "7", cid)
        if diabetic and rng.random() < 0.7:
            self.claim(member, "pharmacy", self.day(start, end), [], [("", METFORMIN_NDC, 12.0, 4.0)])
        if sex == "F" and 50 <= age <= 74 and rng.random() < 0.7:
            when = self.day(date(self.year - 1, 10, 1), end)
            code, charge, paid = rng.choice(MAMMOGRAM)
            cid = self.claim(member, "professional", when, ["Z1231"], [(code, "", charge, paid)])
            if rng.random() < 0.12:  # billed in error: voided
                self.claim(member, "professional", when, ["Z1231"], [(code, "", charge, 0.0)], 2, "8", cid)


def claims_rows(members: int = DEMO_MEMBERS, seed: int = 1, period_year: int = 2025) -> list[dict[str, Any]]:
    """The claim lines of ``members`` synthetic members for the measurement period ``period_year``."""
    if members < 0:
        raise ValueError("members must be 0 or more")
    if not 1900 < period_year < 2200:
        raise ValueError(f"period year {period_year} is out of range")
    gen = _Claims(seed, period_year)
    for n in range(1, members + 1):
        gen.member(n)
    return gen.rows


def claims_csv(members: int = DEMO_MEMBERS, seed: int = 1, period_year: int = 2025) -> str:
    """The claims as the generic claims CSV (header row, one row per claim line, ``\\n`` line ends)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(claims_rows(members, seed, period_year))
    return buf.getvalue()


def demo_claims_csv() -> str:
    """The content of the shipped gateway/demo/claims.csv (the demo's members, seed and period)."""
    return claims_csv(DEMO_MEMBERS, 1, 2025)

"""Synthetic patients for the demo measures: a small, deterministic generator of our own.

``generate(patients, seed, period_year)`` returns FHIR R4 resources (plain dicts, every one valid against the
``fhir.resources`` R4B models) for ``patients`` people and the measurement period ``period_year``:

- **Patient**: name, gender, birthDate (ages 0-95, weighted towards adults), an MRN identifier, an address and
  the ``meta.tag`` ``synthetic`` (search ``_tag=http://fhir-vbc-gateway.example.org/tags|synthetic``).
- **Coverage** for everyone (Medicare mostly from 65, Medicaid or commercial before), payor one of three
  Organizations, type from the Source of Payment Typology.
- **Encounter**: most people have 1-4 finished ambulatory visits in the period; some were seen only the year
  before (they fall outside the measures' initial populations).
- **Diabetes** (SNOMED CT 44054006 or ICD-10-CM E11.9/E11.65; prevalence rising with age, about 13% of
  adults) with 0-3 HbA1c results (LOINC 4548-4, %) in the period spread around a per-patient mean: about one
  diabetic in six has no test in the period, and for about one in six of the others the latest is above 9%.
- **Hypertension** (SNOMED CT 38341003; about a third of adults) with 0-3 blood pressure panels (LOINC
  85354-9, systolic 8480-6, diastolic 8462-4); other adults have normal readings at some visits.
- **Mammograms** for most women of 45-79 (Procedure SNOMED CT 71651007/24623002, or an Observation LOINC
  24606-6), dated in the 30 months before the period's end, so a few fall outside a 27-month window.

Everything comes from ``random.Random(seed)``: the same arguments give the same resources, byte for byte.
Ids are ``synth-<seed>-<n>`` (dependent resources add a suffix), so runs with different seeds add patients
rather than overwrite each other. Clinical times are 08:00-17:00 at -05:00, on 2 January to 30 December, so
no event sits on a period boundary whatever offset a reader assumes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import orjson

SITE = "http://fhir-vbc-gateway.example.org"
TAG = {"system": f"{SITE}/tags", "code": "synthetic", "display": "Synthetic test data"}
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
SOPT = "https://nahdo.org/sopt"
OFFSET = "-05:00"

PAYERS = {  # key: (Organization id, name, SOPT code, SOPT display)
    "medicare": ("synth-payer-medicare", "Synthetic Medicare Advantage Plan", "1", "Medicare"),
    "medicaid": ("synth-payer-medicaid", "Synthetic Medicaid Managed Care", "2", "Medicaid"),
    "commercial": ("synth-payer-commercial", "Synthetic Commercial PPO", "5", "Private health insurance"),
}
FEMALE = ["Maria", "Linda", "Aisha", "Mei", "Sofia", "Grace", "Fatima", "Olga", "Priya", "Rosa", "Hannah",
          "Keiko", "Amara", "Elena", "Joan", "Nadia", "Lucia", "Ruth", "Ingrid", "Leila"]
MALE = ["James", "Jose", "Wei", "Ahmed", "David", "Luis", "Samuel", "Ivan", "Raj", "Kofi", "Daniel", "Hiro",
        "Omar", "Peter", "Carlos", "Tomas", "Arjun", "Paul", "Malik", "Erik"]
FAMILY = ["Garcia", "Smith", "Nguyen", "Johnson", "Okafor", "Kim", "Patel", "Rossi", "Haddad", "Novak",
          "Brown", "Silva", "Cohen", "Tanaka", "Mensah", "Larsen", "Lopez", "Walker", "Ivanova", "Chen"]
CITIES = [("Springfield", "IL", "627"), ("Columbus", "OH", "432"), ("Madison", "WI", "537"),
          ("Albany", "NY", "122"), ("Austin", "TX", "787"), ("Salem", "OR", "973")]
STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Park Rd", "Lake View Blvd", "Hill St"]
AGE_BANDS = [((0, 17), 12), ((18, 39), 25), ((40, 49), 13), ((50, 64), 22), ((65, 74), 15), ((75, 84), 9),
             ((85, 95), 4)]
VISIT_TYPES = [("185349003", "Encounter for check up (procedure)"), ("390906007", "Follow-up encounter (procedure)")]
DIABETES_CODES = [(SCT, "44054006", "Diabetes mellitus type 2 (disorder)"),
                  (ICD10, "E11.9", "Type 2 diabetes mellitus without complications"),
                  (ICD10, "E11.65", "Type 2 diabetes mellitus with hyperglycemia")]
MAMMOGRAPHY = [("71651007", "Mammography (procedure)"), ("24623002", "Screening mammography (procedure)")]


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out


def _dt(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + OFFSET


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [_cc("http://terminology.hl7.org/CodeSystem/observation-category", code, display)]


def _clinical_status(code: str) -> dict[str, Any]:
    return _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", code, code.capitalize())


class _Generator:
    def __init__(self, seed: int, period_year: int) -> None:
        self.rng = random.Random(f"fhir-vbc-gateway-synth:{seed}:{period_year}")
        self.seed = seed
        self.year = period_year
        self.start = date(period_year, 1, 1)
        self.end = date(period_year, 12, 31)

    # -- helpers -----------------------------------------------------------------------------------------
    def when(self, lo: date, hi: date) -> datetime:
        """A clinic time (08:00-17:00) on a day in [lo, hi], never on 1 January or 31 December (of any year)."""
        day = lo + timedelta(days=self.rng.randint(0, max(0, (hi - lo).days)))
        if (day.month, day.day) == (1, 1):
            day += timedelta(days=1)
        elif (day.month, day.day) == (12, 31):
            day -= timedelta(days=1)
        return datetime(day.year, day.month, day.day, self.rng.randint(8, 16), self.rng.choice((0, 15, 30, 45)))

    def in_period(self) -> datetime:
        return self.when(self.start, self.end)

    def meta(self) -> dict[str, Any]:
        return {"tag": [TAG]}

    # -- resources ---------------------------------------------------------------------------------------
    def organizations(self) -> list[dict[str, Any]]:
        out = []
        for oid, name, code, display in PAYERS.values():
            out.append({"resourceType": "Organization", "id": oid, "meta": self.meta(), "active": True,
                        "identifier": [{"system": f"{SITE}/synthetic-payer", "value": oid}],
                        "type": [_cc("http://terminology.hl7.org/CodeSystem/organization-type", "pay", "Payer")],
                        "name": name, "alias": [f"{display} (SOPT {code})"]})
        return out

    def patient(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        pid = f"synth-{self.seed}-{n:05d}"
        gender = rng.choice(("female", "male"))
        lo, hi = rng.choices([b for b, _ in AGE_BANDS], weights=[w for _, w in AGE_BANDS])[0]
        age = rng.randint(lo, hi)
        birth = date(self.year - age, 12, 31) - timedelta(days=rng.randint(0, 364))
        given = rng.choice(FEMALE if gender == "female" else MALE)
        family = rng.choice(FAMILY)
        city, state, zip3 = rng.choice(CITIES)
        patient = {
            "resourceType": "Patient", "id": pid, "meta": self.meta(),
            "identifier": [{"use": "usual",
                            "type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
                            "system": f"{SITE}/synthetic-mrn", "value": f"MRN{self.seed:03d}{n:06d}"}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given, rng.choice("ABCDEFGHJKLMNPRSTW")]}],
            "gender": gender, "birthDate": birth.isoformat(),
            "address": [{"use": "home", "line": [f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"], "city": city,
                         "state": state, "postalCode": f"{zip3}{rng.randint(0, 99):02d}", "country": "US"}],
        }
        age_at_end = self.year - birth.year  # on 31 December
        out = [patient, self.coverage(pid, age_at_end)]
        visits = self.encounters(pid, age_at_end, out)
        self.diabetes(pid, age_at_end, visits, out)
        self.blood_pressure(pid, age_at_end, visits, out)
        if gender == "female":
            self.mammograms(pid, age_at_end, out)
        return out

    def coverage(self, pid: str, age: int) -> dict[str, Any]:
        rng = self.rng
        if age >= 65:
            key = "medicare" if rng.random() < 0.8 else "commercial"
        else:
            key = "medicaid" if rng.random() < 0.25 else "commercial"
        oid, name, code, display = PAYERS[key]
        return {"resourceType": "Coverage", "id": f"{pid}-cov", "meta": self.meta(), "status": "active",
                "type": _cc(SOPT, code, display), "subscriberId": f"{key[:3].upper()}{rng.randint(10**7, 10**8 - 1)}",
                "beneficiary": _ref("Patient", pid),
                "relationship": _cc("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
                "period": {"start": f"{self.year - rng.randint(0, 6)}-01-01", "end": f"{self.year}-12-31"},
                "payor": [{**_ref("Organization", oid), "display": name}]}

    def encounters(self, pid: str, age: int, out: list[dict[str, Any]]) -> list[tuple[str, datetime]]:
        rng = self.rng
        seen = rng.random() < (0.85 if age >= 18 else 0.7)
        times = sorted(self.in_period() for _ in range(rng.randint(1, 4))) if seen else []
        if not seen and rng.random() < 0.6:  # seen last year only
            out.append(self._encounter(f"{pid}-enc-prior", pid, self.when(date(self.year - 1, 1, 2),
                                                                          date(self.year - 1, 12, 30))))
        visits = []
        for i, t in enumerate(times, 1):
            eid = f"{pid}-enc-{i}"
            out.append(self._encounter(eid, pid, t))
            visits.append((eid, t))
        return visits

    def _encounter(self, eid: str, pid: str, start: datetime) -> dict[str, Any]:
        code, display = self.rng.choice(VISIT_TYPES)
        return {"resourceType": "Encounter", "id": eid, "meta": self.meta(), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                          "display": "ambulatory"},
                "type": [_cc(SCT, code, display)], "subject": _ref("Patient", pid),
                "period": {"start": _dt(start), "end": _dt(start + timedelta(minutes=self.rng.choice((20, 30, 45))))}}

    def _visit_time(self, visits: list[tuple[str, datetime]]) -> tuple[str | None, datetime]:
        if visits and self.rng.random() < 0.8:
            eid, t = self.rng.choice(visits)
            return eid, t + timedelta(minutes=10)
        return None, self.in_period()

    def _condition(self, cid: str, pid: str, system: str, code: str, display: str, age: int) -> dict[str, Any]:
        onset_year = self.year - self.rng.randint(1, max(1, min(20, age - 17)))
        return {"resourceType": "Condition", "id": cid, "meta": self.meta(),
                "clinicalStatus": _clinical_status("active"),
                "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed",
                                          "Confirmed"),
                "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item",
                                 "Problem List Item")],
                "code": _cc(system, code, display), "subject": _ref("Patient", pid),
                "onsetDateTime": _dt(self.when(date(onset_year, 1, 2), date(onset_year, 12, 30))),
                "recordedDate": _dt(self.when(date(onset_year, 1, 2), date(onset_year, 12, 30)))}

    def _observation(self, oid: str, pid: str, encounter: str | None, when: datetime, category: tuple[str, str],
                     code: tuple[str, str], **value: Any) -> dict[str, Any]:
        obs: dict[str, Any] = {"resourceType": "Observation", "id": oid, "meta": self.meta(), "status": "final",
                               "category": _category(*category), "code": _cc(LOINC, *code),
                               "subject": _ref("Patient", pid)}
        if encounter:
            obs["encounter"] = _ref("Encounter", encounter)
        obs["effectiveDateTime"] = _dt(when)
        obs.update(value)
        return obs

    def diabetes(self, pid: str, age: int, visits: list[tuple[str, datetime]], out: list[dict[str, Any]]) -> None:
        rng = self.rng
        p = 0.0 if age < 18 else 0.04 if age < 45 else 0.14 if age < 65 else 0.22
        if rng.random() >= p:
            if age >= 40 and visits and rng.random() < 0.08:  # a screening HbA1c in the normal range
                self._a1c(f"{pid}-a1c-1", pid, visits, round(rng.uniform(4.8, 6.3), 1), out)
            return
        system, code, display = DIABETES_CODES[0] if rng.random() < 0.7 else rng.choice(DIABETES_CODES[1:])
        out.append(self._condition(f"{pid}-dm", pid, system, code, display, age))
        mean = rng.gauss(7.6, 1.4)
        tests = rng.choices((0, 1, 2, 3), weights=(15, 35, 35, 15))[0]
        for i in range(1, tests + 1):
            value = round(min(14.0, max(5.0, rng.gauss(mean, 0.5))), 1)
            self._a1c(f"{pid}-a1c-{i}", pid, visits, value, out)

    def _a1c(self, oid: str, pid: str, visits: list[tuple[str, datetime]], value: float,
             out: list[dict[str, Any]]) -> None:
        enc, when = self._visit_time(visits)
        out.append(self._observation(oid, pid, enc, when, ("laboratory", "Laboratory"),
                                     ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
                                     valueQuantity={"value": value, "unit": "%", "system": UCUM, "code": "%"}))

    def blood_pressure(self, pid: str, age: int, visits: list[tuple[str, datetime]],
                       out: list[dict[str, Any]]) -> None:
        rng = self.rng
        if age < 18:
            return
        p = 0.08 if age < 40 else 0.30 if age < 60 else 0.55
        hypertensive = rng.random() < p
        if hypertensive:
            out.append(self._condition(f"{pid}-htn", pid, SCT, "38341003",
                                       "Hypertensive disorder, systemic arterial (disorder)", age))
            sys_mean, dia_mean = rng.gauss(132, 11), rng.gauss(81, 7)
            readings = rng.choices((0, 1, 2, 3), weights=(10, 35, 35, 20))[0]
        else:
            sys_mean, dia_mean = rng.gauss(118, 9), rng.gauss(75, 6)
            readings = min(len(visits), rng.choice((0, 1)))
        for i in range(1, readings + 1):
            systolic = int(round(min(210, max(90, rng.gauss(sys_mean, 7)))))
            diastolic = int(round(min(130, max(50, rng.gauss(dia_mean, 5)))))
            enc, when = self._visit_time(visits)
            out.append(self._observation(
                f"{pid}-bp-{i}", pid, enc, when, ("vital-signs", "Vital Signs"),
                ("85354-9", "Blood pressure panel with all children optional"),
                component=[{"code": _cc(LOINC, "8480-6", "Systolic blood pressure"),
                            "valueQuantity": {"value": systolic, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
                           {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"),
                            "valueQuantity": {"value": diastolic, "unit": "mm[Hg]", "system": UCUM,
                                              "code": "mm[Hg]"}}]))

    def mammograms(self, pid: str, age: int, out: list[dict[str, Any]]) -> None:
        rng = self.rng
        if not 45 <= age <= 79 or rng.random() >= 0.72:
            return
        when = self.when(date(self.year - 2, 7, 1), self.end)  # 30 months up to the period's end
        if rng.random() < 0.8:
            code, display = rng.choice(MAMMOGRAPHY)
            out.append({"resourceType": "Procedure", "id": f"{pid}-mammo", "meta": self.meta(), "status": "completed",
                        "category": _cc(SCT, "103693007", "Diagnostic procedure"),
                        "code": _cc(SCT, code, display), "subject": _ref("Patient", pid),
                        "performedDateTime": _dt(when)})
        else:
            out.append(self._observation(f"{pid}-mammo", pid, None, when, ("imaging", "Imaging"),
                                         ("24606-6", "MG Breast Screening"),
                                         valueString="BI-RADS 1: negative"))


def generate(patients: int, seed: int = 1, period_year: int = 2025) -> list[dict[str, Any]]:
    """The resources of ``patients`` synthetic patients (payer Organizations first, then each patient's
    Patient, Coverage, Encounters, Conditions, Observations and Procedures)."""
    return list(iter_resources(patients, seed, period_year))


def iter_resources(patients: int, seed: int = 1, period_year: int = 2025) -> Iterator[dict[str, Any]]:
    if patients < 0:
        raise ValueError("patients must be 0 or more")
    if not 1900 < period_year < 2200:
        raise ValueError(f"period year {period_year} is out of range")
    gen = _Generator(seed, period_year)
    yield from gen.organizations()
    for n in range(1, patients + 1):
        yield from gen.patient(n)


def demo_measures() -> list[dict[str, Any]]:
    """The demo Measures shipped in gateway/demo/measures (FHIRPath criteria, no library)."""
    from importlib import resources as pkg_resources

    folder = pkg_resources.files("gateway.demo").joinpath("measures")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return [orjson.loads(f.read_bytes()) for f in files]


def transaction_bundle(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle of PUTs (ids are kept, so loading twice updates rather than duplicates)."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"{SITE}/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                       "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def ndjson_lines(resources: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """One resource per line (b"...\\n"), keys in a stable order."""
    for r in resources:
        yield orjson.dumps(r) + b"\n"

"""Realistic longitudinal charts: synthetic adults with several years of care, for measure benchmarks.

``iter_charts(patients, seed, last_year, years)`` yields QI-Core-shaped FHIR R4 resources for ``patients``
adults followed from 1 January of ``last_year - years + 1`` to 31 December of ``last_year``. A chart holds
about 50-300 resources (median about 120): what an ambulatory record of an adult accumulates, with the codes
the CMS eCQMs look for (value sets of CMS122, CMS125, CMS130, CMS165, CMS69, CMS347, CMS871, CMS986) among
codes no measure reads:

- **Patient** (US Core race and ethnicity), one or two **Coverage** periods (Medicare from 65, Medicaid or
  commercial before; payers are three shared Organizations);
- **Encounter** per visit: 2-8 ambulatory visits a year (office visits CPT 99213/99214, a yearly preventive
  visit 99396/99397 or Medicare annual wellness G0439), more with more chronic conditions; now and then an
  emergency visit (CPT 99283); older or sicker people have inpatient stays (SNOMED CT 183452005) with glucose
  results, a malnutrition risk screening and, when at risk, a nutrition assessment, dietitian referral or
  malnutrition diagnosis;
- a professional **Claim** per visit and an institutional one per stay (CPT/HCPCS lines, ICD-10-CM
  diagnoses pointing at the chart's Conditions, the Coverage as insurance);
- **Observation** vital signs at visits with the FHIR vital-signs profiles (blood pressure panel 85354-9,
  BMI 39156-5, body weight, heart rate; height yearly), laboratory results (HbA1c 4548-4 for diabetics,
  LDL 13457-7, glucose 2345-7; fecal occult blood 2335-8 or sDNA-FIT 77353-1 for some), screening mammography
  reports (LOINC 24606-6) for most women of 50-74;
- **Condition**: chronic (essential hypertension I10, type 2 diabetes E11.9/E11.65, ASCVD I25.10, obesity
  E66.9, hyperlipidaemia E78.5, malnutrition E44.0 after a stay) and acute episodes that resolve (upper
  respiratory infection J06.9, low back pain M54.50, acute bronchitis J20.9);
- **MedicationRequest** renewed yearly for each chronic treatment (lisinopril, amlodipine, metformin, a
  statin of low, moderate or high intensity) and courses for acute episodes;
- **Procedure**: colonoscopy (CPT 45378) for about half of those over 50, weight counselling (CPT 97802) for
  some obese patients; **Immunization**: yearly influenza, and COVID-19 and Tdap now and then.

Deterministic: every patient comes from its own ``random.Random`` seeded with (seed, patient number), so the
same arguments give the same resources byte for byte and patient N is the same whatever the count. Ids are
``chart-<seed>-<n>`` with a suffix per resource; clinical times are 08:00-17:00 at -05:00.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from .synth import CITIES, FAMILY, FEMALE, LOINC, MALE, OFFSET, SCT, SITE, SOPT, STREETS, TAG, UCUM, _cc, _ref

QICORE = "http://hl7.org/fhir/us/qicore/StructureDefinition/"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
VITALS = "http://hl7.org/fhir/StructureDefinition/"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.nlm.nih.gov/research/umls/hcpcs"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CDC_RACE = "urn:oid:2.16.840.1.113883.6.238"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"

PAYERS = {"medicare": ("chart-payer-medicare", "Synthetic Medicare Advantage Plan", "1", "MEDICARE"),
          "medicaid": ("chart-payer-medicaid", "Synthetic Medicaid Managed Care", "2", "MEDICAID"),
          "commercial": ("chart-payer-commercial", "Synthetic Commercial PPO", "5", "PRIVATE HEALTH INSURANCE")}
PROVIDER = ("chart-clinic", "Synthetic Family Medicine Clinic")
HOSPITAL = ("chart-hospital", "Synthetic Community Hospital")
RACES = [("2106-3", "White", 60), ("2054-5", "Black or African American", 13), ("2028-9", "Asian", 6),
         ("1002-5", "American Indian or Alaska Native", 1), ("2131-1", "Other Race", 20)]
CHRONIC = {  # key: (ICD-10-CM code, display, prevalence among adults 18-44, 45-64, 65+)
    "hypertension": ("I10", "Essential (primary) hypertension", (0.12, 0.38, 0.6)),
    "diabetes": ("E11.9", "Type 2 diabetes mellitus without complications", (0.05, 0.15, 0.25)),
    "ascvd": ("I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris",
              (0.01, 0.07, 0.18)),
    "hyperlipidemia": ("E78.5", "Hyperlipidemia, unspecified", (0.1, 0.3, 0.45)),
    "obesity": ("E66.9", "Obesity, unspecified", (0.3, 0.38, 0.33)),
}
ACUTE = [("J06.9", "Acute upper respiratory infection, unspecified", ("308182", "Amoxicillin 250 MG Oral Capsule")),
         ("M54.50", "Low back pain, unspecified", ("197806", "Ibuprofen 600 MG Oral Tablet")),
         ("J20.9", "Acute bronchitis, unspecified", ("197516", "Azithromycin 250 MG Oral Tablet"))]
MEDS = {"hypertension": [("314076", "lisinopril 10 MG Oral Tablet"), ("197361", "amlodipine 5 MG Oral Tablet")],
        "diabetes": [("861007", "metformin hydrochloride 500 MG Oral Tablet")]}
STATINS = [("314231", "simvastatin 10 MG Oral Tablet"), ("617310", "atorvastatin 20 MG Oral Tablet"),
           ("859424", "rosuvastatin calcium 5 MG Oral Tablet"), ("617311", "atorvastatin 40 MG Oral Tablet"),
           ("259255", "atorvastatin 80 MG Oral Tablet")]
FLU = [("140", "Influenza, seasonal, injectable, preservative free"), ("150", "Influenza, injectable, quadrivalent, "
       "preservative free"), ("197", "Influenza, high-dose, quadrivalent")]


def _dt(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + OFFSET


def _meta(profile: str) -> dict[str, Any]:
    return {"profile": [profile], "tag": [TAG]}


def _qty(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def shared_resources() -> list[dict[str, Any]]:
    """The payers and the two provider Organizations every chart refers to."""
    out = []
    for oid, name, code, display in PAYERS.values():
        out.append({"resourceType": "Organization", "id": oid, "meta": _meta(QICORE + "qicore-organization"),
                    "active": True, "type": [_cc("http://terminology.hl7.org/CodeSystem/organization-type", "pay",
                                                 "Payer")], "name": name, "alias": [f"{display} (SOPT {code})"]})
    for oid, name in (PROVIDER, HOSPITAL):
        out.append({"resourceType": "Organization", "id": oid, "meta": _meta(QICORE + "qicore-organization"),
                    "active": True, "type": [_cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov",
                                                 "Healthcare Provider")], "name": name})
    return out


class _Chart:
    """One patient's chart; ``resources`` collects what it writes."""

    def __init__(self, seed: int, n: int, last_year: int, years: int) -> None:
        self.rng = random.Random(f"fhir-vbc-gateway-charts:{seed}:{n}")
        self.pid = f"chart-{seed}-{n}"
        self.first = last_year - years + 1
        self.last = last_year
        self.years = years
        self.resources: list[dict[str, Any]] = []
        self.counter = 0

    def rid(self, kind: str) -> str:
        self.counter += 1
        return f"{self.pid}-{kind}{self.counter}"

    def day(self, year: int, lo: int = 2, hi: int = 363) -> datetime:
        d = date(year, 1, 1) + timedelta(days=self.rng.randint(lo - 1, hi - 1))
        return datetime(d.year, d.month, d.day, self.rng.randint(8, 16), self.rng.choice((0, 15, 30, 45)))

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources.append(resource)
        return resource

    # -- people ------------------------------------------------------------------------------------------
    def build(self) -> list[dict[str, Any]]:
        rng = self.rng
        self.gender = rng.choice(("female", "male"))
        age = int(min(90, max(18 + self.years, rng.triangular(18, 90, 58))))  # an adult over the whole window
        self.birth = date(self.last - age, 1, 1) + timedelta(days=rng.randint(0, 364))
        self.age = age  # on 31 December of the last year
        band = 0 if age < 45 else 1 if age < 65 else 2
        self.conditions = {k for k, (_, _, prev) in CHRONIC.items() if rng.random() < prev[band]}
        if "diabetes" in self.conditions or "ascvd" in self.conditions:
            self.conditions.add("hyperlipidemia")
        self.patient()
        self.coverage()
        self.chronic_conditions()
        self.history()
        return self.resources

    def patient(self) -> None:
        rng = self.rng
        race = rng.choices(RACES, weights=[w for *_, w in RACES])[0]
        hispanic = rng.random() < 0.18
        city, state, zip3 = rng.choice(CITIES)
        self.add({
            "resourceType": "Patient", "id": self.pid, "meta": _meta(QICORE + "qicore-patient"),
            "extension": [
                {"url": US_CORE + "us-core-race", "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": CDC_RACE, "code": race[0], "display": race[1]}},
                    {"url": "text", "valueString": race[1]}]},
                {"url": US_CORE + "us-core-ethnicity", "extension": [
                    {"url": "ombCategory", "valueCoding": {
                        "system": CDC_RACE, "code": "2135-2" if hispanic else "2186-5",
                        "display": "Hispanic or Latino" if hispanic else "Not Hispanic or Latino"}},
                    {"url": "text", "valueString": "Hispanic or Latino" if hispanic else "Not Hispanic or Latino"}]}],
            "identifier": [{"use": "usual",
                            "type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
                            "system": f"{SITE}/synthetic-chart-mrn", "value": f"CH{self.pid[6:]}"}],
            "active": True,
            "name": [{"use": "official", "family": rng.choice(FAMILY),
                      "given": [rng.choice(FEMALE if self.gender == "female" else MALE)]}],
            "gender": self.gender, "birthDate": self.birth.isoformat(),
            "address": [{"use": "home", "line": [f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"], "city": city,
                         "state": state, "postalCode": f"{zip3}{rng.randint(0, 99):02d}", "country": "US"}]})

    def coverage(self) -> None:
        rng = self.rng
        turns_65 = self.birth.year + 65
        spans: list[tuple[str, int, int]] = []
        if turns_65 <= self.first:
            spans.append(("medicare" if rng.random() < 0.85 else "commercial", self.first - rng.randint(0, 5), self.last))
        elif turns_65 <= self.last:
            spans.append(("commercial", self.first - rng.randint(0, 5), turns_65 - 1))
            spans.append(("medicare", turns_65, self.last))
        else:
            spans.append(("medicaid" if rng.random() < 0.22 else "commercial", self.first - rng.randint(0, 5),
                          self.last))
        self.coverages = []
        for key, lo, hi in spans:
            oid, name, code, display = PAYERS[key]
            cid = self.rid("cov")
            self.coverages.append((cid, lo, hi))
            self.add({"resourceType": "Coverage", "id": cid, "meta": _meta(QICORE + "qicore-coverage"),
                      "status": "active", "type": _cc(SOPT, code, display),
                      "subscriberId": f"{key[:3].upper()}{rng.randint(10**7, 10**8 - 1)}",
                      "beneficiary": _ref("Patient", self.pid),
                      "relationship": _cc("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self",
                                          "Self"),
                      "period": {"start": f"{lo}-01-01", "end": f"{hi}-12-31"},
                      "payor": [{**_ref("Organization", oid), "display": name}]})

    def coverage_in(self, year: int) -> str:
        return next((cid for cid, lo, hi in self.coverages if lo <= year <= hi), self.coverages[-1][0])

    def condition(self, code: str, display: str, onset: datetime, abated: datetime | None = None,
                  category: str = "problem-list-item", encounter: str | None = None) -> str:
        cid = self.rid("cond")
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": cid, "meta": _meta(QICORE + "qicore-condition"),
            "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                  "resolved" if abated else "active", "Resolved" if abated else "Active"),
            "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed",
                                      "Confirmed"),
            "category": [_cc(COND_CAT, category, "Problem List Item" if category == "problem-list-item"
                             else "Encounter Diagnosis")],
            "code": _cc(ICD10, code, display), "subject": _ref("Patient", self.pid),
            "onsetDateTime": _dt(onset), "recordedDate": _dt(onset)}
        if encounter:
            res["encounter"] = _ref("Encounter", encounter)
        if abated:
            res["abatementDateTime"] = _dt(abated)
        self.add(res)
        return cid

    def chronic_conditions(self) -> None:
        self.problem_ids: dict[str, str] = {}
        for key in sorted(self.conditions):
            code, display, _ = CHRONIC[key]
            if key == "diabetes" and self.rng.random() < 0.3:
                code, display = "E11.65", "Type 2 diabetes mellitus with hyperglycemia"
            onset_year = self.rng.randint(max(self.birth.year + 18, self.first - 15), self.last)
            self.problem_ids[key] = self.condition(code, display, self.day(onset_year))
            self.onset = getattr(self, "onset", {})
            self.onset[key] = onset_year

    def active(self, key: str, year: int) -> bool:
        return key in self.conditions and self.onset[key] <= year

    # -- care over the years -----------------------------------------------------------------------------
    def history(self) -> None:
        rng = self.rng
        self.statin = rng.choice(STATINS) if rng.random() < 0.7 else None
        self.colonoscopy_year = rng.randint(self.first - 9, self.last) if self.age >= 50 and rng.random() < 0.5 else None
        self.bmi = rng.uniform(20, 27) + (rng.uniform(5, 12) if "obesity" in self.conditions else 0)
        self.height = rng.gauss(163 if self.gender == "female" else 177, 7)
        self.sbp_mean = rng.gauss(150 if "hypertension" in self.conditions else 122, 12)
        self.a1c_mean = rng.gauss(7.6, 1.4) if "diabetes" in self.conditions else rng.gauss(5.4, 0.3)
        for year in range(self.first, self.last + 1):
            if self.birth.year + 18 > year:
                continue
            burden = sum(self.active(k, year) for k in ("hypertension", "diabetes", "ascvd"))
            n_visits = rng.randint(1, 3) + burden + (1 if self.age >= 65 else 0)
            times = sorted(self.day(year) for _ in range(n_visits))
            for i, t in enumerate(times):
                kind = "preventive" if i == 0 and rng.random() < 0.75 else "office"
                self.visit(t, kind)
            if rng.random() < 0.08 + 0.05 * burden:
                self.emergency(self.day(year))
            if rng.random() < (0.03 + 0.04 * burden + (0.06 if self.age >= 65 else 0)):
                self.inpatient(self.day(year, 2, 350))
            if rng.random() < 0.55 + (0.2 if self.age >= 65 else 0):
                self.immunization(self.day(year, 260, 340), rng.choice(FLU))
            if rng.random() < 0.12:
                self.immunization(self.day(year), ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"))
            if rng.random() < 0.05:
                self.immunization(self.day(year), ("115", "Tdap"))
            self.medications(year)
            if self.gender == "female" and 50 <= year - self.birth.year <= 74 and rng.random() < 0.45:
                self.mammogram(self.day(year))
            if self.colonoscopy_year == year:
                self.colonoscopy(self.day(year))
            elif self.age >= 50 and rng.random() < 0.06:
                self.stool_test(self.day(year))

    def encounter(self, start: datetime, minutes: int, cls: tuple[str, str], system: str, code: str,
                  display: str, org: tuple[str, str], end: datetime | None = None) -> str:
        eid = self.rid("enc")
        res: dict[str, Any] = {
            "resourceType": "Encounter", "id": eid, "meta": _meta(QICORE + "qicore-encounter"), "status": "finished",
            "class": {"system": ACT, "code": cls[0], "display": cls[1]}, "type": [_cc(system, code, display)],
            "subject": _ref("Patient", self.pid),
            "period": {"start": _dt(start), "end": _dt(end or start + timedelta(minutes=minutes))},
            "serviceProvider": {**_ref("Organization", org[0]), "display": org[1]}}
        if cls[0] == "IMP":
            res["hospitalization"] = {"dischargeDisposition": _cc(
                "http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home")}
        self.add(res)
        return eid

    def claim(self, eid: str, start: datetime, lines: list[tuple[str, str, str]], diagnoses: list[str],
              institutional: bool = False) -> None:
        cid = self.rid("claim")
        claim_type = "institutional" if institutional else "professional"
        self.add({
            "resourceType": "Claim", "id": cid, "status": "active", "meta": {"tag": [TAG]},
            "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", claim_type, claim_type.capitalize()),
            "use": "claim", "patient": _ref("Patient", self.pid),
            "billablePeriod": {"start": _dt(start), "end": _dt(start + timedelta(hours=1))},
            "created": (start + timedelta(days=self.rng.randint(1, 20))).strftime("%Y-%m-%d"),
            "provider": _ref("Organization", (HOSPITAL if institutional else PROVIDER)[0]),
            "priority": _cc("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
            "diagnosis": [{"sequence": i, "diagnosisReference": _ref("Condition", d)}
                          for i, d in enumerate(diagnoses, 1)] or None,
            "insurance": [{"sequence": 1, "focal": True, "coverage": _ref("Coverage", self.coverage_in(start.year))}],
            "item": [{"sequence": i, "productOrService": _cc(system, code, display),
                      "servicedDate": start.strftime("%Y-%m-%d"), "encounter": [_ref("Encounter", eid)],
                      "net": {"value": float(self.rng.randint(60, 400)), "currency": "USD"}}
                     for i, (system, code, display) in enumerate(lines, 1)]})
        if not self.resources[-1]["diagnosis"]:
            del self.resources[-1]["diagnosis"]

    def observation(self, when: datetime, code: str, display: str, category: str, encounter: str | None,
                    profile: str = QICORE + "qicore-observation", **value: Any) -> str:
        oid = self.rid("obs")
        res: dict[str, Any] = {
            "resourceType": "Observation", "id": oid, "meta": _meta(profile), "status": "final",
            "category": [_cc(OBS_CAT, category, {"vital-signs": "Vital Signs", "laboratory": "Laboratory",
                                                 "imaging": "Imaging", "survey": "Survey"}[category])],
            "code": _cc(LOINC, code, display), "subject": _ref("Patient", self.pid),
            "effectiveDateTime": _dt(when), "issued": _dt(when + timedelta(hours=2)) if category != "vital-signs"
            else _dt(when)}
        if encounter:
            res["encounter"] = _ref("Encounter", encounter)
        res.update(value)
        self.add(res)
        return oid

    def vitals(self, eid: str, t: datetime, height: bool) -> None:
        rng = self.rng
        sbp = round(rng.gauss(self.sbp_mean, 9))
        dbp = round(max(50, sbp * 0.62 + rng.gauss(0, 6)))
        self.observation(t, "85354-9", "Blood pressure panel with all children optional", "vital-signs", eid,
                         VITALS + "bp", component=[
                             {"code": _cc(LOINC, "8480-6", "Systolic blood pressure"),
                              "valueQuantity": _qty(sbp, "mmHg", "mm[Hg]")},
                             {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"),
                              "valueQuantity": _qty(dbp, "mmHg", "mm[Hg]")}])
        self.bmi += rng.gauss(0, 0.4)
        weight = self.bmi * (self.height / 100) ** 2
        self.observation(t, "29463-7", "Body weight", "vital-signs", eid, VITALS + "bodyweight",
                         valueQuantity=_qty(round(weight, 1), "kg"))
        if height:
            self.observation(t, "8302-2", "Body height", "vital-signs", eid, VITALS + "bodyheight",
                             valueQuantity=_qty(round(self.height, 1), "cm"))
        self.observation(t, "39156-5", "Body mass index (BMI) [Ratio]", "vital-signs", eid, VITALS + "bmi",
                         valueQuantity=_qty(round(self.bmi, 1), "kg/m2", "kg/m2"))
        if rng.random() < 0.7:
            self.observation(t, "8867-4", "Heart rate", "vital-signs", eid, VITALS + "heartrate",
                             valueQuantity=_qty(round(rng.gauss(74, 9)), "beats/minute", "/min"))

    def visit(self, t: datetime, kind: str) -> None:
        rng = self.rng
        if kind == "preventive":
            if self.age >= 65 and rng.random() < 0.6:
                system, code, display = HCPCS, "G0439", "Annual wellness visit, subsequent"
            else:
                code = "99397" if t.year - self.birth.year >= 65 else "99396"
                system, display = CPT, "Periodic comprehensive preventive medicine reevaluation"
        else:
            system, code = CPT, rng.choice(("99213", "99213", "99214"))
            display = "Office or other outpatient visit for the evaluation and management of an established patient"
        eid = self.encounter(t, rng.choice((20, 30, 40)), ("AMB", "ambulatory"), system, code, display, PROVIDER)
        self.vitals(eid, t + timedelta(minutes=5), height=kind == "preventive")
        lab_time = t + timedelta(minutes=25)
        if self.active("diabetes", t.year) and rng.random() < 0.7:
            a1c = round(max(4.5, rng.gauss(self.a1c_mean, 0.6)), 1)
            self.observation(lab_time, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "laboratory", eid,
                             valueQuantity=_qty(a1c, "%"))
        if kind == "preventive" and (self.active("hyperlipidemia", t.year) or rng.random() < 0.3):
            self.observation(lab_time, "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
                             "laboratory", eid, valueQuantity=_qty(round(rng.gauss(115, 30)), "mg/dL"))
        if kind == "preventive" and rng.random() < 0.5:
            self.observation(lab_time, "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "laboratory", eid,
                             valueQuantity=_qty(round(rng.gauss(135 if "diabetes" in self.conditions else 95, 15)),
                                                "mg/dL"))
        diagnoses = [self.problem_ids[k] for k in sorted(self.conditions) if self.active(k, t.year)][:4]
        if kind == "office" and rng.random() < 0.35:
            code, display, (rx, rx_display) = rng.choice(ACUTE)
            cid = self.condition(code, display, t, t + timedelta(days=rng.randint(7, 30)), "encounter-diagnosis", eid)
            diagnoses.insert(0, cid)
            self.request(t, rx, rx_display, eid, days=10)
        lines = [(system, code, display)]
        if "obesity" in self.conditions and self.bmi >= 30 and rng.random() < 0.25:
            self.procedure(t + timedelta(minutes=20), CPT, "97802", "Medical nutrition therapy; initial assessment "
                           "and intervention, individual, face-to-face with the patient, each 15 minutes", eid)
            lines.append((CPT, "97802", "Medical nutrition therapy, initial assessment"))
        self.claim(eid, t, lines, diagnoses)

    def emergency(self, t: datetime) -> None:
        eid = self.encounter(t, self.rng.choice((90, 150, 240)), ("EMER", "emergency"), CPT, "99283",
                             "Emergency department visit, moderate severity", HOSPITAL)
        code, display, (rx, rx_display) = self.rng.choice(ACUTE)
        cid = self.condition(code, display, t, t + timedelta(days=14), "encounter-diagnosis", eid)
        self.vitals(eid, t + timedelta(minutes=10), height=False)
        self.request(t, rx, rx_display, eid, days=7)
        self.claim(eid, t, [(CPT, "99283", "Emergency department visit")], [cid], institutional=True)

    def inpatient(self, t: datetime) -> None:
        rng = self.rng
        days = rng.randint(2, 7)
        end = t + timedelta(days=days, hours=rng.randint(0, 6))
        eid = self.encounter(t, 0, ("IMP", "inpatient encounter"), SCT, "183452005", "Emergency hospital admission",
                             HOSPITAL, end=end)
        diabetic = "diabetes" in self.conditions
        for d in range(days):
            self.observation(t + timedelta(days=d, hours=6), "2339-0", "Glucose [Mass/volume] in Blood", "laboratory",
                             eid, valueQuantity=_qty(round(rng.gauss(190 if diabetic else 110, 60 if diabetic else 20)),
                                                     "mg/dL"))
        self.vitals(eid, t + timedelta(hours=1), height=False)
        diagnoses = [self.problem_ids[k] for k in sorted(self.conditions) if self.active(k, t.year)][:3]
        if self.age >= 65 or rng.random() < 0.5:
            at_risk = rng.random() < 0.3
            self.observation(t + timedelta(hours=12), "98972-3", "Malnutrition risk screening", "survey", eid,
                             valueCodeableConcept=_cc(LOINC, "LA27538-0" if at_risk else "LA33699-2",
                                                      "At risk" if at_risk else "Not at risk"))
            if at_risk:
                self.observation(t + timedelta(days=1), "75303-8", "Nutrition assessment", "survey", eid,
                                 valueCodeableConcept=_cc(LOINC, "LA33703-2", "Mildly malnourished"))
                self.procedure(t + timedelta(days=1, hours=2), SCT, "306165000", "Referral to hospital-based "
                               "dietitian (procedure)", eid)
                if rng.random() < 0.4:
                    diagnoses.insert(0, self.condition("E44.0", "Moderate protein-calorie malnutrition",
                                                       t + timedelta(days=1), None, "encounter-diagnosis", eid))
        self.claim(eid, t, [(SCT, "183452005", "Emergency hospital admission")], diagnoses, institutional=True)

    def procedure(self, t: datetime, system: str, code: str, display: str, encounter: str | None) -> None:
        res: dict[str, Any] = {"resourceType": "Procedure", "id": self.rid("proc"),
                               "meta": _meta(QICORE + "qicore-procedure"), "status": "completed",
                               "code": _cc(system, code, display), "subject": _ref("Patient", self.pid),
                               "performedPeriod": {"start": _dt(t), "end": _dt(t + timedelta(minutes=30))}}
        if encounter:
            res["encounter"] = _ref("Encounter", encounter)
        self.add(res)

    def colonoscopy(self, t: datetime) -> None:
        eid = self.encounter(t, 60, ("AMB", "ambulatory"), CPT, "45378", "Colonoscopy, flexible; diagnostic",
                             HOSPITAL)
        self.procedure(t, CPT, "45378", "Colonoscopy, flexible; diagnostic", eid)
        self.claim(eid, t, [(CPT, "45378", "Colonoscopy, flexible; diagnostic")], [])

    def stool_test(self, t: datetime) -> None:
        if self.rng.random() < 0.5:
            self.observation(t, "2335-8", "Hemoglobin.gastrointestinal [Presence] in Stool", "laboratory", None,
                             valueCodeableConcept=_cc(SCT, "260385009", "Negative"))
        else:
            self.observation(t, "77353-1", "Noninvasive colorectal cancer DNA and occult blood screening [Interpretation] "
                             "in Stool Narrative", "laboratory", None, valueCodeableConcept=_cc(SCT, "260385009",
                                                                                               "Negative"))

    def mammogram(self, t: datetime) -> None:
        self.observation(t, "24606-6", "MG Breast Screening", "imaging", None,
                         valueCodeableConcept=_cc(SCT, "17621005", "Normal"))

    def immunization(self, t: datetime, vaccine: tuple[str, str]) -> None:
        self.add({"resourceType": "Immunization", "id": self.rid("imm"), "meta": _meta(QICORE + "qicore-immunization"),
                  "status": "completed", "vaccineCode": _cc(CVX, vaccine[0], vaccine[1]),
                  "patient": _ref("Patient", self.pid), "occurrenceDateTime": _dt(t), "primarySource": True})

    def request(self, t: datetime, rx: str, display: str, encounter: str | None, days: int) -> None:
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": self.rid("rx"),
            "meta": _meta(QICORE + "qicore-medicationrequest"), "status": "completed" if days < 90 else "active",
            "intent": "order", "category": [_cc("http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                                "community", "Community")],
            "medicationCodeableConcept": _cc(RXNORM, rx, display), "subject": _ref("Patient", self.pid),
            "authoredOn": _dt(t), "requester": {"display": "Synthetic Clinician"},
            "dosageInstruction": [{"text": "1 tablet by mouth daily", "timing": {"repeat": {
                "frequency": 1, "period": 1, "periodUnit": "d"}}, "doseAndRate": [{"doseQuantity": _qty(1, "tablet",
                                                                                                         "{tbl}")}]}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 0 if days < 90 else 3,
                                "expectedSupplyDuration": _qty(days, "days", "d")}}
        if encounter:
            res["encounter"] = _ref("Encounter", encounter)
        self.add(res)

    def medications(self, year: int) -> None:
        t = self.day(year, 10, 60)
        for key, meds in MEDS.items():
            if self.active(key, year):
                for rx, display in meds[: 1 + (self.sbp_mean > 150)]:
                    self.request(t, rx, display, None, days=90)
        if self.statin and (self.active("hyperlipidemia", year) or self.active("ascvd", year)):
            self.request(t, self.statin[0], self.statin[1], None, days=90)


def chart(seed: int, n: int, last_year: int, years: int = 5) -> list[dict[str, Any]]:
    """Patient ``n``'s chart (the Patient first); the same arguments give the same resources."""
    return _Chart(seed, n, last_year, years).build()


def iter_charts(patients: int, seed: int = 1, last_year: int = 2026, years: int = 5,
                with_shared: bool = True) -> Iterator[dict[str, Any]]:
    """The shared Organizations (unless ``with_shared`` is false), then every patient's chart."""
    if with_shared:
        yield from shared_resources()
    for n in range(patients):
        yield from chart(seed, n, last_year, years)

"""X12 835 claim payments -> the adjudicated ExplanationOfBenefit of the claims they pay.

The 835 reader (``gateway.mapping.x12_835``) gives one ``clp`` record per claim payment. This module, which
reads the store, turns each into one unit (written or rejected as a whole):

* **Matching.** The claim paid is found by the patient control number: ``CLP01`` is the 837's ``CLM01``, which
  the x12-837 mapping keeps as the Claim's identifier (``urn:fhir-gateway:x12:patient-control-number``). When
  several Claims carry it, the one billed by the payee's NPI (``N1*PE`` with ``XX``) is taken. The EOB then has
  id ``<claim id>-eob`` and takes patient, provider, type and coverage from the Claim. Without a Claim the EOB
  is built from the 835 alone (id ``x12-835-<payee id>-<CLP01>``, with a Patient from ``NM1*QC``, a Coverage
  and the payee Organization) and the unit loads with an ``unmatched-claim`` warning.
* **Content** (CARIN Blue Button where it fits): ``total`` submitted (``CLP03``), paid to provider
  (``CLP04``) and member liability (``CLP05``); ``adjudication`` per claim and per item from ``CAS`` (category
  by group and reason, the CARC as ``reason``); items from ``SVC`` with submitted, allowed (``AMT*B6``) and
  paid amounts; ``payment`` from ``BPR``/``TRN`` (date, the claim's amount, check/EFT number).
* **Reversals.** ``CLP02`` = 22 reverses an earlier payment: the EOB becomes ``cancelled`` (the payer withdrew
  its adjudication; nothing was entered in error) with a note naming the reversing remittance. A later payment
  of the claim (any other ``CLP02``) rebuilds the EOB as ``active``: the correction supersedes.
* **Idempotence.** Every payment applied is listed on the EOB (extension ``remittance-applied``: ``TRN02``,
  ``CLP01``, ``CLP02``, ``CLP07``). A payment already listed is skipped, so a re-delivered 835 changes
  nothing, even after a correction. Within one run, payments for the same claim apply in file order.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from ..mapping.engine import Unit
from ..mapping.quality import Finding
from ..mapping.records import Record
from ..mapping.spec import MappingSpec
from ..search.query import QueryParser

if TYPE_CHECKING:
    from ..store.base import ResourceStore

CLAIM_ID_SYSTEM = "urn:fhir-gateway:x12:patient-control-number"
PAYER_CLAIM_SYSTEM = "urn:fhir-gateway:x12:payer-claim-control-number"
TRACE_SYSTEM = "urn:fhir-gateway:x12:trace-number"
MEMBER_SYSTEM = "urn:fhir-gateway:x12:member-id"
NPI = "http://hl7.org/fhir/sid/us-npi"
APPLIED = "http://fhir-vbc-gateway.example.org/StructureDefinition/remittance-applied"
CLAIM_STATUS_EXT = "http://fhir-vbc-gateway.example.org/StructureDefinition/x12-claim-status"
ADJ = "http://terminology.hl7.org/CodeSystem/adjudication"
C4BB_ADJ = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
C4BB_DISC = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
C4BB_ID = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
CAS_GROUP = "https://x12.org/codes/claim-adjustment-group-code"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
PROC_SYSTEMS = {"HC": "https://bluebutton.cms.gov/resources/codesystem/hcpcs",
                "NU": "https://www.nubc.org/CodeSystem/RevenueCodes", "N4": "http://hl7.org/fhir/sid/ndc"}
REVERSAL = "22"
ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def _id(v: Any, n: int = 40) -> str:
    """``v`` as a piece of a FHIR id (letters, digits, '-', '.'), at most ``n`` characters (ids: 64)."""
    return ID_UNSAFE.sub("-", str(v))[:n]


def _date(v: str | None) -> str | None:
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if v and len(v) == 8 else None


def _money(v: float) -> dict[str, Any]:
    return {"value": round(v, 2), "currency": "USD"}


def _category(code: str, system: str = ADJ) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# CAS group + reason -> the CARIN BB / HL7 adjudication category; PR (patient responsibility) splits into
# deductible (CARC 1), coinsurance (2) and copay (3); everything else is named by its group code
PR_REASONS = {"1": ("deductible", ADJ), "2": ("coinsurance", C4BB_ADJ), "3": ("copay", ADJ)}


def cas_adjudication(adj: dict[str, Any]) -> dict[str, Any]:
    """One FHIR adjudication entry for one CAS adjustment: category by group/reason, the CARC as reason."""
    group, reason = adj["group"], adj["reason"]
    if group == "PR":
        code, system = PR_REASONS.get(reason, ("memberliability", C4BB_ADJ))
        category = {"coding": [{"system": system, "code": code}, {"system": CAS_GROUP, "code": group}]}
    else:
        category = {"coding": [{"system": CAS_GROUP, "code": group}]}
    out: dict[str, Any] = {"category": category, "reason": {"coding": [{"system": CARC, "code": reason}]},
                           "amount": _money(adj["amount"])}
    return out


def applied_key(f: dict[str, Any]) -> str:
    """What identifies one claim payment of one remittance: re-delivered, it has the same key."""
    return "|".join(str(f.get(k) or "") for k in ("TRACE", "CLAIM_ID", "STATUS", "PAYER_CLAIM_ID"))


class Remittance:
    """Builds the units of an 835 load against the store (see the module doc)."""

    def __init__(self, store: ResourceStore | None, spec: MappingSpec) -> None:
        self.store = store
        self.spec = spec
        self.state: dict[str, dict[str, Any]] = {}  # EOB id -> its content as this run leaves it

    def units(self, records: list[Record]) -> Iterator[Unit]:
        """One unit per claim payment record, in file order."""
        for rec in records:
            yield self._unit(rec)

    # -- store look-ups ------------------------------------------------------------------------------------
    def _claim(self, f: dict[str, Any], warnings: list[Finding], where: str) -> dict[str, Any] | None:
        """The stored Claim the payment pays (see the module doc); several candidates left: the first by id,
        with an ``ambiguous-claim`` warning."""
        if self.store is None:
            return None
        q = QueryParser(None, strict=True, max_count=50).parse(
            "Claim", [("identifier", f"{CLAIM_ID_SYSTEM}|{f['CLAIM_ID']}"), ("_count", "50")])
        found = [orjson.loads(m.content) for m in self.store.search(q).matches if m.content]
        if len(found) > 1 and f.get("PAYEE_QUAL") == "XX":
            by_npi = [c for c in found if (c.get("provider") or {}).get("reference") == f"Organization/npi-"
                      f"{f.get('PAYEE_ID')}"]
            found = by_npi or found
        if len(found) > 1:
            warnings.append(Finding(where, "ambiguous-claim", f"{len(found)} Claims carry patient control number "
                                    f"{f['CLAIM_ID']} and the payee does not tell them apart: the payment is "
                                    "attached to the first by id", "CLP01", f["CLAIM_ID"]))
        return sorted(found, key=lambda c: str(c.get("id")))[0] if found else None

    def _current(self, eob_id: str) -> dict[str, Any] | None:
        if eob_id in self.state:
            return self.state[eob_id]
        if self.store is None:
            return None
        got = self.store.read_many("ExplanationOfBenefit", [eob_id]).get(eob_id)
        return orjson.loads(got.content) if got is not None and got.content else None

    # -- building --------------------------------------------------------------------------------------------
    def _unit(self, rec: Record) -> Unit:
        f = rec.fields
        warnings: list[Finding] = list(rec.warnings)
        claim = self._claim(f, warnings, rec.where)
        payer = self._payer(f)
        resources: list[dict[str, Any]] = [payer]
        if claim is not None:
            eob_id = f"{claim['id']}-eob"
        else:
            payee = _id(f.get("PAYEE_ID") or f.get("PAYEE_NAME") or "payee", 16)
            eob_id = f"x12-835-{payee}-{_id(f['CLAIM_ID'], 38)}"
            warnings.append(Finding(rec.where, "unmatched-claim", f"no Claim with patient control number "
                                    f"{f['CLAIM_ID']} was loaded: the ExplanationOfBenefit is built from the 835 "
                                    "alone", "CLP01", f["CLAIM_ID"]))
        key = applied_key(f)
        current = self._current(eob_id)
        if current is not None and key in _applied(current):
            return Unit("remittance", rec.where, [], 1, [])  # re-delivered: already applied
        if f["STATUS"] == REVERSAL and current is not None:
            eob = copy.deepcopy(current)
            eob.get("meta", {}).pop("versionId", None)
            eob.get("meta", {}).pop("lastUpdated", None)
            eob["status"] = "cancelled"
            notes = eob.setdefault("processNote", [])
            notes.append({"number": len(notes) + 1, "type": "display",
                          "text": f"Payment reversed by remittance {f['TRACE']} of {_date(f.get('PAY_DATE')) or '?'}"
                                  f" (CLP02 22, amount {f['PAID']:.2f})"})
            eob["extension"] = [*eob.get("extension", []), {"url": APPLIED, "valueString": key}]
            resources = [payer, eob]
        else:
            if f["STATUS"] == REVERSAL:
                warnings.append(Finding(rec.where, "reversal-without-payment", "a reversal (CLP02 22) of a "
                                        "payment never loaded: the ExplanationOfBenefit is recorded as cancelled",
                                        "CLP02", REVERSAL))
            if claim is None:
                resources += self._standalone(f)
            eob = self._eob(eob_id, f, claim, payer, current)
            eob["extension"] = [*[e for e in (current or {}).get("extension", []) if e.get("url") == APPLIED],
                                {"url": APPLIED, "valueString": key}, *eob.get("extension", [])]
            resources.append(eob)
            for ln in f["LINES"]:
                if not ln.get("CODE"):
                    warnings.append(Finding(f"{rec.where.split(':')[0]}:{ln['LINE']}", "missing-code",
                                            "SVC01 carries no procedure code: the item's productOrService is "
                                            "data-absent", "SVC01"))
        src = self.spec.source_uri
        for r in resources:
            r.setdefault("meta", {})["source"] = src
        self.state[eob_id] = resources[-1]
        return Unit("remittance", rec.where, resources, 1, warnings)

    def _payer(self, f: dict[str, Any]) -> dict[str, Any]:
        pid = f.get("PAYER_ID") or f.get("PAYER_NAME") or "unknown"
        org: dict[str, Any] = {"resourceType": "Organization", "id": f"x12-835-payer-{_id(pid)}", "active": True,
                               "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "organization-type", "code": "pay"}]}]}
        if f.get("PAYER_NAME"):
            org["name"] = f["PAYER_NAME"]
        if f.get("PAYER_ID"):
            org["identifier"] = [{"system": "urn:fhir-gateway:x12:payer-id", "value": f["PAYER_ID"]}]
        return org

    def _ids(self, f: dict[str, Any]) -> tuple[str, str, str]:
        member = f.get("PAT_ID") or f"{f.get('PAT_LAST') or ''}-{f.get('PAT_FIRST') or ''}"
        payer = _id(f.get("PAYER_ID") or f.get("PAYER_NAME") or "unknown")
        patient = f"x12-835-{payer[:20]}-{_id(member, 34)}"
        payee = (f"npi-{f['PAYEE_ID']}" if f.get("PAYEE_QUAL") == "XX" and f.get("PAYEE_ID")
                 else f"x12-835-payee-{_id(f.get('PAYEE_ID') or f.get('PAYEE_NAME') or 'unknown')}")
        return patient, patient, payee

    def _standalone(self, f: dict[str, Any]) -> list[dict[str, Any]]:
        """Patient, Coverage and payee Organization for a payment whose Claim was never loaded."""
        patient_id, coverage_id, payee_id = self._ids(f)
        patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
        if f.get("PAT_ID"):
            patient["identifier"] = [{"system": MEMBER_SYSTEM, "value": f["PAT_ID"]}]
        name = {k: v for k, v in (("family", f.get("PAT_LAST")),
                                  ("given", [f["PAT_FIRST"]] if f.get("PAT_FIRST") else None)) if v}
        if name:
            patient["name"] = [name]
        coverage: dict[str, Any] = {"resourceType": "Coverage", "id": coverage_id, "status": "active",
                                    "beneficiary": {"reference": f"Patient/{patient_id}"},
                                    "payor": [{"reference": f"Organization/{self._payer(f)['id']}"}]}
        if f.get("PAT_ID"):
            coverage["subscriberId"] = f["PAT_ID"]
        payee: dict[str, Any] = {"resourceType": "Organization", "id": payee_id, "active": True}
        if f.get("PAYEE_NAME"):
            payee["name"] = f["PAYEE_NAME"]
        if f.get("PAYEE_ID"):
            system = NPI if f.get("PAYEE_QUAL") == "XX" else f"urn:fhir-gateway:x12:payee-id:{f.get('PAYEE_QUAL')}"
            payee["identifier"] = [{"system": system, "value": f["PAYEE_ID"]}]
        return [patient, coverage, payee]

    def _eob(self, eob_id: str, f: dict[str, Any], claim: dict[str, Any] | None, payer: dict[str, Any],
             current: dict[str, Any] | None) -> dict[str, Any]:
        patient_id, coverage_id, payee_id = self._ids(f)
        if claim is not None:
            patient = claim["patient"]
            provider = claim["provider"]
            ctype = claim["type"]
            insurance = [{"focal": True, "coverage": i["coverage"]} for i in claim.get("insurance") or []][:1]
        else:
            patient = {"reference": f"Patient/{patient_id}"}
            provider = {"reference": f"Organization/{payee_id}"}
            ctype = {"coding": [{"system": CLAIM_TYPE,
                                 "code": "institutional" if f.get("FACILITY") else "professional"}]}
            insurance = []
        if not insurance:
            insurance = [{"focal": True, "coverage": {"reference": f"Coverage/{coverage_id}"}}]
        created = _date(f.get("PAY_DATE")) or _date(f.get("END")) or _date(f.get("START"))
        eob: dict[str, Any] = {
            "resourceType": "ExplanationOfBenefit", "id": eob_id,
            "extension": [{"url": CLAIM_STATUS_EXT, "valueCode": f["STATUS"]}],
            "status": "cancelled" if f["STATUS"] == REVERSAL else "active",
            "type": ctype, "use": "claim", "patient": patient,
            "insurer": {"reference": f"Organization/{payer['id']}"}, "provider": provider,
            "outcome": "complete", "insurance": insurance,
        }
        if f.get("PAYER_CLAIM_ID"):
            eob["identifier"] = [{"type": {"coding": [{"system": C4BB_ID, "code": "uc"}]},
                                  "system": PAYER_CLAIM_SYSTEM, "value": f["PAYER_CLAIM_ID"]}]
        if created:
            eob["created"] = created
        period = {k: v for k, v in (("start", _date(f.get("START"))), ("end", _date(f.get("END")))) if v}
        if period:
            eob["billablePeriod"] = period
        if claim is not None:
            eob["claim"] = {"reference": f"Claim/{claim['id']}"}
        items = []
        for n, ln in enumerate(f["LINES"], 1):
            system = PROC_SYSTEMS.get(ln.get("QUAL") or "", f"urn:fhir-gateway:x12:product-service-qualifier:"
                                                            f"{ln.get('QUAL') or 'none'}")
            coding = ({"system": system, "code": ln["CODE"]} if ln.get("CODE")
                      else {"system": DAR, "code": "unknown"})
            adjudication = [{"category": _category("submitted"), "amount": _money(ln["CHARGE"])},
                            {"category": _category("paidtoprovider", C4BB_ADJ), "amount": _money(ln["PAID"])}]
            if ln.get("ALLOWED") is not None:
                adjudication.append({"category": _category("eligible"), "amount": _money(ln["ALLOWED"])})
            adjudication += [cas_adjudication(a) for a in ln["ADJUSTMENTS"]]
            item: dict[str, Any] = {"sequence": n, "productOrService": {"coding": [coding]},
                                    "adjudication": adjudication}
            if ln.get("MODIFIERS"):
                item["modifier"] = [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": m}]}
                                    for m in ln["MODIFIERS"]]
            if ln.get("DATE"):
                item["servicedDate"] = _date(ln["DATE"])
            if ln.get("UNITS") is not None:
                item["quantity"] = {"value": ln["UNITS"]}
            items.append(item)
        if items:
            eob["item"] = items
        if f["ADJUSTMENTS"]:
            eob["adjudication"] = [cas_adjudication(a) for a in f["ADJUSTMENTS"]]
        total = [{"category": _category("submitted"), "amount": _money(f["CHARGE"])},
                 {"category": _category("paidtoprovider", C4BB_ADJ), "amount": _money(f["PAID"])}]
        if f.get("PATIENT_RESP") is not None:
            total.append({"category": _category("memberliability", C4BB_ADJ), "amount": _money(f["PATIENT_RESP"])})
        eob["total"] = total
        payment: dict[str, Any] = {
            "type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
            "amount": _money(f["PAID"]),
            "identifier": {"system": TRACE_SYSTEM, "value": f["TRACE"]}}
        if _date(f.get("PAY_DATE")):
            payment["date"] = _date(f.get("PAY_DATE"))
        eob["payment"] = payment
        return eob


def _applied(eob: dict[str, Any]) -> set[str]:
    return {str(e.get("valueString")) for e in eob.get("extension") or [] if e.get("url") == APPLIED}

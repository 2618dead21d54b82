"""ATR attribution list operations on stored Groups: $member-add, $member-remove, $confirm-attribution-list and
$attribution-status. Resolves member ids (Coverage MB identifiers) and provider NPIs through search, and
writes every change as a new Group version guarded by the version it read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..fhir.atr_model import EXT_COVERAGE, EXT_PROVIDER, NPI, is_atr_group, member_ref
from ..fhir.dates import now_instant
from ..fhir.errors import BadRequest, NotFound, Unprocessable
from ..fhir.parameters import parameter_list
from ..resources.rest import RestService, resource_json
from .members import Selector, add_member, confirm, remove_members

PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")
ADD_INPUTS = ("memberId", "providerNpi", "patientReference", "providerReference", "attributionPeriod")
REMOVE_INPUTS = ("memberId", "providerNpi", "patientReference", "providerReference", "coverageReference")
STATUS_INPUTS = ("memberId", "patientReference")


@dataclass
class Change:
    group: dict[str, Any] | None  # the stored new version, None when nothing changed
    message: str


def operation_inputs(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A Parameters body as {name: value}; each input at most once, unknown inputs refused."""
    if body is None:
        return {}
    out: dict[str, Any] = {}
    for p in parameter_list(body, "The operation"):
        name = p.get("name")
        if name not in allowed:
            raise BadRequest(f"Unknown parameter {name!r}; this operation takes {', '.join(allowed) or 'none'}")
        if name in out:
            raise BadRequest(f"Parameter {name!r} may appear only once")
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if not isinstance(value, dict):
            raise BadRequest(f"Parameter {name!r} needs a complex value (Identifier, Reference or Period)")
        out[name] = value
    return out


class AttributionService:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    # -- lookups -----------------------------------------------------------------------------------------
    def group(self, gid: str) -> tuple[dict[str, Any], int]:
        s = self.rest.read("Group", gid)
        g = resource_json(s)
        if not is_atr_group(g):
            raise Unprocessable(f"Group/{gid} is not an attribution list (no ATR profile or list status)")
        return g, s.version

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        q = self.rest.parser(strict=True).parse(rtype, params)
        q.count, q.total = 50, "none"
        return [resource_json(s) for s in self.rest.store.search(q).matches]

    def _exists(self, ref: str, types: tuple[str, ...], what: str) -> str:
        rtype, _, rid = ref.rpartition("/")
        rtype = rtype.rsplit("/", 1)[-1]
        if rtype not in types or not rid:
            raise BadRequest(f"{what} {ref!r} must reference a {' or '.join(types)}")
        s = self.rest.store.read(rtype, rid)
        if s is None or s.deleted:
            raise Unprocessable(f"{what} {rtype}/{rid} does not exist", code="not-found")
        return f"{rtype}/{rid}"

    @staticmethod
    def _ident(value: dict[str, Any]) -> str:
        if not value.get("value"):
            raise BadRequest("An identifier parameter needs a value")
        return f"{value['system']}|{value['value']}" if value.get("system") else str(value["value"])

    def _member_coverages(self, member_id: dict[str, Any]) -> list[dict[str, Any]]:
        covs = self._search("Coverage", [("identifier", self._ident(member_id))])
        if not covs:
            raise Unprocessable(f"No member with memberId {self._ident(member_id)} (no Coverage carries it)",
                                code="not-found")
        return covs

    def _provider_by_npi(self, npi: dict[str, Any]) -> str:
        value = self._ident({"system": npi.get("system") or NPI, "value": npi.get("value")})
        for rtype in PROVIDER_TYPES:
            found = self._search(rtype, [("identifier", value)])
            if len(found) > 1:
                raise Unprocessable(f"providerNpi {value} matches {len(found)} {rtype} resources", code="multiple-matches")
            if found:
                return f"{rtype}/{found[0]['id']}"
        raise Unprocessable(f"No Practitioner, PractitionerRole or Organization has NPI {value}", code="not-found")

    def _coverage_for(self, patient: str, group: dict[str, Any]) -> str:
        covs = [c for c in self._search("Coverage", [("beneficiary", patient)]) if c.get("status") == "active"]
        if not covs:
            raise Unprocessable(f"{patient} has no active Coverage, so cannot be attributed", code="not-found")
        payer = (group.get("managingEntity") or {}).get("reference")
        covs.sort(key=lambda c: (payer not in [p.get("reference") for p in c.get("payor") or []], c["id"]))
        return f"Coverage/{covs[0]['id']}"

    def _save(self, gid: str, group: dict[str, Any], version: int) -> dict[str, Any]:
        out = self.rest.update("Group", gid, group, if_match=f'W/"{version}"')
        return resource_json(out.stored)

    # -- operations --------------------------------------------------------------------------------------
    def member_add(self, gid: str, inputs: dict[str, Any]) -> Change:
        group, version = self.group(gid)
        period = inputs.get("attributionPeriod")
        if "memberId" in inputs and "providerNpi" in inputs and not {"patientReference", "providerReference"} & set(inputs):
            covs = self._member_coverages(inputs["memberId"])
            patients = {(c.get("beneficiary") or {}).get("reference") for c in covs}
            if len(patients) > 1:
                raise Unprocessable(f"memberId {self._ident(inputs['memberId'])} belongs to {len(patients)} patients; "
                                    "use patientReference", code="multiple-matches")
            patient = self._exists(patients.pop() or "", ("Patient",), "The member's Coverage beneficiary")
            provider = self._provider_by_npi(inputs["providerNpi"])
            coverage = f"Coverage/{covs[0]['id']}"
        elif "patientReference" in inputs and "providerReference" in inputs and not {"memberId", "providerNpi"} & set(inputs):
            patient = self._exists(inputs["patientReference"].get("reference", ""), ("Patient",), "patientReference")
            provider = self._exists(inputs["providerReference"].get("reference", ""), PROVIDER_TYPES,
                                    "providerReference")
            coverage = self._coverage_for(patient, group)
        else:
            raise BadRequest("$member-add takes memberId + providerNpi, or patientReference + providerReference "
                             "(each optionally with attributionPeriod)")
        new, message = add_member(group, patient, provider, coverage, period)
        return Change(self._save(gid, new, version) if new else None, message)

    def member_remove(self, gid: str, inputs: dict[str, Any]) -> Change:
        group, version = self.group(gid)
        keys = frozenset(inputs)
        listed = {(m.get("entity") or {}).get("reference") for m in group.get("member") or []}
        if keys in (frozenset({"memberId"}), frozenset({"memberId", "providerNpi"})):
            covs = self._member_coverages(inputs["memberId"])
            patients = {(c.get("beneficiary") or {}).get("reference") for c in covs} & listed
            if len(patients) > 1:
                raise Unprocessable(f"memberId {self._ident(inputs['memberId'])} matches {len(patients)} members of "
                                    "this list; use patientReference", code="multiple-matches")
            provider = self._provider_by_npi(inputs["providerNpi"]) if "providerNpi" in keys else None
            sel = Selector(frozenset(p for p in patients if p is not None), provider)
        elif keys in (frozenset({"patientReference"}), frozenset({"patientReference", "providerReference"}),
                      frozenset({"patientReference", "providerReference", "coverageReference"})):
            patient = self._exists(inputs["patientReference"].get("reference", ""), ("Patient",), "patientReference")
            provider = (self._exists(inputs["providerReference"].get("reference", ""), PROVIDER_TYPES,
                                     "providerReference") if "providerReference" in keys else None)
            coverage = (self._exists(inputs["coverageReference"].get("reference", ""), ("Coverage",),
                                     "coverageReference") if "coverageReference" in keys else None)
            sel = Selector(frozenset([patient]), provider, coverage)
        else:
            raise BadRequest("$member-remove takes memberId, memberId + providerNpi, patientReference, "
                             "patientReference + providerReference, or patientReference + providerReference + "
                             "coverageReference")
        new, n = remove_members(group, sel)
        return Change(self._save(gid, new, version), f"{n} member attribution(s) removed")

    def confirm(self, gid: str) -> Change:
        group, version = self.group(gid)
        return Change(self._save(gid, confirm(group), version), f"Group/{gid} confirmed: the list is final")

    def status(self, gid: str, inputs: dict[str, Any]) -> dict[str, Any]:
        group, _ = self.group(gid)
        keys = set(inputs)
        listed = {(m.get("entity") or {}).get("reference") for m in group.get("member") or []}
        if keys == {"patientReference"}:
            ref = inputs["patientReference"].get("reference", "")
            patients = {"Patient/" + ref.rsplit("/", 1)[-1]} if ref else set()
        elif keys == {"memberId"}:
            covs = self._member_coverages(inputs["memberId"])
            patients = {(c.get("beneficiary") or {}).get("reference") for c in covs}
        else:
            raise BadRequest("$attribution-status takes memberId or patientReference")
        patients &= listed
        if not patients:
            raise NotFound(f"The member is not on the attribution list Group/{gid}")
        refs: list[str] = sorted(patients)
        for m in group.get("member") or []:
            if (m.get("entity") or {}).get("reference") in patients:
                refs += [r for r in (member_ref(m, EXT_COVERAGE), member_ref(m, EXT_PROVIDER)) if r]
        entries, seen = [], set()
        for ref in refs:
            if ref in seen:
                continue
            seen.add(ref)
            rtype, _, rid = ref.partition("/")
            s = self.rest.store.read(rtype, rid)
            if s is not None and not s.deleted:
                entries.append({"fullUrl": f"{self.rest.base_url}/{ref}", "resource": orjson.Fragment(s.body)})
        return {"resourceType": "Bundle", "type": "collection", "timestamp": now_instant(), "entry": entries}

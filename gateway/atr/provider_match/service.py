"""Da Vinci PDex ``Group/$provider-member-match`` (Provider Access, CMS-0057-F): an in-network provider's
Backend Services client submits members (demographics, coverage, its treatment attestation); the payer matches
them against its members, leaves out the ones who opted out, and stores the matched ones as an ATR attribution
list (status ``open``) that the provider then exports with ``$davinci-data-export``.

The rules, in our words, are in docs/specs/pdex-provider-access.md; the flow in docs/guides/provider-access.md.

- The caller is a provider: its grant's fhirUser is an Organization, Practitioner or PractitionerRole that is
  stored and carries an NPI (its client is registered with that fhirUser); anyone else gets 403.
- The request is checked whole before anything is looked up: each ``MemberBundle`` holds one
  ``MemberPatient`` (family name and birth date), one ``CoverageToMatch`` (a subscriber id or member
  identifier: the match is deterministic), one ``Consent`` (the provider's active treatment attestation,
  made by the caller) and at most one ``CoverageToLink`` (accepted, not used); references between them must
  agree. Any defect is 400 naming ``MemberBundle[i]``.
- Matching runs on the payer's records under the SYSTEM grant (the provider may not read other members):
  a member matches when exactly one stored Patient has the family name and birth date (and first given name
  and gender, when both sides state them) and holds an active Coverage whose subscriberId or identifier
  equals the submitted one (or the Patient carries the submitted member identifier). None or several: no
  match.
- Matched members who opted out (auth/opt_out.py) are not listed.
- At least one listed member: the Group is stored (one write, validated as an ATR list) and returned with
  the NonMatchedMembers and ConsentConstrainedMembers Groups (response only, never stored). No member
  listed: 422 with one issue per MemberBundle, and nothing is stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...auth.context import SYSTEM, Grant, acting_as
from ...auth.groups import restricted
from ...auth.opt_out import MATCH_RESULT_CS, OPT_OUT_GROUP_PROFILE, PDEX, OptOuts
from ...fhir.atr_model import (
    EXT_CHANGE_TYPE,
    EXT_COVERAGE,
    EXT_PROVIDER,
    EXT_RECIPIENT,
    EXT_STATUS,
    NPI,
    PROFILE_GROUP,
    V2_0203,
)
from ...fhir.dates import now_instant
from ...fhir.errors import BadRequest, FhirError, Forbidden, InvalidResource, Issue, Unprocessable
from ...fhir.parameters import parameter_list
from ...resources.rest import RestService, resource_json

SD = f"{PDEX}/StructureDefinition"
MATCH_PROFILE = f"{SD}/pdex-provider-member-match"
NO_MATCH_PROFILE = f"{SD}/pdex-provider-member-no-match"
EXT_MATCH_PARAMETERS = f"{SD}/base-ext-match-parameters"
PARTS = {"MemberPatient": "Patient", "CoverageToMatch": "Coverage", "Consent": "Consent", "CoverageToLink": "Coverage"}
REQUIRED_PARTS = ("MemberPatient", "CoverageToMatch", "Consent")
CANDIDATE_LIMIT = 50  # stored Patients with one family name and birth date considered for one member
MAX_MEMBERS = 1000  # MemberBundles in one request (each costs a few searches); more is refused, too-costly


@dataclass
class Provider:
    """The calling provider: its fhirUser reference, NPI and name."""
    reference: str
    npi: str
    name: str


@dataclass
class Submitted:
    """One MemberBundle as the provider sent it."""
    index: int
    patient: dict[str, Any]
    coverage: dict[str, Any]
    consent: dict[str, Any]
    key: str  # the id of the submitted Patient inside the answer's Groups (contained)
    outcome: str = "nomatch"  # match | nomatch | ambiguous | opted-out
    member: str | None = None  # the matched Patient id
    coverage_id: str | None = None  # the matched stored Coverage
    payor: str | None = None
    reason: str = ""


@dataclass
class MatchResult:
    parameters: dict[str, Any]
    group_id: str
    version: str
    members: list[Submitted] = field(default_factory=list)


def _where(i: int, part: str | None = None) -> str:
    return f"Parameters.parameter[{i}]" + (f".part[{part}]" if part else "")


def _ref_id(reference: Any, rtype: str) -> str | None:
    """The id a reference names for ``rtype`` (``Patient/x``, an absolute URL or a ``#x`` contained one)."""
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    if ref.startswith("#"):
        return ref[1:] or None
    parts = ref.split("/_history/")[0].split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == rtype and parts[-1] else None


def _identifiers(node: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(i.get("system"), str(i["value"])) for i in node.get("identifier") or []
            if isinstance(i, dict) and i.get("value")]


def _member_identifiers(patient: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The submitted Patient's member numbers (identifier type v2-0203 MB)."""
    out = []
    for i in patient.get("identifier") or []:
        codes = {(c.get("system"), c.get("code")) for c in ((i or {}).get("type") or {}).get("coding") or []}
        if (V2_0203, "MB") in codes and i.get("value"):
            out.append((i.get("system"), str(i["value"])))
    return out


def _escape(value: str) -> str:
    """A search value with the characters FHIR search gives a meaning (``\\ , $ |``) escaped."""
    for ch in ("\\", ",", "$", "|"):
        value = value.replace(ch, "\\" + ch)
    return value


def _same_identifier(a: tuple[str | None, str], b: tuple[str | None, str]) -> bool:
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def _name(patient: dict[str, Any]) -> tuple[str, str]:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = official.get("given") or []
    return str(official.get("family") or "").strip(), str(given[0] if given else "").strip()


def read_request(body: Any) -> list[Submitted]:
    """The MemberBundles of a $provider-member-match Parameters body, checked (module docstring); BadRequest
    naming the first defect."""
    params = parameter_list(body, "$provider-member-match")
    if not params:
        raise BadRequest("$provider-member-match needs at least one MemberBundle parameter")
    if len(params) > MAX_MEMBERS:
        raise BadRequest(f"$provider-member-match takes at most {MAX_MEMBERS} MemberBundles in one request; "
                         "split the request", code="too-costly")
    out: list[Submitted] = []
    for i, p in enumerate(params):
        if p.get("name") != "MemberBundle":
            raise BadRequest(f"Unknown parameter {p.get('name')!r}; $provider-member-match takes MemberBundle "
                             "parameters only", issues=[Issue("error", "invalid", f"Unknown parameter "
                                                              f"{p.get('name')!r}", [_where(i)])])
        found: dict[str, dict[str, Any]] = {}
        for part in p.get("part") or []:
            name = part.get("name")
            where = _where(i, str(name))
            if name not in PARTS:
                raise BadRequest(f"MemberBundle[{i}]: unknown part {name!r}; expected MemberPatient, "
                                 "CoverageToMatch, Consent and optionally CoverageToLink",
                                 issues=[Issue("error", "invalid", f"MemberBundle[{i}]: unknown part {name!r}", [where])])
            if name in found:
                raise BadRequest(f"MemberBundle[{i}]: part {name} appears more than once",
                                 issues=[Issue("error", "invalid", f"MemberBundle[{i}]: {name} appears twice", [where])])
            res = part.get("resource")
            if not isinstance(res, dict) or res.get("resourceType") != PARTS[name]:
                raise BadRequest(f"MemberBundle[{i}]: {name} must hold a {PARTS[name]} resource",
                                 issues=[Issue("error", "invalid", f"MemberBundle[{i}]: {name} must be a {PARTS[name]}",
                                              [where])])
            found[name] = res
        missing = [n for n in REQUIRED_PARTS if n not in found]
        if missing:
            raise BadRequest(f"MemberBundle[{i}] lacks {', '.join(missing)} (each member needs MemberPatient, "
                             "CoverageToMatch and the provider's treatment attestation Consent)",
                             issues=[Issue("error", "required", f"MemberBundle[{i}] lacks {', '.join(missing)}",
                                              [_where(i)])])
        out.append(_check_member(i, found["MemberPatient"], found["CoverageToMatch"], found["Consent"]))
    return out


def _check_member(i: int, patient: dict[str, Any], coverage: dict[str, Any], consent: dict[str, Any]) -> Submitted:
    def bad(message: str, part: str, code: str = "invalid") -> BadRequest:
        text = f"MemberBundle[{i}]: {message}"
        return BadRequest(text, issues=[Issue("error", code, text, [_where(i, part)])])

    family, _ = _name(patient)
    if not family or not patient.get("birthDate"):
        raise bad("MemberPatient needs a family name and a birthDate to be matched", "MemberPatient", "required")
    if not (coverage.get("subscriberId") or _identifiers(coverage) or _member_identifiers(patient)):
        raise bad("CoverageToMatch needs a subscriberId or an identifier (or MemberPatient a member identifier, "
                  "type MB): members are matched deterministically, never on demographics alone",
                  "CoverageToMatch", "required")
    pid = str(patient.get("id") or "")
    for what, part, ref in (("CoverageToMatch.beneficiary", "CoverageToMatch", coverage.get("beneficiary")),
                            ("Consent.patient", "Consent", consent.get("patient"))):
        named = _ref_id(ref, "Patient")
        if ref is not None and (named is None or (pid and named != pid)):
            raise bad(f"{what} names {(ref or {}).get('reference')!r}, not the MemberPatient "
                      f"{'Patient/' + pid if pid else '(which has no id)'}: the parts conflict", part, "conflict")
    if consent.get("status") != "active":
        raise bad("the treatment attestation Consent must have status 'active'", "Consent", "business-rule")
    provision: dict[str, Any] = consent["provision"] if isinstance(consent.get("provision"), dict) else {}
    if provision.get("type", "permit") != "permit":
        raise bad("the treatment attestation Consent must permit (provision.type 'permit')", "Consent",
                  "business-rule")
    return Submitted(i, patient, coverage, consent, key=f"member-{i + 1}")


class ProviderMatchService:
    def __init__(self, rest: RestService, opt_outs: OptOuts, payer: str = "", report_opt_outs: bool = True) -> None:
        self.rest = rest
        self.opt_outs = opt_outs
        self.payer = payer
        self.report_opt_outs = report_opt_outs  # False: opted-out members answer as not matched

    # -- the caller --------------------------------------------------------------------------------------
    def caller(self, grant: Grant) -> Provider:
        """The provider the grant acts for; 403 unless it is a stored provider resource with an NPI."""
        if grant.system or not restricted(grant.fhir_user):
            raise Forbidden("$provider-member-match is for a provider's client: register it with the "
                            "provider's Organization, Practitioner or PractitionerRole as its fhirUser")
        ref = "/".join(str(grant.fhir_user).split("/")[-2:])
        rtype, _, rid = ref.partition("/")
        with acting_as(SYSTEM):
            stored = self.rest.store.read(rtype, rid)
        res = orjson.loads(stored.content) if stored is not None and stored.content is not None else None
        npi = next((v for s, v in _identifiers(res or {}) if s == NPI), None)
        if res is None or npi is None:
            raise Forbidden(f"The client's fhirUser {ref} is not a stored provider with an NPI "
                            f"({NPI}); the payer registers it before the client may match members")
        name = str(res.get("name") or "") if rtype == "Organization" else ref
        return Provider(ref, npi, name or ref)

    def _attested_by(self, consent: dict[str, Any], provider: Provider) -> bool:
        orgs = consent.get("organization")
        actors = [*(consent.get("performer") or []), *(orgs if isinstance(orgs, list) else [orgs])]
        for a in actors:
            if not isinstance(a, dict):
                continue
            ref = str(a.get("reference") or "").split("/_history/")[0]
            if ref and (ref == provider.reference or ref.endswith("/" + provider.reference)):
                return True
            ident: dict[str, Any] = a["identifier"] if isinstance(a.get("identifier"), dict) else {}
            if ident.get("system") == NPI and ident.get("value") == provider.npi:
                return True
        return False

    # -- matching (under SYSTEM: the payer's records) ------------------------------------------------------
    def _search(self, rtype: str, params: list[tuple[str, str]], limit: int = CANDIDATE_LIMIT) -> list[dict[str, Any]]:
        q = self.rest.parser(strict=True).parse(rtype, params)
        q.count, q.total = limit, "none"
        return [resource_json(s) for s in self.rest.store.search(q).matches]

    def _match(self, s: Submitted) -> None:
        family, given = _name(s.patient)
        gender = s.patient.get("gender")
        sub = s.coverage.get("subscriberId")
        wanted = _identifiers(s.coverage) + _member_identifiers(s.patient)
        hits: list[tuple[str, dict[str, Any]]] = []
        for cand in self._search("Patient", [("family", _escape(family)),
                                                 ("birthdate", str(s.patient["birthDate"]))]):
            c_family, c_given = _name(cand)
            if c_family.lower() != family.lower() or cand.get("birthDate") != s.patient["birthDate"]:
                continue
            if given and c_given and given.lower() != c_given.lower():
                continue
            if gender and cand.get("gender") and gender != cand.get("gender"):
                continue
            own_ids = _identifiers(cand)
            by_patient = any(_same_identifier(w, o) for w in _member_identifiers(s.patient) for o in own_ids)
            for cov in self._search("Coverage", [("beneficiary", f"Patient/{cand['id']}"), ("status", "active")]):
                by_cov = (sub and cov.get("subscriberId") == sub) or any(
                    _same_identifier(w, o) for w in wanted for o in _identifiers(cov))
                if by_cov or by_patient:
                    hits.append((str(cand["id"]), cov))
                    break
        if len({pid for pid, _ in hits}) > 1:
            s.outcome, s.reason = "ambiguous", f"{len(hits)} members fit these demographics and coverage"
            return
        if not hits:
            s.outcome, s.reason = "nomatch", "no member has these demographics and this coverage"
            return
        pid, cov = hits[0]
        s.outcome, s.member, s.coverage_id = "match", pid, str(cov["id"])
        payor = next((str(p.get("reference")) for p in cov.get("payor") or []
                      if str((p or {}).get("reference") or "").startswith("Organization/")), None)
        s.payor = payor

    # -- the operation -----------------------------------------------------------------------------------
    def match(self, body: Any, grant: Grant) -> MatchResult:
        """Run $provider-member-match for ``grant``'s provider (module docstring)."""
        provider = self.caller(grant)
        members = read_request(body)
        for s in members:  # each part a valid resource of its type, before anything is looked up
            for part, res in (("MemberPatient", s.patient), ("CoverageToMatch", s.coverage), ("Consent", s.consent)):
                try:
                    self.rest.validate(res, PARTS[part])
                except InvalidResource as exc:
                    msg = f"MemberBundle[{s.index}]: {part} is not a valid {PARTS[part]}: {exc.diagnostics}"
                    raise BadRequest(msg, issues=[Issue("error", "invalid", msg, [_where(s.index, part)])]) from None
        for s in members:
            if not self._attested_by(s.consent, provider):
                msg = (f"the treatment attestation Consent is not made by the calling provider {provider.reference} "
                       f"(NPI {provider.npi}) in its performer or organization")
                msg = f"MemberBundle[{s.index}]: {msg}"
                raise BadRequest(msg, issues=[Issue("error", "conflict", msg, [_where(s.index, "Consent")])])
        with acting_as(SYSTEM):
            for s in members:
                self._match(s)
            opted = self.opt_outs.opted_out({s.member for s in members if s.member})
        for s in members:
            if s.member in opted and self.report_opt_outs:
                s.outcome, s.reason = "opted-out", "the member opted out of sharing data through Provider Access"
            elif s.member in opted:  # suppressed: told apart from no match by nothing
                s.outcome, s.member, s.reason = "nomatch", None, "no member has these demographics and this coverage"
        matched = [s for s in members if s.outcome == "match"]
        if not matched:
            issues = [Issue("error", "not-found" if s.outcome != "opted-out" else "suppressed",
                            f"MemberBundle[{s.index}]: {s.reason}", [_where(s.index)]) for s in members]
            raise Unprocessable("No submitted member can be listed for Provider Access: "
                                + "; ".join(i.diagnostics for i in issues) + ". Nothing was stored.", issues=issues,
                                code="not-found")
        payer = self.payer or next((s.payor for s in matched if s.payor), None)
        if not payer:
            raise FhirError("The payer Organization managing Provider Access lists is not configured "
                            "(GATEWAY_PROVIDER_ACCESS_PAYER) and the matched Coverage names none",
                            status=500, code="exception")
        group = self._matched_group(matched, provider, payer)
        with acting_as(SYSTEM):  # the payer stores the list; the provider reads it through its own grant
            stored = self.rest.create("Group", group).stored
        out = resource_json(stored)
        params: list[dict[str, Any]] = [{"name": "MatchedMembers", "resource": out}]
        unmatched = [s for s in members if s.outcome in ("nomatch", "ambiguous")]
        if unmatched:
            params.append({"name": "NonMatchedMembers",
                           "resource": self._report_group(unmatched, provider, payer, "nomatch")})
        opted_out = [s for s in members if s.outcome == "opted-out"]
        if opted_out:
            params.append({"name": "ConsentConstrainedMembers",
                           "resource": self._report_group(opted_out, provider, payer, "consentconstraint")})
        return MatchResult({"resourceType": "Parameters", "parameter": params}, str(stored.id),
                           str(stored.version), members)

    # -- the Groups ----------------------------------------------------------------------------------------
    @staticmethod
    def _contained(s: Submitted) -> dict[str, Any]:
        p = {k: v for k, v in s.patient.items() if k not in ("id", "meta", "text", "contained")}
        return {**p, "id": s.key}

    @staticmethod
    def _code(code: str, display: str) -> dict[str, Any]:
        return {"coding": [{"system": MATCH_RESULT_CS, "code": code, "display": display}]}

    def _common(self, provider: Provider, payer: str) -> dict[str, Any]:
        npi = {"system": NPI, "value": provider.npi}
        return {"identifier": [npi], "active": True, "type": "person", "actual": True,
                "managingEntity": {"reference": payer},
                "extension": [{"url": EXT_RECIPIENT, "valueIdentifier": npi}]}

    def _matched_group(self, matched: list[Submitted], provider: Provider, payer: str) -> dict[str, Any]:
        now = now_instant()
        seen: set[str] = set()
        members = []
        for s in matched:
            if s.member in seen:
                continue  # the same member submitted twice is listed once
            seen.add(str(s.member))
            members.append({
                "extension": [{"url": EXT_CHANGE_TYPE, "valueCode": "new"},
                              {"url": EXT_COVERAGE, "valueReference": {"reference": f"Coverage/{s.coverage_id}"}},
                              {"url": EXT_PROVIDER, "valueReference": {"reference": provider.reference}}],
                "entity": {"reference": f"Patient/{s.member}", "extension": [
                    {"url": EXT_MATCH_PARAMETERS, "valueReference": {"reference": f"#{s.key}"}}]}})
        g = self._common(provider, payer)
        g["extension"].insert(0, {"url": EXT_STATUS, "valueCode": "open"})
        return {"resourceType": "Group", "id": uuid.uuid4().hex,
                "meta": {"profile": [MATCH_PROFILE, PROFILE_GROUP]},
                "contained": [self._contained(s) for s in matched], **g,
                "code": self._code("match", "Matched"), "name": f"Provider Access: members matched for {provider.name}",
                "characteristic": [{"code": self._code("match", "Matched"),
                                    "valueReference": {"reference": provider.reference}, "exclude": False,
                                    "period": {"start": now}}],
                "quantity": len(members), "member": members}

    def _report_group(self, items: list[Submitted], provider: Provider, payer: str, code: str) -> dict[str, Any]:
        """A NonMatchedMembers or ConsentConstrainedMembers Group: the submitted demographics only (nothing
        of the payer's records), returned and never stored."""
        display = "Not Matched" if code == "nomatch" else "Consent Constraint"
        profile = NO_MATCH_PROFILE if code == "nomatch" else OPT_OUT_GROUP_PROFILE
        g = self._common(provider, payer)
        out: dict[str, Any] = {"resourceType": "Group", "meta": {"profile": [profile]},
                               "contained": [self._contained(s) for s in items], **g,
                               "code": self._code(code, display), "quantity": len(items),
                               "member": [{"entity": {"reference": f"#{s.key}", "extension": [
                                   {"url": EXT_MATCH_PARAMETERS, "valueReference": {"reference": f"#{s.key}"}}]}}
                                   for s in items]}
        if code == "consentconstraint":
            out["characteristic"] = [{"code": self._code(code, display), "valueCodeableConcept": {"coding": [
                {"system": f"{PDEX}/CodeSystem/opt-out-scope", "code": "global"}]}, "exclude": False}]
        return out

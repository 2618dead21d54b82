"""Per-Group access for Da Vinci ATR attribution lists: a client or user acting for an organization or
practitioner (its fhirUser) sees a Group only when it is the Group's managing entity, an attributed provider
of one of its members, or the list's intended recipient (the Group's `intendedRecipientIdentifier`, an
NPI or TIN, equal to one of the identifiers of the fhirUser's own resource). Callers without a fhirUser
(the payer's own systems) see every Group.

The patients *attributed* to such a caller (``attributed_patients``) are the members of those Groups that are
in force today: the member entry not ``inactive``, its ``period`` (when given) covering today, and the Group
not ``active: false``; on a Group the caller sees only as one member's attributed provider, just those
members. The store gate confines an attribution-restricted caller's ``system/`` access to them
(docs/security.md, "ATR attribution lists (per Group)").

A member who opted out of Provider Access (CMS-0057-F; the rule is auth/opt_out.py) is attributed through a
Provider Access Group (one made by ``$provider-member-match``, code PdexMultiMemberMatchResultCS#match) no
longer: such a member stays attributed only when another visible Group (an ATR value-based-care list, to
which the Provider Access opt-out does not apply) lists them. The configured opt-out list
(``GATEWAY_PROVIDER_ACCESS_OPT_OUT``) is a required argument of every ``GatedStore``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..fhir.dates import DateParseError, parse_range
from .opt_out import OptOuts, is_provider_access_group

if TYPE_CHECKING:
    from ..store.base import ResourceStore

ATTRIBUTED_PROVIDER = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
INTENDED_RECIPIENT = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-intended-recipient-identifier-extension"
RESTRICTED_TYPES = ("Organization", "Practitioner", "PractitionerRole")
Identifiers = frozenset[tuple[str, str]]


def restricted(fhir_user: str | None) -> bool:
    return bool(fhir_user) and str(fhir_user).rsplit("/", 2)[-2] in RESTRICTED_TYPES


def caller_identifiers(grant: Any, store: ResourceStore) -> Identifiers:
    """(system, value) of every identifier of the grant's fhirUser resource, read once per grant (grants are
    cached with their token)."""
    if grant.identifiers is not None:
        return grant.identifiers
    ids: set[tuple[str, str]] = set()
    rtype, _, rid = "/".join(str(grant.fhir_user).split("/")[-2:]).partition("/")
    stored = store.read(rtype, rid) if rtype in RESTRICTED_TYPES and rid else None
    if stored is not None and stored.content is not None:
        for ident in orjson.loads(stored.content).get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
                ids.add((str(ident["system"]), str(ident["value"])))
    grant.identifiers = frozenset(ids)
    return grant.identifiers


def _same(reference: Any, fhir_user: str) -> bool:
    if not isinstance(reference, str):
        return False
    ref = reference.split("/_history/")[0]
    return ref == fhir_user or ref.endswith("/" + fhir_user)


def group_visible(group: dict[str, Any], fhir_user: str, identifiers: Identifiers = frozenset()) -> bool:
    me = "/".join(fhir_user.split("/")[-2:])
    if _same((group.get("managingEntity") or {}).get("reference"), me):
        return True
    if identifiers:
        for ext in group.get("extension") or []:
            ident = ext.get("valueIdentifier") if isinstance(ext, dict) and ext.get("url") == INTENDED_RECIPIENT else None
            if isinstance(ident, dict) and (ident.get("system"), ident.get("value")) in identifiers:
                return True
    for member in group.get("member") or []:
        for ext in member.get("extension") or []:
            if ext.get("url") == ATTRIBUTED_PROVIDER and _same((ext.get("valueReference") or {}).get("reference"), me):
                return True
    return False


# -- the patients attributed to a caller --------------------------------------------------------------------

# how long a computed attributed-patient set is used before the store's Group change stamp is read again: the
# bound on how late a Group change made by another process or instance (or ``fhir-gateway load``) is seen;
# a Group written through this process's gated store is seen by the next request (``groups_changed``)
ATTRIBUTION_RECHECK_SECONDS = 1.0
# the types whose writes can change who is attributed to a caller: the Groups, and the Consents that opt a
# member out of Provider Access (or revoke that); the opt-out Groups are Groups
ATTRIBUTION_TYPES = frozenset({"Group", "Consent"})
_generation = [0]  # bumped after every committed Group or Consent write through a gated store of this process
_generation_lock = threading.Lock()


def groups_changed() -> None:
    """A Group or Consent was written (and committed) through this process's gated store: every cached
    attributed-patient set is checked against the store's stamp at its next use."""
    with _generation_lock:
        _generation[0] += 1


def _now() -> str:
    """The current instant in the form ``parse_range`` gives bounds in (UTC, microseconds, no zone)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _period_covers(period: Any, now: str) -> bool:
    """True when a member's ``period`` (absent: always) covers the instant ``now``; a start or end that is
    not a FHIR date counts as not covering (fail closed)."""
    if not isinstance(period, dict):
        return period is None
    try:
        if period.get("start") and parse_range(str(period["start"]))[0] > now:
            return False
        if period.get("end") and parse_range(str(period["end"]))[1] < now:
            return False
    except DateParseError:
        return False
    return True


def member_in_force(member: Any, now: str) -> bool:
    """A Group member entry that attributes its patient at ``now`` (``_now()``'s form): not ``inactive`` and
    within its period (an end date counts to the end of that day)."""
    return isinstance(member, dict) and member.get("inactive") is not True and _period_covers(
        member.get("period"), now)


def _patient_id(member: dict[str, Any]) -> str | None:
    ref = str((member.get("entity") or {}).get("reference") or "").split("/_history/")[0]
    rtype, _, rid = "/".join(ref.split("/")[-2:]).partition("/")
    return rid if rtype == "Patient" and rid else None


def attributed_split(groups: Iterable[dict[str, Any]], fhir_user: str, identifiers: Identifiers = frozenset(),
                     now: str | None = None, periods: bool = True) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the patients ``groups`` attribute to ``fhir_user``, as (through Groups that are not Provider
    Access Groups, through Provider Access Groups): every member in force of a Group it manages or is the
    intended recipient of, and the members in force whose attributed provider it is on any other Group (a
    practitioner attributed to one member of a payer's list does not reach the list's other members). A Group
    marked ``active: false`` attributes nobody. ``periods=False`` is the older rule that
    ``Patient/$everything`` keeps for signed-in clinicians: members not ``inactive``, whatever their period,
    on any Group but one marked ``active: false``."""
    when = now or _now()
    plain: set[str] = set()
    access: set[str] = set()
    for group in groups:
        if not isinstance(group, dict) or (periods and group.get("active") is False):
            continue
        whole = group_visible({k: v for k, v in group.items() if k != "member"}, fhir_user, identifiers)
        out = access if is_provider_access_group(group) else plain
        for member in group.get("member") or []:
            if not isinstance(member, dict) or member.get("inactive") is True or (
                    periods and not member_in_force(member, when)):
                continue
            if not whole and not group_visible({"member": [member]}, fhir_user):
                continue
            pid = _patient_id(member)
            if pid:
                out.add(pid)
    return frozenset(plain), frozenset(access)


def attributed_in(groups: Iterable[dict[str, Any]], fhir_user: str, identifiers: Identifiers = frozenset(),
                  now: str | None = None, periods: bool = True) -> frozenset[str]:
    """Every patient ``groups`` attribute to ``fhir_user`` (``attributed_split``'s two sets together), before
    any Provider Access opt-out is taken away."""
    plain, access = attributed_split(groups, fhir_user, identifiers, now, periods)
    return plain | access


def without_opted_out(plain: frozenset[str], access: frozenset[str], opt_outs: OptOuts) -> frozenset[str]:
    """The attributed set of the store gate: the members of the caller's other Groups (ATR lists: the Provider
    Access opt-out does not apply to them), and the members of its Provider Access Groups who did not opt out
    of Provider Access. Only the members on Provider Access Groups alone are looked up."""
    only_access = access - plain
    return plain | (only_access - opt_outs.opted_out(only_access))


def _stamp(store: ResourceStore, opt_out: str) -> Any:
    """The value that changes when the attributed set of any caller may have: the store's Group and Consent
    change stamps (and Patient and Coverage ones when the configured opt-out list names member identifiers),
    today's date (Consent periods and member periods are in days) and the configured list itself; None when
    the store keeps no stamps (the set is then computed every time)."""
    stamper = getattr(store, "change_stamp", None)
    if stamper is None:
        return None
    types = ["Group", "Consent"]
    if any(not e.strip().startswith("Patient/") for e in opt_out.split(",") if e.strip()):
        types += ["Patient", "Coverage"]
    return (tuple(stamper(t) for t in types), _now()[:10], opt_out)


def attributed_patients(grant: Any, store: ResourceStore, identifiers: Identifiers,
                        opt_out: str) -> frozenset[str]:
    """The patients attributed to the grant's fhirUser, from every stored Group (read as stored, whoever may
    see them: the caller's own Groups are picked by ``attributed_split``), less the members of its Provider
    Access Groups who opted out of Provider Access (``without_opted_out``; ``opt_out`` is the configured list,
    ``GATEWAY_PROVIDER_ACCESS_OPT_OUT``). Cached with the grant (grants are cached with their token) together
    with the store's change stamp (``_stamp``); the stamp is read again after a Group or Consent write through
    this process's gated store, and otherwise at most every ``ATTRIBUTION_RECHECK_SECONDS``, and the set is
    computed again when the stamp changed."""
    cached = grant.attributed
    now = time.monotonic()
    generation = _generation[0]
    if cached is not None and cached[0] == generation and now - cached[1] < ATTRIBUTION_RECHECK_SECONDS:
        return frozenset(cached[3])
    stamp = _stamp(store, opt_out)
    if cached is not None and stamp is not None and cached[2] == stamp:
        grant.attributed = (generation, now, stamp, cached[3])
        return frozenset(cached[3])
    groups = (orjson.loads(s.content) for s in store.iter_current("Group") if s.content is not None)
    plain, access = attributed_split(groups, str(grant.fhir_user), identifiers)
    ids = without_opted_out(plain, access, OptOuts(store, opt_out))
    grant.attributed = (generation, now, stamp, ids)
    return ids

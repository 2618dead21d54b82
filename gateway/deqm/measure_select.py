"""Choosing measures and patients for the DEQM operations ($care-gaps, $collect-data): measures by id, url,
identifier, reference, inline resource, manifest Library or topic; patients by subject (Patient or Group),
inline Group, practitioner (Patient.generalPractitioner) or organization (Patient.managingOrganization)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..fhir.errors import BadRequest, NotFound
from ..search.cursor import PageCursor
from ..search.query import QueryParser

if TYPE_CHECKING:
    from ..store.base import ResourceStore

PAGE = 1000


@dataclass
class MeasureChoice:
    ids: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    inline: list[dict[str, Any]] = field(default_factory=list)
    manifest: str | None = None
    topics: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.ids or self.urls or self.identifiers or self.refs or self.inline or self.manifest
                    or self.topics)


def search_all(store: ResourceStore, base_url: str, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every current match of a search, page by page, each page starting right after the previous one's
    last row (keyset paging: resources deleted or created meanwhile shift nothing)."""
    out: list[dict[str, Any]] = []
    cursor: PageCursor | None = None
    while True:
        q = QueryParser(base_url, strict=True, max_count=PAGE).parse(rtype, params)
        q.count, q.total, q.cursor = PAGE, "none", cursor
        result = store.search(q)
        out.extend(orjson.loads(m.body) for m in result.matches)
        if not result.more_after or result.last_position is None:
            return out
        cursor = PageCursor(True, *result.last_position)


def select_measures(svc: Any, choice: MeasureChoice, measure_id: str | None = None) -> list[dict[str, Any]]:
    """The Measures named by ``choice`` (and the instance-level id), without duplicates, in request order. With
    nothing named, every active Measure in the store."""
    found: list[dict[str, Any]] = list(choice.inline)
    for mid in ([measure_id] if measure_id else []) + choice.ids:
        found.append(svc.find_measure(mid, None))
    for ref in choice.urls + choice.refs:
        found.append(svc.find_measure(None, ref))
    for ident in choice.identifiers:
        found.extend(svc.find_by_identifier(ident))
    if choice.manifest:
        found.extend(_manifest_measures(svc, choice.manifest))
    for topic in choice.topics:
        hits = search_all(svc.store, svc.base_url, "Measure", [("topic", topic)])
        if not hits:
            raise NotFound(f"No Measure with topic {topic}")
        found.extend(hits)
    if not found and measure_id is None and choice.empty():
        found = search_all(svc.store, svc.base_url, "Measure", [("status", "active")])
        if not found:
            raise NotFound("No active Measure in the server")
    out, seen = [], set()
    for m in found:
        key = m.get("id") or f"{m.get('url')}|{m.get('version')}"
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def _manifest_measures(svc: Any, manifest: str) -> list[dict[str, Any]]:
    url, _, version = manifest.partition("|")
    libs = search_all(svc.store, svc.base_url, "Library", [("url", url)] + ([("version", version)] if version else []))
    if not libs:
        raise NotFound(f"No manifest Library {manifest}")
    out = []
    for ra in libs[-1].get("relatedArtifact") or []:
        ref = ra.get("resource")
        if ra.get("type") not in ("composed-of", "depends-on") or not ref:
            continue
        murl, _, mver = ref.partition("|")
        hits = search_all(svc.store, svc.base_url, "Measure", [("url", murl)] + ([("version", mver)] if mver else []))
        out.extend(hits[-1:])
    if not out:
        raise NotFound(f"Manifest {manifest} names no Measure known to this server")
    return out


class ReporterMixin:
    """DEQM: an organization given with the request (by reference or inline) is the reports' reporter."""

    organization: str | None
    organization_resource: dict[str, Any] | None

    @property
    def reporter(self) -> str | None:
        if self.organization_resource is not None:
            return f"Organization/{self.organization_resource.get('id')}"
        return self.organization


def group_members(group: dict[str, Any]) -> list[str]:
    """The ids of a Group's Patient members that are not inactive (an attribution list's current members)."""
    out = []
    for m in group.get("member") or []:
        if m.get("inactive"):
            continue
        ref = (m.get("entity") or {}).get("reference", "")
        if ref.startswith("Patient/"):
            out.append(ref.split("/", 1)[1])
    return out


def select_patients(svc: Any, subject: str | None, subject_group: dict[str, Any] | None,
                    practitioner: str | None, organization: str | None) -> list[str]:
    """Patient ids for the request. ``subject`` wins; then an inline Group; then the patients of the
    practitioner (generalPractitioner; an organization given with it is the reporter only); then the
    organization's patients (managingOrganization)."""
    for ref, rtype in ((practitioner, "Practitioner"), (organization, "Organization")):
        if ref and not (ref.startswith(f"{rtype}/") or (rtype == "Practitioner" and ref.startswith("PractitionerRole/"))):
            raise BadRequest(f"{rtype.lower()} must be a reference {rtype}/[id], got {ref!r}")
    if subject:
        return svc.subjects(subject)
    if subject_group is not None:
        return group_members(subject_group)
    if practitioner:
        params = [("general-practitioner", practitioner)]
        return [p["id"] for p in search_all(svc.store, svc.base_url, "Patient", params)]
    if organization:
        return [p["id"] for p in search_all(svc.store, svc.base_url, "Patient", [("organization", organization)])]
    raise BadRequest("Give subject (Patient/[id] or Group/[id]), subjectGroup, practitioner or organization")

"""Terminology port of the engine: value-set membership.

``TerminologyService`` is what the interpreter asks (``InValueSet``, ``AnyInValueSet``, ``ExpandValueSet``).
``ValueSetIndex`` answers from ValueSet resources: stored expansions (``expansion.contains``, nested), and
otherwise the expansion the terminology kernel (``fhir/terminology.py``) computes from ``compose``: concept
lists, other value sets and filters over the code systems the index's ``resolver`` holds. Value sets are
kept as frozen sets of (system, code), so membership is one hash lookup. A value set whose compose needs a
code system that is not available (a filter over SNOMED CT, say) cannot be answered offline: it is
reported, never treated as empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..fhir.errors import FhirError
from ..fhir.terminology import Resolver
from ..fhir.terminology import expand as expand_compose
from .values import Code, Concept, CqlError


class UnknownValueSet(CqlError):
    def __init__(self, url: str, reason: str = "is not known to the terminology service") -> None:
        super().__init__(f"Value set {url} {reason}")
        self.url = url


class TerminologyService(Protocol):
    def codes(self, valueset_url: str) -> frozenset[tuple[str | None, str]]: ...
    def expand(self, valueset_url: str) -> list[Code]: ...
    def knows(self, valueset_url: str) -> bool: ...


def _strip_version(url: str) -> tuple[str, str | None]:
    base, _, version = url.partition("|")
    return base, version or None


@dataclass
class _Entry:
    codes: frozenset[tuple[str | None, str]]
    expansion: list[Code]
    version: str | None


@dataclass
class ValueSetIndex:
    """An in-memory TerminologyService built from ValueSet resources (dicts)."""

    _by_url: dict[str, dict[str | None, _Entry]] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)  # url -> why it cannot be answered
    # finds the CodeSystems and included ValueSets a compose needs; by default only the added value sets
    resolver: Resolver | None = None

    @classmethod
    def from_resources(cls, valuesets: Iterable[dict[str, Any]], resolver: Resolver | None = None
                       ) -> ValueSetIndex:
        idx = cls(resolver=resolver)
        for vs in valuesets:
            idx.add(vs)
        return idx

    def add(self, vs: dict[str, Any]) -> None:
        url = vs.get("url")
        if not url:
            return
        expansion: list[Code] = []
        if isinstance(vs.get("expansion"), dict):
            _walk_contains(vs["expansion"].get("contains") or [], expansion)
        elif isinstance(vs.get("compose"), dict):
            try:
                computed = expand_compose(vs, self.resolver or self._added).concepts
            except FhirError as exc:
                self.unusable[url] = f"has no expansion, and its compose cannot be computed: {exc}"
                return
            expansion = [Code(c.code, c.system, c.version, c.display) for c in computed if not c.abstract]
        else:
            self.unusable[url] = "has neither an expansion nor a compose"
            return
        entry = _Entry(frozenset((c.system, c.code) for c in expansion), expansion, vs.get("version"))
        self._by_url.setdefault(url, {})[vs.get("version")] = entry
        self.unusable.pop(url, None)

    def _added(self, rtype: str, url: str, version: str | None) -> dict[str, Any] | None:
        """The default resolver: value sets already added (as their expansion); no code systems."""
        if rtype != "ValueSet" or url not in self._by_url:
            return None
        try:
            entry = self._entry(f"{url}|{version}" if version else url)
        except UnknownValueSet:
            return None
        return {"resourceType": "ValueSet", "url": url, "version": entry.version, "expansion": {"contains": [
            {"system": c.system, "code": c.code, "display": c.display} for c in entry.expansion]}}

    def _entry(self, valueset_url: str) -> _Entry:
        base, version = _strip_version(valueset_url)
        versions = self._by_url.get(base)
        if not versions:
            if base in self.unusable:
                raise UnknownValueSet(base, self.unusable[base])
            raise UnknownValueSet(base)
        if version is not None:
            if version not in versions:
                raise UnknownValueSet(valueset_url, f"version {version} is not known")
            return versions[version]
        return next(reversed(versions.values()))  # the latest added

    def knows(self, valueset_url: str) -> bool:
        try:
            self._entry(valueset_url)
            return True
        except UnknownValueSet:
            return False

    def codes(self, valueset_url: str) -> frozenset[tuple[str | None, str]]:
        return self._entry(valueset_url).codes

    def expand(self, valueset_url: str) -> list[Code]:
        return list(self._entry(valueset_url).expansion)


def _walk_contains(contains: list[dict[str, Any]], out: list[Code]) -> None:
    for c in contains:
        if c.get("code") and not c.get("abstract", False):
            out.append(Code(c["code"], c.get("system"), c.get("version"), c.get("display")))
        if c.get("contains"):
            _walk_contains(c["contains"], out)


def in_valueset(value: Any, valueset_url: str, terminology: TerminologyService) -> bool | None:
    """CQL InValueSet for a Code, Concept or String code, and AnyInValueSet for a list of them.
    CQL defines membership of null as false, not null."""
    if value is None:
        return False
    members = terminology.codes(valueset_url)
    if isinstance(value, Code):
        return (value.system, value.code) in members
    if isinstance(value, Concept):
        return any((c.system, c.code) in members for c in value.codes)
    if isinstance(value, str):
        return any(code == value for _, code in members)
    if isinstance(value, list):
        return any(in_valueset(v, valueset_url, terminology) for v in value if v is not None)
    raise CqlError(f"InValueSet expects a Code, Concept or String, got {type(value).__name__}")

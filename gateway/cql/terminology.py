"""Terminology port of the engine: value-set membership.

``TerminologyService`` is what the interpreter asks (``InValueSet``, ``AnyInValueSet``, ``ExpandValueSet``).
``ValueSetIndex`` answers from ValueSet resources: stored expansions (``expansion.contains``, nested), and
``compose.include`` with explicitly listed concepts (``compose.exclude`` likewise). Value sets are kept as
frozen sets of (system, code), so membership is one hash lookup. A value set defined only by filters and
without an expansion cannot be answered offline: it is reported, never treated as empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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

    @classmethod
    def from_resources(cls, valuesets: Iterable[dict[str, Any]]) -> ValueSetIndex:
        idx = cls()
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
            compose = vs["compose"]
            excluded = {(c.system, c.code) for c in _explicit(compose.get("exclude") or [])}
            if any(inc.get("filter") or inc.get("valueSet") or not inc.get("concept")
                   for inc in compose.get("include") or []):
                self.unusable[url] = ("has no expansion, and its compose uses filters, other value sets or "
                                      "whole code systems, which need a terminology server")
                return
            expansion = [c for c in _explicit(compose.get("include") or []) if (c.system, c.code) not in excluded]
        else:
            self.unusable[url] = "has neither an expansion nor a compose"
            return
        entry = _Entry(frozenset((c.system, c.code) for c in expansion), expansion, vs.get("version"))
        self._by_url.setdefault(url, {})[vs.get("version")] = entry
        self.unusable.pop(url, None)

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


def _explicit(includes: list[dict[str, Any]]) -> list[Code]:
    out: list[Code] = []
    for inc in includes:
        for concept in inc.get("concept") or []:
            if concept.get("code"):
                out.append(Code(concept["code"], inc.get("system"), inc.get("version"), concept.get("display")))
    return out


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

"""The search parameter registry, built from the official R4 SearchParameter resources in profiles/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..fhir.resource_types import RESOURCE_TYPES, profiles_dir
from .fhirpath import Extractor, compile_for_type, roots_for_type

# parameters every resource type has, answered from the resource table itself
COMMON = {"_id", "_lastUpdated"}
# result parameters: they shape the result set rather than filter it
RESULT_PARAMS = {"_count", "_cursor", "_sort", "_summary", "_elements", "_include", "_revinclude", "_total", "_offset",
                 "_format", "_pretty", "_contained", "_containedType", "_since"}


@dataclass(frozen=True)
class Component:
    param: SearchParam
    extract: Extractor


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # number date string token reference composite quantity uri special
    resource_type: str
    expression: str
    url: str
    targets: tuple[str, ...] = ()
    description: str = ""
    extract: Extractor | None = field(default=None, compare=False, repr=False)
    components: tuple[Component, ...] = field(default=(), compare=False, repr=False)
    roots: frozenset[str] | None = field(default=None, compare=False, repr=False)  # top-level elements read


class Registry:
    """The search parameters of every resource type. A type's parameters are compiled on first use: every
    process (the server, the CLI, a pool worker) would otherwise compile all of them at start-up (about 0.2 s),
    though most use a few types."""

    def __init__(self, definitions: list[dict[str, Any]]) -> None:
        self.by_type: dict[str, dict[str, SearchParam]] = {}  # compiled so far
        self._defs: dict[str, list[dict[str, Any]]] = {t: [] for t in RESOURCE_TYPES}
        self._by_url = {d["url"]: d for d in definitions}
        self._indexed: dict[str, tuple[list[SearchParam], dict[str, list[SearchParam]]]] = {}
        for d in definitions:
            for base in d.get("base", []):
                types = RESOURCE_TYPES if base in ("Resource", "DomainResource") else [base]
                for rtype in types:
                    if rtype in self._defs:
                        self._defs[rtype].append(d)

    def _make(self, d: dict[str, Any], rtype: str, by_url: dict[str, Any]) -> SearchParam | None:
        expr = d.get("expression") or ""
        code = d["code"]
        if code in COMMON:
            return SearchParam(code, d["type"], rtype, expr, d["url"], description=d.get("description", ""))
        extract = compile_for_type(expr, rtype) if expr else None
        if extract is None and d["type"] != "special":
            return None
        comps: list[Component] = []
        if d["type"] == "composite":
            for c in d.get("component", []):
                cd = by_url.get(c["definition"])
                if cd is None:
                    return None
                sub = SearchParam(cd["code"], cd["type"], rtype, c["expression"], cd["url"])
                fn = compile_for_type(c["expression"], rtype)
                if fn is None:
                    return None
                comps.append(Component(sub, fn))
        return SearchParam(code, d["type"], rtype, expr, d["url"], tuple(d.get("target", [])),
                           d.get("description", ""), extract, tuple(comps), roots_for_type(expr, rtype))

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        """code -> parameter for ``resource_type`` (empty for a type R4 does not define); a later definition
        of the same code replaces an earlier one."""
        got = self.by_type.get(resource_type)
        if got is None:
            defs = self._defs.get(resource_type)
            if defs is None:  # not a resource type: nothing to compile, nothing kept
                return {}
            got = {}
            for d in defs:
                sp = self._make(d, resource_type, self._by_url)
                if sp is not None:
                    got[sp.code] = sp
            self.by_type[resource_type] = got
        return got

    def indexed_params(self, resource_type: str) -> tuple[list[SearchParam], dict[str, list[SearchParam]]]:
        """(parameters read whatever the resource holds, parameters keyed by the top-level element they read)"""
        cached = self._indexed.get(resource_type)
        if cached is None:
            always: list[SearchParam] = []
            by_root: dict[str, list[SearchParam]] = {}
            for sp in self.params_for(resource_type).values():
                if sp.extract is None or (sp.type == "composite" and len(sp.components) != 2):
                    continue
                if sp.roots is None:
                    always.append(sp)
                else:
                    for r in sp.roots:
                        by_root.setdefault(r, []).append(sp)
            cached = self._indexed[resource_type] = (always, by_root)
        return cached

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params_for(resource_type).get(code)

    def token_reading(self, resource_type: str, branches: set[str]) -> SearchParam | None:
        """The token parameter of ``resource_type`` (as ``params_for`` has it: the last definition of a code)
        whose expression has one of ``branches`` (``Observation.code``) as a whole ``|`` branch, compiled
        alone: a measure's read-ahead asks this for a few types, and compiling every parameter of a type
        costs a fresh process more than the answer saves."""
        latest: dict[str, dict[str, Any]] = {}
        for d in self._defs.get(resource_type, ()):
            latest[d["code"]] = d
        for code, d in latest.items():
            if d.get("type") != "token" or code in COMMON:
                continue
            if branches & {b.strip() for b in (d.get("expression") or "").split("|")}:
                compiled = self.by_type.get(resource_type, {}).get(code) or self._make(d, resource_type, self._by_url)
                if compiled is not None and compiled.extract is not None:
                    return compiled
        return None


@lru_cache(maxsize=1)
def registry() -> Registry:
    bundle = json.loads((profiles_dir() / "search-parameters.json").read_text())
    defs = [e["resource"] for e in bundle["entry"]]
    extra = profiles_dir() / "search-parameters-extra.json"
    if extra.exists():
        defs.extend(e["resource"] for e in json.loads(extra.read_text()).get("entry", []))
    return Registry(defs)


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """resource type -> the search parameters that place it in a Patient's compartment."""
    comp = json.loads((profiles_dir() / "compartment-patient.json").read_text())
    out: dict[str, tuple[str, ...]] = {}
    for r in comp.get("resource", []):
        if r.get("param"):
            out[r["code"]] = tuple(r["param"])
    return out

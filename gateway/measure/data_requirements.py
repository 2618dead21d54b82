"""$data-requirements from the ELM: starting at the measure's criteria (populations, stratifiers, supplemental
data), follow expression and function references across included libraries and collect every Retrieve —
data type, profile, code filter (value set or direct codes), date filter — plus the properties the measure
reads on each retrieved alias (mustSupport). The result is a module-definition Library."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..cql.library import ElmLibrary, LibraryManager, LibraryNotFound
from ..fhir.dates import now_instant
from .model import MeasureDef

LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"


@dataclass
class Requirement:
    type: str
    profile: str | None
    code_path: str | None = None
    valueset: str | None = None
    codes: tuple[tuple[str | None, str, str | None], ...] = ()  # (system, code, display)
    date_path: str | None = None
    must_support: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.type, self.profile, self.code_path, self.valueset, self.codes, self.date_path)

    def to_json(self, period: tuple[str, str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.profile:
            out["profile"] = [self.profile]
        if self.must_support:
            out["mustSupport"] = sorted(self.must_support)
        if self.code_path and (self.valueset or self.codes):
            cf: dict[str, Any] = {"path": self.code_path}
            if self.valueset:
                cf["valueSet"] = self.valueset
            if self.codes:
                cf["code"] = [{k: v for k, v in (("system", s), ("code", c), ("display", d)) if v}
                              for s, c, d in self.codes]
            out["codeFilter"] = [cf]
        if self.date_path:
            df: dict[str, Any] = {"path": self.date_path}
            if period:
                df["valuePeriod"] = {"start": period[0], "end": period[1]}
            out["dateFilter"] = [df]
        return out


class _Walker:
    def __init__(self, manager: LibraryManager) -> None:
        self.manager = manager
        self.seen: set[tuple[str, str]] = set()
        self.found: dict[tuple[Any, ...], Requirement] = {}
        self.libraries: dict[str, ElmLibrary] = {}
        self.valuesets: set[str] = set()

    def definition(self, lib: ElmLibrary, name: str) -> None:
        if (lib.key, name) in self.seen:
            return
        self.seen.add((lib.key, name))
        self.libraries[lib.key] = lib
        d = lib.defs.get(name)
        if d is not None:
            self.walk(lib, d.get("expression"), {})
        for f in lib.functions.get(name, []):
            self.walk(lib, f.get("expression"), {})

    def _lib(self, lib: ElmLibrary, alias: str | None) -> ElmLibrary | None:
        if not alias:
            return lib
        try:
            return self.manager.included(lib, alias)
        except LibraryNotFound:
            return None

    def walk(self, lib: ElmLibrary, node: Any, aliases: dict[str, Requirement]) -> None:
        if isinstance(node, list):
            for n in node:
                self.walk(lib, n, aliases)
            return
        if not isinstance(node, dict):
            return
        t = node.get("type")
        if t in ("ExpressionRef", "FunctionRef"):
            target = self._lib(lib, node.get("libraryName"))
            if target is not None:
                self.definition(target, node["name"])
        elif t == "Retrieve":
            self.retrieve(lib, node)
            return
        elif t == "Query":
            scoped = dict(aliases)
            for src in node.get("source") or []:
                expr = src.get("expression") or {}
                if expr.get("type") == "Retrieve":
                    scoped[src["alias"]] = self.retrieve(lib, expr)
                else:
                    self.walk(lib, expr, aliases)
            for key, value in node.items():
                if key != "source":
                    self.walk(lib, value, scoped)
            return
        elif t == "Property" and node.get("scope") in aliases:
            aliases[node["scope"]].must_support.add(node["path"])
        elif t == "Property" and isinstance(node.get("source"), dict) and node["source"].get("type") == "AliasRef" \
                and node["source"].get("name") in aliases:
            aliases[node["source"]["name"]].must_support.add(node["path"])
        for value in node.values():
            if isinstance(value, dict | list):
                self.walk(lib, value, aliases)

    def retrieve(self, lib: ElmLibrary, node: dict[str, Any]) -> Requirement:
        data_type = node["dataType"].rsplit("}", 1)[-1]
        req = Requirement(data_type, node.get("templateId"))
        codes = node.get("codes")
        if codes is not None:
            req.code_path = node.get("codeProperty") or "code"
            req.valueset, req.codes = self._codes(lib, codes)
            if req.valueset:
                self.valuesets.add(req.valueset)
        if node.get("dateProperty"):
            req.date_path = node["dateProperty"]
        if node.get("dateRange") is not None:
            self.walk(lib, node["dateRange"], {})
        existing = self.found.get(req.key)
        if existing is None:
            self.found[req.key] = req
            existing = req
        if req.code_path:
            existing.must_support.add(req.code_path.split(".")[0])
        if req.date_path:
            existing.must_support.add(req.date_path.split(".")[0])
        return existing

    def _codes(self, lib: ElmLibrary, node: dict[str, Any]) -> tuple[str | None, tuple[Any, ...]]:
        t = node.get("type")
        if t == "ValueSetRef":
            target = self._lib(lib, node.get("libraryName"))
            vs = target.valuesets.get(node["name"]) if target else None
            return (vs.get("id") if vs else None), ()
        if t == "ToList":
            return self._codes(lib, node.get("operand") or {})
        if t == "List":
            out: list[Any] = []
            for el in node.get("element") or []:
                out.extend(self._codes(lib, el)[1])
            return None, tuple(out)
        if t == "CodeRef":
            target = self._lib(lib, node.get("libraryName"))
            code = target.codes.get(node["name"]) if target else None
            if code is None:
                return None, ()
            cs_name = (code.get("codeSystem") or {}).get("name")
            cs = target.codesystems.get(cs_name) if target and cs_name else None
            return None, ((cs.get("id") if cs else None, code.get("id"), code.get("display")),)
        if t == "Code":
            cs = (node.get("system") or {}).get("name")
            target = lib.codesystems.get(cs) if cs else None
            return None, (((target or {}).get("id"), node.get("code"), node.get("display")),)
        return None, ()


def _walk(manager: LibraryManager, main: ElmLibrary, names: list[str]) -> tuple[_Walker, list[Requirement]]:
    walker = _Walker(manager)
    for name in names:
        walker.definition(main, name)
    reqs = sorted(walker.found.values(), key=lambda r: (r.type, r.profile or "", r.valueset or "",
                                                         str(r.codes), r.date_path or ""))
    return walker, reqs


def requirements_of(manager: LibraryManager, main: ElmLibrary, expressions: list[str],
                    period: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """DataRequirements of some definitions only (e.g. a numerator: the data that would satisfy it)."""
    return [r.to_json(period) for r in _walk(manager, main, expressions)[1]]


def data_requirements(measure: MeasureDef, manager: LibraryManager, main: ElmLibrary | None,
                      period: tuple[str, str] | None = None) -> dict[str, Any]:
    """The module-definition Library for ``measure`` (``main`` is its primary ELM library)."""
    names = [p.expression for g in measure.groups for p in g.populations if p.expression]
    names += [s.expression for g in measure.groups for s in g.stratifiers if s.expression]
    names += [c for g in measure.groups for s in g.stratifiers for _, c in s.components if c]
    names += [expr for _, expr in measure.supplemental]
    walker, reqs = _walk(manager, main, names) if main is not None else (_Walker(manager), [])
    related = [{"type": "depends-on", "resource": _canonical(lib)} for lib in walker.libraries.values()]
    related += [{"type": "depends-on", "resource": vs} for vs in sorted(walker.valuesets)]
    res = measure.resource
    out: dict[str, Any] = {
        "resourceType": "Library",
        "id": str(uuid.uuid4()),
        "status": "active",
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "module-definition"}]},
        "date": now_instant(),
        "name": f"EffectiveDataRequirements{res.get('name') or ''}"[:255],
        "title": f"Data requirements of {res.get('title') or res.get('name') or res.get('url') or res.get('id')}",
        "relatedArtifact": related,
        "parameter": [{"name": "Measurement Period", "use": "in", "min": 0, "max": "1", "type": "Period"}],
        "dataRequirement": [r.to_json(period) for r in reqs],
    }
    return out


def _canonical(lib: ElmLibrary) -> str:
    base = lib.url or f"Library/{lib.name}"
    return f"{base}|{lib.version}" if lib.version else base

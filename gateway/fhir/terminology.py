"""The terminology kernel: value set expansion, code lookup and subsumption over CodeSystem and ValueSet
resources (plain dicts), with no store and no HTTP.

``expand`` computes a ValueSet's content from ``compose`` (include/exclude by concept list, by other value
sets, by the filters ``is-a``, ``descendent-of``, ``is-not-a``, ``=``, ``in``, ``regex`` and ``exists`` over
a CodeSystem's hierarchy and properties), or takes the stored ``expansion`` when the value set has no
compose. Everything the expansion needs is found through a ``Resolver`` (canonical URL and optional version
→ resource), so the same code serves the ``$expand`` operation (reading through the gated store) and the CQL
engine (reading the measure's value sets). An include that needs content the resolver does not have — a
filter or a whole-system include over a code system that is not stored, such as SNOMED CT or LOINC — is an
``Unprocessable`` error naming the system, never an empty or partial result. An include that lists its
concepts works without the code system.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, NotFound, Unprocessable

# (resource type "ValueSet" or "CodeSystem", canonical url, version or None) -> the resource or None
Resolver = Callable[[str, str, str | None], dict[str, Any] | None]

MAX_DEPTH = 16  # value sets including value sets: deeper than this is refused (and cycles are caught)
MAX_EXPANSION = 100_000  # concepts in one expansion


def split_canonical(url: str) -> tuple[str, str | None]:
    """A canonical ``url|version`` as (url, version or None)."""
    base, _, version = url.partition("|")
    return base, version or None


@dataclass(frozen=True)
class Concept:
    """One member of an expansion."""
    system: str | None
    code: str
    display: str | None = None
    version: str | None = None
    inactive: bool = False
    abstract: bool = False

    def contains(self) -> dict[str, Any]:
        """The ``ValueSet.expansion.contains`` entry for this concept."""
        out: dict[str, Any] = {}
        if self.system:
            out["system"] = self.system
        if self.version:
            out["version"] = self.version
        out["code"] = self.code
        if self.display:
            out["display"] = self.display
        if self.inactive:
            out["inactive"] = True
        if self.abstract:
            out["abstract"] = True
        return out


def _prop_value(p: dict[str, Any]) -> str | None:
    for k, v in p.items():
        if k.startswith("value"):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, dict):
                return v.get("code")
            return str(v)
    return None


@dataclass
class CodeSystemView:
    """A stored CodeSystem indexed for lookups: its concepts by code, parents and children (from nested
    ``concept`` and the ``parent``/``child`` properties) and property values."""
    resource: dict[str, Any]
    concepts: dict[str, dict[str, Any]] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cs: dict[str, Any]) -> CodeSystemView:
        """Index ``cs``; a CodeSystem whose concepts repeat a code is refused (it cannot answer lookups)."""
        view = cls(cs)
        if cs.get("resourceType") != "CodeSystem":
            raise BadRequest("Expected a CodeSystem resource")

        def walk(items: list[dict[str, Any]], parent: str | None) -> None:
            for c in items:
                code = c.get("code")
                if not isinstance(code, str) or not code:
                    continue
                if code in view.concepts:
                    raise Unprocessable(f"CodeSystem {cs.get('url')} defines code {code!r} twice")
                view.concepts[code] = c
                view.order.append(code)
                if parent is not None:
                    view._link(parent, code)
                walk(c.get("concept") or [], code)

        walk(cs.get("concept") or [], None)
        for code, c in view.concepts.items():
            for p in c.get("property") or []:
                val = _prop_value(p)
                if val is None:
                    continue
                if p.get("code") == "parent":
                    view._link(val, code)
                elif p.get("code") == "child":
                    view._link(code, val)
        return view

    def _link(self, parent: str, child: str) -> None:
        self.parents.setdefault(child, set()).add(parent)
        self.children.setdefault(parent, set()).add(child)

    @property
    def url(self) -> str | None:
        return self.resource.get("url")

    @property
    def version(self) -> str | None:
        return self.resource.get("version")

    def descendants(self, code: str) -> set[str]:
        """Every code below ``code`` in the hierarchy (not ``code`` itself)."""
        out: set[str] = set()
        stack = list(self.children.get(code, ()))
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.children.get(c, ()))
        return out

    def properties(self, code: str) -> list[tuple[str, str]]:
        """(property code, value as text) pairs of a concept."""
        out = []
        for p in self.concepts[code].get("property") or []:
            val = _prop_value(p)
            if p.get("code") and val is not None:
                out.append((p["code"], val))
        return out

    def inactive(self, code: str) -> bool:
        """True when the concept is marked inactive, retired or deprecated by its properties."""
        for name, val in self.properties(code):
            if name == "inactive" and val == "true":
                return True
            if name == "status" and val in ("retired", "inactive", "deprecated"):
                return True
        return False

    def abstract(self, code: str) -> bool:
        """True when the concept is marked not selectable."""
        return any(n in ("notSelectable", "abstract") and v == "true" for n, v in self.properties(code))

    def concept(self, code: str) -> Concept:
        """The expansion member for ``code`` (which must be defined)."""
        c = self.concepts[code]
        return Concept(self.url, code, c.get("display"), self.version, self.inactive(code), self.abstract(code))

    def filter(self, f: dict[str, Any]) -> set[str]:
        """The codes a ``compose.include.filter`` selects."""
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not prop or not op or value is None:
            raise BadRequest(f"A filter on {self.url} needs property, op and value")
        if prop == "concept" or prop == "code":
            if op == "is-a":
                return (self.descendants(value) | {value}) if value in self.concepts else set()
            if op == "descendent-of":
                return self.descendants(value) if value in self.concepts else set()
            if op == "is-not-a":
                return set(self.concepts) - self.descendants(value) - {value}
            if op == "=":
                return {value} if value in self.concepts else set()
            if op == "in":
                return {v.strip() for v in value.split(",")} & set(self.concepts)
            if op == "regex":
                rx = _regex(value)
                return {c for c in self.concepts if rx.fullmatch(c)}
            raise BadRequest(f"Filter operator {op!r} on property {prop!r} is not supported")
        if op == "=":
            return {c for c in self.concepts if (prop, value) in self.properties(c)}
        if op == "in":
            wanted = {v.strip() for v in value.split(",")}
            return {c for c in self.concepts if any(n == prop and v in wanted for n, v in self.properties(c))}
        if op == "exists":
            want = value == "true"
            return {c for c in self.concepts if any(n == prop for n, _ in self.properties(c)) == want}
        if op == "regex":
            rx = _regex(value)
            return {c for c in self.concepts if any(n == prop and rx.fullmatch(v) for n, v in self.properties(c))}
        raise BadRequest(f"Filter operator {op!r} on property {prop!r} is not supported")

    def subsumes(self, a: str, b: str) -> str:
        """The R4 ``$subsumes`` outcome of codeA against codeB."""
        for code in (a, b):
            if code not in self.concepts:
                raise NotFound(f"Code {code!r} is not defined in CodeSystem {self.url}")
        if a == b:
            return "equivalent"
        if b in self.descendants(a):
            return "subsumes"
        if a in self.descendants(b):
            return "subsumed-by"
        return "not-subsumed"


def _regex(value: str) -> re.Pattern[str]:
    if len(value) > 200:
        raise BadRequest("A regex filter value may be at most 200 characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise BadRequest(f"Filter regex {value!r} is not valid: {exc}") from None


def code_system(resolve: Resolver, url: str, version: str | None) -> CodeSystemView | None:
    """The stored CodeSystem ``url`` (at ``version``) as a view, or None when it is not available."""
    cs = resolve("CodeSystem", url, version)
    if cs is None or cs.get("content") in ("not-present",):
        return None
    return CodeSystemView.of(cs)


@dataclass
class Expansion:
    """The result of expanding a value set: its members in order, and the canonicals it used."""
    concepts: list[Concept]
    used: list[str] = field(default_factory=list)


def expand(vs: dict[str, Any], resolve: Resolver, active_only: bool = False) -> Expansion:
    """The members of ValueSet ``vs``: computed from its compose when it has one, else its stored
    expansion; ``Unprocessable`` when a part needs a code system or value set the resolver does not hold."""
    used: list[str] = []
    concepts = _expand(vs, resolve, (), used)
    if active_only:
        concepts = [c for c in concepts if not c.inactive]
    return Expansion(concepts, used)


def _expand(vs: dict[str, Any], resolve: Resolver, stack: tuple[str, ...], used: list[str]) -> list[Concept]:
    url = vs.get("url") or "(inline ValueSet)"
    if url in stack:
        raise Unprocessable(f"ValueSet {url} includes itself (through {' → '.join(stack)})")
    if len(stack) >= MAX_DEPTH:
        raise Unprocessable(f"ValueSet {url}: value sets nest deeper than {MAX_DEPTH}")
    stack = (*stack, url)
    compose = vs.get("compose")
    if not isinstance(compose, dict):
        exp = vs.get("expansion")
        if isinstance(exp, dict):
            return list(_walk_contains(exp.get("contains") or []))
        raise Unprocessable(f"ValueSet {url} has neither a compose nor an expansion")
    out: dict[tuple[str | None, str], Concept] = {}
    for inc in compose.get("include") or []:
        for c in _include(inc, resolve, stack, used, url):
            out.setdefault((c.system, c.code), c)
            if len(out) > MAX_EXPANSION:
                raise Unprocessable(f"ValueSet {url} expands to more than {MAX_EXPANSION} concepts")
    for exc in compose.get("exclude") or []:
        for c in _include(exc, resolve, stack, used, url):
            out.pop((c.system, c.code), None)
    if compose.get("inactive") is False:
        return [c for c in out.values() if not c.inactive]
    return list(out.values())


def _walk_contains(contains: list[dict[str, Any]]) -> Iterator[Concept]:
    for c in contains:
        if c.get("code"):
            yield Concept(c.get("system"), c["code"], c.get("display"), c.get("version"),
                          bool(c.get("inactive")), bool(c.get("abstract")))
        yield from _walk_contains(c.get("contains") or [])


def _include(inc: dict[str, Any], resolve: Resolver, stack: tuple[str, ...], used: list[str],
             owner: str) -> list[Concept]:
    system, version = inc.get("system"), inc.get("version")
    parts: list[list[Concept]] = []
    for ref in inc.get("valueSet") or []:
        base, ver = split_canonical(ref)
        other = resolve("ValueSet", base, ver)
        if other is None:
            raise Unprocessable(f"ValueSet {owner} includes value set {ref}, which is not available")
        used.append(f"{base}|{other.get('version') or ''}")
        parts.append(_expand(other, resolve, stack, used))
    if system:
        view = code_system(resolve, system, version)
        if view is not None:
            used.append(f"{system}|{view.version or ''}")
        if inc.get("concept"):
            listed = []
            for c in inc["concept"]:
                code = c.get("code")
                if not code:
                    continue
                if view is not None and code in view.concepts:
                    base_c = view.concept(code)
                    listed.append(Concept(system, code, c.get("display") or base_c.display, version or view.version,
                                          base_c.inactive, base_c.abstract))
                elif view is not None and view.resource.get("content") == "complete":
                    raise Unprocessable(f"ValueSet {owner} lists code {code!r}, which CodeSystem {system} does "
                                        "not define")
                else:  # an extensional list over a code system we do not hold: taken as listed
                    listed.append(Concept(system, code, c.get("display"), version))
            parts.append(listed)
        else:
            if view is None:
                what = "filters over" if inc.get("filter") else "all of"
                raise Unprocessable(f"ValueSet {owner} includes {what} code system {system}"
                                    f"{'|' + version if version else ''}, which is not stored on this server")
            codes: set[str] | None = None
            for f in inc.get("filter") or []:
                sel = view.filter(f)
                codes = sel if codes is None else codes & sel
            chosen = view.order if codes is None else [c for c in view.order if c in codes]
            parts.append([view.concept(c) for c in chosen])
    elif not inc.get("valueSet"):
        raise BadRequest(f"ValueSet {owner}: a compose include names neither a system nor a value set")
    if not parts:
        return []
    result = parts[0]
    for other_part in parts[1:]:
        keys = {(c.system, c.code) for c in other_part}
        result = [c for c in result if (c.system, c.code) in keys]
    return result


def lookup(view: CodeSystemView, code: str, wanted: list[str]) -> dict[str, Any]:
    """The R4 ``$lookup`` output Parameters for ``code`` in the code system (``wanted``: the property codes
    asked for; all when empty)."""
    if code not in view.concepts:
        raise NotFound(f"Code {code!r} is not defined in CodeSystem {view.url}")
    c = view.concepts[code]
    params: list[dict[str, Any]] = [{"name": "name", "valueString": view.resource.get("name") or view.url or ""}]
    if view.version:
        params.append({"name": "version", "valueString": view.version})
    if c.get("display"):
        params.append({"name": "display", "valueString": c["display"]})
    for d in c.get("designation") or []:
        part: list[dict[str, Any]] = []
        if d.get("language"):
            part.append({"name": "language", "valueCode": d["language"]})
        if d.get("use"):
            part.append({"name": "use", "valueCoding": d["use"]})
        part.append({"name": "value", "valueString": d.get("value", "")})
        params.append({"name": "designation", "part": part})
    props = [(n, v) for n, v in view.properties(code)]
    props += [("parent", p) for p in sorted(view.parents.get(code, ())) if ("parent", p) not in props]
    props += [("child", p) for p in sorted(view.children.get(code, ())) if ("child", p) not in props]
    props.append(("inactive", "true" if view.inactive(code) else "false"))
    for name, val in props:
        if wanted and name not in wanted:
            continue
        value: dict[str, Any] = {"name": "value", "valueString": val}
        if name in ("parent", "child", "status"):
            value = {"name": "value", "valueCode": val}
        elif val in ("true", "false"):
            value = {"name": "value", "valueBoolean": val == "true"}
        params.append({"name": "property", "part": [{"name": "code", "valueCode": name}, value]})
    return {"resourceType": "Parameters", "parameter": params}

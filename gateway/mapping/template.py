"""Resource templates from mapping files, evaluated against one source record (pure: no I/O, no store).

A template is JSON-shaped data (dicts, lists, scalars) whose strings may refer to source fields:

- ``"=FIELD"`` or ``"=FIELD | filter | filter:arg"``: the field's typed value (number, date text, ...) after the
  filters; an empty field yields nothing and the element is left out.
- ``"Patient/{FIELD}"``, ``"{A}-{B|filter}"``: text with fields interpolated; if any of them is empty the whole
  string is left out.
- ``{"$each": SOURCE, "as": NAME, "template": ...}`` inside a list: one item per value of SOURCE, which is a child
  record set (``lines``) or a list of field names (``[DX1, DX2, DX3]``, empty ones skipped); ``$n`` is the item's
  1-based position.
- ``{"$if": "FIELD", ...}``: the dict is kept only when FIELD is not empty (``"!FIELD"``: only when it is empty).

Dicts and lists that end up empty are dropped, so optional source fields need no special casing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .quality import Finding

INTERP = re.compile(r"\{([^{}]+)\}")
ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")


class MappingError(Exception):
    """A record that cannot be mapped; ``field`` names the source field when one is to blame."""

    def __init__(self, reason: str, field: str | None = None, value: str | None = None,
                 rule: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.value = value  # the offending value, for the data-quality report
        self.rule = rule  # the data-quality rule broken (gateway.mapping.quality names it when None)


@dataclass
class Scope:
    """The fields visible to a template: the record's own, its children, then its parent's."""

    fields: Mapping[str, Any]
    children: Mapping[str, list[Scope]] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    parent: Scope | None = None

    def lookup(self, name: str) -> Any:
        s: Scope | None = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            if name in s.fields:
                return s.fields[name]
            if name in s.children:
                return s.children[name]
            s = s.parent
        raise MappingError(f"the mapping refers to unknown field '{name}'", name)

    def child(self, fields: Mapping[str, Any], **vars: Any) -> Scope:
        return Scope(fields, {}, dict(vars), self)


_EMPTIABLE = (str, list, dict)
_MISSING = object()


def _empty(v: Any) -> bool:
    return v is None or (v.__class__ in _EMPTIABLE and not v)


class Filters:
    """The named value filters a mapping file may use; lookups and crosswalks come from the mapping file."""

    def __init__(self, lookups: Mapping[str, Mapping[str, Any]], crosswalks: Mapping[str, Mapping[str, str]],
                 strict: bool = False):
        self.lookups = lookups
        self.strict = strict  # a code that fails its format check rejects the record instead of a warning
        self.crosswalks = crosswalks
        self._classified: dict[tuple[str | None, str], Any] = {}
        # data-quality findings of the record being rendered (the engine takes them and says where)
        self.warnings: list[Finding] = []
        self.fns: dict[str, Callable[[Any, str | None, str], Any]] = {
            "lookup": self._lookup, "lookup?": self._lookup_opt, "crosswalk": self._crosswalk,
            "int": lambda v, a, f: int(str(v).strip()), "decimal": self._decimal, "str": lambda v, a, f: str(v),
            "upper": lambda v, a, f: str(v).upper(), "lower": lambda v, a, f: str(v).lower(),
            "strip0": lambda v, a, f: str(v).lstrip("0") or "0", "id": lambda v, a, f: ID_UNSAFE.sub("-", str(v)),
            "hash": lambda v, a, f: hashlib.sha1(str(v).encode()).hexdigest()[:int(a or 16)],
            "classify": self._classify, "icd": self._icd, "date": self._date, "first": lambda v, a, f: str(v)[:int(a or 1)],
            "then": lambda v, a, f: a, "bool": lambda v, a, f: str(v).lower() in ("1", "y", "true", "yes"),
        }

    def apply(self, name: str, arg: str | None, value: Any, field_name: str) -> Any:
        fn = self.fns.get(name)
        if fn is None:
            raise MappingError(f"unknown filter '{name}' in the mapping", field_name)
        try:
            return fn(value, arg, field_name)
        except MappingError:
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise MappingError(f"field {field_name}: cannot apply '{name}' to {value!r} ({exc})", field_name,
                               str(value)) from None

    def _lookup(self, v: Any, table: str | None, fname: str) -> Any:
        t = self._table(table)
        key = str(v)
        if key not in t:
            raise MappingError(f"field {fname}: unknown code {key!r} (not in lookup table '{table}')", fname, key,
                               "unknown-code")
        return t[key]

    def _lookup_opt(self, v: Any, table: str | None, fname: str) -> Any:
        return self._table(table).get(str(v))

    def _table(self, name: str | None) -> Mapping[str, Any]:
        if name not in self.lookups:
            raise MappingError(f"the mapping uses lookup table '{name}', which it does not define")
        return self.lookups[name]

    def _classify(self, v: Any, arg: str | None, fname: str) -> Any:
        """A lookup table whose keys are regular expressions: the first that matches the whole value wins.
        Answers are remembered per (table, value): codes repeat across records.

        ``classify:TABLE@QUALIFIER`` (the qualifier usually interpolated from the record, ``@{PROC_QUAL}``): the
        qualifier decides the code system, from lookup ``TABLE_by_qualifier``. An entry that is a URL is the
        system when none of TABLE's patterns matches (a qualifier covering several systems, as X12 ``HC`` covers
        CPT and HCPCS); an entry ``{system: URL, format: REGEX}`` is the system, and the code is checked against
        the format. A code that fails its format check is kept as sent with a ``code-format`` warning (a
        rejection under a strict mapping): the sender said which system the code is from, so a malformed code is
        something to report, not a reason to drop the record."""
        table, _, qualifier = (arg or "").partition("@")
        code = str(v)
        named = (self.lookups.get(f"{table}_by_qualifier") or {}).get(qualifier) if qualifier else None
        if isinstance(named, Mapping):
            system = str(named["system"])
            fmt = named.get("format")
            if fmt is None or re.fullmatch(str(fmt), code):
                return system
            return self._off_format(code, system, qualifier, f"fails the format {fmt} of qualifier {qualifier!r}",
                                    fname)
        key = (table, code)
        hit = self._classified.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        for pattern, out in self._table(table).items():
            if re.fullmatch(pattern, code):
                if len(self._classified) < 100_000:
                    self._classified[key] = out
                return out
        if named:
            return self._off_format(code, str(named), qualifier, f"matches no pattern of '{table}'", fname)
        why = f"; qualifier {qualifier!r} names no code system of '{table}_by_qualifier'" if qualifier else ""
        raise MappingError(f"field {fname}: unknown code {v!r} (matches no pattern of '{table}'{why})", fname, code,
                           "unknown-code")

    def _off_format(self, code: str, system: str, qualifier: str, formats: str, fname: str) -> str:
        """A code that fails its format check although its qualifier names the system: kept with a warning, or
        rejected under a strict mapping."""
        if self.strict:
            raise MappingError(f"field {fname}: code {code!r} {formats} (strict mapping: not loaded)", fname, code,
                               "code-format")
        self.warnings.append(Finding("", "code-format", f"code {code!r} {formats}; kept as sent under "
                                     f"{system}, the system its qualifier {qualifier!r} names", fname, code))
        return system

    def _crosswalk(self, v: Any, name: str | None, fname: str) -> Any:
        xw = self.crosswalks.get(name or "")
        if xw is None:
            raise MappingError(f"the mapping uses crosswalk '{name}', which it does not define")
        seen = {v}
        while v in xw and xw[v] not in seen:  # follow chains of replaced identifiers to the current one
            v = xw[v]
            seen.add(v)
        return v

    @staticmethod
    def _decimal(v: Any, arg: str | None, fname: str) -> float | int:
        from decimal import Decimal, InvalidOperation

        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            raise MappingError(f"field {fname}: {v!r} is not a number", fname, str(v)) from None
        return int(d) if d == d.to_integral_value() and arg == "int" else float(d)

    @staticmethod
    def _icd(v: Any, arg: str | None, fname: str) -> str:
        """ICD-10 codes arrive without the dot; FHIR's ICD-10-CM system writes them with it (after 3 chars)."""
        s = str(v).strip().upper()
        return s if len(s) <= 3 or "." in s or arg == "pcs" else f"{s[:3]}.{s[3:]}"

    @staticmethod
    def _date(v: Any, arg: str | None, fname: str) -> str:
        s = str(v).strip()
        if arg == "hl7":  # HL7 v2 TS: YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ]
            m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})(\d{2})?(?:\.\d+)?)?([+-]\d{4})?", s)
            if not m:
                raise MappingError(f"field {fname}: {s!r} is not an HL7 date/time", fname, s)
            y, mo, d, hh, mi, ss, tz = m.groups()
            out = "-".join(p for p in (y, mo, d) if p)
            if hh and tz and d:  # FHIR needs a time zone with a time; without one, keep the date
                out += f"T{hh}:{mi}:{ss or '00'}{tz[:3]}:{tz[3:]}"
            return out
        if arg == "yyyymmdd":
            if not re.fullmatch(r"\d{8}(\d{4,6})?", s):
                raise MappingError(f"field {fname}: {s!r} is not a date (CCYYMMDD)", fname, s)
            return f"{s[:4]}-{s[4:6]}-{s[6:8]}"
        return s[:10]


Compiled = Callable[[Scope], Any]


def _where(scope: Scope) -> str:
    """The ``file:line`` of the nearest record in scope that knows it (``$where``), else empty."""
    s: Scope | None = scope
    while s is not None:
        if "$where" in s.vars:
            return str(s.vars["$where"])
        s = s.parent
    return ""


def _constant(node: Any) -> bool:
    """A template scalar that renders as itself and is not empty."""
    if isinstance(node, str):
        return bool(node) and not node.startswith("=") and "{" not in node
    return node is not None and isinstance(node, (int, float, bool))


class Template:
    """Evaluates template data against a Scope. Each template node is compiled once into a closure (its field
    names, filters and interpolations parsed up front); rendering a record then only runs closures."""

    def __init__(self, filters: Filters, open_fields: str | None = None) -> None:
        self.filters = filters
        # field names that may be absent from a record and then count as empty (HL7 v2: trailing fields are cut)
        self.open_fields = re.compile(open_fields) if open_fields else None
        self._compiled: dict[Any, tuple[Any, Compiled]] = {}  # str by value, dict/list by id (node kept alive)

    def _lookup(self, scope: Scope, name: str) -> Any:
        try:
            return scope.lookup(name)
        except MappingError:
            if self.open_fields is not None and self.open_fields.fullmatch(name):
                return None
            raise

    def expr(self, text: str, scope: Scope) -> Any:
        return self._expr(text)(scope)

    def render(self, node: Any, scope: Scope) -> Any:
        return self.compile(node)(scope)

    def compile(self, node: Any) -> Compiled:
        key = node if isinstance(node, str) else id(node)
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compiled[key] = (node, self._compile(node))
        return hit[1]

    def _expr(self, text: str) -> Compiled:
        key = ("=", text)
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compiled[key] = (text, self._compile_expr(text))
        return hit[1]

    def _compile_expr(self, text: str) -> Compiled:
        parts = [p.strip() for p in text.split("|")]
        whole = parts[0]
        alts: list[tuple[str, bool, str]] = []
        for alt in whole.split("??"):  # "A ?? B": the first of the fields that is not empty
            alt = alt.strip()
            quoted = alt.startswith("'") and alt.endswith("'")
            alts.append((alt, quoted, alt[1:-1] if quoted else ""))
        steps = [(f.partition(":")[0], f.partition(":")[2]) for f in parts[1:]]
        # a filter argument may interpolate fields ("classify:table@{QUALIFIER}"); an empty one interpolates as ""
        dynamic: dict[int, tuple[Compiled, str]] = {
            n: (self._compile_str(arg), INTERP.sub("", arg)) for n, (_f, arg) in enumerate(steps) if "{" in arg}
        lookup, apply, warnings = self._lookup, self.filters.apply, self.filters.warnings
        if len(alts) == 1 and not alts[0][1] and not steps:  # the common "=FIELD": one lookup
            field_name = alts[0][0]
            if self.open_fields is None:
                def one_field(scope: Scope) -> Any:
                    v = scope.lookup(field_name)
                    return None if v is None or (v.__class__ in _EMPTIABLE and not v) else v
            else:
                def one_field(scope: Scope) -> Any:
                    v = lookup(scope, field_name)
                    return None if v is None or (v.__class__ in _EMPTIABLE and not v) else v
            return one_field

        def run(scope: Scope) -> Any:
            name = whole
            value: Any = None
            for alt, quoted, literal in alts:
                value = literal if quoted else lookup(scope, alt)
                if not _empty(value):
                    name = alt
                    break
            for n, (fname, arg) in enumerate(steps):
                if n in dynamic:
                    fn, bare = dynamic[n]
                    arg = fn(scope) or bare
                if fname == "default":
                    if _empty(value):
                        value = arg
                    continue
                if _empty(value):
                    continue  # an empty value passes through to a later "default"
                found = len(warnings)
                value = apply(fname, arg or None, value, name)
                if len(warnings) > found:  # a finding: placed at the record it came from (a claim's line, say)
                    where = _where(scope)
                    for w in warnings[found:]:
                        w.where = w.where or where
            return None if _empty(value) else value

        return run

    def _compile(self, node: Any) -> Compiled:
        if isinstance(node, str):
            return self._compile_str(node)
        if isinstance(node, dict):
            return self._compile_dict(node)
        if isinstance(node, list):
            return self._compile_list(node)
        return lambda scope: node

    def _compile_str(self, node: str) -> Compiled:
        if node.startswith("="):
            return self._expr(node[1:])
        if "{" not in node:
            return lambda scope: node
        pieces: list[str | Compiled] = []
        pos = 0
        for m in INTERP.finditer(node):
            if m.start() > pos:
                pieces.append(node[pos:m.start()])
            pieces.append(self._expr(m.group(1)))
            pos = m.end()
        if pos < len(node):
            pieces.append(node[pos:])

        def interpolate(scope: Scope) -> str | None:
            out: list[str] = []
            missing = False
            for p in pieces:
                if isinstance(p, str):
                    out.append(p)
                    continue
                v = p(scope)  # every part is evaluated, so a bad field is reported even after an empty one
                if v is None:
                    missing = True
                else:
                    out.append(str(v))
            return None if missing else "".join(out)

        return interpolate

    def _compile_dict(self, node: dict[str, Any]) -> Compiled:
        cond = node.get("$if")
        neg = False
        test: Compiled | None = None
        if cond is not None:
            neg = cond.startswith("!")
            test = self._expr(cond.lstrip("!"))
        if "$value" in node:  # a conditional scalar: {$if: FIELD, $value: ...}
            value = self.compile(node["$value"])

            def conditional(scope: Scope) -> Any:
                if test is not None and (test(scope) is None) != neg:
                    return None
                return value(scope)

            return conditional
        # constant strings and numbers are copied as they are; containers are rendered afresh for each record
        items = [(k, None, v) if _constant(v) else (k, self.compile(v), None)
                 for k, v in node.items() if not k.startswith("$")]
        coding = "code" in node

        def render_dict(scope: Scope) -> Any:
            if test is not None and (test(scope) is None) != neg:
                return None
            out = {}
            for k, fn, const in items:
                if fn is None:
                    out[k] = const
                    continue
                r = fn(scope)
                if r is not None and (r.__class__ not in _EMPTIABLE or r):
                    out[k] = r
            if coding and "code" not in out and "system" in out:
                return None  # a Coding whose code is empty is no Coding at all
            return out or None

        return render_dict

    def _compile_list(self, node: list[Any]) -> Compiled:
        items = [(True, self._compile_each(item)) if isinstance(item, dict) and "$each" in item
                 else (False, self.compile(item)) for item in node]

        def render_list(scope: Scope) -> Any:
            out: list[Any] = []
            for each, fn in items:
                if each:
                    out.extend(fn(scope))
                else:
                    r = fn(scope)
                    if not _empty(r):
                        out.append(r)
            return out or None

        return render_list

    def each(self, spec: dict[str, Any], scope: Scope) -> list[Any]:
        return self._compile_each(spec)(scope)

    def _compile_each(self, spec: dict[str, Any]) -> Compiled:
        source = spec["$each"]
        alias = spec.get("as", "it")
        template = self.compile(spec["template"])
        fields = [(f, self._expr(f)) for f in source] if isinstance(source, list) else []

        def items_of(scope: Scope) -> list[Scope]:
            items: list[Scope] = []
            if isinstance(source, list):  # a list of field names: one item per non-empty field
                for fname, fn in fields:
                    v = fn(scope)
                    if v is not None:
                        items.append(scope.child({}, **{alias: v, "$field": fname}))
                return items
            for row in scope.lookup(source) or []:
                if isinstance(row, Scope):
                    items.append(Scope(row.fields, row.children, {**row.vars}, scope))
                else:
                    items.append(scope.child(row if isinstance(row, Mapping) else {alias: row}))
            return items

        def render_each(scope: Scope) -> list[Any]:
            out: list[Any] = []
            for it in items_of(scope):
                it.vars["$n"] = len(out) + 1
                r = template(it)
                if not _empty(r):
                    out.append(r)
            return out

        return render_each

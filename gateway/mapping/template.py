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

INTERP = re.compile(r"\{([^{}]+)\}")
ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")


class MappingError(Exception):
    """A record that cannot be mapped; ``field`` names the source field when one is to blame."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


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


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


class Filters:
    """The named value filters a mapping file may use; lookups and crosswalks come from the mapping file."""

    def __init__(self, lookups: Mapping[str, Mapping[str, Any]], crosswalks: Mapping[str, Mapping[str, str]]):
        self.lookups = lookups
        self.crosswalks = crosswalks
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
            raise MappingError(f"field {field_name}: cannot apply '{name}' to {value!r} ({exc})", field_name) from None

    def _lookup(self, v: Any, table: str | None, fname: str) -> Any:
        t = self._table(table)
        key = str(v)
        if key not in t:
            raise MappingError(f"field {fname}: unknown code {key!r} (not in lookup table '{table}')", fname)
        return t[key]

    def _lookup_opt(self, v: Any, table: str | None, fname: str) -> Any:
        return self._table(table).get(str(v))

    def _table(self, name: str | None) -> Mapping[str, Any]:
        if name not in self.lookups:
            raise MappingError(f"the mapping uses lookup table '{name}', which it does not define")
        return self.lookups[name]

    def _classify(self, v: Any, table: str | None, fname: str) -> Any:
        """A lookup table whose keys are regular expressions: the first that matches the whole value wins."""
        for pattern, out in self._table(table).items():
            if re.fullmatch(pattern, str(v)):
                return out
        raise MappingError(f"field {fname}: unknown code {v!r} (matches no pattern of '{table}')", fname)

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
            raise MappingError(f"field {fname}: {v!r} is not a number", fname) from None
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
                raise MappingError(f"field {fname}: {s!r} is not an HL7 date/time", fname)
            y, mo, d, hh, mi, ss, tz = m.groups()
            out = "-".join(p for p in (y, mo, d) if p)
            if hh and tz and d:  # FHIR needs a time zone with a time; without one, keep the date
                out += f"T{hh}:{mi}:{ss or '00'}{tz[:3]}:{tz[3:]}"
            return out
        if arg == "yyyymmdd":
            if not re.fullmatch(r"\d{8}(\d{4,6})?", s):
                raise MappingError(f"field {fname}: {s!r} is not a date (CCYYMMDD)", fname)
            return f"{s[:4]}-{s[4:6]}-{s[6:8]}"
        return s[:10]


class Template:
    """Evaluates template data against a Scope."""

    def __init__(self, filters: Filters, open_fields: str | None = None) -> None:
        self.filters = filters
        # field names that may be absent from a record and then count as empty (HL7 v2: trailing fields are cut)
        self.open_fields = re.compile(open_fields) if open_fields else None

    def _lookup(self, scope: Scope, name: str) -> Any:
        try:
            return scope.lookup(name)
        except MappingError:
            if self.open_fields is not None and self.open_fields.fullmatch(name):
                return None
            raise

    def expr(self, text: str, scope: Scope) -> Any:
        parts = [p.strip() for p in text.split("|")]
        name = parts[0]
        value: Any = None
        for alt in name.split("??"):  # "A ?? B": the first of the fields that is not empty
            alt = alt.strip()
            value = alt[1:-1] if alt.startswith("'") and alt.endswith("'") else self._lookup(scope, alt)
            if not _empty(value):
                name = alt
                break
        for f in parts[1:]:
            fname, _, arg = f.partition(":")
            if fname == "default":
                if _empty(value):
                    value = arg
                continue
            if _empty(value):
                continue  # an empty value passes through to a later "default"
            value = self.filters.apply(fname, arg or None, value, name)
        return None if _empty(value) else value

    def render(self, node: Any, scope: Scope) -> Any:
        if isinstance(node, str):
            if node.startswith("="):
                return self.expr(node[1:], scope)
            if "{" not in node:
                return node
            missing = False

            def sub(m: re.Match[str]) -> str:
                nonlocal missing
                v = self.expr(m.group(1), scope)
                if v is None:
                    missing = True
                    return ""
                return str(v)

            out = INTERP.sub(sub, node)
            return None if missing else out
        if isinstance(node, dict):
            cond = node.get("$if")
            if cond is not None:
                neg = cond.startswith("!")
                val = self.expr(cond.lstrip("!"), scope)
                if (val is None) != neg:
                    return None
            if "$value" in node:  # a conditional scalar: {$if: FIELD, $value: ...}
                return self.render(node["$value"], scope)
            out_d = {}
            for k, v in node.items():
                if k.startswith("$"):
                    continue
                r = self.render(v, scope)
                if not _empty(r):
                    out_d[k] = r
            if "code" in node and "code" not in out_d and "system" in out_d:
                return None  # a Coding whose code is empty is no Coding at all
            return out_d or None
        if isinstance(node, list):
            out_l: list[Any] = []
            for item in node:
                if isinstance(item, dict) and "$each" in item:
                    out_l.extend(self.each(item, scope))
                else:
                    r = self.render(item, scope)
                    if not _empty(r):
                        out_l.append(r)
            return out_l or None
        return node

    def each(self, spec: dict[str, Any], scope: Scope) -> list[Any]:
        source = spec["$each"]
        alias = spec.get("as", "it")
        items: list[Scope] = []
        if isinstance(source, list):  # a list of field names: one item per non-empty field
            for fname in source:
                v = self.expr(fname, scope)
                if v is not None:
                    items.append(scope.child({}, **{alias: v, "$field": fname}))
        else:
            rows = scope.lookup(source)
            for row in rows or []:
                if isinstance(row, Scope):
                    items.append(Scope(row.fields, row.children, {**row.vars}, scope))
                else:
                    items.append(scope.child(row if isinstance(row, Mapping) else {alias: row}))
        out: list[Any] = []
        for it in items:
            it.vars["$n"] = len(out) + 1
            r = self.render(spec["template"], it)
            if not _empty(r):
                out.append(r)
        return out

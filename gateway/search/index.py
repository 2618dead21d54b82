"""Turn a resource into search index rows, one list per index table.

Values are normalised here once, on write, so that queries compare plain columns:
strings lower-cased with accents removed, dates as inclusive UTC ranges, references split into type and id.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ..fhir.dates import MAX, MIN, DateParseError, parse_range
from .params import SearchParam, registry

_WHITESPACE = re.compile(r"\s")
SHORT, LONG = 255, 512  # index column widths; longer values are clipped on write and on query alike


def clip(value: str | None, width: int = SHORT) -> str | None:
    return value[:width] if isinstance(value, str) and len(value) > width else value


@lru_cache(maxsize=1 << 16)
def norm(text: str) -> str:
    """String-search normal form: NFKD without combining marks, lower case, single spaces."""
    if text.isascii():  # the common case: nothing to decompose
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())


@dataclass
class IndexRows:
    strings: list[tuple[str, str, str]] = field(default_factory=list)  # param, norm, exact
    tokens: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)  # param, system, code, text
    dates: list[tuple[str, str, str]] = field(default_factory=list)  # param, low, high
    refs: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)  # param, type, id, url
    numbers: list[tuple[str, float, str | None, str | None]] = field(default_factory=list)  # param, value, system, code
    uris: list[tuple[str, str]] = field(default_factory=list)
    composites: list[tuple[str, str | None, str | None, str | None, float | None, str | None, str | None]] = field(
        default_factory=list)  # param, system, code, second-as-text, second-as-number, low, high

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as its seven lists (ingest's worker sends many)
        return (IndexRows, (self.strings, self.tokens, self.dates, self.refs, self.numbers, self.uris,
                            self.composites))


def string_values(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        out: list[str] = []
        for k in ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
                  "postalCode", "country", "value"):
            x = v.get(k)
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                out.extend(i for i in x if isinstance(i, str))
        return out
    return []


def token_values(v: Any) -> list[tuple[str | None, str | None, str | None]]:
    if isinstance(v, bool):
        return [(None, "true" if v else "false", None)]
    if isinstance(v, str):
        return [(None, v, None)]
    if not isinstance(v, dict):
        return []
    if "coding" in v or ("text" in v and "system" not in v and "value" not in v and "code" not in v):
        text = v.get("text")
        out = [(c.get("system"), c.get("code"), c.get("display") or text) for c in v.get("coding") or []
               if isinstance(c, dict)]
        if text and not out:
            out.append((None, None, text))
        elif text:
            out = [(s, c, text if d is None else f"{d} {text}") for s, c, d in out]
        return out
    if "code" in v and "value" not in v:  # Coding
        return [(v.get("system"), v.get("code"), v.get("display"))]
    if "value" in v:  # Identifier or ContactPoint
        typ = v.get("type")
        ttext = typ.get("text") if isinstance(typ, dict) else None
        return [(v.get("system"), str(v["value"]), ttext)]
    return []


def reference_values(v: Any) -> list[tuple[str | None, str | None, str | None]]:
    if isinstance(v, str):  # canonical
        return [(None, None, v.split("|")[0])] if v else []
    if not isinstance(v, dict):
        return []
    ref = v.get("reference")
    if not isinstance(ref, str) or ref.startswith("#"):
        return []
    if _WHITESPACE.search(ref):  # ids and URLs hold no whitespace: a reference with some is repaired
        ref = "".join(ref.split())
    base = ref.split("/_history/")[0]
    parts = base.split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return [(parts[-2], parts[-1], base)]
    return [(None, None, base)]


def date_values(v: Any) -> list[tuple[str, str]]:
    try:
        if isinstance(v, str):
            return [parse_range(v)]
        if isinstance(v, dict):
            if "start" in v or "end" in v:  # Period
                lo = parse_range(v["start"])[0] if v.get("start") else MIN
                hi = parse_range(v["end"])[1] if v.get("end") else MAX
                return [(lo, hi)]
            if "event" in v:  # Timing
                return [parse_range(e) for e in v["event"] if isinstance(e, str)]
    except DateParseError:
        return []
    return []


def number_values(v: Any) -> list[tuple[float, str | None, str | None]]:
    if isinstance(v, bool):
        return []
    if isinstance(v, (int, float, Decimal)):
        return [(float(v), None, None)]
    if isinstance(v, dict) and "value" in v:
        try:
            val = float(Decimal(str(v["value"])))
        except (InvalidOperation, ValueError):
            return []
        if "currency" in v:
            return [(val, "urn:iso:std:iso:4217", v["currency"])]
        return [(val, v.get("system"), v.get("code") or v.get("unit"))]
    return []


@lru_cache(maxsize=1 << 16)
def _ref_row(code: str, ref: str) -> tuple[str, str | None, str | None, str | None] | None:
    for rt, rid, url in reference_values({"reference": ref}):
        return (code, clip(rt, 64), clip(rid), clip(url, LONG))
    return None


def _add(rows: IndexRows, sp: SearchParam, values: list[Any]) -> None:
    code, t = sp.code, sp.type
    for v in values:
        if t == "string":
            for s in string_values(v):
                rows.strings.append((code, norm(s)[:SHORT], s[:SHORT]))
        elif t == "token":
            for sys_, c, text in token_values(v):
                rows.tokens.append((code, clip(sys_), clip(c), norm(text)[:SHORT] if text else None))
        elif t == "reference":
            ref = v.get("reference") if type(v) is dict else None
            if type(ref) is str:  # the common case, memoised: the same references recur across resources
                row = _ref_row(code, ref)
                if row is not None:
                    rows.refs.append(row)
                continue
            for rt, rid, url in reference_values(v):
                rows.refs.append((code, clip(rt, 64), clip(rid), clip(url, LONG)))
        elif t == "date":
            for lo, hi in date_values(v):
                rows.dates.append((code, lo, hi))
        elif t in ("number", "quantity"):
            for val, sys_, c in number_values(v):
                rows.numbers.append((code, val, clip(sys_), clip(c)))
        elif t == "uri" and isinstance(v, str):
            rows.uris.append((code, clip(v, LONG)))


def _add_composite(rows: IndexRows, sp: SearchParam, nodes: list[Any],
                   memo: dict[tuple[int, str], list[Any]] | None = None) -> None:
    first, second = sp.components[0], sp.components[1]
    memo = {} if memo is None else memo
    for node in nodes:
        if not isinstance(node, dict):
            continue
        key = (id(node), first.param.expression)  # the same code component serves several composites
        toks = memo.get(key)
        if toks is None:
            toks = memo[key] = [t for v in first.extract(node) for t in token_values(v)]
        for v in second.extract(node):
            st = second.param.type
            text = num = lo = hi = None
            if st == "token":
                for s2, c2, _ in token_values(v):
                    for s1, c1, _ in toks:
                        rows.composites.append((sp.code, clip(s1), clip(c1), clip(f"{s2 or ''}|{c2 or ''}", LONG),
                                                None, None, None))
                continue
            if st == "quantity":
                nv = number_values(v)
                if not nv:
                    continue
                num, qs, qc = nv[0]
                text = f"{qs or ''}|{qc or ''}"
            elif st == "date":
                dv = date_values(v)
                if not dv:
                    continue
                lo, hi = dv[0]
            elif st == "string":
                sv = string_values(v)
                if not sv:
                    continue
                text = norm(sv[0])
            for s1, c1, _ in toks:
                rows.composites.append((sp.code, clip(s1), clip(c1), clip(text, LONG), num, lo, hi))


def _element_names(key: str) -> tuple[str, ...]:
    """A JSON key and, for a choice element such as valueQuantity, its base name (value)."""
    for i, ch in enumerate(key):
        if ch.isupper():
            return (key, key[:i])
    return (key,)


_TODO: dict[tuple[str, ...], list[SearchParam]] = {}  # (type, top-level keys...) -> the parameters to extract


def _params_to_extract(resource: dict[str, Any]) -> list[SearchParam]:
    key = (resource["resourceType"], *resource)
    todo = _TODO.get(key)
    if todo is None:
        always, by_root = registry().indexed_params(resource["resourceType"])
        found: dict[str, SearchParam] = {sp.code: sp for sp in always}
        for k in resource:
            for name in _element_names(k.lstrip("_")):
                for sp in by_root.get(name, ()):
                    found[sp.code] = sp
        todo = list(found.values())
        if len(_TODO) < 4096:  # resources of one type share few sets of top-level elements
            _TODO[key] = todo
    return todo


def index_resource(resource: dict[str, Any]) -> IndexRows:
    rows = IndexRows()
    memo: dict[tuple[int, str], list[Any]] = {}
    for sp in _params_to_extract(resource):
        values = sp.extract(resource)  # type: ignore[misc]
        if not values:
            continue
        if sp.type == "composite":
            _add_composite(rows, sp, values, memo)
        else:
            _add(rows, sp, values)
    return rows

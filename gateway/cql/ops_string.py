"""String operators (CQL §17 String Operators): Concatenate, Combine, Split, SplitOnMatches, Length, Upper,
Lower, Indexer, PositionOf, LastPositionOf, Substring, StartsWith, EndsWith, Matches, ReplaceMatches.

Strings are compared and indexed by code point. Regular expressions use Python ``re`` with DOTALL ("single
line mode"); ``Matches`` must match the whole string (as Java's ``String.matches`` and the CQL tests expect),
and ``ReplaceMatches`` accepts the Java/PCRE replacement syntax (``$1`` for a group, ``\\$`` for a dollar).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .fhirmodel import Node, primitive_value
from .values import CqlError


def _s(v: Any) -> Any:
    """A FHIR primitive Node (string, code, uri...) as its System value; anything else unchanged."""
    if isinstance(v, Node) and not isinstance(v.value, (dict, list)):
        return primitive_value(v)
    return v


def _str_arg(v: Any, what: str) -> str | None:
    v = _s(v)
    if v is None or isinstance(v, str):
        return v
    raise CqlError(f"{what} expects a String, got {type(v).__name__}")


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise CqlError(f"Invalid regular expression {pattern!r}: {exc}") from None


@compiles("Concatenate")
def _concatenate(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        parts: list[str] = []
        for op in ops:
            v = _str_arg(op(ctx), "Concatenate")
            if v is None:
                return None
            parts.append(v)
        return "".join(parts)

    return f


@compiles("Combine")
def _combine(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    source = c.compile(node.get("source"))
    has_sep = node.get("separator") is not None
    separator = c.compile(node.get("separator"))

    def f(ctx: Context) -> Any:
        src = source(ctx)
        if src is None:
            return None
        sep = ""
        if has_sep:
            sep = _str_arg(separator(ctx), "Combine")
            if sep is None:
                return None
        # null elements are ignored, as by the aggregate operators; a list with no non-null element gives null
        # (as an aggregate over an empty list gives null; the conformance suite's Combine({}))
        parts = [s for s in (_str_arg(x, "Combine") for x in src) if s is not None]
        return sep.join(parts) if parts else None

    return f


@compiles("Split")
def _split(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    string = c.compile(node.get("stringToSplit"))
    separator = c.compile(node.get("separator"))

    def f(ctx: Context) -> Any:
        s = _str_arg(string(ctx), "Split")
        if s is None:
            return None
        sep = _str_arg(separator(ctx), "Split")
        if sep is None or s == "":
            return [s]
        if sep == "":
            return list(s)  # as Java and JavaScript split on an empty separator: one string per character
        return s.split(sep)

    return f


@compiles("SplitOnMatches")
def _split_on_matches(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    string = c.compile(node.get("stringToSplit"))
    pattern = c.compile(node.get("separatorPattern"))

    def f(ctx: Context) -> Any:
        s = _str_arg(string(ctx), "SplitOnMatches")
        if s is None:
            return None
        p = _str_arg(pattern(ctx), "SplitOnMatches")
        if p is None:
            return [s]
        out: list[str] = []
        pos = 0
        for m in _regex(p).finditer(s):  # groups in the pattern are not returned (unlike re.split)
            if m.end() == m.start():
                continue  # empty matches do not split
            out.append(s[pos:m.start()])
            pos = m.end()
        out.append(s[pos:])
        return out

    return f


def _static_kind(node: dict[str, Any] | None) -> str | None:
    """'list' or 'string' when the ELM tells the static type of an operand, else None."""
    if not isinstance(node, dict):
        return None
    t = node.get("type")
    if t in ("List", "Query", "Retrieve", "ToList", "Union", "Intersect", "Except", "Flatten", "Distinct",
             "Filter", "ForEach", "Expand", "Split", "SplitOnMatches", "ToChars", "Slice"):
        return "list"
    if t in ("Concatenate", "Combine", "Upper", "Lower", "Substring", "ToString", "ReplaceMatches"):
        return "string"
    if t == "Literal":
        return "string" if str(node.get("valueType", "")).endswith("String") else None
    spec = node.get("asTypeSpecifier") or node.get("resultTypeSpecifier")
    if isinstance(spec, dict) and spec.get("type") == "ListTypeSpecifier":
        return "list"
    name = node.get("asType") or node.get("resultTypeName") or ""
    if isinstance(name, str) and name.endswith("}String"):
        return "string"
    return None


@compiles("Length")
def _length(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    sig = node.get("signature") or []
    kind = None
    if sig and isinstance(sig[0], dict):
        kind = "list" if sig[0].get("type") == "ListTypeSpecifier" else (
            "string" if str(sig[0].get("name", "")).endswith("}String") else None)
    kind = kind or _static_kind(node.get("operand"))
    null_result = 0 if kind == "list" else None  # Length(null as String) is null; of a null list it is 0

    def f(ctx: Context) -> Any:
        v = _s(a(ctx))
        if v is None:
            return null_result
        if isinstance(v, (str, list)):
            return len(v)
        raise CqlError(f"Length expects a String or a List, got {type(v).__name__}")

    return f


@compiles("Upper")
def _upper(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = _str_arg(a(ctx), "Upper")
        return None if v is None else v.upper()

    return f


@compiles("Lower")
def _lower(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = _str_arg(a(ctx), "Lower")
        return None if v is None else v.lower()

    return f


@compiles("Indexer")
def _indexer(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        v = _s(a(ctx))
        i = _s(b(ctx))
        if v is None or i is None:
            return None
        if isinstance(i, bool) or not isinstance(i, int):
            raise CqlError(f"Indexer expects an Integer index, got {type(i).__name__}")
        if not isinstance(v, (str, list)):
            raise CqlError(f"Indexer expects a String or a List, got {type(v).__name__}")
        if i < 0 or i >= len(v):
            return None
        return v[i]

    return f


def _position(node: dict[str, Any], c: LibraryCompiler, last: bool) -> Fn:
    pattern = c.compile(node.get("pattern"))
    string = c.compile(node.get("string"))
    what = "LastPositionOf" if last else "PositionOf"

    def f(ctx: Context) -> Any:
        p = _str_arg(pattern(ctx), what)
        s = _str_arg(string(ctx), what)
        if p is None or s is None:
            return None
        return s.rfind(p) if last else s.find(p)

    return f


@compiles("PositionOf")
def _position_of(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return _position(node, c, last=False)


@compiles("LastPositionOf")
def _last_position_of(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return _position(node, c, last=True)


@compiles("Substring")
def _substring(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    string = c.compile(node.get("stringToSub"))
    start = c.compile(node.get("startIndex"))
    has_length = node.get("length") is not None
    length = c.compile(node.get("length"))

    def f(ctx: Context) -> Any:
        s = _str_arg(string(ctx), "Substring")
        i = _s(start(ctx))
        if s is None or i is None:
            return None
        if i < 0 or i > len(s) or (i == len(s) and s != ""):
            return None  # out of range ('' from index 0 is '')
        if not has_length:
            return s[i:]
        n = _s(length(ctx))
        if n is None:
            return s[i:]
        return s[i:i + max(n, 0)]

    return f


@compiles("StartsWith")
def _starts_with(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        s, p = _str_arg(a(ctx), "StartsWith"), _str_arg(b(ctx), "StartsWith")
        return None if s is None or p is None else s.startswith(p)

    return f


@compiles("EndsWith")
def _ends_with(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        s, p = _str_arg(a(ctx), "EndsWith"), _str_arg(b(ctx), "EndsWith")
        return None if s is None or p is None else s.endswith(p)

    return f


@compiles("Matches")
def _matches(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        s, p = _str_arg(a(ctx), "Matches"), _str_arg(b(ctx), "Matches")
        if s is None or p is None:
            return None
        return _regex(p).fullmatch(s) is not None

    return f


@lru_cache(maxsize=256)
def _replacement(sub: str) -> Any:
    """A re.sub replacement function from a Java/PCRE replacement string: ``$n`` and ``${name}`` refer to
    groups, a backslash escapes the next character (``\\$`` is a literal dollar)."""
    parts: list[str | int] = []  # literal text, or a group number/name
    buf: list[str] = []
    i = 0
    while i < len(sub):
        ch = sub[i]
        if ch == "\\" and i + 1 < len(sub):
            buf.append(sub[i + 1])
            i += 2
            continue
        if ch == "$":
            m = re.match(r"\$(\d+)|\$\{(\w+)\}", sub[i:])
            if m:
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(int(m.group(1)) if m.group(1) is not None else "\0" + m.group(2))
                i += m.end()
                continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append("".join(buf))

    def repl(m: re.Match[str]) -> str:
        out: list[str] = []
        for p in parts:
            if isinstance(p, int):
                out.append(m.group(p) or "")
            elif p.startswith("\0"):
                out.append(m.group(p[1:]) or "")
            else:
                out.append(p)
        return "".join(out)

    return repl


@compiles("ReplaceMatches")
def _replace_matches(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b, r = c.operands(node)

    def f(ctx: Context) -> Any:
        s = _str_arg(a(ctx), "ReplaceMatches")
        p = _str_arg(b(ctx), "ReplaceMatches")
        sub = _str_arg(r(ctx), "ReplaceMatches")
        if s is None or p is None or sub is None:
            return None
        try:
            return _regex(p).sub(_replacement(sub), s)
        except (IndexError, re.error) as exc:
            raise CqlError(f"ReplaceMatches: invalid group reference in {sub!r} ({exc})") from None

    return f

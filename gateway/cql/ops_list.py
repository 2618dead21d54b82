"""List operators (CQL §9.24 List Operators) and the operators shared by lists and intervals (In, Contains,
Includes, IncludedIn, ProperIncludes, ProperIncludedIn, Union, Intersect, Except), which dispatch on the
operand kind: an Interval goes to ``interval.py``, a list is handled here."""

from __future__ import annotations

from typing import Any

from . import interval
from .engine import Context, Fn, LibraryCompiler, compiles
from .ops_query import _distinct
from .values import CqlError, equal, equivalent


def _is_interval(v: Any) -> bool:
    return type(v).__name__ == "Interval"


def list_contains(lst: list[Any] | None, item: Any) -> bool | None:
    if lst is None:
        return False
    if item is None:
        return any(x is None for x in lst)
    return any(equal(x, item) is True for x in lst)


def _binary(node: dict[str, Any], c: LibraryCompiler) -> tuple[Fn, Fn, str | None]:
    a, b = c.operands(node)
    return a, b, node.get("precision")


@compiles("Exists")
def _exists(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = a(ctx)
        return bool(v) and any(x is not None for x in v) if isinstance(v, list) else v is not None

    return f


def _member(coll: Any, x: Any, precision: str | None) -> bool | None:
    """x in coll, for an interval or a list (a null list contains nothing)."""
    if _is_interval(coll):
        return interval.contains(coll, x, precision)
    if coll is None:
        return False
    return list_contains(coll, x)


@compiles("In")
def _in(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b, precision = _binary(node, c)
    return lambda ctx: _member(b(ctx), a(ctx), precision)


@compiles("Contains")
def _contains(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b, precision = _binary(node, c)
    return lambda ctx: _member(a(ctx), b(ctx), precision)


def list_proper_contains(lst: list[Any] | None, item: Any) -> bool | None:
    """CQL ProperContains (list): the element is in the list and the list holds another, different element.
    A null list or a missing element gives false; an element that may or may not equal the item (null, or an
    uncertain comparison) makes the answer unknown unless another element settles it."""
    if lst is None:
        return False
    if item is None:
        return _and3(any(x is None for x in lst), any(x is not None for x in lst))
    hits = [equal(x, item) for x in lst]
    member = True if True in hits else None if None in hits else False
    other = True if False in hits else None if None in hits else False
    return _and3(member, other)


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _proper_member(coll: Any, x: Any, precision: str | None, interval_overload: bool) -> bool | None:
    if _is_interval(coll) or (coll is None and interval_overload):
        return interval.proper_contains(coll, x, precision)
    return list_proper_contains(coll, x)


def _interval_overload(node: dict[str, Any], position: int) -> bool:
    """Does the ELM signature say the collection operand (at ``position``) is an interval? A null collection
    then gives null (interval overload) rather than false (list overload)."""
    sig = node.get("signature") or []
    return len(sig) > position and isinstance(sig[position], dict) and \
        sig[position].get("type") == "IntervalTypeSpecifier"


@compiles("ProperIn")
def _proper_in(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b, precision = _binary(node, c)
    iv = _interval_overload(node, 1)
    return lambda ctx: _proper_member(b(ctx), a(ctx), precision, iv)


@compiles("ProperContains")
def _proper_contains(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b, precision = _binary(node, c)
    iv = _interval_overload(node, 0)
    return lambda ctx: _proper_member(a(ctx), b(ctx), precision, iv)


@compiles("Descendents")
def _descendents(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    """CQL Descendents: every element below the source (tuple elements and list items, recursively), null for
    a null source."""
    source = c.compile(node.get("source"))

    def walk(v: Any, out: list[Any]) -> None:
        children = list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else []
        for child in children:
            if child is not None:
                out.append(child)
                walk(child, out)

    def f(ctx: Context) -> Any:
        v = source(ctx)
        if v is None:
            return None
        out: list[Any] = []
        walk(v, out)
        return out

    return f


def _list_includes(a: list[Any] | None, b: list[Any] | None, proper: bool) -> bool | None:
    if a is None or b is None:
        return None
    if not all(list_contains(a, x) for x in b):
        return False
    if proper:
        return len(_distinct(a)) > len(_distinct(b))
    return True


def _includes_op(name: str, reverse: bool, proper: bool) -> None:
    @compiles(name)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        a, b, precision = _binary(node, c)

        def f(ctx: Context) -> Any:
            x, y = a(ctx), b(ctx)
            if reverse:
                x, y = y, x
            if _is_interval(x) or _is_interval(y):
                if _is_interval(x) and not _is_interval(y) and y is not None:
                    return interval.contains(x, y, precision) if not proper else None
                fn = interval.proper_includes if proper else interval.includes
                return fn(x, y, precision)
            if isinstance(y, list) or y is None:
                return _list_includes(x, y, proper)
            return list_contains(x, y)  # list includes element

        return f


_includes_op("Includes", False, False)
_includes_op("IncludedIn", True, False)
_includes_op("ProperIncludes", False, True)
_includes_op("ProperIncludedIn", True, True)


def _fold(op: Any, vals: list[Any]) -> Any:
    """An n-ary Union or Intersect of intervals as the binary operation applied left to right."""
    out = vals[0]
    for v in vals[1:]:
        out = op(out, v)
    return out


@compiles("Union")
def _union(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        vals = [o(ctx) for o in ops]
        if any(_is_interval(v) for v in vals):
            return _fold(interval.union, vals)
        items: list[Any] = []
        for v in vals:
            if v is not None:
                items.extend(v)
        return _distinct(items)

    return f


@compiles("Intersect")
def _intersect(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        vals = [o(ctx) for o in ops]
        if any(_is_interval(v) for v in vals):
            return _fold(interval.intersect, vals)
        if any(v is None for v in vals):
            return None
        out = _distinct(vals[0])
        for v in vals[1:]:
            out = [x for x in out if list_contains(v, x)]
        return out

    return f


@compiles("Except")
def _except(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        x, y = a(ctx), b(ctx)
        if _is_interval(x) or _is_interval(y):
            return interval.except_(x, y)
        if x is None:
            return None
        if y is None:
            return _distinct(x)
        return [v for v in _distinct(x) if not list_contains(y, v)]

    return f


@compiles("Distinct")
def _distinct_op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    return lambda ctx: None if (v := a(ctx)) is None else _distinct(v)


@compiles("First")
def _first(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src = c.compile(node["source"])
    return lambda ctx: (v[0] if (v := src(ctx)) else None)


@compiles("Last")
def _last(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src = c.compile(node["source"])
    return lambda ctx: (v[-1] if (v := src(ctx)) else None)


@compiles("SingletonFrom")
def _singleton(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = a(ctx)
        if not v:
            return None
        if len(v) > 1:
            raise CqlError(f"SingletonFrom: the list has {len(v)} elements")
        return v[0]

    return f


@compiles("Flatten")
def _flatten(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = a(ctx)
        if v is None:
            return None
        out: list[Any] = []
        for x in v:
            if isinstance(x, list):
                out.extend(x)
            else:
                out.append(x)
        return out

    return f


@compiles("IndexOf")
def _index_of(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src, el = c.compile(node["source"]), c.compile(node["element"])

    def f(ctx: Context) -> Any:
        s, e = src(ctx), el(ctx)
        if s is None or e is None:
            return None
        return next((i for i, x in enumerate(s) if equal(x, e) is True), -1)

    return f


@compiles("Slice")
def _slice(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src = c.compile(node["source"])
    start = c.compile(node.get("startIndex"))
    end = c.compile(node.get("endIndex"))

    def f(ctx: Context) -> Any:
        s = src(ctx)
        if s is None:
            return None
        i, j = start(ctx), end(ctx)
        return s[(i or 0):j]

    return f


@compiles("Times")
def _times(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        x, y = a(ctx), b(ctx)
        if x is None or y is None:
            return None
        return [{**l1, **l2} for l1 in x for l2 in y]

    return f


def _per_element(ctx: Context, items: list[Any], name: str, fn: Fn) -> list[tuple[Any, Any]]:
    """(element, fn evaluated with the element bound to ``name``) for each element of ``items``."""
    saved = ctx.scope
    out = []
    try:
        for x in items:
            ctx.scope = {**saved, name: x}
            out.append((x, fn(ctx)))
    finally:
        ctx.scope = saved
    return out


@compiles("Filter")
def _filter(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src, cond = c.compile(node["source"]), c.compile(node["condition"])
    name = node.get("scope") or "$this"

    def f(ctx: Context) -> Any:
        s = src(ctx)
        return None if s is None else [x for x, keep in _per_element(ctx, s, name, cond) if keep is True]

    return f


@compiles("ForEach")
def _for_each(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src, el = c.compile(node["source"]), c.compile(node["element"])
    name = node.get("scope") or "$this"

    def f(ctx: Context) -> Any:
        s = src(ctx)
        return None if s is None else [v for _, v in _per_element(ctx, s, name, el)]

    return f


@compiles("Repeat")
def _repeat(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src, el = c.compile(node["source"]), c.compile(node["element"])
    scope = node.get("scope")

    def f(ctx: Context) -> Any:
        s = src(ctx)
        if s is None:
            return None
        out: list[Any] = []
        frontier = list(s)
        saved = ctx.scope
        while frontier:
            nxt = []
            for x in frontier:
                if any(equivalent(x, o) for o in out):
                    continue
                out.append(x)
                ctx.scope = {**saved, (scope or "$this"): x}
                r = el(ctx)
                nxt.extend(r if isinstance(r, list) else [r] if r is not None else [])
            frontier = nxt
        ctx.scope = saved
        return out

    return f

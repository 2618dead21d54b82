"""Interval operators (CQL §9.23): the Interval selector, Start/End/Width/Size/PointFrom, Overlaps, Meets,
Starts, Ends, Collapse, Expand. In/Contains/Includes/Union/... dispatch in ops_list; Before/After/SameAs in
ops_datetime."""

from __future__ import annotations

from typing import Any

from . import interval as iv
from .engine import Context, Fn, LibraryCompiler, compiles


@compiles("Interval")
def _interval(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    low = c.compile(node.get("low"))
    high = c.compile(node.get("high"))
    low_closed = node.get("lowClosed", True)
    high_closed = node.get("highClosed", True)
    low_closed_expr = c.compile(node["lowClosedExpression"]) if node.get("lowClosedExpression") else None
    high_closed_expr = c.compile(node["highClosedExpression"]) if node.get("highClosedExpression") else None
    if _null_literal(node.get("low")) and _null_literal(node.get("high")):
        # Interval[null, null] of point type Any: a closed null boundary stands for the minimum/maximum of the
        # point type, and Any has none, so neither boundary is known: the interval is null (the conformance
        # suite's TestOverlapsNull, TestUnionNull, ...). With a typed point (``null as Integer``) the
        # boundaries are the type's minimum and maximum.
        return lambda ctx: None

    def f(ctx: Context) -> Any:
        lc = low_closed_expr(ctx) if low_closed_expr else low_closed
        hc = high_closed_expr(ctx) if high_closed_expr else high_closed
        return iv.Interval(low(ctx), high(ctx), bool(lc), bool(hc))

    return f


def _null_literal(node: Any) -> bool:
    """Is the ELM node the bare null literal (not cast to a point type, so the interval's point type is Any)?"""
    return isinstance(node, dict) and node.get("type") == "Null"


def _unary(node_type: str, fn_name: str) -> None:
    @compiles(node_type)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        (a,) = c.operands(node)
        fn = getattr(iv, fn_name)
        return lambda ctx: fn(a(ctx))


_unary("Start", "start")
_unary("End", "end")
_unary("Width", "width")
_unary("Size", "size")
_unary("PointFrom", "point_from")


def _binary(node_type: str, fn_name: str) -> None:
    @compiles(node_type)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        a, b = c.operands(node)
        precision = node.get("precision")
        precision = precision.lower() if isinstance(precision, str) else None
        fn = getattr(iv, fn_name)
        return lambda ctx: fn(a(ctx), b(ctx), precision)


_binary("Overlaps", "overlaps")
_binary("OverlapsBefore", "overlaps_before")
_binary("OverlapsAfter", "overlaps_after")
_binary("Meets", "meets")
_binary("MeetsBefore", "meets_before")
_binary("MeetsAfter", "meets_after")
_binary("Starts", "starts")
_binary("Ends", "ends")


@compiles("Collapse")
def _collapse(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)
    src = ops[0]
    per = ops[1] if len(ops) > 1 else None
    return lambda ctx: iv.collapse(src(ctx), per(ctx) if per else None)


@compiles("Expand")
def _expand(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)
    src = ops[0]
    per = ops[1] if len(ops) > 1 else None
    return lambda ctx: iv.expand(src(ctx), per(ctx) if per else None)

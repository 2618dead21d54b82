"""Date and time operators (CQL §9.20-9.22): constructors, Now/Today/TimeOfDay, component extraction,
same/before/after at a precision (points and intervals), duration and difference between, CalculateAge."""

from __future__ import annotations

from typing import Any

from . import datetime as dt
from .engine import Context, Fn, LibraryCompiler, compiles

_DT_PARTS = ("year", "month", "day", "hour", "minute", "second", "millisecond")
_TIME_PARTS = ("hour", "minute", "second", "millisecond")


def _is_interval(v: Any) -> bool:
    return type(v).__name__ == "Interval"


@compiles("DateTime")
def _datetime(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    parts = [(p, c.compile(node[p])) for p in _DT_PARTS if node.get(p) is not None]
    offset = c.compile(node["timezoneOffset"]) if node.get("timezoneOffset") is not None else None

    def f(ctx: Context) -> Any:
        vals = {p: fn(ctx) for p, fn in parts}
        if vals.get("year") is None:
            return None
        return dt.DateTime(**vals, offset=offset(ctx) if offset else None)

    return f


@compiles("Date")
def _date(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    parts = [(p, c.compile(node[p])) for p in ("year", "month", "day") if node.get(p) is not None]

    def f(ctx: Context) -> Any:
        vals = {p: fn(ctx) for p, fn in parts}
        return None if vals.get("year") is None else dt.Date(**vals)

    return f


@compiles("Time")
def _time(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    parts = [(p, c.compile(node[p])) for p in _TIME_PARTS if node.get(p) is not None]

    def f(ctx: Context) -> Any:
        vals = {p: fn(ctx) for p, fn in parts}
        return None if vals.get("hour") is None else dt.Time(**vals)

    return f


@compiles("Now")
def _now(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return lambda ctx: dt.now(ctx.now)


@compiles("Today")
def _today(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return lambda ctx: dt.today(ctx.now)


@compiles("TimeOfDay")
def _time_of_day(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return lambda ctx: dt.time_of_day(ctx.now)


def _component(node_type: str, name: str) -> None:
    @compiles(node_type)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        (a,) = c.operands(node)
        return lambda ctx: dt.component(a(ctx), name)


_component("DateFrom", "date")
_component("TimeFrom", "time")
_component("TimezoneOffsetFrom", "timezoneoffset")


@compiles("DateTimeComponentFrom")
def _dt_component(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    precision = node["precision"].lower()
    return lambda ctx: dt.component(a(ctx), precision)


def _precision(node: dict[str, Any]) -> str | None:
    p = node.get("precision")
    return p.lower() if isinstance(p, str) else None


def _comparison(node_type: str, point_fn: str) -> None:
    @compiles(node_type)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        a, b = c.operands(node)
        precision = _precision(node)
        pfn = getattr(dt, point_fn)

        def f(ctx: Context) -> Any:
            x, y = a(ctx), b(ctx)
            if _is_interval(x) or _is_interval(y):
                from . import interval

                return getattr(interval, point_fn)(x, y, precision)
            if x is None or y is None:
                return None
            if isinstance(x, (dt.Date, dt.DateTime, dt.Time)):
                return pfn(x, y, precision)
            from .values import compare

            r = compare(x, y, precision)
            if r is None:
                return None
            return {"same_as": r == 0, "same_or_before": r <= 0, "same_or_after": r >= 0,
                    "before": r < 0, "after": r > 0}[point_fn]

        return f


_comparison("SameAs", "same_as")
_comparison("SameOrBefore", "same_or_before")
_comparison("SameOrAfter", "same_or_after")
_comparison("Before", "before")
_comparison("After", "after")


def _definite(v: Any) -> Any:
    """An uncertain duration stays uncertain; callers comparing it use the Uncertainty protocol."""
    return v


@compiles("DurationBetween")
def _duration_between(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    precision = _precision(node) or "day"
    return lambda ctx: _definite(dt.duration_between(a(ctx), b(ctx), precision))


@compiles("DifferenceBetween")
def _difference_between(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    precision = _precision(node) or "day"
    return lambda ctx: _definite(dt.difference_between(a(ctx), b(ctx), precision))


@compiles("CalculateAgeAt")
def _age_at(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    precision = _precision(node) or "year"
    return lambda ctx: dt.calculate_age_at(a(ctx), b(ctx), precision)


@compiles("CalculateAge")
def _age(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    precision = _precision(node) or "year"
    return lambda ctx: dt.calculate_age(a(ctx), ctx.now, precision)

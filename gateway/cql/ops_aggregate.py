"""Aggregate functions (CQL §9.25 Aggregate Functions): nulls are ignored; an empty input gives null
(Count gives 0, AllTrue true, AnyTrue false)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .values import compare

DEC_Q = Decimal("0.00000001")


def _values(v: Any) -> list[Any] | None:
    if v is None:
        return None
    return [x for x in v if x is not None]


def _add(a: Any, b: Any) -> Any:
    if type(a).__name__ == "Quantity":
        from .quantity import add

        return add(a, b)
    return a + b


def _dec(x: Any) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(x)


def _aggregate(name: str, fn: Callable[[list[Any]], Any], empty: Any = None) -> None:
    @compiles(name)
    def _op(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        src = c.compile(node["source"])

        def f(ctx: Context) -> Any:
            vals = _values(src(ctx))
            if vals is None:
                return empty
            if not vals:
                return empty
            return fn(vals)

        return f


def _sum(vals: list[Any]) -> Any:
    total = vals[0]
    for v in vals[1:]:
        total = _add(total, v)
    return total


def _min(vals: list[Any]) -> Any:
    best = vals[0]
    for v in vals[1:]:
        if (compare(v, best) or 0) < 0:
            best = v
    return best


def _max(vals: list[Any]) -> Any:
    best = vals[0]
    for v in vals[1:]:
        if (compare(v, best) or 0) > 0:
            best = v
    return best


def _avg(vals: list[Any]) -> Any:
    if type(vals[0]).__name__ == "Quantity":
        from .quantity import Quantity

        total = _sum(vals)
        return Quantity((total.value / len(vals)).quantize(DEC_Q).normalize(), total.unit)
    return (sum(_dec(v) for v in vals) / len(vals)).quantize(DEC_Q)


def _median(vals: list[Any]) -> Any:
    s = sorted(_dec(v) for v in vals)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else ((s[mid - 1] + s[mid]) / 2).quantize(DEC_Q)


def _mode(vals: list[Any]) -> Any:
    counts = Counter(vals)
    top = max(counts.values())
    return next(v for v in vals if counts[v] == top)


def _variance(vals: list[Any], population: bool) -> Any:
    d = [_dec(v) for v in vals]
    n = len(d)
    if n < 2 and not population:
        return None
    mean = sum(d) / n
    return (sum((x - mean) ** 2 for x in d) / (n if population else n - 1)).quantize(DEC_Q)


def _sqrt(v: Any) -> Any:
    return None if v is None else v.sqrt().quantize(DEC_Q)


def _product(vals: list[Any]) -> Any:
    out = vals[0]
    for v in vals[1:]:
        out = out * v
    return out


def _geomean(vals: list[Any]) -> Any:
    d = [_dec(v) for v in vals]
    prod = Decimal(1)
    for x in d:
        prod *= x
    return (prod ** (Decimal(1) / len(d))).quantize(DEC_Q)


_aggregate("Sum", _sum)
_aggregate("Min", _min)
_aggregate("Max", _max)
_aggregate("Avg", _avg)
_aggregate("Median", _median)
_aggregate("Mode", _mode)
_aggregate("Variance", lambda v: _variance(v, False))
_aggregate("PopulationVariance", lambda v: _variance(v, True))
_aggregate("StdDev", lambda v: _sqrt(_variance(v, False)))
_aggregate("PopulationStdDev", lambda v: _sqrt(_variance(v, True)))
_aggregate("Product", _product)
_aggregate("GeometricMean", _geomean)
_aggregate("AllTrue", lambda v: all(x is True for x in v), empty=True)
_aggregate("AnyTrue", lambda v: any(x is True for x in v), empty=False)


@compiles("Count")
def _count(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    src = c.compile(node["source"])
    return lambda ctx: 0 if (v := src(ctx)) is None else sum(1 for x in v if x is not None)

"""CQL Interval values and the interval operators (CQL 1.5 reference, "Interval Operators").

Points are compared only through ``values.compare`` (so any point type implementing ``cql_compare`` works:
Integer, Decimal, Quantity, Date/DateTime/Time); every operator returns ``True``/``False``/``None`` with CQL
three-valued logic.

Boundaries, as the specification defines them (``start``/``end`` operators):

* a non-null closed boundary is its value; a non-null open boundary is the successor (low) or predecessor
  (high) of its value, so ``Interval[1, 5)`` = ``Interval[1, 4]`` and ``Interval[1.0, 2.0)`` ends at
  ``1.99999999`` (Decimal step 10^-8; Quantity: the value step; Date/DateTime/Time: ``datetime.successor``);
* a **closed null** boundary is the minimum (low) / maximum (high) value of the point type: the interval is
  unbounded on that side, and comparisons against it are definite (``Interval[@2024-01-01, null]`` contains
  ``@2030-01-01`` is true). Internally it is an infinite sentinel, so the point type need not be known;
  ``start``/``end`` return the concrete minimum/maximum when the point type can be told from the other
  boundary (or from ``point_type``), else null;
* an **open null** boundary is *unknown*: an uncertainty ranging from the minimum value to the interval's end
  (low) or from its start to the maximum value (high). Comparisons against it are null unless the whole range
  decides them (``Interval(null, 5] meets after Interval[11, null)`` is false, ``Interval(null, 5] contains 3``
  is null). ``start``/``end`` of such a boundary return null (the runtime has no uncertainty value).

``contains``/``in`` follow the operator text literally: non-null boundaries use ``<=``/``<`` (closed/open) on the
raw boundary values at the requested precision, a closed null boundary compares true. All other operators use
the start/end points above.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cmp_to_key
from types import ModuleType
from typing import Any

from . import values
from .quantity import Quantity, convert
from .values import CqlError

__all__ = [
    "Interval", "after", "before", "collapse", "contains", "end", "ends", "equal", "equivalent", "except_",
    "expand", "in_", "included_in", "includes", "intersect", "max_value", "meets", "meets_after",
    "meets_before", "min_value", "overlaps", "overlaps_after", "overlaps_before", "point_from", "predecessor",
    "proper_contains", "proper_included_in", "proper_includes", "same_as", "same_or_after", "same_or_before",
    "size", "start", "starts", "successor", "union", "width",
]

INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1
DECIMAL_MAX = Decimal("99999999999999999999.99999999")
DECIMAL_MIN = -DECIMAL_MAX
DECIMAL_STEP = Decimal("1E-8")
_EXPAND_LIMIT = 100_000


# ------------------------------------------------------------------------------------------- point helpers

_dt_module: ModuleType | None = None


def _dt() -> ModuleType | None:
    """``gateway.cql.datetime`` when it is importable (it is written separately)."""
    global _dt_module
    if _dt_module is None:
        try:
            _dt_module = importlib.import_module(f"{__package__}.datetime")
        except ImportError:
            return None
    return _dt_module


def _dt_fn(name: str) -> Any:
    mod = _dt()
    return getattr(mod, name, None) if mod is not None else None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_numeric(x: Any) -> bool:
    return _is_int(x) or isinstance(x, (Decimal, Quantity))


def successor(x: Any) -> Any:
    """CQL Successor: +1 (Integer), +10^-8 (Decimal, Quantity value); date/time via ``datetime.successor``."""
    if x is None:
        return None
    if _is_int(x):
        return x + 1
    if isinstance(x, Decimal):
        return x + DECIMAL_STEP
    if isinstance(x, Quantity):
        return Quantity(x.value + DECIMAL_STEP, x.unit)
    fn = _dt_fn("successor")
    if fn is None:
        raise CqlError(f"Successor is not defined for {type(x).__name__}")
    return fn(x)


def predecessor(x: Any) -> Any:
    """CQL Predecessor: -1 (Integer), -10^-8 (Decimal, Quantity value); date/time via ``datetime.predecessor``."""
    if x is None:
        return None
    if _is_int(x):
        return x - 1
    if isinstance(x, Decimal):
        return x - DECIMAL_STEP
    if isinstance(x, Quantity):
        return Quantity(x.value - DECIMAL_STEP, x.unit)
    fn = _dt_fn("predecessor")
    if fn is None:
        raise CqlError(f"Predecessor is not defined for {type(x).__name__}")
    return fn(x)


def _type_name(sample: Any) -> str | None:
    if _is_int(sample):
        return "Integer"
    if isinstance(sample, Decimal):
        return "Decimal"
    if isinstance(sample, Quantity):
        return "Quantity"
    return type(sample).__name__ if sample is not None else None


def _extreme(kind: str, sample: Any, point_type: str | None) -> Any:
    name = point_type.rsplit("}", 1)[-1] if point_type else _type_name(sample)
    if name in ("Integer", "Long"):
        return INTEGER_MIN if kind == "min" else INTEGER_MAX
    if name == "Decimal":
        return DECIMAL_MIN if kind == "min" else DECIMAL_MAX
    if name == "Quantity":
        unit = sample.unit if isinstance(sample, Quantity) else "1"
        return Quantity(DECIMAL_MIN if kind == "min" else DECIMAL_MAX, unit)
    fn = _dt_fn(f"{kind}_value")  # datetime.min_value(type) / max_value(type): Date, DateTime, Time
    if fn is not None and name is not None:
        try:
            return fn(type(sample) if sample is not None else name)
        except (CqlError, TypeError, ValueError, KeyError):
            return None
    return None


def min_value(sample: Any = None, point_type: str | None = None) -> Any:
    """CQL minimum value for the type of ``sample`` (or the named ``point_type``); None when unknown."""
    return _extreme("min", sample, point_type)


def max_value(sample: Any = None, point_type: str | None = None) -> Any:
    """CQL maximum value for the type of ``sample`` (or the named ``point_type``); None when unknown."""
    return _extreme("max", sample, point_type)


# ---------------------------------------------------------------------------------------- three-valued logic


def _and(*args: bool | None) -> bool | None:
    if any(a is False for a in args):
        return False
    return None if any(a is None for a in args) else True


def _or(*args: bool | None) -> bool | None:
    if any(a is True for a in args):
        return True
    return None if any(a is None for a in args) else False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


# ---------------------------------------------------------------------------------- boundaries as ranges


class _Inf:
    """The minimum (-1) or maximum (+1) of whatever the point type is: a closed null boundary."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign

    def __repr__(self) -> str:
        return "-inf" if self.sign < 0 else "+inf"


NEG, POS = _Inf(-1), _Inf(1)


def _cmp(a: Any, b: Any, precision: str | None) -> int | None:
    if isinstance(a, _Inf) or isinstance(b, _Inf):
        sa = a.sign if isinstance(a, _Inf) else 0
        sb = b.sign if isinstance(b, _Inf) else 0
        return (sa > sb) - (sa < sb)
    return values.compare(a, b, precision)


class _R:
    """A start/end point: exact (lo is hi) or an uncertainty [lo, hi] (an open null boundary). A slotted
    class, not a frozen dataclass: every interval operator makes several and never changes one."""

    __slots__ = ("lo", "hi", "exact")

    def __init__(self, lo: Any, hi: Any, exact: bool) -> None:
        self.lo = lo
        self.hi = hi
        self.exact = exact

    def __repr__(self) -> str:
        return f"_R(lo={self.lo!r}, hi={self.hi!r}, exact={self.exact!r})"

    @staticmethod
    def of(v: Any) -> _R:
        return _R(v, v, True)

    @property
    def value(self) -> Any:
        """The concrete point, or None for an uncertainty or an infinite (closed null) boundary."""
        return self.lo if self.exact and not isinstance(self.lo, _Inf) else None


def _succ(v: Any) -> Any:
    if isinstance(v, _Inf):
        return v
    s = successor(v)
    return POS if s is None else s  # past the maximum value


def _pred(v: Any) -> Any:
    if isinstance(v, _Inf):
        return v
    p = predecessor(v)
    return NEG if p is None else p


def _r_succ(r: _R) -> _R:
    return _R(_succ(r.lo), _succ(r.hi), r.exact)


def _r_pred(r: _R) -> _R:
    return _R(_pred(r.lo), _pred(r.hi), r.exact)


def _lt(a: _R, b: _R, p: str | None = None) -> bool | None:
    c = _cmp(a.hi, b.lo, p)
    if c is not None and c < 0:
        return True
    c = _cmp(a.lo, b.hi, p)
    if c is not None and c >= 0:
        return False
    return None


def _le(a: _R, b: _R, p: str | None = None) -> bool | None:
    c = _cmp(a.hi, b.lo, p)
    if c is not None and c <= 0:
        return True
    c = _cmp(a.lo, b.hi, p)
    if c is not None and c > 0:
        return False
    return None


def _eq(a: _R, b: _R, p: str | None = None) -> bool | None:
    if a.exact and b.exact:
        c = _cmp(a.lo, b.lo, p)
        return None if c is None else c == 0
    c1, c2 = _cmp(a.hi, b.lo, p), _cmp(a.lo, b.hi, p)
    if (c1 is not None and c1 < 0) or (c2 is not None and c2 > 0):
        return False
    return None


def _equiv(a: _R, b: _R) -> bool:
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, _Inf) or isinstance(y, _Inf):
            return x is y
        return values.equivalent(x, y)

    return a.exact == b.exact and same(a.lo, b.lo) and same(a.hi, b.hi)


def _start_exact(iv: Interval) -> Any:
    """The start as a value or infinity; None when it is unknown (open null low)."""
    if iv.low is not None:
        return iv.low if iv.low_closed else _succ(iv.low)
    return NEG if iv.low_closed else None


def _end_exact(iv: Interval) -> Any:
    if iv.high is not None:
        return iv.high if iv.high_closed else _pred(iv.high)
    return POS if iv.high_closed else None


def _start(iv: Interval) -> _R:
    s = _start_exact(iv)
    if s is not None:
        return _R.of(s)
    e = _end_exact(iv)
    return _R(NEG, POS if e is None else e, False)


def _end(iv: Interval) -> _R:
    e = _end_exact(iv)
    if e is not None:
        return _R.of(e)
    s = _start_exact(iv)
    return _R(NEG if s is None else s, POS, False)


def _as_range(x: Any, which: str) -> _R:
    """A point argument as a degenerate range, an interval as its start or end."""
    if isinstance(x, Interval):
        return _start(x) if which == "start" else _end(x)
    return _R.of(x)


# ------------------------------------------------------------------------------------------------ Interval


@dataclass(frozen=True)
class Interval:
    """CQL Interval<T>; ``None`` boundaries are null (see the module docstring for their meaning).

    ``point_type`` (e.g. ``'Integer'``, ``'{urn:hl7-org:elm-types:r1}DateTime'``) is optional: it is only used
    to report the concrete minimum/maximum for ``start``/``end`` of a closed null boundary when neither
    boundary is a value. Construction raises ``CqlError`` for an invalid interval (low after high, or equal
    boundaries with an open one, e.g. ``Interval[5, 3]``, ``Interval[5, 5)``).
    """

    low: Any
    high: Any
    low_closed: bool = True
    high_closed: bool = True
    point_type: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None:
            c = values.compare(self.low, self.high)
            if c is not None and (c > 0 or (c == 0 and not (self.low_closed and self.high_closed))):
                raise CqlError(f"Invalid Interval {self}: the ending boundary must be greater than or equal "
                               "to the starting boundary")

    def __str__(self) -> str:
        def show(v: Any) -> str:
            if v is None:
                return "null"
            if isinstance(v, Decimal):
                return format(v, "f")
            return str(v)

        return (f"Interval{'[' if self.low_closed else '('}{show(self.low)}, {show(self.high)}"
                f"{']' if self.high_closed else ')'}")

    def cql_compare(self, other: Any, precision: str | None = None) -> int | None:
        raise CqlError("Intervals are not ordered")

    def cql_equal(self, other: Any) -> bool | None:
        return equal(self, other)

    def cql_equivalent(self, other: Any) -> bool:
        return equivalent(self, other)


def _sample(iv: Interval) -> Any:
    return iv.low if iv.low is not None else iv.high


def equal(a: Interval | None, b: Interval | None) -> bool | None:
    """CQL = on intervals: the same start and end points (Interval[1, 5) = Interval[1, 4])."""
    if a is None or b is None:
        return None
    if not isinstance(a, Interval) or not isinstance(b, Interval):
        return False
    return _and(_eq(_start(a), _start(b)), _eq(_end(a), _end(b)))


def equivalent(a: Interval | None, b: Interval | None) -> bool:
    """CQL ~ on intervals: start and end points equivalent (never null; null ~ null)."""
    if a is None or b is None:
        return a is None and b is None
    if not isinstance(a, Interval) or not isinstance(b, Interval):
        return False
    return _equiv(_start(a), _start(b)) and _equiv(_end(a), _end(b))


# ------------------------------------------------------------------------------------------- Start, End...


def start(iv: Interval | None) -> Any:
    """CQL Start: low (closed), successor of low (open), the type minimum (closed null); null when unknown."""
    if iv is None:
        return None
    r = _start(iv)
    if isinstance(r.lo, _Inf) and r.exact:
        return min_value(_sample(iv), iv.point_type)
    return r.value


def end(iv: Interval | None) -> Any:
    """CQL End: high (closed), predecessor of high (open), the type maximum (closed null); null when unknown."""
    if iv is None:
        return None
    r = _end(iv)
    if isinstance(r.lo, _Inf) and r.exact:
        return max_value(_sample(iv), iv.point_type)
    return r.value


def _minus(a: Any, b: Any) -> Any:
    if isinstance(a, Quantity) or isinstance(b, Quantity):
        from .quantity import subtract

        return subtract(a, b)
    if _is_int(a) and _is_int(b):
        return a - b
    if isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)):
        return Decimal(a) - Decimal(b)
    raise CqlError(f"Width and Size are not defined for intervals of {type(a).__name__}")


def width(iv: Interval | None) -> Any:
    """CQL Width: end - start (Integer, Decimal, Quantity intervals); null when a boundary is unknown."""
    if iv is None:
        return None
    s, e = start(iv), end(iv)
    sample = _sample(iv)
    if sample is not None and not _is_numeric(sample):
        raise CqlError(f"Width is not defined for intervals of {type(sample).__name__}")
    if s is None or e is None:
        return None
    return _minus(e, s)


def size(iv: Interval | None) -> Any:
    """CQL Size: width + the point size (1, 10^-8, or 10^-8 of the unit): the number of points for Integer."""
    w = width(iv)
    if w is None:
        return None
    if _is_int(w):
        return w + 1
    if isinstance(w, Quantity):
        return Quantity(w.value + DECIMAL_STEP, w.unit)
    return w + DECIMAL_STEP


def point_from(iv: Interval | None) -> Any:
    """CQL PointFrom: the single point of a unit interval; a run-time error for any other interval."""
    if iv is None:
        return None
    s, e = _start(iv), _end(iv)
    if s.value is not None and e.value is not None and _eq(s, e) is True:
        return s.value
    raise CqlError(f"Cannot extract a single point from {iv}: it is not a unit interval")


# ----------------------------------------------------------------------------------- membership operators


def _low_ok(iv: Interval, p: Any, precision: str | None) -> bool | None:
    if iv.low is None:
        return True if iv.low_closed else _le(_start(iv), _R.of(p), precision)
    c = values.compare(iv.low, p, precision)
    if c is None:
        return None
    return c <= 0 if iv.low_closed else c < 0


def _high_ok(iv: Interval, p: Any, precision: str | None) -> bool | None:
    if iv.high is None:
        return True if iv.high_closed else _le(_R.of(p), _end(iv), precision)
    c = values.compare(p, iv.high, precision)
    if c is None:
        return None
    return c <= 0 if iv.high_closed else c < 0


def contains(iv: Interval | None, point: Any, precision: str | None = None) -> bool | None:
    """CQL Contains: false for a null interval, null for a null point."""
    if iv is None:
        return False
    if point is None:
        return None
    return _and(_low_ok(iv, point, precision), _high_ok(iv, point, precision))


def in_(point: Any, iv: Interval | None, precision: str | None = None) -> bool | None:
    """CQL In / during (point): null for a null point, false for a null interval."""
    if point is None:
        return None
    if iv is None:
        return False
    return contains(iv, point, precision)


def includes(a: Interval | None, b: Any, precision: str | None = None) -> bool | None:
    """CQL Includes: interval-interval (null if either is null), or interval-point (= contains)."""
    if b is not None and not isinstance(b, Interval):
        return contains(a, b, precision)
    if a is None or b is None:
        return None
    return _and(_le(_start(a), _start(b), precision), _le(_end(b), _end(a), precision))


def included_in(a: Any, b: Interval | None, precision: str | None = None) -> bool | None:
    """CQL IncludedIn / during: interval-interval (null if either is null), or point-interval (= in)."""
    if a is not None and not isinstance(a, Interval):
        return in_(a, b, precision)
    if a is None or b is None:
        return None
    return includes(b, a, precision)


def proper_contains(iv: Interval | None, point: Any, precision: str | None = None) -> bool | None:
    """CQL ProperContains / ProperIn (interval, point): the point is after the start and before the end of
    the interval (so never a boundary point); null when either is null."""
    if iv is None or point is None:
        return None
    p = _R.of(point)
    return _and(contains(iv, point, precision), _lt(_start(iv), p, precision), _lt(p, _end(iv), precision))


def proper_includes(a: Interval | None, b: Any, precision: str | None = None) -> bool | None:
    """CQL ProperIncludes: includes, and the two are not the same interval (not the unit interval of b)."""
    if b is not None and not isinstance(b, Interval):
        if a is None:
            return False
        p = _R.of(b)
        return _and(contains(a, b, precision), _or(_lt(_start(a), p, precision), _lt(p, _end(a), precision)))
    if a is None or b is None:
        return None
    return _and(includes(a, b, precision),
                _or(_lt(_start(a), _start(b), precision), _lt(_end(b), _end(a), precision)))


def proper_included_in(a: Any, b: Interval | None, precision: str | None = None) -> bool | None:
    """CQL ProperIncludedIn / properly during."""
    if a is not None and not isinstance(a, Interval):
        return proper_includes(b, a, precision)  # point overload: false for a null interval
    if a is None or b is None:
        return None
    return proper_includes(b, a, precision)


# --------------------------------------------------------------------------------------- timing operators


def overlaps(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _and(_le(_start(a), _end(b), precision), _le(_start(b), _end(a), precision))


def overlaps_before(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    """a overlaps b and starts before it."""
    if a is None or b is None:
        return None
    return _and(overlaps(a, b, precision), _lt(_start(a), _start(b), precision))


def overlaps_after(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    """a overlaps b and ends after it."""
    if a is None or b is None:
        return None
    return _and(overlaps(a, b, precision), _lt(_end(b), _end(a), precision))


def meets_before(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    """The end of a is the predecessor of the start of b."""
    if a is None or b is None:
        return None
    return _eq(_end(a), _r_pred(_start(b)), precision)


def meets_after(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    """The start of a is the successor of the end of b."""
    if a is None or b is None:
        return None
    return _eq(_start(a), _r_succ(_end(b)), precision)


def meets(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _or(meets_before(a, b, precision), meets_after(a, b, precision))


def starts(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _and(_eq(_start(a), _start(b), precision), _le(_end(a), _end(b), precision))


def ends(a: Interval | None, b: Interval | None, precision: str | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _and(_le(_start(b), _start(a), precision), _eq(_end(a), _end(b), precision))


def before(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL Before (either argument an interval or a point): the end of a is less than the start of b."""
    if a is None or b is None:
        return None
    return _lt(_as_range(a, "end"), _as_range(b, "start"), precision)


def after(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL After (either argument an interval or a point): the start of a is greater than the end of b."""
    if a is None or b is None:
        return None
    return _lt(_as_range(b, "end"), _as_range(a, "start"), precision)


def same_or_before(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL SameOrBefore / on or before for intervals (points act as unit intervals)."""
    if a is None or b is None:
        return None
    return _le(_as_range(a, "end"), _as_range(b, "start"), precision)


def same_or_after(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL SameOrAfter / on or after for intervals (points act as unit intervals)."""
    if a is None or b is None:
        return None
    return _le(_as_range(b, "end"), _as_range(a, "start"), precision)


def same_as(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL SameAs for intervals: same start and same end (at the precision)."""
    if a is None or b is None:
        return None
    return _and(_eq(_as_range(a, "start"), _as_range(b, "start"), precision),
                _eq(_as_range(a, "end"), _as_range(b, "end"), precision))


# ------------------------------------------------------------------------------------- interval-valued ops


def _first(a: Interval, b: Interval, ra: _R, rb: _R, side: str) -> Interval:
    """Which of a/b holds the lesser range (the one with a null boundary on that side when undecided)."""
    r = _le(ra, rb)
    if r is True:
        return a
    if r is False:
        return b
    a_null = (a.low if side == "low" else a.high) is None
    return a if a_null else b


def _last(a: Interval, b: Interval, ra: _R, rb: _R, side: str) -> Interval:
    r = _le(ra, rb)
    if r is True:
        return b
    if r is False:
        return a
    a_null = (a.low if side == "low" else a.high) is None
    return a if a_null else b


def _point_type(a: Interval, b: Interval) -> str | None:
    return a.point_type or b.point_type


def union(a: Interval | None, b: Interval | None) -> Interval | None:
    """CQL Union: the covering interval when a and b overlap or meet; otherwise null."""
    if a is None or b is None:
        return None
    if _or(overlaps(a, b), meets(a, b)) is not True:
        return None
    lo = _first(a, b, _start(a), _start(b), "low")
    hi = _last(a, b, _end(a), _end(b), "high")
    return Interval(lo.low, hi.high, lo.low_closed, hi.high_closed, _point_type(a, b))


def intersect(a: Interval | None, b: Interval | None) -> Interval | None:
    """CQL Intersect: the overlapping portion; null when they do not overlap."""
    if a is None or b is None:
        return None
    if overlaps(a, b) is not True:
        return None
    lo = _last(a, b, _start(a), _start(b), "low")
    hi = _first(a, b, _end(a), _end(b), "high")
    return Interval(lo.low, hi.high, lo.low_closed, hi.high_closed, _point_type(a, b))


def except_(a: Interval | None, b: Interval | None) -> Interval | None:
    """CQL Except: the part of a not in b; null when b is inside a without starting or ending it (the result
    would be two intervals), when b covers a, or when the boundaries cannot be compared."""
    if a is None or b is None:
        return None
    ov = overlaps(a, b)
    if ov is not True:
        return a if ov is False else None
    sa, ea, sb, eb = _start(a), _end(a), _start(b), _end(b)
    if _lt(sa, sb) is True and _le(ea, eb) is True and sb.value is not None:
        return Interval(a.low, predecessor(sb.value), a.low_closed, True, a.point_type)
    if _le(sb, sa) is True and _lt(eb, ea) is True and eb.value is not None:
        return Interval(successor(eb.value), a.high, True, a.high_closed, a.point_type)
    return None


# ------------------------------------------------------------------------------------- collapse, expand


def _order(a: Interval, b: Interval) -> int:
    for ra, rb in ((_start(a), _start(b)), (_end(a), _end(b))):
        if _lt(ra, rb) is True:
            return -1
        if _lt(rb, ra) is True:
            return 1
    return 0


def _num_value(x: Any, unit: str | None) -> Decimal | None:
    """A numeric point as a Decimal (Quantity values converted to ``unit``)."""
    if isinstance(x, Quantity):
        return convert(x.value, x.unit, unit or x.unit)
    if isinstance(x, (int, Decimal)) and not isinstance(x, bool):
        return Decimal(x)
    return None


def _per_value(per: Any, unit: str | None) -> Decimal | None:
    """The per argument as a Decimal in the points' unit ('1' for Integer/Decimal points)."""
    if per is None:
        return None
    if isinstance(per, Quantity):
        v = convert(per.value, per.unit, unit or "1")
        if v is None:
            raise CqlError(f"The per quantity {per} is not compatible with the interval points")
        return v
    if isinstance(per, (int, Decimal)) and not isinstance(per, bool):
        return Decimal(per)
    raise CqlError(f"Invalid per argument: {per!r}")


def _temporal_unit(per: Any) -> str | None:
    """The date/time precision named by a temporal per quantity ('day' for '1 day', 'd', 'days'...)."""
    norm = _dt_fn("normalize_precision")
    if not isinstance(per, Quantity) or norm is None:
        return None
    try:
        return norm(per.unit)
    except CqlError:
        return None


def _comparison_precision(unit: str | None) -> str | None:
    return "day" if unit == "week" else unit


def _merge_check(cur: Interval, nxt: Interval, per: Any, anchor: Any) -> bool:
    """Whether the next interval (sorted by start) joins the current one: they overlap or meet, at the
    granularity of ``per`` (partitions of size per aligned on the first interval's start)."""
    s_next, e_cur = _start(nxt), _end(cur)
    if per is not None and s_next.value is not None and e_cur.value is not None:
        sample = s_next.value
        if _is_numeric(sample):
            unit = anchor.unit if isinstance(anchor, Quantity) else None
            step = _per_value(per, unit)
            a0, s, e = _num_value(anchor, unit), _num_value(s_next.value, unit), _num_value(e_cur.value, unit)
            if step is not None and step > 0 and None not in (a0, s, e):
                k_s = ((s - a0) / step).to_integral_value(rounding=ROUND_FLOOR)
                k_e = ((e - a0) / step).to_integral_value(rounding=ROUND_FLOOR)
                return k_s <= k_e + 1
        else:
            add, unit = _dt_fn("add"), _temporal_unit(per)
            if add is None or unit is None:
                raise CqlError(f"Invalid per argument for date/time intervals: {per!r}")
            moved = add(e_cur.value, per.value, per.unit)
            if moved is None:
                return True
            return _le(s_next, _R.of(moved), _comparison_precision(unit)) is True
    return _le(s_next, _r_succ(e_cur)) is True


def collapse(intervals: list[Interval | None] | None, per: Any = None) -> list[Interval] | None:
    """CQL Collapse: merge the intervals that overlap or meet (nulls dropped); ``per`` (a Quantity) sets the
    granularity: numeric points use partitions of size per from the first start, date/time points compare at
    the per's precision after adding it (``datetime.add``) to the end."""
    if intervals is None:
        return None
    items = sorted((i for i in intervals if i is not None), key=cmp_to_key(_order))
    if not items:
        return []
    anchor = _start(items[0]).value
    out: list[Interval] = []
    cur = items[0]
    for nxt in items[1:]:
        if _merge_check(cur, nxt, per, anchor):
            hi = _last(cur, nxt, _end(cur), _end(nxt), "high")
            cur = Interval(cur.low, hi.high, cur.low_closed, hi.high_closed, cur.point_type)
        else:
            out.append(cur)
            cur = nxt
    out.append(cur)
    return out


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def expand(argument: Interval | list[Interval | None] | None, per: Any = None) -> list[Any] | None:
    """CQL Expand. A list of intervals gives the unit intervals of size ``per`` covering them (partitions
    aligned on the first interval's start, duplicates removed, ascending); a single interval gives the list of
    the partition starting points. Intervals with a null boundary contribute nothing.

    Numeric points: boundaries are truncated to the precision of ``per`` (``expand {Interval[10.0, 12.5]} per 1``
    gives ``[10, 10], [11, 11], [12, 12]``) and a boundary coarser than ``per`` stands for its whole range
    (``expand {Interval[10, 10]} per 0.1`` gives ``[10.0, 10.0] ... [10.9, 10.9]``). Without ``per``: 1 for
    Integer, the coarsest boundary precision for Decimal/Quantity.
    """
    if argument is None:
        return None
    if isinstance(argument, Interval):
        return [iv.low for iv in _expand_list([argument], per)]
    return _expand_list([i for i in argument if i is not None], per)


def _expand_list(items: list[Interval], per: Any) -> list[Interval]:
    items = [i for i in items if i.low is not None and i.high is not None]
    if not items:
        return []
    items.sort(key=cmp_to_key(_order))
    if not _is_numeric(items[0].low):
        return _expand_temporal(items, per)
    return _expand_numeric(items, per)


def _expand_numeric(items: list[Interval], per: Any) -> list[Interval]:
    first = items[0].low
    unit = first.unit if isinstance(first, Quantity) else None
    bounds: list[tuple[Decimal, Decimal]] = []
    for iv in items:
        s, e = _num_value(start(iv), unit), _num_value(end(iv), unit)
        if s is None or e is None:
            raise CqlError(f"Cannot expand {iv}: its boundaries are not commensurable")
        bounds.append((s, e))
    integers = all(_is_int(iv.low) and _is_int(iv.high) for iv in items)
    step = _per_value(per, unit)
    if step is None:
        if integers:
            step = Decimal(1)
        else:
            step = Decimal(1).scaleb(-min(min(_places(s), _places(e)) for s, e in bounds))
    if step <= 0:
        raise CqlError("The per argument of expand must be positive")
    exp = step.as_tuple().exponent
    unit_step = Decimal(1).scaleb(min(0, exp if isinstance(exp, int) else 0))
    as_int = integers and unit_step == 1

    def truncate_low(s: Decimal) -> Decimal:
        return s.quantize(unit_step, rounding=ROUND_FLOOR)

    def extend_high(e: Decimal) -> Decimal:
        own = Decimal(1).scaleb(-_places(e))
        if own > unit_step:  # a coarser boundary stands for its whole range: 10 per 0.1 -> 10.9
            return (e + own - unit_step).quantize(unit_step)
        return e.quantize(unit_step, rounding=ROUND_FLOOR)

    anchor = truncate_low(bounds[0][0])
    seen: dict[tuple[Decimal, Decimal], None] = {}
    for s, e in bounds:
        low, high = truncate_low(s), extend_high(e)
        k = ((low - anchor) / step).to_integral_value(rounding=ROUND_CEILING)
        x = (anchor + k * step).quantize(unit_step)
        while x + step - unit_step <= high:
            seen.setdefault((x, x + step - unit_step), None)
            if len(seen) > _EXPAND_LIMIT:
                raise CqlError(f"expand would produce more than {_EXPAND_LIMIT} intervals")
            x += step

    def point(v: Decimal) -> Any:
        if unit is not None:
            return Quantity(v, unit)
        return int(v) if as_int else v

    return [Interval(point(lo), point(hi), point_type=items[0].point_type)
            for lo, hi in sorted(seen, key=lambda t: t[0])]


def _expand_temporal(items: list[Interval], per: Any) -> list[Interval]:
    dt = _dt()
    if dt is None or not all(hasattr(dt, f) for f in ("add", "truncate_to", "normalize_precision")):
        # TODO: needs gateway.cql.datetime add(point, value, unit), truncate_to(point, precision)
        raise NotImplementedError("expand over Date/DateTime/Time intervals needs gateway.cql.datetime "
                                  "add(point, value, unit), truncate_to(point, precision), normalize_precision")
    order = {p: i for i, p in enumerate(("year", "month", "week", "day", "hour", "minute", "second",
                                         "millisecond"))}
    if per is None:  # the coarsest precision of the boundaries
        unit = min((v.precision for iv in items for v in (iv.low, iv.high)), key=order.__getitem__)
        per = Quantity(Decimal(1), unit)
    unit = _temporal_unit(per)
    if unit is None or per.value <= 0:
        raise CqlError(f"Invalid per argument for date/time intervals: {per!r}")
    trunc = "day" if unit == "week" else unit

    def partition_end(x: Any) -> Any:
        nxt = dt.add(x, per.value, per.unit)
        return None if nxt is None else dt.predecessor(nxt)

    found: list[Interval] = []
    anchor: Any = None
    for iv in items:
        s, e = start(iv), end(iv)
        if s is None or e is None or order[s.precision] < order[trunc] or order[e.precision] < order[trunc]:
            continue  # a boundary less precise than per: adding per to it gives null
        s, e = dt.truncate_to(s, trunc), dt.truncate_to(e, trunc)
        if anchor is None:
            anchor = s
        x, steps = anchor, 0
        while x is not None and values.compare(x, s) == -1:  # align on the first interval's partitions
            x = dt.add(x, per.value, per.unit)
            steps += 1
            if steps > _EXPAND_LIMIT:
                raise CqlError(f"expand would take more than {_EXPAND_LIMIT} steps")
        while x is not None:
            pe = partition_end(x)
            if pe is None or values.compare(pe, e) not in (-1, 0):
                break
            if not any(values.equal(x, f.low) for f in found[-1:]):
                found.append(Interval(x, pe, point_type=iv.point_type))
            if len(found) > _EXPAND_LIMIT:
                raise CqlError(f"expand would produce more than {_EXPAND_LIMIT} intervals")
            x = dt.add(x, per.value, per.unit)
    unique: dict[Any, Interval] = {}
    for f in found:
        unique.setdefault((f.low, f.high), f)
    return sorted(unique.values(), key=cmp_to_key(_order))

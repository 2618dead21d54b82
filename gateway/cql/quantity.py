"""CQL Quantity and Ratio values, with UCUM unit conversion.

Unit conversion goes through the ``ucumvert`` library (a UCUM grammar parser that maps UCUM codes onto a pint
unit registry, generated from the official ``ucum-essence.xml``), wrapped in the single function ``convert``.
No unit table is kept here beyond the CQL calendar-duration keywords, which are not UCUM.

CQL rules implemented (Author's Guide, "Quantities"):

* calendar keywords (``year``/``years`` ... ``millisecond``/``milliseconds``) are accepted as units;
* ``week``, ``day``, ``hour``, ``minute``, ``second``, ``millisecond`` are *equal* to UCUM ``wk``, ``d``, ``h``,
  ``min``, ``s``, ``ms``;
* ``year`` and ``month`` are calendar durations: comparable with each other (1 year = 12 months) but not with
  any other duration unit (UCUM ``a``/``mo``/``d``..., or calendar ``day``...), so ``=``, ``<``... return null;
  for *equivalence* (``~``) ``year`` ~ ``'a'`` and ``month`` ~ ``'mo'``, so ``1 year ~ 1 'a'`` is true.

Null propagation: every function returns None when an operand is None. Values are ``decimal.Decimal``; results
of conversion and division are rounded to CQL's 8 decimal places.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from .values import CqlError

__all__ = [
    "Quantity",
    "Ratio",
    "abs_",
    "add",
    "can_convert_quantity",
    "convert",
    "convert_quantity",
    "divide",
    "divide_units",
    "is_valid_unit",
    "multiply",
    "multiply_units",
    "negate",
    "subtract",
    "to_string",
]

_STEP = Decimal("1E-8")
_CALENDAR = {
    "year": "year", "years": "year",
    "month": "month", "months": "month",
    "week": "week", "weeks": "week",
    "day": "day", "days": "day",
    "hour": "hour", "hours": "hour",
    "minute": "minute", "minutes": "minute",
    "second": "second", "seconds": "second",
    "millisecond": "millisecond", "milliseconds": "millisecond",
}
#: the UCUM unit each calendar keyword corresponds to (equal below months, only equivalent for year/month)
CALENDAR_TO_UCUM = {
    "year": "a", "month": "mo", "week": "wk", "day": "d",
    "hour": "h", "minute": "min", "second": "s", "millisecond": "ms",
}
_MONTHS = {"year": Decimal(12), "month": Decimal(1)}


# --------------------------------------------------------------------------------------------------- UCUM


class _Ucum:
    """Lazily built ucumvert/pint registry (building it parses the UCUM grammar: ~0.5 s, done once)."""

    _lock = threading.Lock()
    _state: tuple[Any, Any, Any, Any] | None = None

    @classmethod
    def get(cls) -> tuple[Any, Any, Any, Any]:
        if cls._state is None:
            with cls._lock:
                if cls._state is None:
                    from ucumvert import PintUcumRegistry, UcumToPintTransformer, get_ucum_parser, parse_ucum

                    ureg = PintUcumRegistry(non_int_type=Decimal)
                    cls._state = (ureg, UcumToPintTransformer(ureg=ureg), get_ucum_parser(), parse_ucum)
        return cls._state


@lru_cache(maxsize=1024)
def _parse_ucum(unit: str) -> tuple[Decimal, Any] | None:
    """(numeric factor, pint unit) for a UCUM code, or None when it is not valid UCUM."""
    ureg, transformer, parser, parse_ucum = _Ucum.get()
    try:
        parsed = transformer.transform(parse_ucum(unit, parser))
    except Exception:  # ucumvert raises InvalidUcumError, lark VisitError, pint UndefinedUnitError...
        return None
    if not hasattr(parsed, "units"):  # an annotation alone, e.g. '{tablet}', is the unity
        return Decimal(1), ureg.dimensionless
    return Decimal(str(parsed.magnitude)), parsed.units


def _ucum_convert(value: Decimal, from_unit: str, to_unit: str) -> Decimal | None:
    src, dst = _parse_ucum(from_unit), _parse_ucum(to_unit)
    if src is None or dst is None:
        return None
    ureg = _Ucum.get()[0]
    try:
        out = ureg.Quantity(value * src[0], src[1]).to(dst[1]).magnitude
        return Decimal(str(out)) / dst[0]
    except Exception:  # pint DimensionalityError (not commensurable), offset-unit errors
        return None


def _canon(unit: str | None) -> str:
    if unit is None or unit == "":
        return "1"
    return _CALENDAR.get(unit, unit)


def _fit(d: Decimal) -> Decimal:
    """Round to CQL's 8 decimal places and drop exponent notation (1E+3 -> 1000)."""
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -8:
        d = d.quantize(_STEP, rounding=ROUND_HALF_UP)
    d = d.normalize()
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp > 0:
        d = d.quantize(Decimal(1))
    return d


def convert(value: Decimal | int | None, from_unit: str | None, to_unit: str | None, *,
            strict: bool = True) -> Decimal | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``; None when the units are not commensurable.

    Units are UCUM codes or CQL calendar keywords. With ``strict`` (comparison/equality semantics) calendar
    years and months convert only to each other; with ``strict=False`` (equivalence semantics) ``year`` is
    treated as UCUM ``a`` and ``month`` as ``mo``.
    """
    if value is None:
        return None
    value = Decimal(value)
    src, dst = _canon(from_unit), _canon(to_unit)
    if src == dst:
        return value
    if src in _MONTHS and dst in _MONTHS:
        return _fit(value * _MONTHS[src] / _MONTHS[dst])
    if strict and (src in _MONTHS or dst in _MONTHS):
        return None
    src, dst = CALENDAR_TO_UCUM.get(src, src), CALENDAR_TO_UCUM.get(dst, dst)
    if src == dst:
        return value
    try:
        out = _ucum_convert(value, src, dst)
    except InvalidOperation:
        return None
    return None if out is None else _fit(out)


def is_valid_unit(unit: str | None) -> bool:
    """A CQL calendar keyword or a valid UCUM code."""
    u = _canon(unit)
    return u == "1" or u in CALENDAR_TO_UCUM or _parse_ucum(u) is not None


# ----------------------------------------------------------------------------------------------- Quantity


def _as_decimal(v: Any) -> Decimal:
    if isinstance(v, bool):
        raise CqlError("A Boolean is not a Quantity value")
    if isinstance(v, Decimal):
        return v
    if isinstance(v, (int, str)):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    raise CqlError(f"Not a Quantity value: {v!r}")


@dataclass(frozen=True)
class Quantity:
    """CQL System.Quantity: a Decimal value and a UCUM unit (or calendar keyword); '1' is the default unit."""

    value: Decimal
    unit: str = "1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _as_decimal(self.value))
        if self.unit is None or self.unit == "":
            object.__setattr__(self, "unit", "1")

    def __str__(self) -> str:
        return to_string(self) or ""

    def _other(self, other: Any) -> Quantity | None:
        if isinstance(other, Quantity):
            return other
        if isinstance(other, (int, Decimal)) and not isinstance(other, bool):
            return Quantity(Decimal(other), "1")  # implicit Integer/Decimal -> Quantity conversion
        return None

    def cql_compare(self, other: Any, precision: str | None = None) -> int | None:
        """Order against ``other`` converted to this unit; None when null or not commensurable."""
        if other is None:
            return None
        o = self._other(other)
        if o is None:
            raise CqlError(f"Cannot compare Quantity with {type(other).__name__}")
        v = convert(o.value, o.unit, self.unit)
        if v is None:
            return None
        return (self.value > v) - (self.value < v)

    def cql_equal(self, other: Any) -> bool | None:
        if other is None:
            return None
        o = self._other(other)
        if o is None:
            return False
        c = self.cql_compare(o)
        return None if c is None else c == 0

    def cql_equivalent(self, other: Any) -> bool:
        """Equal after conversion (calendar year ~ 'a', month ~ 'mo'), at the precision of the less precise."""
        o = self._other(other)
        if o is None:
            return False
        v = convert(o.value, o.unit, self.unit, strict=False)
        if v is None:
            return False
        places = min(_places(self.value), _places(v))
        q = Decimal(1).scaleb(-places)
        return self.value.quantize(q, rounding=ROUND_HALF_UP) == v.quantize(q, rounding=ROUND_HALF_UP)


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def to_string(q: Quantity | None) -> str | None:
    """CQL ToString(Quantity): ``value 'unit'``, e.g. ``5.5 'cm'``."""
    if q is None:
        return None
    return f"{format(q.value, 'f')} '{q.unit}'"


def convert_quantity(q: Quantity | None, unit: str | None) -> Quantity | None:
    """CQL ConvertQuantity: ``q`` in ``unit``; None when null or the conversion is not possible."""
    if q is None or unit is None:
        return None
    v = convert(q.value, q.unit, unit)
    return None if v is None else Quantity(v, unit)


def can_convert_quantity(q: Quantity | None, unit: str | None) -> bool | None:
    """CQL CanConvertQuantity."""
    if q is None or unit is None:
        return None
    return convert(q.value, q.unit, unit) is not None


# ------------------------------------------------------------------------------------------------ Arithmetic


def _q(v: Any) -> Quantity:
    if isinstance(v, Quantity):
        return v
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return Quantity(Decimal(v), "1")
    raise CqlError(f"Not a Quantity: {v!r}")


def add(a: Quantity | None, b: Quantity | None) -> Quantity | None:
    """a + b, in a's unit (b converted); None when null or the units are not commensurable."""
    if a is None or b is None:
        return None
    a, b = _q(a), _q(b)
    v = convert(b.value, b.unit, a.unit)
    return None if v is None else Quantity(a.value + v, a.unit)


def subtract(a: Quantity | None, b: Quantity | None) -> Quantity | None:
    """a - b, in a's unit (b converted); None when null or the units are not commensurable."""
    if a is None or b is None:
        return None
    a, b = _q(a), _q(b)
    v = convert(b.value, b.unit, a.unit)
    return None if v is None else Quantity(a.value - v, a.unit)


def negate(a: Quantity | None) -> Quantity | None:
    return None if a is None else Quantity(-a.value, a.unit)


def abs_(a: Quantity | None) -> Quantity | None:
    return None if a is None else Quantity(abs(a.value), a.unit)


_ATOM = re.compile(r"[A-Za-z]+")


def _ucum_form(unit: str) -> str:
    u = _canon(unit)
    return CALENDAR_TO_UCUM.get(u, u)


def _group(unit: str) -> str:
    """A UCUM term usable as the right operand of '.' or '/'."""
    return f"({unit})" if "." in unit or "/" in unit else unit


def _left(unit: str) -> str:
    """A UCUM term usable as the left operand of '.' or '/' ('/d' -> '1/d': a leading '/' binds everything)."""
    return "1" + unit if unit.startswith("/") else unit


def multiply_units(a: str, b: str) -> str:
    """The UCUM unit of a product: 'kg' x 'm' -> 'kg.m', 'm' x 'm' -> 'm2', '1' x 'g' -> 'g'."""
    a, b = _ucum_form(a), _ucum_form(b)
    if a == "1":
        return b
    if b == "1":
        return a
    if a == b and _ATOM.fullmatch(a):
        return a + "2"
    if b.startswith("/"):  # a.(1/x) = a/x
        return f"{_left(a)}/{_group(b[1:])}"
    return f"{_left(a)}.{_group(b)}"


def divide_units(a: str, b: str) -> str:
    """The UCUM unit of a quotient: 'kg' / 'm2' -> 'kg/m2', 'g' / 'g' -> '1', '1' / 'd' -> '/d'."""
    a, b = _ucum_form(a), _ucum_form(b)
    if b == "1":
        return a
    if a == b:
        return "1"
    if b.startswith("/"):  # a/(1/x) = a.x
        return multiply_units(a, b[1:])
    if a == "1":
        return "/" + b if _ATOM.fullmatch(b) else f"1/{_group(b)}"
    return f"{_left(a)}/{_group(b)}"


def multiply(a: Quantity | Decimal | int | None, b: Quantity | Decimal | int | None) -> Quantity | None:
    """a * b with the product unit; a right operand commensurable with a's unit is converted first."""
    if a is None or b is None:
        return None
    a, b = _q(a), _q(b)
    if _canon(a.unit) != _canon(b.unit) and "1" not in (_canon(a.unit), _canon(b.unit)):
        v = convert(b.value, b.unit, a.unit)
        if v is not None:
            b = Quantity(v, a.unit)
    return Quantity(_fit(a.value * b.value), multiply_units(a.unit, b.unit))


def divide(a: Quantity | Decimal | int | None, b: Quantity | Decimal | int | None) -> Quantity | None:
    """a / b with the quotient unit (commensurable units cancel to '1'); None when null or b is zero."""
    if a is None or b is None:
        return None
    a, b = _q(a), _q(b)
    if _canon(a.unit) != _canon(b.unit) and _canon(b.unit) != "1":
        v = convert(b.value, b.unit, a.unit)
        if v is not None:
            b = Quantity(v, a.unit)
    if b.value == 0:
        return None
    return Quantity(_fit(a.value / b.value), divide_units(a.unit, b.unit))


# ---------------------------------------------------------------------------------------------------- Ratio


@dataclass(frozen=True)
class Ratio:
    """CQL System.Ratio: numerator and denominator Quantities."""

    numerator: Quantity
    denominator: Quantity

    def __str__(self) -> str:
        return f"{to_string(self.numerator)}:{to_string(self.denominator)}"

    def cql_equal(self, other: Any) -> bool | None:
        """Equal numerators and equal denominators (1:100 = 10:1000 is false)."""
        if other is None:
            return None
        if not isinstance(other, Ratio):
            return False
        n = self.numerator.cql_equal(other.numerator)
        d = self.denominator.cql_equal(other.denominator)
        if n is False or d is False:
            return False
        return None if n is None or d is None else True

    def cql_equivalent(self, other: Any) -> bool:
        """The same ratio (1:100 ~ 10:1000)."""
        if not isinstance(other, Ratio):
            return False
        left = divide(self.numerator, self.denominator)
        right = divide(other.numerator, other.denominator)
        if left is None or right is None:
            return left is None and right is None
        return left.cql_equivalent(right)

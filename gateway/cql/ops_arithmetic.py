"""Arithmetic operators (CQL §16 Arithmetic Operators): Add, Subtract, Multiply, Divide, TruncatedDivide,
Modulo, Negate, Abs, Ceiling, Floor, Truncate, Round, Ln, Exp, Log, Power, Successor, Predecessor, MinValue,
MaxValue, Precision, LowBoundary, HighBoundary.

Numbers are Python ``int`` (Integer, 32-bit; Long, 64-bit) and ``decimal.Decimal`` (at most 28 digits, 8 of
them after the point, so within +/-(10^28 - 1) / 10^8: results are rounded half-up to 8 places). An Integer
operand meeting a Decimal is promoted. A result that cannot be represented (overflow, division by zero, Log
of a non-positive number) is null, except Exp past the Decimal range and Ln(0), which overflow and are
run-time errors (the conformance suite's Exp1000, Ln0). Literals out of range are refused at compile time
(``ops_refs``). Whether an integer operation is Long is read from the ELM (signature, result type, Long
literals), since Python has one int type. Quantities go through ``quantity.py`` (UCUM), temporal values through
``datetime.py`` (calendar arithmetic).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .fhirmodel import Node, primitive_value
from .values import CqlError

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
DEC_MAX = Decimal("99999999999999999999.99999999")  # (10^28 - 1) / 10^8, CQL §"Decimal"
DEC_MIN = DEC_MAX.copy_negate()  # exact: unary minus would round to the default 28-digit context
DEC_STEP = Decimal("1E-8")
DEC_PLACES = 8
_CTX = decimal.Context(prec=60, rounding=ROUND_HALF_UP, Emax=999999, Emin=-999999,
                       traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])


# ------------------------------------------------------------------------------------------- number helpers


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def unwrap(v: Any) -> Any:
    """A FHIR primitive Node as its System value (FHIRHelpers normally does this in the ELM)."""
    if isinstance(v, Node) and not isinstance(v.value, (dict, list)):
        return primitive_value(v)
    return v


def fit_int(v: int, long: bool) -> int | None:
    """v if it fits the Integer (or Long) range, else null."""
    lo, hi = (LONG_MIN, LONG_MAX) if long else (INT_MIN, INT_MAX)
    return v if lo <= v <= hi else None


def fit_decimal(d: Decimal) -> Decimal | None:
    """d rounded half-up to CQL's 8 decimal places; null when out of the Decimal range or not finite."""
    if not d.is_finite() or (d.adjusted() > 20 and not d.is_zero()):  # far out of range: quantize would fail
        return None
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -DEC_PLACES:
        d = d.quantize(DEC_STEP, rounding=ROUND_HALF_UP, context=_CTX)
    elif isinstance(exp, int) and exp > 0:
        d = d.quantize(Decimal(1), context=_CTX)  # no exponent notation (1E+3 -> 1000)
    if d > DEC_MAX or d < DEC_MIN:
        return None
    if d.is_zero() and d.is_signed():
        d = d.copy_abs()
    return d


def _dec(v: Any) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(v)


def _decimal_op(fn: Callable[[], Decimal]) -> Decimal | None:
    try:
        return fit_decimal(fn())
    except (decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, ValueError):
        return None


def _is_type(v: Any, name: str) -> bool:
    return type(v).__name__ == name


def _is_temporal(v: Any) -> bool:
    return type(v).__name__ in ("Date", "DateTime", "Time")


def is_long_node(node: dict[str, Any]) -> bool:
    """Does the ELM say this integer operation is on Longs (rather than 32-bit Integers)? Its own signature or
    result type says Long, or an operand is a Long literal, a ToLong, a cast to Long or typed Long."""
    own = [s.get("name", "") for s in node.get("signature") or [] if isinstance(s, dict)]
    own.append(str(node.get("resultTypeName") or ""))
    if any(n.endswith("}Long") for n in own):
        return True
    ops = node.get("operand")
    for o in ops if isinstance(ops, list) else [ops]:
        if not isinstance(o, dict):
            continue
        if o.get("type") == "ToLong":
            return True
        if any(str(o.get(k) or "").endswith("}Long") for k in ("resultTypeName", "valueType", "asType", "toType")):
            return True
    return False


def _long(long: bool, *vals: int) -> bool:
    """Long arithmetic when the ELM says so, or when an operand is itself outside the Integer range."""
    return long or any(not INT_MIN <= v <= INT_MAX for v in vals)


def _uncertain(a: Any, b: Any) -> bool:
    """Is one operand a precision-based duration range (``datetime.Uncertainty``) and the other an integer or
    range? Their arithmetic is interval arithmetic."""
    names = (type(a).__name__, type(b).__name__)
    return "Uncertainty" in names and all(n == "Uncertainty" or is_int(v) for n, v in zip(names, (a, b), strict=True))


def _as_uncertainty(v: Any) -> Any:
    from .datetime import Uncertainty

    return v if isinstance(v, Uncertainty) else Uncertainty(v, v)


def _unsupported(op: str, *vals: Any) -> CqlError:
    return CqlError(f"{op} is not defined for {', '.join(type(v).__name__ for v in vals)}")


def _qmod() -> Any:
    from . import quantity

    return quantity


def _to_quantity(v: Any) -> Any:
    Q = _qmod().Quantity
    return v if isinstance(v, Q) else Q(_dec(v), "1")


# ------------------------------------------------------------------------------------------------- operations


def add(a: Any, b: Any, long: bool = False) -> Any:
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_int(a) and is_int(b):
        return fit_int(a + b, _long(long, a, b))
    if _uncertain(a, b):
        return _as_uncertainty(a).plus(b)
    if is_number(a) and is_number(b):
        return _decimal_op(lambda: _CTX.add(_dec(a), _dec(b)))
    if _is_type(a, "Quantity") or _is_type(b, "Quantity"):
        if _is_temporal(a):
            from . import datetime as dt

            return dt.add(a, b.value, b.unit)
        if _is_temporal(b):
            from . import datetime as dt

            return dt.add(b, a.value, a.unit)
        if is_number(a) or is_number(b) or (_is_type(a, "Quantity") and _is_type(b, "Quantity")):
            return _fit_quantity(_qmod().add(_to_quantity(a), _to_quantity(b)))
    raise _unsupported("Add", a, b)


def subtract(a: Any, b: Any, long: bool = False) -> Any:
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_int(a) and is_int(b):
        return fit_int(a - b, _long(long, a, b))
    if _uncertain(a, b):
        return _as_uncertainty(a).minus(b)
    if is_number(a) and is_number(b):
        return _decimal_op(lambda: _CTX.subtract(_dec(a), _dec(b)))
    if _is_temporal(a) and _is_type(b, "Quantity"):
        from . import datetime as dt

        return dt.subtract(a, b.value, b.unit)
    if (_is_type(a, "Quantity") or is_number(a)) and (_is_type(b, "Quantity") or is_number(b)):
        return _fit_quantity(_qmod().subtract(_to_quantity(a), _to_quantity(b)))
    raise _unsupported("Subtract", a, b)


def multiply(a: Any, b: Any, long: bool = False) -> Any:
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_int(a) and is_int(b):
        return fit_int(a * b, _long(long, a, b))
    if _uncertain(a, b):
        return _as_uncertainty(a).times(b)
    if is_number(a) and is_number(b):
        return _decimal_op(lambda: _CTX.multiply(_dec(a), _dec(b)))
    if (_is_type(a, "Quantity") or is_number(a)) and (_is_type(b, "Quantity") or is_number(b)):
        try:
            return _fit_quantity(_qmod().multiply(a, b))
        except (decimal.InvalidOperation, decimal.Overflow):
            return None
    raise _unsupported("Multiply", a, b)


def divide(a: Any, b: Any) -> Any:
    """CQL ``/``: always a Decimal (or Quantity); null when dividing by zero."""
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_number(a) and is_number(b):
        if b == 0:
            return None
        return _decimal_op(lambda: _CTX.divide(_dec(a), _dec(b)))
    if (_is_type(a, "Quantity") or is_number(a)) and (_is_type(b, "Quantity") or is_number(b)):
        try:
            return _fit_quantity(_qmod().divide(a, b))
        except (decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero):
            return None
    raise _unsupported("Divide", a, b)


def _trunc_div_int(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _quantity_pair(a: Any, b: Any) -> tuple[Any, Decimal] | None:
    """(a, b's value in a's unit) for Quantity div/mod; None when the units are not commensurable."""
    qa, qb = _to_quantity(a), _to_quantity(b)
    v = _qmod().convert(qb.value, qb.unit, qa.unit)
    return None if v is None else (qa, v)


def truncated_divide(a: Any, b: Any, long: bool = False) -> Any:
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_int(a) and is_int(b):
        return None if b == 0 else fit_int(_trunc_div_int(a, b), _long(long, a, b))
    if is_number(a) and is_number(b):
        if b == 0:
            return None
        return _decimal_op(lambda: _CTX.divide_int(_dec(a), _dec(b)))
    if _is_type(a, "Quantity") or _is_type(b, "Quantity"):
        pair = _quantity_pair(a, b)
        if pair is None or pair[1] == 0:
            return None
        qa, bv = pair
        v = _decimal_op(lambda: _CTX.divide_int(qa.value, bv))
        return None if v is None else _qmod().Quantity(v, qa.unit)
    raise _unsupported("TruncatedDivide", a, b)


def modulo(a: Any, b: Any, long: bool = False) -> Any:
    """The remainder of truncated division: its sign is the dividend's (-5 mod 3 = -2)."""
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if is_int(a) and is_int(b):
        if b == 0:
            return None
        return fit_int(a - b * _trunc_div_int(a, b), _long(long, a, b))
    if is_number(a) and is_number(b):
        if b == 0:
            return None
        return _decimal_op(lambda: _CTX.remainder(_dec(a), _dec(b)))
    if _is_type(a, "Quantity") or _is_type(b, "Quantity"):
        pair = _quantity_pair(a, b)
        if pair is None or pair[1] == 0:
            return None
        qa, bv = pair
        v = _decimal_op(lambda: _CTX.remainder(qa.value, bv))
        return None if v is None else _qmod().Quantity(v, qa.unit)
    raise _unsupported("Modulo", a, b)


def negate(a: Any, long: bool = False) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if is_int(a):
        return fit_int(-a, _long(long, a))
    if isinstance(a, Decimal):
        return fit_decimal(_CTX.minus(a))
    if _is_type(a, "Quantity"):
        return _qmod().Quantity(fit_decimal(_CTX.minus(a.value)), a.unit)
    if _is_type(a, "Uncertainty"):
        return a.negate()
    raise _unsupported("Negate", a)


def abs_(a: Any, long: bool = False) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if is_int(a):
        return fit_int(abs(a), _long(long, a))
    if isinstance(a, Decimal):
        return fit_decimal(abs(a))
    if _is_type(a, "Quantity"):
        return _qmod().Quantity(abs(a.value), a.unit)
    raise _unsupported("Abs", a)


def _to_integer(a: Any, rounding: str, op: str) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if is_int(a):
        return a
    if isinstance(a, Decimal):
        return fit_int(int(a.to_integral_value(rounding=rounding)), False)
    raise _unsupported(op, a)


def ceiling(a: Any) -> Any:
    return _to_integer(a, ROUND_CEILING, "Ceiling")


def floor(a: Any) -> Any:
    return _to_integer(a, ROUND_FLOOR, "Floor")


def truncate(a: Any) -> Any:
    return _to_integer(a, ROUND_DOWN, "Truncate")


def round_(a: Any, precision: Any = None) -> Any:
    """Traditional rounding (CQL §16 Round): halves go away from zero, Round(0.5) = 1, Round(-0.5) = -1,
    Round(-1.5) = -2 (the conformance suite's RoundNeg0D5, RoundNeg1D5)."""
    a, precision = unwrap(a), unwrap(precision)
    if a is None:
        return None
    if not is_number(a):
        raise _unsupported("Round", a)
    p = 0 if precision is None else int(precision)
    d = _dec(a)
    try:
        r = d.quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_UP, context=_CTX)
    except decimal.InvalidOperation:
        return None
    return fit_decimal(r)


def ln(a: Any) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if not is_number(a):
        raise _unsupported("Ln", a)
    if a == 0:  # -infinity: an overflow, so an error (the suite's Ln(0)); a negative number has no real Ln
        raise CqlError("Ln(0) is negative infinity, outside the Decimal range")
    if a < 0:
        return None
    return _decimal_op(lambda: _dec(a).ln(_CTX))


def exp(a: Any) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if not is_number(a):
        raise _unsupported("Exp", a)
    result = None if a > 1000 else _decimal_op(lambda: _dec(a).exp(_CTX))
    if result is None:  # beyond the Decimal range: an overflow is an error (the suite's Exp(1000))
        raise CqlError(f"Exp({a}) overflows the Decimal range")
    return result


def log(a: Any, base: Any) -> Any:
    a, base = unwrap(a), unwrap(base)
    if a is None or base is None:
        return None
    if not (is_number(a) and is_number(base)):
        raise _unsupported("Log", a, base)
    if a <= 0 or base <= 0 or base == 1:
        return None
    return _decimal_op(lambda: _CTX.divide(_dec(a).ln(_CTX), _dec(base).ln(_CTX)))


def power(a: Any, b: Any, long: bool = False) -> Any:
    a, b = unwrap(a), unwrap(b)
    if a is None or b is None:
        return None
    if not (is_number(a) and is_number(b)):
        raise _unsupported("Power", a, b)
    if is_int(a) and is_int(b):
        if b >= 0:
            if abs(a) > 1 and b * (abs(a).bit_length() - 1) > 64:
                return None  # certainly beyond the Long range; do not compute a huge number
            return fit_int(a**b, _long(long, a, b))
        if a == 0:
            return None
        return _decimal_op(lambda: _CTX.power(Decimal(a), b))  # Power(2, -2) = 0.25
    da, db = _dec(a), _dec(b)
    if da == 0 and db < 0:
        return None
    if da.is_zero() and db.is_zero():
        return Decimal(1)
    if db == db.to_integral_value():
        if abs(db) > 100000 and abs(da) != 1:
            return None
        return _decimal_op(lambda: _CTX.power(da, int(db)))
    if da < 0:
        return None  # a non-integral power of a negative number is not a real number
    return _decimal_op(lambda: _CTX.power(da, db))


def _fit_quantity(q: Any) -> Any:
    if q is None:
        return None
    v = fit_decimal(q.value)
    return None if v is None else type(q)(v, q.unit)


def successor(a: Any, long: bool = False) -> Any:
    return _step(a, 1, long)


def predecessor(a: Any, long: bool = False) -> Any:
    return _step(a, -1, long)


def _step(a: Any, direction: int, long: bool) -> Any:
    a = unwrap(a)
    what = "successor" if direction > 0 else "predecessor"
    if a is None:
        return None
    if is_int(a):
        r = fit_int(a + direction, _long(long, a))
    elif isinstance(a, Decimal):
        r = fit_decimal(a + direction * DEC_STEP)
    elif _is_type(a, "Quantity"):
        v = fit_decimal(a.value + direction * DEC_STEP)
        r = None if v is None else _qmod().Quantity(v, a.unit)
    elif _is_temporal(a):
        from . import datetime as dt

        r = dt.successor(a) if direction > 0 else dt.predecessor(a)
    else:
        raise _unsupported(what.capitalize(), a)
    if r is None:  # the spec: a run-time error when the argument is already the maximum (minimum)
        raise CqlError(f"The {what} of {a} is out of the range of its type")
    return r


def min_value(type_name: str) -> Any:
    local = type_name.rsplit("}", 1)[-1].rsplit(".", 1)[-1]
    if local == "Integer":
        return INT_MIN
    if local == "Long":
        return LONG_MIN
    if local == "Decimal":
        return DEC_MIN
    if local in ("Date", "DateTime", "Time"):
        from . import datetime as dt

        return dt.min_value(local)
    raise CqlError(f"MinValue is not defined for {type_name}")


def max_value(type_name: str) -> Any:
    local = type_name.rsplit("}", 1)[-1].rsplit(".", 1)[-1]
    if local == "Integer":
        return INT_MAX
    if local == "Long":
        return LONG_MAX
    if local == "Decimal":
        return DEC_MAX
    if local in ("Date", "DateTime", "Time"):
        from . import datetime as dt

        return dt.max_value(local)
    raise CqlError(f"MaxValue is not defined for {type_name}")


# Digits of precision of each temporal precision (CQL Precision/LowBoundary/HighBoundary)
_DATE_DIGITS = {"year": 4, "month": 6, "day": 8, "hour": 10, "minute": 12, "second": 14, "millisecond": 17}
_TIME_DIGITS = {"hour": 2, "minute": 4, "second": 6, "millisecond": 9}


def _digits_table(v: Any) -> dict[str, int]:
    return _TIME_DIGITS if _is_type(v, "Time") else _DATE_DIGITS


def _decimal_places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def precision(a: Any) -> Any:
    a = unwrap(a)
    if a is None:
        return None
    if isinstance(a, Decimal):
        return _decimal_places(a)
    if is_int(a):
        return 0
    if _is_temporal(a):
        return _digits_table(a)[a.precision]
    raise _unsupported("Precision", a)


def _boundary(a: Any, digits: Any, high: bool) -> Any:
    a, digits = unwrap(a), unwrap(digits)
    if a is None:
        return None
    if is_int(a):
        a = Decimal(a)
    if isinstance(a, Decimal):
        p = DEC_PLACES if digits is None else int(digits)
        if p < 0 or p > DEC_PLACES:
            return None
        places = _decimal_places(a)
        q = Decimal(1).scaleb(-p)
        if p <= places:
            return fit_decimal(a.quantize(q, rounding=ROUND_DOWN, context=_CTX))
        padded = a.quantize(q, context=_CTX)
        if high == (a >= 0):  # away from zero: fill the unknown digits with nines
            pad = Decimal(1).scaleb(-places) - q
            padded = padded + pad if a >= 0 else padded - pad
        return padded if DEC_MIN <= padded <= DEC_MAX else None
    if _is_temporal(a):
        return _temporal_boundary(a, digits, high)
    raise _unsupported("HighBoundary" if high else "LowBoundary", a)


def _temporal_boundary(a: Any, digits: Any, high: bool) -> Any:
    from . import datetime as dt

    table = _digits_table(a)
    names = [n for n in table if n in a.__dataclass_fields__]
    if digits is None:
        target = names[-1]
    else:
        found = [n for n in names if table[n] == int(digits)]
        if not found:
            return None
        target = found[0]
    if names.index(target) <= names.index(a.precision):
        return dt.truncate_to(a, target)
    values: dict[str, int | None] = {n: getattr(a, n) for n in names}
    for n in names[names.index(a.precision) + 1:names.index(target) + 1]:
        if n == "month":
            values[n] = 12 if high else 1
        elif n == "day":
            values[n] = _last_day(values["year"], values["month"]) if high else 1
        elif n == "hour":
            values[n] = 23 if high else 0
        elif n in ("minute", "second"):
            values[n] = 59 if high else 0
        else:
            values[n] = 999 if high else 0
    if _is_type(a, "DateTime"):
        return type(a)(**values, offset=a.offset)
    return type(a)(**values)


def _last_day(year: Any, month: Any) -> int:
    import calendar

    return calendar.monthrange(int(year), int(month))[1]


# ------------------------------------------------------------------------------------------------- compilers


def _binary(fn: Callable[..., Any], with_long: bool = True) -> Callable[[dict[str, Any], LibraryCompiler], Fn]:
    def compile_(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        a, b = c.operands(node)
        if with_long:
            long = is_long_node(node)
            return lambda ctx: fn(a(ctx), b(ctx), long)
        return lambda ctx: fn(a(ctx), b(ctx))

    return compile_


def _unary(fn: Callable[..., Any], with_long: bool = True) -> Callable[[dict[str, Any], LibraryCompiler], Fn]:
    def compile_(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        (a,) = c.operands(node)
        if with_long:
            long = is_long_node(node)
            return lambda ctx: fn(a(ctx), long)
        return lambda ctx: fn(a(ctx))

    return compile_


for _name, _fn in (("Add", add), ("Subtract", subtract), ("Multiply", multiply),
                   ("TruncatedDivide", truncated_divide), ("Modulo", modulo), ("Power", power)):
    compiles(_name)(_binary(_fn))
compiles("Divide")(_binary(divide, with_long=False))
compiles("Log")(_binary(log, with_long=False))
for _name, _fn in (("Negate", negate), ("Abs", abs_), ("Successor", successor), ("Predecessor", predecessor)):
    compiles(_name)(_unary(_fn))
for _name, _fn in (("Ceiling", ceiling), ("Floor", floor), ("Truncate", truncate), ("Ln", ln), ("Exp", exp),
                   ("Precision", precision)):
    compiles(_name)(_unary(_fn, with_long=False))


@compiles("Negate")
def _negate(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    """Negate; on a number literal it is the negative literal, so ``-2147483648`` (minimum Integer, whose
    magnitude alone is out of range) compiles while ``2147483648`` is refused."""
    op = node.get("operand")
    if isinstance(op, dict) and op.get("type") == "Literal" and str(op.get("valueType", "")).rsplit("}", 1)[-1] in (
            "Integer", "Long", "Decimal") and not str(op.get("value", "")).startswith("-"):
        return c.compile({**op, "value": "-" + str(op.get("value"))})
    return _unary(negate)(node, c)


@compiles("Round")
def _round(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)
    a = ops[0]
    p = c.compile(node["precision"]) if node.get("precision") is not None else (ops[1] if len(ops) > 1 else None)
    if p is None:
        return lambda ctx: round_(a(ctx))
    return lambda ctx: round_(a(ctx), p(ctx))


def _boundary_compiler(high: bool) -> Callable[[dict[str, Any], LibraryCompiler], Fn]:
    def compile_(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        ops = c.operands(node)
        a = ops[0]
        p = ops[1] if len(ops) > 1 else None

        def f(ctx: Context) -> Any:
            return _boundary(a(ctx), p(ctx) if p is not None else None, high)

        return f

    return compile_


compiles("LowBoundary")(_boundary_compiler(False))
compiles("HighBoundary")(_boundary_compiler(True))


@compiles("MinValue")
def _min_value(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    value = min_value(node["valueType"])
    return lambda ctx: value


@compiles("MaxValue")
def _max_value(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    value = max_value(node["valueType"])
    return lambda ctx: value

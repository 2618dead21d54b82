"""Comparison operators (CQL §12 Comparison Operators): Equal, NotEqual, Equivalent, Less, Greater,
LessOrEqual, GreaterOrEqual.

``cql_equal``/``cql_equivalent``/``cql_compare`` are the entry points (usable by other operator families):
they read FHIR Nodes as the System values they carry, then dispatch on the operands. Integer meets Decimal by
promotion; strings compare by code point; lists and tuples compare element-wise (Equal: null elements at the
same place are equal, an unknown element makes the result unknown; Equivalent: never null); Date/DateTime/Time,
Quantity, Ratio, Interval, Code and Concept values bring their own ``cql_compare``/``cql_equal``/
``cql_equivalent``. Precision-based duration results (``datetime.Uncertainty``) are compared as ranges.

Equivalent follows the CQL rules: strings ignore case and treat every whitespace character alike; decimals are
compared rounded to the fewer decimal places of the two (trailing zeros ignored); a Code is equivalent to a
Concept holding an equivalent code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .fhirmodel import Node
from .ops_types import system_value
from .values import Code, Concept, CqlError

_WS = re.compile(r"\s")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def _is_uncertainty(v: Any) -> bool:
    return type(v).__name__ == "Uncertainty"


def _is_quantity(v: Any) -> bool:
    return type(v).__name__ == "Quantity"


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def decimal_equivalent(a: Any, b: Any) -> bool:
    """Equal when rounded (half up) to the decimal places of the less precise operand."""
    da, db = Decimal(a), Decimal(b)
    if not (da.is_finite() and db.is_finite()):
        return False
    q = Decimal(1).scaleb(-min(_places(da), _places(db)))
    return da.quantize(q, rounding=ROUND_HALF_UP) == db.quantize(q, rounding=ROUND_HALF_UP)


def _norm_str(s: str) -> str:
    return _WS.sub(" ", s).casefold()


def cql_equal(a: Any, b: Any) -> bool | None:
    """CQL ``=``: true, false, or null (a null operand, or an uncertain comparison)."""
    a, b = system_value(a), system_value(b)
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            return False
        return _all_equal(zip(a, b, strict=True))
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            return False
        return _tuple_equal(a, b)
    if isinstance(a, Node) or isinstance(b, Node):  # FHIR elements with no System reading: same JSON
        return isinstance(a, Node) and isinstance(b, Node) and a.value == b.value
    if _is_uncertainty(a) or _is_uncertainty(b):
        from .datetime import compare_op

        return compare_op("=", a, b)
    if _is_number(a) and _is_quantity(b):
        a, b = b, a
    fn = getattr(a, "cql_equal", None)
    if fn is not None:
        return fn(b)
    return a == b


def _tuple_equal(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """Tuples element by element in order: the first element that is unequal gives false, the first that is
    unknown (null on one side) gives null; both null counts as equal. This is what the conformance suite
    expects (``Tuple{Id: null, Name: 'John'} = Tuple{Id: 1, Name: 'James'}`` is null, while
    ``Tuple{Id: 1, Name: 'John'} = Tuple{Id: 2, Name: null}`` is false)."""
    for k in a:
        x, y = a[k], b[k]
        if x is None and y is None:
            continue
        r = cql_equal(x, y)
        if r is not True:
            return r
    return True


def _all_equal(pairs: Any) -> bool | None:
    result: bool | None = True
    for x, y in pairs:
        if x is None and y is None:
            continue
        r = cql_equal(x, y)
        if r is False:
            return False
        if r is None:
            result = None
    return result


def cql_equivalent(a: Any, b: Any) -> bool:
    """CQL ``~``: always true or false; null ~ null is true."""
    a, b = system_value(a), system_value(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return decimal_equivalent(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _norm_str(a) == _norm_str(b)
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(cql_equivalent(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b)
                and all(cql_equivalent(a[k], b[k]) for k in a))
    if isinstance(a, Node) or isinstance(b, Node):
        return isinstance(a, Node) and isinstance(b, Node) and a.value == b.value
    if isinstance(a, Code) and isinstance(b, Concept):
        a, b = b, a
    if _is_number(a) and (_is_quantity(b) or _is_uncertainty(b)):
        a, b = b, a
    fn = getattr(a, "cql_equivalent", None)
    if fn is not None:
        return bool(fn(b))
    return bool(a == b)


def cql_compare(a: Any, b: Any, precision: str | None = None) -> int | None:
    """Order two values: negative, zero, positive, or None (a null operand, or uncertain)."""
    a, b = system_value(a), system_value(b)
    if a is None or b is None:
        return None
    if _is_number(a) and _is_number(b):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if _is_number(a) and (_is_quantity(b) or _is_uncertainty(b)):
        r = b.cql_compare(a, precision)
        return None if r is None else -r
    fn = getattr(a, "cql_compare", None)
    if fn is None or isinstance(a, bool) or isinstance(b, bool):
        raise CqlError(f"Cannot compare {type(a).__name__} with {type(b).__name__}")
    return fn(b, precision)


def _ordering(op: str, test: Callable[[int], bool]) -> Callable[[Any, Any, str | None], bool | None]:
    def compare(a: Any, b: Any, precision: str | None = None) -> bool | None:
        a, b = system_value(a), system_value(b)
        if a is None or b is None:
            return None
        if _is_uncertainty(a) or _is_uncertainty(b):  # a range: decided only when every value agrees
            from .datetime import compare_op

            return compare_op(op, a, b)
        c = cql_compare(a, b, precision)
        return None if c is None else test(c)

    return compare


less = _ordering("<", lambda c: c < 0)
greater = _ordering(">", lambda c: c > 0)
less_or_equal = _ordering("<=", lambda c: c <= 0)
greater_or_equal = _ordering(">=", lambda c: c >= 0)


def not_equal(a: Any, b: Any) -> bool | None:
    r = cql_equal(a, b)
    return None if r is None else not r


@compiles("Equal")
def _equal(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    return lambda ctx: cql_equal(a(ctx), b(ctx))


@compiles("NotEqual")
def _not_equal(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    return lambda ctx: not_equal(a(ctx), b(ctx))


@compiles("Equivalent")
def _equivalent(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)
    return lambda ctx: cql_equivalent(a(ctx), b(ctx))


def _ordering_compiler(fn: Callable[[Any, Any, str | None], bool | None]) -> Callable[..., Fn]:
    def compile_(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        a, b = c.operands(node)
        precision = node.get("precision")

        def f(ctx: Context) -> Any:
            return fn(a(ctx), b(ctx), precision)

        return f

    return compile_


compiles("Less")(_ordering_compiler(less))
compiles("Greater")(_ordering_compiler(greater))
compiles("LessOrEqual")(_ordering_compiler(less_or_equal))
compiles("GreaterOrEqual")(_ordering_compiler(greater_or_equal))

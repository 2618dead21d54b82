"""CQL runtime values shared by every operator family, and the generic comparison entry points.

Each value class that has an order implements ``cql_compare(other, precision) -> int | None`` (negative, zero,
positive, or None when the comparison is uncertain, e.g. dates of different precision) and
``cql_equal(other) -> bool | None`` / ``cql_equivalent(other) -> bool``. The functions below dispatch on the
operands, apply CQL null propagation, and handle the Python-native types (int, Decimal, str, bool, list, dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class CqlError(Exception):
    """A run-time error the CQL spec defines (e.g. a Message with severity Error, overflow)."""


@dataclass(frozen=True)
class Code:
    code: str
    system: str | None = None
    version: str | None = None
    display: str | None = None

    def cql_equal(self, other: Any) -> bool | None:
        if not isinstance(other, Code):
            return False
        return self.code == other.code and self.system == other.system and self.version == other.version

    def cql_equivalent(self, other: Any) -> bool:
        return isinstance(other, Code) and self.code == other.code and self.system == other.system


@dataclass(frozen=True)
class Concept:
    codes: tuple[Code, ...]
    display: str | None = None

    def cql_equal(self, other: Any) -> bool | None:
        if not isinstance(other, Concept) or len(self.codes) != len(other.codes):
            return False
        return all(a.cql_equal(b) for a, b in zip(self.codes, other.codes, strict=True))

    def cql_equivalent(self, other: Any) -> bool:
        if isinstance(other, Code):
            return any(c.cql_equivalent(other) for c in self.codes)
        if not isinstance(other, Concept):
            return False
        return any(a.cql_equivalent(b) for a in self.codes for b in other.codes)


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    return None


def compare(a: Any, b: Any, precision: str | None = None) -> int | None:
    """Order two CQL values: <0, 0, >0, or None (null operand or uncertain)."""
    if a is None or b is None:
        return None
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    fn = getattr(a, "cql_compare", None)
    if fn is not None:
        return fn(b, precision)
    rfn = getattr(b, "cql_compare", None)  # e.g. an Integer against an uncertain duration
    if rfn is not None:
        r = rfn(a, precision)
        return None if r is None else -r
    raise CqlError(f"Cannot compare {type(a).__name__} with {type(b).__name__}")


def equal(a: Any, b: Any) -> bool | None:
    """CQL Equal (=): null if either operand is null; element-wise for lists and tuples."""
    if a is None or b is None:
        return None
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        result: bool | None = True
        for x, y in zip(a, b, strict=True):
            r = equal(x, y)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return False
        result = True
        for k in a:
            if a[k] is None and b[k] is None:
                continue
            r = equal(a[k], b[k])
            if r is False:
                return False
            if r is None:
                result = None
        return result
    fn = getattr(a, "cql_equal", None)
    if fn is not None:
        return fn(b)
    rfn = getattr(b, "cql_equal", None)
    if rfn is not None:
        return rfn(a)
    return a == b


def equivalent(a: Any, b: Any) -> bool:
    """CQL Equivalent (~): never null; null ~ null is true; strings ignore case and whitespace differences."""
    if a is None or b is None:
        return a is None and b is None
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equivalent(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(equivalent(a[k], b[k]) for k in a)
    fn = getattr(a, "cql_equivalent", None)
    if fn is not None:
        return bool(fn(b))
    if isinstance(b, Concept) and isinstance(a, Code):
        return b.cql_equivalent(a)
    return a == b

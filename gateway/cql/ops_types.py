"""Type operators (CQL §22 Type Operators): As, Is, Convert, CanConvert, the ToX conversions (ToBoolean,
ToChars, ToConcept, ToDate, ToDateTime, ToDecimal, ToInteger, ToLong, ToQuantity, ToRatio, ToString, ToTime,
ToList), the ConvertsToX tests, CanConvertQuantity and ConvertQuantity.

FHIR data arrives as ``Node``s. The ELM normally converts them through FHIRHelpers before a System type is
expected; where it does not, a FHIR primitive (and a FHIR Quantity, Coding or CodeableConcept) is read as the
System value it carries (``system_value``), so ``As``/``Is`` against a System type and the conversions see it.
``As``/``Is`` against a FHIR type check the Node's FHIR type (subtypes included: ``code`` is a ``string``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .fhirmodel import Node, is_subtype, primitive_value
from .values import Code, Concept, CqlError

SYSTEM = "{urn:hl7-org:elm-types:r1}"
_TEMPORAL = ("Date", "DateTime", "Time")
# FHIRHelpers.ToCalendarUnit: the UCUM codes of calendar durations read from FHIR Quantities
_UCUM_CALENDAR = {"ms": "millisecond", "s": "second", "min": "minute", "h": "hour", "d": "day", "wk": "week",
                  "mo": "month", "a": "year"}


def _tname(v: Any) -> str:
    return type(v).__name__


# ------------------------------------------------------------------------------------------- FHIR -> System


def system_value(v: Any) -> Any:
    """A FHIR Node as the System value it carries: primitives (``primitive_value``), Quantity (and its
    profiles Age, Duration...), Coding (Code) and CodeableConcept (Concept). Other values are unchanged."""
    if not isinstance(v, Node):
        return v
    if not isinstance(v.value, dict):
        return primitive_value(v) if not isinstance(v.value, list) else v
    if is_subtype(v.type, "Quantity"):
        return fhir_quantity(v.value)
    if v.type == "Coding":
        return _coding(v.value)
    if v.type == "CodeableConcept":
        codes = tuple(c for c in (_coding(x) for x in v.value.get("coding") or [] if isinstance(x, dict))
                      if c is not None)
        return Concept(codes, v.value.get("text"))
    return v


def _coding(c: dict[str, Any]) -> Code | None:
    if c.get("code") is None:
        return None
    return Code(c["code"], c.get("system"), c.get("version"), c.get("display"))


def fhir_quantity(q: dict[str, Any]) -> Any:
    """FHIRHelpers.ToQuantity on the JSON of a FHIR Quantity."""
    from .quantity import Quantity

    if q.get("value") is None:
        return None
    if q.get("comparator") is not None:
        raise CqlError(f"FHIR Quantity with comparator {q['comparator']!r} cannot be converted to a CQL Quantity")
    system = q.get("system")
    if system not in (None, "http://unitsofmeasure.org", "http://hl7.org/fhirpath/CodeSystem/calendar-units"):
        raise CqlError(f"FHIR Quantity with unit system {system!r} cannot be converted to a CQL Quantity")
    unit = q.get("code") or q.get("unit") or "1"
    value = q["value"]
    return Quantity(value if isinstance(value, Decimal) else Decimal(str(value)), _UCUM_CALENDAR.get(unit, unit))


# ------------------------------------------------------------------------------------------------ type tests


def _choices(spec: dict[str, Any]) -> list[Any] | None:
    """The alternatives of a ChoiceTypeSpecifier (ELM JSON spells it with ``choice``, its ``type`` key being
    sometimes clobbered to ``[]`` by the serializer), else None."""
    if "choice" in spec:
        return list(spec.get("choice") or [])
    if spec.get("type") == "ChoiceTypeSpecifier":
        return []
    if isinstance(spec.get("type"), list):
        return list(spec["type"])
    return None


def _split_name(name: str) -> tuple[str, str]:
    """('system'|'fhir'|namespace, local name) of a qualified type name."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        if ns == "urn:hl7-org:elm-types:r1":
            return "system", local
        if ns == "http://hl7.org/fhir":
            return "fhir", local
        return ns, local
    if name.startswith("System."):
        return "system", name[7:]
    if name.startswith("FHIR."):
        return "fhir", name[5:]
    return "", name


def _type_is(name: str) -> Callable[[Any], bool]:
    return lambda v: type(v).__name__ == name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_codesystem(v: Any) -> bool:
    return isinstance(v, dict) and "id" in v and "name" in v


_SYSTEM_TESTS: dict[str, Callable[[Any], bool]] = {
    "Any": lambda v: True,
    "Boolean": lambda v: isinstance(v, bool),
    "Integer": _is_int,
    "Long": _is_int,
    "Decimal": lambda v: isinstance(v, Decimal),
    "String": lambda v: isinstance(v, str),
    "Code": lambda v: isinstance(v, Code),
    "Concept": lambda v: isinstance(v, Concept),
    **{t: _type_is(t) for t in (*_TEMPORAL, "Quantity", "Ratio", "Interval")},
    "ValueSet": _type_is("ValueSetValue"),
    "CodeSystem": _is_codesystem,
    "Vocabulary": lambda v: _tname(v) == "ValueSetValue" or _is_codesystem(v),
}


def _never(v: Any) -> bool:
    return False


def type_test(spec: Any) -> Callable[[Any], bool]:
    """A predicate for "a (non-null) value of the type named or specified by ``spec``" (a qualified name or a
    TypeSpecifier), built once per ELM node."""
    if isinstance(spec, dict):
        alts = _choices(spec)
        if alts is not None:
            tests = [type_test(a) for a in alts]
            return lambda v: v is not None and any(t(v) for t in tests)
        kind = spec.get("type")
        if kind == "ListTypeSpecifier":
            return lambda v: isinstance(v, list)
        if kind == "IntervalTypeSpecifier":
            point = type_test(spec["pointType"]) if spec.get("pointType") is not None else None

            def interval(v: Any) -> bool:
                if _tname(v) != "Interval":
                    return False
                return point is None or all(p is None or point(p) for p in (v.low, v.high))

            return interval
        if kind == "TupleTypeSpecifier":
            return lambda v: isinstance(v, dict)
        name = spec.get("name")
    else:
        name = spec
    if not isinstance(name, str):
        return _never
    ns, local = _split_name(name)
    if ns == "system":
        test = _SYSTEM_TESTS.get(local, _never)
        return lambda v: v is not None and test(v)
    return lambda v: isinstance(v, Node) and is_subtype(v.type, local)


def is_type(v: Any, spec: Any) -> bool:
    """Is ``v`` (not null) of the type named or specified by ``spec``?"""
    return type_test(spec)(v)


def _names_system_type(spec: Any) -> bool:
    """Does the specifier name a System type (directly or as a choice alternative)?"""
    if isinstance(spec, dict):
        alts = _choices(spec)
        if alts is not None:
            return any(_names_system_type(a) for a in alts)
        spec = spec.get("name")
    return isinstance(spec, str) and _split_name(spec)[0] == "system"


def caster(spec: Any) -> Callable[[Any], tuple[bool, Any]]:
    """``cast`` for one specifier, built once: (True, value) when the value is of the type (a FHIR Node read
    as its System value when a System type is asked for and the Node itself is not of it), else (False,
    None)."""
    test = type_test(spec)
    read_nodes = _names_system_type(spec)

    def cast_(v: Any) -> tuple[bool, Any]:
        if test(v):
            return True, v
        if read_nodes and isinstance(v, Node):
            sv = system_value(v)
            if sv is not v and test(sv):
                return True, sv
        return False, None

    return cast_


def cast(v: Any, spec: Any) -> tuple[bool, Any]:
    return caster(spec)(v)


def _spec_text(spec: Any) -> str:
    if isinstance(spec, dict):
        alts = _choices(spec)
        if alts is not None:
            return "Choice<" + ", ".join(_spec_text(a) for a in alts) + ">"
        t = spec.get("type")
        if t == "ListTypeSpecifier":
            return f"List<{_spec_text(spec.get('elementType'))}>"
        if t == "IntervalTypeSpecifier":
            return f"Interval<{_spec_text(spec.get('pointType'))}>"
        return str(spec.get("name") or t)
    return str(spec)


@compiles("As")
def _as(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    spec = node.get("asTypeSpecifier") or node.get("asType")
    strict = node.get("strict") is True
    if spec is None:
        return a
    cast_ = caster(spec)

    def f(ctx: Context) -> Any:
        v = a(ctx)
        if v is None:
            return None
        ok, out = cast_(v)
        if ok:
            return out
        if strict:
            raise CqlError(f"Cannot cast a value of type {getattr(v, 'type', _tname(v))} as {_spec_text(spec)}")
        return None

    return f


@compiles("Is")
def _is(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    cast_ = caster(node.get("isTypeSpecifier") or node.get("isType"))
    return lambda ctx: cast_(a(ctx))[0]


# ------------------------------------------------------------------------------------------------ conversions

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_QTY_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*(?:'([^']*)'|([A-Za-z]+))?")
_CALENDAR_WORDS = {"year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute",
                   "minutes", "second", "seconds", "millisecond", "milliseconds"}
_TIME_OFFSET_RE = re.compile(r"(?<=\d)(Z|[+-]\d{2}:?\d{2})$")


def to_boolean(v: Any) -> bool | None:
    v = system_value(v)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.lower()
        return True if s in _TRUE else False if s in _FALSE else None
    if isinstance(v, (int, Decimal)):
        return True if v == 1 else False if v == 0 else None
    return None


def _integer(v: Any, lo: int, hi: int) -> int | None:
    v = system_value(v)
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if lo <= v <= hi else None
    if isinstance(v, str) and _INT_RE.fullmatch(v):
        n = int(v)
        return n if lo <= n <= hi else None
    return None


def to_integer(v: Any) -> int | None:
    from .ops_arithmetic import INT_MAX, INT_MIN

    return _integer(v, INT_MIN, INT_MAX)


def to_long(v: Any) -> int | None:
    from .ops_arithmetic import LONG_MAX, LONG_MIN

    return _integer(v, LONG_MIN, LONG_MAX)


def to_decimal(v: Any) -> Decimal | None:
    from .ops_arithmetic import fit_decimal

    v = system_value(v)
    if v is None:
        return None
    if isinstance(v, bool):
        return Decimal("1.0") if v else Decimal("0.0")
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v
    if isinstance(v, str) and _DEC_RE.fullmatch(v):
        try:
            return fit_decimal(Decimal(v))
        except InvalidOperation:
            return None
    return None


def _parse_quantity(s: str) -> Any:
    from .ops_arithmetic import fit_decimal
    from .quantity import Quantity, is_valid_unit

    m = _QTY_RE.fullmatch(s)
    if m is None:
        return None
    value = fit_decimal(Decimal(m.group(1)))
    if value is None:
        return None
    if m.group(3) is not None:
        if m.group(3) not in _CALENDAR_WORDS:
            return None
        unit = m.group(3)
    else:
        unit = m.group(2) if m.group(2) not in (None, "") else "1"
    try:
        valid = is_valid_unit(unit)
    except ImportError:  # no UCUM library: accept the unit as written
        valid = True
    return Quantity(value, unit) if valid else None


def to_quantity(v: Any) -> Any:
    from .quantity import Quantity, divide

    v = system_value(v)
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        return Quantity(Decimal(v), "1")
    if isinstance(v, Quantity):
        return v
    if isinstance(v, str):
        return _parse_quantity(v)
    if _tname(v) == "Ratio":
        return divide(v.numerator, v.denominator)
    return None


def to_ratio(v: Any) -> Any:
    from .quantity import Ratio

    v = system_value(v)
    if v is None or isinstance(v, Ratio):
        return v
    if isinstance(v, str):
        m = re.fullmatch(r"((?:[^':]|'[^']*')*):((?:[^':]|'[^']*')*)", v)
        if m is None:
            return None
        num, den = _parse_quantity(m.group(1)), _parse_quantity(m.group(2))
        return None if num is None or den is None else Ratio(num, den)
    return None


def _format_decimal(d: Decimal) -> str:
    return format(d, "f")  # the digits as held, never exponent notation


def to_string(v: Any) -> str | None:
    v = system_value(v)
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return _format_decimal(v)
    name = _tname(v)
    if name in _TEMPORAL:
        from . import datetime as dt

        return dt.to_string(v)
    if name == "Quantity":
        return f"{_format_decimal(v.value)} '{v.unit}'"
    if name == "Ratio":
        return f"{to_string(v.numerator)}:{to_string(v.denominator)}"
    return None


def to_date(v: Any) -> Any:
    from . import datetime as dt

    v = system_value(v)
    if v is None or isinstance(v, dt.Date):
        return v
    if isinstance(v, dt.DateTime):
        return v.to_date()
    if isinstance(v, str):
        try:
            return dt.parse_date(v)
        except (ValueError, CqlError):
            pass
        try:  # a DateTime string: its date
            return dt.parse_datetime(v).to_date() if "T" in v else None
        except (ValueError, CqlError):
            return None
    return None


def to_datetime(v: Any) -> Any:
    from . import datetime as dt

    v = system_value(v)
    if v is None or isinstance(v, dt.DateTime):
        return v
    if isinstance(v, dt.Date):
        return v.to_datetime()
    if isinstance(v, str):
        try:
            return dt.parse_datetime(v)
        except (ValueError, CqlError):
            return None
    return None


def to_time(v: Any) -> Any:
    from . import datetime as dt

    v = system_value(v)
    if v is None or isinstance(v, dt.Time):
        return v
    if isinstance(v, dt.DateTime):
        return v.to_time()
    if isinstance(v, str):
        s = v
        if ":" in s:
            s = _TIME_OFFSET_RE.sub("", s)  # a time-of-day has no offset: it is ignored
        try:
            return dt.parse_time(s)
        except (ValueError, CqlError):
            return None
    return None


def to_concept(v: Any) -> Concept | None:
    v = system_value(v)
    if v is None or isinstance(v, Concept):
        return v
    if isinstance(v, Code):
        return Concept((v,), v.display)
    if isinstance(v, list):
        codes = [system_value(x) for x in v]
        if any(x is not None and not isinstance(x, Code) for x in codes):
            raise CqlError("ToConcept expects a Code or a list of Codes")
        return Concept(tuple(x for x in codes if x is not None))
    raise CqlError(f"ToConcept expects a Code or a list of Codes, got {_tname(v)}")


def to_chars(v: Any) -> list[str] | None:
    v = system_value(v)
    if v is None:
        return None
    if not isinstance(v, str):
        raise CqlError(f"ToChars expects a String, got {_tname(v)}")
    return list(v)


def to_list(v: Any) -> list[Any]:
    return [] if v is None else [v]


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "Boolean": to_boolean, "Integer": to_integer, "Long": to_long, "Decimal": to_decimal, "String": to_string,
    "Quantity": to_quantity, "Ratio": to_ratio, "Date": to_date, "DateTime": to_datetime, "Time": to_time,
    "Concept": to_concept,
}


def convert(v: Any, spec: Any) -> Any:
    """CQL Convert: the value as the target type, or null when no conversion exists."""
    if v is None:
        return None
    if isinstance(spec, dict) and spec.get("type") == "ListTypeSpecifier":
        v = system_value(v)
        if isinstance(v, list):
            return v
        if isinstance(v, Concept):  # Concept -> List<Code>
            return list(v.codes)
        return None
    name = spec.get("name") if isinstance(spec, dict) else spec
    if not isinstance(name, str):
        return None
    ns, local = _split_name(name)
    ok, out = cast(v, name)
    if ok:
        return out
    fn = CONVERTERS.get(local) if ns == "system" else None
    if fn is None:
        return None
    try:
        return fn(v)
    except CqlError:
        return None


def _unary(fn: Callable[[Any], Any]) -> Callable[[dict[str, Any], LibraryCompiler], Fn]:
    def compile_(node: dict[str, Any], c: LibraryCompiler) -> Fn:
        (a,) = c.operands(node)
        return lambda ctx: fn(a(ctx))

    return compile_


for _name, _fn in (("ToBoolean", to_boolean), ("ToInteger", to_integer), ("ToLong", to_long),
                   ("ToDecimal", to_decimal), ("ToString", to_string), ("ToQuantity", to_quantity),
                   ("ToRatio", to_ratio), ("ToDate", to_date), ("ToDateTime", to_datetime), ("ToTime", to_time),
                   ("ToConcept", to_concept), ("ToChars", to_chars), ("ToList", to_list)):
    compiles(_name)(_unary(_fn))


def _converts_to(fn: Callable[[Any], Any]) -> Callable[[Any], bool | None]:
    def test(v: Any) -> bool | None:
        if v is None:
            return None
        try:
            return fn(v) is not None
        except CqlError:
            return False

    return test


def converts_to_string(v: Any) -> bool | None:
    if v is None:
        return None
    sv = system_value(v)
    return isinstance(sv, (str, bool, int, Decimal)) or _tname(sv) in (*_TEMPORAL, "Quantity", "Ratio")


for _name, _fn in (("ConvertsToBoolean", to_boolean), ("ConvertsToInteger", to_integer),
                   ("ConvertsToLong", to_long), ("ConvertsToDecimal", to_decimal),
                   ("ConvertsToQuantity", to_quantity), ("ConvertsToRatio", to_ratio), ("ConvertsToDate", to_date),
                   ("ConvertsToDateTime", to_datetime), ("ConvertsToTime", to_time)):
    compiles(_name)(_unary(_converts_to(_fn)))
compiles("ConvertsToString")(_unary(converts_to_string))


@compiles("Convert")
def _convert(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    spec = node.get("toTypeSpecifier") or node.get("toType")
    return lambda ctx: convert(a(ctx), spec)


@compiles("CanConvert")
def _can_convert(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    spec = node.get("toTypeSpecifier") or node.get("toType")

    def f(ctx: Context) -> Any:
        v = a(ctx)
        return None if v is None else convert(v, spec) is not None

    return f


@compiles("ConvertQuantity")
def _convert_quantity(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    from .quantity import convert_quantity

    q, unit = c.operands(node)
    return lambda ctx: convert_quantity(system_value(q(ctx)), system_value(unit(ctx)))


@compiles("CanConvertQuantity")
def _can_convert_quantity(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    from .quantity import can_convert_quantity

    q, unit = c.operands(node)
    return lambda ctx: can_convert_quantity(system_value(q(ctx)), system_value(unit(ctx)))

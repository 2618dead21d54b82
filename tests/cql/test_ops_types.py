"""Type operators (CQL §22): As (strict and not), Is, Convert/CanConvert, the ToX conversions and ConvertsToX
tests, quantity conversion, and FHIR Nodes met where System values are expected. Cases follow the HL7
cql-tests (CqlTypeOperatorsTest) where they exist."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.cql.datetime import Date, DateTime, Time
from gateway.cql.fhirmodel import Node
from gateway.cql.interval import Interval
from gateway.cql.quantity import Quantity, Ratio
from gateway.cql.values import Code, Concept, CqlError
from tests.cql.elmutil import (
    FHIR,
    SYS,
    as_,
    code,
    list_,
    lit_bool,
    lit_date,
    lit_datetime,
    lit_dec,
    lit_int,
    lit_long,
    lit_str,
    lit_time,
    null,
    op,
    quantity,
    ratio,
    ref,
    run,
)

D = Decimal


def named(name: str) -> dict:
    return {"type": "NamedTypeSpecifier", "name": name if name.startswith("{") else SYS + name}


def choice(*names: str, serialized: bool = True) -> dict:
    """A ChoiceTypeSpecifier as the translator serializes it (``type`` clobbered to ``[]``) or as written."""
    return {"type": [] if serialized else "ChoiceTypeSpecifier", "choice": [named(n) for n in names]}


def interval_of(point: str) -> dict:
    return {"type": "IntervalTypeSpecifier", "pointType": named(point)}


def as_spec(operand: dict, spec: dict, strict: bool = False) -> dict:
    return {"type": "As", "operand": operand, "asTypeSpecifier": spec, "strict": strict}


def is_(operand: dict, type_name: str | None = None, spec: dict | None = None) -> dict:
    node = {"type": "Is", "operand": operand}
    if spec is not None:
        node["isTypeSpecifier"] = spec
    else:
        assert type_name is not None
        node["isType"] = type_name if type_name.startswith("{") else SYS + type_name
    return node


FHIR_QTY = Node({"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}, "Quantity")
FHIR_CC = Node({"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "SBP"},
                           {"system": "http://snomed.info/sct", "code": "271649006"}], "text": "Systolic"},
               "CodeableConcept")


# ---------------------------------------------------------------------------------------------------- As


@pytest.mark.parametrize(("operand", "type_name", "expected"), [
    (lit_int(5), "Integer", 5),
    (lit_int(5), "String", None),  # not of the type: null
    (lit_str("5"), "Integer", None),  # As does not convert
    (lit_dec("1.5"), "Decimal", D("1.5")),
    (lit_int(1), "Decimal", None),
    (quantity("45.5", "g"), "Quantity", Quantity(D("45.5"), "g")),
    (lit_datetime("2014-01-01"), "DateTime", DateTime(2014, 1, 1)),
    (lit_date("2014-01-01"), "DateTime", None),
    (lit_bool(False), "Boolean", False),
    (null(), "Integer", None),
    (lit_long(5), "Long", 5),
    (lit_int(5), "Any", 5),
])
def test_as(operand: dict, type_name: str, expected: object) -> None:
    result = run(as_(operand, type_name))
    assert result == expected
    assert type(result) is type(expected)


def test_as_strict_raises_when_not_of_the_type() -> None:
    assert run(as_(lit_int(5), "Integer", strict=True)) == 5
    assert run(as_(null(), "Integer", strict=True)) is None  # null is of every type
    with pytest.raises(CqlError, match="Cannot cast"):
        run(as_(lit_int(5), "String", strict=True))
    with pytest.raises(CqlError):
        run(as_spec(lit_str("x"), choice("Integer", "Decimal"), strict=True))


def test_as_type_specifiers() -> None:
    assert run(as_spec(lit_int(5), named("Integer"))) == 5
    assert run(as_spec(lit_int(5), choice("DateTime", "Integer"))) == 5
    assert run(as_spec(lit_int(5), choice("DateTime", "Integer", serialized=False))) == 5
    assert run(as_spec(lit_int(5), choice("DateTime", "Quantity"))) is None
    assert run(as_spec(list_(lit_int(1)), {"type": "ListTypeSpecifier", "elementType": named("Integer")})) == [1]
    assert run(as_spec(lit_int(1), {"type": "ListTypeSpecifier", "elementType": named("Integer")})) is None


def test_as_interval_checks_the_point_type() -> None:
    period = Interval(DateTime(2014, 1, 1), DateTime(2014, 2, 1))
    rng = Interval(Quantity(D(1), "mg"), Quantity(D(2), "mg"))
    dt_spec, q_spec = interval_of("DateTime"), interval_of("Quantity")
    assert run(as_spec(ref("x"), dt_spec), x=period) is period
    assert run(as_spec(ref("x"), q_spec), x=period) is None
    assert run(as_spec(ref("x"), q_spec), x=rng) is rng
    both = {"type": [], "choice": [named("DateTime"), named("Quantity"), dt_spec, q_spec]}
    assert run(as_spec(ref("x"), both), x=rng) is rng
    assert run(is_(ref("x"), spec=dt_spec), x=Interval(None, DateTime(2014, 1, 1))) is True


def test_as_fhir_types() -> None:
    code_node = Node("final", "code")
    assert run(as_(ref("x"), FHIR + "code"), x=code_node) is code_node
    assert run(as_(ref("x"), FHIR + "string"), x=code_node) is code_node  # code is a subtype of string
    assert run(as_(ref("x"), FHIR + "code"), x=Node("final", "string")) is None
    assert run(as_(ref("x"), FHIR + "dateTime"), x=Node("2014", "date")) is None
    patient = Node({"resourceType": "Patient"}, "Patient")
    assert run(as_(ref("x"), FHIR + "Patient"), x=patient) is patient
    assert run(as_(ref("x"), FHIR + "Observation"), x=patient) is None
    assert run(as_(ref("x"), FHIR + "Resource"), x=patient) is patient
    assert run(as_(ref("x"), FHIR + "Quantity"), x=Node({"value": 3}, "Age")) is not None  # Age is a Quantity
    with pytest.raises(CqlError):
        run(as_(ref("x"), FHIR + "Observation", strict=True), x=patient)


def test_as_system_type_reads_fhir_values() -> None:
    assert run(as_(ref("x"), "String"), x=Node("final", "code")) == "final"
    assert run(as_(ref("x"), "DateTime"), x=Node("2014-01-01T10:00:00Z", "dateTime")) == \
        DateTime(2014, 1, 1, 10, 0, 0, offset=D(0))
    assert run(as_(ref("x"), "Quantity"), x=FHIR_QTY) == Quantity(D(5), "mg")
    assert run(as_(ref("x"), "Integer"), x=Node("final", "code")) is None


# ---------------------------------------------------------------------------------------------------- Is


@pytest.mark.parametrize(("operand", "type_name", "expected"), [
    (lit_int(5), "Integer", True),
    (lit_str("5"), "Integer", False),
    (lit_int(5), "Decimal", False),
    (lit_bool(True), "Integer", False),  # a Boolean is not an Integer
    (null(), "Integer", False),
    (lit_time("T10:00"), "Time", True),
    (lit_date("2014"), "Date", True),
    (quantity(1, "mg"), "Quantity", True),
    (code("c", "s"), "Code", True),
    (code("c", "s"), "Concept", False),
])
def test_is(operand: dict, type_name: str, expected: bool) -> None:
    assert run(is_(operand, type_name)) is expected


def test_is_fhir_types_and_choices() -> None:
    assert run(is_(ref("x"), FHIR + "dateTime"), x=Node("2014", "dateTime")) is True
    assert run(is_(ref("x"), FHIR + "Period"), x=Node("2014", "dateTime")) is False
    assert run(is_(ref("x"), FHIR + "string"), x=Node("x", "markdown")) is True
    assert run(is_(ref("x"), spec=choice("Integer", "String")), x="a") is True
    assert run(is_(ref("x"), spec=choice("Integer", "String")), x=D(1)) is False
    assert run(is_(ref("x"), "Ratio"), x=Ratio(Quantity(D(1), "mg"), Quantity(D(2), "mL"))) is True


# ------------------------------------------------------------------------------------------ ToBoolean


@pytest.mark.parametrize(("arg", "expected"), [
    (lit_str("NO"), False),
    (lit_str("true"), True),
    (lit_str("T"), True),
    (lit_str("y"), True),
    (lit_str("Yes"), True),
    (lit_str("1"), True),
    (lit_str("0"), False),
    (lit_str("f"), False),
    (lit_str("falsetto"), None),
    (lit_str(" true"), None),
    (null(), None),
    (lit_int(1), True),
    (lit_int(0), False),
    (lit_int(2), None),
    (lit_long(1), True),
    (lit_dec("1.0"), True),
    (lit_dec("0.0"), False),
    (lit_dec("0.5"), None),
    (lit_bool(False), False),
])
def test_to_boolean(arg: dict, expected: bool | None) -> None:
    assert run(op("ToBoolean", arg)) is expected


# --------------------------------------------------------------------------- ToInteger, ToLong, ToDecimal


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("ToInteger", lit_str("-25"), -25),
    ("ToInteger", lit_str("+25"), 25),
    ("ToInteger", lit_str("foo"), None),
    ("ToInteger", lit_str("1.5"), None),
    ("ToInteger", lit_str(""), None),
    ("ToInteger", lit_str("2147483647"), 2147483647),
    ("ToInteger", lit_str("2147483648"), None),  # out of the Integer range
    ("ToInteger", lit_bool(True), 1),
    ("ToInteger", lit_bool(False), 0),
    ("ToInteger", lit_long(7), 7),
    ("ToInteger", lit_long(2**40), None),
    ("ToLong", lit_str("-1"), -1),
    ("ToLong", lit_str("one"), None),
    ("ToLong", lit_str("9223372036854775807"), 2**63 - 1),
    ("ToLong", lit_str("9223372036854775808"), None),
    ("ToLong", lit_int(5), 5),
    ("ToDecimal", lit_str("+25.5"), D("25.5")),
    ("ToDecimal", lit_str("-25.5"), D("-25.5")),
    ("ToDecimal", lit_str("25"), D("25")),
    ("ToDecimal", lit_str("foo"), None),
    ("ToDecimal", lit_str("abc"), None),
    ("ToDecimal", lit_str(".5"), None),  # a digit is required before the point
    ("ToDecimal", lit_str("5."), None),
    ("ToDecimal", lit_str("1e5"), None),
    ("ToDecimal", lit_str("1.123456789"), D("1.12345679")),  # 8 decimal places
    ("ToDecimal", lit_int(5), D("5")),
    ("ToDecimal", lit_bool(True), D("1.0")),
    ("ToDecimal", lit_bool(False), D("0.0")),
    ("ToDecimal", null(), None),
])
def test_to_numbers(node_type: str, arg: dict, expected: object) -> None:
    result = run(op(node_type, arg))
    assert result == expected
    assert type(result) is type(expected)


def test_to_decimal_reads_fhir_decimal() -> None:
    assert run(op("ToDecimal", ref("x")), x=Node(9.5, "decimal")) == D("9.5")


# ----------------------------------------------------------------------------------- ToQuantity, ToRatio


@pytest.mark.parametrize(("arg", "expected"), [
    (lit_str("5.5 'cm'"), Quantity(D("5.5"), "cm")),
    (lit_str("5.5'cm'"), Quantity(D("5.5"), "cm")),
    (lit_str("5.0 'mg'"), Quantity(D("5.0"), "mg")),
    (lit_str("-3 'mg/dL'"), Quantity(D(-3), "mg/dL")),
    (lit_str("10"), Quantity(D(10), "1")),
    (lit_str("3 days"), Quantity(D(3), "days")),  # calendar duration keyword
    (lit_str("3 parsecs"), None),
    (lit_str("5 'notaunit'"), None),  # not UCUM
    (lit_str("abc"), None),
    (lit_str("'mg' 5"), None),
    (lit_int(5), Quantity(D(5), "1")),
    (lit_dec("5.5"), Quantity(D("5.5"), "1")),
    (quantity(2, "g"), Quantity(D(2), "g")),
    (ratio(10, "mg", 2, "mL"), Quantity(D(5), "mg/mL")),  # numerator divided by denominator
    (null(), None),
])
def test_to_quantity(arg: dict, expected: object) -> None:
    assert run(op("ToQuantity", arg)) == expected


def test_to_ratio() -> None:
    r = run(op("ToRatio", lit_str("1.0 'mg':2.0 'mg'")))
    assert r == Ratio(Quantity(D("1.0"), "mg"), Quantity(D("2.0"), "mg"))
    assert run(is_(op("ToRatio", lit_str("1.0 'mg':2.0 'mg'")), "Ratio")) is True
    assert run(op("ToRatio", lit_str("1.0 'mg';2.0 'mg'"))) is None
    assert run(op("ToRatio", lit_str("1:128"))) == Ratio(Quantity(D(1), "1"), Quantity(D(128), "1"))
    assert run(op("ToRatio", null())) is None


# ------------------------------------------------------------------------------------------- ToString


@pytest.mark.parametrize(("arg", "expected"), [
    (lit_int(-5), "-5"),
    (lit_long(2**40), str(2**40)),
    (lit_dec("18.55"), "18.55"),
    (lit_dec("1.58700"), "1.58700"),  # the digits as held
    (lit_dec("0.00000001"), "0.00000001"),  # never exponent notation
    (op("Divide", lit_int(1), lit_int(3)), "0.33333333"),
    (lit_bool(True), "true"),
    (lit_bool(False), "false"),
    (lit_str("abc"), "abc"),
    (quantity(125, "cm"), "125 'cm'"),
    (quantity("5.5", "cm"), "5.5 'cm'"),
    (ratio(1, "mg", 2, "mL"), "1 'mg':2 'mL'"),
    (lit_date("2014-01"), "2014-01"),
    (lit_datetime("2000-01-01"), "2000-01-01"),
    (lit_datetime("2000-01-01T15:25:25.300"), "2000-01-01T15:25:25.300"),
    (lit_datetime("2000-01-01T08:25:25.300-07:00"), "2000-01-01T08:25:25.300-07:00"),
    (lit_time("T09:30:01.003"), "09:30:01.003"),
    (null(), None),
])
def test_to_string(arg: dict, expected: str | None) -> None:
    assert run(op("ToString", arg)) == expected


def test_to_string_of_fhir_primitive_and_code() -> None:
    assert run(op("ToString", ref("x")), x=Node("final", "code")) == "final"
    assert run(op("ToString", ref("x")), x=Node(True, "boolean")) == "true"
    assert run(op("ToString", code("c", "s"))) is None  # no string representation defined


# -------------------------------------------------------------------------------- ToDate, ToDateTime, ToTime


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("ToDate", lit_str("2014-01-01"), Date(2014, 1, 1)),
    ("ToDate", lit_str("2014-01"), Date(2014, 1)),
    ("ToDate", lit_str("2014"), Date(2014)),
    ("ToDate", lit_str("2014-01-01T12:05:05.955"), Date(2014, 1, 1)),  # the time is ignored
    ("ToDate", lit_datetime("2014-01-01T12:30:00.000"), Date(2014, 1, 1)),
    ("ToDate", lit_str("2014/01/01"), None),
    ("ToDate", lit_str("2014-02-30"), None),  # not a valid date
    ("ToDateTime", lit_str("2014-01-01"), DateTime(2014, 1, 1)),
    ("ToDateTime", lit_str("2014-01-01T12:05"), DateTime(2014, 1, 1, 12, 5)),
    ("ToDateTime", lit_str("2014-01-01T12:05:05.955"), DateTime(2014, 1, 1, 12, 5, 5, 955)),
    ("ToDateTime", lit_str("2014-01-01T12:05:05.955+01:30"), DateTime(2014, 1, 1, 12, 5, 5, 955, D("1.5"))),
    ("ToDateTime", lit_str("2014-01-01T12:05:05.955-01:15"), DateTime(2014, 1, 1, 12, 5, 5, 955, D("-1.25"))),
    ("ToDateTime", lit_str("2014-01-01T12:05:05.955Z"), DateTime(2014, 1, 1, 12, 5, 5, 955, D(0))),
    ("ToDateTime", lit_str("2014/01/01T12:05:05.955Z"), None),
    ("ToDateTime", lit_date("2014-01-01"), DateTime(2014, 1, 1)),  # same precision, no time
    ("ToDateTime", lit_date("2014-01"), DateTime(2014, 1)),
    ("ToTime", lit_str("T14:30:00.0"), Time(14, 30, 0, 0)),
    ("ToTime", lit_str("14:30:00.000"), Time(14, 30, 0, 0)),
    ("ToTime", lit_str("T14:30:00.0+05:30"), Time(14, 30, 0, 0)),  # the offset is ignored
    ("ToTime", lit_str("T14:30:00.0-05:45"), Time(14, 30, 0, 0)),
    ("ToTime", lit_str("T14:30:00.0Z"), Time(14, 30, 0, 0)),
    ("ToTime", lit_str("T14-30-00.0"), None),
    ("ToTime", lit_str("T14-30"), None),
    ("ToTime", lit_str("T25:00"), None),
    ("ToTime", lit_datetime("2014-01-01T12:30:15.500"), Time(12, 30, 15, 500)),
])
def test_temporal_conversions(node_type: str, arg: dict, expected: object) -> None:
    assert run(op(node_type, arg)) == expected


def test_to_datetime_of_date_has_no_time() -> None:
    result = run(op("ToDateTime", lit_date("2014-01-01")))
    assert result.hour is None
    assert result.precision == "day"


# ---------------------------------------------------------------------------- ToConcept, ToChars, ToList


def test_to_concept() -> None:
    assert run(op("ToConcept", code("8480-6"))) == Concept((Code("8480-6"),))
    with_display = run(op("ToConcept", code("c", "s", "Display")))
    assert with_display.display == "Display"
    assert run(op("ToConcept", as_(null(), "Code"))) is None
    assert run(op("ToConcept", list_(code("a", "s"), null(), code("b", "s")))) == \
        Concept((Code("a", "s"), Code("b", "s")))
    concept = run(op("ToConcept", ref("x")), x=FHIR_CC)
    assert concept == Concept((Code("8480-6", "http://loinc.org", display="SBP"),
                               Code("271649006", "http://snomed.info/sct")), "Systolic")
    coding = Node({"system": "s", "code": "c"}, "Coding")
    assert run(op("ToConcept", ref("x")), x=coding) == Concept((Code("c", "s"),))


def test_to_concept_of_other_values_is_an_error() -> None:
    with pytest.raises(CqlError):
        run(op("ToConcept", lit_int(1)))


def test_to_chars_and_to_list() -> None:
    assert run(op("ToChars", lit_str("abc"))) == ["a", "b", "c"]
    assert run(op("ToChars", lit_str(""))) == []
    assert run(op("ToChars", null())) is None
    assert run(op("ToList", null())) == []
    assert run(op("ToList", lit_int(1))) == [1]
    assert run(op("ToList", lit_bool(False))) == [False]


# ------------------------------------------------------------------------------------ Convert, CanConvert


def convert(operand: dict, to: str | dict) -> dict:
    node = {"type": "Convert", "operand": operand}
    if isinstance(to, dict):
        node["toTypeSpecifier"] = to
    else:
        node["toType"] = SYS + to
    return node


@pytest.mark.parametrize(("operand", "to", "expected"), [
    (lit_int(5), "Decimal", D("5")),
    (lit_int(5), "String", "5"),
    (lit_int(5), "Long", 5),
    (lit_int(5), "Quantity", Quantity(D(5), "1")),
    (lit_int(5), "Integer", 5),
    (lit_str("foo"), "Integer", None),
    (lit_str("true"), "Boolean", True),
    (lit_str("2014-01-01"), "DateTime", DateTime(2014, 1, 1)),
    (lit_str("T14:30:00.0"), "Time", Time(14, 30, 0, 0)),
    (lit_str("2014/01/01"), "DateTime", None),
    (lit_date("2014-01-01"), "DateTime", DateTime(2014, 1, 1)),
    (lit_datetime("2014-01-01T10:00"), "Date", Date(2014, 1, 1)),
    (lit_dec("2.5"), "Quantity", Quantity(D("2.5"), "1")),
    (code("c", "s"), "Concept", Concept((Code("c", "s"),))),
    (lit_str("5 'mg'"), "Quantity", Quantity(D(5), "mg")),
    (null(), "Integer", None),
    (lit_int(5), "Date", None),  # no conversion exists
])
def test_convert(operand: dict, to: str, expected: object) -> None:
    assert run(convert(operand, to)) == expected


def test_convert_concept_to_list_of_codes() -> None:
    spec = {"type": "ListTypeSpecifier", "elementType": {"type": "NamedTypeSpecifier", "name": SYS + "Code"}}
    concept = Concept((Code("a", "s"), Code("b", "s")))
    assert run(convert(ref("x"), spec), x=concept) == [Code("a", "s"), Code("b", "s")]


def test_can_convert() -> None:
    node = {"type": "CanConvert", "operand": lit_str("foo"), "toType": SYS + "Integer"}
    assert run(node) is False
    assert run({**node, "operand": lit_str("12")}) is True
    assert run({**node, "operand": null()}) is None


# ------------------------------------------------------------------------------------------ ConvertsTo


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("ConvertsToBoolean", lit_str("y"), True),
    ("ConvertsToBoolean", lit_str("maybe"), False),
    ("ConvertsToBoolean", null(), None),
    ("ConvertsToInteger", lit_str("12"), True),
    ("ConvertsToInteger", lit_str("12.5"), False),
    ("ConvertsToInteger", lit_bool(True), True),
    ("ConvertsToLong", lit_str("12"), True),
    ("ConvertsToDecimal", lit_str("12.5"), True),
    ("ConvertsToDecimal", lit_str("twelve"), False),
    ("ConvertsToQuantity", lit_str("5 'mg'"), True),
    ("ConvertsToQuantity", lit_str("5 'foo'"), False),
    ("ConvertsToQuantity", lit_int(5), True),
    ("ConvertsToRatio", lit_str("1 'mg':2 'mL'"), True),
    ("ConvertsToDate", lit_str("2014-01-01"), True),
    ("ConvertsToDate", lit_str("2014-13-01"), False),
    ("ConvertsToDateTime", lit_str("2014-01-01T10:00"), True),
    ("ConvertsToDateTime", lit_str("yesterday"), False),
    ("ConvertsToTime", lit_str("10:00:00"), True),
    ("ConvertsToTime", lit_str("10h"), False),
    ("ConvertsToString", lit_int(5), True),
    ("ConvertsToString", quantity(5, "mg"), True),
    ("ConvertsToString", code("c", "s"), False),
    ("ConvertsToString", null(), None),
])
def test_converts_to(node_type: str, arg: dict, expected: bool | None) -> None:
    assert run(op(node_type, arg)) is expected


# ------------------------------------------------------------------------------- quantity conversion


def test_convert_quantity() -> None:
    assert run(op("ConvertQuantity", quantity(1, "g"), lit_str("mg"))) == Quantity(D(1000), "mg")
    assert run(op("ConvertQuantity", quantity(5, "mg"), lit_str("g"))) == Quantity(D("0.005"), "g")
    assert run(op("ConvertQuantity", quantity(1, "cm"), lit_str("g"))) is None
    assert run(op("ConvertQuantity", as_(null(), "Quantity"), lit_str("g"))) is None
    assert run(op("ConvertQuantity", quantity(1, "g"), null())) is None
    assert run(op("ConvertQuantity", ref("x"), lit_str("g")), x=FHIR_QTY) == Quantity(D("0.005"), "g")


def test_can_convert_quantity() -> None:
    assert run(op("CanConvertQuantity", quantity(1, "g"), lit_str("mg"))) is True
    assert run(op("CanConvertQuantity", quantity(1, "cm"), lit_str("g"))) is False
    assert run(op("CanConvertQuantity", as_(null(), "Quantity"), lit_str("g"))) is None


def test_fhir_quantity_reading() -> None:
    years = Node({"value": 2, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"}, "Age")
    assert run(as_(ref("x"), "Quantity"), x=years) == Quantity(D(2), "year")  # FHIRHelpers calendar units
    with pytest.raises(CqlError):
        run(as_(ref("x"), "Quantity"), x=Node({"value": 5, "comparator": "<", "code": "mg"}, "Quantity"))


def test_fhir_type_casts_do_not_read_the_node() -> None:
    bad = Node({"value": 5, "comparator": "<", "code": "mg"}, "Quantity")
    assert run(as_(ref("x"), FHIR + "Observation"), x=bad) is None
    assert run(is_(ref("x"), FHIR + "Quantity"), x=bad) is True

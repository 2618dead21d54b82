"""Comparison operators (CQL §12): Equal, NotEqual, Equivalent, Less, Greater, LessOrEqual, GreaterOrEqual,
with the CQL null, precision, unit and uncertainty rules (cases follow the HL7 cql-tests where they exist)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.cql.datetime import Uncertainty
from gateway.cql.fhirmodel import Node
from gateway.cql.interval import Interval
from gateway.cql.ops_comparison import cql_compare, cql_equal, cql_equivalent
from gateway.cql.values import Code, Concept, CqlError
from tests.cql.elmutil import (
    as_,
    code,
    list_,
    lit_bool,
    lit_date,
    lit_datetime,
    lit_dec,
    lit_int,
    lit_str,
    lit_time,
    null,
    op,
    quantity,
    ratio,
    ref,
    run,
    tuple_,
)


def eq(a: dict, b: dict) -> object:
    return run(op("Equal", a, b))


def equiv(a: dict, b: dict) -> object:
    return run(op("Equivalent", a, b))


# ------------------------------------------------------------------------------------------------- Equal


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_bool(True), lit_bool(True), True),
    (lit_bool(True), lit_bool(False), False),
    (lit_int(1), lit_int(1), True),
    (lit_int(1), lit_int(2), False),
    (lit_dec("1.0"), lit_int(1), True),  # Integer promoted to Decimal
    (lit_dec("1.0"), lit_dec("1.00"), True),  # trailing zeros ignored
    (lit_dec("1.0"), lit_int(2), False),
    (lit_str("a"), lit_str("a"), True),
    (lit_str("a"), lit_str("A"), False),  # strictly lexical
    (lit_str("a"), lit_str("a "), False),
    (quantity(1, "cm"), quantity(1, "cm"), True),
    (quantity(1, "cm"), quantity("0.01", "m"), True),
    (quantity("2.0", "cm"), quantity("2.00", "cm"), True),
    (quantity(1, "g"), quantity(1000, "mg"), True),
    (quantity(1, "g"), quantity(999, "mg"), False),
    (quantity(1, "week"), quantity(7, "days"), True),
    (quantity(1, "day"), quantity(1, "d"), True),
    (quantity(1, "year"), quantity(12, "months"), True),
    (lit_time("T10:00:00.000"), lit_time("T10:00:00.000"), True),
    (lit_time("T10:00:00.000"), lit_time("T22:00:00.000"), False),
    (lit_datetime("2014-01-25T14:30:14.559+01:00"), lit_datetime("2014-01-25T14:30:14.559+01:00"), True),
    (lit_date("2014-01-05"), lit_date("2014-07-05"), False),
])
def test_equal(a: dict, b: dict, expected: bool) -> None:
    assert eq(a, b) is expected


@pytest.mark.parametrize(("a", "b"), [
    (null(), null()),
    (lit_int(1), null()),
    (null(), lit_str("a")),
    (as_(null(), "String"), lit_str("a")),
    (lit_bool(True), null()),
])
def test_equal_null_operand_is_null(a: dict, b: dict) -> None:
    assert eq(a, b) is None
    assert run(op("NotEqual", a, b)) is None


@pytest.mark.parametrize(("a", "b"), [
    (quantity(1, "month"), quantity(1, "mo")),  # calendar month is not a definite duration
    (quantity(1, "year"), quantity(1, "a")),
    (quantity(1, "cm"), quantity(1, "g")),  # not commensurable
    (lit_datetime("2014"), lit_datetime("2014-02-15")),  # uncertain: one has a month, the other not
    (lit_date("2014-01"), lit_date("2014-01-01")),
])
def test_equal_uncertain_is_null(a: dict, b: dict) -> None:
    assert eq(a, b) is None
    assert run(op("NotEqual", a, b)) is None


def test_equal_date_precision_difference_decided_early() -> None:
    assert eq(lit_date("2014-01"), lit_date("2015-01-01")) is False


@pytest.mark.parametrize(("a", "b", "expected"), [
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(1), Name=lit_str("John")), True),
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(2), Name=lit_str("Jane")), False),
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(2), Name=null()), False),
    # element by element in order: the first unknown element makes it unknown (HL7 suite TupleEqDifferent...)
    (tuple_(Id=null(), Name=lit_str("John")), tuple_(Id=lit_int(1), Name=lit_str("James")), None),
    (tuple_(Id=lit_int(1), Name=null()), tuple_(Id=lit_int(1), Name=null()), True),  # both null: equal
    (tuple_(Id=null(), Name=lit_str("John")), tuple_(Id=null(), Name=lit_str("John")), True),
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(1), Name=null()), None),
    (tuple_(Id=lit_int(1)), tuple_(Key=lit_int(1)), False),  # different element names
    (tuple_(D=lit_datetime("2012-10-05T00:00:00.000")), tuple_(D=lit_datetime("2012-10-05T05:00:00.000")), False),
    (tuple_(D=lit_dec("1.0")), tuple_(D=lit_int(1)), True),
])
def test_equal_tuples(a: dict, b: dict, expected: bool | None) -> None:
    assert eq(a, b) is expected
    assert run(op("NotEqual", a, b)) is (None if expected is None else not expected)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (list_(lit_int(1), lit_int(2)), list_(lit_int(1), lit_int(2)), True),
    (list_(lit_int(1), lit_int(2)), list_(lit_int(2), lit_int(1)), False),  # order matters
    (list_(lit_int(1)), list_(lit_int(1), lit_int(1)), False),
    (list_(), list_(), True),
    (list_(null(), lit_int(1)), list_(null(), lit_int(1)), True),  # null elements considered equal
    (list_(lit_int(1), null()), list_(lit_int(1), lit_int(2)), None),
    (list_(lit_int(3), null()), list_(lit_int(1), lit_int(2)), False),  # a known difference wins
    (list_(lit_str("a"), lit_dec("1.0")), list_(lit_str("a"), lit_int(1)), True),
    (list_(list_(lit_int(1))), list_(list_(lit_int(1))), True),
])
def test_equal_lists(a: dict, b: dict, expected: bool | None) -> None:
    assert eq(a, b) is expected


def test_equal_codes_and_concepts() -> None:
    assert eq(code("c", "s"), code("c", "s")) is True
    assert eq(code("c", "s"), code("c", "other")) is False
    c1, c2 = Concept((Code("a", "s"), Code("b", "s"))), Concept((Code("a", "s"), Code("b", "s")))
    assert run(op("Equal", ref("x"), ref("y")), x=c1, y=c2) is True
    assert run(op("Equal", ref("x"), ref("y")), x=c1, y=Concept((Code("a", "s"),))) is False


def test_equal_intervals() -> None:
    a, b = Interval(1, 5, True, False), Interval(1, 4)
    assert run(op("Equal", ref("a"), ref("b")), a=a, b=b) is True  # [1, 5) = [1, 4]
    assert run(op("Equal", ref("a"), ref("b")), a=a, b=Interval(1, 5)) is False
    assert run(op("Equivalent", ref("a"), ref("b")), a=a, b=b) is True
    assert run(op("NotEqual", ref("a"), ref("b")), a=a, b=Interval(2, 4)) is True


def test_equal_reads_fhir_primitives() -> None:
    assert run(op("Equal", ref("x"), lit_date("2014-01-01")), x=Node("2014-01-01", "date")) is True
    assert run(op("Equal", ref("x"), lit_str("final")), x=Node("final", "code")) is True
    assert run(op("Equal", ref("x"), lit_dec("5")), x=Node(5, "integer")) is True
    assert run(op("Equal", ref("x"), null()), x=Node("final", "code")) is None
    fhir_q = Node({"value": 1, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}, "Quantity")
    assert run(op("Equal", ref("x"), quantity(1000, "mg")), x=fhir_q) is True
    assert run(op("Greater", ref("x"), lit_int(3)), x=Node(5, "integer")) is True


def test_equal_mixed_types_is_false() -> None:
    assert eq(lit_int(1), lit_str("1")) is False
    assert eq(lit_bool(True), lit_int(1)) is False


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_int(1), lit_int(1), False),
    (lit_int(1), lit_int(2), True),
    (lit_dec("1.0"), lit_int(1), False),
    (lit_str("a"), lit_str("b"), True),
    (quantity(1, "cm"), quantity("0.01", "m"), False),
    (lit_bool(False), lit_bool(True), True),
])
def test_not_equal(a: dict, b: dict, expected: bool) -> None:
    assert run(op("NotEqual", a, b)) is expected


# -------------------------------------------------------------------------------------------- Equivalent


@pytest.mark.parametrize(("a", "b", "expected"), [
    (null(), null(), True),
    (lit_int(1), null(), False),
    (null(), lit_str("a"), False),
    (lit_bool(True), lit_bool(True), True),
    (lit_bool(True), lit_bool(False), False),
    (lit_int(1), lit_int(1), True),
    (lit_int(1), lit_int(2), False),
    (lit_dec("1.0"), lit_int(1), True),
    (lit_dec("1.0"), lit_dec("2.0"), False),
    (lit_str("a"), lit_str("a"), True),
    (lit_str("a"), lit_str("A"), True),  # case ignored
    (lit_str("abc def"), lit_str("ABC\tDEF"), True),  # every whitespace character alike
    (lit_str("a\nb"), lit_str("A B"), True),
    (lit_str("a b"), lit_str("ab"), False),
    (lit_str("a"), lit_str("b"), False),
    (quantity(1, "cm"), quantity(1, "cm"), True),
    (quantity(1, "cm"), quantity("0.01", "m"), True),
    (quantity(1, "month"), quantity(1, "mo"), True),  # calendar units equivalent to their UCUM counterparts
    (quantity(1, "year"), quantity(1, "a"), True),
    (quantity(1, "cm"), quantity(1, "g"), False),
    (lit_time("T10:00:00.000"), lit_time("T10:00:00.000"), True),
    (lit_time("T10:00:00.000"), lit_time("T22:00:00.000"), False),
    (lit_date("2014-01"), lit_date("2014-01-01"), False),  # different precision: false, not null
    (lit_datetime("2014-01-01T10:00"), lit_datetime("2014-01-01T10:00"), True),
])
def test_equivalent(a: dict, b: dict, expected: bool) -> None:
    assert equiv(a, b) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.23", "1.2", True),  # rounded to the least precise operand (1 place)
    ("1.25", "1.3", True),  # 1.25 rounds half up to 1.3
    ("1.24", "1.3", False),
    ("1.20", "1.2", True),
    ("1.200", "1.21", True),  # trailing zeros do not count: 1.200 has one place, and 1.21 rounds to 1.2
    ("1.200", "1.26", False),
    ("-1.25", "-1.3", True),
    ("10", "10.4", True),
    ("3.33333333", "3.33333333", True),
])
def test_equivalent_decimals_at_least_precision(a: str, b: str, expected: bool) -> None:
    assert equiv(lit_dec(a), lit_dec(b)) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(1), Name=lit_str("john")), True),
    (tuple_(Id=lit_int(1), Name=lit_str("John"), Position=null()),
     tuple_(Id=lit_int(1), Name=lit_str("John"), Position=null()), True),
    (tuple_(Id=lit_int(1), Name=lit_str("John")), tuple_(Id=lit_int(2), Name=lit_str("John")), False),
    (tuple_(Id=lit_int(1), Name=null()), tuple_(Id=lit_int(1), Name=lit_str("John")), False),
    (list_(null(), lit_str("A")), list_(null(), lit_str("a")), True),
    (list_(lit_int(1), null()), list_(lit_int(1), lit_int(2)), False),
    (list_(lit_int(1)), list_(lit_int(1), lit_int(1)), False),
    (list_(), list_(), True),
])
def test_equivalent_tuples_and_lists(a: dict, b: dict, expected: bool) -> None:
    assert equiv(a, b) is expected


def test_equivalent_codes_and_concepts() -> None:
    assert equiv(code("c", "s", "one display"), code("c", "s", "another")) is True  # display ignored
    assert equiv(code("c", "s"), code("C", "s")) is False
    assert equiv(code("c", "s"), code("c", "t")) is False
    concept = Concept((Code("x", "s"), Code("c", "s")))
    assert run(op("Equivalent", code("c", "s"), ref("k")), k=concept) is True  # Code ~ Concept
    assert run(op("Equivalent", ref("k"), code("c", "s")), k=concept) is True  # Concept ~ Code
    assert run(op("Equivalent", ref("k"), code("z", "s")), k=concept) is False
    other = Concept((Code("c", "s", display="d"), Code("q", "s")))
    assert run(op("Equivalent", ref("a"), ref("b")), a=concept, b=other) is True  # non-empty intersection
    assert run(op("Equivalent", ref("a"), ref("b")), a=concept, b=Concept((Code("q", "s"),))) is False


def test_equivalent_fhir_codeable_concept_and_code() -> None:
    cc = Node({"coding": [{"system": "s", "code": "c"}], "text": "t"}, "CodeableConcept")
    assert run(op("Equivalent", ref("x"), code("c", "s")), x=cc) is True
    assert run(op("Equivalent", ref("x"), code("c", "t")), x=cc) is False


def test_equivalent_never_null_on_uncertain_values() -> None:
    assert equiv(lit_datetime("2014"), lit_datetime("2014-02-15")) is False
    assert equiv(quantity(1, "cm"), quantity(1, "g")) is False


# ---------------------------------------------------------------------------------------------- ordering


@pytest.mark.parametrize(("a", "b", "lt", "gt"), [
    (lit_int(0), lit_int(0), False, False),
    (lit_int(0), lit_int(1), True, False),
    (lit_int(0), lit_int(-1), False, True),
    (lit_dec("0.0"), lit_dec("1.0"), True, False),
    (lit_dec("1.0"), lit_int(2), True, False),
    (lit_int(2), lit_dec("1.99999999"), False, True),
    (lit_str("a"), lit_str("b"), True, False),
    (lit_str("a"), lit_str("aa"), True, False),
    (lit_str("aa"), lit_str("a"), False, True),
    (lit_str("Jack"), lit_str("Jill"), True, False),
    (lit_str("Z"), lit_str("a"), True, False),  # ordinal (code point) order, not alphabetical
    (quantity(0, "cm"), quantity(1, "cm"), True, False),
    (quantity(1, "m"), quantity(10, "cm"), False, True),
    (quantity("9.5", "%"), quantity(9, "%"), False, True),
    (quantity(999, "mg"), quantity(1, "g"), True, False),
    (lit_datetime("2012-02-12"), lit_datetime("2012-02-10"), False, True),
    (lit_time("T10:00:00.001"), lit_time("T10:00:00.000"), False, True),
    (lit_datetime("2015"), lit_datetime("2014-02-15"), False, True),
    (lit_datetime("2013"), lit_datetime("2014-02-15"), True, False),
])
def test_less_greater(a: dict, b: dict, lt: bool, gt: bool) -> None:
    assert run(op("Less", a, b)) is lt
    assert run(op("Greater", a, b)) is gt
    same = run(op("Equal", a, b))
    assert run(op("LessOrEqual", a, b)) is (lt or same is True)
    assert run(op("GreaterOrEqual", a, b)) is (gt or same is True)


@pytest.mark.parametrize("node_type", ["Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
@pytest.mark.parametrize(("a", "b"), [
    (lit_int(1), null()),
    (null(), lit_int(1)),
    (lit_datetime("2014"), lit_datetime("2014-02-15")),  # uncertain
    (quantity(1, "cm"), quantity(1, "g")),  # incommensurable units
    (quantity(1, "month"), quantity(30, "d")),  # calendar vs definite duration
])
def test_ordering_null_and_uncertain(node_type: str, a: dict, b: dict) -> None:
    assert run(op(node_type, a, b)) is None


def test_ordering_on_equal_values() -> None:
    assert run(op("LessOrEqual", lit_int(5), lit_int(5))) is True
    assert run(op("GreaterOrEqual", lit_dec("5.0"), lit_int(5))) is True
    assert run(op("LessOrEqual", lit_time("T10:00:00"), lit_time("T10:00:00.000"))) is True


def test_ordering_with_precision_attribute() -> None:
    a, b = lit_datetime("2014-01-01T10:00"), lit_datetime("2014-01-01T12:00")
    assert run(op("Less", a, b)) is True
    assert run(op("Less", a, b, precision="Day")) is False
    assert run(op("LessOrEqual", a, b, precision="Day")) is True


def test_ordering_uncertainty_ranges() -> None:
    u = Uncertainty(6, 18)
    assert run(op("LessOrEqual", ref("u"), lit_int(18)), u=u) is True
    assert run(op("Less", ref("u"), lit_int(18)), u=u) is None
    assert run(op("Greater", ref("u"), lit_int(5)), u=u) is True
    assert run(op("Less", lit_int(5), ref("u")), u=u) is True
    assert run(op("Equal", ref("u"), lit_int(20)), u=u) is False
    assert run(op("Equal", ref("u"), lit_int(10)), u=u) is None


def test_ordering_booleans_is_an_error() -> None:
    with pytest.raises(CqlError):
        run(op("Less", lit_bool(False), lit_bool(True)))


def test_entry_points() -> None:
    assert cql_compare(1, Decimal("0.5")) == 1
    assert cql_compare(None, 1) is None
    assert cql_equal([1, None], [1, None]) is True
    assert cql_equivalent({"a": "X"}, {"a": "x"}) is True
    assert cql_equivalent(Decimal("1.0"), 1) is True


def test_ratios() -> None:
    a, b = ratio(1, "mg", 100, "mL"), ratio(10, "mg", 1000, "mL")
    assert run(op("Equal", a, b)) is False  # numerators and denominators compared separately
    assert run(op("Equivalent", a, b)) is True  # the same ratio
    assert run(op("Equal", a, ratio(1, "mg", 100, "mL"))) is True
    assert run(op("Equivalent", a, ratio(2, "mg", 100, "mL"))) is False


def test_fhir_coding_against_code() -> None:
    coding = Node({"system": "s", "code": "c", "display": "x"}, "Coding")
    assert run(op("Equivalent", ref("x"), code("c", "s")), x=coding) is True
    assert run(op("Equal", ref("x"), code("c", "s")), x=coding) is True
    assert run(op("Equal", ref("x"), ref("y")), x=Node({"reference": "Patient/1"}, "Reference"),
               y=Node({"reference": "Patient/1"}, "Reference")) is True

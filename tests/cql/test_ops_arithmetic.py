"""Arithmetic operators (CQL §16): Integer/Long/Decimal arithmetic with overflow and division by zero as null,
8-place Decimals, rounding, truncation, Quantity arithmetic through UCUM, and date/time + calendar durations.
Cases follow the HL7 cql-tests (CqlArithmeticFunctionsTest) where they exist."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.cql.datetime import Date, DateTime, Time, Uncertainty
from gateway.cql.fhirmodel import Node
from gateway.cql.quantity import Quantity
from gateway.cql.values import CqlError
from tests.cql.elmutil import (
    SYS,
    as_,
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
    ref,
    run,
)

D = Decimal
INT_MAX, INT_MIN = 2**31 - 1, -(2**31)
LONG_MAX, LONG_MIN = 2**63 - 1, -(2**63)


def value(node_type: str, *operands: dict, **attrs: object) -> object:
    return run(op(node_type, *operands, **attrs))


def same(result: object, expected: object) -> None:
    """Equal value and the same CQL type (Integer stays int, Decimal stays Decimal)."""
    assert result == expected, (result, expected)
    assert type(result) is type(expected), (type(result), type(expected))


# ------------------------------------------------------------------------------------ null propagation


@pytest.mark.parametrize("node_type", ["Add", "Subtract", "Multiply", "Divide", "TruncatedDivide", "Modulo",
                                       "Power", "Log"])
def test_binary_null_propagation(node_type: str) -> None:
    assert value(node_type, lit_int(1), null()) is None
    assert value(node_type, null(), lit_dec("1.0")) is None
    assert value(node_type, as_(null(), "Integer"), as_(null(), "Integer")) is None


@pytest.mark.parametrize("node_type", ["Negate", "Abs", "Ceiling", "Floor", "Truncate", "Round", "Ln", "Exp",
                                       "Successor", "Predecessor", "Precision"])
def test_unary_null_propagation(node_type: str) -> None:
    assert value(node_type, as_(null(), "Decimal")) is None


# ------------------------------------------------------------------------------------------------ Add...


@pytest.mark.parametrize(("node_type", "a", "b", "expected"), [
    ("Add", lit_int(1), lit_int(1), 2),
    ("Add", lit_dec("1.0"), lit_dec("1.0"), D("2.0")),
    ("Add", lit_int(1), lit_dec("2.0"), D("3.0")),  # Integer promoted
    ("Add", lit_long(1), lit_long(2), 3),
    ("Subtract", lit_int(1), lit_int(1), 0),
    ("Subtract", lit_dec("1.0"), lit_dec("2.0"), D("-1.0")),
    ("Subtract", lit_int(2), lit_dec("1.1"), D("0.9")),
    ("Multiply", lit_int(2), lit_int(3), 6),
    ("Multiply", lit_dec("1.0"), lit_dec("2.0"), D("2.0")),
    ("Multiply", lit_int(1), lit_dec("2.0"), D("2.0")),
    ("Multiply", lit_long(2), lit_long(3), 6),
])
def test_basic_arithmetic(node_type: str, a: dict, b: dict, expected: object) -> None:
    same(value(node_type, a, b), expected)


@pytest.mark.parametrize(("node_type", "a", "b"), [
    ("Add", lit_int(INT_MAX), lit_int(1)),
    ("Subtract", lit_int(INT_MIN), lit_int(1)),
    ("Multiply", lit_int(2**16), lit_int(2**16)),
    ("Add", lit_long(LONG_MAX), lit_long(1)),
    ("Multiply", lit_long(2**32), lit_long(2**32)),
    ("Add", lit_dec("99999999999999999999.99999999"), lit_dec("0.00000001")),
    ("Multiply", lit_dec("99999999999999999999"), lit_dec("10")),
])
def test_overflow_is_null(node_type: str, a: dict, b: dict) -> None:
    assert value(node_type, a, b) is None


def test_long_arithmetic_does_not_overflow_at_32_bits() -> None:
    same(value("Add", lit_long(INT_MAX), lit_long(1)), INT_MAX + 1)
    same(value("Multiply", lit_long(2**16), lit_long(2**16)), 2**32)
    add_long = op("Add", lit_int(INT_MAX), lit_int(1), signature=[
        {"type": "NamedTypeSpecifier", "name": SYS + "Long"}, {"type": "NamedTypeSpecifier", "name": SYS + "Long"}])
    same(run(add_long), INT_MAX + 1)  # the signature says Long
    same(run(op("Add", op("ToLong", lit_int(INT_MAX)), lit_int(1))), INT_MAX + 1)
    same(run(op("Add", ref("big"), lit_int(1)), big=2**40), 2**40 + 1)  # an operand beyond Integer is a Long


def test_decimal_results_have_at_most_8_places() -> None:
    same(value("Multiply", lit_dec("1.00000001"), lit_dec("1.00000001")), D("1.00000002"))
    same(value("Add", lit_dec("0.1"), lit_dec("0.2")), D("0.3"))
    same(value("Divide", lit_dec("0.00000003"), lit_int(2)), D("0.00000002"))  # rounded half up


# --------------------------------------------------------------------------------------------- Divide


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_int(1), lit_int(1), D("1.0")),
    (lit_int(0), lit_int(1), D("0.0")),
    (lit_int(10), lit_int(5), D("2.0")),  # Integer / Integer is a Decimal
    (lit_int(10), lit_dec("5.0"), D("2.0")),
    (lit_int(10), lit_int(3), D("3.33333333")),  # 8 decimal places
    (lit_int(2), lit_int(3), D("0.66666667")),  # rounded half up
    (lit_dec("-2"), lit_int(3), D("-0.66666667")),
    (lit_long(1), lit_long(1), D("1.0")),
])
def test_divide(a: dict, b: dict, expected: Decimal) -> None:
    same(value("Divide", a, b), expected)


@pytest.mark.parametrize(("a", "b"), [(lit_int(1), lit_int(0)), (lit_dec("1.5"), lit_dec("0.0")),
                                      (lit_int(0), lit_int(0)), (quantity(1, "g"), quantity(0, "g"))])
def test_divide_by_zero_is_null(a: dict, b: dict) -> None:
    assert value("Divide", a, b) is None


def test_divide_overflow_is_null() -> None:
    assert value("Divide", lit_dec("99999999999999999999"), lit_dec("0.01")) is None


# ---------------------------------------------------------------------------- TruncatedDivide, Modulo


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_int(2), lit_int(1), 2),
    (lit_int(10), lit_int(3), 3),
    (lit_long(10), lit_long(3), 3),
    (lit_int(-2), lit_int(-1), 2),
    (lit_int(-10), lit_int(-3), 3),
    (lit_int(-2), lit_int(1), -2),
    (lit_int(-10), lit_int(3), -3),  # toward zero, not floor (Python's -10 // 3 is -4)
    (lit_int(10), lit_int(-3), -3),
    (lit_dec("10.1"), lit_dec("3.1"), D("3")),
    (lit_dec("-10.1"), lit_dec("-3.1"), D("3")),
    (lit_dec("-10.1"), lit_dec("3.1"), D("-3")),
    (lit_dec("10.1"), lit_dec("-3.1"), D("-3")),
    (lit_int(10), lit_dec("5.0"), D("2")),
])
def test_truncated_divide(a: dict, b: dict, expected: object) -> None:
    same(value("TruncatedDivide", a, b), expected)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_int(4), lit_int(2), 0),
    (lit_int(10), lit_int(3), 1),
    (lit_long(4), lit_long(2), 0),
    (lit_dec("4.0"), lit_dec("2.0"), D("0")),
    (lit_dec("10.0"), lit_dec("3.0"), D("1.0")),
    (lit_int(10), lit_dec("3.0"), D("1.0")),
    (lit_dec("3.5"), lit_int(3), D("0.5")),
    (lit_int(-5), lit_int(3), -2),  # the sign of the dividend (Python's -5 % 3 is 1)
    (lit_int(5), lit_int(-3), 2),
    (lit_int(-5), lit_int(-3), -2),
    (lit_dec("-5.5"), lit_int(3), D("-2.5")),
])
def test_modulo(a: dict, b: dict, expected: object) -> None:
    same(value("Modulo", a, b), expected)


@pytest.mark.parametrize("node_type", ["TruncatedDivide", "Modulo"])
def test_div_mod_by_zero_is_null(node_type: str) -> None:
    assert value(node_type, lit_int(0), lit_int(0)) is None
    assert value(node_type, lit_int(5), lit_int(0)) is None
    assert value(node_type, lit_dec("5.0"), lit_dec("0.0")) is None
    assert value(node_type, quantity("10.0", "g"), quantity("0.0", "g")) is None


def test_div_mod_quantities() -> None:
    assert value("TruncatedDivide", quantity("10.1", "cm"), quantity("-3.1", "cm")) == Quantity(D(-3), "cm")
    assert value("TruncatedDivide", quantity("4.14", "m"), quantity("2.06", "m")) == Quantity(D(2), "m")
    assert value("Modulo", quantity("3.5", "cm"), quantity(3, "cm")) == Quantity(D("0.5"), "cm")
    assert value("Modulo", quantity(1, "m"), quantity(30, "cm")) == Quantity(D("0.1"), "m")


# ------------------------------------------------------------------------------------------ unary ops


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("Negate", lit_int(0), 0),
    ("Negate", lit_int(1), -1),
    ("Negate", op("Negate", lit_int(1)), 1),
    ("Negate", lit_long(LONG_MAX), -LONG_MAX),
    ("Negate", lit_dec("1.0"), D("-1.0")),
    ("Negate", lit_dec("-0.0"), D("0.0")),
    ("Abs", lit_int(0), 0),
    ("Abs", lit_int(-1), 1),
    ("Abs", lit_dec("-1.0"), D("1.0")),
    ("Abs", lit_long(-1), 1),
    ("Ceiling", lit_dec("1.0"), 1),
    ("Ceiling", lit_dec("1.1"), 2),
    ("Ceiling", lit_dec("-0.1"), 0),
    ("Ceiling", lit_dec("-1.1"), -1),
    ("Ceiling", lit_int(1), 1),
    ("Floor", lit_dec("1.1"), 1),
    ("Floor", lit_dec("-0.1"), -1),
    ("Floor", lit_dec("-1.1"), -2),
    ("Floor", lit_int(2), 2),
    ("Truncate", lit_dec("0.1"), 0),
    ("Truncate", lit_dec("1.9"), 1),
    ("Truncate", lit_dec("-1.9"), -1),
    ("Truncate", lit_int(-1), -1),
])
def test_unary(node_type: str, arg: dict, expected: object) -> None:
    same(value(node_type, arg), expected)


def test_negate_and_abs_of_minimum_integer_overflow() -> None:
    assert value("Negate", op("Subtract", op("Negate", lit_int(INT_MAX)), lit_int(1))) is None
    assert value("Abs", op("Subtract", op("Negate", lit_int(INT_MAX)), lit_int(1))) is None
    assert value("Ceiling", lit_dec("3000000000.5")) is None  # not an Integer


def test_negate_and_abs_quantity() -> None:
    assert value("Negate", quantity(1, "cm")) == Quantity(D(-1), "cm")
    assert value("Abs", quantity("-1.0", "cm")) == Quantity(D(1), "cm")


@pytest.mark.parametrize(("arg", "precision", "expected"), [
    (lit_int(1), None, D("1")),
    (lit_dec("0.5"), None, D("1")),
    (lit_dec("0.4"), None, D("0")),
    (lit_dec("2.5"), None, D("3")),
    (lit_dec("-0.5"), None, D("-1")),  # halves go away from zero (CQL §16 Round)
    (lit_dec("-0.4"), None, D("0")),
    (lit_dec("-0.6"), None, D("-1")),
    (lit_dec("-1.1"), None, D("-1")),
    (lit_dec("-1.5"), None, D("-2")),
    (lit_dec("-2.5"), None, D("-3")),
    (lit_dec("-1.6"), None, D("-2")),
    (lit_dec("3.14159"), lit_int(2), D("3.14")),
    (lit_dec("3.14159"), lit_int(3), D("3.142")),
    (lit_dec("3.14159"), null(), D("3")),  # a null precision is 0
    (lit_dec("125.5"), lit_int(-1), D("130")),
])
def test_round(arg: dict, precision: dict | None, expected: Decimal) -> None:
    node = op("Round", arg)
    if precision is not None:
        node["precision"] = precision
    same(run(node), expected)


# ------------------------------------------------------------------------------- Ln, Exp, Log, Power


def test_ln_exp_log() -> None:
    same(value("Ln", lit_int(1)), D("0"))
    same(value("Ln", lit_long(1)), D("0"))
    same(value("Round", op("Ln", lit_int(1000)), precision=lit_int(8)), D("6.90775528"))
    same(value("Exp", lit_int(0)), D("1"))
    same(value("Exp", op("Negate", lit_int(0))), D("1"))
    same(value("Exp", lit_int(1)), D("2.71828183"))
    same(value("Exp", op("Negate", lit_int(1))), D("0.36787944"))
    same(value("Log", lit_int(16), lit_int(2)), D("4"))
    same(value("Log", lit_dec("0.125"), lit_int(2)), D("-3"))
    same(value("Log", lit_int(1), lit_int(100)), D("0"))
    same(value("Log", lit_long(1), lit_long(100)), D("0"))


@pytest.mark.parametrize(("node_type", "operands"), [
    ("Ln", [lit_int(-1)]),
    ("Log", [lit_int(1), lit_int(1)]),  # base 1
    ("Log", [lit_int(2), lit_int(1)]),
    ("Log", [lit_int(0), lit_int(2)]),
    ("Log", [lit_int(-8), lit_int(2)]),
    ("Power", [lit_int(0), lit_int(-1)]),  # division by zero
    ("Power", [lit_dec("-8.0"), lit_dec("0.5")]),  # not a real number
    ("Power", [lit_int(2), lit_int(31)]),  # Integer overflow
    ("Power", [lit_int(10), lit_int(1000000)]),
])
def test_unrepresentable_results_are_null(node_type: str, operands: list[dict]) -> None:
    assert value(node_type, *operands) is None


@pytest.mark.parametrize(("a", "b", "expected"), [
    (lit_int(0), lit_int(0), 1),
    (lit_int(2), lit_int(2), 4),
    (lit_int(-2), lit_int(2), 4),
    (lit_int(-2), lit_int(3), -8),
    (lit_int(2), lit_int(4), 16),
    (lit_int(2), lit_int(30), 2**30),
    (lit_long(2), lit_long(40), 2**40),
    (lit_int(2), lit_int(-2), D("0.25")),  # a negative exponent gives a Decimal
    (lit_dec("2.0"), lit_dec("2.0"), D("4")),
    (lit_dec("-2.0"), lit_dec("2.0"), D("4")),
    (lit_dec("2.0"), lit_dec("-2.0"), D("0.25")),
    (lit_dec("2.0"), lit_int(2), D("4")),
    (lit_int(2), lit_dec("2.0"), D("4")),
    (lit_dec("4"), lit_dec("0.5"), D("2")),
    (lit_dec("2"), lit_dec("0.5"), D("1.41421356")),
])
def test_power(a: dict, b: dict, expected: object) -> None:
    same(value("Power", a, b), expected)


# ------------------------------------------------------------------------------- Successor, Predecessor


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("Successor", lit_int(0), 1),
    ("Successor", lit_long(1), 2),
    ("Successor", lit_dec("1.0"), D("1.00000001")),
    ("Successor", lit_dec("1.01"), D("1.01000001")),
    ("Successor", lit_date("2000-01-01"), Date(2000, 1, 2)),
    ("Successor", lit_datetime("2000-01-01"), DateTime(2000, 1, 2)),
    ("Successor", lit_time("T12:00:00.000"), Time(12, 0, 0, 1)),
    ("Successor", lit_date("2000-12"), Date(2001, 1)),
    ("Predecessor", lit_int(0), -1),
    ("Predecessor", lit_long(1), 0),
    ("Predecessor", lit_dec("1.0"), D("0.99999999")),
    ("Predecessor", lit_dec("1.01"), D("1.00999999")),
    ("Predecessor", lit_datetime("2000-01-01"), DateTime(1999, 12, 31)),
    ("Predecessor", lit_time("T12:00:00.000"), Time(11, 59, 59, 999)),
])
def test_successor_predecessor(node_type: str, arg: dict, expected: object) -> None:
    same(value(node_type, arg), expected)


def test_successor_predecessor_quantity() -> None:
    assert value("Successor", quantity("1.0", "cm")) == Quantity(D("1.00000001"), "cm")
    assert value("Predecessor", quantity("1.0", "cm")) == Quantity(D("0.99999999"), "cm")


@pytest.mark.parametrize(("node_type", "arg"), [
    ("Successor", lit_int(INT_MAX)),
    ("Predecessor", lit_int(INT_MIN)),
    ("Successor", lit_long(LONG_MAX)),
    ("Successor", lit_dec("99999999999999999999.99999999")),
    ("Successor", lit_datetime("9999-12-31T23:59:59.999")),
    ("Successor", lit_time("T23:59:59.999")),
    ("Predecessor", lit_datetime("0001-01-01T00:00:00.000")),
    ("Predecessor", lit_time("T00:00:00.000")),
])
def test_successor_predecessor_out_of_range_is_an_error(node_type: str, arg: dict) -> None:
    with pytest.raises(CqlError):
        value(node_type, arg)


# ---------------------------------------------------------------------------------- MinValue, MaxValue


@pytest.mark.parametrize(("type_name", "lo", "hi"), [
    ("Integer", INT_MIN, INT_MAX),
    ("Long", LONG_MIN, LONG_MAX),
    ("Decimal", D("-99999999999999999999.99999999"), D("99999999999999999999.99999999")),
    ("Date", Date(1, 1, 1), Date(9999, 12, 31)),
    ("DateTime", DateTime(1, 1, 1, 0, 0, 0, 0), DateTime(9999, 12, 31, 23, 59, 59, 999)),
    ("Time", Time(0, 0, 0, 0), Time(23, 59, 59, 999)),
])
def test_min_max_value(type_name: str, lo: object, hi: object) -> None:
    same(run({"type": "MinValue", "valueType": SYS + type_name}), lo)
    same(run({"type": "MaxValue", "valueType": SYS + type_name}), hi)


def test_min_value_of_other_types_is_an_error() -> None:
    with pytest.raises(CqlError):
        run({"type": "MinValue", "valueType": SYS + "Quantity"})
    with pytest.raises(CqlError):
        run({"type": "MaxValue", "valueType": SYS + "String"})


# ------------------------------------------------------------------- Precision, LowBoundary, HighBoundary


@pytest.mark.parametrize(("arg", "expected"), [
    (lit_dec("1.58700"), 5),
    (lit_dec("1"), 0),
    (lit_date("2014"), 4),
    (lit_date("2014-01-05"), 8),
    (lit_datetime("2014-01-05T10"), 10),
    (lit_datetime("2014-01-05T10:30:00.000"), 17),
    (lit_time("T10:30"), 4),
    (lit_time("T10:30:00.000"), 9),
])
def test_precision(arg: dict, expected: int) -> None:
    same(value("Precision", arg), expected)


@pytest.mark.parametrize(("node_type", "arg", "digits", "expected"), [
    ("LowBoundary", lit_dec("1.587"), lit_int(8), D("1.58700000")),
    ("HighBoundary", lit_dec("1.587"), lit_int(8), D("1.58799999")),
    ("LowBoundary", lit_dec("1.587"), lit_int(6), D("1.587000")),
    ("HighBoundary", lit_dec("1.587"), lit_int(6), D("1.587999")),
    ("HighBoundary", lit_dec("-1.587"), lit_int(8), D("-1.58700000")),
    ("LowBoundary", lit_dec("-1.587"), lit_int(8), D("-1.58799999")),
    ("LowBoundary", lit_dec("1.587"), lit_int(2), D("1.58")),
    ("LowBoundary", lit_date("2014"), lit_int(6), Date(2014, 1)),
    ("HighBoundary", lit_date("2014"), lit_int(6), Date(2014, 12)),
    ("HighBoundary", lit_date("2016-02"), lit_int(8), Date(2016, 2, 29)),
    ("LowBoundary", lit_datetime("2014-01-01T08"), lit_int(17), DateTime(2014, 1, 1, 8, 0, 0, 0)),
    ("HighBoundary", lit_datetime("2014-01-01T08"), lit_int(17), DateTime(2014, 1, 1, 8, 59, 59, 999)),
    ("LowBoundary", lit_time("T10:30"), lit_int(9), Time(10, 30, 0, 0)),
    ("HighBoundary", lit_time("T10:30"), lit_int(9), Time(10, 30, 59, 999)),
])
def test_boundaries(node_type: str, arg: dict, digits: dict, expected: object) -> None:
    result = value(node_type, arg, digits)
    same(result, expected)
    if isinstance(expected, Decimal):
        assert str(result) == str(expected)  # the places are part of the answer


def test_boundary_beyond_maximum_precision_is_null() -> None:
    assert value("LowBoundary", lit_dec("1.5"), lit_int(9)) is None
    assert value("HighBoundary", lit_date("2014"), lit_int(5)) is None
    assert value("HighBoundary", as_(null(), "Decimal"), lit_int(8)) is None


# ------------------------------------------------------------------------------------------ Quantities


def test_quantity_arithmetic() -> None:
    assert value("Add", quantity(1, "g/cm3"), quantity(1, "g/cm3")) == Quantity(D(2), "g/cm3")
    assert value("Subtract", quantity("1.0", "cm"), quantity("2.0", "cm")) == Quantity(D(-1), "cm")
    assert value("Add", quantity(1, "g"), quantity(500, "mg")) == Quantity(D("1.5"), "g")
    assert value("Multiply", quantity("1.0", "cm"), quantity("2.0", "cm")) == Quantity(D(2), "cm2")
    assert value("Divide", quantity(1, "g/cm3"), quantity(1, "g/cm3")) == Quantity(D(1), "1")
    assert value("Divide", quantity("10.0", "g"), lit_int(5)) == Quantity(D(2), "g")
    assert value("Divide", quantity("10.0", "g"), lit_dec("0.0")) is None
    assert value("Add", quantity(1, "cm"), quantity(1, "g")) is None  # incommensurable units


# ----------------------------------------------------------------------------- date/time + durations


@pytest.mark.parametrize(("node_type", "a", "q", "expected"), [
    ("Add", lit_date("2014-01-31"), quantity(1, "month"), Date(2014, 2, 28)),  # month-end clamped
    ("Add", lit_date("2012-02-29"), quantity(1, "year"), Date(2013, 2, 28)),
    ("Add", lit_date("2014-01-01"), quantity(2, "weeks"), Date(2014, 1, 15)),
    ("Add", lit_datetime("2014-01-01T23:00"), quantity(2, "hours"), DateTime(2014, 1, 2, 1, 0)),
    ("Add", lit_date("2014"), quantity(25, "months"), Date(2016)),  # converted to the value's precision
    ("Add", lit_time("T23:00"), quantity(2, "hours"), Time(1, 0)),  # Time wraps around midnight
    ("Subtract", lit_date("2014-03-31"), quantity(1, "month"), Date(2014, 2, 28)),
    ("Subtract", lit_datetime("2014-01-01T00:00:00.000"), quantity(1, "ms"), DateTime(2013, 12, 31, 23, 59, 59, 999)),
    ("Subtract", lit_date("2014-01-01"), quantity("1.5", "days"), Date(2013, 12, 31)),  # decimals truncated
])
def test_temporal_arithmetic(node_type: str, a: dict, q: dict, expected: object) -> None:
    same(value(node_type, a, q), expected)


def test_temporal_arithmetic_nulls_and_errors() -> None:
    assert value("Add", lit_date("2014-01-01"), as_(null(), "Quantity")) is None
    assert value("Add", as_(null(), "Date"), quantity(1, "day")) is None
    with pytest.raises(CqlError):
        value("Add", lit_date("2014-01-01"), quantity(1, "mg"))


def test_uncertainty_arithmetic() -> None:
    u = Uncertainty(6, 18)
    assert run(op("Add", ref("u"), lit_int(1)), u=u) == Uncertainty(7, 19)
    assert run(op("Subtract", lit_int(20), ref("u")), u=u) == Uncertainty(2, 14)
    assert run(op("Negate", ref("u")), u=u) == Uncertainty(-18, -6)


def test_fhir_primitive_operands() -> None:
    same(run(op("Add", ref("x"), lit_int(1)), x=Node(41, "integer")), 42)
    same(run(op("Multiply", ref("x"), lit_int(2)), x=Node(1.5, "decimal")), D("3.0"))


def test_type_errors() -> None:
    with pytest.raises(CqlError):
        value("Add", lit_str("a"), lit_str("b"))  # string + string is Concatenate
    with pytest.raises(CqlError):
        value("Abs", lit_str("a"))


@pytest.mark.parametrize(("node_type", "operand"), [
    ("Ln", lit_int(0)),  # negative infinity
    ("Exp", lit_int(1000)),  # beyond the Decimal range
    ("Exp", lit_dec("1000.0")),
])
def test_overflowing_exp_and_ln_are_errors(node_type: str, operand: dict) -> None:
    """Exp past the Decimal range and Ln(0) raise (HL7 suite: Exp1000, Ln0), rather than give null."""
    with pytest.raises(CqlError):
        value(node_type, operand)


@pytest.mark.parametrize("raw", ["2147483648", "-2147483649"])
def test_integer_literals_out_of_range_are_refused(raw: str) -> None:
    with pytest.raises(CqlError):
        run(lit_int(int(raw)))


def test_negated_minimum_integer_literal_compiles() -> None:
    assert run(op("Negate", lit_int(2147483648))) == -2147483648


@pytest.mark.parametrize("raw", ["0.000000001", "100000000000000000000", "10000000000000000000000000000.00000000"])
def test_decimal_literals_past_the_range_or_8_places_are_refused(raw: str) -> None:
    with pytest.raises(CqlError):
        run(lit_dec(raw))


def test_decimal_range_limits_compile() -> None:
    """The Decimal range ends at (10^28 - 1) / 10^8 on both sides; its limits are valid literals."""
    assert run(lit_dec("99999999999999999999.99999999")) == Decimal("99999999999999999999.99999999")
    assert run(op("Negate", lit_dec("99999999999999999999.99999999"))) == Decimal("-99999999999999999999.99999999")

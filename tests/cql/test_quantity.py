"""CQL Quantity: UCUM conversion (ucumvert), comparison, equality/equivalence, arithmetic, Ratio."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from gateway.cql import values
from gateway.cql.quantity import (
    Quantity,
    Ratio,
    abs_,
    add,
    can_convert_quantity,
    convert,
    convert_quantity,
    divide,
    divide_units,
    is_valid_unit,
    multiply,
    multiply_units,
    negate,
    subtract,
    to_string,
)
from gateway.cql.values import CqlError


def Q(value: str | int, unit: str = "1") -> Quantity:  # noqa: N802 - reads like the CQL literal
    return Quantity(D(str(value)), unit)


# ------------------------------------------------------------------------------------------ conversion


@pytest.mark.parametrize(("value", "src", "dst", "expected"), [
    ("1", "g", "mg", "1000"),
    ("1000", "mg", "g", "1"),
    ("1", "kg", "[lb_av]", "2.20462262"),
    ("154", "[lb_av]", "kg", "69.85322498"),
    ("120", "mm[Hg]", "Pa", "15998.6864898"),
    ("100", "mg/dL", "g/L", "1"),
    ("1", "mmol/L", "umol/L", "1000"),
    ("25", "kg/m2", "g/cm2", "2.5"),
    ("2.54", "cm", "[in_i]", "1"),
    ("1", "[in_i]", "cm", "2.54"),
    ("1", "h", "min", "60"),
    ("1", "d", "h", "24"),
    ("1", "wk", "d", "7"),
    ("1", "mo", "d", "30.4375"),
    ("1", "a", "d", "365.25"),
    ("1", "a", "mo", "12"),
    ("2", "/d", "/h", "0.08333333"),
    ("9.5", "%", "1", "0.095"),
    ("1", "1", "%", "100"),
    ("3", "{tablet}", "1", "3"),
    ("3", "{tbl}", "{tablet}", "3"),
    ("5", "mg{tablet}", "mg", "5"),
    ("1", "s", "ms", "1000"),
    ("98.6", "[degF]", "Cel", "37"),
])
def test_convert_ecqm_units(value: str, src: str, dst: str, expected: str) -> None:
    assert convert(D(value), src, dst) == D(expected)


def test_convert_results_are_plain_decimals_rounded_to_8_places() -> None:
    out = convert(D(70), "kg", "[lb_av]")
    assert out == D("154.32358353")
    assert "E" not in str(convert(D(1), "g", "mg"))


@pytest.mark.parametrize(("src", "dst"), [
    ("g", "m"), ("mmol/L", "mg/dL"), ("kg", "kg/m2"), ("mg", "%"), ("h", "g"), ("foo", "g"), ("g", "foo"),
])
def test_convert_incommensurable_or_invalid_is_none(src: str, dst: str) -> None:
    assert convert(D(1), src, dst) is None


def test_convert_same_unit_needs_no_parse() -> None:
    assert convert(D(4), "{whatever}", "{whatever}") == D(4)
    assert convert(D(4), "foo", "foo") == D(4)
    assert convert(None, "g", "mg") is None


def test_calendar_keywords() -> None:
    # week and below are equal to the UCUM definite durations
    assert convert(D(1), "week", "d") == D(7)
    assert convert(D(2), "days", "h") == D(48)
    assert convert(D(1), "hour", "minutes") == D(60)
    assert convert(D(1), "minute", "s") == D(60)
    assert convert(D(1), "second", "millisecond") == D(1000)
    assert convert(D(3), "milliseconds", "ms") == D(3)
    # calendar years and months convert to each other only
    assert convert(D(1), "year", "months") == D(12)
    assert convert(D(18), "months", "years") == D("1.5")
    assert convert(D(1), "year", "a") is None
    assert convert(D(1), "month", "mo") is None
    assert convert(D(1), "year", "days") is None
    assert convert(D(1), "a", "month") is None
    # equivalence semantics: year ~ 'a', month ~ 'mo'
    assert convert(D(1), "year", "a", strict=False) == D(1)
    assert convert(D(1), "year", "d", strict=False) == D("365.25")


def test_is_valid_unit() -> None:
    for unit in ("mg", "mg/dL", "kg/m2", "[lb_av]", "mm[Hg]", "{tablet}", "1", "%", "days", "a", "/d"):
        assert is_valid_unit(unit), unit
    assert not is_valid_unit("foo")
    assert not is_valid_unit("kg//m")


# ------------------------------------------------------------------------------------------ comparison


def test_compare_same_unit() -> None:
    assert values.compare(Q("9.5", "%"), Q(9, "%")) == 1
    assert values.compare(Q(9, "%"), Q("9.5", "%")) == -1
    assert values.compare(Q("9.0", "%"), Q(9, "%")) == 0


def test_compare_converts_to_the_left_unit() -> None:
    assert values.compare(Q(1, "g"), Q(1000, "mg")) == 0
    assert values.compare(Q(70, "kg"), Q(154, "[lb_av]")) == 1  # 154 lb = 69.85 kg
    assert values.compare(Q(154, "[lb_av]"), Q(70, "kg")) == -1
    assert values.compare(Q(70, "kg"), Q(155, "[lb_av]")) == -1  # 155 lb = 70.31 kg
    assert values.compare(Q(1, "d"), Q(24, "h")) == 0
    assert values.compare(Q(1, "d"), Q(25, "h")) == -1
    assert values.compare(Q(1, "wk"), Q(7, "days")) == 0


def test_blood_pressure_comparisons() -> None:
    systolic = Q(120, "mm[Hg]")
    assert values.compare(systolic, Q(140, "mm[Hg]")) == -1
    assert values.compare(systolic, Q(90, "mm[Hg]")) == 1
    assert values.compare(systolic, Q("15998.6864898", "Pa")) == 0
    assert values.equal(systolic, Q(120, "mm[Hg]")) is True
    assert values.compare(Q(140, "mm[Hg]"), Q("18.5", "kPa")) == 1  # 18.5 kPa = 138.76 mmHg
    assert values.compare(Q(138, "mm[Hg]"), Q("18.5", "kPa")) == -1


def test_incommensurable_compare_and_equal_are_null() -> None:
    assert values.compare(Q(1, "g"), Q(1, "m")) is None
    assert values.equal(Q(1, "g"), Q(1, "m")) is None
    assert values.equivalent(Q(1, "g"), Q(1, "m")) is False
    assert values.compare(Q(1, "mg/dL"), Q(1, "mmol/L")) is None


def test_null_propagation() -> None:
    assert values.compare(Q(1, "g"), None) is None
    assert values.equal(Q(1, "g"), None) is None
    assert values.equivalent(Q(1, "g"), None) is False
    assert Q(1, "g").cql_compare(None) is None
    assert Q(1, "g").cql_equal(None) is None
    for fn in (add, subtract, multiply, divide):
        assert fn(None, Q(1)) is None
        assert fn(Q(1), None) is None
    assert negate(None) is None
    assert abs_(None) is None
    assert convert_quantity(None, "g") is None
    assert convert_quantity(Q(1, "g"), None) is None
    assert can_convert_quantity(None, "g") is None
    assert to_string(None) is None


def test_calendar_vs_ucum_durations() -> None:
    # CQL: 1 year is not equal to 1 'a' (comparison is null) but is equivalent to it
    assert values.equal(Q(1, "year"), Q(1, "a")) is None
    assert values.compare(Q(1, "year"), Q(1, "a")) is None
    assert values.equivalent(Q(1, "year"), Q(1, "a")) is True
    assert values.equivalent(Q(1, "month"), Q(1, "mo")) is True
    assert values.equal(Q(1, "month"), Q(1, "mo")) is None
    # below months calendar durations are equal to the UCUM units
    assert values.equal(Q(1, "day"), Q(1, "d")) is True
    assert values.equal(Q(1, "week"), Q(1, "wk")) is True
    assert values.equal(Q(2, "hours"), Q(120, "min")) is True
    assert values.equal(Q(1, "second"), Q(1, "s")) is True
    assert values.equal(Q(1, "millisecond"), Q(1, "ms")) is True
    # calendar years and months compare with each other
    assert values.equal(Q(1, "year"), Q(12, "months")) is True
    assert values.compare(Q(2, "years"), Q(13, "months")) == 1
    assert values.equal(Q(3, "days"), Q(3, "day")) is True
    # years are not comparable with days
    assert values.compare(Q(1, "year"), Q(365, "days")) is None


def test_implicit_number_to_quantity() -> None:
    assert values.compare(Q(5), 4) == 1
    assert values.compare(Q(5), D("5.0")) == 0
    assert values.equal(Q(5, "g"), 5) is None  # 'g' vs '1': not commensurable
    assert Q(5).cql_equal("5") is False
    with pytest.raises(CqlError):
        Q(5).cql_compare("5")


def test_equivalent_uses_the_least_precise_value() -> None:
    assert values.equivalent(Q("1.0", "g"), Q(1000, "mg")) is True
    assert values.equivalent(Q("1.01", "g"), Q("1.0", "g")) is True  # 1.01 ~ 1.0 at one place
    assert values.equivalent(Q("1.11", "g"), Q("1.0", "g")) is False
    assert values.equivalent(Q(1, "g"), Q(1, "g")) is True
    assert values.equivalent(Q(1, "g"), 1) is False


# ----------------------------------------------------------------------------------- value & construction


def test_construction_and_immutability() -> None:
    q = Quantity(5)
    assert q.value == D(5) and isinstance(q.value, D)
    assert q.unit == "1"
    assert Quantity(D(1), "").unit == "1"
    assert Quantity(D(1), None).unit == "1"  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        q.value = D(6)  # type: ignore[misc]
    with pytest.raises(CqlError):
        Quantity(True)  # type: ignore[arg-type]
    assert hash(Q(1, "g")) == hash(Q(1, "g"))


def test_to_string() -> None:
    assert to_string(Q("5.5", "cm")) == "5.5 'cm'"
    assert to_string(Q(3, "days")) == "3 'days'"
    assert str(Q("0.00000001", "g")) == "0.00000001 'g'"


def test_convert_quantity() -> None:
    assert convert_quantity(Q(70, "kg"), "[lb_av]") == Q("154.32358353", "[lb_av]")
    assert convert_quantity(Q(5, "mg"), "g") == Q("0.005", "g")
    assert convert_quantity(Q(5, "mg"), "m") is None
    assert convert_quantity(Q(1, "year"), "d") is None
    assert can_convert_quantity(Q(5, "mg"), "g") is True
    assert can_convert_quantity(Q(5, "mg"), "m") is False


# ------------------------------------------------------------------------------------------ arithmetic


def test_add_subtract() -> None:
    assert add(Q(1, "g"), Q(500, "mg")) == Q("1.5", "g")
    assert subtract(Q(1, "g"), Q(500, "mg")) == Q("0.5", "g")
    assert add(Q(1, "year"), Q(6, "months")) == Q("1.5", "year")
    assert add(Q(1, "g"), Q(1, "m")) is None
    assert add(Q(2), 3) == Q(5)


def test_multiply_divide_units() -> None:
    bmi = divide(Q(70, "kg"), multiply(Q("1.75", "m"), Q("1.75", "m")))
    assert bmi is not None and bmi.unit == "kg/m2" and bmi.value == D("22.85714286")
    assert values.compare(bmi, Q(25, "kg/m2")) == -1
    assert multiply(Q(2, "mg"), Q(3, "/d")) == Q(6, "mg/d")
    assert divide(Q(10, "mg"), Q(2, "d")) == Q(5, "mg/d")
    assert divide(Q(1, "g"), Q(1, "mg")) == Q(1000, "1")  # commensurable units cancel
    assert divide(Q(6, "mg"), Q(2, "mg")) == Q(3, "1")
    assert multiply(Q(2, "m"), Q(50, "cm")) == Q(1, "m2")
    assert multiply(Q(2, "mg"), 3) == Q(6, "mg")
    assert divide(Q(6, "mg"), 3) == Q(2, "mg")
    assert divide(Q(1, "g"), Q(0, "g")) is None
    assert divide(Q(2, "mg"), Q(1, "day")).unit == "mg/d"  # calendar keywords become UCUM


@pytest.mark.parametrize(("a", "b", "product", "quotient"), [
    ("kg", "m", "kg.m", "kg/m"),
    ("m", "m", "m2", "1"),
    ("1", "g", "g", "/g"),
    ("g", "1", "g", "g"),
    ("mg", "/d", "mg/d", "mg.d"),
    ("/d", "/h", "1/d/h", "1/d.h"),
    ("mg/dL", "dL/h", "mg/dL.(dL/h)", "mg/dL/(dL/h)"),
    ("1", "kg.m", "kg.m", "1/(kg.m)"),
])
def test_unit_algebra_produces_valid_ucum(a: str, b: str, product: str, quotient: str) -> None:
    assert multiply_units(a, b) == product
    assert divide_units(a, b) == quotient
    assert is_valid_unit(product) and is_valid_unit(quotient)


def test_composed_units_convert() -> None:
    # the composed unit string is real UCUM: it converts like any other
    rate = divide(Q(500, "mg"), Q(2, "h"))
    assert rate == Q(250, "mg/h")
    assert convert_quantity(rate, "g/d") == Q(6, "g/d")


def test_negate_abs() -> None:
    assert negate(Q(5, "mg")) == Q(-5, "mg")
    assert abs_(Q(-5, "mg")) == Q(5, "mg")


# ----------------------------------------------------------------------------------------------- Ratio


def test_ratio_equal_and_equivalent() -> None:
    r1, r2 = Ratio(Q(1), Q(100)), Ratio(Q(10), Q(1000))
    assert values.equal(r1, r2) is False
    assert values.equivalent(r1, r2) is True
    assert values.equal(r1, Ratio(Q(1), Q(100))) is True
    mg_ml = Ratio(Q(5, "mg"), Q(10, "mL"))
    assert values.equivalent(mg_ml, Ratio(Q(1, "mg"), Q(2, "mL"))) is True
    assert values.equivalent(mg_ml, Ratio(Q(1, "mg"), Q(3, "mL"))) is False
    assert values.equal(Ratio(Q(1, "g"), Q(1)), Ratio(Q(1, "m"), Q(1))) is None
    assert values.equal(r1, None) is None
    assert str(Ratio(Q(1, "mg"), Q(2, "mL"))) == "1 'mg':2 'mL'"


def test_equivalent_precision_is_taken_after_conversion() -> None:
    assert values.equivalent(Q("1.4", "g"), Q(1450, "mg")) is False  # 1.45 g vs 1.4 g at one place
    assert values.equivalent(Q("1.5", "g"), Q(1450, "mg")) is True

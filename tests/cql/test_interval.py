"""CQL interval operators over Integer, Decimal, Quantity and DateTime points.

Most cases are the examples of the CQL 1.5 reference ("Interval Operators") and of the HL7 CQL test suite
(CqlIntervalOperatorsTest), written with the Python runtime values.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.cql import datetime as dt
from gateway.cql import interval as iv
from gateway.cql import values
from gateway.cql.interval import Interval
from gateway.cql.quantity import Quantity
from gateway.cql.values import CqlError


def I(lo: Any, hi: Any, lc: bool = True, hc: bool = True) -> Interval:  # noqa: E743,N802 - CQL-like literal
    return Interval(lo, hi, lc, hc)


def D(s: str) -> Decimal:  # noqa: N802
    return Decimal(s)


def g(s: str) -> Quantity:
    return Quantity(Decimal(s), "g")


def DT(s: str) -> Any:  # noqa: N802
    return dt.parse_datetime(s)


def DA(s: str) -> Any:  # noqa: N802
    return dt.parse_date(s)


def T(s: str) -> Any:  # noqa: N802
    return dt.parse_time(s)


# ---------------------------------------------------------------------------------------- construction


def test_interval_is_immutable_and_validated() -> None:
    x = I(1, 10)
    with pytest.raises(AttributeError):
        x.low = 2  # type: ignore[misc]
    with pytest.raises(CqlError):
        I(5, 3)
    with pytest.raises(CqlError):
        I(5, 5, hc=False)
    assert I(5, 5).low == 5
    assert str(I(1, 5, hc=False)) == "Interval[1, 5)"
    assert str(I(None, D("2.50"), lc=False)) == "Interval(null, 2.50]"


# ----------------------------------------------------------------------------------------- start / end


@pytest.mark.parametrize(("interval", "start", "end"), [
    (I(1, 5), 1, 5),
    (I(1, 5, lc=False), 2, 5),
    (I(1, 5, hc=False), 1, 4),
    (I(None, 5), iv.INTEGER_MIN, 5),
    (I(1, None), 1, iv.INTEGER_MAX),
    (I(None, 5, lc=False), None, 5),  # uncertainty [min, 5]: no single value
    (I(1, None, hc=False), 1, None),
    (I(D("1.0"), D("2.0"), hc=False), D("1.0"), D("1.99999999")),
    (I(D("1.0"), D("2.0"), lc=False), D("1.00000001"), D("2.0")),
    (I(None, D("2.0")), iv.DECIMAL_MIN, D("2.0")),
    (I(g("1.0"), g("10.0")), g("1.0"), g("10.0")),
    (I(g("1.0"), g("10.0"), hc=False), g("1.0"), g("9.99999999")),
    (I(None, g("10.0")), Quantity(iv.DECIMAL_MIN, "g"), g("10.0")),
])
def test_start_end(interval: Interval, start: Any, end: Any) -> None:
    assert iv.start(interval) == start
    assert iv.end(interval) == end


def test_start_end_of_null_and_untyped_intervals() -> None:
    assert iv.start(None) is None and iv.end(None) is None
    both_null = I(None, None)
    assert iv.start(both_null) is None  # point type unknown (Any)
    assert iv.start(Interval(None, None, point_type="{urn:hl7-org:elm-types:r1}Integer")) == iv.INTEGER_MIN
    assert iv.end(Interval(None, None, point_type="Decimal")) == iv.DECIMAL_MAX


def test_width_size_point_from() -> None:
    assert iv.width(I(1, 10)) == 9
    assert iv.width(I(3, 7)) == 4
    assert iv.width(I(D("4.0"), D("15.0"))) == D("11.0")
    assert iv.width(I(g("5.0"), g("10.0"))) == g("5.0")
    assert iv.width(None) is None
    assert iv.width(I(0, None, hc=False)) is None
    assert iv.size(I(3, 7)) == 5
    assert iv.size(I(3, 8, hc=False)) == 5
    assert iv.size(I(D("1.0"), D("2.0"))) == D("1.00000001")
    assert iv.size(None) is None
    assert iv.point_from(I(1, 1)) == 1
    assert iv.point_from(I(4, 5, hc=False)) == 4
    assert iv.point_from(I(D("1.0"), D("1.0"))) == D("1.0")
    assert iv.point_from(I(Quantity(D("1.0"), "cm"), Quantity(D("1.0"), "cm"))) == Quantity(D("1.0"), "cm")
    assert iv.point_from(None) is None
    with pytest.raises(CqlError):
        iv.point_from(I(1, 4))
    with pytest.raises(CqlError):
        iv.point_from(I(None, None))


# ------------------------------------------------------------------------------------- contains / in


@pytest.mark.parametrize(("interval", "point", "expected"), [
    (I(1, 5), 4, True),
    (I(1, 5), 6, False),
    (I(1, 5), 1, True),
    (I(1, 5, lc=False), 1, False),
    (I(1, 5, hc=False), 5, False),
    (I(1, 5, hc=False), 4, True),
    (I(1, 10), None, None),
    (None, 5, False),
    (I(None, 5), 10, False),
    (I(None, 5), -1000, True),  # closed null low: the minimum: the comparison is true
    (I(1, None), 10**6, True),
    (I(None, 5, lc=False), 3, None),  # open null low: unknown
    (I(None, 5, lc=False), 5, True),
    (I(None, 5, lc=False), 6, False),
    (I(1, None, hc=False), 0, False),
    (I(1, None, hc=False), 7, None),
    (I(D("1.0"), D("10.0")), D("8.0"), True),
    (I(D("1.0"), D("10.0")), D("255.0"), False),
    (I(D("1.0"), D("2.0"), hc=False), D("1.999999999"), True),  # open bounds compare exclusively
    (I(g("1.0"), g("10.0")), g("2.0"), True),
    (I(g("1.0"), g("10.0")), g("100.0"), False),
    (I(g("1.0"), g("10.0")), Quantity(D(5000), "mg"), True),  # units converted
    (I(g("1.0"), g("10.0")), Quantity(D(5), "m"), None),  # incommensurable: unknown
])
def test_contains(interval: Interval | None, point: Any, expected: bool | None) -> None:
    assert iv.contains(interval, point) is expected


def test_in() -> None:
    assert iv.in_(3, I(0, 5)) is True
    assert iv.in_(-1, I(0, 7)) is False
    assert iv.in_(3, None) is False
    assert iv.in_(None, I(1, 10)) is None
    assert iv.in_(None, None) is None
    assert iv.in_(D("9.0"), I(D("1.0"), D("10.0"))) is True
    assert iv.in_(g("1.0"), I(g("1.0"), g("10.0"))) is True
    assert iv.in_(g("55.0"), I(g("1.0"), g("10.0"))) is False


# ------------------------------------------------------------------------------------ includes & co


def test_includes_included_in() -> None:
    assert iv.includes(I(-1, 5), I(0, 5)) is True
    assert iv.includes(I(-1, 5), 6) is False  # point overload = contains
    assert iv.includes(I(-1, 5), None) is None
    assert iv.includes(None, I(1, 2)) is None
    assert iv.includes(None, 3) is False
    assert iv.includes(I(1, 10), I(4, 10)) is True
    assert iv.includes(I(1, 10), I(44, 50)) is False
    assert iv.includes(I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0"))) is True
    assert iv.includes(I(g("1.0"), g("10.0")), I(g("5.0"), g("10.0"))) is True
    assert iv.includes(I(g("1.0"), g("10.0")), I(g("11.0"), g("20.0"))) is False
    assert iv.included_in(I(1, 5), I(0, 5)) is True
    assert iv.included_in(-1, I(0, 7)) is False
    assert iv.included_in(3, None) is False  # point overload
    assert iv.included_in(None, I(1, 10)) is None
    assert iv.included_in(I(44, 50), I(1, 10)) is False
    assert iv.included_in(I(1, 10), None) is None
    assert iv.includes(I(1, 10), I(1, 11, hc=False)) is True  # [1, 11) is [1, 10]


def test_proper_includes() -> None:
    assert iv.proper_includes(I(-1, 5), I(0, 5)) is True
    assert iv.proper_includes(I(-1, 5), I(-1, 5)) is False
    assert iv.proper_includes(I(-1, 5), None) is None
    assert iv.proper_includes(I(1, 10), I(4, 15)) is False
    assert iv.proper_includes(I(None, None), I(1, 10)) is True
    assert iv.proper_includes(I(1, 10), I(1, 11, hc=False)) is False  # the same interval
    assert iv.proper_includes(I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0"))) is True
    assert iv.proper_includes(I(g("1.0"), g("10.0")), I(g("5.0"), g("15.0"))) is False
    # interval-point: contains the point and is not the unit interval of it
    assert iv.proper_includes(I(1, 10), 1) is True
    assert iv.proper_includes(I(1, 1), 1) is False
    assert iv.proper_includes(None, 1) is False
    assert iv.proper_included_in(I(1, 5), I(0, 5)) is True
    assert iv.proper_included_in(I(0, 7), I(0, 7)) is False
    assert iv.proper_included_in(I(1, 5), None) is None
    assert iv.proper_included_in(I(1, 10), I(None, None)) is True
    assert iv.proper_included_in(5, I(1, 10)) is True
    assert iv.proper_included_in(5, None) is False
    assert iv.proper_included_in(I(g("5.0"), g("10.0")), I(g("1.0"), g("10.0"))) is True


# ------------------------------------------------------------------------------------------- overlaps


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(0, 4), I(1, 4), True),
    (I(1, 10), I(4, 10), True),
    (I(4, 10), I(4, 10), True),
    (I(10, 15), I(4, 10), True),
    (I(1, 10), I(11, 20), False),
    (I(4, 10, hc=False), I(4, 10, hc=False), True),
    (I(4, 11, hc=False), I(10, 20), True),
    (I(4, 10), I(9, 20, lc=False), True),
    (I(4, 11, hc=False), I(9, 20, lc=False), True),
    (I(4, 10), I(10, 20, lc=False), False),
    (I(4, 10, hc=False), I(10, 20), False),
    (I(4, 10, hc=False), I(10, 20, lc=False), False),
    (I(4, 10, hc=False), I(9, 20, lc=False), False),  # [4, 9] and [10, 20]
    (I(6, 10), None, None),
    (None, I(1, 10), None),
    (I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0")), True),
    (I(D("1.0"), D("10.0")), I(D("11.0"), D("20.0")), False),
    (I(g("1.0"), g("10.0")), I(g("5.0"), g("10.0")), True),
    (I(g("1.0"), g("10.0")), I(g("11.0"), g("20.0")), False),
    (I(None, 5, lc=False), I(1, 10), True),  # end 5 >= 1 and start (unknown, <= 5) <= 10
    (I(None, 5, lc=False), I(7, 10), False),
    (I(1, None, hc=False), I(7, 10), None),
    (I(None, 5), I(-100, -50), True),
])
def test_overlaps(a: Interval | None, b: Interval | None, expected: bool | None) -> None:
    assert iv.overlaps(a, b) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(0, 4), I(1, 4), True),
    (I(1, 10), I(4, 10), True),
    (I(4, 10), I(1, 10), False),
    (I(4, 10), I(4, 10), False),
    (I(4, 10), I(4, 10, lc=False), True),
    (I(3, 10, lc=False), I(4, 10, lc=False), True),
    (I(3, 10, lc=False), I(5, 10), True),
    (I(3, 10, lc=False), I(3, 10, lc=False), False),
    (I(3, 10, lc=False), I(4, 10), False),
    (I(4, 10), I(3, 10, lc=False), False),
    (I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0")), True),
    (I(g("5.0"), g("10.0")), I(g("1.0"), g("10.0")), False),
    (None, I(1, 10), None),
])
def test_overlaps_before(a: Interval | None, b: Interval | None, expected: bool | None) -> None:
    assert iv.overlaps_before(a, b) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(0, 4), I(1, 4), False),
    (I(4, 15), I(1, 10), True),
    (I(4, 10), I(1, 10), False),
    (I(4, 10), I(4, 10), False),
    (I(4, 11, hc=False), I(4, 9), True),
    (I(4, 11, hc=False), I(4, 10, hc=False), True),
    (I(4, 10), I(4, 10, hc=False), True),
    (I(4, 11, hc=False), I(4, 11, hc=False), False),
    (I(4, 11, hc=False), I(4, 10), False),
    (I(4, 10), I(4, 11, hc=False), False),
    (I(D("4.0"), D("15.0")), I(D("1.0"), D("10.0")), True),
    (I(g("5.0"), g("15.0")), I(g("1.0"), g("10.0")), True),
    (I(1, 10), None, None),
])
def test_overlaps_after(a: Interval | None, b: Interval | None, expected: bool | None) -> None:
    assert iv.overlaps_after(a, b) is expected


# ---------------------------------------------------------------------------------------------- meets


@pytest.mark.parametrize(("op", "a", "b", "expected"), [
    (iv.meets, I(6, 10), I(0, 5), True),
    (iv.meets, I(1, 10), I(11, 20), True),
    (iv.meets, I(1, 10), I(44, 50), False),
    (iv.meets, I(6, 10), None, None),
    (iv.meets, I(None, 5, lc=False), I(None, 15, lc=False, hc=False), None),
    (iv.meets, I(D("3.01"), D("5.00000001")), I(D("5.00000002"), D("8.50")), True),
    (iv.meets, I(D("3.01"), D("5.00000001")), I(D("5.5"), D("8.50")), False),
    (iv.meets, I(g("3.01"), g("5.00000001")), I(g("5.00000002"), g("8.50")), True),
    (iv.meets, I(g("3.01"), g("5.00000001")), I(g("5.5"), g("8.50")), False),
    (iv.meets, I(1, 5, hc=False), I(5, 10), True),  # [1, 4] meets [5, 10]
    (iv.meets_before, I(-5, -1), I(0, 5), True),
    (iv.meets_before, I(1, 10), I(11, 20), True),
    (iv.meets_before, I(1, 10), I(44, 50), False),
    (iv.meets_before, I(11, 20), I(1, 10), False),
    (iv.meets_before, I(None, 5, lc=False), I(None, 25, lc=False), None),
    (iv.meets_before, I(D("3.50000001"), D("5.00000011")), I(D("5.00000012"), D("8.50")), True),
    (iv.meets_before, I(D("8.01"), D("15.00000001")), I(D("15.00000000"), D("18.50")), False),
    (iv.meets_before, I(g("3.50000001"), g("5.00000011")), I(g("5.00000012"), g("8.50")), True),
    (iv.meets_after, I(6, 10), I(0, 7), False),
    (iv.meets_after, I(11, 20), I(1, 10), True),
    (iv.meets_after, I(44, 50), I(1, 10), False),
    (iv.meets_after, I(None, 5, lc=False), I(11, None, hc=False), False),
    (iv.meets_after, I(D("55.00000123"), D("128.032156")), I(D("12.00258"), D("55.00000122")), True),
    (iv.meets_after, I(D("55.00000124"), D("150.222222")), I(D("12.00258"), D("55.00000122")), False),
    (iv.meets_after, I(g("55.00000123"), g("128.032156")), I(g("12.00258"), g("55.00000122")), True),
])
def test_meets(op: Any, a: Interval | None, b: Interval | None, expected: bool | None) -> None:
    assert op(a, b) is expected


# ---------------------------------------------------------------------------------------- starts/ends


@pytest.mark.parametrize(("op", "a", "b", "expected"), [
    (iv.starts, I(0, 5), I(0, 7), True),
    (iv.starts, I(0, 7), I(0, 6), False),
    (iv.starts, I(1, 5), None, None),
    (iv.starts, I(4, 10), I(4, 15), True),
    (iv.starts, I(1, 10), I(4, 10), False),
    (iv.starts, I(D("4.0"), D("10.0")), I(D("4.0"), D("15.0")), True),
    (iv.starts, I(g("5.0"), g("10.0")), I(g("5.0"), g("15.0")), True),
    (iv.starts, I(g("1.0"), g("10.0")), I(g("5.0"), g("10.0")), False),
    (iv.starts, I(None, 5, lc=False), I(1, 10), None),
    (iv.starts, I(None, 5), I(None, 10), True),
    (iv.ends, I(0, 5), I(-1, 5), True),
    (iv.ends, I(-1, 7), I(0, 7), False),
    (iv.ends, I(1, 5), None, None),
    (iv.ends, I(1, 10), I(None, None, lc=False, hc=False), None),
    (iv.ends, I(4, 10), I(1, 10), True),
    (iv.ends, I(44, 50), I(1, 10), False),
    (iv.ends, I(D("4.0"), D("10.0")), I(D("1.0"), D("10.0")), True),
    (iv.ends, I(g("5.0"), g("10.0")), I(g("1.0"), g("10.0")), True),
    (iv.ends, I(g("11.0"), g("20.0")), I(g("1.0"), g("10.0")), False),
    (iv.ends, I(4, 11, hc=False), I(1, 10), True),
])
def test_starts_ends(op: Any, a: Interval | None, b: Interval | None, expected: bool | None) -> None:
    assert op(a, b) is expected


# ------------------------------------------------------------------------------------- before / after


@pytest.mark.parametrize(("op", "a", "b", "expected"), [
    (iv.after, 5, I(1, 4), True),
    (iv.after, I(1, 4), 5, False),
    (iv.after, I(1, 4), None, None),
    (iv.after, None, I(1, 10), None),
    (iv.after, I(11, 20), I(1, 10), True),
    (iv.after, I(1, 10), I(11, 20), False),
    (iv.after, 12, I(1, 10), True),
    (iv.after, 9, I(1, 10), False),
    (iv.after, I(11, 20), 5, True),
    (iv.after, I(11, 20), 12, False),
    (iv.after, I(D("11.0"), D("20.0")), I(D("1.0"), D("10.0")), True),
    (iv.after, D("12.0"), I(D("1.0"), D("10.0")), True),
    (iv.after, I(g("11.0"), g("20.0")), I(g("1.0"), g("10.0")), True),
    (iv.after, g("9.0"), I(g("1.0"), g("10.0")), False),
    (iv.after, I(g("11.0"), g("20.0")), g("12.0"), False),
    (iv.after, I(11, 20), I(1, 11, hc=False), True),  # [1, 11) ends at 10
    (iv.before, 0, I(1, 4), True),
    (iv.before, I(1, 4), 0, False),
    (iv.before, I(1, 4), None, None),
    (iv.before, I(1, 10), I(11, 20), True),
    (iv.before, I(11, 20), I(1, 10), False),
    (iv.before, 9, I(11, 20), True),
    (iv.before, 9, I(1, 10), False),
    (iv.before, I(1, 10), 11, True),
    (iv.before, I(1, 10), 8, False),
    (iv.before, I(D("1.0"), D("10.0")), D("11.0"), True),
    (iv.before, I(g("1.0"), g("10.0")), g("12.0"), True),
    (iv.before, g("12.0"), I(g("11.0"), g("20.0")), False),
    (iv.before, I(None, 5), 6, True),
    (iv.before, I(1, None), 1000, False),  # closed null high: the maximum
    (iv.before, I(1, None, hc=False), 1000, None),  # open null high: unknown
])
def test_before_after(op: Any, a: Any, b: Any, expected: bool | None) -> None:
    assert op(a, b) is expected


def test_same_or_before_after_and_same_as() -> None:
    assert iv.same_or_after(I(6, 10), 6) is True
    assert iv.same_or_after(D("2.5"), I(D("1.666"), D("2.50000001"))) is False
    assert iv.same_or_after(Quantity(D("2.5"), "mg"), I(Quantity(D("1.666"), "mg"),
                                                        Quantity(D("2.50000000"), "mg"))) is True
    assert iv.same_or_before(I(4, 6), 6) is True
    assert iv.same_or_before(D("1.6667"), I(D("1.666"), D("2.50000001"))) is False
    assert iv.same_or_before(Quantity(D("1.666"), "mg"), I(Quantity(D("1.666"), "mg"),
                                                           Quantity(D("2.5"), "mg"))) is True
    assert iv.same_or_before(I(1, 4), None) is None
    assert iv.same_as(I(1, 5), I(1, 6, hc=False)) is True
    assert iv.same_as(I(1, 5), I(1, 6)) is False
    assert iv.same_as(I(1, 5), None) is None


# ------------------------------------------------------------------------------ union/intersect/except


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(1, 5), I(3, 7), I(1, 7)),
    (I(3, 5), None, None),
    (I(1, 10), I(4, 15), I(1, 15)),
    (I(1, 10), I(44, 50), None),
    (I(1, 10), I(11, 20), I(1, 20)),  # meets
    (I(D("1.0"), D("10.0")), I(D("4.0"), D("15.0")), I(D("1.0"), D("15.0"))),
    (I(D("1.0"), D("10.0")), I(D("14.0"), D("15.0")), None),
    (I(g("1.0"), g("10.0")), I(g("5.0"), g("15.0")), I(g("1.0"), g("15.0"))),
    (I(g("1.0"), g("10.0")), I(g("14.0"), g("15.0")), None),
    (I(1, 10), I(5, None), I(1, None)),
])
def test_union(a: Interval | None, b: Interval | None, expected: Interval | None) -> None:
    assert iv.union(a, b) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(1, 5), I(3, 7), I(3, 5)),
    (I(3, 5), None, None),
    (I(1, 10), I(4, 10), I(4, 10)),
    (I(1, 10), I(11, 20), None),
    (I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0")), I(D("4.0"), D("10.0"))),
    (I(D("1.0"), D("10.0")), I(D("11.0"), D("20.0")), None),
    (I(g("1.0"), g("10.0")), I(g("5.0"), g("10.0")), I(g("5.0"), g("10.0"))),
    (I(g("1.0"), g("10.0")), I(g("11.0"), g("20.0")), None),
    (I(1, 10), I(5, None, hc=False), I(5, None, hc=False)),  # the end stays unknown
])
def test_intersect(a: Interval | None, b: Interval | None, expected: Interval | None) -> None:
    assert iv.intersect(a, b) == expected


def test_intersect_with_unknown_end() -> None:
    x = iv.intersect(I(1, 10), I(5, None, hc=False))
    assert x is not None
    assert iv.start(x) == 5
    assert iv.end(x) is None
    assert iv.contains(x, 7) is None
    assert iv.contains(x, 5) is True


@pytest.mark.parametrize(("a", "b", "expected"), [
    (I(0, 5), I(3, 7), I(0, 2)),
    (None, I(-1, 7), None),
    (I(1, 10), I(4, 10), I(1, 3)),
    (I(1, 10), I(3, 7), None),  # would split a in two
    (I(1, 4), I(3, 6), I(1, 2)),
    (I(7, 16), I(5, 12), I(13, 16)),
    (I(3, 5), I(1, 10), None),  # a inside b
    (I(1, 5), I(10, 20), I(1, 5)),  # no overlap: a
    (I(D("1.0"), D("10.0")), I(D("4.0"), D("10.0")), I(D("1.0"), D("3.99999999"))),
    (I(D("1.0"), D("10.0")), I(D("3.0"), D("7.0")), None),
    (I(g("1.0"), g("10.0")), I(g("5.0"), g("10.0")), I(g("1.0"), g("4.99999999"))),
])
def test_except(a: Interval | None, b: Interval | None, expected: Interval | None) -> None:
    assert iv.except_(a, b) == expected


# ----------------------------------------------------------------------------------- equal / equivalent


def test_equal_and_equivalent() -> None:
    assert values.equal(I(0, 5), I(0, 5)) is True
    assert values.equal(I(-1, 7), I(0, 7)) is False
    assert values.equal(I(1, 5), None) is None
    assert values.equal(I(1, 10), I(None, None, lc=False, hc=False)) is None
    assert values.equal(I(1, 5, hc=False), I(1, 4)) is True  # CQL: Interval[1, 5) = Interval[1, 4]
    assert values.equal(I(0, 6, lc=False), I(1, 6)) is True
    assert values.equal(I(D("1.0"), D("2.0"), hc=False), I(D("1.0"), D("1.99999999"))) is True
    assert values.equal(I(g("1.0"), g("10.0")), I(g("1.0"), g("10.0"))) is True
    assert values.equal(I(g("1.0"), g("10.0")), I(Quantity(D(1000), "mg"), g("10.0"))) is True
    assert values.equal(I(g("1.0"), g("10.0")), I(g("11.0"), g("20.0"))) is False
    assert values.equal(I(None, None), I(None, None)) is True
    assert values.equivalent(I(0, 5), I(0, 5)) is True
    assert values.equivalent(I(1, None), I(1, None)) is True
    assert values.equivalent(I(1, None, hc=False), I(1, None, hc=False)) is True
    assert values.equivalent(I(-1, 7), I(0, 7)) is False
    assert values.equivalent(I(1, 5), None) is False
    assert values.equivalent(None, None) is True
    assert values.equivalent(I(1, 5, hc=False), I(1, 4)) is True
    assert values.equal(I(1, 5), 3) is False
    assert values.equal([I(1, 2), I(3, 4)], [I(1, 2), I(3, 5, hc=False)]) is True
    with pytest.raises(CqlError):
        values.compare(I(1, 2), I(1, 2))


# ------------------------------------------------------------------------------------ collapse / expand


def test_collapse() -> None:
    assert iv.collapse(None) is None
    assert iv.collapse([]) == []
    assert iv.collapse([None]) == []
    assert iv.collapse([I(1, 4), I(4, 8), I(7, 9)]) == [I(1, 9)]
    assert iv.collapse([I(1, 5), I(3, 7), I(12, 19), I(7, 10)]) == [I(1, 10), I(12, 19)]
    assert iv.collapse([I(1, 2), I(3, 7), I(10, 19), I(7, 10)]) == [I(1, 19)]
    assert iv.collapse([I(4, 6), I(7, 8)]) == [I(4, 8)]
    assert iv.collapse([I(7, 8), None, I(4, 6)]) == [I(4, 8)]
    assert iv.collapse([I(1, 2), I(5, 6)]) == [I(1, 2), I(5, 6)]
    assert iv.collapse([I(1, 10), I(2, 3)]) == [I(1, 10)]
    assert iv.collapse([I(D("1.0"), D("5.0")), I(D("3.0"), D("7.0")), I(D("12.0"), D("19.0")),
                        I(D("7.0"), D("10.0"))]) == [I(D("1.0"), D("10.0")), I(D("12.0"), D("19.0"))]
    assert iv.collapse([I(D("4.0"), D("6.0")), I(D("6.00000001"), D("8.0"))]) == [I(D("4.0"), D("8.0"))]
    assert iv.collapse([I(D("4.0"), D("6.0")), I(D("6.00000002"), D("8.0"))]) == [
        I(D("4.0"), D("6.0")), I(D("6.00000002"), D("8.0"))]
    assert iv.collapse([I(g("1.0"), g("5.0")), I(g("3.0"), g("7.0")), I(g("12.0"), g("19.0")),
                        I(g("7.0"), g("10.0"))]) == [I(g("1.0"), g("10.0")), I(g("12.0"), g("19.0"))]
    assert iv.collapse([I(1, 5), I(3, None)]) == [I(1, None)]
    assert iv.collapse([I(3, 4), I(None, 2)]) == [I(None, 4)]


def test_collapse_per() -> None:
    per1 = Quantity(D(1), "1")
    assert iv.collapse([I(D("1.0"), D("1.2")), I(D("2.9"), D("3.0"))], per1) == [I(D("1.0"), D("3.0"))]
    assert iv.collapse([I(D("1.0"), D("1.2")), I(D("3.1"), D("4.0"))], per1) == [
        I(D("1.0"), D("1.2")), I(D("3.1"), D("4.0"))]
    assert iv.collapse([I(1, 2), I(5, 6)], Quantity(D(3), "1")) == [I(1, 6)]
    assert iv.collapse([I(1, 2), I(7, 8)], Quantity(D(3), "1")) == [I(1, 2), I(7, 8)]
    assert iv.collapse([I(g("1"), g("2")), I(Quantity(D(2500), "mg"), g("3"))], Quantity(D(1), "g")) == [
        I(g("1"), g("3"))]


def test_expand_integer() -> None:
    assert iv.expand([I(1, 10)]) == [I(n, n) for n in range(1, 11)]
    assert iv.expand([I(1, 10)], Quantity(D(2), "1")) == [I(1, 2), I(3, 4), I(5, 6), I(7, 8), I(9, 10)]
    assert iv.expand([I(1, 9)], 2) == [I(1, 2), I(3, 4), I(5, 6), I(7, 8)]  # [9, 10] would end after 9
    assert iv.expand(I(1, 10)) == list(range(1, 11))
    assert iv.expand(I(1, 10), Quantity(D(2), "1")) == [1, 3, 5, 7, 9]
    assert iv.expand([I(1, 3), I(2, 4)]) == [I(1, 1), I(2, 2), I(3, 3), I(4, 4)]  # no duplicates
    assert iv.expand([I(1, 4, hc=False)]) == [I(1, 1), I(2, 2), I(3, 3)]
    assert all(isinstance(x.low, int) for x in iv.expand([I(1, 3)]))
    assert iv.expand(None) is None
    assert iv.expand([]) == []
    assert iv.expand([None]) == []
    assert iv.expand([I(1, None, hc=False)]) == []
    assert iv.expand([I(1, None)]) == []
    with pytest.raises(CqlError):
        iv.expand([I(1, 3)], Quantity(D(0), "1"))


def test_expand_decimal() -> None:
    # boundaries more precise than per are truncated to it
    assert iv.expand([I(D("10.0"), D("12.5"))], Quantity(D(1), "1")) == [
        I(D(10), D(10)), I(D(11), D(11)), I(D(12), D(12))]
    # a boundary less precise than per stands for its whole range
    tenths = iv.expand([I(D(10), D(10))], Quantity(D("0.1"), "1"))
    assert tenths == [I(D(f"10.{k}"), D(f"10.{k}")) for k in range(10)]
    assert iv.expand([I(10, 10)], D("0.1")) == tenths
    assert iv.expand([I(D("1.0"), D("2.0"), hc=False)], D(1)) == [I(D(1), D(1))]
    assert iv.expand([I(D("1.0"), D("2.0"))], D("0.5")) == [I(D("1.0"), D("1.4")), I(D("1.5"), D("1.9"))]
    # without per: the coarsest boundary precision
    assert iv.expand([I(D("1.5"), D("1.8"))]) == [I(D(f"1.{k}"), D(f"1.{k}")) for k in range(5, 9)]


def test_expand_quantity() -> None:
    out = iv.expand([I(g("1"), g("3"))], Quantity(D(1), "g"))
    assert out == [I(g("1"), g("1")), I(g("2"), g("2")), I(g("3"), g("3"))]
    # per 500 mg in the interval's unit: 0.5 g, so the partitions are tenths of a gram
    assert iv.expand([I(g("1.0"), g("2.0"))], Quantity(D(500), "mg")) == [
        I(g("1.0"), g("1.4")), I(g("1.5"), g("1.9"))]
    # an integral boundary stands for its whole unit: 2 g covers 2.0 .. 2.9
    assert len(iv.expand([I(g("1"), g("2"))], Quantity(D(500), "mg"))) == 4
    with pytest.raises(CqlError):
        iv.expand([I(g("1"), g("2"))], Quantity(D(1), "m"))


# ---------------------------------------------------------------------------------------- date / time


def test_datetime_null_boundaries() -> None:
    jan24 = DA("2024-01-01")
    assert iv.contains(I(jan24, None), DA("2030-01-01")) is True  # closed null high: the maximum
    assert iv.contains(I(jan24, None, hc=False), DA("2030-01-01")) is None  # open null high: unknown
    assert iv.contains(I(jan24, None, hc=False), DA("2023-01-01")) is False
    assert iv.in_(DT("2012-01-07"), I(DT("2012-01-05"), None)) is True
    assert iv.end(I(jan24, None)) == dt.max_value("Date")
    assert iv.start(I(None, jan24)) == dt.min_value("Date")
    assert iv.end(I(DT("2012-01-05"), None)) == dt.max_value("DateTime")
    assert iv.start(Interval(None, None, point_type="{urn:hl7-org:elm-types:r1}Date")) == DA("0001-01-01")


@pytest.mark.parametrize(("op", "a", "b", "expected"), [
    (iv.contains, ("2012-01-01", "2012-01-15"), "2012-01-10", True),
    (iv.contains, ("2012-01-01", "2012-01-15"), "2012-01-16", False),
    (iv.after, ("2012-01-01", "2012-01-15"), "2011-12-31", True),
    (iv.after, ("2012-01-01", "2012-01-15"), "2012-12-31", False),
    (iv.before, ("2012-01-01", "2012-01-15"), "2012-02-27", True),
    (iv.before, ("2012-01-01", "2012-01-15"), "2011-12-31", False),
    (iv.includes, ("2012-01-05", "2012-01-15"), ("2012-01-07", "2012-01-14"), True),
    (iv.includes, ("2012-01-05", "2012-01-15"), ("2012-01-04", "2012-01-14"), False),
    (iv.meets, ("2012-01-07", "2012-01-14"), ("2012-01-15", "2012-01-25"), True),  # at day precision
    (iv.meets, ("2012-01-07", "2012-01-14"), ("2012-01-20", "2012-01-25"), False),
    (iv.meets, ("2012-01-15", "2012-01-25"), ("2012-01-07", "2012-01-14"), True),
    (iv.overlaps, ("2012-01-05", "2012-01-25"), ("2012-01-15", "2012-01-28"), True),
    (iv.overlaps, ("2012-01-05", "2012-01-25"), ("2012-01-26", "2012-01-28"), False),
    (iv.starts, ("2012-01-05", "2012-01-25"), ("2012-01-05", "2012-01-27"), True),
    (iv.starts, ("2012-01-05", "2012-01-25"), ("2012-01-06", "2012-01-27"), False),
    (iv.ends, ("2012-01-05", "2012-01-15"), ("2012-01-01", "2012-01-15"), True),
    (iv.ends, ("2012-01-05", "2012-01-15"), ("2012-01-01", "2012-01-16"), False),
    (iv.proper_includes, ("2012-01-15", "2012-01-28"), ("2012-01-16", "2012-01-27"), True),
    (iv.proper_includes, ("2012-01-15", "2012-01-28"), ("2012-01-16", "2012-01-29"), False),
    (iv.in_, "2012-01-07", ("2012-01-05", "2012-01-15"), True),
    (iv.in_, "2012-01-17", ("2012-01-05", "2012-01-15"), False),
])
def test_datetime_operators(op: Any, a: Any, b: Any, expected: bool) -> None:
    def val(x: Any) -> Any:
        return I(DT(x[0]), DT(x[1])) if isinstance(x, tuple) else DT(x)

    assert op(val(a), val(b)) is expected


def test_datetime_precision_qualified() -> None:
    period = I(DT("2017-09-01T00:00:00.000"), DT("2017-12-30T23:59:59.999"))
    point = I(DT("2017-09-01T00:00:00"), DT("2017-09-01T00:00:00"))
    assert iv.included_in(point, period, "day") is True
    assert iv.included_in(point, period, "millisecond") is None  # second-precision boundaries
    # during day of: the hour does not matter, only the day
    visit = I(DT("2024-03-01T08:00:00.000"), DT("2024-03-01T10:00:00.000"))
    assert iv.in_(DT("2024-03-01T23:00:00.000"), visit) is False
    assert iv.in_(DT("2024-03-01T23:00:00.000"), visit, "day") is True
    assert iv.in_(DT("2024-03-01"), visit) is None  # day precision vs hour boundaries: uncertain
    assert iv.in_(DT("2024-03-01"), visit, "day") is True
    assert iv.in_(DT("2024-03"), visit, "day") is None
    # open boundary with precision
    month = I(DT("2024-03-01T00:00:00.000"), DT("2024-04-01T00:00:00.000"), hc=False)
    assert iv.in_(DT("2024-03-31T23:59:59.999"), month) is True
    assert iv.in_(DT("2024-04-01T00:00:00.000"), month) is False
    assert iv.in_(DT("2024-04-01T05:00:00.000"), month, "day") is False
    assert iv.same_or_after(I(DA("2012-12-01"), DA("2013-12-01")), DA("2012-11-15"), "month") is True
    assert iv.same_or_after(DA("2012-11-15"), I(DA("2012-12-01"), DA("2013-12-01")), "month") is False
    assert iv.same_or_before(I(DA("2012-10-01"), DA("2012-11-01")), DA("2012-11-15"), "month") is True
    assert iv.same_or_before(DA("2012-11-15"), I(DA("2012-10-01"), DA("2013-12-01")), "month") is False
    assert iv.same_or_after(I(T("T10:00:00.000"), T("T19:59:59.999")),
                            I(T("T08:00:00.000"), T("T09:59:59.999")), "hour") is True
    assert iv.same_or_after(I(T("T10:00:00.000"), T("T19:59:59.999")),
                            I(T("T08:00:00.000"), T("T11:59:59.999")), "hour") is False


def test_datetime_interval_values() -> None:
    assert iv.except_(I(DT("2012-01-05"), DT("2012-01-15")), I(DT("2012-01-07"), DT("2012-01-15"))) == I(
        DT("2012-01-05"), DT("2012-01-06"))
    assert iv.except_(I(DT("2012-01-07"), DT("2012-01-16")), I(DT("2012-01-05"), DT("2012-01-12"))) == I(
        DT("2012-01-13"), DT("2012-01-16"))
    assert iv.except_(I(T("T05:59:59.999"), T("T10:59:59.999")), I(T("T08:59:59.999"), T("T10:59:59.999"))) == I(
        T("T05:59:59.999"), T("T08:59:59.998"))
    assert iv.intersect(I(DT("2012-01-07"), DT("2012-01-14")), I(DT("2012-01-07"), DT("2012-01-10"))) == I(
        DT("2012-01-07"), DT("2012-01-10"))
    assert iv.union(I(DT("2012-01-05"), DT("2012-01-25")), I(DT("2012-01-25"), DT("2012-01-28"))) == I(
        DT("2012-01-05"), DT("2012-01-28"))
    assert iv.union(I(DT("2012-01-05"), DT("2012-01-25")), I(DT("2012-01-27"), DT("2012-01-28"))) is None
    assert values.equal(I(DT("2012-01-05T00:00:00.000"), DT("2012-01-15T00:00:00.000")),
                        I(DT("2012-01-05T00:00:00.000"), DT("2012-01-16T00:00:00.000"), hc=False)) is False
    assert values.equal(I(DA("2012-01-05"), DA("2012-01-15")), I(DA("2012-01-05"), DA("2012-01-16"),
                                                                 hc=False)) is True
    assert iv.start(I(DT("2016-05-01T00:00:00.000"), DT("2016-05-02T00:00:00.000"))) == DT(
        "2016-05-01T00:00:00.000")
    assert iv.end(I(T("T00:00:00.000"), T("T23:59:59.599"), hc=False)) == T("T23:59:59.598")
    with pytest.raises(CqlError):
        iv.width(I(DT("2012-01-05"), DT("2012-01-25")))


def test_datetime_collapse() -> None:
    out = iv.collapse([I(DT("2012-01-01"), DT("2012-01-15")), I(DT("2012-01-10"), DT("2012-01-25")),
                       I(DT("2012-05-10"), DT("2012-05-25")), I(DT("2012-05-20"), DT("2012-05-30"))])
    assert out == [I(DT("2012-01-01"), DT("2012-01-25")), I(DT("2012-05-10"), DT("2012-05-30"))]
    out = iv.collapse([I(DT("2012-01-01"), DT("2012-01-15")), I(DT("2012-01-16"), DT("2012-05-25"))])
    assert out == [I(DT("2012-01-01"), DT("2012-05-25"))]
    out = iv.collapse([I(T("T01:59:59.999"), T("T10:59:59.999")), I(T("T11:00:00.000"), T("T15:59:59.999"))])
    assert out == [I(T("T01:59:59.999"), T("T15:59:59.999"))]
    # per day: 12:00 on the 1st and 13:00 on the 2nd fall in adjacent days
    a = I(DT("2024-01-01T10:00:00.000"), DT("2024-01-01T12:00:00.000"))
    b = I(DT("2024-01-02T13:00:00.000"), DT("2024-01-02T14:00:00.000"))
    c = I(DT("2024-01-04T13:00:00.000"), DT("2024-01-04T14:00:00.000"))
    assert iv.collapse([a, b, c]) == [a, b, c]
    assert iv.collapse([a, b, c], Quantity(D(1), "day")) == [I(a.low, b.high), c]


def test_datetime_expand() -> None:
    days = iv.expand([I(DA("2018-01-01"), DA("2018-01-04"))], Quantity(D(1), "day"))
    assert days == [I(DA(f"2018-01-0{d}"), DA(f"2018-01-0{d}")) for d in range(1, 5)]
    assert iv.expand([I(DA("2018-01-01"), DA("2018-01-04"))]) == days  # per: the boundary precision
    assert iv.expand([I(DA("2018-01-01"), DA("2018-01-04"))], Quantity(D(2), "days")) == [
        I(DA("2018-01-01"), DA("2018-01-02")), I(DA("2018-01-03"), DA("2018-01-04"))]
    assert iv.expand([I(T("T10:00"), T("T12:30"))], Quantity(D(1), "hour")) == [
        I(T("T10"), T("T10")), I(T("T11"), T("T11")), I(T("T12"), T("T12"))]
    assert iv.expand([I(T("T10"), T("T10"))], Quantity(D(1), "minute")) == []
    assert iv.expand(I(DA("2018-01-01"), DA("2018-01-03")), Quantity(D(1), "day")) == [
        DA("2018-01-01"), DA("2018-01-02"), DA("2018-01-03")]
    # a DateTime measurement period per month
    months = iv.expand([I(DT("2024-01-01T00:00:00.000"), DT("2024-12-31T23:59:59.999"))],
                       Quantity(D(1), "month"))
    assert len(months) == 12 and months[1] == I(DT("2024-02"), DT("2024-02"))

"""CQL 1.5 temporal values (Date, DateTime, Time) and the Date and Time operators.

Values are immutable and hashable; ``==``/``hash`` are structural (usable in sets and dicts) and no ordering
dunders are defined: CQL comparison goes through ``cql_compare``/``cql_equal``/``cql_equivalent`` (see
``values.py``) or the module-level helpers below, which keep CQL's uncertainty (``None``).

Precision is the last component given; precision names are ``year month week day hour minute second
millisecond`` (``week`` only for arithmetic, duration and difference). ``normalize_precision`` also accepts ELM
spellings (``Year``), plurals and the UCUM calendar units (``a mo wk d h min s ms``).

**Timezone offsets.** ``DateTime.offset`` is a Decimal number of hours, or None when no offset was given. CQL
says such a value is in the timezone offset of the evaluation request; here that is ``get_default_offset()``:
the module setting ``DEFAULT_OFFSET`` (``Decimal(0)``, change it with ``set_default_offset``), overridden per
evaluation (thread- and task-safe, a ContextVar) with ``with evaluation_offset(Decimal("-5")): ...``. The
offset is resolved when a value is compared or measured, never stored, so an offset-less value stays offset-less
(``to_string`` prints no offset for it).

When comparing (no precision, or a precision of hour or finer) DateTimes whose offsets differ, the values that
have an hour are first normalised to the evaluation offset; at day precision or coarser the calendar fields
are compared as written (CQL 1.5, "only when the comparison precision is hours, minutes, seconds, or
milliseconds"). Seconds and milliseconds are compared as one decimal precision when no precision is given
(``10:30:00`` = ``10:30:00.000``).

**Uncertainty.** ``duration_between``, ``difference_between`` and ``calculate_age_at`` return an ``int`` when
the result is determinate and an ``Uncertainty(low, high)`` otherwise (a value of lower precision stands for
every instant of its period, e.g. ``months between DateTime(2005) and DateTime(2006, 7)`` is
``Uncertainty(6, 18)``). This follows cql-execution (the engine behind MADiE/Bonnie eCQM test cases), including
for DateTimes known only to the day (``days between`` two of them is ``Uncertainty(n - 1, n)``; Dates are
exact). ``Uncertainty`` implements ``cql_compare``/``cql_equal``/``cql_equivalent`` and arithmetic
(``plus``/``minus``/``times``/``negate``); ``compare_op(op, a, b)`` evaluates ``< <= > >= = !=`` between ints
and Uncertainties exactly (e.g. ``Uncertainty(6, 18) <= 18`` is true, which a three-way compare cannot say).

Arithmetic (``add``/``subtract``) follows CQL: month-end clamping, decimal quantities truncated (a fractional
number of seconds is kept as milliseconds), a quantity finer than the value's precision converted to it with
truncation (1 year = 12 months = 365 days, 1 month = 30 days, 1 week = 7 days), a result out of years
1..9999 is a run-time error, Time arithmetic wraps around midnight. ``successor``/``predecessor`` never wrap.
"""

from __future__ import annotations

import calendar
import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime as _PyDateTime
from datetime import timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .values import CqlError

__all__ = [
    "DEFAULT_OFFSET",
    "Date",
    "DateTime",
    "Time",
    "Uncertainty",
    "add",
    "after",
    "before",
    "calculate_age",
    "calculate_age_at",
    "compare_op",
    "component",
    "difference_between",
    "duration_between",
    "evaluation_offset",
    "from_fhir",
    "get_default_offset",
    "max_value",
    "min_value",
    "normalize_precision",
    "now",
    "parse_date",
    "parse_datetime",
    "parse_time",
    "predecessor",
    "same_as",
    "same_or_after",
    "same_or_before",
    "set_default_offset",
    "subtract",
    "successor",
    "time_of_day",
    "to_string",
    "today",
    "truncate_to",
]

YEAR, MONTH, WEEK, DAY = "year", "month", "week", "day"
HOUR, MINUTE, SECOND, MILLISECOND = "hour", "minute", "second", "millisecond"

#: Component names of a DateTime, coarsest first (week is not a component).
DATETIME_FIELDS: tuple[str, ...] = (YEAR, MONTH, DAY, HOUR, MINUTE, SECOND, MILLISECOND)
DATE_FIELDS: tuple[str, ...] = DATETIME_FIELDS[:3]
TIME_FIELDS: tuple[str, ...] = DATETIME_FIELDS[3:]
_ORDER = {name: i for i, name in enumerate(DATETIME_FIELDS)}

_PRECISION_ALIASES: dict[str, str] = {}
for _p in (YEAR, MONTH, WEEK, DAY, HOUR, MINUTE, SECOND, MILLISECOND):
    _PRECISION_ALIASES[_p] = _p
    _PRECISION_ALIASES[_p + "s"] = _p
_PRECISION_ALIASES.update({"a": YEAR, "mo": MONTH, "wk": WEEK, "d": DAY, "h": HOUR, "min": MINUTE, "s": SECOND,
                           "ms": MILLISECOND})

# Milliseconds per definite unit (days are 24 hours: offsets are fixed, there is no DST here).
_MS = {DAY: 86_400_000, HOUR: 3_600_000, MINUTE: 60_000, SECOND: 1000, MILLISECOND: 1}
_MS_PER_DAY = _MS[DAY]


def normalize_precision(name: str) -> str:
    """``'Year'``, ``'years'``, ``'a'`` -> ``'year'``; raises CqlError for an unknown precision or unit."""
    if not isinstance(name, str):
        raise CqlError(f"Invalid date/time precision {name!r}")
    key = name.strip()
    p = _PRECISION_ALIASES.get(key) or _PRECISION_ALIASES.get(key.lower())
    if p is None:
        raise CqlError(f"Invalid date/time precision or unit {name!r}")
    return p


# ---------------------------------------------------------------------------------------------------------------
# Default (evaluation request) timezone offset
# ---------------------------------------------------------------------------------------------------------------

#: Offset (hours) used for DateTimes without one, unless ``evaluation_offset`` overrides it.
DEFAULT_OFFSET: Decimal = Decimal(0)
_offset_override: ContextVar[Decimal | None] = ContextVar("cql_evaluation_offset", default=None)


def _to_offset(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"Invalid timezone offset {value!r}")
    try:
        off = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as e:
        raise ValueError(f"Invalid timezone offset {value!r}") from e
    if not off.is_finite() or abs(off) > 14:
        raise ValueError(f"Invalid timezone offset {value!r}")
    return off


def get_default_offset() -> Decimal:
    """The offset (hours) of the evaluation request: the ``evaluation_offset`` override, else DEFAULT_OFFSET."""
    v = _offset_override.get()
    return DEFAULT_OFFSET if v is None else v


def set_default_offset(offset: Decimal | int | str) -> None:
    """Set the process-wide DEFAULT_OFFSET (hours)."""
    global DEFAULT_OFFSET
    off = _to_offset(offset)
    if off is None:
        raise ValueError("The default offset cannot be None")
    DEFAULT_OFFSET = off


@contextlib.contextmanager
def evaluation_offset(offset: Decimal | int | str | None) -> Iterator[None]:
    """Within the block (this thread/task only), offset-less DateTimes are in ``offset`` hours."""
    token = _offset_override.set(_to_offset(offset))
    try:
        yield
    finally:
        _offset_override.reset(token)


def _offset_minutes(offset: Decimal) -> int:
    return int((offset * 60).to_integral_value())


def _offset_from_minutes(minutes: int) -> Decimal:
    return Decimal(minutes) / Decimal(60)


# ---------------------------------------------------------------------------------------------------------------
# Value classes
# ---------------------------------------------------------------------------------------------------------------

_RANGES = {YEAR: (1, 9999), MONTH: (1, 12), DAY: (1, 31), HOUR: (0, 23), MINUTE: (0, 59), SECOND: (0, 59),
           MILLISECOND: (0, 999)}


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    # calendar.monthrange's day count without the weekday it also computes (every Date/DateTime with a day
    # checks it); anything but a month number goes to monthrange for its error
    if month.__class__ is int and 1 <= month <= 12 and year.__class__ is int:
        return 29 if month == 2 and calendar.isleap(year) else _MONTH_DAYS[month]
    return calendar.monthrange(year, month)[1]


def _validate(values: tuple[int | None, ...], names: tuple[str, ...]) -> None:
    if values[0] is None:
        raise ValueError(f"{names[0]} is required")
    missing: str | None = None
    for v, n in zip(values, names, strict=True):
        if v is None:
            missing = missing or n
            continue
        if missing is not None:
            raise ValueError(f"{n} is given but {missing} is not")
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{n} must be an integer, not {v!r}")
        lo, hi = _RANGES[n]
        if not lo <= v <= hi:
            raise ValueError(f"{n} {v} is out of range {lo}..{hi}")
    if names[0] == YEAR and values[2] is not None:
        assert values[0] is not None and values[1] is not None
        if values[2] > _days_in_month(values[0], values[1]):
            raise ValueError(f"day {values[2]} is out of range for {values[0]:04d}-{values[1]:02d}")


def _precision_of(values: tuple[int | None, ...], names: tuple[str, ...]) -> str:
    p = names[0]
    for v, n in zip(values, names, strict=True):
        if v is None:
            break
        p = n
    return p


class _CqlOrdered:
    """The CQL comparison protocol (see values.py) shared by Date, DateTime and Time."""

    def cql_compare(self, other: Any, precision: str | None = None) -> int | None:
        return _compare(self, other, precision)

    def cql_equal(self, other: Any) -> bool | None:
        return _equal(self, other)

    def cql_equivalent(self, other: Any) -> bool:
        return _equivalent(self, other)

    def __str__(self) -> str:
        return to_string(self)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Date(_CqlOrdered):
    """CQL Date: year, optionally month and day."""

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        _validate(self.components(), DATE_FIELDS)

    def components(self) -> tuple[int | None, ...]:
        return (self.year, self.month, self.day)

    @property
    def precision(self) -> str:
        return _precision_of(self.components(), DATE_FIELDS)

    def to_datetime(self) -> DateTime:
        """CQL ToDateTime(Date): same components and precision, no time, no offset (evaluation offset)."""
        return DateTime(self.year, self.month, self.day)

    def cql_literal(self) -> str:
        return "@" + to_string(self)


@dataclass(frozen=True)
class DateTime(_CqlOrdered):
    """CQL DateTime. ``offset`` is in hours (``Decimal('-5.0')``); None means the evaluation request's offset."""

    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    second: int | None = None
    millisecond: int | None = None
    offset: Decimal | None = None

    def __post_init__(self) -> None:
        _validate(self.components(), DATETIME_FIELDS)
        off = _to_offset(self.offset)
        if off is not self.offset:
            object.__setattr__(self, "offset", off)

    def components(self) -> tuple[int | None, ...]:
        return (self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond)

    @property
    def precision(self) -> str:
        return _precision_of(self.components(), DATETIME_FIELDS)

    @property
    def effective_offset(self) -> Decimal:
        """The offset, or the evaluation request's offset when none was given."""
        return get_default_offset() if self.offset is None else self.offset

    def to_date(self) -> Date:
        """The date components as written (``date from``)."""
        return Date(self.year, self.month, self.day)

    def to_time(self) -> Time | None:
        """The time components as written (``time from``); None when there is no hour."""
        if self.hour is None:
            return None
        return Time(self.hour, self.minute, self.second, self.millisecond)

    def cql_literal(self) -> str:
        s = to_string(self)
        return "@" + s if self.hour is not None else "@" + s + "T"


@dataclass(frozen=True)
class Time(_CqlOrdered):
    """CQL Time: hour, optionally minute, second and millisecond (no offset)."""

    hour: int
    minute: int | None = None
    second: int | None = None
    millisecond: int | None = None

    def __post_init__(self) -> None:
        _validate(self.components(), TIME_FIELDS)

    def components(self) -> tuple[int | None, ...]:
        return (self.hour, self.minute, self.second, self.millisecond)

    @property
    def precision(self) -> str:
        return _precision_of(self.components(), TIME_FIELDS)

    def cql_literal(self) -> str:
        return "@T" + to_string(self)


Temporal = Date | DateTime | Time
_TEMPORAL = (Date, DateTime, Time)


def _names(v: Temporal) -> tuple[str, ...]:
    if isinstance(v, DateTime):
        return DATETIME_FIELDS
    if isinstance(v, Date):
        return DATE_FIELDS
    return TIME_FIELDS


def _rebuild(v: Temporal, values: dict[str, int], precision: str, offset: Decimal | None = None) -> Temporal:
    """A value of v's type with the given component values up to ``precision``."""
    names = _names(v)
    stop = names.index(precision)
    comps = [values[n] if i <= stop else None for i, n in enumerate(names)]
    if isinstance(v, DateTime):
        return DateTime(*comps, offset=offset)  # type: ignore[arg-type]
    if isinstance(v, Date):
        return Date(*comps)  # type: ignore[arg-type]
    return Time(*comps)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Parsing and formatting
# ---------------------------------------------------------------------------------------------------------------

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_TIME_PART = r"(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
_DATETIME_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T(?:" + _TIME_PART + r")?(Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_TIME_RE = re.compile(r"T?" + _TIME_PART)


def _strip(text: Any, kind: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"Invalid {kind} {text!r}")
    s = text.strip()
    return s[1:] if s.startswith("@") else s


def _ms(fraction: str | None) -> int | None:
    return None if fraction is None else int((fraction + "00")[:3])


def _int(s: str | None) -> int | None:
    return None if s is None else int(s)


def _parse_offset(s: str | None) -> Decimal | None:
    if s is None:
        return None
    if s == "Z":
        return Decimal(0)
    sign = -1 if s[0] == "-" else 1
    digits = s[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if minutes > 59 or hours > 14:
        raise ValueError(f"Invalid timezone offset {s!r}")
    return _offset_from_minutes(sign * (hours * 60 + minutes))


def parse_date(text: str) -> Date:
    """``2024``, ``2024-03``, ``2024-03-01`` (optionally ``@``-prefixed); ValueError when invalid."""
    s = _strip(text, "Date")
    m = _DATE_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"Invalid Date {text!r}")
    return Date(int(m[1]), _int(m[2]), _int(m[3]))


def parse_datetime(text: str) -> DateTime:
    """CQL/ELM literal and FHIR dateTime/instant forms: ``2024``, ``2024-03-01``, ``2024T``, ``2024-03-01T10``,
    ``2024-03-01T10:30:00.123``, each optionally followed by ``Z`` or ``+hh:mm``/``-hh:mm`` after a time (a FHIR
    dateTime with a time but no offset gets offset None). ValueError when invalid."""
    s = _strip(text, "DateTime")
    m = _DATETIME_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"Invalid DateTime {text!r}")
    return DateTime(int(m[1]), _int(m[2]), _int(m[3]), _int(m[4]), _int(m[5]), _int(m[6]), _ms(m[7]),
                    offset=_parse_offset(m[8]))


def parse_time(text: str) -> Time:
    """``T10:30``, ``@T10``, ``10:30:00.000`` (FHIR time); ValueError when invalid."""
    s = _strip(text, "Time")
    m = _TIME_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"Invalid Time {text!r}")
    return Time(int(m[1]), _int(m[2]), _int(m[3]), _ms(m[4]))


def from_fhir(text: str) -> Date | DateTime | Time:
    """A FHIR date/dateTime/instant/time string as the CQL value its shape implies: with a ``T`` a DateTime,
    with only ``hh:mm...`` a Time, otherwise a Date. (A FHIR ``dateTime`` element given only to the day is
    therefore a Date; use ``parse_datetime`` when the element type is known to be dateTime.)"""
    s = _strip(text, "FHIR date/time")
    if s.startswith("T"):
        return parse_time(s)
    if "T" in s:
        return parse_datetime(s)
    if ":" in s:
        return parse_time(s)
    return parse_date(s)


def _format_offset(offset: Decimal) -> str:
    minutes = _offset_minutes(offset)
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    return f"{sign}{hh:02d}:{mm:02d}"


def _format_time(h: int, mi: int | None, s: int | None, ms: int | None) -> str:
    out = f"{h:02d}"
    if mi is not None:
        out += f":{mi:02d}"
        if s is not None:
            out += f":{s:02d}"
            if ms is not None:
                out += f".{ms:03d}"
    return out


def to_string(value: Temporal | None) -> str | None:
    """ISO 8601 at the value's precision (``2024-03``, ``2024-03-01T10:30:00.123-05:00``, ``10:30``)."""
    if value is None:
        return None
    if isinstance(value, Time):
        return _format_time(*value.components())  # type: ignore[arg-type]
    if not isinstance(value, (Date, DateTime)):
        raise CqlError(f"Not a Date, DateTime or Time: {value!r}")
    out = f"{value.year:04d}"
    if value.month is not None:
        out += f"-{value.month:02d}"
        if value.day is not None:
            out += f"-{value.day:02d}"
    if isinstance(value, DateTime) and value.hour is not None:
        out += "T" + _format_time(value.hour, value.minute, value.second, value.millisecond)
        if value.offset is not None:
            out += _format_offset(value.offset)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------------------------


def _coerce_pair(a: Any, b: Any) -> tuple[Temporal, Temporal]:
    """Promote a Date to DateTime against a DateTime (CQL implicit ToDateTime); CqlError for other mixes."""
    if isinstance(a, Date) and isinstance(b, DateTime):
        return a.to_datetime(), b
    if isinstance(a, DateTime) and isinstance(b, Date):
        return a, b.to_datetime()
    if isinstance(a, _TEMPORAL) and type(a) is type(b):
        return a, b
    raise CqlError(f"Cannot compare {type(a).__name__} with {type(b).__name__}")


def _shift_to(v: DateTime, target: Decimal) -> DateTime:
    """v expressed in offset ``target`` (same precision); unchanged when it has no hour."""
    if v.hour is None:
        return v
    src = v.effective_offset
    if src == target:
        return v if v.offset is not None else DateTime(*v.components(), offset=target)
    delta = timedelta(minutes=_offset_minutes(target) - _offset_minutes(src))
    try:
        moved = _low(v) + delta
    except OverflowError:
        return v
    return _rebuild(v, _py_fields(moved), v.precision, target)  # type: ignore[return-value]


def _normalize_pair(a: DateTime, b: DateTime) -> tuple[DateTime, DateTime]:
    if a.effective_offset == b.effective_offset:
        return a, b
    target = get_default_offset()
    return _shift_to(a, target), _shift_to(b, target)


def _last_compared(names: tuple[str, ...] | list[str], precision: str | None, type_name: str) -> int:
    """The index of the last component a comparison at ``precision`` looks at (all of them without one)."""
    if precision is None:
        return len(names) - 1
    p = normalize_precision(precision)
    if p not in names:
        raise CqlError(f"Precision {precision!r} is not valid for {type_name} comparison")
    return names.index(p)


def _compare(a: Any, b: Any, precision: str | None) -> int | None:
    if a is None or b is None:
        return None
    cls = a.__class__
    if cls is b.__class__ and cls in _FIELDS_OF and (cls is not DateTime or a.offset == b.offset):
        # the common case, two values of one type (DateTimes with the same offset, which need no shift):
        # straight to the comparison of their components
        names = _FIELDS_OF[cls]
        stop = _last_compared(names, precision, cls.__name__)
    else:
        a, b = _coerce_pair(a, b)
        names = _names(a)
        stop = _last_compared(names, precision, type(a).__name__)
        if isinstance(a, DateTime) and isinstance(b, DateTime) and (precision is None or _ORDER[names[stop]] > 2):
            a, b = _normalize_pair(a, b)
    fa, fb = a.components(), b.components()
    for i in range(stop + 1):
        x, y = fa[i], fb[i]
        if x is None or y is None:
            # Both lacking the component: equal so far when comparing at their own precision; no value for
            # a requested precision is uncertain.
            return 0 if (x is None and y is None and precision is None) else None
        if precision is None and names[i] == SECOND:
            # Seconds and milliseconds are one decimal precision (10:30:00 = 10:30:00.000).
            xs, ys = x * 1000 + (fa[i + 1] or 0), y * 1000 + (fb[i + 1] or 0)
            return (xs > ys) - (xs < ys)
        if x != y:
            return -1 if x < y else 1
    return 0


_FIELDS_OF: dict[type, tuple[str, ...]] = {DateTime: DATETIME_FIELDS, Date: DATE_FIELDS, Time: TIME_FIELDS}


def _compatible(a: Any, b: Any) -> bool:
    if isinstance(a, (Date, DateTime)) and isinstance(b, (Date, DateTime)):
        return True
    return isinstance(a, Time) and isinstance(b, Time)


def _equal(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if not _compatible(a, b):
        return False
    c = _compare(a, b, None)
    return None if c is None else c == 0


def _equivalent(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not _compatible(a, b):
        return False
    return _compare(a, b, None) == 0


def same_as(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL ``same [precision] as``: None when either is null or the answer is uncertain."""
    c = _compare(a, b, precision)
    return None if c is None else c == 0


def same_or_before(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL ``same [precision] or before`` / ``on or before``."""
    c = _compare(a, b, precision)
    return None if c is None else c <= 0


def same_or_after(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL ``same [precision] or after`` / ``on or after``."""
    c = _compare(a, b, precision)
    return None if c is None else c >= 0


def before(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL ``before [precision of]``."""
    c = _compare(a, b, precision)
    return None if c is None else c < 0


def after(a: Any, b: Any, precision: str | None = None) -> bool | None:
    """CQL ``after [precision of]``."""
    c = _compare(a, b, precision)
    return None if c is None else c > 0


# ---------------------------------------------------------------------------------------------------------------
# Python datetime bridges (a value's earliest and latest instants)
# ---------------------------------------------------------------------------------------------------------------

_TIME_ANCHOR = (2000, 1, 1)


def _py_fields(d: _PyDateTime) -> dict[str, int]:
    return {YEAR: d.year, MONTH: d.month, DAY: d.day, HOUR: d.hour, MINUTE: d.minute, SECOND: d.second,
            MILLISECOND: d.microsecond // 1000}


def _tz(v: DateTime) -> timezone:
    return timezone(timedelta(minutes=_offset_minutes(v.effective_offset)))


def _low(v: Temporal) -> _PyDateTime:
    """The earliest instant of v, naive (DateTime in its own local fields; Time on a fixed anchor date)."""
    if isinstance(v, Time):
        return _PyDateTime(*_TIME_ANCHOR, v.hour, v.minute or 0, v.second or 0, (v.millisecond or 0) * 1000)
    d = _PyDateTime(v.year, v.month or 1, v.day or 1)
    if isinstance(v, DateTime):
        d = d.replace(hour=v.hour or 0, minute=v.minute or 0, second=v.second or 0,
                      microsecond=(v.millisecond or 0) * 1000)
    return d


def _high(v: Temporal) -> _PyDateTime:
    """The latest instant of v (last millisecond of its precision period; a Date's last day at 00:00)."""
    if isinstance(v, Time):
        return _PyDateTime(*_TIME_ANCHOR, v.hour, 59 if v.minute is None else v.minute,
                           59 if v.second is None else v.second,
                           (999 if v.millisecond is None else v.millisecond) * 1000)
    month = 12 if v.month is None else v.month
    day = _days_in_month(v.year, month) if v.day is None else v.day
    d = _PyDateTime(v.year, month, day)
    if isinstance(v, DateTime):
        d = d.replace(hour=23 if v.hour is None else v.hour, minute=59 if v.minute is None else v.minute,
                      second=59 if v.second is None else v.second,
                      microsecond=(999 if v.millisecond is None else v.millisecond) * 1000)
    return d


def _ms_fixed(v: Temporal) -> Temporal:
    """Seconds without milliseconds mean .000 for duration/difference (one decimal precision)."""
    if isinstance(v, (DateTime, Time)) and v.second is not None and v.millisecond is None:
        if isinstance(v, DateTime):
            return DateTime(v.year, v.month, v.day, v.hour, v.minute, v.second, 0, offset=v.offset)
        return Time(v.hour, v.minute, v.second, 0)
    return v


def _bounds(v: Temporal, aware: bool) -> tuple[_PyDateTime, _PyDateTime]:
    v = _ms_fixed(v)
    lo, hi = _low(v), _high(v)
    if aware and isinstance(v, DateTime):
        tz = _tz(v)
        lo, hi = lo.replace(tzinfo=tz), hi.replace(tzinfo=tz)
    return lo, hi


def _add_months(d: _PyDateTime, months: int) -> _PyDateTime:
    total = d.year * 12 + (d.month - 1) + months
    y, m = divmod(total, 12)
    if not 1 <= y <= 9999:
        raise OverflowError("year out of range")
    return d.replace(year=y, month=m + 1, day=min(d.day, _days_in_month(y, m + 1)))


def _whole_between(start: _PyDateTime, end: _PyDateTime, unit: str) -> int:
    """Whole ``unit`` periods from start to end (negative when end is earlier): the largest n such that
    start + n units <= end, adding calendar years/months with month-end clamping."""
    if end < start:
        return -_whole_between(end, start, unit)
    if start.tzinfo is not None:
        end = end.astimezone(start.tzinfo)
    if unit in (YEAR, MONTH):
        months = (end.year - start.year) * 12 + (end.month - start.month)
        n = months // 12 if unit == YEAR else months
        step = 12 if unit == YEAR else 1
        if _add_months(start, n * step) > end:
            n -= 1
        return n
    if unit == WEEK:
        return (end - start) // timedelta(days=7)
    return (end - start) // timedelta(milliseconds=_MS[unit])


# ---------------------------------------------------------------------------------------------------------------
# Uncertainty
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uncertainty:
    """An integer known only to lie in [low, high] (CQL 1.5 §5.7, precision-based timing)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            lo, hi = self.high, self.low
            object.__setattr__(self, "low", lo)
            object.__setattr__(self, "high", hi)

    @property
    def is_point(self) -> bool:
        return self.low == self.high

    def cql_compare(self, other: Any, precision: str | None = None) -> int | None:
        if other is None:
            return None
        lo, hi = _ubounds(other)
        if self.high < lo:
            return -1
        if self.low > hi:
            return 1
        return 0 if self.low == self.high == lo == hi else None

    def cql_equal(self, other: Any) -> bool | None:
        return compare_op("=", self, other)

    def cql_equivalent(self, other: Any) -> bool:
        if other is None or not isinstance(other, (int, Uncertainty)) or isinstance(other, bool):
            return False
        return _ubounds(other) == (self.low, self.high)

    def plus(self, other: int | Uncertainty) -> int | Uncertainty:
        lo, hi = _ubounds(other)
        return _uncertain(self.low + lo, self.high + hi)

    def minus(self, other: int | Uncertainty) -> int | Uncertainty:
        lo, hi = _ubounds(other)
        return _uncertain(self.low - hi, self.high - lo)

    def times(self, other: int | Uncertainty) -> int | Uncertainty:
        lo, hi = _ubounds(other)
        products = (self.low * lo, self.low * hi, self.high * lo, self.high * hi)
        return _uncertain(min(products), max(products))

    def negate(self) -> Uncertainty:
        return Uncertainty(-self.high, -self.low)

    def __str__(self) -> str:
        return f"Interval[{self.low}, {self.high}]"


def _ubounds(x: Any) -> tuple[Any, Any]:
    if isinstance(x, Uncertainty):
        return x.low, x.high
    if isinstance(x, (int, Decimal)) and not isinstance(x, bool):
        return x, x
    raise CqlError(f"Cannot compare an uncertainty with {type(x).__name__}")


def _uncertain(low: int, high: int) -> int | Uncertainty:
    return low if low == high else Uncertainty(low, high)


def compare_op(op: str, a: Any, b: Any) -> bool | None:
    """``a op b`` for ints/Decimals and Uncertainty values, op one of ``< <= > >= = !=``: true or false when
    every possible value agrees, None otherwise (or when an operand is null)."""
    if a is None or b is None:
        return None
    alo, ahi = _ubounds(a)
    blo, bhi = _ubounds(b)
    if op == "<":
        return True if ahi < blo else False if alo >= bhi else None
    if op == "<=":
        return True if ahi <= blo else False if alo > bhi else None
    if op == ">":
        return compare_op("<", b, a)
    if op == ">=":
        return compare_op("<=", b, a)
    if op in ("=", "!="):
        if ahi < blo or alo > bhi:
            eq: bool | None = False
        elif alo == ahi == blo == bhi:
            eq = True
        else:
            eq = None
        return eq if op == "=" or eq is None else not eq
    raise CqlError(f"Unknown comparison operator {op!r}")


# ---------------------------------------------------------------------------------------------------------------
# Duration and difference
# ---------------------------------------------------------------------------------------------------------------

_DATE_UNITS = (YEAR, MONTH, WEEK, DAY)
_TIME_UNITS = (HOUR, MINUTE, SECOND, MILLISECOND)


def _check_unit(v: Temporal, unit: str, what: str) -> None:
    if isinstance(v, Date) and unit not in _DATE_UNITS:
        raise CqlError(f"{what} in {unit}s is not defined for Date values")
    if isinstance(v, Time) and unit not in _TIME_UNITS:
        raise CqlError(f"{what} in {unit}s is not defined for Time values")


def duration_between(a: Any, b: Any, precision: str) -> int | Uncertainty | None:
    """CQL ``<precision>s between a and b``: whole calendar periods (negative when a is after b). An int when
    determinate, an ``Uncertainty`` when a value's precision leaves the count open, None for a null operand or
    a result out of range. DateTimes are compared as instants (offsets respected)."""
    if a is None or b is None or precision is None:
        return None
    a, b = _coerce_pair(a, b)
    unit = normalize_precision(precision)
    _check_unit(a, unit, "Duration")
    try:
        alo, ahi = _bounds(a, aware=True)
        blo, bhi = _bounds(b, aware=True)
        return _uncertain(_whole_between(ahi, blo, unit), _whole_between(alo, bhi, unit))
    except OverflowError:
        return None


def _truncate_py(d: _PyDateTime, unit: str) -> _PyDateTime:
    if unit == YEAR:
        return d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == MONTH:
        return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit in (WEEK, DAY):
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == WEEK:  # back to the Sunday starting the week (weekday(): Monday 0 .. Sunday 6)
            d -= timedelta(days=(d.weekday() + 1) % 7)
        return d
    if unit == HOUR:
        return d.replace(minute=0, second=0, microsecond=0)
    if unit == MINUTE:
        return d.replace(second=0, microsecond=0)
    if unit == SECOND:
        return d.replace(microsecond=0)
    return d


def difference_between(a: Any, b: Any, precision: str) -> int | Uncertainty | None:
    """CQL ``difference in <precision>s between a and b``: the number of period boundaries crossed (weeks
    start on Sunday). For days and coarser, DateTimes are taken as written (calendar fields, offsets ignored);
    for hours and finer they are normalised to the evaluation offset first. Int, Uncertainty or None."""
    if a is None or b is None or precision is None:
        return None
    a, b = _coerce_pair(a, b)
    unit = normalize_precision(precision)
    _check_unit(a, unit, "Difference")
    try:
        points = [*_bounds(a, aware=True), *_bounds(b, aware=True)]
        if isinstance(a, DateTime):
            if unit in _DATE_UNITS:
                points = [p.replace(tzinfo=None) for p in points]
            else:
                tz = timezone(timedelta(minutes=_offset_minutes(get_default_offset())))
                points = [p.astimezone(tz).replace(tzinfo=None) for p in points]
        alo, ahi, blo, bhi = (_truncate_py(p, unit) for p in points)
        return _uncertain(_whole_between(ahi, blo, unit), _whole_between(alo, bhi, unit))
    except OverflowError:
        return None


def calculate_age_at(birth: Any, as_of: Any, precision: str = YEAR) -> int | Uncertainty | None:
    """CQL ``CalculateAgeIn<precision>sAt(birth, asOf)``: the duration between them. A DateTime birth with a
    Date as-of uses its date; a Date birth with a DateTime as-of becomes a DateTime (known to the day)."""
    if birth is None or as_of is None:
        return None
    if isinstance(as_of, Date) and isinstance(birth, DateTime):
        birth = birth.to_date()
    elif isinstance(as_of, DateTime) and isinstance(birth, Date):
        birth = birth.to_datetime()
    return duration_between(birth, as_of, precision)


def calculate_age(birth: Any, evaluation_timestamp: Any, precision: str = YEAR) -> int | Uncertainty | None:
    """CQL ``CalculateAgeIn<precision>s(birth)``: as of Today() for years and months, Now() otherwise."""
    if birth is None or evaluation_timestamp is None:
        return None
    p = normalize_precision(precision)
    as_of = today(evaluation_timestamp) if p in (YEAR, MONTH) else now(evaluation_timestamp)
    return calculate_age_at(birth, as_of, p)


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------------------------


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _convert_quantity(n: int, unit: str, target: str) -> int:
    """n ``unit`` (finer than ``target``) in whole ``target`` units, truncated toward zero."""
    if target == YEAR and unit == MONTH:
        return _trunc_div(n, 12)
    total_ms = n * _MS[unit]
    if target == YEAR:
        return _trunc_div(total_ms, 365 * _MS_PER_DAY)
    if target == MONTH:
        return _trunc_div(total_ms, 30 * _MS_PER_DAY)
    return _trunc_div(total_ms, _MS[target])


def _shift(v: Temporal, n: int, unit: str) -> Temporal | None:
    """v moved by n ``unit`` (a unit no finer than v's precision); None when out of range."""
    if n == 0:
        return v
    precision = v.precision
    if isinstance(v, Time):
        total = _low(v) - _PyDateTime(*_TIME_ANCHOR)
        ms = (total // timedelta(milliseconds=1) + n * _MS[unit]) % _MS_PER_DAY
        moved = _PyDateTime(*_TIME_ANCHOR) + timedelta(milliseconds=ms)
        return _rebuild(v, _py_fields(moved), precision)
    offset = v.offset if isinstance(v, DateTime) else None
    if unit in (YEAR, MONTH):
        months = n * 12 if unit == YEAR else n
        total = v.year * 12 + ((v.month or 1) - 1) + months
        y, m0 = divmod(total, 12)
        if not 1 <= y <= 9999:
            return None
        fields = {YEAR: y, MONTH: m0 + 1, DAY: v.day or 1, HOUR: 0, MINUTE: 0, SECOND: 0, MILLISECOND: 0}
        fields[DAY] = min(fields[DAY], _days_in_month(y, m0 + 1))
        if isinstance(v, DateTime):
            for name in TIME_FIELDS:
                fields[name] = getattr(v, name) or 0
        return _rebuild(v, fields, precision, offset)
    try:
        moved = _low(v) + timedelta(milliseconds=n * _MS[unit])
    except OverflowError:
        return None
    return _rebuild(v, _py_fields(moved), precision, offset)


def add(value: Any, quantity: Decimal | int | None, unit: str | None) -> Temporal | None:
    """CQL ``value + quantity unit`` for a Date, DateTime or Time and a calendar duration (``year(s) month(s)
    week(s) day(s) hour(s) minute(s) second(s) millisecond(s)`` or UCUM ``a mo wk d h min s ms``)."""
    if value is None or quantity is None or unit is None:
        return None
    if not isinstance(value, _TEMPORAL):
        raise CqlError(f"Cannot add a time quantity to {type(value).__name__}")
    u = normalize_precision(unit)
    if isinstance(value, Time) and u not in _TIME_UNITS:
        raise CqlError(f"Cannot add {u}s to a Time")
    if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)):
        raise CqlError(f"Invalid quantity value {quantity!r}")
    q = Decimal(quantity)
    if u == SECOND and q != q.to_integral_value():
        q, u = q * 1000, MILLISECOND  # fractional seconds are kept as milliseconds
    n = int(q)  # truncates toward zero: decimal portions above seconds are ignored
    if u == WEEK:
        n, u = n * 7, DAY
    precision = value.precision
    if _ORDER[u] > _ORDER[precision]:
        n, u = _convert_quantity(n, u, precision), precision
    moved = _shift(value, n, u)
    if moved is None:  # past year 9999 or before year 1: an error (the conformance suite's DateTimeAddInvalidYears)
        raise CqlError(f"{value} + {n} {u}s is outside the range of years 0001 to 9999")
    return moved


def subtract(value: Any, quantity: Decimal | int | None, unit: str | None) -> Temporal | None:
    """CQL ``value - quantity unit`` (see ``add``)."""
    if value is None or quantity is None or unit is None:
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)):
        raise CqlError(f"Invalid quantity value {quantity!r}")
    return add(value, -quantity, unit)


def _step(value: Any, direction: int) -> Temporal | None:
    if value is None:
        return None
    if not isinstance(value, _TEMPORAL):
        raise CqlError(f"Not a Date, DateTime or Time: {value!r}")
    precision = value.precision
    if isinstance(value, Time):
        ms = (_low(value) - _PyDateTime(*_TIME_ANCHOR)) // timedelta(milliseconds=1) + direction * _MS[precision]
        if not 0 <= ms < _MS_PER_DAY:
            return None
    return _shift(value, direction, precision)


def successor(value: Any) -> Temporal | None:
    """The next value at the value's precision (None past the maximum)."""
    return _step(value, 1)


def predecessor(value: Any) -> Temporal | None:
    """The previous value at the value's precision (None before the minimum)."""
    return _step(value, -1)


# ---------------------------------------------------------------------------------------------------------------
# Components, truncation, Now/Today, limits
# ---------------------------------------------------------------------------------------------------------------


def component(value: Any, name: str) -> Any:
    """CQL ``<component> from value``: ``year`` .. ``millisecond`` (None when not specified),
    ``timezoneoffset`` (Decimal hours; the evaluation offset when none was given), ``date`` (a Date) and
    ``time`` (a Time, None without an hour). Date and time are taken as written, not normalised."""
    if value is None:
        return None
    key = name.strip().lower()
    if key in ("timezoneoffset", "timezone"):
        if not isinstance(value, DateTime):
            raise CqlError(f"timezoneoffset from {type(value).__name__} is not defined")
        return value.effective_offset
    if key == "date":
        if isinstance(value, DateTime):
            return value.to_date()
        if isinstance(value, Date):
            return value
        raise CqlError(f"date from {type(value).__name__} is not defined")
    if key == "time":
        if isinstance(value, DateTime):
            return value.to_time()
        if isinstance(value, Time):
            return value
        raise CqlError(f"time from {type(value).__name__} is not defined")
    p = normalize_precision(key)
    if not isinstance(value, _TEMPORAL) or p not in _names(value):
        raise CqlError(f"{p} from {type(value).__name__} is not defined")
    return getattr(value, p)


def truncate_to(value: Any, precision: str) -> Temporal | None:
    """The value with the components finer than ``precision`` removed (unchanged when already coarser)."""
    if value is None:
        return None
    if not isinstance(value, _TEMPORAL):
        raise CqlError(f"Not a Date, DateTime or Time: {value!r}")
    p = normalize_precision(precision)
    names = _names(value)
    if p not in names:
        if isinstance(value, Date) and p in TIME_FIELDS:
            return value
        raise CqlError(f"Cannot truncate a {type(value).__name__} to {p}")
    if _ORDER[p] >= _ORDER[value.precision]:
        return value
    values = {n: getattr(value, n) for n in names}
    return _rebuild(value, values, p, value.offset if isinstance(value, DateTime) else None)


def now(evaluation_timestamp: Any) -> DateTime | None:
    """CQL Now(): the evaluation request timestamp (a Python datetime, or a DateTime) as a DateTime to the
    millisecond. A naive Python datetime is taken to be in the evaluation offset."""
    ts = evaluation_timestamp
    if ts is None:
        return None
    if isinstance(ts, DateTime):
        return ts
    if not isinstance(ts, _PyDateTime):
        raise CqlError(f"Invalid evaluation timestamp {ts!r}")
    utcoff = ts.utcoffset()
    if utcoff is None:
        offset = get_default_offset()
    else:
        offset = _offset_from_minutes(int(utcoff // timedelta(minutes=1)))
    return DateTime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond // 1000,
                    offset=offset)


def today(evaluation_timestamp: Any) -> Date | None:
    """CQL Today(): the date of the evaluation request timestamp."""
    n = now(evaluation_timestamp)
    return None if n is None else n.to_date()


def time_of_day(evaluation_timestamp: Any) -> Time | None:
    """CQL TimeOfDay(): the time of the evaluation request timestamp."""
    n = now(evaluation_timestamp)
    return None if n is None else n.to_time()


def _type_name(type_: Any) -> str:
    if isinstance(type_, type):
        return type_.__name__
    name = str(type_)
    return name.rsplit("}", 1)[-1].rsplit(".", 1)[-1]


def min_value(type_: Any) -> Temporal:
    """CQL ``minimum Date|DateTime|Time`` (a class, ``'DateTime'``, ``'System.DateTime'`` or an ELM qname)."""
    name = _type_name(type_)
    if name == "Date":
        return Date(1, 1, 1)
    if name == "DateTime":
        return DateTime(1, 1, 1, 0, 0, 0, 0)
    if name == "Time":
        return Time(0, 0, 0, 0)
    raise CqlError(f"No minimum value for {type_!r}")


def max_value(type_: Any) -> Temporal:
    """CQL ``maximum Date|DateTime|Time``."""
    name = _type_name(type_)
    if name == "Date":
        return Date(9999, 12, 31)
    if name == "DateTime":
        return DateTime(9999, 12, 31, 23, 59, 59, 999)
    if name == "Time":
        return Time(23, 59, 59, 999)
    raise CqlError(f"No maximum value for {type_!r}")

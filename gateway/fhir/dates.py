"""FHIR partial dates (date, dateTime, instant) as inclusive UTC ranges.

A value such as ``2024`` or ``2024-03`` stands for the whole period its precision names; search compares
ranges (FHIR R4 search §3.1.1.4.6). Ranges are fixed-width ISO strings in UTC so they sort lexicographically
on every database.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

FMT = "%Y-%m-%dT%H:%M:%S.%f"
MIN = "0001-01-01T00:00:00.000000"
MAX = "9999-12-31T23:59:59.999999"


class DateParseError(ValueError):
    pass


def parse_range(value: str) -> tuple[str, str]:
    """Return the inclusive (low, high) UTC range a FHIR date/dateTime/instant string covers."""
    if isinstance(value, str):
        return _parse_range(value)  # memoised: dates repeat across the resources of a load
    raise DateParseError(f"Invalid FHIR date/dateTime: {value!r}")


@lru_cache(maxsize=1 << 16)
def _parse_range(value: str) -> tuple[str, str]:
    m = _RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise DateParseError(f"Invalid FHIR date/dateTime: {value!r}")
    g = m.groupdict()
    try:
        y = int(g["y"])
        if g["m"] is None:
            lo = datetime(y, 1, 1)
            hi = datetime(y, 12, 31, 23, 59, 59, 999999)
        elif g["d"] is None:
            mo = int(g["m"])
            last = calendar.monthrange(y, mo)[1]
            lo = datetime(y, mo, 1)
            hi = datetime(y, mo, last, 23, 59, 59, 999999)
        else:
            mo, d = int(g["m"]), int(g["d"])
            if g["H"] is None:
                lo = datetime(y, mo, d)
                hi = lo + timedelta(days=1, microseconds=-1)
            else:
                hh = int(g["H"])
                mi = int(g["M"] or 0)
                if g["M"] is None:
                    lo = datetime(y, mo, d, hh)
                    hi = lo + timedelta(hours=1, microseconds=-1)
                elif g["S"] is None:
                    lo = datetime(y, mo, d, hh, mi)
                    hi = lo + timedelta(minutes=1, microseconds=-1)
                else:
                    ss = int(g["S"])
                    frac = g["f"]
                    if frac:
                        us = int((frac + "000000")[:6])
                        lo = datetime(y, mo, d, hh, mi, ss, us)
                        hi = lo if len(frac) >= 6 else lo + timedelta(microseconds=10 ** (6 - len(frac)) - 1)
                    else:
                        lo = datetime(y, mo, d, hh, mi, ss)
                        hi = lo + timedelta(seconds=1, microseconds=-1)
                tz = g["tz"]
                if tz and tz != "Z":
                    sign = 1 if tz[0] == "+" else -1
                    off = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
                    lo, hi = lo - off, hi - off
    except (ValueError, OverflowError) as exc:
        raise DateParseError(f"Invalid FHIR date/dateTime: {value!r} ({exc})") from None
    return lo.strftime(FMT).rjust(26, "0"), hi.strftime(FMT).rjust(26, "0")


def is_valid(value: str) -> bool:
    try:
        parse_range(value)
        return True
    except DateParseError:
        return False


def now_instant() -> str:
    """Current time as a FHIR instant with millisecond precision and explicit UTC offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant_to_http(value: str) -> str:
    """FHIR instant -> RFC 7231 HTTP date (for Last-Modified)."""
    from email.utils import format_datetime

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        dt = datetime.strptime(parse_range(value)[0], FMT).replace(tzinfo=UTC)
    return format_datetime(dt, usegmt=True)

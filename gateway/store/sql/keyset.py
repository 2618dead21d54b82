"""Keyset (seek) paging in SQL: the rows strictly after or before a position in a sort order.

A sort order is a list of (expression, descending) keys with the surrogate key ``pk`` ascending as the
final tiebreaker, so every row has exactly one place. Resources without a value for a sort key (NULL) come
last both ways on PostgreSQL and first ascending, last descending on SQLite (each database's habit, kept
from the search before paging by cursor); ``order`` says so explicitly and the comparisons in ``beyond``
place NULLs identically, so a page sequence walks exactly the order an unpaged search returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, false, or_, true
from sqlalchemy.sql.elements import ColumnElement

from ...search.cursor import PageCursor

Key = tuple[Any, bool]  # (SQL expression, descending)


def nulls_first(dialect: str, desc: bool) -> bool:
    """Whether NULL sort values come first for a key in the forward order of ``dialect``."""
    return dialect != "postgresql" and not desc


def order(keys: Sequence[Key], pk: Any, dialect: str, forward: bool = True) -> list[Any]:
    """ORDER BY clauses walking the order forwards, or backwards (every key and NULL placement reversed)."""
    out: list[Any] = []
    for expr, desc in keys:
        first = nulls_first(dialect, desc)
        d = desc if forward else not desc
        f = first if forward else not first
        col = expr.desc() if d else expr.asc()
        out.append(col.nulls_first() if f else col.nulls_last())
    out.append(pk.asc() if forward else pk.desc())
    return out


def _eq(expr: Any, value: Any) -> ColumnElement[bool]:
    return expr.is_(None) if value is None else expr == value


def _beyond(expr: Any, value: Any, desc: bool, first: bool, after: bool) -> ColumnElement[bool]:
    """Rows whose key ``expr`` comes strictly after (``after``) or before ``value`` in the forward order."""
    if value is None:  # NULLs sit together at one end
        at_start = first
        return expr.is_not(None) if at_start == after else false()
    greater = (expr < value) if desc else (expr > value)
    smaller = (expr > value) if desc else (expr < value)
    if after:
        return or_(greater, expr.is_(None)) if not first else greater
    return or_(smaller, expr.is_(None)) if first else smaller


def beyond(keys: Sequence[Key], pk: Any, cursor: PageCursor, dialect: str) -> ColumnElement[bool]:
    """Rows strictly after (a forward cursor) or before (a backward cursor) the cursor's position."""
    if cursor.pk is None:  # "before the end": every row
        return true()
    after = cursor.forward
    ors: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (expr, desc), value in zip(keys, cursor.keys, strict=True):
        ors.append(and_(*equal, _beyond(expr, value, desc, nulls_first(dialect, desc), after)))
        equal.append(_eq(expr, value))
    ors.append(and_(*equal, pk > cursor.pk if after else pk < cursor.pk))
    return or_(*ors)

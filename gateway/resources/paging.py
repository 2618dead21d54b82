"""Keyset paging of histories: one page of versions around a cursor, and where that page lies.

Searches page inside the store's search (``SqlStore._page``); histories page here, on the store's
``history`` with a cursor, asking one row more than the page holds to learn whether rows lie beyond.
"""

from __future__ import annotations

from ..search.cursor import CursorCodec, history_scope
from ..store.base import HistoryEntry, ResourceStore
from .bundles import PageSpan


def history_page(store: ResourceStore, cursors: CursorCodec, rtype: str | None, rid: str | None, since: str | None,
                 count: int, offset: int, token: str | None) -> tuple[list[HistoryEntry], int, PageSpan]:
    """Up to ``count`` versions newest first — from the ``_cursor`` token when one was sent (400 when it is
    not one this server made for this history), else from ``offset`` — their total, and the page's span
    for its links."""
    cursor = cursors.decode(token, history_scope(rtype, rid), 1) if token is not None else None
    entries, total = store.history(rtype, rid, since, count + 1, offset, cursor=cursor)
    more = len(entries) > count
    forward = cursor is None or cursor.forward
    if more:
        entries = entries[:count] if forward else entries[len(entries) - count:]
    if forward:
        more_before, more_after = cursor is not None or offset > 0, more
    else:
        more_before, more_after = more, cursor is not None and cursor.pk is not None
    first = ((entries[0].stored.last_updated,), entries[0].pk) if entries else None
    last = ((entries[-1].stored.last_updated,), entries[-1].pk) if entries else None
    return entries, total, PageSpan(token, offset, first, last, more_before, more_after)

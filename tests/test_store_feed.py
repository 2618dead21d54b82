"""The history change feed and the one-process lease of the store (`store/sql/feed.py`), which the
Subscription notifier uses instead of its own SQL; on SQLite and PostgreSQL."""

from __future__ import annotations

from gateway.store.sql.feed import ChangeFeed
from gateway.store.sql.store import SqlStore


def _group(gid: str, name: str) -> dict[str, object]:
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "name": name}


def test_feed_lists_changes_in_order_and_counts_versions(store: SqlStore) -> None:
    feed = ChangeFeed(store)
    start = feed.head()
    with store.session() as s:
        s.write(_group("g1", "one"), "PUT")
    with store.session() as s:
        s.write(_group("g1", "two"), "PUT")
        s.write(_group("g2", "other"), "PUT")
    with store.session() as s:
        s.write({"resourceType": "Patient", "id": "p1"}, "PUT")
    changes = feed.after(start, ("Group",), 10)
    assert [(t, i, v) for _, t, i, v in changes] == [("Group", "g1", 1), ("Group", "g1", 2), ("Group", "g2", 1)]
    assert [pk for pk, *_ in changes] == sorted(pk for pk, *_ in changes)
    assert feed.head() > changes[-1][0]  # the Patient row came after: head is the newest row of any type
    assert feed.after(start, ("Group",), 2) == changes[:2]
    assert feed.after(changes[-1][0], ("Group",), 10) == []
    first = feed.first("Group", "g1")
    assert first == changes[0][0] and feed.first("Group", "missing") == 0
    assert feed.versions("Group", "g1", first) == 1  # the second version, after the first row
    assert feed.versions("Group", "g1", 0) == 2
    assert feed.versions("Group", "g1", 0, upto=changes[0][0]) == 1


def test_one_holder_of_a_lease_at_a_time(store: SqlStore) -> None:
    a, b = ChangeFeed(store), ChangeFeed(SqlStore(store.url, migrate=False))
    try:
        held = a.try_lease(7431999, "feed-test")
        assert held is not None
        assert b.try_lease(7431999, "feed-test") is None  # another process (its own connections) must wait
        held.release()
        again = b.try_lease(7431999, "feed-test")
        assert again is not None
        again.release()
    finally:
        b.store.close()

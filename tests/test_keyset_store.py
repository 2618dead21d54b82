"""Keyset paging inside the server: ``search_all`` (measure selection, ``$care-gaps`` and ``$collect-data``
subjects) pages by position, so resources deleted meanwhile shift nothing (SQLite and PostgreSQL stores)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.deqm import measure_select
from gateway.search.query import SearchQuery
from gateway.store.base import SearchResult
from gateway.store.sql.store import SqlStore


class DeletingStore:
    """The store, with another writer deleting the first two resources of the first page once it was read."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.calls = 0

    def search(self, q: SearchQuery) -> SearchResult:
        result = self.inner.search(q)
        self.calls += 1
        if self.calls == 1:
            with self.inner.session() as s:
                for m in result.matches[:2]:
                    s.delete(m.resource_type, m.id)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_search_all_returns_every_match_while_others_delete(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure_select, "PAGE", 10)
    with store.session() as s:
        for i in range(35):
            s.write({"resourceType": "Patient", "id": f"ks-{i:02d}", "gender": "female"}, "PUT")
    deleting = DeletingStore(store)
    found = [p["id"] for p in measure_select.search_all(deleting, "http://x/fhir", "Patient",  # type: ignore[arg-type]
                                                         [("gender", "female")])]
    assert deleting.calls == 4
    assert found == [f"ks-{i:02d}" for i in range(35)]  # the two deleted had been read already: nothing skipped

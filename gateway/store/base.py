"""The ResourceStore protocol: what services need from persistence, nothing about SQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..search.query import SearchQuery


@dataclass(frozen=True)
class StoredResource:
    resource_type: str
    id: str
    version: int
    last_updated: str  # FHIR instant
    content: bytes | None  # JSON of the resource with meta filled; None for a delete
    deleted: bool = False

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True)
class HistoryEntry:
    stored: StoredResource
    method: str  # POST PUT DELETE PATCH


@dataclass
class SearchResult:
    matches: list[StoredResource] = field(default_factory=list)
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None


class Session(Protocol):
    """Operations inside one atomic unit of work."""

    def read(self, resource_type: str, id: str) -> StoredResource | None: ...
    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...
    def write(self, resource: dict[str, Any], method: str, expected_version: int | None = None) -> StoredResource: ...
    def write_encoded(self, items: list[Any], method: str = "PUT") -> list[str]: ...
    def delete(self, resource_type: str, id: str) -> StoredResource | None: ...
    def search(self, query: SearchQuery) -> SearchResult: ...
    def exists(self, resource_type: str, id: str) -> bool: ...


class ResourceStore(Protocol):
    def session(self) -> AbstractContextManager[Session]: ...
    def read(self, resource_type: str, id: str) -> StoredResource | None: ...
    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...
    def search(self, query: SearchQuery) -> SearchResult: ...
    def history(self, resource_type: str | None, id: str | None, since: str | None, count: int,
                offset: int) -> tuple[list[HistoryEntry], int]: ...
    def iter_current(self, resource_type: str | None = None) -> Iterator[StoredResource]: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...

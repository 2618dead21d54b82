"""The ResourceStore protocol: what services need from persistence, nothing about SQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..search.cursor import PageCursor
from ..search.query import SearchQuery

if TYPE_CHECKING:
    from .encoded import Encoded


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

    @property
    def body(self) -> bytes:
        """The JSON of a version that is not a deletion. Callers that read current resources use it instead
        of ``content``, whose None (a deletion) they have already ruled out."""
        if self.content is None:
            raise ValueError(f"{self.resource_type}/{self.id} version {self.version} is a deletion")
        return self.content


@dataclass(frozen=True)
class IndexScope:
    """A narrowing of one resource type to what its search index says: the resources holding one of the code
    values of a token parameter (any system), or declaring one of the profiles in meta.profile (with or
    without a ``|version``). A population run's read-ahead uses it to skip resources no Retrieve of the
    measure could return (``gateway/cql/retrieve_scope.py``)."""

    tokens: tuple[tuple[str, tuple[str, ...]], ...]  # (token search parameter, code values)
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    stored: StoredResource
    method: str  # POST PUT DELETE PATCH
    pk: int = 0  # the history row's surrogate key: with lastUpdated, its place in the history order


# a row's place in a sort order for keyset paging: its sort key values and its surrogate key
Position = tuple[tuple[Any, ...], int]


@dataclass
class SearchResult:
    matches: list[StoredResource] = field(default_factory=list)
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    # keyset paging: where the page starts and ends in the sort order, and whether matches lie beyond
    first_position: Position | None = None
    last_position: Position | None = None
    more_before: bool = False
    more_after: bool = False


class Session(Protocol):
    """Operations inside one atomic unit of work: everything written through one session commits together
    when its context ends without an error, and nothing of it does otherwise."""

    def read(self, resource_type: str, id: str) -> StoredResource | None: ...
    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...
    def write(self, resource: dict[str, Any], method: str, expected_version: int | None = None,
              known_new: bool = False) -> StoredResource: ...
    def write_encoded(self, items: list[Encoded], method: str = "PUT") -> list[str]: ...
    def delete(self, resource_type: str, id: str) -> StoredResource | None: ...
    def search(self, query: SearchQuery) -> SearchResult: ...
    def exists(self, resource_type: str, id: str) -> bool: ...
    def flush(self) -> None: ...
    def claim(self, key: str) -> None: ...


class ResourceStore(Protocol):
    """What services need from persistence: versioned resources, their history and search, nothing about
    SQL. ``url`` names the store so another process can open it again (population runs in worker
    processes)."""

    url: str

    def session(self) -> AbstractContextManager[Session]: ...
    def read(self, resource_type: str, id: str) -> StoredResource | None: ...
    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...
    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, StoredResource]: ...
    def search(self, query: SearchQuery) -> SearchResult: ...
    def history(self, resource_type: str | None, id: str | None, since: str | None, count: int,
                offset: int, at: str | None = None, cursor: PageCursor | None = None
                ) -> tuple[list[HistoryEntry], int]: ...
    def iter_current(self, resource_type: str | None = None, batch: int = 500) -> Iterator[StoredResource]: ...
    def compartment_contents(self, patient_ids: list[str], types: dict[str, tuple[str, ...]],
                             scopes: dict[str, IndexScope] | None = None
                             ) -> dict[str, list[tuple[str, int, bytes]]]: ...
    def count(self, resource_type: str | None = None) -> int: ...
    def change_stamp(self, resource_type: str) -> tuple[int, str]: ...
    def analyze(self, tables: list[str] | None = None) -> None: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...

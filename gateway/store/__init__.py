"""Resource store: the ResourceStore protocol and its implementations."""

from .base import ResourceStore, StoredResource, SearchResult, HistoryEntry  # noqa: F401

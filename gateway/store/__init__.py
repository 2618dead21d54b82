"""Resource store: the ResourceStore protocol and its implementations."""

from .base import HistoryEntry, ResourceStore, SearchResult, StoredResource  # noqa: F401

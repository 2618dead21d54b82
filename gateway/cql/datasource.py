"""Data port of the engine: the patient data a Retrieve reads.

``DataSource.retrieve(data_type)`` returns the resources of one FHIR type for the patient in context (the
engine filters by codes and dates itself, through the terminology port); sources may push the filters down
(``codes``, ``valueset``, ``date_range``) where that is cheaper, and must then return a superset of the exact
answer, never less. ``BundleDataSource`` serves a list of resources from memory, indexed by type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class DataSource(Protocol):
    def retrieve(self, data_type: str, *, codes: Any = None, valueset: str | None = None,
                 date_range: Any = None) -> list[dict[str, Any]]: ...

    def patient(self) -> dict[str, Any] | None: ...


class BundleDataSource:
    """Resources of one patient (or of a population, for unfiltered use), indexed by resource type."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            if isinstance(r, dict) and r.get("resourceType"):
                self.by_type.setdefault(r["resourceType"], []).append(r)

    def retrieve(self, data_type: str, *, codes: Any = None, valueset: str | None = None,
                 date_range: Any = None) -> list[dict[str, Any]]:
        return self.by_type.get(data_type, [])

    def patient(self) -> dict[str, Any] | None:
        patients = self.by_type.get("Patient") or []
        return patients[0] if patients else None

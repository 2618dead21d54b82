"""Helpers for the mapping tests: run an ingest into a store, count and read back what it stored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from gateway.ingest.service import Ingestor, IngestSummary
from gateway.resources.rest import RestService, resource_json
from tests.conftest import BASE, SHARED

INTERNAL = SHARED / "testdata" / "internal"
RES_TYPES = ("Patient", "Coverage", "Organization", "Practitioner", "ExplanationOfBenefit", "Encounter",
             "Condition", "Procedure", "Observation", "MedicationDispense", "MedicationRequest", "Immunization")


def ingest(store: Any, fmt: str, *paths: Path) -> IngestSummary:
    return Ingestor(RestService(store, BASE), fmt).ingest(list(paths))


def counts(store: Any) -> Counter[str]:
    rest = RestService(store, BASE)
    out: Counter[str] = Counter()
    for t in RES_TYPES:
        _q, res = rest.search(t, [("_summary", "count")])
        if res.total:
            out[t] = res.total
    return out


def read(store: Any, rtype: str, rid: str) -> dict[str, Any]:
    return resource_json(RestService(store, BASE).read(rtype, rid))


def search(store: Any, rtype: str, **params: str) -> list[dict[str, Any]]:
    _q, res = RestService(store, BASE).search(rtype, [*params.items(), ("_count", "1000")])
    return [resource_json(m) for m in res.matches]

"""Extract FHIR data from the store into the internal relational schema (members, coverage, claims, claim lines,
diagnoses, procedures, lab results, medications, providers), following mappings/internal.outbound.yaml."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..mapping.outbound import OutboundSpec, load_outbound, rows_for

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore

CHUNK = 500


@dataclass
class ExtractSummary:
    resources: int = 0
    rows: int = 0
    by_table: dict[str, int] = field(default_factory=dict)


def extract_internal(store: SqlStore, target_url: str | None = None, spec: OutboundSpec | None = None,
                     progress: Callable[[int], None] | None = None) -> ExtractSummary:
    from ..store.sql.internal import internal_engine, iter_resources, write_rows

    spec = spec or load_outbound()
    engine = internal_engine(target_url) if target_url else store.engine
    summary = ExtractSummary()
    batch: list[tuple[str, dict[str, list[dict[str, Any]]]]] = []
    for res in iter_resources(store, spec.resource_types):
        tables = rows_for(spec, res)
        batch.append((res["id"], tables))
        summary.resources += 1
        for name, rows in tables.items():
            summary.by_table[name] = summary.by_table.get(name, 0) + len(rows)
        if len(batch) >= CHUNK:
            summary.rows += write_rows(engine, batch)
            (progress or (lambda n: None))(len(batch))
            batch = []
    summary.rows += write_rows(engine, batch)
    (progress or (lambda n: None))(len(batch))
    if target_url:
        engine.dispose()
    return summary

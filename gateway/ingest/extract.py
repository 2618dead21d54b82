"""Extract FHIR data from the store into the internal relational schema (members, coverage, claims, claim lines,
diagnoses, procedures, lab results, medications, providers), following mappings/internal.outbound.yaml.

A resource the mapping cannot turn into rows, or whose rows the database refuses, is a reported reject (type, id,
reason); the other resources are extracted all the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from ..mapping.outbound import OutboundSpec, load_outbound, rows_for
from ..mapping.spec import SpecError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..store.sql.store import SqlStore

CHUNK = 500

Batch = list[tuple[str, dict[str, list[dict[str, Any]]]]]


@dataclass
class ExtractReject:
    """A resource that was not extracted, and why."""

    resource: str  # "Type/id"
    reason: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.reason}"


@dataclass
class ExtractSummary:
    resources: int = 0
    rows: int = 0
    by_table: dict[str, int] = field(default_factory=dict)
    rejects: list[ExtractReject] = field(default_factory=list)


def extract_internal(store: SqlStore, target_url: str | None = None, spec: OutboundSpec | None = None,
                     progress: Callable[[int], None] | None = None) -> ExtractSummary:
    """Replace the internal rows of every stored resource the outbound mapping covers; rejects are listed in the
    summary rather than raised, so one odd resource never stops an extract."""
    from ..store.sql.internal import internal_engine, iter_resources

    spec = spec or load_outbound()
    engine = internal_engine(target_url) if target_url else store.engine
    summary = ExtractSummary()
    batch: Batch = []
    names: dict[str, str] = {}  # fhir id -> "Type/id" of the batch, for rejects
    tick = progress or (lambda n: None)
    for res in iter_resources(store, spec.resource_types):
        ref = f"{res.get('resourceType')}/{res.get('id')}"
        try:
            tables = rows_for(spec, res)
        except (SpecError, KeyError, TypeError, ValueError, AttributeError) as exc:
            summary.rejects.append(ExtractReject(ref, f"cannot be mapped to internal rows ({exc})"))
            continue
        batch.append((res["id"], tables))
        names[res["id"]] = ref
        if len(batch) >= CHUNK:
            _write(engine, batch, names, summary)
            tick(len(batch))
            batch, names = [], {}
    _write(engine, batch, names, summary)
    tick(len(batch))
    if target_url:
        engine.dispose()
    return summary


def _write(engine: Engine, batch: Batch, names: dict[str, str], summary: ExtractSummary) -> None:
    """Writes a batch in one transaction; when the database refuses it, resource by resource, so only the rows of
    the resources it refuses are missing (and reported)."""
    from ..store.sql.internal import write_rows

    if not batch:
        return
    try:
        written = write_rows(engine, batch)
    except SQLAlchemyError:
        written = 0
        for item in batch:
            try:
                n = write_rows(engine, [item])
            except SQLAlchemyError as exc:
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                summary.rejects.append(ExtractReject(names.get(item[0], item[0]),
                                                     f"rows refused by the database ({reason})"))
                continue
            written += n
            _count(summary, [item])
        summary.rows += written
        return
    summary.rows += written
    _count(summary, batch)


def _count(summary: ExtractSummary, batch: Batch) -> None:
    for _id, tables in batch:
        summary.resources += 1
        for name, rows in tables.items():
            summary.by_table[name] = summary.by_table.get(name, 0) + len(rows)

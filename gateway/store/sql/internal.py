"""Write extracted rows into the internal schema (gateway/store/sql/internal_tables.py), in the gateway database
or a separate one. A resource's earlier rows are deleted first, so extracting twice changes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select

from .internal_tables import INTERNAL_TABLES
from .store import SqlStore, make_engine
from .tables import RESOURCE

# the column naming the resource a row came from, per table
OWNER = {"internal_claim_line": "claim_fhir_id", "internal_diagnosis": "owner_fhir_id"}


def internal_engine(url: str) -> Engine:
    engine = make_engine(url)
    from sqlmodel import SQLModel

    SQLModel.metadata.create_all(engine, tables=list(INTERNAL_TABLES.values()))
    return engine


def iter_resources(store: SqlStore, types: Iterable[str], batch: int = 500) -> Iterator[dict[str, Any]]:
    """Current, not deleted, resources of the given types, straight from the store's resource table."""
    for rtype in types:
        last = 0
        while True:
            with store.engine.connect() as conn:
                rows = conn.execute(select(RESOURCE.c.pk, RESOURCE.c.content).where(
                    RESOURCE.c.res_type == rtype, RESOURCE.c.deleted.is_(False), RESOURCE.c.pk > last)
                    .order_by(RESOURCE.c.pk).limit(batch)).all()
            if not rows:
                break
            last = rows[-1][0]
            for _pk, content in rows:
                yield orjson.loads(content)


def write_rows(engine: Engine, per_resource: list[tuple[str, dict[str, list[dict[str, Any]]]]]) -> int:
    """Replace the rows of each (fhir id, rows by table); returns the number of rows written."""
    written = 0
    with engine.begin() as conn:
        for fhir_id, tables in per_resource:
            for name, rows in tables.items():
                t = INTERNAL_TABLES[name]
                key = OWNER.get(name, "fhir_id")
                owner_ids = {r.get(key) for r in rows} | ({fhir_id} if name in OWNER else set())
                conn.execute(delete(t).where(t.c[key].in_([i for i in owner_ids if i])))
                if rows:
                    conn.execute(insert(t), rows)
                    written += len(rows)
    return written


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for t in INTERNAL_TABLES.values():
            conn.execute(delete(t))

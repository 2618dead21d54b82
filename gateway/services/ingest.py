"""Ingest internal records (claims feeds, clinical extracts, HL7 v2 messages) through a mapping file into the
store. Every resource is validated before anything of its unit is written; a unit (what one record or one claim
becomes) is written in one database transaction with the others of its chunk, and alone when its chunk fails,
so a bad record never leaves half of itself behind and never stops the rest of the file.

Ids are stable (derived from source keys by the mapping file) and resources are written as updates, so loading
the same input again changes no counts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..fhir.errors import FhirError
from ..fhir.shapes import ShapeCache
from ..mapping.engine import Engine, Unit
from ..mapping.readers import read_input
from ..mapping.records import Reject
from ..mapping.spec import MappingSpec, find_spec
from .rest import RestService

CHUNK = 200


@dataclass
class IngestSummary:
    format: str
    mapping_version: str
    files: int = 0
    records: int = 0
    units: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # already stored with the same content: no new version
    rejects: list[Reject] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def resources(self) -> int:
        return self.created + self.updated + self.unchanged

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "mappingVersion": self.mapping_version, "files": self.files,
                "recordsRead": self.records, "resourcesCreated": self.created, "resourcesUpdated": self.updated,
                "resourcesUnchanged": self.unchanged,
                "resourcesByType": dict(sorted(self.by_type.items())),
                "rejected": [{"where": r.where, "reason": r.reason, **({"field": r.field} if r.field else {})}
                             for r in self.rejects]}


class Ingestor:
    def __init__(self, rest: RestService, spec: MappingSpec | str, level: str = "strict",
                 progress: Callable[[int], None] | None = None) -> None:
        self.rest = rest
        self.spec = find_spec(spec) if isinstance(spec, str) else spec
        self.level = level
        self.progress = progress or (lambda n: None)
        # resources shared by many records (a payer, a provider, a member) are validated and written once per
        # run when their content repeats: content hash by (type, id)
        self._seen: dict[tuple[str, str], bytes] = {}
        self._shapes = ShapeCache()  # resources rendered from one template share their structure

    def ingest(self, paths: Iterable[Path]) -> IngestSummary:
        summary = IngestSummary(self.spec.format, self.spec.version)
        read = read_input(self.spec, list(paths))
        summary.files, summary.records = read.files, read.read
        summary.rejects.extend(read.rejects)
        batch: list[Unit] = []
        for unit in Engine(self.spec).run(read.records, summary.rejects):
            good = self._validate(unit, summary)
            if good is None:
                continue
            batch.append(good)
            if len(batch) >= CHUNK:
                self._write(batch, summary)
                batch = []
        self._write(batch, summary)
        return summary

    def _validate(self, unit: Unit, summary: IngestSummary) -> Unit | None:
        fresh = []
        for res in unit.resources:
            key = (res["resourceType"], str(res.get("id")))
            digest = hashlib.sha1(orjson.dumps(res, option=orjson.OPT_SORT_KEYS)).digest()
            if self._seen.get(key) == digest:
                continue  # the same content was already validated and written in this run
            fresh.append((key, digest, res))
        for _key, _digest, res in fresh:
            if res["resourceType"] != "Group" and self._shapes.passes(res):
                continue  # a shape validated in full before, every value checked against its element's type
            try:
                warnings = self.rest.validate(res, None, self.level)
            except FhirError as exc:
                summary.rejects.append(Reject(unit.where, f"{unit.entity}: mapped {res.get('resourceType')}/"
                                              f"{res.get('id')} is not valid: {exc.diagnostics}"))
                return None
            if not warnings and res["resourceType"] != "Group":
                self._shapes.learn(res)
        return Unit(unit.entity, unit.where, [r for _k, _d, r in fresh], unit.lines)

    def _write(self, units: list[Unit], summary: IngestSummary) -> None:
        if not units:
            return
        try:
            self._store(units)
        except FhirError:
            for u in units:  # one unit spoiled the chunk's transaction: store one by one to keep the good ones
                try:
                    self._store([u])
                except FhirError as exc:
                    summary.rejects.append(Reject(u.where, f"{u.entity}: not stored: {exc.diagnostics}"))
                    continue
                self._count([u], summary)
            return
        self._count(units, summary)

    def _store(self, units: list[Unit]) -> None:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for u in units:
            for r in u.resources:
                latest[(r["resourceType"], r["id"])] = r  # the same Practitioner may come with many claims
        with self.rest.store.session() as tx:
            status = tx.write_many(list(latest.values()), "PUT")
        self._pending = (status.count("created"), status.count("updated"), status.count("unchanged"), latest)

    def _count(self, units: list[Unit], summary: IngestSummary) -> None:
        created, updated, unchanged, latest = self._pending
        for key, res in latest.items():  # stored: the same content later in this run needs no second write
            self._seen[key] = hashlib.sha1(orjson.dumps(res, option=orjson.OPT_SORT_KEYS)).digest()
        summary.created += created
        summary.updated += updated
        summary.unchanged += unchanged
        summary.units += len(units)
        for rtype, _id in latest:
            summary.by_type[rtype] = summary.by_type.get(rtype, 0) + 1
        self.progress(sum(u.lines for u in units))

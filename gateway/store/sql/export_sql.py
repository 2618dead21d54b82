"""Streaming reads for Bulk Data export: the stored JSON of each selected resource, in primary-key order.

Every selection is one SQL statement per resource type, keyed on ``pk > after`` so an interrupted export
resumes exactly where its last complete file ended. Rows are streamed (server-side cursor on PostgreSQL),
never collected, so memory stays flat whatever the size of the group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, false, func, null, or_, select, true, union
from sqlalchemy.sql.elements import ColumnElement

from ...search.query import SearchQuery
from .tables import IDX, RESOURCE

REFS = IDX["refs"]
# resources outside the Patient compartment that a group or patient export adds when members' data
# (or the group itself) reference them
REFERENCED_TYPES = ("PractitionerRole", "Practitioner", "Organization", "Location")
LARGE = 1 << 20  # resources above this many bytes of JSON are read in pieces
CHUNK = 1 << 20


@dataclass
class Scope:
    """Which patients an export covers: all (system level), every Patient, or a Group's members."""

    level: str  # system | patient | group
    group_pk: int | None = None
    patients: list[str] | None = None  # the `patient` parameter: only these (already checked) ids
    since: str | None = None  # FHIR instants normalised to the stored lastUpdated format
    until: str | None = None
    filters: dict[str, list[SearchQuery]] = field(default_factory=dict)  # _typeFilter per type


class ExportSource:
    def __init__(self, store: Any, compartment: dict[str, tuple[str, ...]]) -> None:
        self.store = store
        self.compartment = compartment

    # -- patient sets ------------------------------------------------------------------------------------
    def _member_ids(self, scope: Scope) -> Any:
        """A sub-select of the Patient ids in scope (None: every Patient)."""
        if scope.level == "group":
            sel = select(REFS.c.target_id).where(REFS.c.res_pk == scope.group_pk, REFS.c.param == "member",
                                                 REFS.c.target_type == "Patient")
            if scope.patients is not None:
                sel = sel.where(REFS.c.target_id.in_(scope.patients))
            return sel
        if scope.patients is not None:
            return select(RESOURCE.c.res_id).where(RESOURCE.c.res_type == "Patient",
                                                   RESOURCE.c.res_id.in_(scope.patients))
        return None

    def _compartment_pks(self, rtype: str, members: Any) -> Any:
        params = self.compartment.get(rtype, ())
        sel = select(REFS.c.res_pk).where(REFS.c.res_type == rtype, REFS.c.param.in_(params),
                                          REFS.c.target_type == "Patient")
        if members is not None:
            sel = sel.where(REFS.c.target_id.in_(members))
        return sel

    def _source_pks(self, scope: Scope, members: Any) -> Any:
        """Resources whose references pull in Practitioners, Organizations…: members' data and the group.

        A UNION of index lookups (no scan of the resource table): the resources referencing a member, the
        members' own Patient rows, and the group. Index rows of deleted resources are gone already."""
        refs_to_members = select(REFS.c.res_pk).where(REFS.c.target_type == "Patient")
        patients = select(RESOURCE.c.pk).where(RESOURCE.c.res_type == "Patient")
        if members is not None:
            refs_to_members = refs_to_members.where(REFS.c.target_id.in_(members))
            patients = patients.where(RESOURCE.c.res_id.in_(members))
        parts = [refs_to_members, patients]
        if scope.group_pk is not None:
            parts.append(select(RESOURCE.c.pk).where(RESOURCE.c.pk == scope.group_pk))
        return union(*parts)

    def selection(self, rtype: str, scope: Scope) -> list[ColumnElement[bool]]:
        """The WHERE clause choosing the current resources of ``rtype`` that the export covers."""
        conds: list[ColumnElement[bool]] = [RESOURCE.c.res_type == rtype, RESOURCE.c.deleted == false()]
        if scope.level != "system":
            members = self._member_ids(scope)
            if rtype == "Patient":
                if members is not None:
                    conds.append(RESOURCE.c.res_id.in_(members))
            elif rtype == "Group" and scope.level == "group":
                conds.append(RESOURCE.c.pk == scope.group_pk)  # the exported group, not others members share
            elif rtype in self.compartment:
                conds.append(RESOURCE.c.pk.in_(self._compartment_pks(rtype, members)))
            elif rtype in REFERENCED_TYPES:
                sources = self._source_pks(scope, members).subquery()
                src = select(sources.c[0])
                if rtype != "PractitionerRole":  # one more hop: the roles' practitioners, organizations…
                    roles = select(REFS.c.target_id).where(REFS.c.res_pk.in_(src),
                                                           REFS.c.target_type == "PractitionerRole")
                    role_pks = select(RESOURCE.c.pk).where(RESOURCE.c.res_type == "PractitionerRole",
                                                           RESOURCE.c.res_id.in_(roles))
                    src = union(src, role_pks)
                targets = select(REFS.c.target_id).where(REFS.c.res_pk.in_(src), REFS.c.target_type == rtype)
                conds.append(RESOURCE.c.res_id.in_(targets))
            else:
                conds.append(false())
        if scope.since:
            conds.append(RESOURCE.c.last_updated > scope.since)
        if scope.until:
            conds.append(RESOURCE.c.last_updated <= scope.until)
        queries = scope.filters.get(rtype)
        if queries:
            comp = self.store.compiler
            conds.append(or_(*[and_(*comp.where(rtype, q.criteria)) for q in queries]))
        return conds

    def stream(self, rtype: str, scope: Scope, after: int = 0, batch: int = 2000) -> Iterator[Any]:
        """(pk, res_type, res_id, content, length) rows as the driver returns them (no object per row).

        ``content`` is None for a resource larger than LARGE bytes (a Group of 100,000 members is about 60 MB):
        its JSON is then read in pieces with ``chunks``, so no single row's size sets the memory use."""
        length = func.length(RESOURCE.c.content)
        stmt = (select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id,
                       case((length <= LARGE, RESOURCE.c.content), else_=null()), length)
                .where(*self.selection(rtype, scope), RESOURCE.c.pk > after).order_by(RESOURCE.c.pk))
        with self.store.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
            yield from result

    def chunks(self, pk: int, length: int, size: int | None = None) -> Iterator[bytes]:
        """The stored JSON of one resource, ``size`` bytes at a time. SQLite reads the BLOB incrementally;
        PostgreSQL takes slices (each slice de-toasts the value on the server, so slices there are larger)."""
        with self.store.engine.connect() as conn:
            if self.store.dialect == "sqlite":
                raw = conn.connection.driver_connection
                with raw.blobopen("resource", "content", pk, readonly=True) as blob:
                    while piece := blob.read(size or CHUNK):
                        yield piece
                return
            step = size or CHUNK * 2
            for start in range(1, length + 1, step):
                yield conn.execute(select(func.substr(RESOURCE.c.content, start, step))
                                   .where(RESOURCE.c.pk == pk)).scalar_one()

    def deleted(self, rtype: str, scope: Scope, after: int = 0) -> Iterator[Any]:
        """Tombstones changed since ``_since`` (system and patient level, and a group's own members)."""
        if not scope.since:
            return
        conds = [RESOURCE.c.res_type == rtype, RESOURCE.c.deleted == true(), RESOURCE.c.last_updated > scope.since,
                 RESOURCE.c.pk > after]
        if scope.until:
            conds.append(RESOURCE.c.last_updated <= scope.until)
        if scope.level != "system":
            if rtype != "Patient":
                return
            members = self._member_ids(scope)
            if members is not None:
                conds.append(RESOURCE.c.res_id.in_(members))
        stmt = select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id).where(*conds).order_by(RESOURCE.c.pk)
        with self.store.engine.connect() as conn:
            for r in conn.execution_options(stream_results=True, yield_per=2000).execute(stmt):
                yield (r[0], r[1], r[2], b"", 0)

    def pk_of(self, rtype: str, rid: str) -> int | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(RESOURCE.c.pk).where(RESOURCE.c.res_type == rtype, RESOURCE.c.res_id == rid,
                                                           RESOURCE.c.deleted == false())).first()
        return row[0] if row else None

    def group_member_ids(self, group_pk: int, candidates: list[str]) -> set[str]:
        """Which of ``candidates`` are members of the group (bounded by the size of ``candidates``)."""
        if not candidates:
            return set()
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(REFS.c.target_id).where(
                REFS.c.res_pk == group_pk, REFS.c.param == "member", REFS.c.target_type == "Patient",
                REFS.c.target_id.in_(candidates))).all()
        return {r[0] for r in rows}

    def existing_patients(self, candidates: list[str]) -> set[str]:
        if not candidates:
            return set()
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(RESOURCE.c.res_id).where(
                RESOURCE.c.res_type == "Patient", RESOURCE.c.deleted == false(),
                RESOURCE.c.res_id.in_(candidates))).all()
        return {r[0] for r in rows}

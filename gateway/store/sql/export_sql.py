"""Streaming reads for Bulk Data export: the stored JSON of each selected resource, in primary-key order.

Every selection is one SQL statement per resource type, keyed on ``pk > after`` so an interrupted export
resumes exactly where its last complete file ended. Rows are streamed (server-side cursor on PostgreSQL),
never collected, so memory stays flat whatever the size of the group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, bindparam, case, false, func, null, or_, select, true, union, union_all
from sqlalchemy.sql.elements import ColumnElement

from ...search.query import SearchQuery
from .tables import HISTORY, IDX, RESOURCE

if TYPE_CHECKING:
    from .store import SqlStore

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
    excluded: list[str] = field(default_factory=list)  # patient ids left out (Provider Access opt-outs)
    since: str | None = None  # FHIR instants normalised to the stored lastUpdated format
    until: str | None = None
    filters: dict[str, list[SearchQuery]] = field(default_factory=dict)  # _typeFilter per type
    associated: str | None = None  # includeAssociatedData: "latest" or "relevant" Provenance
    associated_of: list[str] = field(default_factory=list)  # the exported types whose Provenance goes along
    provenance_requested: bool = True  # Provenance is also one of the requested types in its own right
    providers: dict[str, set[str]] | None = None  # provider ids referenced by the covered data, found once


class ExportSource:
    def __init__(self, store: SqlStore, compartment: dict[str, tuple[str, ...]]) -> None:
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
            if scope.excluded:
                sel = sel.where(REFS.c.target_id.not_in(scope.excluded))
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

    def _referenced(self, rtype: str, scope: Scope, members: Any) -> Any:
        """The ids of ``rtype`` (a provider type) that the members' data or the group reference: a bound list,
        looked up once per export for all provider types (two index passes instead of one per type)."""
        if scope.providers is None:
            scope.providers = self._provider_ids(scope, members)
        return bindparam(f"providers_{rtype}", sorted(scope.providers.get(rtype, ())), expanding=True,
                         literal_execute=True)  # inline values: no limit on the number of bound variables

    def _provider_ids(self, scope: Scope, members: Any) -> dict[str, set[str]]:
        """Provider (type, id)s referenced by the group, by the covered Patients, or by any resource that
        references a covered Patient, plus what the PractitionerRoles among them reference.

        The last, costly part is driven from the distinct providers (a covering index scan) with one witness
        looked up per provider, rather than from every resource of every member: the work grows with the
        number of providers, not with the members' data."""
        providers = (select(REFS.c.target_type.label("t"), REFS.c.target_id.label("i")).distinct()
                     .where(REFS.c.target_type.in_(REFERENCED_TYPES)).subquery())
        r2, r1 = REFS.alias("r2"), REFS.alias("r1")
        named = and_(r2.c.target_type == providers.c.t, r2.c.target_id == providers.c.i)
        by_data = select(r2.c.pk).join(r1, r1.c.res_pk == r2.c.res_pk).where(named, r1.c.target_type == "Patient")
        patients = select(RESOURCE.c.pk).where(RESOURCE.c.res_type == "Patient")  # keys from the (type, id) index
        if members is not None:
            by_data = by_data.where(r1.c.target_id.in_(members))
            patients = patients.where(RESOURCE.c.res_id.in_(members))
        by_patient = (select(REFS.c.target_type, REFS.c.target_id).distinct()
                      .where(REFS.c.res_type == "Patient", REFS.c.res_pk.in_(patients),
                             REFS.c.target_type.in_(REFERENCED_TYPES)))
        if self.store.dialect == "postgresql":
            # OFFSET keeps PostgreSQL from turning the EXISTS into a join over every member's data (where each
            # member's row in the group multiplies by the group's size): one witness per provider is enough.
            # SQLite runs the EXISTS as written; there the OFFSET would re-list the members for each provider.
            by_data = by_data.limit(1).offset(0)
        queries = [select(providers.c.t, providers.c.i).where(by_data.exists()), by_patient]
        if scope.group_pk is not None:
            queries.append(select(REFS.c.target_type, REFS.c.target_id).distinct().where(
                REFS.c.res_pk == scope.group_pk, REFS.c.target_type.in_(REFERENCED_TYPES)))
        found: dict[str, set[str]] = {t: set() for t in REFERENCED_TYPES}
        with self.store.engine.connect() as conn:
            for q in queries:
                for rtype, rid in conn.execute(q):
                    found[rtype].add(rid)
            roles = sorted(found["PractitionerRole"])
            for i in range(0, len(roles), 500):  # one more hop: the roles' practitioners, organizations…
                role_pks = select(RESOURCE.c.pk).where(RESOURCE.c.res_type == "PractitionerRole",
                                                       RESOURCE.c.res_id.in_(roles[i:i + 500]))
                for rtype, rid in conn.execute(select(REFS.c.target_type, REFS.c.target_id).distinct().where(
                        REFS.c.res_pk.in_(role_pks), REFS.c.target_type.in_(REFERENCED_TYPES[1:]))):
                    found[rtype].add(rid)
        return found

    def _scope_conds(self, rtype: str, scope: Scope) -> list[ColumnElement[bool]]:
        """Which resources of ``rtype`` (current or not) belong to the export's patients or providers."""
        if scope.level == "system":
            return []
        members = self._member_ids(scope)
        if rtype == "Patient":
            return [RESOURCE.c.res_id.in_(members)] if members is not None else []
        if rtype == "Group" and scope.level == "group":
            return [RESOURCE.c.pk == scope.group_pk]  # the exported group, not others members share
        if rtype in self.compartment:
            return [RESOURCE.c.pk.in_(self._compartment_pks(rtype, members))]
        if rtype in REFERENCED_TYPES:
            return [RESOURCE.c.res_id.in_(self._referenced(rtype, scope, members))]
        return [false()]

    def _associated_provenance(self, scope: Scope) -> ColumnElement[bool]:
        """Provenance whose target is a resource the export returns: every such Provenance (relevant) or the
        most recently recorded one per target (latest)."""
        exported = [select(RESOURCE.c.res_type.label("t"), RESOURCE.c.res_id.label("i"))
                    .where(*self._selection(t, scope)) for t in scope.associated_of]
        if not exported:
            return false()
        targets = (exported[0] if len(exported) == 1 else union_all(*exported)).subquery()
        join = and_(REFS.c.target_type == targets.c.t, REFS.c.target_id == targets.c.i)
        base = (select(REFS.c.res_pk).join(targets, join)
                .where(REFS.c.res_type == "Provenance", REFS.c.param == "target"))
        if scope.associated == "relevant":
            return RESOURCE.c.pk.in_(base)
        dates = IDX["dates"]
        rank = func.row_number().over(partition_by=(REFS.c.target_type, REFS.c.target_id),
                                      order_by=(func.coalesce(dates.c.hi, "").desc(), REFS.c.res_pk.desc()))
        ranked = (base.add_columns(rank.label("rn"))
                  .outerjoin(dates, and_(dates.c.res_pk == REFS.c.res_pk, dates.c.param == "recorded"))
                  .subquery())
        return RESOURCE.c.pk.in_(select(ranked.c.res_pk).where(ranked.c.rn == 1))

    def selection(self, rtype: str, scope: Scope) -> list[ColumnElement[bool]]:
        """The WHERE clause choosing the current resources of ``rtype`` that the export covers."""
        if rtype == "Provenance" and scope.associated:
            assoc = self._associated_provenance(scope)
            if scope.provenance_requested:
                assoc = or_(and_(true(), *self._selection(rtype, scope)), assoc)
            return [RESOURCE.c.res_type == rtype, RESOURCE.c.deleted == false(), assoc]
        return self._selection(rtype, scope)

    def _selection(self, rtype: str, scope: Scope) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [RESOURCE.c.res_type == rtype, RESOURCE.c.deleted == false(),
                                            *self._scope_conds(rtype, scope)]
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

        Two steps: the keys of the selected resources, in order, then their rows a batch of keys at a time.
        Ordering the selection itself by key would make the database sort every selected row, JSON and all,
        before returning the first (SQLite: a temporary B-tree that spills to disk once a type's rows outgrow
        the cache); ordering keys only keeps that sort a list of integers.

        ``content`` is None for a resource larger than LARGE bytes (a Group of 100,000 members is about 60 MB):
        its JSON is then read in pieces with ``chunks``, so no single row's size sets the memory use."""
        keys = select(RESOURCE.c.pk).where(*self.selection(rtype, scope), RESOURCE.c.pk > after).order_by(RESOURCE.c.pk)
        length = func.length(RESOURCE.c.content)
        fetch = (select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id,
                        case((length <= LARGE, RESOURCE.c.content), else_=null()), length)
                 .where(RESOURCE.c.pk.in_(bindparam("pks", expanding=True)), RESOURCE.c.deleted == false())
                 .order_by(RESOURCE.c.pk))  # a resource deleted since its key was read is left out
        with self.store.engine.connect() as conn, self.store.engine.connect() as reader:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(keys)
            while pks := [r[0] for r in result.fetchmany(batch)]:
                yield from reader.execute(fetch, {"pks": pks})

    def chunks(self, pk: int, length: int, size: int | None = None) -> Iterator[bytes]:
        """The stored JSON of one resource, ``size`` bytes at a time. SQLite reads the BLOB incrementally;
        PostgreSQL takes slices (each slice de-toasts the value on the server, so slices there are larger)."""
        with self.store.engine.connect() as conn:
            if self.store.dialect == "sqlite":
                raw = conn.connection.driver_connection
                assert raw is not None  # an open connection has its driver connection
                with raw.blobopen("resource", "content", pk, readonly=True) as blob:
                    while piece := blob.read(size or CHUNK):
                        yield piece
                return
            step = size or CHUNK * 2
            for start in range(1, length + 1, step):
                yield conn.execute(select(func.substr(RESOURCE.c.content, start, step))
                                   .where(RESOURCE.c.pk == pk)).scalar_one()

    def deleted(self, rtype: str, scope: Scope, after: int = 0) -> Iterator[Any]:
        """Tombstones changed since ``_since``: at system level every one; at patient and group level the
        patients' own, the resources that were in their compartments, and the providers their data references.

        A deleted resource has no index rows any more, so compartment membership is read from its last
        version in the history, a batch of tombstones at a time (bounded by the number of deletions)."""
        if not scope.since:
            return
        conds = [RESOURCE.c.res_type == rtype, RESOURCE.c.deleted == true(), RESOURCE.c.last_updated > scope.since,
                 RESOURCE.c.pk > after]
        if scope.until:
            conds.append(RESOURCE.c.last_updated <= scope.until)
        by_history = scope.level != "system" and rtype in self.compartment and rtype != "Patient"
        if scope.level != "system" and not by_history:
            if rtype == "Group":
                return  # the exported group itself is not deleted, or the export would have failed
            conds.extend(self._scope_conds(rtype, scope))
        stmt = (select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id, RESOURCE.c.version)
                .where(*conds).order_by(RESOURCE.c.pk))
        with self.store.engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=500).execute(stmt)
            if not by_history:
                for r in rows:
                    yield (r[0], r[1], r[2], b"", 0)
                return
            while batch := rows.fetchmany(500):
                keep = self._was_in_compartments(rtype, scope, [(r[2], r[3]) for r in batch])
                for r in batch:
                    if r[2] in keep:
                        yield (r[0], r[1], r[2], b"", 0)

    def _was_in_compartments(self, rtype: str, scope: Scope, tombstones: list[tuple[str, int]]) -> set[str]:
        """Which of the deleted ``(id, version)`` resources were, in their last version, in the Patient
        compartment of a patient the export covers."""
        from ...search.index import index_resource

        params = self.compartment[rtype]
        deleted_at = dict(tombstones)
        last: dict[str, tuple[int, bytes]] = {}
        with self.store.engine.connect() as conn:
            for rid, version, content in conn.execute(
                    select(HISTORY.c.res_id, HISTORY.c.version, HISTORY.c.content).where(
                        HISTORY.c.res_type == rtype, HISTORY.c.res_id.in_(list(deleted_at)),
                        HISTORY.c.method != "DELETE", HISTORY.c.content.is_not(None))):
                if version < deleted_at[rid] and version > last.get(rid, (0, b""))[0]:
                    last[rid] = (version, content)
        patients: dict[str, set[str]] = {}
        for rid, (_, content) in last.items():
            refs = index_resource(orjson.loads(content)).refs
            patients[rid] = {r[2] for r in refs if r[0] in params and r[1] == "Patient" and r[2]}
        wanted = set().union(*patients.values()) if patients else set()
        if scope.level == "group":
            assert scope.group_pk is not None
            wanted = self.group_member_ids(scope.group_pk, sorted(wanted))
        if scope.patients is not None:
            wanted &= set(scope.patients)
        wanted -= set(scope.excluded)
        return {rid for rid, pids in patients.items() if pids & wanted}

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

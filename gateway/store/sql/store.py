"""ResourceStore over SQLAlchemy Core: SQLite (default, embedded) and PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    and_,
    any_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from ...fhir.dates import now_instant
from ...fhir.errors import Conflict, FhirError
from ...search.cursor import PageCursor
from ...search.index import IndexRows, clip, index_resource
from ...search.query import Include, SearchQuery
from ..base import HistoryEntry, IndexScope, ResourceStore, SearchResult, StoredResource
from ..encoded import Encoded, content_of, index_of
from . import keyset
from .search_sql import SqlSearchCompiler
from .tables import HISTORY, IDX, IDX_COLUMNS, RESOURCE

log = logging.getLogger("gateway.store")
# SQLite messages of a statement too big or too deep to compile: the search's fault, not the database's
_SQLITE_TOO_BIG = ("too large", "too many", "stack overflow", "too deep")

_COLS = (RESOURCE.c.res_type, RESOURCE.c.res_id, RESOURCE.c.version, RESOURCE.c.last_updated, RESOURCE.c.content,
         RESOURCE.c.deleted)


# statements built once with bind parameters: SQLAlchemy then reuses their compiled form
_CURRENT = select(RESOURCE.c.pk, RESOURCE.c.version, RESOURCE.c.deleted).where(
    RESOURCE.c.res_type == bindparam("t"), RESOURCE.c.res_id == bindparam("i"))
_READ = select(*_COLS).where(RESOURCE.c.res_type == bindparam("t"), RESOURCE.c.res_id == bindparam("i"))
_INSERT = insert(RESOURCE)
_INSERT_HISTORY = insert(HISTORY)
_INSERT_RETURNING = insert(RESOURCE).returning(RESOURCE.c.pk, sort_by_parameter_order=True)
_UPDATE = update(RESOURCE).where(RESOURCE.c.pk == bindparam("_pk"))
_DELETE_IDX = {k: delete(t).where(t.c.res_pk == bindparam("_pk")) for k, t in IDX.items()}
_DELETE_IDX_MANY = {k: delete(t).where(t.c.res_pk.in_(bindparam("pks", expanding=True))) for k, t in IDX.items()}
_CURRENT_MANY = select(RESOURCE.c.res_id, RESOURCE.c.pk, RESOURCE.c.version, RESOURCE.c.deleted,
                       RESOURCE.c.last_updated, RESOURCE.c.content).where(
    RESOURCE.c.res_type == bindparam("t"), RESOURCE.c.res_id.in_(bindparam("ids", expanding=True)))
# PostgreSQL plans a long IN list as a scan of every row of the type (then filtered), which grows with the
# table; a join with the unnested id array is one index lookup per id whatever the table's statistics say
_CURRENT_MANY_PG = text(
    "SELECT r.res_id, r.pk, r.version, r.deleted, r.last_updated, r.content "
    "FROM unnest(CAST(:ids AS text[])) AS k(id) JOIN resource r ON r.res_type = :t AND r.res_id = k.id")
_IDX_COLS = {k: ("res_pk", "res_type", *cols) for k, cols in IDX_COLUMNS.items()}
_HISTORY_COLS = ("res_type", "res_id", "version", "last_updated", "method", "content")
_RESOURCE_COLS = ("pk", "res_type", "res_id", "version", "last_updated", "deleted", "content")
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


def advisory_key(key: str) -> int:
    """A signed 64-bit lock number for ``key`` (the first 8 bytes of its SHA-256): the same in every process,
    unlike Python's salted ``hash``."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _stored(row: Any) -> StoredResource:
    return StoredResource(row[0], row[1], row[2], row[3], None if row[5] else row[4], bool(row[5]))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "isolation_level": None}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    # one pooled connection per request-handling thread (anyio's default limit is 40); connections are
    # recycled rather than pinged before each use
    # connect_timeout: a database out of reach (a blackholed address) fails a connection after 10 s rather
    # than the operating system's minutes
    return create_engine(url, pool_size=40, max_overflow=10, pool_recycle=1800,
                         connect_args={"connect_timeout": 10})


class SqlSession:
    """One atomic unit of work on one connection. Index rows are buffered and written in bulk."""

    def __init__(self, store: SqlStore, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self._pending: dict[int, tuple[str, IndexRows]] = {}
        self._fresh: set[int] = set()  # pks inserted in this unit of work whose index rows are not flushed
        # new resources with server-assigned ids, inserted in bulk (executemany + RETURNING) before the next
        # read of this unit of work or at its end
        self._new: list[tuple[dict[str, Any], dict[str, Any], str, IndexRows]] = []
        self._now = now_instant()

    # -- reads -------------------------------------------------------------------------------------------
    def read(self, resource_type: str, id: str) -> StoredResource | None:
        self._insert_new()
        row = self.conn.execute(_READ, {"t": resource_type, "i": id}).first()
        return _stored(row) if row else None

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        self._insert_new()
        return self.store._vread(self.conn, resource_type, id, version)

    def exists(self, resource_type: str, id: str) -> bool:
        self._insert_new()
        row = self.conn.execute(_CURRENT, {"t": resource_type, "i": id}).first()
        return bool(row) and not row[2]

    def search(self, query: SearchQuery) -> SearchResult:
        self.flush()
        return self.store._search(self.conn, query)

    # -- writes ------------------------------------------------------------------------------------------
    def claim(self, key: str) -> None:
        """Serialize this unit of work with every other one, in any process on the same database, that claims
        the same ``key``, until it commits or rolls back: a conditional write claims its (type, criteria) before
        it searches, so a second one with the same criteria searches only after the first has committed and
        sees what it wrote. PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of the key (READ
        COMMITTED, so the search after the wait sees the other's commit). SQLite: nothing to do, a writing unit
        of work already holds the database's one write lock (BEGIN IMMEDIATE) from its start."""
        if self.store.dialect != "postgresql":
            return
        self.conn.execute(_ADVISORY_LOCK, {"k": advisory_key(key)})

    def write(self, resource: dict[str, Any], method: str, expected_version: int | None = None,
              known_new: bool = False) -> StoredResource:
        """Store a new version of ``resource`` (its id set by the caller); returns the stored version."""
        rtype, rid = resource["resourceType"], resource["id"]
        if known_new and expected_version is None:
            return self._write_new(resource, method)
        self._insert_new()
        current = None if known_new else self.conn.execute(_CURRENT, {"t": rtype, "i": rid}).first()
        if expected_version is not None:
            have = current[1] if current and not current[2] else None
            if have != expected_version:
                from ...fhir.errors import PreconditionFailed

                raise PreconditionFailed(
                    f"Version conflict on {rtype}/{rid}: If-Match expects version {expected_version}, "
                    f"current is {have if have is not None else 'none'}")
        version = current[1] + 1 if current else 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = self._now
        resource = {**resource, "meta": meta}
        content = orjson.dumps(resource)
        try:
            if current:
                pk = current[0]
                self.conn.execute(_UPDATE, {"_pk": pk, "version": version, "last_updated": self._now,
                                            "deleted": False, "content": content})
                self._delete_index(pk)
            else:
                pk = self.conn.execute(_INSERT, {"res_type": rtype, "res_id": rid, "version": version,
                                                 "last_updated": self._now, "deleted": False,
                                                 "content": content}).inserted_primary_key[0]
            self.conn.execute(_INSERT_HISTORY, {"res_type": rtype, "res_id": rid, "version": version,
                                                "last_updated": self._now, "method": method, "content": content})
        except IntegrityError:
            raise Conflict(f"Concurrent write on {rtype}/{rid}; retry the request") from None
        if not current:
            self._fresh.add(pk)
        self._pending[pk] = (rtype, index_resource(resource))
        return StoredResource(rtype, rid, version, self._now, content)

    def _write_new(self, resource: dict[str, Any], method: str) -> StoredResource:
        rtype, rid = resource["resourceType"], resource["id"]
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = "1"
        meta["lastUpdated"] = self._now
        resource = {**resource, "meta": meta}
        content = orjson.dumps(resource)
        row = {"res_type": rtype, "res_id": rid, "version": 1, "last_updated": self._now, "deleted": False,
               "content": content}
        hist = {"res_type": rtype, "res_id": rid, "version": 1, "last_updated": self._now, "method": method,
                "content": content}
        self._new.append((row, hist, rtype, index_resource(resource)))
        return StoredResource(rtype, rid, 1, self._now, content)

    def _insert_new(self) -> None:
        if not self._new:
            return
        new, self._new = self._new, []
        try:
            result = self.conn.execute(_INSERT_RETURNING, [n[0] for n in new])
            pks = [r[0] for r in result]
            self.conn.execute(_INSERT_HISTORY, [n[1] for n in new])
        except IntegrityError:
            raise Conflict("Concurrent write of a new resource; retry the request") from None
        for pk, (_, _, rtype, rows) in zip(pks, new, strict=True):
            self._fresh.add(pk)
            self._pending[pk] = (rtype, rows)

    def write_encoded(self, items: list[Encoded], method: str = "PUT") -> list[str]:
        """Store each encoded resource (no (type, id) twice) as its next version, in a few statements per table
        for the whole list: one read of the current versions per type, bulk inserts of new resources, their
        history and index rows, executemany updates for changed ones. A resource whose content equals its
        current version apart from ``meta.versionId``/``meta.lastUpdated`` is left as it is (no new version).
        Returns, per resource, ``created``, ``updated`` or ``unchanged``."""
        self._insert_new()
        if self.store.dialect == "sqlite" and not self.conn.info.get("bulk"):
            # bulk writes touch many index pages: 32 MB of page cache (the default is 2 MB) on the connections
            # that do them, not on every connection of the pool
            self.conn.exec_driver_sql("PRAGMA cache_size=-32768")
            self.conn.info["bulk"] = True
        by_type: dict[str, list[str]] = {}
        for e in items:
            by_type.setdefault(e.rtype, []).append(e.rid)
        current: dict[tuple[str, str], Any] = {}
        stmt = _CURRENT_MANY_PG if self.store.dialect == "postgresql" else _CURRENT_MANY
        for rtype, ids in by_type.items():
            for i in range(0, len(ids), 500):
                for row in self.conn.execute(stmt, {"t": rtype, "ids": ids[i:i + 500]}):
                    current[(rtype, row[0])] = row
        now = self._now
        status: list[str] = []
        new_rows: list[tuple[Any, ...]] = []
        new_items: list[Encoded] = []
        changed: list[dict[str, Any]] = []
        changed_items: list[tuple[int, Encoded]] = []
        history: list[tuple[Any, ...]] = []
        for e in items:
            rtype, rid = e.rtype, e.rid
            cur = current.get((rtype, rid)) if current else None
            if cur is not None and not cur[3] and content_of(e, str(cur[2]), cur[4]) == cur[5]:
                status.append(UNCHANGED)
                continue
            version = cur[2] + 1 if cur is not None else 1
            content = content_of(e, str(version), now)
            history.append((rtype, rid, version, now, method, content))
            if cur is None:
                new_rows.append((rtype, rid, 1, now, False, content))
                new_items.append(e)
                status.append(CREATED)
            else:
                changed.append({"_pk": cur[1], "version": version, "last_updated": now, "deleted": False,
                                "content": content})
                changed_items.append((cur[1], e))
                status.append(CREATED if cur[3] else UPDATED)  # a deleted resource written again is created
        try:
            if new_rows:
                pks = self.store._next_pks(self.conn, len(new_rows))
                for pk, e in zip(pks, new_items, strict=True):
                    self._fresh.add(pk)
                    self._pending[pk] = (e.rtype, e.index if e.index is not None else index_of(e))
                self.store._bulk_insert(self.conn, RESOURCE, _RESOURCE_COLS,
                                        [(pk, *row) for pk, row in zip(pks, new_rows, strict=True)])
            if changed:
                self.conn.execute(_UPDATE, changed)
                stale = [pk for pk, _ in changed_items if pk not in self._fresh]
                for i in range(0, len(stale), 500):
                    for idx_delete in _DELETE_IDX_MANY.values():
                        self.conn.execute(idx_delete, {"pks": stale[i:i + 500]})
                for pk, e in changed_items:
                    self._pending[pk] = (e.rtype, e.index if e.index is not None else index_of(e))
            if history:
                self.store._bulk_insert(self.conn, HISTORY, _HISTORY_COLS, history)
        except IntegrityError:
            raise Conflict("Concurrent write of the same resources; retry the request") from None
        return status

    def delete(self, resource_type: str, id: str) -> StoredResource | None:
        self._insert_new()
        row = self.conn.execute(_CURRENT, {"t": resource_type, "i": id}).first()
        if row is None or row[2]:
            return None
        pk, version = row[0], row[1] + 1
        self.conn.execute(update(RESOURCE).where(RESOURCE.c.pk == pk).values(
            version=version, last_updated=self._now, deleted=True))
        self.conn.execute(_INSERT_HISTORY, {"res_type": resource_type, "res_id": id, "version": version,
                                            "last_updated": self._now, "method": "DELETE", "content": None})
        self._pending.pop(pk, None)
        self._delete_index(pk)
        return StoredResource(resource_type, id, version, self._now, None, True)

    def _delete_index(self, pk: int) -> None:
        if pk in self._fresh:  # written in this unit of work: its index rows are still in the buffer
            return
        for stmt in _DELETE_IDX.values():
            self.conn.execute(stmt, {"_pk": pk})

    def flush(self) -> None:
        self._insert_new()
        if not self._pending:
            return
        batches: dict[str, list[tuple[Any, ...]]] = {k: [] for k in IDX}
        for pk, (rtype, rows) in self._pending.items():
            for kind, items in batches.items():
                for r in getattr(rows, kind):
                    items.append((pk, rtype, *r))
        for kind, items in batches.items():
            if items:
                self.store._bulk_insert(self.conn, IDX[kind], _IDX_COLS[kind], items)
        self._pending.clear()
        self._fresh.clear()


class SqlStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.compiler = SqlSearchCompiler(self.dialect)
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        # seconds a search statement may run before it is cancelled (400 too-costly); 0: no limit
        self.search_timeout: float = 30.0
        if migrate:
            from .migrate import upgrade

            upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[SqlSession]:
        lock = self._write_lock
        if lock:
            lock.acquire()
        try:
            with self.engine.connect() as conn:
                conn.info["write"] = True
                try:
                    with conn.begin():
                        s = SqlSession(self, conn)
                        yield s
                        s.flush()
                finally:
                    conn.info["write"] = False
        except DataError as exc:  # a value the schema cannot hold: the input's fault, nothing was written
            raise FhirError(f"A value does not fit the database: {str(exc.orig).splitlines()[0]}", status=400,
                            code="too-long") from None
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in ("40P01", "40001"):  # deadlock, serialization failure
                raise Conflict("The request collided with concurrent writes and was rolled back, nothing "
                               "was written; retry it") from None
            raise FhirError(f"Database unavailable: {str(exc.orig).splitlines()[0]}", status=503,
                            code="transient") from None
        finally:
            if lock:
                lock.release()

    def _next_pks(self, conn: Any, n: int) -> list[int]:
        """``n`` fresh primary keys of the resource table, for a bulk insert that names them. On SQLite the
        transaction holds the write lock, so the keys after the largest one are free (what SQLite itself would
        assign); on PostgreSQL they come from the column's sequence."""
        if self.dialect == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, %(n)s)", {"n": n})
            return [r[0] for r in rows]
        top = conn.exec_driver_sql("SELECT coalesce(max(pk), 0) FROM resource").scalar()
        return list(range(top + 1, top + 1 + n))

    def _bulk_insert(self, conn: Any, table: Any, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Many rows into one table through the driver: COPY on PostgreSQL, executemany on SQLite."""
        names = ", ".join(cols)
        if self.dialect == "postgresql":
            import psycopg

            sql = f"COPY {table.name} ({names}) FROM STDIN"
            try:
                with conn.connection.dbapi_connection.cursor() as cur, cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            except psycopg.DataError as exc:  # the driver's own errors, as SQLAlchemy would have raised them
                raise DataError(sql, None, exc) from None
            except psycopg.IntegrityError as exc:
                raise IntegrityError(sql, None, exc) from None
            except psycopg.OperationalError as exc:
                raise OperationalError(sql, None, exc) from None
        else:
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(cols))})", rows)

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        with self.engine.connect() as conn:
            yield conn

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        with self._reader() as conn:
            row = conn.execute(_READ, {"t": resource_type, "i": id}).first()
        return _stored(row) if row else None

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        with self._reader() as conn:
            return self._vread(conn, resource_type, id, version)

    def _vread(self, conn: Any, resource_type: str, id: str, version: int) -> StoredResource | None:
        row = conn.execute(select(HISTORY.c.res_type, HISTORY.c.res_id, HISTORY.c.version, HISTORY.c.last_updated,
                                  HISTORY.c.content, HISTORY.c.method).where(
            HISTORY.c.res_type == resource_type, HISTORY.c.res_id == id, HISTORY.c.version == version)).first()
        if row is None:
            return None
        deleted = row[5] == "DELETE"
        return StoredResource(row[0], row[1], row[2], row[3], None if deleted else row[4], deleted)

    def search(self, query: SearchQuery) -> SearchResult:
        with self._reader() as conn:
            return self._search(conn, query)

    def _search(self, conn: Any, q: SearchQuery) -> SearchResult:
        """Run a search under the search time limit; database errors the search itself caused (a cancelled
        statement, one too big to compile) answer 400 too-costly, others 503. Neither the message nor the
        statement of the error is logged or answered: they hold the searched values."""
        start = time.monotonic()
        try:
            with self._time_limit(conn):
                return self._run_search(conn, q)
        except OperationalError as exc:
            orig = exc.orig
            sqlstate = getattr(orig, "sqlstate", None)
            message = str(orig).lower()
            kind = type(orig).__name__
            elapsed = round(time.monotonic() - start, 3)
            if sqlstate == "57014" or (self.dialect == "sqlite" and message.startswith("interrupted")):
                log.warning("search cancelled at its time limit", extra={
                    "error_kind": kind, "sqlstate": sqlstate, "seconds": elapsed})
                raise FhirError(f"The search ran longer than the {self.search_timeout:g} s allowed and was "
                                "stopped; narrow it (fewer or more selective parameters)", status=400,
                                code="too-costly") from None
            if self.dialect == "sqlite" and any(m in message for m in _SQLITE_TOO_BIG):
                log.warning("search too complex for the database", extra={"error_kind": kind})
                raise FhirError("The search is too complex for the database; use fewer parameters or values",
                                status=400, code="too-costly") from None
            log.error("search failed in the database", extra={"error_kind": kind, "sqlstate": sqlstate})
            raise FhirError("Database unavailable", status=503, code="transient") from None

    @contextmanager
    def _time_limit(self, conn: Any) -> Iterator[None]:
        """Cancel the statements run inside after ``search_timeout`` seconds: PostgreSQL's statement_timeout
        (local to the transaction, put back afterwards for a write transaction that goes on), and a progress
        handler on SQLite."""
        limit = self.search_timeout
        if not limit or limit <= 0:
            yield
            return
        if self.dialect == "postgresql":
            ms = str(max(1, int(limit * 1000)))
            write = bool(conn.info.get("write"))
            prev = conn.exec_driver_sql("SELECT current_setting('statement_timeout')").scalar() if write else None
            conn.exec_driver_sql("SELECT set_config('statement_timeout', %(v)s, true)", {"v": ms})
            yield  # a failed search ends its transaction, and the setting with it
            if write:  # a write transaction goes on: its other statements keep the server's setting
                conn.exec_driver_sql("SELECT set_config('statement_timeout', %(v)s, true)", {"v": prev})
            return
        raw = conn.connection.dbapi_connection
        deadline = time.monotonic() + limit
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20000)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)

    def _run_search(self, conn: Any, q: SearchQuery) -> SearchResult:
        where = self.compiler.where(q.resource_type, q.criteria)
        result = SearchResult()
        if q.total != "none" or q.summary == "count":
            result.total = conn.execute(select(func.count()).select_from(RESOURCE).where(*where)).scalar_one()
        if q.summary == "count" or q.count == 0:
            return result
        rows = self._page(conn, q, where, result)
        result.matches = [_stored(r[1:]) for r in rows]
        if q.includes or q.revincludes:
            result.included = self._includes(conn, q, [r[0] for r in rows],
                                             {(m.resource_type, m.id) for m in result.matches})
        return result

    def _page(self, conn: Any, q: SearchQuery, where: list[Any], result: SearchResult) -> list[Any]:
        """One page of matching rows (pk, columns…) in sort order: from ``q.cursor`` (keyset: strictly after
        or before a position, so rows created or deleted elsewhere never shift the page), else from
        ``q.offset``. Records on ``result`` where the page starts and ends and whether rows lie beyond."""
        keys = self.compiler.sort_keys(q)
        cols = [RESOURCE.c.pk, *_COLS, *(k.label(f"sort_{i}") for i, (k, _) in enumerate(keys))]
        cursor = q.cursor
        forward = cursor is None or cursor.forward
        stmt = select(*cols).where(*where)
        if cursor is not None:
            stmt = stmt.where(keyset.beyond(keys, RESOURCE.c.pk, cursor, self.dialect))
        stmt = stmt.order_by(*keyset.order(keys, RESOURCE.c.pk, self.dialect, forward)).limit(q.count + 1)
        if cursor is None and q.offset:
            stmt = stmt.offset(q.offset)
        rows = list(conn.execute(stmt).all())
        more = len(rows) > q.count
        rows = rows[:q.count]
        if forward:
            result.more_after = more
            result.more_before = (cursor is not None) or q.offset > 0
        else:
            rows.reverse()
            result.more_before = more
            result.more_after = cursor is not None and cursor.pk is not None
        n = len(_COLS) + 1
        if rows:
            result.first_position = (tuple(rows[0][n:]), int(rows[0][0]))
            result.last_position = (tuple(rows[-1][n:]), int(rows[-1][0]))
        return rows

    def _includes(self, conn: Any, q: SearchQuery, pks: list[int], seen: set[tuple[str, str]]) -> list[StoredResource]:
        out: list[StoredResource] = []
        refs = IDX["refs"]
        frontier = pks
        for depth in range(4):  # :iterate goes at most a few levels deep
            found: list[tuple[int, StoredResource]] = []
            for inc in q.includes:
                if depth > 0 and not inc.iterate:
                    continue
                cond: list[ColumnElement[bool]] = [refs.c.res_pk.in_(frontier), refs.c.target_type.is_not(None)]
                if inc.param != "*":
                    cond += [refs.c.param == inc.param, refs.c.res_type == inc.source_type]
                if inc.target_type:
                    cond.append(refs.c.target_type == inc.target_type)
                sub = select(refs.c.target_type, refs.c.target_id).where(*cond).distinct().subquery()
                stmt = select(RESOURCE.c.pk, *_COLS).join(sub, (RESOURCE.c.res_type == sub.c.target_type) & (
                    RESOURCE.c.res_id == sub.c.target_id)).where(RESOURCE.c.deleted == false())
                if inc.allowed is not None:
                    stmt = stmt.where(self.compiler.allowed(inc.allowed))
                found.extend((r[0], _stored(r[1:])) for r in conn.execute(stmt))
            for inc in q.revincludes:
                if depth > 0 and not inc.iterate:
                    continue
                targets = select(RESOURCE.c.res_type, RESOURCE.c.res_id).where(RESOURCE.c.pk.in_(frontier)).subquery()
                cond = [refs.c.res_type == inc.source_type, refs.c.param == inc.param]
                sub = select(refs.c.res_pk).join(targets, (refs.c.target_type == targets.c.res_type) & (
                    refs.c.target_id == targets.c.res_id)).where(*cond).distinct().subquery()
                stmt = select(RESOURCE.c.pk, *_COLS).where(RESOURCE.c.pk.in_(select(sub.c.res_pk)),
                                                           RESOURCE.c.deleted == false())
                if inc.allowed is not None:
                    stmt = stmt.where(self.compiler.allowed(inc.allowed))
                found.extend((r[0], _stored(r[1:])) for r in conn.execute(stmt))
            frontier = []
            for pk, s in found:
                key = (s.resource_type, s.id)
                if key not in seen:
                    seen.add(key)
                    out.append(s)
                    frontier.append(pk)
            if not frontier:
                break
        return out

    def history(self, resource_type: str | None, id: str | None, since: str | None, count: int,
                offset: int, at: str | None = None, cursor: PageCursor | None = None
                ) -> tuple[list[HistoryEntry], int]:
        """Up to ``count`` versions, newest first (lastUpdated, then row key, descending), and how many
        there are in all. With ``cursor`` the versions strictly older (forward) or newer (backward) than its
        position, the ``count`` nearest to it, ``offset`` ignored: versions written while a client pages
        land before its position and never shift the pages still to come."""
        cond: list[Any] = []
        if resource_type:
            cond.append(HISTORY.c.res_type == resource_type)
        if id:
            cond.append(HISTORY.c.res_id == id)
        if since:
            cond.append(HISTORY.c.last_updated >= since)
        with self._reader() as conn:
            total = conn.execute(select(func.count()).select_from(HISTORY).where(*cond)).scalar_one()
            stmt = select(HISTORY.c.res_type, HISTORY.c.res_id, HISTORY.c.version, HISTORY.c.last_updated,
                          HISTORY.c.content, HISTORY.c.method, HISTORY.c.pk).where(*cond)
            lu, pk = HISTORY.c.last_updated, HISTORY.c.pk
            newer_first = cursor is None or cursor.forward
            if cursor is not None and cursor.pk is not None:
                v = cursor.keys[0]
                stmt = stmt.where(or_(lu < v, and_(lu == v, pk < cursor.pk)) if cursor.forward
                                  else or_(lu > v, and_(lu == v, pk > cursor.pk)))
            stmt = stmt.order_by(*((lu.desc(), pk.desc()) if newer_first else (lu.asc(), pk.asc()))).limit(count)
            if cursor is None:
                stmt = stmt.offset(offset)
            rows = list(conn.execute(stmt).all())
        if not newer_first:
            rows.reverse()
        entries = [HistoryEntry(StoredResource(r[0], r[1], r[2], r[3], r[4], r[5] == "DELETE"), r[5], int(r[6]))
                   for r in rows]
        return entries, total

    def iter_current(self, resource_type: str | None = None, batch: int = 500) -> Iterator[StoredResource]:
        last = 0
        while True:
            cond = [RESOURCE.c.pk > last, RESOURCE.c.deleted == false()]
            if resource_type:
                cond.append(RESOURCE.c.res_type == resource_type)
            with self._reader() as conn:
                rows = conn.execute(select(RESOURCE.c.pk, *_COLS).where(*cond).order_by(RESOURCE.c.pk)
                                    .limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield _stored(r[1:])
            last = rows[-1][0]

    def compartment_contents(self, patient_ids: list[str], types: dict[str, tuple[str, ...]],
                             scopes: dict[str, IndexScope] | None = None
                             ) -> dict[str, list[tuple[str, int, bytes]]]:
        """Current resources of the given types in the Patient compartments of ``patient_ids``, in one query
        per batch of patients: patient id -> [(resource type, pk, JSON content)], each resource once per
        patient. ``types`` maps a resource type to its compartment parameters (a reference in any other
        element does not put the resource in the compartment); ``scopes`` narrows some types to the resources
        their search index rows place in the scope (see ``IndexScope``)."""
        if not patient_ids or not types:
            return {}
        ref = IDX["refs"]
        out: dict[str, list[tuple[str, int, bytes]]] = {}
        seen: set[tuple[str, int]] = set()
        which = _scoped_types(self.dialect, types, scopes or {})
        for i in range(0, len(patient_ids), 500):
            part = patient_ids[i:i + 500]
            stmt = (select(ref.c.target_id, ref.c.res_type, ref.c.param, RESOURCE.c.pk, RESOURCE.c.content)
                    .join(RESOURCE, RESOURCE.c.pk == ref.c.res_pk)
                    .where(ref.c.target_type == "Patient", ref.c.target_id.in_(part),
                           which, RESOURCE.c.deleted == false())
                    .order_by(RESOURCE.c.pk))
            with self._reader() as conn:
                rows = conn.execute(stmt).all()  # fetched at once: row-by-row fetching costs more than the query
            for pid, rtype, param, pk, content in rows:
                if param not in types[rtype] or (pid, pk) in seen:
                    continue
                seen.add((pid, pk))
                out.setdefault(pid, []).append((rtype, pk, content))
        return out

    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, StoredResource]:
        """Current versions of several resources of one type (deleted ones left out)."""
        out: dict[str, StoredResource] = {}
        for i in range(0, len(ids), 500):
            with self._reader() as conn:
                rows = conn.execute(select(*_COLS).where(RESOURCE.c.res_type == resource_type,
                                                         RESOURCE.c.res_id.in_(ids[i:i + 500]),
                                                         RESOURCE.c.deleted == false())).all()
            for r in rows:
                out[r[1]] = _stored(r)
        return out

    def analyze(self, tables: list[str] | None = None) -> None:
        """Refresh the planner's statistics (PostgreSQL; SQLite plans these queries well without them). Bulk
        loads call it as the tables grow: with autovacuum off, or behind, a table that grew from nothing keeps
        the statistics of an empty one, and the chunk's version lookup was then planned as a scan of every row
        of the type (0.45 s a query at a million resources)."""
        if self.dialect != "postgresql":
            return
        names = tables or ["resource", "resource_history", *(t.name for t in IDX.values())]
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"ANALYZE {', '.join(names)}")

    def count(self, resource_type: str | None = None) -> int:
        cond = [RESOURCE.c.deleted == false()]
        if resource_type:
            cond.append(RESOURCE.c.res_type == resource_type)
        with self._reader() as conn:
            return conn.execute(select(func.count()).select_from(RESOURCE).where(*cond)).scalar_one()

    def change_stamp(self, resource_type: str) -> tuple[int, str]:
        """A value that changes whenever a resource of ``resource_type`` is written or deleted, by any process
        on this database: how many versions of the type the history holds and the newest one's time, read
        from the (res_type, last_updated) index without touching a resource's content."""
        with self._reader() as conn:
            n, newest = conn.execute(select(func.count(), func.max(HISTORY.c.last_updated))
                                     .where(HISTORY.c.res_type == resource_type)).one()
        return int(n), str(newest or "")

    def ping(self) -> bool:
        try:
            with self._reader() as conn:
                conn.execute(select(1))
            return True
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        self.engine.dispose()


def memory_store() -> SqlStore:
    """The in-memory store used by unit tests: the same SQL code on a private in-memory SQLite database."""
    return SqlStore("sqlite://")


def include_key(inc: Include) -> str:
    return f"{inc.source_type}:{inc.param}"


if TYPE_CHECKING:
    def _implements_protocol(store: SqlStore) -> ResourceStore:
        """Never called: mypy checks here that SqlStore (and its SqlSession) implement the store protocol."""
        return store


def _scoped_types(dialect: str, types: dict[str, tuple[str, ...]], scopes: dict[str, IndexScope]
                  ) -> ColumnElement[bool]:
    """The condition on a compartment reference row (``IDX["refs"]``) selecting the resource types of
    ``types``, the scoped ones only where a token index row holds one of the scope's codes for its parameter
    or a ``_profile`` row declares one of its profiles."""
    return _scope_condition(dialect, tuple(sorted(types)),
                            tuple(sorted((t, s) for t, s in scopes.items() if t in types)))


@lru_cache(maxsize=64)
def _scope_condition(dialect: str, types: tuple[str, ...], scopes: tuple[tuple[str, IndexScope], ...]
                     ) -> ColumnElement[bool]:
    """``_scoped_types``, built once per measure: a population run asks for it for every chunk of patients,
    and each code list is one bound value (a JSON array read with json_each on SQLite, an array compared with
    ANY on PostgreSQL) rather than thousands, so the statement text and the driver's prepared statement are
    the same for every chunk."""
    ref, tok, uri = IDX["refs"], IDX["tokens"], IDX["uris"]
    scoped = dict(scopes)
    parts: list[ColumnElement[bool]] = []
    for rtype, scope in scopes:
        alts: list[ColumnElement[bool]] = []
        for param, codes in scope.tokens:
            if not codes:
                continue
            values = sorted({clip(c) or "" for c in codes})  # token rows hold codes clipped to the index width
            if dialect == "postgresql":
                within: ColumnElement[bool] = tok.c.code == any_(bindparam(None, values, type_=ARRAY(String)))
            else:
                listed = func.json_each(bindparam(None, orjson.dumps(values).decode())).table_valued("value")
                within = tok.c.code.in_(select(listed.c.value))
            alts.append(exists().where(tok.c.res_pk == ref.c.res_pk, tok.c.res_type == rtype,
                                       tok.c.param == param, within))
        if scope.profiles:
            alts.append(exists().where(uri.c.res_pk == ref.c.res_pk, uri.c.param == "_profile", or_(
                *(cond for p in scope.profiles
                  for cond in (uri.c.value == p, uri.c.value.startswith(p + "|", autoescape=True))))))
        if alts:
            parts.append(and_(ref.c.res_type == rtype, or_(*alts)))
    plain = [t for t in types if t not in scoped]
    if plain:
        parts.append(ref.c.res_type.in_(plain))
    return or_(*parts) if parts else false()

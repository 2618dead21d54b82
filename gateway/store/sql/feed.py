"""The history table read as a change feed, a lease that lets one process of several act on it, and the
follower's durable position (table ``feed_position``), so whoever holds the lease next (another instance, or
the same one after a restart) goes on where the last holder stopped. The Subscription notifier follows the
feed; keeping its SQL here leaves `subscriptions/` free of the schema."""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, insert, select, update

from .tables import FEED_POSITION, HISTORY

if TYPE_CHECKING:
    from .store import SqlStore

Change = tuple[int, str, str, int]  # history row number, resource type, id, version


class Lease:
    """Held by one process at a time: a PostgreSQL advisory lock on a connection of its own, an exclusive
    lock on a file beside the SQLite database, or nothing to hold (an in-memory database has one process)."""

    def __init__(self, key: int, conn: Any = None, file: IO[bytes] | None = None) -> None:
        self.key = key
        self._conn = conn
        self._file = file

    def release(self) -> None:
        """Give the lease up; another process can take it on its next try."""
        conn, self._conn = self._conn, None
        file, self._file = self._file, None
        if conn is not None:  # a pooled connection keeps session locks: unlock first
            try:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({int(self.key)})")
            finally:
                conn.close()
        if file is not None:
            file.close()  # closing the file releases its lock


class ChangeFeed:
    """Reads of the history table in the order rows were numbered (every write of any kind adds a row)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def head(self) -> int:
        """The newest history row number (0 on an empty database)."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.max(HISTORY.c.pk))).scalar() or 0)

    def after(self, pk: int, types: tuple[str, ...], limit: int) -> list[Change]:
        """Rows numbered above ``pk`` of the given resource types, oldest first, at most ``limit``."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(HISTORY.c.pk, HISTORY.c.res_type, HISTORY.c.res_id, HISTORY.c.version)
                                .where(HISTORY.c.pk > pk, HISTORY.c.res_type.in_(types))
                                .order_by(HISTORY.c.pk).limit(limit)).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def first(self, resource_type: str, id: str) -> int:
        """The number of the first history row of a resource (0 when it has none)."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.min(HISTORY.c.pk)).where(
                HISTORY.c.res_type == resource_type, HISTORY.c.res_id == id)).scalar() or 0)

    def versions(self, resource_type: str, id: str, after: int, upto: int | None = None) -> int:
        """How many versions of a resource were written in the rows numbered above ``after`` (and up to
        ``upto``)."""
        q = select(func.count()).select_from(HISTORY).where(
            HISTORY.c.res_type == resource_type, HISTORY.c.res_id == id, HISTORY.c.pk > after)
        if upto is not None:
            q = q.where(HISTORY.c.pk <= upto)
        with self.store.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def position(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """Where the follower ``name`` got to (the row number and its saved state), or None if it never
        saved a position on this database."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(FEED_POSITION.c.position, FEED_POSITION.c.state)
                               .where(FEED_POSITION.c.name == name)).first()
        if row is None:
            return None
        state = orjson.loads(row[1] or "{}")
        return int(row[0]), state if isinstance(state, dict) else {}

    def save_position(self, name: str, position: int, state: dict[str, Any]) -> None:
        """Record the follower's position and state (called by the lease holder only, so writers never
        race each other for a row)."""
        values = {"position": position, "state": orjson.dumps(state).decode(), "updated": time.time()}
        with self.store.engine.begin() as conn:
            done = conn.execute(update(FEED_POSITION).where(FEED_POSITION.c.name == name).values(**values))
            if not done.rowcount:
                conn.execute(insert(FEED_POSITION).values(name=name, **values))

    def try_lease(self, key: int, name: str) -> Lease | None:
        """The lease ``key`` (a PostgreSQL advisory lock number; on SQLite the file ``<database>.<name>.lock``)
        if no other process holds it, else None (try again later)."""
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            # autocommit: holding the lock must not hold a transaction open (snapshots, vacuum)
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({int(key)})").scalar():
                return Lease(key, conn=conn)
            conn.close()
            return None
        path = engine.url.database
        if not path or path == ":memory:":
            return Lease(key)  # one process by construction
        import fcntl

        fd = open(f"{path}.{name}.lock", "a+b")  # noqa: SIM115 - held open as the lease
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fd.close()
            return None
        return Lease(key, file=fd)


"""Audit trail: one row per authorized or refused access to /fhir, written in small batches, exported as
FHIR R4 AuditEvent resources (DICOM/HL7 audit codes)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select

from ..logs import request_id
from .tables import AUDIT

log = logging.getLogger("gateway.audit")
ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D", "conditional-update": "U",
           "conditional-delete": "D", "operation": "E", "transaction": "E"}


class AuditLog:
    def __init__(self, engine: Engine, flush_every: float = 1.0, batch: int = 500,
                 store_engine: Engine | None = None) -> None:
        self.engine = engine  # where the rows go: the gateway database's engine or the audit log's own
        self.store_engine = store_engine or engine
        self.flush_every = flush_every
        self.batch = batch
        self._rows: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._due = threading.Event()

    def start(self) -> None:
        """Write queued rows from a background thread every ``flush_every`` seconds (or sooner when a batch
        is full), so no request waits for the audit write."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._due.set()
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
        if self.engine is not self.store_engine:
            self.engine.dispose()  # its own database: close the pooled connections (reopened on next use)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._due.wait(self.flush_every)
            self._due.clear()
            self.flush()

    def record(self, scope: dict[str, Any], grant: Any, access: Any, status: int) -> bool:
        """Queue one row; True when a batch is due and no writer thread runs (the caller then flushes it
        off the event loop)."""
        interaction = getattr(access, "interaction", "unknown")
        if interaction == "operation":
            interaction = f"operation:{access.operation}"
        qs = scope.get("query_string", b"").decode("utf-8", "replace")
        row = {"recorded": time.time(), "client_id": getattr(grant, "client_id", None),
               "subject": getattr(grant, "subject", None), "patient": getattr(grant, "patient", None),
               "action": ACTIONS.get(getattr(access, "interaction", ""), "R"), "interaction": interaction[:64],
               "method": scope["method"][:8], "path": scope["path"] + (f"?{qs}" if qs else ""), "status": status,
               "request_id": request_id.get()[:64]}
        with self._lock:
            self._rows.append(row)
            due = len(self._rows) >= self.batch or time.monotonic() - self._last >= self.flush_every
        if self._thread is not None:
            if due:
                self._due.set()
            return False
        return due

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            self._last = time.monotonic()
        if not rows:
            return
        for r in rows:  # epoch seconds -> FHIR instant, here rather than on the request path
            if isinstance(r["recorded"], float):
                r["recorded"] = _instant(r["recorded"])
        try:
            with self.engine.begin() as conn:
                _insert(conn, rows)
        except Exception:  # noqa: BLE001 - an audit write failure is logged loudly, the rows kept
            log.exception("audit rows could not be written; kept for the next flush")
            with self._lock:
                self._rows[:0] = rows

    def events(self, patient: str | None = None, since: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        self.flush()
        q = select(AUDIT).order_by(AUDIT.c.pk.desc()).limit(limit)
        if patient:
            q = q.where(AUDIT.c.patient == patient)
        if since:
            q = q.where(AUDIT.c.recorded >= since)
        with self.engine.connect() as conn:
            return [as_audit_event(dict(r)) for r in conn.execute(q).mappings()]


COLUMNS = ("recorded", "client_id", "subject", "patient", "action", "interaction", "method", "path", "status",
           "request_id")
SQLITE_ROWS_PER_STATEMENT = 500  # 5,000 bound values, well under SQLite's limit of 32,766
# PostgreSQL: the whole batch as one JSON array bound to one parameter, unpacked by the server in one
# statement (one round trip)
_PG_INSERT = (f"INSERT INTO audit_log ({', '.join(COLUMNS)}) SELECT "
              + ", ".join(f"(r->>{i}){'::int' if c == 'status' else ''}" for i, c in enumerate(COLUMNS))
              + " FROM jsonb_array_elements(%s::jsonb) AS r")


@functools.lru_cache(maxsize=8)
def _values_sql(n: int) -> str:
    one = f"({', '.join('?' * len(COLUMNS))})"
    return f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES " + ", ".join([one] * n)


def _insert(conn: Any, rows: list[dict[str, Any]]) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # one multi-row statement per 500 rows: the driver releases the interpreter lock once per statement
        # step, where executemany releases and re-takes it for every row (each a hand-off that the
        # request-serving thread waits on)
        for i in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            part = rows[i:i + SQLITE_ROWS_PER_STATEMENT]
            conn.exec_driver_sql(_values_sql(len(part)), tuple(r[c] for r in part for c in COLUMNS))
    elif dialect == "postgresql":
        conn.exec_driver_sql(_PG_INSERT, (orjson.dumps([[r[c] for c in COLUMNS] for r in rows]).decode(),))
    else:
        conn.execute(insert(AUDIT), rows)


_SECOND: tuple[int, str] = (-1, "")  # the last whole second formatted: rows of one flush mostly share it


def _instant(epoch: float) -> str:
    global _SECOND
    whole = int(epoch)
    cached = _SECOND  # one tuple, read and replaced whole: safe between the writer and other threads
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _SECOND = cached
    return f"{cached[1]}.{int(epoch * 1000) % 1000:03d}Z"


def as_audit_event(row: dict[str, Any]) -> dict[str, Any]:
    ok = 200 <= row["status"] < 400
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": str(row["pk"]),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": row["interaction"]}],
        "action": row["action"], "recorded": row["recorded"],
        "outcome": "0" if ok else ("4" if row["status"] < 500 else "8"),
        "outcomeDesc": f"HTTP {row['status']}",
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                        "code": "IRCP"}]},
                   "who": {"identifier": {"system": "urn:ietf:params:oauth:client-id",
                                          "value": row["client_id"] or "anonymous"}},
                   "altId": row["subject"], "requestor": True}],
        "source": {"observer": {"display": "fhir-vbc-gateway"}, "site": row["request_id"]},
        "entity": [{"what": {"reference": row["path"].split("?")[0].removeprefix("/fhir/")},
                    "description": f"{row['method']} {row['path']}"}],
    }
    if row["patient"]:
        event["entity"].append({"what": {"reference": f"Patient/{row['patient']}"},
                                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                         "code": "1"}})
    return event

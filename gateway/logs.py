"""Structured JSON logging (one object per line) and an ASGI middleware that assigns a request id."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import traceback
import uuid
from typing import Any

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_STD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for k, v in vars(record).items():
            if k not in _STD and k not in out:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging.Formatter's name)
        """The traceback; for a database error only the kinds of the errors and where they were raised:
        their messages repeat the statement's parameters, which are search values and resource contents."""
        exc = ei[1]
        if exc is None or not _is_database_error(exc):
            return super().formatException(ei)
        lines: list[str] = []
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            lines[:0] = traceback.format_tb(exc.__traceback__) + [f"{_kind(exc)} (message withheld)\n"]
            exc = exc.__cause__ or exc.__context__
        return "".join(lines).rstrip("\n")


_DB_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "_sqlite3")


def _kind(exc: BaseException) -> str:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None)
    return type(exc).__module__ + "." + type(exc).__qualname__ + (f" [{code}]" if code else "")


def _is_database_error(exc: BaseException) -> bool:
    """True when ``exc`` or an error it was raised from comes from the database layer."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__module__.split(".")[0] in _DB_MODULES:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel("WARNING")


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): X-Request-ID in and out, one access log line."""

    def __init__(self, app: Any, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self.log = logging.getLogger("gateway.access")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for k, v in scope.get("headers", []):
            if k == b"x-request-id":
                rid = v.decode("latin-1")[:64]
                break
        rid = rid or uuid.uuid4().hex
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if self.access_log:
                self.log.info("request", extra={
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2)})
            request_id.reset(token)

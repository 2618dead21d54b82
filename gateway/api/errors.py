"""The one place typed errors become OperationOutcome responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..fhir.errors import FhirError, Issue, operation_outcome
from ..logs import request_id
from .http import fhir_response

log = logging.getLogger("gateway.api")

HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 413: "too-costly",
              415: "not-supported", 401: "login", 403: "forbidden", 429: "throttled"}


def install(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return fhir_response(exc.outcome(), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route for {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}"
        code = HTTP_CODES.get(exc.status_code, "processing")
        return fhir_response(operation_outcome([Issue("error", code, detail)]), exc.status_code,
                             dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return fhir_response(operation_outcome([Issue("error", "invalid", str(e.get("msg")))
                                                for e in exc.errors()]), 400)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # the database refused a value the request carried (out of range, not valid for the column's type):
        # the caller's error, told without echoing the statement or the value
        log.info("database refused a request value", extra={"path": request.url.path,
                                                             "error": type(exc.orig).__name__})
        return fhir_response(operation_outcome([Issue(
            "error", "invalid", "A value in the request is out of range or not valid where it is used")]), 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_response(request.url.path, exc)


def unexpected_response(path: str, exc: BaseException) -> Response:
    """A 500 OperationOutcome for an exception nothing else handled. The answer names only the request id:
    the exception's class and message (which may quote stored or submitted values) go to the log, under
    that id, and never to the caller."""
    rid = request_id.get()
    log.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__), extra={"path": path})
    return fhir_response(operation_outcome([Issue(
        "fatal", "exception", f"Internal server error; the server log has the details under request id {rid}")]),
        500)


class BoundaryGuard:
    """Pure ASGI middleware, just inside the request-id middleware, around everything else.

    - A NUL character in the path or the query string is refused with 400 before any route sees it: no
      FHIR id, type, parameter or value may hold one, PostgreSQL cannot compare text with it and SQLite
      truncates at it.
    - An exception that escapes every route, handler and inner middleware (the auth middleware and its
      response filter included) becomes the 500 OperationOutcome of ``unexpected_response``, with the
      request id set, instead of a dropped connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if has_nul(scope.get("path", ""), scope.get("query_string", b"")):
            await fhir_response(operation_outcome([Issue(
                "error", "invalid", "The URL holds a NUL character (%00), which no FHIR id, type or parameter "
                                    "may contain")]), 400)(scope, receive, send)
            return
        started = False

        async def tap(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tap)
        except Exception as exc:
            if started:  # too late for another answer: the log has it, the server closes the connection
                log.error("unhandled error after the response started", exc_info=True,
                          extra={"path": scope.get("path", "")})
                raise
            await unexpected_response(scope.get("path", ""), exc)(scope, receive, send)


def has_nul(path: str, query: bytes) -> bool:
    """Whether a request's (decoded) path or (raw) query string carries a NUL, encoded or not."""
    return "\x00" in path or b"\x00" in query or b"%00" in query

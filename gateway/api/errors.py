"""The one place typed errors become OperationOutcome responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..fhir.errors import FhirError, Issue, operation_outcome
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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return fhir_response(operation_outcome([Issue("fatal", "exception",
                                                      f"Internal server error ({type(exc).__name__})")]), 500)

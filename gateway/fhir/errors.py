"""Typed errors carrying a FHIR issue code and an HTTP status; rendered to OperationOutcome in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue-type code: invalid, not-found, conflict, ...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = self.expression
        return out


class FhirError(Exception):
    """An error that becomes an OperationOutcome with ``status``."""

    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str, *, issues: list[Issue] | None = None, status: int | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.diagnostics = diagnostics
        self.issues = issues or [Issue("error", self.code, diagnostics)]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(FhirError):
    status, code = 400, "invalid"


class NotFound(FhirError):
    status, code = 404, "not-found"


class Gone(FhirError):
    status, code = 410, "deleted"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Unprocessable(FhirError):
    status, code = 422, "business-rule"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotSupported(FhirError):
    status, code = 400, "not-supported"


def operation_outcome(issues: list[Issue], text: str | None = None) -> dict[str, Any]:
    oo: dict[str, Any] = {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}
    return oo


def info_outcome(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", message)])

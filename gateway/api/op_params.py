"""Operation inputs from GET query parameters or a POST Parameters body, as lists of values per name
(primitives as strings, booleans as 'true'/'false') and lists of inline resources per name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ..fhir.errors import BadRequest
from ..fhir.parameters import parameter_list
from .http import read_json_body

CONTROL = {"_format", "_pretty", "_summary", "_elements"}


@dataclass
class OpParams:
    values: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def one(self, name: str) -> str | None:
        vals = self.values.get(name) or []
        if len(vals) > 1:
            raise BadRequest(f"Parameter {name} may appear only once")
        return vals[0] if vals else None

    def many(self, name: str) -> list[str]:
        return list(self.values.get(name) or [])

    def resource(self, name: str) -> dict[str, Any] | None:
        res = self.resources.get(name) or []
        if len(res) > 1:
            raise BadRequest(f"Parameter {name} may appear only once")
        return res[0] if res else None

    def boolean(self, name: str, default: bool) -> bool:
        v = self.one(name)
        if v is None:
            return default
        if v.lower() not in ("true", "false"):
            raise BadRequest(f"Parameter {name} must be true or false, got {v!r}")
        return v.lower() == "true"


def _primitive(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def from_parameters(body: Any, operation: str) -> OpParams:
    out = OpParams()
    for p in parameter_list(body, f"POST ${operation}"):
        name = p.get("name")
        if not name:
            raise BadRequest(f"${operation}: a parameter has no name")
        if isinstance(p.get("resource"), dict):
            out.resources.setdefault(name, []).append(p["resource"])
            continue
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if value is None:
            raise BadRequest(f"${operation}: parameter {name} has no value")
        if isinstance(value, dict):  # Reference
            value = value.get("reference")
        out.values.setdefault(name, []).append(_primitive(value))
    return out


async def read_params(request: Request, settings: Any, operation: str) -> OpParams:
    out = OpParams()
    for name, value in request.query_params.multi_items():
        if name not in CONTROL:
            out.values.setdefault(name, []).append(value)
    if request.method == "POST":
        body = from_parameters(await read_json_body(request, settings.max_body_bytes), operation)
        for name, vals in body.values.items():
            out.values.setdefault(name, []).extend(vals)
        out.resources = body.resources
    return out

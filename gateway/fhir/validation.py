"""Resource validation with the fhir.resources R4B models plus R4 checks.

Two levels:
- ``strict``: any defect rejects the resource (400 with every defect listed). Defects are what the R4B models
  find plus the R4 JSON rules they let through (``json_rules``: JSON types of primitives, empty arrays and
  objects, codes outside required bindings, active content in narrative).
- ``lenient``: every defect the R4B models find (a bad code format, an unknown element, a malformed date,
  which is then simply not indexed) and an id longer than R4's 64 characters are reported as warnings, and
  the resource is stored unchanged. Defects that make the resource unusable (not an object, wrong/unknown
  resourceType, an id with characters outside [A-Za-z0-9-.] or longer than 255) are still errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from .deqm_rules import check_profiles
from .errors import Issue
from .json_rules import json_issues
from .resource_types import RESOURCE_TYPES

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
LONG_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{65,255}$")


@dataclass
class ValidationResult:
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@lru_cache(maxsize=512)
def _model(resource_type: str) -> Any | None:
    try:
        from fhir.resources.R4B import get_fhir_model_class

        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def _loc(loc: tuple[Any, ...], resource_type: str) -> str:
    parts = [resource_type]
    for p in loc:
        if isinstance(p, int):
            parts[-1] += f"[{p}]"
        else:
            parts.append(str(p))
    return ".".join(parts)


def validate_resource(resource: Any, level: str = "strict") -> ValidationResult:
    res = ValidationResult()
    if not isinstance(resource, dict):
        res.errors.append(Issue("error", "structure", "A resource must be a JSON object"))
        return res
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in RESOURCE_TYPES:
        res.errors.append(Issue("error", "structure", f"Unknown or missing resourceType: {rtype!r}"))
        return res
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
        if level == "lenient" and isinstance(rid, str) and LONG_ID_RE.match(rid):
            res.warnings.append(Issue("warning", "value", f"Resource id {rid!r} is longer than the 64 characters "
                                      "R4 allows", [f"{rtype}.id"]))
        else:
            res.errors.append(Issue("error", "value", f"Invalid resource id {rid!r}", [f"{rtype}.id"]))
            return res
    model = _model(rtype)
    if model is None:  # R4-only type missing from the R4B models: structural checks above only
        return res
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors():
            where = _loc(tuple(err.get("loc", ())), rtype)
            msg = f"{where}: {err.get('msg')}"
            issue = Issue("error", "structure" if err.get("type") == "extra_forbidden" else "value", msg, [where])
            if level == "lenient":
                issue.severity = "warning"
                res.warnings.append(issue)
            else:
                res.errors.append(issue)
    except (ValueError, TypeError) as exc:  # model-level validators raising plain errors
        issue = Issue("error", "invalid", f"{rtype}: {exc}")
        (res.warnings if level == "lenient" else res.errors).append(issue)
    except KeyError:  # the models look nested resources up by resourceType: an unknown one is a KeyError
        issue = Issue("error", "structure", f"{rtype}: a contained or nested resource has an unknown or missing "
                                            f"resourceType ({_unknown_nested_type(resource)!r})")
        (res.warnings if level == "lenient" else res.errors).append(issue)
    seen = {e for i in res.errors + res.warnings for e in i.expression}
    try:
        extra = json_issues(resource, model, _model)  # R4 JSON rules the lax models let through
    except RecursionError:  # unusable at every level, like a bad resourceType
        res.errors.append(Issue("error", "too-costly", f"{rtype}: elements are nested too deeply to be checked"))
        extra = []
    for issue in extra:
        if any(e in seen for e in issue.expression):
            continue  # the model reported this element already
        if level == "lenient":
            issue.severity = "warning"
            res.warnings.append(issue)
        else:
            res.errors.append(issue)
    for issue in check_profiles(resource):  # DEQM profiles the resource claims
        if level == "lenient":
            issue.severity = "warning"
            res.warnings.append(issue)
        else:
            res.errors.append(issue)
    return res


def _unknown_nested_type(resource: dict[str, Any]) -> Any:
    """The first resourceType below the top level that is not an R4 type (iterative walk), else None."""
    stack: list[Any] = [v for k, v in resource.items() if k != "resourceType"]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            rt = node.get("resourceType", "")
            if rt != "" and (not isinstance(rt, str) or rt not in RESOURCE_TYPES):
                return rt
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None

"""Which scopes a FHIR request needs, and whether a grant has them. Pure logic, no I/O.

Two declarative sources drive everything:

- ``ROUTES``: (method, route template) -> interaction, for the RESTful API. A /fhir route that is neither in
  this table nor an operation (a ``$name`` path segment) is refused for every token, so a new endpoint is
  closed until someone states its policy here.
- the operation registry (``gateway/operations.py``), collected from the capability packages by the app
  assembly and handed over with ``install``: each declared operation route gets the policy its
  declaration states (needs, scope levels, patient confinement). ``OPERATIONS`` (operation code ->
  ``OperationPolicy``) is a view of it, consulted for ``$code`` routes registered outside the registry;
  codes in neither are refused under ``patient/`` and ``user/`` scopes and need ``system/*.cruds``. Until
  a registry is installed there are no declared operations, so every operation route gets that closed
  policy.

docs/security.md explains the policy in prose; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fhir.errors import Forbidden
from ..operations import PATH_TYPE, Need, Operation, Registry
from .scopes import ScopeSet

__all__ = ["LETTER", "OPERATIONS", "PATH_TYPE", "ROUTES", "AccessRequest", "Denied", "Need", "OperationPolicy",
           "check", "classify", "confined", "install", "operation_needs", "operation_policy", "readable", "scope_filters",
           "with_body_types"]

# interaction -> the SMART v2 permission letter it needs on its resource type
LETTER = {
    "read": "r", "vread": "r", "history-instance": "r",
    "search-type": "s", "search-compartment": "s", "history-type": "s", "history-system": "s",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
    "conditional-update": "u", "conditional-delete": "d",
}

FHIR = "/fhir"  # the prefix the app mounts the FHIR API under
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/fhir/metadata"): "public",
    ("GET", "/fhir/.well-known/smart-configuration"): "public",
    ("GET", "/fhir/.well-known/openid-configuration"): "public",
    ("GET", "/fhir/{rtype}/{rid}"): "read",
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): "vread",
    ("GET", "/fhir/{rtype}/{rid}/_history"): "history-instance",
    ("GET", "/fhir/{rtype}/_history"): "history-type",
    ("GET", "/fhir/_history"): "history-system",
    ("GET", "/fhir/{rtype}"): "search-type",
    ("POST", "/fhir/{rtype}/_search"): "search-type",
    ("GET", "/fhir/Patient/{pid}/{rtype}"): "search-compartment",
    ("POST", "/fhir/{rtype}"): "create",
    ("PUT", "/fhir/{rtype}/{rid}"): "update",
    ("PATCH", "/fhir/{rtype}/{rid}"): "patch",
    ("DELETE", "/fhir/{rtype}/{rid}"): "delete",
    ("PUT", "/fhir/{rtype}"): "conditional-update",
    ("DELETE", "/fhir/{rtype}"): "conditional-delete",
    ("POST", "/fhir"): "transaction",
    ("POST", "/fhir/"): "transaction",
}


@dataclass(frozen=True)
class OperationPolicy:
    needs: tuple[Need, ...]
    patient: bool = False  # usable under patient/ scopes; its output is then confined to the compartment
    subject_param: str | None = None  # under patient/ scopes this parameter, when given, must be Patient/<P>
    type_param: str | None = None  # e.g. _type for $export: the listed types replace "*" in needs
    levels: frozenset[str] = frozenset({"patient", "user", "system"})
    type_params: tuple[str, ...] = ()  # every parameter that lists types (type_param is the first)
    scopes: frozenset[str] = frozenset()  # gateway-defined scopes the grant must all hold (besides the needs)

    def type_names(self) -> tuple[str, ...]:
        """The parameters whose values name the resource types the operation touches."""
        return self.type_params or ((self.type_param,) if self.type_param else ())


def operation_policy(op: Operation) -> OperationPolicy:
    """The access policy of one registry declaration (gateway/operations.py)."""
    return OperationPolicy(op.needs, patient=op.patient, subject_param=op.subject_param,
                           type_param=op.type_params[0] if op.type_params else None, levels=op.scope_levels,
                           type_params=op.type_params, scopes=op.scopes)


def _by_code(registry: Registry) -> dict[str, OperationPolicy]:
    out: dict[str, OperationPolicy] = {}
    for op in registry:
        pol = operation_policy(op)
        if out.setdefault(op.code, pol) != pol:  # e.g. the three $export levels: one code, one policy
            raise ValueError(f"operations named ${op.code} declare different policies")
    return out


_registry = Registry(())  # the installed registry; empty (every operation closed) until ``install``
# operation code -> policy: a view of the registry, used for $code routes the registry does not declare
OPERATIONS: dict[str, OperationPolicy] = {}
_DECLARED: dict[str, OperationPolicy] = {}  # by registry key


def install(registry: Registry) -> None:
    """Make ``registry`` (the operations the app assembly collected from the capability packages) the one
    the policy reads. The auth kernel sits below those packages and cannot import them, so the assembly
    hands the registry down; the views are replaced in place, a registry whose operations sharing a code
    disagree on their policy is refused before anything changes."""
    global _registry
    by_code = _by_code(registry)
    declared = {op.key: operation_policy(op) for op in registry}
    _registry = registry
    OPERATIONS.clear()
    OPERATIONS.update(by_code)
    _DECLARED.clear()
    _DECLARED.update(declared)


UNKNOWN_OPERATION = OperationPolicy((Need("*", "cruds"),), levels=frozenset({"system"}))


@dataclass
class AccessRequest:
    """What one request (or one transaction entry) asks to do."""
    interaction: str  # a key of LETTER, "operation", "transaction", "public" or "unknown"
    rtype: str | None = None
    rid: str | None = None
    operation: str | None = None
    needs: list[Need] = field(default_factory=list)
    levels: frozenset[str] = frozenset({"patient", "user", "system"})
    policy: OperationPolicy | None = None


class Denied(Forbidden):
    """403 insufficient_scope, rendered as an OperationOutcome."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        self.message = message


def operation_name(template: str) -> str | None:
    for seg in template.split("/"):
        if seg.startswith("$"):
            return seg[1:]
    return None


def classify(method: str, template: str, path_params: dict[str, str],
             query: list[tuple[str, str]]) -> AccessRequest:
    interaction = ROUTES.get((method, template))
    rtype = path_params.get("rtype")
    rid = path_params.get("rid")
    if interaction == "public":
        return AccessRequest("public")
    if interaction == "transaction":
        return AccessRequest("transaction")
    if interaction is not None:
        if interaction == "search-compartment":
            rid = path_params.get("pid")
        needs = [Need(rtype or "*", LETTER[interaction])]
        if interaction in ("search-type", "search-compartment"):
            needs += include_needs(query)
        return AccessRequest(interaction, rtype, rid, needs=needs)
    declared = _registry.route(method, template[len(FHIR):]) if template.startswith(FHIR + "/") else None
    if declared is not None:
        op = declared.operation.code
        endpoint = declared.endpoint
        op_type = path_params.get("rtype") or (endpoint.types[0] if endpoint.level != "system" else None)
        op_id = path_params.get(endpoint.id_param) if endpoint.level == "instance" else None
        policy = _DECLARED[declared.operation.key]
    else:  # a $code route registered outside the registry: the policy of that code, else closed
        name = operation_name(template)
        if name is None:
            return AccessRequest("unknown")
        op = name
        segs = template.split("/")[2:]
        before = segs[: segs.index(f"${op}")]
        op_type = next((s for s in before if not s.startswith("{")), None)
        op_id = next((path_params.get(s.strip("{}")) for s in before if s.startswith("{")), None)
        policy = OPERATIONS.get(op, UNKNOWN_OPERATION)
    path_type = op_type or "*"
    names = policy.type_names()
    types = [v for k, v in query if k in names] if names else []
    return AccessRequest("operation", op_type, op_id, operation=op, needs=operation_needs(policy, path_type, types),
                         levels=policy.levels, policy=policy)


def operation_needs(policy: OperationPolicy, path_type: str, type_values: list[str]) -> list[Need]:
    """What an operation call needs: the declared needs, the path's type for ``{type}``, and for an operation
    with type parameters the listed types (comma-separated values) in place of "*"."""
    needs = [Need(path_type, n.letters) if n.rtype == PATH_TYPE else n for n in policy.needs]
    types = [t.strip() for v in type_values for t in v.split(",") if t.strip()]
    if types:
        needs = [n for n in needs if n.rtype != "*"] + [Need(t, n.letters) for t in types
                                                         for n in policy.needs if n.rtype == "*"]
    return needs


def with_body_types(access: AccessRequest, query: list[tuple[str, str]], body_values: list[str]) -> AccessRequest:
    """``access`` with its needs recomputed when a POST body lists types too: the operation reads the query's
    and the body's type parameters together, so the needs must cover both."""
    pol = access.policy
    if pol is None or not body_values:
        return access
    names = pol.type_names()
    types = [v for k, v in query if k in names] + body_values
    return AccessRequest(access.interaction, access.rtype, access.rid, operation=access.operation,
                         needs=operation_needs(pol, access.rtype or "*", types), levels=access.levels, policy=pol)


def include_needs(query: list[tuple[str, str]]) -> list[Need]:
    """_include targets with an explicit type and _revinclude sources must be searchable too."""
    out: list[Need] = []
    for k, v in query:
        base = k.split(":")[0]
        parts = v.split(":")
        if base == "_include" and len(parts) >= 3 and parts[2] != "*":
            out.append(Need(parts[2], "s"))
        elif base == "_revinclude" and parts and parts[0] and parts[0] != "*":
            out.append(Need(parts[0], "s"))
    return out


def check(scopes: ScopeSet, req: AccessRequest) -> None:
    """Raise Denied unless some granted scope covers every needed (type, letter) at an allowed level."""
    if req.interaction == "unknown":
        raise Denied("This endpoint has no access policy; it is closed to every token")
    if req.interaction == "operation" and not req.needs and not any(s.level in req.levels for s in scopes.resource):
        # an operation that needs no particular scope (a job's status: its owner's grant is checked there)
        # still needs some FHIR access at an allowed level
        raise Denied(f"The granted scopes give no FHIR access at level {'/'.join(sorted(req.levels))}")
    missing = sorted((req.policy.scopes if req.policy is not None else frozenset()) - scopes.other)
    if req.interaction == "operation" and missing:
        raise Denied(f"The granted scopes do not allow operation ${req.operation}: it needs the scope "
                     f"{' and '.join(missing)}")
    for need in req.needs:
        for letter in need.letters:
            ok = any(s.covers(need.rtype, letter) and s.level in req.levels for s in scopes.resource)
            if not ok:
                what = f"operation ${req.operation}" if req.operation else req.interaction
                levels = "/".join(sorted(req.levels))
                raise Denied(f"The granted scopes do not allow {what}: it needs '{letter}' on "
                             f"{need.rtype} at level {levels}")


def confined(scopes: ScopeSet, rtype: str, letters: str = "rs") -> bool:
    """True when the only scopes giving ``rtype`` are patient/ ones: results are then confined to the
    launch patient's compartment."""
    key = ("confined", rtype, letters)
    hit = scopes.memo.get(key)
    if hit is None:
        cover = [s for s in scopes.resource if any(s.covers(rtype, c) for c in letters)]
        hit = scopes.memo[key] = bool(cover) and all(s.level == "patient" for s in cover)
    return bool(hit)


def readable(scopes: ScopeSet, rtype: str) -> bool:
    key = ("readable", rtype)
    hit = scopes.memo.get(key)
    if hit is None:
        hit = scopes.memo[key] = any(s.covers(rtype, "r") or s.covers(rtype, "s") for s in scopes.resource)
    return bool(hit)


def scope_filters(scopes: ScopeSet, rtype: str, letter: str) -> list[tuple[str, str]] | None:
    """Search parameters a v2 scope query adds (``?category=…``); None when some covering scope has none.
    Several filtered scopes must name one and the same parameter; their values are then OR-ed."""
    key = ("filters", rtype, letter)
    if key in scopes.memo:
        hit = scopes.memo[key]
        return list(hit) if hit is not None else None  # type: ignore[call-overload]
    out = _scope_filters(scopes, rtype, letter)
    scopes.memo[key] = tuple(out) if out is not None else None  # a refusal (Denied) is not remembered
    return out


def _scope_filters(scopes: ScopeSet, rtype: str, letter: str) -> list[tuple[str, str]] | None:
    cover = [s for s in scopes.resource if s.covers(rtype, letter)]
    if not cover or any(not s.query for s in cover):
        return None
    if len(cover) == 1:
        return list(cover[0].query)
    names = {k for s in cover for k, _ in s.query}
    if len(names) == 1 and all(len(s.query) == 1 for s in cover):
        name = names.pop()
        return [(name, ",".join(dict.fromkeys(s.query[0][1] for s in cover)))]
    raise Denied(f"The granted scopes for {rtype} carry filters that cannot be combined into one search")

"""The operation registry kernel: how a FHIR operation the gateway serves is declared, once.

Each ``Operation`` names its ``$code``, the levels it answers at (system, type, instance, with the resource
types at each), its HTTP methods and handlers, its parameters, the scopes it needs, how patient/ scopes are
confined, whether it runs asynchronously, its OperationDefinition canonical and its documentation.

The declarations live with their capability (``gateway/deqm/care_gaps/declaration.py``,
``gateway/bulk/declarations.py``, ``gateway/atr/declarations.py``, ...); the app assembly
(``gateway/app.py``) collects them into one ``Registry`` and hands that registry to everything derived from
it, so no layer below the capability packages imports them:

- the FastAPI routes (``gateway/api/routes.py`` builds them from the endpoints; an operation route registered
  any other way has no policy and is closed by the auth middleware);
- the authorization policy (``gateway/auth/policy.py``: ``install`` takes the registry; ``OPERATIONS`` and
  the per-route lookup are views of it);
- the CapabilityStatement's operation lists (``gateway/rest/capability.py``: system-level operations
  under ``rest.operation``, type and instance-level ones under ``rest.resource[].operation``);
- the OpenAPI summaries and descriptions;
- the route-enumeration and adversarial tests (``tests/security/test_registry_*.py``).

This module is plain data (no FastAPI, no store): the auth kernel imports it. Handlers are named as
``"module:function"`` strings relative to ``gateway`` (e.g. ``deqm.care_gaps.handler:care_gaps_type``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["system", "type", "instance"]
SCOPE_LEVELS: frozenset[str] = frozenset({"patient", "user", "system"})
USER_SYSTEM: frozenset[str] = frozenset({"user", "system"})
# scopes the gateway defines besides SMART's resource scopes, for data that is not a FHIR resource; an
# operation requires them with ``Operation.scopes``, a client gets them only when registered with them
FEEDS_SCOPE = "gateway.feeds.read"  # read the recorded ingest runs ($ingest-runs)
JOBS_ALL_SCOPE = "gateway.jobs.read-all"  # see every client's and user's jobs in $jobs, not only one's own
GATEWAY_SCOPES: dict[str, str] = {
    FEEDS_SCOPE: "See the data feeds loaded into the gateway (ingest runs with their rejected records)",
    JOBS_ALL_SCOPE: "See every user's and system's background jobs and their status",
}
ANY_TYPE = "*"  # in Endpoint.types: every resource type (the path takes a {rtype} parameter)
PATH_TYPE = "{type}"  # in a Need: the resource type the operation's path names


@dataclass(frozen=True)
class Need:
    """One (resource type, permission letters) pair a request needs; ``rtype`` "*" means every type."""
    rtype: str
    letters: str


@dataclass(frozen=True)
class Param:
    """One OperationDefinition parameter as the gateway implements it."""
    name: str
    type: str
    use: Literal["in", "out"] = "in"
    min: int = 0
    max: str = "1"
    documentation: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One HTTP binding of an operation: its level, the resource types there, methods and handler."""
    level: Level
    handler: str  # "module:function" under gateway
    types: tuple[str, ...] = ()  # () at system level; ("*",) for every type
    methods: tuple[str, ...] = ("GET", "POST")
    id_param: str = "rid"  # the handler's parameter that receives the instance id
    suffix: str = ""  # path after the $code segment, e.g. "/{job_id}"

    def path(self, code: str, rtype: str | None = None) -> str:
        """The route template relative to the FHIR base; ``rtype`` defaults to the endpoint's one type
        (or the ``{rtype}`` parameter for every type)."""
        if self.level == "system":
            return f"/${code}{self.suffix}"
        t = rtype or (self.types[0] if len(self.types) == 1 and self.types[0] != ANY_TYPE else "{rtype}")
        if self.level == "type":
            return f"/{t}/${code}{self.suffix}"
        return f"/{t}/{{{self.id_param}}}/${code}{self.suffix}"

    def paths(self, code: str) -> list[str]:
        """Every route template of this endpoint (one per named type, or one with ``{rtype}``)."""
        if self.level == "system" or ANY_TYPE in self.types:
            return [self.path(code)]
        return [self.path(code, t) for t in self.types]

    def serves(self, rtype: str) -> bool:
        """True when this endpoint answers for resource type ``rtype`` (type and instance levels)."""
        return ANY_TYPE in self.types or rtype in self.types


@dataclass(frozen=True)
class Operation:
    """One operation, declared once; see the module docstring for what is derived from it."""
    key: str  # unique in the registry
    code: str  # the $code in URLs
    summary: str
    documentation: str
    endpoints: tuple[Endpoint, ...]
    needs: tuple[Need, ...]
    canonical: str | None = None  # OperationDefinition; None for endpoints the CapabilityStatement omits
    parameters: tuple[Param, ...] = ()
    scope_levels: frozenset[str] = SCOPE_LEVELS  # scope levels (patient/user/system) that may call it
    patient: bool = False  # usable under patient/ scopes; output confined to the launch patient
    subject_param: str | None = None  # under patient/ scopes: required and must name Patient/<P>
    type_params: tuple[str, ...] = ()  # parameters listing types that replace "*" in needs (_type), query or body
    asynchronous: bool = False  # answers 202 and a status URL (always, or with Prefer: respond-async)
    tags: tuple[str, ...] = ()
    extension: tuple[dict[str, str], ...] = ()
    affects_state: bool = False
    part_of: str | None = None  # for endpoints without a canonical: the key of the operation they serve
    scopes: frozenset[str] = frozenset()  # gateway-defined scopes (not resource scopes) the grant must all hold

    @property
    def levels(self) -> frozenset[str]:
        """The levels (system/type/instance) this operation answers at."""
        return frozenset(e.level for e in self.endpoints)

    def types_at(self, level: Level) -> frozenset[str]:
        """Resource types this operation serves at a type or instance level ("*" for all)."""
        return frozenset(t for e in self.endpoints if e.level == level for t in e.types)

    def capability_entry(self) -> dict[str, object]:
        """The CapabilityStatement ``operation`` element for this operation."""
        out: dict[str, object] = {"name": self.code, "definition": self.canonical,
                                  "documentation": self.documentation}
        if self.extension:
            out["extension"] = [dict(e) for e in self.extension]
        return out

    def description(self) -> str:
        """OpenAPI description: the documentation and the declared parameters."""
        lines = [self.documentation]
        if self.canonical:
            lines.append(f"\n\nOperationDefinition: {self.canonical}")
        ins = [p for p in self.parameters if p.use == "in"]
        outs = [p for p in self.parameters if p.use == "out"]
        for title, group in (("Input parameters", ins), ("Output parameters", outs)):
            if group:
                lines.append(f"\n\n{title}:\n")
                lines += [f"\n- `{p.name}` ({p.type}, {p.min}..{p.max}){': ' + p.documentation if p.documentation else ''}"
                          for p in group]
        return "".join(lines)


def group_endpoint(module: str, fn: str, methods: tuple[str, ...] = ("POST",)) -> tuple[Endpoint, ...]:
    """The one instance-level Group endpoint of an operation (ATR and Bulk declare several), with its handler
    named ``module:function`` under gateway."""
    return (Endpoint("instance", f"{module}:{fn}", ("Group",), methods, "group_id"),)


@dataclass(frozen=True)
class Route:
    """One (method, template relative to the FHIR base) the registry declares, with its operation."""
    method: str
    path: str
    operation: Operation
    endpoint: Endpoint


@dataclass
class Registry:
    """Lookups over the collected operations, checked for consistency when built (one key, one route per
    method and path, a canonical or a declared parent for each)."""
    operations: tuple[Operation, ...]
    by_key: dict[str, Operation] = field(default_factory=dict)
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for op in self.operations:
            if op.key in self.by_key:
                raise ValueError(f"operation {op.key} is declared twice")
            self.by_key[op.key] = op
            if not op.endpoints:
                raise ValueError(f"operation {op.key} declares no endpoint")
            if op.patient != ("patient" in op.scope_levels):
                raise ValueError(f"operation {op.key}: 'patient' and the patient scope level disagree")
            for e in op.endpoints:
                if (e.level == "system") != (not e.types):
                    raise ValueError(f"${op.code}: a system-level endpoint names no types, the others do")
                for path in e.paths(op.code):
                    for m in e.methods:
                        if (m, path) in self.routes:
                            raise ValueError(f"{m} {path} is declared twice")
                        self.routes[(m, path)] = Route(m, path, op, e)

        for op in self.operations:
            parent = self.by_key.get(op.part_of or "")
            if op.canonical is None and (parent is None or parent.canonical is None):
                raise ValueError(f"operation {op.key} has no canonical and is part of no declared operation")

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def route(self, method: str, path: str) -> Route | None:
        """The declared route for (method, template relative to the FHIR base), or None."""
        return self.routes.get((method, path))

    def claimed(self, op: Operation) -> Operation:
        """The operation the CapabilityStatement lists for ``op`` (itself, or the one it is part of)."""
        return op if op.canonical else self.by_key[op.part_of or ""]

    def system_operations(self) -> list[Operation]:
        """Operations the CapabilityStatement lists under ``rest.operation``."""
        return [op for op in self.operations if op.canonical and "system" in op.levels]

    def resource_operations(self, rtype: str) -> list[Operation]:
        """Operations the CapabilityStatement lists under the ``rest.resource`` entry of ``rtype``."""
        return [op for op in self.operations if op.canonical and any(
            e.level in ("type", "instance") and e.serves(rtype) for e in op.endpoints)]


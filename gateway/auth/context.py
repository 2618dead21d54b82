"""The authorization of the request being served, visible to the services below the HTTP layer (search
constraints) through a context variable that the auth middleware sets."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .scopes import ScopeSet
from .search_scope import narrow_reach


@dataclass
class Grant:
    """An authenticated caller: who, with which client, which scopes and which launch context."""
    client_id: str
    scopes: ScopeSet
    subject: str | None = None
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    jti: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # (system, value) of the fhirUser resource's identifiers, read once when first needed (auth/groups.py)
    identifiers: frozenset[tuple[str, str]] | None = field(default=None, compare=False, repr=False)


current: ContextVar[Grant | None] = ContextVar("gateway_auth_grant", default=None)


def constrain_search(q: Any, parser: Any) -> None:
    """Narrow a parsed search to what the current grant may see: the launch patient's compartment for
    patient/-only types, and the filters of v2 scope queries; the same for every type the search reaches
    through chains, ``_has`` and includes (auth/search_scope.py), refusing types the grant cannot search."""
    grant = current.get()
    if grant is None:
        return
    from . import policy
    from .compartment import compartment_types

    rtype = q.resource_type
    if policy.confined(grant.scopes, rtype):
        if not grant.patient:
            raise policy.Denied("patient/ scopes need a launch patient, and this token has none")
        comp = compartment_types()
        if rtype == "Patient":
            q.criteria.append(parser.criterion("Patient", "_id", grant.patient))
        elif rtype in comp:
            from ..search.query import Criterion, RefValue

            q.criteria.append(Criterion("_compartment", "_compartment", None, None,
                                        [RefValue("Patient", grant.patient, None)], has_param=",".join(comp[rtype])))
    filters = policy.scope_filters(grant.scopes, rtype, "s")
    for name, value in filters or []:
        q.criteria.append(parser.criterion(rtype, name, value))
    narrow_reach(q, parser, grant)

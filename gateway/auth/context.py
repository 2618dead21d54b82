"""The authorization of the request being served, visible to the services below the HTTP layer (search
constraints, the store gate in auth/gate.py) through a context variable that the auth middleware sets.

The variable fails closed: unset means no access, never "allow everything". Work done for the server itself
(the CLI, ``--auth off``, demo loading at startup, internal bookkeeping) runs under the explicit ``SYSTEM``
grant, set with ``acting_as``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    # the patients attributed to an ATR caller, with when and at which Group change stamp they were computed:
    # (process generation, monotonic time, stamp, patient ids); see auth/groups.py ``attributed_patients``
    attributed: tuple[int, float, Any, frozenset[str]] | None = field(default=None, compare=False, repr=False)
    # the server acting for itself (never a token's grant): every check passes without looking at data
    system: bool = field(default=False, compare=False)


# the one all-access grant: the CLI, --auth off, startup and internal bookkeeping; never issued to a client
SYSTEM = Grant(client_id="gateway-system", scopes=ScopeSet.parse("system/*.cruds"), subject="system", system=True)

current: ContextVar[Grant | None] = ContextVar("gateway_auth_grant", default=None)


class NoGrant(RuntimeError):
    """Stored data was reached with no grant set: a programming error (a code path that forgot to say on
    whose behalf it acts). It is never answered as data; the request fails."""


def current_grant() -> Grant:
    """The grant of the caller being served; raises NoGrant when none is set (fail closed)."""
    grant = current.get()
    if grant is None:
        raise NoGrant("no grant is set: stored data is reached only on behalf of a caller or the system")
    return grant


@contextmanager
def acting_as(grant: Grant) -> Iterator[Grant]:
    """Run the enclosed block on behalf of ``grant`` (the previous grant is restored after it)."""
    token = current.set(grant)
    try:
        yield grant
    finally:
        current.reset(token)


def constrain_search(q: Any, parser: Any) -> None:
    """Narrow a parsed search to what the current grant may see: the launch patient's compartment for
    patient/-only types, and the filters of v2 scope queries; the same for every type the search reaches
    through chains, ``_has`` and includes (auth/search_scope.py), refusing types the grant cannot search."""
    grant = current.get()
    if grant is None or grant.system:
        return  # no grant: the gated store refuses the search itself (auth/gate.py)
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

"""What a grant lets a search reach beyond its own type: the types behind chained parameters, reverse chains
(``_has``) and ``_include``/``_revinclude`` (also ``:iterate``).

A chain or ``_has`` is a question about another type: ``Practitioner?_has:Observation:performer:code=X``
answers yes or no about Observations, whoever they belong to. So each type a search reaches this way must
be searchable under the grant (else 403), and the sub-query over it is narrowed exactly as a top-level
search of that type would be: to the launch patient's compartment under patient/ scopes, and by the
filters of v2 scope queries (``patient/Observation.rs?category=laboratory``).

Included resources are narrowed the same way, in the store's include query. An include naming its type
explicitly (``_include=Observation:subject:Patient``, ``_revinclude=Observation:subject``) is refused when
the type is not searchable; an include without a target type only fetches the target types the grant may
search.

Pure logic over the parsed query: no I/O. Called by ``context.constrain_search`` once the top-level type
has been narrowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from ..fhir.resource_types import RESOURCE_TYPES
from ..search.params import registry
from ..search.query import Criterion, Include, QueryParser, RefValue, SearchQuery, TokenValue
from . import policy
from .compartment import compartment_types
from .groups import restricted
from .scopes import ScopeSet


class Grant(Protocol):
    """What this module reads of a grant (auth/context.py's Grant)."""
    scopes: ScopeSet
    patient: str | None
    fhir_user: str | None


def searchable(grant: Grant, rtype: str) -> bool:
    """True when some granted scope allows searching ``rtype`` (the 's' permission)."""
    return any(s.covers(rtype, "s") for s in grant.scopes.resource)


def group_membership_hidden(grant: Grant) -> bool:
    """True when the grant reads some Groups, or parts of them, but not the membership of every Group: an
    attribution-restricted caller (its own lists only) or patient/ scopes (a patient's own member entries
    only). A chain or ``_has`` into Group would answer about the other Groups and members, so such a grant
    may not search through Group (the gate decides Group reads on the content, which SQL cannot repeat)."""
    return restricted(grant.fhir_user) or policy.confined(grant.scopes, "Group")


def confinement(grant: Grant, rtype: str, parser: QueryParser) -> list[Criterion]:
    """The criteria that narrow a search of ``rtype`` to what the grant may see of it: the launch
    patient's compartment when only patient/ scopes give the type, plus the filters of v2 scope queries.
    An empty list means the grant sees every resource of the type."""
    out: list[Criterion] = []
    if policy.confined(grant.scopes, rtype):
        comp = compartment_types()
        if rtype == "Patient" or rtype in comp:
            if not grant.patient:
                raise policy.Denied("patient/ scopes need a launch patient, and this token has none")
            if rtype == "Patient":
                out.append(parser.criterion("Patient", "_id", grant.patient))
            else:
                out.append(Criterion("_compartment", "_compartment", None, None,
                                     [RefValue("Patient", grant.patient, None)], has_param=",".join(comp[rtype])))
    for name, value in policy.scope_filters(grant.scopes, rtype, "s") or []:
        out.append(parser.criterion(rtype, name, value))
    return out


def narrow_reach(q: SearchQuery, parser: QueryParser, grant: Grant) -> None:
    """Refuse (403) a search whose chains, ``_has`` or explicitly typed includes reach a type the grant may
    not search, and confine every such sub-query and include to what the grant may see of its type."""
    reach = _Reach(grant, parser)
    q.criteria = [reach.criterion(c) for c in q.criteria]
    q.includes = [inc for inc in (reach.include(i, reverse=False) for i in q.includes) if inc is not None]
    q.revincludes = [inc for inc in (reach.include(i, reverse=True) for i in q.revincludes) if inc is not None]


class _Reach:
    def __init__(self, grant: Grant, parser: QueryParser) -> None:
        self.grant = grant
        self.parser = parser
        self.memo: dict[str, list[Criterion]] = {}

    def _limits(self, rtype: str, how: str) -> list[Criterion]:
        if not searchable(self.grant, rtype):
            raise policy.Denied(f"This search reaches {rtype} through {how}, and the granted scopes do not "
                                f"allow searching {rtype}")
        if rtype not in self.memo:
            self.memo[rtype] = confinement(self.grant, rtype, self.parser)
        return self.memo[rtype]

    def _wrap(self, inner: Criterion, rtype: str, how: str) -> Criterion:
        if rtype == "Group" and group_membership_hidden(self.grant):
            raise policy.Denied(f"This search asks about Group membership through {how}, and this grant reads "
                                "Groups only in part (its own attribution lists, or a patient's own member "
                                "entries); read the Group itself instead")
        inner = self.criterion(inner)
        limits = self._limits(rtype, how)
        if not limits:
            return inner
        return Criterion("_all", "_all", None, None, [inner, *limits])

    def criterion(self, c: Criterion) -> Criterion:
        """``c`` with the sub-query of every chain and ``_has`` in it confined (recursively)."""
        if c.name == "_has" and c.chain is not None and c.has_type:
            c.chain = self._wrap(c.chain, c.has_type, f"_has:{c.has_type}:{c.has_param}")
        elif c.chain is not None and c.chain_type:
            c.chain = self._wrap(c.chain, c.chain_type, f"the chained parameter '{c.name}'")
        elif c.values and isinstance(c.values[0], tuple):  # a chain OR-ed over several target types
            c.values = [(tag, t, self._wrap(inner, t, f"the chained parameter '{c.name}'"))
                        for tag, t, inner in c.values]
        return c

    def include(self, inc: Include, reverse: bool) -> Include | None:
        """The include narrowed to the types and resources the grant may see; None when it can reach none."""
        how = f"{'_revinclude' if reverse else '_include'}={inc.source_type}:{inc.param}"
        if reverse:
            types: list[str] = [inc.source_type]
            explicit = True
        elif inc.target_type:
            types, explicit = [inc.target_type], True
        else:
            sp = registry().get(inc.source_type, inc.param) if inc.param != "*" else None
            types = list(sp.targets) if sp is not None and sp.targets else sorted(RESOURCE_TYPES)
            explicit = False
        allowed: list[tuple[str, tuple[Criterion, ...]]] = []
        for t in types:
            if not explicit and not searchable(self.grant, t):
                continue  # not named by the request: the include just does not reach it
            allowed.append((t, tuple(self._limits(t, how))))
        if not allowed:
            return None
        if all(not limits for _, limits in allowed) and (explicit or len(allowed) == len(types)):
            return inc  # nothing to narrow
        return Include(inc.source_type, inc.param, inc.target_type, inc.iterate, allowed=tuple(allowed))



# -- attribution-restricted callers: their attributed patients only ------------------------------------------

def attribution_criteria(rtype: str, patients: frozenset[str]) -> list[Criterion]:
    """The criterion that keeps a search of ``rtype`` to the compartments of ``patients`` (for Patient: those
    patients), the same SQL as the launch patient's compartment under patient/ scopes with a set of patient
    ids instead of one; no patients match nothing."""
    ids = sorted(patients)
    if rtype == "Patient":
        return [Criterion("_id", "_id", None, None, [TokenValue(None, i) for i in ids])]
    return [Criterion("_compartment", "_compartment", None, None, [RefValue("Patient", i, None) for i in ids],
                      has_param=",".join(compartment_types()[rtype]))]


def narrow_attribution(q: SearchQuery, confined: Callable[[str], bool],
                       patients: Callable[[], frozenset[str]]) -> SearchQuery:
    """A copy of ``q`` narrowed, for every type ``confined`` names, to the compartments of the ``patients()``
    (asked only when some type reached is confined): the searched type, the sub-queries of chains and
    ``_has`` (recursively) and the resources includes fetch. ``q`` itself is left as it is (a caller may
    search it again)."""
    memo: dict[str, list[Criterion]] = {}
    known: list[frozenset[str]] = []

    def limits(rtype: str) -> list[Criterion]:
        if rtype not in memo:
            if confined(rtype) and not known:
                known.append(patients())
            memo[rtype] = attribution_criteria(rtype, known[0]) if confined(rtype) else []
        return memo[rtype]

    def wrap(inner: Criterion, rtype: str) -> Criterion:
        inner = walk(inner)
        extra = limits(rtype)
        return Criterion("_all", "_all", None, None, [inner, *extra]) if extra else inner

    def walk(c: Criterion) -> Criterion:
        if c.name == "_has" and c.chain is not None and c.has_type:
            return replace(c, chain=wrap(c.chain, c.has_type))
        if c.chain is not None and c.chain_type:
            return replace(c, chain=wrap(c.chain, c.chain_type))
        if c.values and isinstance(c.values[0], tuple):  # a chain OR-ed over several target types
            return replace(c, values=[(tag, t, wrap(inner, t)) for tag, t, inner in c.values])
        if c.name == "_all":
            return replace(c, values=[walk(x) for x in c.values])
        return c

    def include(inc: Include, reverse: bool) -> Include:
        if inc.allowed is not None:
            allowed = inc.allowed
        else:
            if reverse:
                types = [inc.source_type]
            elif inc.target_type:
                types = [inc.target_type]
            else:
                sp = registry().get(inc.source_type, inc.param) if inc.param != "*" else None
                types = list(sp.targets) if sp is not None and sp.targets else sorted(RESOURCE_TYPES)
            allowed = tuple((t, ()) for t in types)
        if not any(limits(t) for t, _ in allowed):
            return inc
        return replace(inc, allowed=tuple((t, (*crits, *limits(t))) for t, crits in allowed))

    out = replace(q, criteria=[walk(c) for c in q.criteria], includes=[include(i, False) for i in q.includes],
                  revincludes=[include(i, True) for i in q.revincludes])
    out.criteria.extend(limits(q.resource_type))
    return out

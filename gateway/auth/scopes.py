"""SMART scope grammar (App Launch 2.2 §scopes): v2 ``patient/Observation.rs?category=…`` and v1
``patient/Observation.read``, v1 normalised to v2. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qsl

LEVELS = ("patient", "user", "system")
LETTERS = "cruds"
V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXT_SCOPES = frozenset({"launch", "launch/patient", "launch/encounter", "openid", "fhirUser", "profile",
                            "offline_access", "online_access"})


class ScopeError(ValueError):
    """A scope string that looks like a resource scope but breaks the grammar."""


@dataclass(frozen=True)
class ResourceScope:
    level: str  # patient | user | system
    rtype: str  # a resource type or "*"
    perms: frozenset[str]  # subset of c r u d s
    query: tuple[tuple[str, str], ...] = ()
    raw: str = ""

    def covers(self, rtype: str, letter: str) -> bool:
        return (self.rtype == "*" or self.rtype == rtype) and letter in self.perms

    def includes(self, other: ResourceScope) -> bool:
        """True when every right ``other`` gives is also given by this scope (used to narrow requests)."""
        return (self.level == other.level and (self.rtype == "*" or self.rtype == other.rtype)
                and other.perms <= self.perms and set(self.query) <= set(other.query))

    @property
    def v2(self) -> str:
        perms = "".join(c for c in LETTERS if c in self.perms)
        q = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.level}/{self.rtype}.{perms}" + (f"?{q}" if q else "")


def is_resource_scope(token: str) -> bool:
    head = token.split("/", 1)[0]
    return head in LEVELS and "/" in token


def parse_scope(token: str) -> ResourceScope:
    """Parse one resource scope; raises ScopeError for anything outside the v1/v2 grammar."""
    level, _, rest = token.partition("/")
    if level not in LEVELS or not rest:
        raise ScopeError(f"not a resource scope: {token}")
    body, _, query = rest.partition("?")
    rtype, dot, perms = body.rpartition(".")
    if not dot or not rtype or not perms:
        raise ScopeError(f"scope {token} needs <type>.<permissions>")
    if rtype != "*" and not (rtype[:1].isupper() and rtype.isalnum()):
        raise ScopeError(f"scope {token} names no resource type")
    if perms in V1_PERMS:
        if query:
            raise ScopeError(f"v1 scope {token} cannot carry a query")
        letters = V1_PERMS[perms]
    else:
        if any(c not in LETTERS for c in perms) or list(perms) != sorted(perms, key=LETTERS.index) \
                or len(set(perms)) != len(perms):
            raise ScopeError(f"scope {token}: permissions must be an in-order subset of 'cruds'")
        letters = perms
    pairs = tuple(parse_qsl(query, keep_blank_values=False)) if query else ()
    if query and not pairs:
        raise ScopeError(f"scope {token} has an empty query")
    return ResourceScope(level, rtype, frozenset(letters), pairs, token)


@dataclass
class ScopeSet:
    """A parsed scope string: resource scopes plus the other (context, identity, custom) scopes."""
    resource: list[ResourceScope] = field(default_factory=list)
    other: set[str] = field(default_factory=set)
    invalid: list[str] = field(default_factory=list)
    # answers of the policy's pure questions about this set (it is not changed after parsing, and a token's
    # set is cached with the token): asked on every request, computed once
    memo: dict[tuple[str, ...], object] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, scope: str | None) -> ScopeSet:
        out = cls()
        for tok in (scope or "").split():
            if is_resource_scope(tok):
                try:
                    out.resource.append(parse_scope(tok))
                except ScopeError:
                    out.invalid.append(tok)
            else:
                out.other.add(tok)
        return out

    def covering(self, rtype: str, letter: str) -> list[ResourceScope]:
        return [s for s in self.resource if s.covers(rtype, letter)]

    def levels(self) -> set[str]:
        key = ("levels",)
        if key not in self.memo:
            self.memo[key] = frozenset(s.level for s in self.resource)
        return set(cast("frozenset[str]", self.memo[key]))

    def to_string(self) -> str:
        key = ("string",)
        if key not in self.memo:
            self.memo[key] = " ".join([s.raw for s in self.resource] + sorted(self.other))
        return cast(str, self.memo[key])


def narrow(requested: str | None, allowed: str | None) -> tuple[str, list[str]]:
    """Keep the requested scopes that the allowed scope string grants; returns (granted, refused)."""
    allow = ScopeSet.parse(allowed)
    granted: list[str] = []
    refused: list[str] = []
    for tok in (requested or "").split():
        if is_resource_scope(tok):
            try:
                s = parse_scope(tok)
            except ScopeError:
                refused.append(tok)
                continue
            ok = any(a.includes(s) for a in allow.resource)
        else:
            ok = tok in allow.other
        (granted if ok else refused).append(tok)
    return " ".join(dict.fromkeys(granted)), refused

"""Parse FHIR search query strings into a store-neutral SearchQuery (FHIR R4 search, §3.1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..fhir.dates import DateParseError, parse_range
from ..fhir.errors import BadRequest, Issue
from ..fhir.resource_types import RESOURCE_TYPES
from .cursor import PageCursor
from .index import LONG, SHORT, clip, norm
from .params import COMMON, RESULT_PARAMS, SearchParam, registry

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing", "of-type"},
    "reference": {"missing", "identifier"},  # plus :Type
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "below", "above"},
    "composite": {"missing"},
    "special": set(),
}


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None


@dataclass(frozen=True)
class DateValue:
    prefix: str
    lo: str
    hi: str


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: float
    lo: float  # implicit precision range for eq/ne/ap
    hi: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class RefValue:
    type: str | None
    id: str | None
    url: str | None


@dataclass(frozen=True)
class CompositeValue:
    first: TokenValue
    second: Any  # TokenValue, NumberValue, DateValue or str (normalised string)


@dataclass
class Criterion:
    name: str
    ptype: str
    param: SearchParam | None
    modifier: str | None = None
    values: list[Any] = field(default_factory=list)  # OR-ed
    chain: Criterion | None = None  # criterion applied to the referenced resource
    chain_type: str | None = None
    has_type: str | None = None  # _has: resource type referring to us
    has_param: str | None = None


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str  # '*' for all reference params
    target_type: str | None
    iterate: bool = False
    # set by authorization (auth/search_scope.py): the only types the include may fetch, each with the
    # criteria its resources must also meet; None fetches every target
    allowed: tuple[tuple[str, tuple[Criterion, ...]], ...] | None = field(default=None, compare=False, hash=False)


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    count: int = 20
    offset: int = 0
    summary: str | None = None
    elements: list[str] | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    total: str = "accurate"  # none | estimate | accurate
    warnings: list[Issue] = field(default_factory=list)
    ids_only: bool = False
    # keyset paging (search/cursor.py): the raw ``_cursor`` token as sent, and the position the service
    # decoded from it; the store pages from ``cursor`` when set, else from ``offset``
    cursor_token: str | None = None
    cursor: PageCursor | None = None


def split_escaped(value: str, sep: str, keep: str = "") -> list[str]:
    """Split on ``sep`` honouring backslash escapes (``\\,``, ``\\|``, ``\\$``); escapes of the characters in
    ``keep`` stay in place for a later split."""
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2] if value[i + 1] in keep else value[i + 1])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _split_or(value: str) -> list[str]:
    """Split an OR list on unescaped commas, keeping ``\\|`` and ``\\$`` for the value parser."""
    return split_escaped(value, ",", keep="|$")


def _prefix(raw: str) -> tuple[str, str]:
    if len(raw) > 2 and raw[:2] in PREFIXES and not raw[2:3].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


def parse_token(raw: str) -> TokenValue:
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, clip(parts[0]))
    system, code = parts[0], "|".join(parts[1:])
    return TokenValue(clip(system), clip(code) or None)


def parse_date(raw: str, name: str) -> DateValue:
    prefix, rest = _prefix(raw)
    try:
        lo, hi = parse_range(rest)
    except DateParseError:
        raise BadRequest(f"Invalid date value {raw!r} for search parameter '{name}'") from None
    return DateValue(prefix, lo, hi)


def parse_number(raw: str, name: str, quantity: bool) -> NumberValue:
    prefix, rest = _prefix(raw)
    system = code = None
    if quantity:
        parts = split_escaped(rest, "|")
        rest = parts[0]
        if len(parts) >= 3:
            system, code = parts[1] or None, parts[2] or None
        elif len(parts) == 2:
            code = parts[1] or None
    try:
        d = Decimal(rest)
    except InvalidOperation:
        raise BadRequest(f"Invalid number {raw!r} for search parameter '{name}'") from None
    exp = d.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (exp - 1) if isinstance(exp, int) else Decimal(0)
    return NumberValue(prefix, float(d), float(d - half), float(d + half), system, code)


def parse_reference(raw: str, modifier: str | None, sp: SearchParam, base_url: str | None) -> RefValue:
    value = raw
    if base_url and value.startswith(base_url.rstrip("/") + "/"):
        value = value[len(base_url.rstrip("/")) + 1:]
    if "://" in value or value.startswith("urn:"):
        return RefValue(None, None, clip(value.split("|")[0], LONG))
    parts = value.split("/_history/")[0].split("/")
    if len(parts) == 2 and parts[0] in RESOURCE_TYPES:
        return RefValue(parts[0], clip(parts[1]), None)
    if modifier and modifier in RESOURCE_TYPES:
        return RefValue(modifier, clip(value), None)
    return RefValue(None, clip(value), None)


# bounds on what one search may carry (docs/operations.md; Settings.search_max_*): every parameter and
# OR-ed value adds a sub-query, and a few thousand of them overflow SQLite's expression depth or keep
# PostgreSQL's planner busy for minutes
MAX_PARAMS = 50
MAX_VALUES = 400
MAX_CHAIN = 4  # chained and _has levels in one parameter name
MAX_OFFSET = 2**31 - 1
# C0 control characters and DEL: NUL truncates a match on SQLite and is refused by PostgreSQL; none of
# them belongs in a search (tab, line feed and carriage return are kept: FHIR strings may hold them)
_CONTROL = frozenset(chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))


def check_text(name: str, value: str) -> None:
    """Refuse (400) a search parameter whose name or value holds a control character."""
    if not _CONTROL.isdisjoint(name) or not _CONTROL.isdisjoint(value):
        raise BadRequest("Search parameters must not contain control characters (such as NUL)")


class QueryParser:
    def __init__(self, base_url: str | None = None, strict: bool = False, default_count: int = 20,
                 max_count: int = 1000, max_params: int = MAX_PARAMS, max_values: int = MAX_VALUES,
                 max_chain: int = MAX_CHAIN) -> None:
        self.base_url = base_url
        self.strict = strict
        self.default_count = default_count
        self.max_count = max_count
        self.max_params = max_params
        self.max_values = max_values
        self.max_chain = max_chain

    def check_bounds(self, params: list[tuple[str, str]]) -> None:
        """Refuse (400, too-costly) a search carrying more parameters, OR-ed values or chain levels than
        the configured bounds, and any control character, before anything is parsed or run."""
        if len(params) > self.max_params:
            raise BadRequest(f"A search may carry at most {self.max_params} parameters; this one has "
                             f"{len(params)}", code="too-costly")
        values = 0
        for name, value in params:
            check_text(name, value)
            values += value.count(",") + 1
            if name.count(".") + name.count("_has:") > self.max_chain:
                raise BadRequest(f"A search parameter may chain at most {self.max_chain} levels",
                                 code="too-costly")
        if values > self.max_values:
            raise BadRequest(f"A search may carry at most {self.max_values} values; this one has {values}",
                             code="too-costly")

    def parse(self, resource_type: str, params: list[tuple[str, str]]) -> SearchQuery:
        self.check_bounds(params)
        q = SearchQuery(resource_type, count=self.default_count)
        for name, value in params:
            if name in RESULT_PARAMS or name.startswith("_include") or name.startswith("_revinclude"):
                self._result_param(q, name, value)
                continue
            try:
                crit = self.criterion(resource_type, name, value)
            except _UnknownParam as exc:
                msg = f"Unknown search parameter '{exc.args[0]}' for resource type {resource_type}"
                if self.strict:
                    raise BadRequest(msg, code="not-supported") from None
                q.warnings.append(Issue("warning", "not-supported", msg + " (ignored)"))
                continue
            q.criteria.append(crit)
        return q

    def _result_param(self, q: SearchQuery, name: str, value: str) -> None:
        if name == "_count":
            try:
                q.count = max(0, min(int(value), self.max_count))
            except ValueError:
                raise BadRequest(f"_count must be an integer, got {value!r}") from None
        elif name == "_cursor":
            q.cursor_token = value
        elif name == "_offset":
            try:
                q.offset = max(0, int(value))
            except ValueError:
                raise BadRequest(f"_offset must be an integer, got {value!r}") from None
            if q.offset > MAX_OFFSET:
                raise BadRequest(f"_offset must be at most {MAX_OFFSET}")
        elif name == "_sort":
            for part in value.split(","):
                part = part.strip()
                if not part:
                    continue
                desc = part.startswith("-")
                code = part.lstrip("-")
                if code not in COMMON and registry().get(q.resource_type, code) is None:
                    raise BadRequest(f"Unknown sort parameter '{code}' for {q.resource_type}")
                q.sort.append((code, desc))
        elif name == "_summary":
            if value not in ("true", "false", "count", "text", "data"):
                raise BadRequest(f"Invalid _summary value {value!r}")
            q.summary = None if value == "false" else value
        elif name == "_elements":
            q.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise BadRequest(f"Invalid _total value {value!r}")
            q.total = value
        elif name.startswith("_include") or name.startswith("_revinclude"):
            rev = name.startswith("_revinclude")
            iterate = name.endswith(":iterate") or name.endswith(":recurse")
            inc = self._parse_include(value, q.resource_type, rev, iterate)
            (q.revincludes if rev else q.includes).append(inc)

    def _parse_include(self, value: str, rtype: str, rev: bool, iterate: bool) -> Include:
        if value == "*":
            return Include(rtype, "*", None, iterate)
        parts = value.split(":")
        if len(parts) < 2 or parts[0] not in RESOURCE_TYPES:
            raise BadRequest(f"Invalid _include/_revinclude value {value!r}: expected Type:param[:target]")
        src, code = parts[0], parts[1]
        sp = registry().get(src, code)
        if sp is None or sp.type != "reference":
            raise BadRequest(f"'{code}' is not a reference search parameter of {src}")
        target = parts[2] if len(parts) > 2 else None
        if target is not None and target not in RESOURCE_TYPES:
            raise BadRequest(f"Unknown target type {target!r} in {value!r}")
        if not rev and not iterate and src != rtype:
            raise BadRequest(f"_include source {src} does not match the searched type {rtype}")
        return Include(src, code, target, iterate)

    def criterion(self, rtype: str, name: str, value: str) -> Criterion:
        if name.startswith("_has:"):
            return self._has(rtype, name, value)
        chain_rest = None
        if "." in name:
            name, chain_rest = name.split(".", 1)
        code, _, modifier = name.partition(":")
        modifier = modifier or None
        if code == "_id":
            vals = [TokenValue(None, v) for v in _split_or(value)]
            return Criterion("_id", "_id", None, modifier if modifier in ("not", "missing") else None, vals)
        if code == "_lastUpdated":
            return Criterion("_lastUpdated", "date", None, modifier,
                             [parse_date(v, code) for v in _split_or(value)])
        sp = registry().get(rtype, code)
        if sp is None or (sp.type == "composite" and len(sp.components) != 2):
            raise _UnknownParam(code)
        if chain_rest is not None:
            if sp.type != "reference":
                raise BadRequest(f"Chaining is only allowed on reference parameters; '{code}' is {sp.type}")
            targets = [modifier] if modifier else [t for t in sp.targets]
            if not targets:
                raise BadRequest(f"Chained parameter '{code}' has no target type; use {code}:Type.{chain_rest}")
            chains = []
            for t in targets:
                try:
                    chains.append((t, self.criterion(t, chain_rest, value)))
                except _UnknownParam:
                    continue
            if not chains:
                raise _UnknownParam(f"{code}.{chain_rest}")
            if len(chains) > 1 and modifier is None:
                # several target types know the chained parameter: OR over them
                crit = Criterion(code, "reference", sp, None)
                crit.values = [("chain", t, c) for t, c in chains]
                return crit
            t, c = chains[0]
            return Criterion(code, "reference", sp, None, chain=c, chain_type=t)
        if modifier == "missing":
            if value not in ("true", "false"):
                raise BadRequest(f":missing takes true or false, got {value!r}")
            return Criterion(code, sp.type, sp, "missing", [value == "true"])
        if modifier and not (sp.type == "reference" and modifier in RESOURCE_TYPES) \
                and modifier not in MODIFIERS.get(sp.type, set()):
            raise BadRequest(f"Modifier ':{modifier}' is not supported on {sp.type} parameter '{code}'",
                             code="not-supported")
        vals = [self._value(sp, modifier, v) for v in _split_or(value)]
        return Criterion(code, sp.type, sp, modifier, vals)

    def _has(self, rtype: str, name: str, value: str) -> Criterion:
        parts = name.split(":", 3)
        if len(parts) != 4 or parts[1] not in RESOURCE_TYPES:
            raise BadRequest(f"Invalid _has parameter {name!r}: expected _has:Type:reference:parameter")
        _, src, ref_param, rest = parts
        sp = registry().get(src, ref_param)
        if sp is None or sp.type != "reference":
            raise BadRequest(f"'{ref_param}' is not a reference parameter of {src}")
        inner = self.criterion(src, rest, value)
        return Criterion("_has", "_has", sp, None, [], chain=inner, has_type=src, has_param=ref_param)

    def _value(self, sp: SearchParam, modifier: str | None, raw: str) -> Any:
        t = sp.type
        if t == "token":
            if modifier == "text":
                return norm(raw)
            return parse_token(raw)
        if t == "string":
            return raw[:SHORT] if modifier == "exact" else norm(raw)[:SHORT]
        if t == "date":
            return parse_date(raw, sp.code)
        if t in ("number", "quantity"):
            return parse_number(raw, sp.code, t == "quantity")
        if t == "reference":
            return parse_reference(raw, modifier, sp, self.base_url)
        if t == "uri":
            return clip(raw, LONG)
        if t == "composite":
            parts = split_escaped(raw, "$")
            if len(parts) != 2 or len(sp.components) != 2:
                raise BadRequest(f"Composite parameter '{sp.code}' needs two values joined by '$'")
            second = sp.components[1].param
            if second.type == "token":
                v2: Any = parse_token(parts[1])
            elif second.type == "quantity":
                v2 = parse_number(parts[1], sp.code, True)
            elif second.type == "date":
                v2 = parse_date(parts[1], sp.code)
            else:
                v2 = norm(parts[1])
            return CompositeValue(parse_token(parts[0]), v2)
        raise BadRequest(f"Search parameter '{sp.code}' of type {t} is not supported", code="not-supported")


class _UnknownParam(Exception):
    pass

"""Retrieve and Query (CQL §5 Queries, ELM Retrieve): sources, let, with/without, where, return, sort,
aggregate."""

from __future__ import annotations

from functools import cmp_to_key, lru_cache
from typing import Any

from .engine import Context, EvaluationError, Fn, LibraryCompiler, compiles
from .fhirmodel import Node, wrap_resource
from .ops_refs import ValueSetValue, get_property
from .values import Code, Concept, compare, equal

# FHIR R4 vital-signs profiles that a retrieve may name instead of codes: profile -> the LOINC code it fixes
VITAL_SIGN_PROFILES = {
    "bp": "85354-9", "bodyweight": "29463-7", "bodyheight": "8302-2", "bmi": "39156-5", "heartrate": "8867-4",
    "resprate": "9279-1", "bodytemp": "8310-5", "oxygensat": "2708-6", "headcircum": "9843-4",
    "vitalspanel": "85353-1",
}


QICORE = "http://hl7.org/fhir/us/qicore/StructureDefinition/"
# QI-Core profiles that say whether an order was or was not made: (data type, positive profile, negation
# profile, element, value meaning "not done")
NEGATION_PROFILES = {
    "MedicationRequest": ("qicore-medicationrequest", "qicore-mednotrequested", "doNotPerform", True),
    "ServiceRequest": ("qicore-servicerequest", "qicore-servicenotrequested", "doNotPerform", True),
}


def _vital_sign_match(n: Node, template: str, loinc: str) -> bool:
    """Does a retrieve for a FHIR vital-signs profile (``[Observation: "observation-bmi"]``) return this
    Observation? As the reference engine (fqm-execution) does: a resource that declares profiles in
    meta.profile is returned only when it declares this one (an Observation tagged only ``qicore-observation``
    is not a BMI for the retrieve, whatever its code). Deliberate difference: a resource that declares no
    profile at all is matched by the LOINC code the profile fixes, since it conforms to the profile by content
    (FHIR R4 §"Vital Signs": the profile fixes Observation.code) and data sent without meta.profile is common."""
    declared = [str(p).split("|", 1)[0] for p in (n.value.get("meta") or {}).get("profile") or []]
    if declared:
        return template.split("|", 1)[0] in declared
    return any(code == loinc and s in (None, "http://loinc.org") for s, code in _codes_of(get_property(n, "code")))


def _profile_filter(data_type: str, template: str) -> Any:
    """A predicate implementing what a QI-Core profile-based retrieve selects, or None for 'all of the type'.

    A resource that declares QI-Core profiles in meta.profile is returned only by a retrieve for one of
    them; for MedicationRequest and ServiceRequest the positive and the 'not requested' profiles split the
    resources on doNotPerform whatever they declare."""
    if not template.startswith(QICORE):
        return None
    name = template[len(QICORE):]
    neg = NEGATION_PROFILES.get(data_type)

    def keep(resource: dict[str, Any]) -> bool:
        if neg is not None and name in (neg[0], neg[1]):
            flag = resource.get(neg[2]) is neg[3]
            if flag != (name == neg[1]):
                return False
        declared = [p for p in (resource.get("meta") or {}).get("profile") or [] if p.startswith(QICORE)]
        return not declared or template in declared or (neg is not None and name in (neg[0], neg[1]))

    return keep


def _codes_of(value: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs carried by a FHIR CodeableConcept/Coding/code node, or CQL Code/Concept."""
    if value is None:
        return []
    if isinstance(value, list):
        out: list[tuple[str | None, str | None]] = []
        for v in value:
            out.extend(_codes_of(v))
        return out
    if isinstance(value, Code):
        return [(value.system, value.code)]
    if isinstance(value, Concept):
        return [(c.system, c.code) for c in value.codes]
    if isinstance(value, Node):
        v = value.value
        if isinstance(v, dict):
            if "coding" in v:
                return [(c.get("system"), c.get("code")) for c in v.get("coding") or [] if isinstance(c, dict)]
            if "code" in v:
                return [(v.get("system"), v.get("code"))]
            return []
        if isinstance(v, str):
            return [(None, v)]
    if isinstance(value, str):
        return [(None, value)]
    return []


@lru_cache(maxsize=1024)
def _code_values(members: frozenset[tuple[str | None, str]]) -> frozenset[str]:
    """The codes of a value set's (system, code) pairs, for matching codes that carry no system."""
    return frozenset(c for _, c in members)


def _code_filter(codes_value: Any, ctx: Context, comparator: str | None) -> Any:
    """A predicate over a resource's code pairs, from the retrieve's codes (value set, code(s), concept)."""
    if isinstance(codes_value, ValueSetValue):
        members = ctx.terminology.codes(codes_value.url)
        member_codes = _code_values(members)
        return lambda pairs: any((s, c) in members if s is not None else c in member_codes for s, c in pairs)
    wanted = _codes_of(codes_value if isinstance(codes_value, list) else [codes_value])
    pairs_set = set(wanted)
    codes_only = {c for _, c in wanted}
    return lambda pairs: any((s, c) in pairs_set if s is not None else c in codes_only for s, c in pairs)


@compiles("Retrieve")
def _retrieve(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    data_type = node["dataType"].rsplit("}", 1)[-1]
    template = node.get("templateId") or ""
    code_property = node.get("codeProperty")
    codes = c.compile(node["codes"]) if node.get("codes") is not None else None
    comparator = node.get("codeComparator")
    profile_code = None
    if template.startswith("http://hl7.org/fhir/StructureDefinition/"):
        profile_code = VITAL_SIGN_PROFILES.get(template.rsplit("/", 1)[-1])
    profile_filter = _profile_filter(data_type, template)
    date_property = node.get("dateProperty")
    date_range = c.compile(node["dateRange"]) if node.get("dateRange") is not None else None
    if node.get("context") is not None:
        raise EvaluationError("Retrieve with a related context is not supported yet")

    def retrieve(ctx: Context) -> Any:
        key = (data_type, id(node))
        nodes = ctx.retrieve_cache.get((data_type, template))
        if nodes is None:
            nodes = [wrap_resource(r) for r in ctx.data.retrieve(data_type)
                     if profile_filter is None or profile_filter(r)]
            ctx.retrieve_cache[(data_type, template)] = nodes
        if profile_code is not None:
            nodes = [n for n in nodes if _vital_sign_match(n, template, profile_code)]
        if codes is not None:
            cached = ctx.retrieve_cache.get(key)
            if cached is not None:
                if ctx.evaluated is not None:
                    ctx.note_resources([f"{data_type}/{n.value.get('id')}" for n in cached])
                return cached
            codes_value = codes(ctx)
            if codes_value is None:
                return []
            prop = code_property or "code"
            # retrieves of one type and profile by one value set (the same retrieve written in several
            # definitions or libraries) select the same resources: filtered once per context
            vs_key = (("valueset", data_type, template, prop, codes_value.url)
                      if isinstance(codes_value, ValueSetValue) else None)
            if vs_key is not None:
                selected = ctx.retrieve_cache.get(vs_key)
                if selected is not None:
                    if date_range is None:
                        ctx.retrieve_cache[key] = selected
                    return _finish(ctx, selected)
            pred = _code_filter(codes_value, ctx, comparator)
            # a resource's code pairs, read once per context and code path: many retrieves filter the same
            # resources by different value sets
            pairs = ctx.retrieve_cache.get(("codes", prop))
            if pairs is None:
                pairs = ctx.retrieve_cache[("codes", prop)] = {}
            kept = []
            for n in nodes:
                got = pairs.get(id(n))
                if got is None:
                    got = pairs[id(n)] = (n, _codes_of(get_property(n, prop)))
                if pred(got[1]):
                    kept.append(n)
            nodes = kept
            if vs_key is not None:
                ctx.retrieve_cache[vs_key] = nodes
            if date_range is None:
                ctx.retrieve_cache[key] = nodes
        return _finish(ctx, nodes)

    def _finish(ctx: Context, nodes: list[Node]) -> list[Node]:
        if date_range is not None and date_property:
            from .interval import in_

            rng = date_range(ctx)
            nodes = [n for n in nodes if in_(_date_value(get_property(n, date_property)), rng) is True]
        if ctx.evaluated is not None:
            ctx.note_resources([f"{data_type}/{n.value.get('id')}" for n in nodes])
        return nodes

    return retrieve


def _date_value(v: Any) -> Any:
    from .fhirmodel import primitive_value

    if isinstance(v, Node) and not isinstance(v.value, dict):
        return primitive_value(v)
    return v


def _distinct(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set[Any] = set()
    for it in items:
        try:
            h = hash(it)
        except TypeError:
            h = None
        if h is not None and it in seen:
            continue
        if any(equal(it, o) is True or (it is None and o is None) for o in out):
            continue
        if h is not None:
            seen.add(it)
        out.append(it)
    return out


@compiles("Query")
def _query(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    sources = [(s["alias"], c.compile(s["expression"])) for s in node.get("source", [])]
    lets = [(lt["identifier"], c.compile(lt["expression"])) for lt in node.get("let") or []]
    rels = [(r["type"], r["alias"], c.compile(r["expression"]), c.compile(r["suchThat"]))
            for r in node.get("relationship") or []]
    where = c.compile(node["where"]) if node.get("where") is not None else None
    ret = node.get("return")
    ret_fn = c.compile(ret["expression"]) if ret else None
    distinct = ret.get("distinct", True) if ret else False
    agg = node.get("aggregate")
    agg_fn = c.compile(agg["expression"]) if agg else None
    agg_start = c.compile(agg["starting"]) if agg and agg.get("starting") is not None else None
    sort = node.get("sort")
    sort_keys = _sort_keys(sort, c) if sort else None

    def rows(ctx: Context) -> tuple[list[dict[str, Any]], bool]:
        singleton = True
        lists = []
        for alias, fn in sources:
            v = fn(ctx)
            if isinstance(v, list):
                singleton = False
                lists.append((alias, v))
            else:
                lists.append((alias, [] if v is None else [v]))
        combos: list[dict[str, Any]] = [{}]
        for alias, values in lists:
            combos = [{**combo, alias: v} for combo in combos for v in values]
        return combos, singleton and len(sources) == 1

    single = sources[0][0] if len(sources) == 1 else None
    lookup = _key_lookup(node, c) if single is not None and not lets and not rels else None

    def scopes(ctx: Context, saved: dict[str, Any]) -> tuple[list[Any], bool]:
        """The rows of the query as (scope, source value or the combination of them) pairs."""
        if single is not None:  # one source: its values, each with the alias and $implicit bound
            v = sources[0][1](ctx)
            values = v if isinstance(v, list) else [] if v is None else [v]
            return [({**saved, single: x, "$implicit": x}, x) for x in values], not isinstance(v, list)
        combos, singleton = rows(ctx)
        out = []
        for combo in combos:
            scope = {**saved, **combo}
            if len(combo) == 1:
                scope["$implicit"] = next(iter(combo.values()))
            out.append((scope, combo))
        return out, singleton

    def query(ctx: Context) -> Any:
        saved = ctx.scope
        pending, singleton = scopes(ctx, saved)
        if lookup is not None and len(pending) > 1:
            pending = lookup(ctx, pending)
        results: list[Any] = []
        kept_rows: list[dict[str, Any]] = []
        try:
            for scope, combo in pending:
                ctx.scope = scope
                for name, fn in lets:
                    ctx.scope[name] = fn(ctx)
                if not _relationships_hold(ctx, rels):
                    continue
                if where is not None and where(ctx) is not True:
                    continue
                kept_rows.append(ctx.scope)
                if ret_fn is not None:
                    results.append(ret_fn(ctx))
                elif single is not None:
                    results.append(combo)
                else:
                    results.append(dict(combo))
            if agg_fn is not None:
                acc = agg_start(ctx) if agg_start else None
                pairs = list(zip(kept_rows, results, strict=True))
                if agg.get("distinct"):
                    unique = _distinct(results)
                    pairs = [next(p for p in pairs if p[1] is u or equal(p[1], u) is True) for u in unique]
                for row, _item in pairs:
                    ctx.scope = {**row, agg["identifier"]: acc}
                    acc = agg_fn(ctx)
                return acc
        finally:
            ctx.scope = saved
        if distinct:
            results = _distinct(results)
        if sort_keys is not None:
            results = sort_keys(ctx, results)
        if singleton:
            return results[0] if results else None
        return results

    return query


def _key_lookup(node: dict[str, Any], c: LibraryCompiler) -> Any:
    """For a one-source query whose where clause is ``Alias.path = X`` (``[Encounter] E where E.id =
    reference.getId()``, how QI-Core measures follow a reference) with ``X`` not reading the alias: a function
    narrowing the query's rows to those whose key equals ``X``, by an index of the source list's keys built
    once per evaluation context. Measures call such a query for every resource that holds a reference (CMS165
    looks up the encounter of each blood pressure reading twice), so scanning the source each time is
    quadratic. The where clause is still evaluated on the rows kept, so the result is the same; when a key or
    ``X`` is not a plain string, or computing them fails, every row is kept and the query runs as written."""
    where = node.get("where") or {}
    alias = node["source"][0]["alias"]
    if where.get("type") != "Equal" or len(where.get("operand") or []) != 2:
        return None
    first, second = where["operand"]
    if _alias_path(first, alias) and not _reads(second, alias):
        key_node, other_node = first, second
    elif _alias_path(second, alias) and not _reads(first, alias):
        key_node, other_node = second, first
    else:
        return None
    key_fn, other_fn = c.compile(key_node), c.compile(other_node)
    cache_key = ("key-index", id(node))

    def narrow(ctx: Context, pending: list[Any]) -> list[Any]:
        source = [row for _scope, row in pending]
        try:
            cached = ctx.retrieve_cache.get(cache_key)
            fresh = cached is None or len(cached[0]) != len(source) or any(
                a is not b for a, b in zip(cached[0], source, strict=True))
            if fresh:
                index: dict[str, list[int]] = {}
                for i, (scope, _row) in enumerate(pending):
                    saved, ctx.scope = ctx.scope, scope
                    try:
                        k = key_fn(ctx)
                    finally:
                        ctx.scope = saved
                    if k is None:
                        continue
                    if k.__class__ is not str:
                        return pending
                    index.setdefault(k, []).append(i)
                cached = ctx.retrieve_cache[cache_key] = (source, index)
            wanted = other_fn(ctx)
        except Exception:  # noqa: BLE001 - the query as written raises (or not) in its own order
            return pending
        if wanted is None:
            return []
        if wanted.__class__ is not str:
            return pending
        return [pending[i] for i in cached[1].get(wanted, ())]

    return narrow


def _alias_path(node: Any, alias: str) -> bool:
    """Is ``node`` a chain of Property steps from the query alias (``E.id.value``)?"""
    while isinstance(node, dict) and node.get("type") == "Property":
        if node.get("source") is None:
            return node.get("scope") == alias
        node = node["source"]
    return isinstance(node, dict) and node.get("type") == "AliasRef" and node.get("name") == alias


def _reads(node: Any, alias: str) -> bool:
    """Might ``node`` read the query alias (or the implicit one, a let or an identifier)? Conservative."""
    if isinstance(node, list):
        return any(_reads(n, alias) for n in node)
    if not isinstance(node, dict):
        return False
    t = node.get("type")
    if t == "AliasRef":
        return bool(node.get("name") == alias)
    if t == "Property" and node.get("source") is None:
        return node.get("scope") in (None, alias)
    if t in ("QueryLetRef", "IdentifierRef"):
        return True
    return any(_reads(v, alias) for k, v in node.items() if k != "annotation" and isinstance(v, (dict, list)))


def _relationships_hold(ctx: Context, rels: list[tuple[str, str, Fn, Fn]]) -> bool:
    for rtype, alias, expr, such_that in rels:
        values = expr(ctx)
        if values is None:
            values = []
        elif not isinstance(values, list):
            values = [values]
        found = False
        outer = ctx.scope
        for v in values:
            ctx.scope = {**outer, alias: v, "$implicit": v}
            ok = such_that(ctx) is True
            ctx.scope = outer
            if ok:
                found = True
                break
        if (rtype == "With") != found:
            return False
    return True


_TEMPORAL_FIELDS = ("year", "month", "day", "hour", "minute", "second", "millisecond")


def _sort_compare(a: Any, b: Any) -> int:
    """The sort order of two keys: CQL comparison; where it is uncertain (Date/DateTime/Time values of
    different precisions that agree on their common fields) the less precise value sorts first, so sorting
    is total and ``@2012-01-01T`` comes before ``@2012-01-01T12`` (the conformance suite's SortDatesAsc)."""
    r = compare(a, b)
    if r is not None:
        return r
    if type(a) is type(b) and type(a).__name__ in ("Date", "DateTime", "Time"):
        fa = tuple(-1 if getattr(a, f, None) is None else getattr(a, f) for f in _TEMPORAL_FIELDS)
        fb = tuple(-1 if getattr(b, f, None) is None else getattr(b, f) for f in _TEMPORAL_FIELDS)
        return (fa > fb) - (fa < fb)
    return 0


def _sort_keys(sort: dict[str, Any], c: LibraryCompiler) -> Any:
    items = []
    for by in sort.get("by", []):
        desc = by.get("direction", "asc") in ("desc", "descending")
        if by.get("type") == "ByExpression":
            items.append(("expr", c.compile(by["expression"]), desc))
        elif by.get("type") == "ByColumn":
            items.append(("col", by["path"], desc))
        else:
            items.append(("self", None, desc))

    def apply(ctx: Context, results: list[Any]) -> list[Any]:
        keyed = []
        saved = ctx.scope
        for r in results:
            ks = []
            for kind, arg, _ in items:
                if kind == "expr":
                    ctx.scope = {**saved, "$this": r}
                    ks.append(arg(ctx))
                elif kind == "col":
                    ks.append(get_property(r, arg))
                else:
                    ks.append(r)
            keyed.append((ks, r))
        ctx.scope = saved

        def cmp(a: Any, b: Any) -> int:
            for (ka, kb, (_, _, desc)) in zip(a[0], b[0], items, strict=True):
                if ka is None and kb is None:
                    continue
                if ka is None:
                    r = -1
                elif kb is None:
                    r = 1
                else:
                    r = _sort_compare(ka, kb)
                if r:
                    return -r if desc else r
            return 0

        return [r for _, r in sorted(keyed, key=cmp_to_key(cmp))]

    return apply

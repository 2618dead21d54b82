"""The mapping engine: records + a mapping file -> units of FHIR resources (pure: no store, no HTTP).

For every entity of the mapping file the engine gathers its records (with their child records joined by key),
collapses them (``group_by`` several lines into one claim, ``key`` + ``latest_by`` to keep the newest copy of a
record delivered in several monthly files, ``versions`` to resolve claim adjustments and cancellations to the
latest version), and renders the resource templates. One unit is what one source record (or claim) becomes; a
unit is written or rejected as a whole.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .quality import Finding
from .records import Record, Reject
from .spec import EntitySpec, MappingSpec
from .template import Filters, MappingError, Scope, Template


@dataclass
class Unit:
    entity: str
    where: str
    resources: list[dict[str, Any]]
    lines: int = 1  # source records this unit stands for
    warnings: list[Finding] = field(default_factory=list)  # data-quality findings; the unit loads with them


def _row_hash(fields: dict[str, Any]) -> str:
    """A stable key for sources without an id column: the same row always hashes the same."""
    text = "\x1f".join(f"{k}={'' if v is None else v}" for k, v in fields.items())
    return hashlib.sha1(text.encode()).hexdigest()[:24]


DQ_EXTENSION = "http://fhir-vbc-gateway.example.org/StructureDefinition/data-quality-warning"


def mark_codes(node: Any, flagged: set[tuple[str, str]], rules: dict[tuple[str, str], str]) -> None:
    """Marks every Coding of ``node`` whose (system, code) a warning concerns with the data-quality extension
    (its value the rule's name), so a reader of the stored resource sees which code was kept unchecked."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        key = (system, code) if isinstance(system, str) and isinstance(code, str) else None
        if key is not None and key in flagged:
            ext = {"url": DQ_EXTENSION, "valueCode": rules[key]}
            if ext not in node.setdefault("extension", []):
                node["extension"].append(ext)
        for v in node.values():
            if isinstance(v, (dict, list)):
                mark_codes(v, flagged, rules)
    elif isinstance(node, list):
        for v in node:
            mark_codes(v, flagged, rules)


def _systems_for(node: Any, code: str) -> set[str]:
    """The systems of the Codings in ``node`` whose code is ``code``."""
    out: set[str] = set()
    if isinstance(node, dict):
        if node.get("code") == code and isinstance(node.get("system"), str):
            out.add(node["system"])
        for v in node.values():
            if isinstance(v, (dict, list)):
                out |= _systems_for(v, code)
    elif isinstance(node, list):
        for v in node:
            out |= _systems_for(v, code)
    return out


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, "") if v is None else (1, v)


def owner(key: Any, workers: int) -> int:
    """The partition (0 .. workers-1) that maps a claim or record with this key: the same key in every process
    (a CRC, not Python's per-process ``hash``)."""
    return zlib.crc32(str(key).encode("utf-8", "surrogatepass")) % workers


def claim_key(item: tuple[str, Any, int]) -> Any:
    """What keeps an item in one partition: the root of its claim's version chain, else its group (a claim's
    lines), else the record itself."""
    v = item[1].vars
    if "$chain" in v:
        return v["$chain"]
    if "$group" in v:
        return v["$group"]
    return item[0]


class Engine:
    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec

    def build_crosswalks(self, records: dict[str, list[Record]]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name, cw in self.spec.crosswalks.items():
            table = {}
            for r in records.get(cw["table"], []):
                old, new = r.fields.get(cw["from"]), r.fields.get(cw["to"])
                if old and new and old != new:
                    table[str(old)] = str(new)
            out[name] = table
        return out

    def run(self, records: dict[str, list[Record]], rejects: list[Reject],
            extra_scope: dict[str, Any] | None = None, part: tuple[int, int] | None = None) -> Iterator[Unit]:
        """The units of ``records``, in order. ``part`` = (i, n): only the units partition i of n owns, split at
        claim boundaries (``claim_key``: every version of a claim, every line of a grouped claim, in one
        partition); rejects found while gathering (before the split) are reported by partition 0 alone, so
        the n partitions together give every unit and every reject exactly once."""
        filters = Filters(self.spec.lookups, self.build_crosswalks(records), self.spec.strictness == "strict")
        tpl = Template(filters, self.spec.raw.get("open_fields"))
        base = Scope({}, {}, {"$mapping_version": self.spec.version, **(extra_scope or {})})
        derived = dict(self.spec.raw.get("vars") or {})  # values computed per record: "$name" in templates
        # what entities without a source table become (a constant payer, say) is written only with records of
        # the run: a run that maps no record writes nothing
        pending: list[Unit] = []
        for entity in self.spec.entities:
            items: Iterable[tuple[str, Scope, int]]
            if part is None or entity.source is None:
                items = self._scopes(entity, records, base, tpl, rejects)
            else:
                gathered: list[Reject] = []
                items = [i for i in self._scopes(entity, records, base, tpl, gathered)
                         if owner(claim_key(i), part[1]) == part[0]]
                if part[0] == 0:
                    rejects.extend(gathered)
            for where, scope, lines in items:
                filters.warnings.clear()
                try:
                    if entity.source is not None:
                        for name, expr in derived.items():
                            scope.vars[f"${name}"] = tpl.render(expr, scope)
                    resources = [self._finish(r) for r in tpl.render(entity.resources, scope) or []]
                except MappingError as exc:
                    rejects.append(Reject(where, f"{entity.name}: {exc.reason}", exc.field,
                                          rule=exc.rule, value=exc.value))
                    continue
                unit = Unit(entity.name, where, [r for r in resources if r], lines,
                            self._warnings(where, scope, filters.warnings, resources))
                if entity.source is None:
                    pending.append(unit)
                    continue
                yield from pending
                pending = []
                yield unit

    @staticmethod
    def _warnings(where: str, scope: Scope, found: list[Finding], resources: list[Any]) -> list[Finding]:
        """The unit's findings: those its records brought from the reader, then the template's (placed at the
        unit's record); codes kept despite a failed format check are marked in the resources."""
        out = list(scope.vars.get("$warnings") or [])
        flagged: dict[tuple[str, str], str] = {}
        seen = {(w.where, w.rule, w.field, w.value) for w in out}
        for w in found:  # a value rendered into several resources (a claim's item and a Procedure) counts once
            w = Finding(w.where or where, w.rule, w.message, w.field, w.value)
            if (w.where, w.rule, w.field, w.value) not in seen:
                seen.add((w.where, w.rule, w.field, w.value))
                out.append(w)
        for w in out:
            if w.rule == "code-format" and w.value is not None:
                for sys_ in _systems_for(resources, w.value):
                    flagged[(sys_, w.value)] = w.rule
        if flagged:
            mark_codes(resources, set(flagged), flagged)
        return out

    def _finish(self, res: Any) -> dict[str, Any] | None:
        if not res:
            return None
        if not res.get("resourceType"):
            raise MappingError("a resource template rendered without resourceType")
        meta = res.setdefault("meta", {})
        meta["source"] = self.spec.source_uri
        return res

    # -- collecting the records of an entity -------------------------------------------------------------------
    def _scopes(self, e: EntitySpec, records: dict[str, list[Record]], base: Scope, tpl: Template,
                rejects: list[Reject]) -> Iterator[tuple[str, Scope, int]]:
        if e.source is None:
            yield f"{self.spec.format}:{e.name}", base, 0
            return
        rows = records.get(e.source, [])
        children = {name: self._index_children(c, records) for name, c in e.children.items()}

        def make(rec: Record) -> Scope:
            kids = {}
            for name, c in e.children.items():
                on = c["key"]
                pkey = rec.fields.get(on[0] if isinstance(on, list) else on)
                kids[name] = [Scope(r.fields, {}, {"$where": r.where}) for r in children[name].get(pkey, [])]
            return Scope(rec.fields, kids, {"$rowhash": _row_hash(rec.fields), "$warnings": list(rec.warnings),
                                            "$where": rec.where}, base)

        items: list[tuple[str, Scope, int]]
        if e.group_by:
            groups: dict[Any, list[Record]] = defaultdict(list)
            if "{" in e.group_by:  # a key built from several fields, e.g. "{CLAIM_ID}|{VERSION}"
                for r in rows:
                    groups[tpl.render(e.group_by, Scope(r.fields))].append(r)
            else:
                for r in rows:
                    groups[r.fields.get(e.group_by)].append(r)
            items = []
            for gkey, recs in groups.items():
                s = make(recs[0])
                s.vars["$group"] = gkey
                s.vars["$warnings"] = s.vars["$warnings"] + [w for r in recs[1:] for w in r.warnings]
                s.children = {**s.children, "rows": [Scope(r.fields, {}, {"$where": r.where}) for r in recs]}
                items.append((recs[0].where, s, len(recs)))
        else:
            items = [(r.where, make(r), 1) for r in rows]
        if e.when:
            items = [i for i in items if self._safe(tpl, e.when, i, rejects, e) is not None]
        if e.versions:
            items = self._latest_versions(e, items, tpl, rejects)
        if e.key:
            items = self._dedupe(e, items, tpl, rejects)
        yield from items

    def _safe(self, tpl: Template, expr: str, item: tuple[str, Scope, int], rejects: list[Reject],
              e: EntitySpec) -> Any:
        try:
            return tpl.render(expr, item[1])
        except MappingError as exc:
            rejects.append(Reject(item[0], f"{e.name}: {exc.reason}", exc.field))
            return None

    @staticmethod
    def _index_children(c: dict[str, Any], records: dict[str, list[Record]]) -> dict[Any, list[Record]]:
        on = c["key"]
        ckey = on[1] if isinstance(on, list) else on
        idx: dict[Any, list[Record]] = defaultdict(list)
        for r in records.get(c["from"], []):
            idx[r.fields.get(ckey)].append(r)
        order = c.get("order_by")
        if order:
            for v in idx.values():
                v.sort(key=lambda r: tuple(_sort_key(r.fields.get(f)) for f in order))
        return idx

    def _dedupe(self, e: EntitySpec, items: list[tuple[str, Scope, int]], tpl: Template,
                rejects: list[Reject]) -> list[tuple[str, Scope, int]]:
        best: dict[Any, tuple[tuple[Any, ...], tuple[str, Scope, int], int]] = {}
        for pos, item in enumerate(items):
            k = self._safe(tpl, e.key, item, rejects, e)  # type: ignore[arg-type]
            if k is None:
                continue
            rank = tuple(_sort_key(item[1].fields.get(f)) for f in e.latest_by) + (pos,)
            prev = best.get(k)
            if prev is None or rank > prev[0]:
                best[k] = (rank, item, (prev[2] if prev else 0) + item[2])
            else:
                best[k] = (prev[0], prev[1], prev[2] + item[2])
        return [(it[0], it[1], n) for _r, it, n in best.values()]

    def _latest_versions(self, e: EntitySpec, items: list[tuple[str, Scope, int]], tpl: Template,
                         rejects: list[Reject]) -> list[tuple[str, Scope, int]]:
        """Claim versions: records linked through ``id``/``replaces`` form one chain; the latest by ``order_by``
        stands for the claim, marked ``$cancelled`` when it is a cancellation."""
        v = e.versions or {}
        id_f, repl_f = v["id"], v.get("replaces")
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        for _w, s, _n in items:
            cid = s.fields.get(id_f)
            if cid is None:
                continue
            parent.setdefault(str(cid), str(cid))
            rep = s.fields.get(repl_f) if repl_f else None
            if rep:
                parent.setdefault(str(rep), str(rep))
                a, b = find(str(cid)), find(str(rep))
                if a != b:
                    parent[a] = b
        chains: dict[str, list[tuple[str, Scope, int]]] = defaultdict(list)
        for item in items:
            cid = item[1].fields.get(id_f)
            if cid is None:
                rejects.append(Reject(item[0], f"{e.name}: field {id_f}: the claim has no control number", id_f))
                continue
            chains[find(str(cid))].append(item)
        order = v.get("order_by", [])
        cancel = v.get("cancelled") or {}
        out = []
        for root, members in chains.items():
            members.sort(key=lambda it: tuple(_sort_key(it[1].fields.get(f)) for f in order))
            where, scope, _n = members[-1]
            cancelled = bool(cancel) and str(scope.fields.get(cancel["field"])) in [str(x) for x in cancel["in"]]
            scope.vars.update({"$chain": root, "$cancelled": "true" if cancelled else "false",
                               "$versions": len(members)})
            out.append((where, scope, sum(m[2] for m in members)))
        return out

"""Compile a SearchQuery into SQLAlchemy Core: one EXISTS sub-query per criterion over the index tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ...fhir.errors import BadRequest
from ...search.query import (
    CompositeValue,
    Criterion,
    DateValue,
    NumberValue,
    RefValue,
    SearchQuery,
    TokenValue,
)
from .tables import IDX, RESOURCE

TABLE_FOR = {"string": "strings", "token": "tokens", "date": "dates", "reference": "refs", "number": "numbers",
             "quantity": "numbers", "uri": "uris", "composite": "composites"}


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def date_cond(lo_col: Any, hi_col: Any, v: DateValue) -> ColumnElement[bool]:
    p = v.prefix
    if p == "eq":
        return and_(lo_col >= v.lo, hi_col <= v.hi)
    if p == "ne":
        return or_(lo_col < v.lo, hi_col > v.hi)
    if p == "gt":
        return hi_col > v.hi
    if p == "lt":
        return lo_col < v.lo
    if p == "ge":
        return hi_col >= v.lo
    if p == "le":
        return lo_col <= v.hi
    if p == "sa":
        return lo_col > v.hi
    if p == "eb":
        return hi_col < v.lo
    return and_(lo_col <= v.hi, hi_col >= v.lo)  # ap: overlaps


def number_cond(col: Any, v: NumberValue) -> ColumnElement[bool]:
    p = v.prefix
    if p == "eq":
        return and_(col >= v.lo, col < v.hi)
    if p == "ne":
        return or_(col < v.lo, col >= v.hi)
    if p == "gt":
        return col > v.value
    if p == "lt":
        return col < v.value
    if p == "ge":
        return col >= v.value
    if p == "le":
        return col <= v.value
    if p == "ap":
        margin = abs(v.value) * 0.1
        return and_(col >= v.value - margin, col <= v.value + margin)
    raise BadRequest(f"Prefix '{p}' is not supported for numbers and quantities")


def token_cond(t: Any, v: TokenValue) -> ColumnElement[bool]:
    conds = []
    if v.code is not None:
        conds.append(t.c.code == v.code)
    if v.system == "":
        conds.append(t.c.system.is_(None))
    elif v.system is not None:
        conds.append(t.c.system == v.system)
    return and_(*conds) if conds else true()


# lists longer than this are written into the SQL text as literals instead of one bound parameter each: an
# attributed-patient set of an organization can hold tens of thousands of ids, beyond the bound parameters a
# statement may carry (SQLite 32,766, PostgreSQL 65,535)
INLINE_LIST = 500


def in_list(col: Any, values: list[Any]) -> ColumnElement[bool]:
    """``col IN (values)``; an empty list matches nothing, a long one is rendered inline (quoted by the
    dialect)."""
    if len(values) <= INLINE_LIST:
        return col.in_(values)
    return col.in_(bindparam("inlist", values, expanding=True, literal_execute=True, unique=True))


class SqlSearchCompiler:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def where(self, rtype: str, criteria: list[Criterion], res: Any = RESOURCE) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [res.c.res_type == rtype, res.c.deleted == false()]
        for crit in criteria:
            conds.append(self.criterion(crit, res, rtype))
        return conds

    # Criteria are `pk IN (SELECT res_pk FROM idx_… WHERE res_type = … AND param = … AND value …)`: the
    # planner can start from the index table's (res_type, param, value) index instead of testing every
    # resource of the type with a correlated EXISTS (SQLite does not rewrite one into the other).
    def criterion(self, c: Criterion, res: Any, rtype: str) -> ColumnElement[bool]:
        if c.name == "_id":
            cond = in_list(res.c.res_id, [v.code for v in c.values])
            return not_(cond) if c.modifier == "not" else cond
        if c.name == "_lastUpdated":
            return or_(*[self._lu_cond(res, v) for v in c.values])
        if c.name == "_has":
            return self._has(c, res, rtype)
        if c.name == "_all":  # criteria that must all hold (a chained sub-query narrowed by authorization)
            return and_(*[self.criterion(x, res, rtype) for x in c.values])
        if c.name == "_compartment":  # any of the compartment's parameters points at a compartment owner
            if not c.values:
                return false()  # the compartments of nobody
            t = IDX["refs"].alias()
            owner = (t.c.target_id == c.values[0].id if len(c.values) == 1
                     else in_list(t.c.target_id, sorted({v.id for v in c.values})))
            return res.c.pk.in_(select(t.c.res_pk).where(
                t.c.res_type == rtype, t.c.param.in_((c.has_param or "").split(",")),
                t.c.target_type == c.values[0].type, owner))
        assert c.param is not None
        tname = TABLE_FOR.get(c.ptype)
        if tname is None:
            raise BadRequest(f"Search parameter '{c.name}' ({c.ptype}) is not supported", code="not-supported")
        t = IDX[tname].alias()
        base = [t.c.res_type == rtype, t.c.param == c.name]
        if c.modifier == "missing":
            has = res.c.pk.in_(select(t.c.res_pk).where(*base))
            return not_(has) if c.values[0] else has
        if c.chain is not None or (c.values and isinstance(c.values[0], tuple)):
            return self._chain(c, t, base, res)
        if c.modifier == "not" and c.ptype == "token":
            ors = [token_cond(t, v) for v in c.values]
            return not_(res.c.pk.in_(select(t.c.res_pk).where(*base, or_(*ors))))
        ors = [self._value_cond(c, t, v) for v in c.values]
        return res.c.pk.in_(select(t.c.res_pk).where(*base, or_(*ors)))

    def _lu_cond(self, res: Any, v: DateValue) -> ColumnElement[bool]:
        # last_updated holds a FHIR instant in UTC, millisecond precision, 'Z': it sorts as text
        key = res.c.last_updated
        lo, hi = v.lo[:23] + "Z", v.hi[:23] + "Z"
        p = v.prefix
        return {
            "eq": and_(key >= lo, key <= hi), "ne": or_(key < lo, key > hi), "gt": key > hi, "lt": key < lo,
            "ge": key >= lo, "le": key <= hi, "sa": key > hi, "eb": key < lo,
        }.get(p, and_(key >= lo, key <= hi))

    def _value_cond(self, c: Criterion, t: Any, v: Any) -> ColumnElement[bool]:
        pt = c.ptype
        if pt == "string":
            if c.modifier == "exact":
                return t.c.exact == v
            if c.modifier == "contains":
                return t.c.value.like(f"%{_like_escape(v)}%", escape="\\")
            return t.c.value.like(f"{_like_escape(v)}%", escape="\\")
        if pt == "token":
            if c.modifier == "text":
                return t.c.text.like(f"{_like_escape(v)}%", escape="\\")
            if c.modifier == "of-type":
                raise BadRequest(":of-type is not supported yet", code="not-supported")
            return token_cond(t, v)
        if pt == "date":
            return date_cond(t.c.lo, t.c.hi, v)
        if pt in ("number", "quantity"):
            cond = number_cond(t.c.value, v)
            if v.system:
                cond = and_(cond, t.c.system == v.system)
            if v.code:
                cond = and_(cond, t.c.code == v.code)
            return cond
        if pt == "reference":
            return self._ref_cond(t, v)
        if pt == "uri":
            if c.modifier == "below":
                return t.c.value.like(f"{_like_escape(v)}%", escape="\\")
            if c.modifier == "above":
                return func.substr(v, 1, func.length(t.c.value)) == t.c.value
            return t.c.value == v
        if pt == "composite":
            return self._composite(t, v)
        raise BadRequest(f"Search parameter type {pt} is not supported", code="not-supported")

    def _ref_cond(self, t: Any, v: RefValue) -> ColumnElement[bool]:
        if v.url is not None:
            return t.c.url == v.url
        conds = [t.c.target_id == v.id]
        if v.type:
            conds.append(t.c.target_type == v.type)
        return and_(*conds)

    def _composite(self, t: Any, v: CompositeValue) -> ColumnElement[bool]:
        conds = [token_cond(t, v.first)]
        s = v.second
        if isinstance(s, TokenValue):
            if s.system is None:
                conds.append(t.c.text.like(f"%|{_like_escape(s.code or '')}", escape="\\"))
            else:
                conds.append(t.c.text == f"{s.system}|{s.code or ''}")
        elif isinstance(s, NumberValue):
            conds.append(number_cond(t.c.num, s))
            if s.system or s.code:
                conds.append(t.c.text.like(f"{_like_escape(s.system or '')}%|{_like_escape(s.code or '')}"
                                           if not s.system else f"{_like_escape(s.system)}|{_like_escape(s.code or '')}%",
                                           escape="\\"))
        elif isinstance(s, DateValue):
            conds.append(date_cond(t.c.lo, t.c.hi, s))
        else:
            conds.append(t.c.text.like(f"{_like_escape(s)}%", escape="\\"))
        return and_(*conds)

    def _chain(self, c: Criterion, t: Any, base: list[Any], res: Any) -> ColumnElement[bool]:
        chains = ([(c.chain_type, c.chain)] if c.chain is not None and c.chain_type is not None
                  else [(x[1], x[2]) for x in c.values])
        ors = []
        for ttype, inner in chains:
            r2 = RESOURCE.alias()
            ors.append(res.c.pk.in_(select(t.c.res_pk).select_from(t.join(
                r2, and_(r2.c.res_type == t.c.target_type, r2.c.res_id == t.c.target_id)))
                .where(*base, t.c.target_type == ttype, r2.c.deleted == false(),
                       self.criterion(inner, r2, ttype))))
        return or_(*ors)

    def _has(self, c: Criterion, res: Any, rtype: str) -> ColumnElement[bool]:
        ref = IDX["refs"].alias()
        r2 = RESOURCE.alias()
        assert c.chain is not None and c.has_type is not None
        return res.c.res_id.in_(select(ref.c.target_id).select_from(ref.join(r2, r2.c.pk == ref.c.res_pk)).where(
            ref.c.res_type == c.has_type, ref.c.param == c.has_param, ref.c.target_type == rtype,
            r2.c.deleted == false(), self.criterion(c.chain, r2, c.has_type)))

    def allowed(self, allowed: tuple[tuple[str, tuple[Criterion, ...]], ...], res: Any = RESOURCE
                ) -> ColumnElement[bool]:
        """A resource of one of the ``allowed`` types that meets that type's criteria."""
        free = [t for t, crits in allowed if not crits]
        ors: list[ColumnElement[bool]] = [res.c.res_type.in_(free)] if free else []
        for t, crits in allowed:
            if crits:
                ors.append(and_(res.c.res_type == t, *[self.criterion(c, res, t) for c in crits]))
        return or_(*ors) if ors else false()

    def sort_keys(self, q: SearchQuery, res: Any = RESOURCE) -> list[tuple[Any, bool]]:
        """One (expression, descending) per ``_sort`` key: the column, or for an indexed parameter the
        lowest (highest when descending) indexed value of the resource. ``keyset.order`` sorts on them (the
        surrogate key last as the tiebreaker) and ``keyset.beyond`` compares rows on them."""
        out: list[tuple[Any, bool]] = []
        for code, desc in q.sort:
            if code == "_id":
                col: Any = res.c.res_id
            elif code == "_lastUpdated":
                col = res.c.last_updated
            else:
                from ...search.params import registry

                sp = registry().get(q.resource_type, code)
                assert sp is not None
                tname = TABLE_FOR.get(sp.type)
                if tname is None or tname == "composites":
                    raise BadRequest(f"Cannot sort on '{code}'")
                t = IDX[tname]
                valcol = t.c.value if tname == "strings" else None
                if tname == "tokens":
                    valcol = t.c.code
                elif tname == "dates":
                    valcol = t.c.hi if desc else t.c.lo
                elif tname == "refs":
                    valcol = t.c.target_id
                elif tname in ("numbers", "uris"):
                    valcol = t.c.value
                agg = func.max(valcol) if desc else func.min(valcol)
                col = select(agg).where(t.c.res_pk == res.c.pk, t.c.param == code).scalar_subquery()
            out.append((col, desc))
        return out

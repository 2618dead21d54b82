"""Validation of many resources that share a few structures (what a mapping file renders), without running the
full R4B model validation on each one, and with the same verdict.

A resource's *shape* is its structure: every element name, list length and JSON type, and the resourceType. With
the R4B models everything the validation checks apart from primitive values follows from the shape: unknown
elements, required elements, choice elements given twice, nulls in lists of complex types, cardinality. So
the first resource of each shape is validated in full (``validate_resource``); when it has no defect at all, its
shape is remembered with, for each primitive value (leaf) in it, the validator of that element's FHIR primitive
type, taken from the model field's own annotation (``date``, ``dateTime``, ``code``, ``id``, ``positiveInt``,
``decimal``, ``uri``, ...: the same regular expressions and range checks the model applies), followed by the
element's value rule from ``json_rules`` (a required binding's codes, narrative without active content). The
other R4 JSON rules (each primitive's JSON type, no empty array or object) are properties of the shape itself,
so a shape learned from a resource that passed them passes them for every resource of that shape. A later resource
of a known shape passes when each of its leaves passes its element's validator, its id passes the R4 id rule
and the DEQM profile rules find nothing; anything else (an unknown shape, a leaf that fails) goes to the full
validation, which then reports the defect exactly as it would have without this cache.

Leaf verdicts are memoised by (element, JSON type, value): codes, systems and display texts repeat across
records, so most leaves are looked up rather than checked again. Resources with resource-typed elements
(``contained``, Bundle entries, Parameters) are never cached.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter, ValidationError

from .deqm_rules import check_profiles
from .json_rules import strip_optional, value_rule
from .validation import ID_RE, _model

MAX_SHAPES = 20_000
MAX_MEMO = 500_000


class _Uncacheable(Exception):
    pass


@dataclass(frozen=True)
class _Field:
    is_list: bool
    model: Any | None  # the element's model class for a complex type
    check: Callable[[Any], Any] | None  # the validator of a primitive type (one value, not a list)
    key: int  # stable number of this element, for the memo of leaf verdicts
    cacheable: bool = True


_keys: dict[tuple[Any, str], int] = {}


@cache
def _fields(model: Any) -> dict[str, _Field]:
    """JSON key -> what the model expects there."""
    out: dict[str, _Field] = {}
    for name, info in model.model_fields.items():
        ann = strip_optional(info.annotation)
        is_list = typing.get_origin(ann) in (list, typing.List)  # noqa: UP006 - matching the models' annotations
        if is_list:
            ann = strip_optional(typing.get_args(ann)[0])
        key = _keys.setdefault((model, name), len(_keys))
        if isinstance(ann, type) and issubclass(ann, FhirBase):
            sub = issubclass(ann, FhirElementOrResourceBase)
            f = _Field(is_list, None if sub else ann.get_model_klass(), None, key, cacheable=not sub)
        else:
            target = ann if is_list or not info.metadata else typing.Annotated[(ann, *info.metadata)]
            check = TypeAdapter(target).validate_python
            rule = value_rule(model, info.alias or name)  # required codes, narrative: as json_rules checks them
            f = _Field(is_list, None, check if rule is None else _with_rule(check, rule), key)
        out[info.alias or name] = f
        out.setdefault(name, f)
    return out


def _with_rule(check: Callable[[Any], Any], rule: Callable[[Any], str | None]) -> Callable[[Any], Any]:
    """The type's validator followed by the element's value rule; a defect raises ValueError."""
    def both(value: Any) -> Any:
        out = check(value)
        if rule(value):
            raise ValueError(value)
        return out

    return both


def _shape(node: Any, leaves: list[Any]) -> Hashable:
    """The structure of ``node`` (element names, list lengths, JSON types, resourceType) as one flat tuple, its
    leaf values appended to ``leaves`` in document order. Flat: hashing and comparing it does not recurse
    (a nested tuple is hashed again, level by level, at every look-up)."""
    out: list[Any] = []
    _walk(node, leaves, out, out.append, leaves.append)
    return tuple(out)


def _walk(node: Any, leaves: list[Any], out: list[Any], put: Callable[[Any], None],
          leaf: Callable[[Any], None]) -> None:
    # dict: dict, then key and value for each entry, then None; list: list, the items, None; a leaf: its type.
    # resourceType's value is written as it is (a str), where any other key's value starts with a marker.
    t = type(node)
    if t is dict:
        put(dict)
        for k, v in node.items():
            put(k)
            if k == "resourceType":
                if not isinstance(v, str):
                    raise _Uncacheable
                put(v)
                continue
            tv = type(v)
            if tv is dict or tv is list:
                _walk(v, leaves, out, put, leaf)
            else:
                leaf(v)
                put(tv)
        put(None)
    elif t is list:
        put(list)
        for v in node:
            tv = type(v)
            if tv is dict or tv is list:
                _walk(v, leaves, out, put, leaf)
            else:
                leaf(v)
                put(tv)
        put(None)
    else:
        leaf(node)
        put(t)


def _plan(model: Any, node: dict[str, Any], out: list[tuple[int, Callable[[Any], Any]] | None]) -> None:
    fields = _fields(model)
    for k, v in node.items():
        if k == "resourceType":
            continue
        f = fields.get(k)
        if f is None or not f.cacheable:
            raise _Uncacheable
        if type(v) is list:
            if not f.is_list:
                raise _Uncacheable
            for item in v:
                _plan_item(f, item, out)
        else:
            _plan_item(f, v, out)


def _plan_item(f: _Field, item: Any, out: list[tuple[int, Callable[[Any], Any]] | None]) -> None:
    if item is None:
        out.append(None)  # a null the full validation accepted here: every resource of this shape has it here
    elif type(item) is dict:
        if f.model is None:
            raise _Uncacheable
        _plan(f.model, item, out)
    elif type(item) is list or f.model is not None or f.check is None:
        raise _Uncacheable
    else:
        out.append((f.key, f.check))


class ShapeCache:
    """Remembers the shapes of fully validated, defect-free resources; see the module docstring."""

    def __init__(self) -> None:
        self._plans: dict[Hashable, list[tuple[int, Callable[[Any], Any]] | None]] = {}
        self._memo: set[tuple[int, type, Any]] = set()
        self.hits = 0

    def passes(self, resource: dict[str, Any]) -> bool:
        """True when ``resource`` has a known shape and every value in it is valid: it would pass
        ``validate_resource`` without a single issue. False means: validate it in full."""
        leaves: list[Any] = []
        try:
            plan = self._plans.get(_shape(resource, leaves))
        except (_Uncacheable, TypeError):  # TypeError: an unhashable leaf
            return False
        if plan is None or len(plan) != len(leaves):
            return False
        rid = resource.get("id")
        if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
            return False
        memo = self._memo
        for value, step in zip(leaves, plan, strict=True):
            if step is None:
                continue
            key = (step[0], type(value), value)
            if key in memo:
                continue
            try:
                step[1](value)
            except (ValidationError, ValueError, TypeError):
                return False
            if len(memo) >= MAX_MEMO:
                memo.clear()
            memo.add(key)
        if check_profiles(resource):
            return False
        self.hits += 1
        return True

    def learn(self, resource: dict[str, Any]) -> None:
        """Remember the shape of ``resource``, which the full validation found without any issue."""
        if len(self._plans) >= MAX_SHAPES:
            return
        model = _model(str(resource.get("resourceType")))
        if model is None:
            return
        leaves: list[Any] = []
        plan: list[tuple[int, Callable[[Any], Any]] | None] = []
        try:
            shape = _shape(resource, leaves)
            if shape in self._plans:
                return
            _plan(model, resource, plan)
        except (_Uncacheable, TypeError):
            return
        if len(plan) == len(leaves):
            self._plans[shape] = plan

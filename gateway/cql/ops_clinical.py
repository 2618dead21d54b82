"""Clinical and terminology operators (CQL §9.26-9.27 Clinical Operators): InValueSet, AnyInValueSet,
ExpandValueSet, InCodeSystem, AnyInCodeSystem. Value-set membership goes through the terminology port."""

from __future__ import annotations

from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .ops_refs import ValueSetValue
from .ops_types import system_value
from .terminology import in_valueset
from .values import Code, Concept, CqlError


def _valueset(node: dict[str, Any], c: LibraryCompiler, key: str) -> Fn:
    if node.get(key) is not None:
        ref = node[key]
        if "type" not in ref:  # the translator writes the value set / code system reference without a type
            ref = {**ref, "type": "ValueSetRef" if key == "valueset" else "CodeSystemRef"}
        return c.compile(ref)
    expr = node.get(key + "Expression")
    if expr is not None:
        return c.compile(expr)
    raise CqlError(f"{node.get('type')} without a {key}")


def _url(v: Any) -> str | None:
    if isinstance(v, ValueSetValue):
        return v.url
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and v.get("id"):
        return v["id"] + (f"|{v['version']}" if v.get("version") else "")
    return None


def _coded(v: Any) -> Any:
    if isinstance(v, list):
        return [_coded(x) for x in v]
    return system_value(v)


@compiles("InValueSet")
def _in_valueset(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    code = c.compile(node["code"])
    vs = _valueset(node, c, "valueset")

    def f(ctx: Context) -> Any:
        v = _coded(code(ctx))
        url = _url(vs(ctx))
        if url is None:
            return None
        return in_valueset(v, url, ctx.terminology)

    return f


@compiles("AnyInValueSet")
def _any_in_valueset(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    codes = c.compile(node["codes"])
    vs = _valueset(node, c, "valueset")

    def f(ctx: Context) -> Any:
        v = codes(ctx)
        url = _url(vs(ctx))
        if url is None:
            return None
        if v is None:
            return False
        return in_valueset([_coded(x) for x in v], url, ctx.terminology)

    return f


@compiles("ExpandValueSet")
def _expand_valueset(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (vs,) = c.operands(node)

    def f(ctx: Context) -> Any:
        url = _url(vs(ctx))
        return None if url is None else ctx.terminology.expand(url)

    return f


def _in_codesystem(value: Any, cs: Any) -> bool | None:
    system = cs.get("id") if isinstance(cs, dict) else None
    if value is None:
        return False
    if isinstance(value, Code):
        return value.system == system
    if isinstance(value, Concept):
        return any(x.system == system for x in value.codes)
    if isinstance(value, list):
        return any(_in_codesystem(x, cs) for x in value)
    return None


@compiles("InCodeSystem")
def _in_cs(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    code = c.compile(node["code"])
    cs = _valueset(node, c, "codesystem")
    return lambda ctx: _in_codesystem(_coded(code(ctx)), cs(ctx))


@compiles("AnyInCodeSystem")
def _any_in_cs(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    codes = c.compile(node["codes"])
    cs = _valueset(node, c, "codesystem")
    return lambda ctx: _in_codesystem([_coded(x) for x in codes(ctx) or []], cs(ctx))

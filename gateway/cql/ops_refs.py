"""References and literals (CQL §2 Structured values, §4 Reusing logic): ExpressionRef, FunctionRef,
ParameterRef, OperandRef, AliasRef, QueryLetRef, IdentifierRef, ValueSetRef, CodeRef, CodeSystemRef,
ConceptRef, Literal, Null, Code, Concept, Quantity, Ratio, Tuple, Instance, List, Property."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .engine import Context, EvaluationError, Fn, LibraryCompiler, compiles
from .fhirmodel import Node, children, primitive_value, type_info
from .fhirmodel import step as fhir_step
from .types import spec_key
from .values import Code, Concept, CqlError


@compiles("ExpressionRef")
def _expression_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    name = node["name"]
    cell: list[Fn] = []

    def ref(ctx: Context) -> Any:  # resolved lazily: definitions may refer to later ones
        if not cell:
            cell.append(target.definition(name))
        return cell[0](ctx)

    return ref


_PLAIN = (str, int, bool, Decimal)
MAX_CALLS = 200_000  # memoised calls per evaluation; past it the memo starts again


def _call_key(fn: Any, values: list[Any]) -> tuple[Any, ...] | None:
    """The memo key of a call of ``fn`` with ``values``, or None when a value has no stable key.

    CQL functions have no side effects: within one evaluation (one patient, one set of parameters, one Now())
    the same function on the same arguments gives the same result. Measures call conversion functions
    (``ToInterval``, ``toInterval``, ``ToDateTime``, ...) on the same FHIR elements once for every pair a
    ``with ... such that`` compares, so a result is kept per (function, arguments). A FHIR element is keyed by
    the identity of its JSON value in the evaluation's data (a new Node wraps the same dict or string at every
    navigation); the memo keeps the arguments, so no identity is reused while the entry lives. Plain values
    are keyed with their type (``1``, ``True`` and ``Decimal(1)`` compare equal in Python)."""
    key: list[Any] = [fn]
    for v in values:
        if v is None:
            key.append(None)
        elif type(v) is Node:
            key.append((id(v.value), v.type, id(v.ext)))
        elif type(v) in _PLAIN:
            key.append((type(v), v))
        else:
            return None
    return tuple(key)


def _memo_call(ctx: Context, body: Fn, params: list[str], values: list[Any]) -> Any:
    """``_in_frame``, its result kept per (function, arguments) for the evaluation (see ``_call_key``)."""
    if ctx.evaluated is not None:
        return _in_frame(ctx, body, params, values)
    key = _call_key(body, values)
    if key is None:
        return _in_frame(ctx, body, params, values)
    hit = ctx.calls.get(key)
    if hit is not None:
        return hit[1]
    out = _in_frame(ctx, body, params, values)
    if len(ctx.calls) >= MAX_CALLS:
        ctx.calls.clear()
    ctx.calls[key] = (tuple(values), out)
    return out


def _in_frame(ctx: Context, body: Fn, params: list[str], values: list[Any]) -> Any:
    """A function body evaluated with its operands bound by name (a new frame: outer aliases are not seen)."""
    saved = ctx.scope
    ctx.scope = dict(zip(params, values, strict=True))
    try:
        return body(ctx)
    finally:
        ctx.scope = saved


@compiles("ParameterRef")
def _parameter_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    name = node["name"]
    pdef = target.library.parameters.get(name)
    if pdef is None:
        raise EvaluationError(f"Library {target.library.key} has no parameter \"{name}\"")
    default = target.compile(pdef["default"]) if pdef.get("default") else None
    qualified = f"{target.library.name}.{name}"
    key = (target.library.key, "parameter:" + name)

    def ref(ctx: Context) -> Any:
        if key in ctx.cache:
            return ctx.cache[key]
        if qualified in ctx.parameters:
            value = ctx.parameters[qualified]
        elif name in ctx.parameters:
            value = ctx.parameters[name]
        else:
            value = default(ctx) if default else None
        ctx.cache[key] = value
        return value

    return ref


@compiles("OperandRef", "AliasRef", "QueryLetRef", "IdentifierRef")
def _scope_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    name = node["name"]

    def ref(ctx: Context) -> Any:
        try:
            return ctx.scope[name]
        except KeyError:
            if "$this" in ctx.scope:  # sort by expression: identifiers are properties of the element
                return get_property(ctx.scope["$this"], name)
            raise EvaluationError(f"\"{name}\" is not in scope") from None

    return ref


@compiles("FunctionRef")
def _function_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    name = node["name"]
    args = c.operands(node)
    overloads = [f for f in target.library.functions.get(name, []) if len(f.get("operand", [])) == len(args)]
    if not overloads:
        from .ops_native import system_function

        native = system_function(name, len(args))
        if native is not None:
            return lambda ctx: native(*[a(ctx) for a in args])
        raise EvaluationError(f"No function {name} with {len(args)} operands in library {target.library.key}")
    sig = node.get("signature")
    if len(overloads) > 1 and sig:
        wanted = [spec_key(s) for s in sig]
        exact = [f for f in overloads if [spec_key(o.get("operandTypeSpecifier")) for o in f["operand"]] == wanted]
        if exact:
            overloads = exact[:1]
    names = [[o["name"] for o in f["operand"]] for f in overloads]
    bodies = [target.function(f) for f in overloads]
    if len(overloads) == 1:
        params, body = names[0], bodies[0]

        def call(ctx: Context) -> Any:
            return _memo_call(ctx, body, params, [a(ctx) for a in args])

        return call
    from .ops_types import type_test

    # each overload's operand type tests, built once (None: an operand without a declared type)
    tests = [[None if o.get("operandTypeSpecifier") is None else type_test(o["operandTypeSpecifier"])
              for o in f["operand"]] for f in overloads]

    def dispatch(ctx: Context) -> Any:  # overloads without a signature: pick by the run-time types
        values = [a(ctx) for a in args]
        for params, body, types in zip(names, bodies, tests, strict=True):
            if all(v is None or t is None or t(v) for v, t in zip(values, types, strict=True)):
                return _memo_call(ctx, body, params, values)
        raise EvaluationError(f"No overload of {name} accepts the given argument types")

    return dispatch


@compiles("Literal")
def _literal(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    vt = node.get("valueType", "")
    raw = node.get("value")
    local = vt.rsplit("}", 1)[-1]
    value: Any
    if raw is None:
        value = None
    elif local == "Boolean":
        value = str(raw).lower() == "true"
    elif local in ("Integer", "Long"):
        value = _checked_integer(str(raw), local)
    elif local == "Decimal":
        value = _checked_decimal(str(raw))
    elif local == "String":
        value = raw
    elif local in ("Date", "DateTime", "Time"):
        from . import datetime as dt

        value = {"Date": dt.parse_date, "DateTime": dt.parse_datetime, "Time": dt.parse_time}[local](raw)
    else:
        raise CqlError(f"Literal of type {vt} is not supported")
    return lambda ctx: value


_INTEGER_RANGE = {"Integer": (-(2**31), 2**31 - 1), "Long": (-(2**63), 2**63 - 1)}
_DECIMAL_LIMIT = Decimal(10) ** 20  # |value| <= (10^28 - 1) / 10^8
_DECIMAL_PLACES = 8


def _checked_integer(raw: str, kind: str) -> int:
    """An Integer (32-bit) or Long (64-bit) literal; a value outside the type's range (CQL §"Integer",
    §"Long"; the translator does not check it) is refused when the library is compiled."""
    try:
        value = int(raw)
    except ValueError:
        raise CqlError(f"{kind} literal {raw!r} is not a number") from None
    lo, hi = _INTEGER_RANGE[kind]
    if not lo <= value <= hi:
        raise CqlError(f"{kind} literal {raw} is outside the {kind} range {lo}..{hi}")
    return value


def _checked_decimal(raw: str) -> Decimal:
    """A Decimal literal: within the Decimal range (10^28 - 1) / 10^8, i.e. at most 20 digits before the point
    and 8 after (CQL §"Decimal": 28 digits of precision, scale 8), else refused when the library is compiled
    rather than silently rounded or turned into null."""
    try:
        value = Decimal(raw)
    except decimal.InvalidOperation:
        raise CqlError(f"Decimal literal {raw!r} is not a number") from None
    if value.is_zero():
        value = value.copy_abs()  # -0.0 (a negated zero literal) is 0.0
    exp = value.as_tuple().exponent
    places = max(0, -exp) if isinstance(exp, int) else 0
    if not value.is_finite() or value.copy_abs() >= _DECIMAL_LIMIT or places > _DECIMAL_PLACES:
        raise CqlError(f"Decimal literal {raw} is outside the Decimal range (at most 20 digits before the "
                       f"point and 8 after)")
    return value


@compiles("Null")
def _null(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    return lambda ctx: None


@compiles("Quantity")
def _quantity(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    from .quantity import Quantity

    q = Quantity(Decimal(str(node.get("value"))), node.get("unit") or "1")
    return lambda ctx: q


@compiles("Ratio")
def _ratio(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    from .quantity import Quantity, Ratio

    num, den = node["numerator"], node["denominator"]
    r = Ratio(Quantity(Decimal(str(num["value"])), num.get("unit") or "1"),
              Quantity(Decimal(str(den["value"])), den.get("unit") or "1"))
    return lambda ctx: r


def _lookup(target: LibraryCompiler, section: str, name: str, label: str) -> dict[str, Any]:
    """A code, concept, code system or value set definition of ``target``'s library, or a clear error."""
    d = getattr(target.library, section).get(name)
    if d is None:
        raise EvaluationError(f"{label} \"{name}\" is not defined in {target.library.key}")
    return d


def _code_from_def(d: dict[str, Any], c: LibraryCompiler) -> Code:
    system = None
    cs = d.get("codeSystem")
    if cs:
        target = c.other(cs.get("libraryName"))
        csdef = _lookup(target, "codesystems", cs["name"], "Code system")
        system = csdef.get("id")
        version = csdef.get("version")
    else:
        version = None
    return Code(d["id"], system, version, d.get("display"))


@compiles("CodeRef")
def _code_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    d = _lookup(target, "codes", node["name"], "Code")
    code = _code_from_def(d, target)
    return lambda ctx: code


@compiles("ConceptRef")
def _concept_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    d = _lookup(target, "concepts", node["name"], "Concept")
    codes = tuple(_code_from_def(target.library.codes[cr["name"]], target) for cr in d.get("code", []))
    concept = Concept(codes, d.get("display"))
    return lambda ctx: concept


@compiles("CodeSystemRef")
def _codesystem_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    d = _lookup(target, "codesystems", node["name"], "Code system")
    value = {"id": d.get("id"), "version": d.get("version"), "name": node["name"]}
    return lambda ctx: value


class ValueSetValue:
    """A ValueSetRef's value: the canonical URL (with version), resolved through the terminology port."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"ValueSet({self.url})"


@compiles("ValueSetRef")
def _valueset_ref(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    target = c.other(node.get("libraryName"))
    d = _lookup(target, "valuesets", node["name"], "Value set")
    url = d["id"] + (f"|{d['version']}" if d.get("version") else "")
    vs = ValueSetValue(url)
    if node.get("preserve") is False or node.get("expand"):
        return lambda ctx: ctx.terminology.expand(url)
    return lambda ctx: vs


@compiles("Code")
def _code(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    code = _code_from_def({"id": node["code"], "codeSystem": node.get("system"), "display": node.get("display")}, c)
    return lambda ctx: code


@compiles("Concept")
def _concept(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    codes = [c.compile({**cd, "type": "Code"}) for cd in node.get("code", [])]
    display = node.get("display")
    return lambda ctx: Concept(tuple(f(ctx) for f in codes), display)


@compiles("Tuple")
def _tuple(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    elements = [(e["name"], c.compile(e["value"])) for e in node.get("element", [])]
    return lambda ctx: {name: fn(ctx) for name, fn in elements}


@compiles("Instance")
def _instance(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    elements = [(e["name"], c.compile(e["value"])) for e in node.get("element", [])]
    class_type = node.get("classType", "")
    local = class_type.rsplit("}", 1)[-1]
    if local == "Code":
        return lambda ctx: _make_code({n: f(ctx) for n, f in elements})
    if local == "Concept":
        return lambda ctx: _make_concept({n: f(ctx) for n, f in elements})
    if local == "Quantity":
        from .quantity import Quantity

        def quantity(ctx: Context) -> Any:
            v = {n: f(ctx) for n, f in elements}
            return None if v.get("value") is None else Quantity(Decimal(v["value"]), v.get("unit") or "1")

        return quantity
    if class_type == "{urn:hl7-org:elm-types:r1}ValueSet":  # a System.ValueSet selector, as a ValueSetRef gives
        def valueset(ctx: Context) -> Any:
            v = {n: f(ctx) for n, f in elements}
            if v.get("id") is None:
                return None
            return ValueSetValue(str(v["id"]) + (f"|{v['version']}" if v.get("version") else ""))

        return valueset
    if class_type.startswith("{http://hl7.org/fhir}"):
        return lambda ctx: Node({n: _to_json(f(ctx)) for n, f in elements}, local)
    return lambda ctx: {n: f(ctx) for n, f in elements}


def _to_json(v: Any) -> Any:
    return v.value if isinstance(v, Node) else v


def _make_code(v: dict[str, Any]) -> Code | None:
    if v.get("code") is None:
        return None
    return Code(v["code"], v.get("system"), v.get("version"), v.get("display"))


def _make_concept(v: dict[str, Any]) -> Concept:
    return Concept(tuple(x for x in v.get("codes") or [] if x is not None), v.get("display"))


@compiles("List")
def _list(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    elements = [c.compile(e) for e in node.get("element", [])]
    return lambda ctx: [f(ctx) for f in elements]


def get_property(value: Any, path: str) -> Any:
    """Navigate one property step (``path`` may hold dots) from a Node, tuple, list or system value."""
    if "." not in path:
        return _step(value, path)
    for step in path.split("."):
        value = _step(value, step)
        if value is None:
            return None
    return value


def navigator(path: str) -> Callable[[Any], Any]:
    """``get_property`` for a fixed ``path``, split once: ELM Property nodes navigate the same path for every
    element they see, most often one step from a FHIR element."""
    steps = tuple(path.split("."))
    if len(steps) == 1:
        name = steps[0]
        return lambda value: _step(value, name)

    def many(value: Any) -> Any:
        for name in steps:
            value = _step(value, name)
            if value is None:
                return None
        return value

    return many


def _step(value: Any, name: str) -> Any:
    if value.__class__ is Node and value.value.__class__ is dict:  # the common case first: a FHIR element
        return fhir_step(value, name)
    if value is None:
        return None
    if isinstance(value, list):  # property of a list: flattened over its elements (FHIRPath-like)
        out: list[Any] = []
        for v in value:
            r = _step(v, name)
            if isinstance(r, list):
                out.extend(r)
            elif r is not None:
                out.append(r)
        return out
    if isinstance(value, Node):
        if isinstance(value.value, dict):
            return fhir_step(value, name)
        if name == "value":
            return primitive_value(value)
        kids = children(value, name)
        info_list = _is_list_field(value, name)
        if info_list:
            return kids
        return kids[0] if kids else None
    if isinstance(value, dict):
        return value.get(name)
    attr = getattr(value, name, None)
    if attr is not None or hasattr(value, name):
        return attr
    if isinstance(value, Code) and name in ("code", "system", "version", "display"):
        return getattr(value, name)
    return None


def _is_list_field(node: Node, name: str) -> bool:
    info = type_info(node.type)
    if info is None:
        return isinstance(node.value, dict) and isinstance(node.value.get(name), list)
    f = info.fields.get(name)
    if f is not None:
        return f.is_list
    alts = info.choices.get(name)
    return bool(alts) and alts[0].is_list


@compiles("Property")
def _property(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    nav = navigator(node["path"])
    if node.get("source") is not None:
        src = c.compile(node["source"])
        return lambda ctx: nav(src(ctx))
    scope = node.get("scope")
    if scope is None:
        # no source and no scope: the translator means the innermost query alias (e.g. the related
        # Medication inside the With clause it generates for a MedicationRequest retrieve)
        def implicit(ctx: Context) -> Any:
            target = ctx.scope.get("$implicit", ctx.scope.get("$this"))
            return nav(target)

        return implicit

    def scoped(ctx: Context) -> Any:
        return nav(ctx.scope.get(scope))

    return scoped

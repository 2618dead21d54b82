"""CQL syntax trees to ELM JSON: name resolution, type inference and overload resolution.

Every expression translates to ``(elm, type)``. Operators and System functions resolve against the overloads
in ``system.py``: each candidate is scored by the implicit conversions its operands need (``types.py``), the
cheapest wins, and the conversions it needs are written into the ELM (``ToDecimal``, ``ToLong``,
``ToQuantity``, ``ToDateTime``, ``ToConcept``, ``As`` for nulls, a ``Query`` converting list elements).
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

from .ast import Node
from .lexer import CqlSyntaxError
from .model import EXTENSION_ELEMENTS, HELPER_CONVERSIONS, is_primitive, local, system_target
from .parser import PRECISIONS
from .system import SYSTEM
from .types import CONVERSIONS, common_type, conversion_cost, qname, show, spec, with_type

Elm = dict[str, Any]
Typed = tuple[Elm, Any]

MODEL_TYPES: dict[str, Any] = {}


class CqlTranslationError(CqlSyntaxError):
    """A semantic error (an unknown name, no matching overload ...) at a line and column."""


def lit(vtype: str, value: Any) -> Elm:
    return {"type": "Literal", "valueType": qname(vtype), "value": str(value)}


def _bind(pattern: Any, actual: Any, env: dict[str, Any]) -> None:
    """Collect candidate bindings of the type variable T from an actual operand type (for a choice, from
    each alternative, or the System value it converts to, that has the pattern's shape)."""
    if isinstance(actual, tuple) and actual[0] == "Choice" and pattern != "T":
        for alt in actual[1]:
            target = system_target(alt) or alt
            if isinstance(pattern, tuple) and isinstance(target, tuple) and target[0] == pattern[0]:
                _bind(pattern, target, env)
        return
    if isinstance(actual, str) and actual.startswith("FHIR.") and isinstance(pattern, tuple):
        target = system_target(actual)
        if isinstance(target, tuple) and target[0] == pattern[0]:
            _bind(pattern, target, env)
        return
    if pattern == "T":
        env.setdefault("T", []).append(actual)
    elif isinstance(pattern, tuple) and isinstance(actual, tuple) and pattern[0] == actual[0]:
        _bind(pattern[1], actual[1], env)


def _subst(pattern: Any, t: Any) -> Any:
    if pattern == "T":
        return t
    if isinstance(pattern, tuple):
        return (pattern[0], _subst(pattern[1], t))
    return pattern


class Scope:
    """Names visible in an expression: query aliases, lets, function operands; ``sort_item`` marks a sort
    expression (identifiers are properties of the sorted element)."""

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.aliases: dict[str, Any] = {}
        self.lets: dict[str, Any] = {}
        self.operands: dict[str, Any] = {}
        self.sort_item = False
        self.sort_type: Any = None  # the type of the sorted elements, in a sort expression

    def lookup(self, name: str) -> tuple[str, Any] | None:
        s: Scope | None = self
        while s is not None:
            if name in s.aliases:
                return "AliasRef", s.aliases[name]
            if name in s.lets:
                return "QueryLetRef", s.lets[name]
            if name in s.operands:
                return "OperandRef", s.operands[name]
            s = s.parent
        return None

    def implicit_alias(self) -> tuple[str, Any] | None:
        s: Scope | None = self
        while s is not None:
            if len(s.aliases) == 1:
                return next(iter(s.aliases.items()))
            if s.aliases:
                return None
            s = s.parent
        return None

    def in_sort(self) -> bool:
        s: Scope | None = self
        while s is not None:
            if s.sort_item:
                return True
            s = s.parent
        return False


def err(node: Node | None, message: str) -> CqlTranslationError:
    return CqlTranslationError(message, node.line if node else 0, node.col if node else 0)


class ExpressionTranslator:
    """Translates expressions in the context of a library (its definitions, parameters, terminology and
    includes are resolved through ``self.lib``)."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib

    # ---- conversions and overloads
    def convert(self, elm: Elm, src: Any, dst: Any) -> Elm:
        """``elm`` (of type ``src``) converted implicitly to ``dst``."""
        if src == dst or dst is None or src is None or dst == "Any":
            return elm
        if src == "Any":
            if elm.get("type") == "Null":
                if isinstance(dst, str):
                    return with_type({"type": "As", "asType": qname(dst), "operand": elm}, dst)
                return with_type({"type": "As", "operand": elm, "asTypeSpecifier": spec(dst)}, dst)
            return elm
        if isinstance(src, tuple) and src[0] == "Choice" and dst not in src[1] and not (
                isinstance(dst, tuple) and dst[0] == "Choice" and set(src[1]) <= set(dst[1])):
            if any(isinstance(a, str) and a.startswith("FHIR.") for a in src[1]):
                elm = self.helper("ToValue", elm)
            if isinstance(dst, tuple) and dst[0] == "Choice":
                return elm
            return with_type({"type": "As", "operand": elm, "asTypeSpecifier": spec(dst)}, dst)
        if isinstance(src, str) and src.startswith("FHIR.") and isinstance(dst, tuple) and dst[0] == "Choice" \
                and src not in dst[1]:
            target = system_target(src)
            return self.convert(elm, src, target)
        if isinstance(src, str) and src.startswith("FHIR.") and not (isinstance(dst, str) and dst.startswith("FHIR.")) \
                and not (isinstance(dst, tuple) and dst[0] == "Choice"):
            target = system_target(src)
            if target is None:
                return elm
            name = local(src)
            if is_primitive(name):
                out = with_type({"type": "Property", "path": "value", "source": elm}, target)
            else:
                out = with_type(self.helper(HELPER_CONVERSIONS[name][1], elm), target)
            return self.convert(out, target, dst)
        if isinstance(src, str) and isinstance(dst, str) and (src, dst) in CONVERSIONS:
            op = CONVERSIONS[(src, dst)][0]
            return with_type({"type": op, "signature": [spec(src)], "operand": elm}, dst)
        if isinstance(src, tuple) and isinstance(dst, tuple) and src[0] == dst[0] == "List" and src[1] != dst[1]:
            if elm.get("type") == "List":
                elm["element"] = [self.convert(e, src[1], dst[1]) for e in elm.get("element", [])]
                return with_type(elm, dst)
            inner = self.convert({"type": "AliasRef", "name": "$this"}, src[1], dst[1])
            return with_type({"type": "Query", "source": [{"alias": "$this", "expression": elm}], "let": [],
                              "relationship": [], "return": {"distinct": False, "expression": inner}}, dst)
        if isinstance(src, tuple) and isinstance(dst, tuple) and src[0] == dst[0] == "Interval" \
                and src[1] != dst[1] and src[1] != "Any" and elm.get("type") == "Interval":
            elm["low"] = self.convert(elm["low"], src[1], dst[1])
            elm["high"] = self.convert(elm["high"], src[1], dst[1])
            return with_type(elm, dst)
        if isinstance(src, tuple) and src[0] == "Choice" and isinstance(dst, str):
            return with_type({"type": "As", "asType": qname(dst), "operand": elm}, dst)
        return elm

    def helper(self, name: str, elm: Elm) -> Elm:
        """A call of FHIRHelpers function ``name`` on ``elm``."""
        out: Elm = {"type": "FunctionRef", "name": name, "operand": [elm]}
        alias = self.lib.helpers_alias()
        if alias is not None:
            out["libraryName"] = alias
        return out

    def resolve(self, name: str, args: list[Typed], node: Node | None) -> tuple[list[Elm], list[Any], Any]:
        """The cheapest overload of System operator ``name`` for ``args``: converted operands, the
        overload's operand types and its result type."""
        _, _, sigs = SYSTEM[name]
        types = [t for _, t in args]
        best: tuple[int, list[Any], Any] | None = None
        tie = False
        for params, result in sigs:
            if len(params) != len(args):
                continue
            env: dict[str, Any] = {}
            for p, a in zip(params, types, strict=True):
                _bind(p, a, env)
            cands = env.get("T")
            if cands is None:
                options: list[Any] = [None]
            else:
                common = common_type(cands)
                options = [c for c in cands if c is not None]
                if not (isinstance(common, tuple) and common[0] == "Choice" and common not in cands):
                    options.insert(0, common)
            for tv in options:
                concrete = [_subst(p, tv) for p in params]
                costs = [conversion_cost(a, p) for a, p in zip(types, concrete, strict=True)]
                if any(c is None for c in costs):
                    continue
                total = sum(c for c in costs if c is not None)
                if best is None or total < best[0]:
                    best = (total, concrete, _subst(result, tv))
                    tie = False
                elif total == best[0] and _subst(result, tv) != best[2]:
                    tie = True
        if best is None:
            raise err(node, f"could not resolve call to operator {name} with signature "
                            f"({', '.join(show(t) for t in types)})")
        _, concrete, result = best
        if tie and None in types:  # an operand of unknown type and equally good overloads: decided at run time
            return [e for e, _ in args], [None] * len(args), None
        converted = [self.convert(e, a, p) for (e, a), p in zip(args, concrete, strict=True)]
        sig_types = [a if p == "Any" and a not in (None, "Any") else p for (_, a), p in zip(args, concrete,
                                                                                          strict=True)]
        return converted, sig_types, result

    def call(self, name: str, args: list[Typed], node: Node | None, **extra: Any) -> Typed:
        """A System operator or function call as ELM, with its result type."""
        elm_type, shape, _ = SYSTEM[name]
        ops, sig_types, result = self.resolve(name, args, node)
        out: Elm = {"type": elm_type}
        if shape not in ("0",) and not isinstance(shape, tuple) and any(t is not None for t in sig_types):
            out["signature"] = [spec(t) for t in sig_types]
        if shape == "u":
            out["operand"] = ops[0]
        elif shape == "n":
            out["operand"] = ops
        elif shape == "s":
            out["source"] = ops[0]
        elif isinstance(shape, tuple):
            for field, value in zip(shape, ops, strict=False):
                out[field] = value
        out.update(extra)
        if result == "T":
            result = None
        return with_type(out, result), result

    # ---- expressions
    def tr(self, n: Node, scope: Scope) -> Typed:
        method = getattr(self, "t_" + n.kind, None)
        if method is None:
            raise err(n, f"unsupported construct {n.kind}")
        return method(n, scope)  # type: ignore[no-any-return]

    def t_literal(self, n: Node, scope: Scope) -> Typed:
        value = n.value
        if n.vtype == "Decimal":
            value = n.value
        return with_type(lit(n.vtype, value), n.vtype), n.vtype

    def t_null(self, n: Node, scope: Scope) -> Typed:
        return {"type": "Null"}, "Any"

    def t_quantity(self, n: Node, scope: Scope) -> Typed:
        return with_type({"type": "Quantity", "value": Decimal(n.value), "unit": n.unit}, "Quantity"), "Quantity"

    def t_ratio(self, n: Node, scope: Scope) -> Typed:
        num = {"value": Decimal(n.num.value), "unit": n.num.unit}
        den = {"value": Decimal(n.den.value), "unit": n.den.unit}
        return with_type({"type": "Ratio", "numerator": num, "denominator": den}, "Ratio"), "Ratio"

    def t_datelit(self, n: Node, scope: Scope) -> Typed:
        text: str = n.text
        if text.startswith("T"):
            m = re.fullmatch(r"T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?", text)
            if not m:
                raise err(n, f"invalid time literal @{text}")
            out: Elm = {"type": "Time"}
            _check_ranges(n, m.group(1), m.group(2), m.group(3))
            for field, g in zip(("hour", "minute", "second", "millisecond"), m.groups(), strict=True):
                if g is not None:
                    out[field] = lit("Integer", _ms(g) if field == "millisecond" else int(g))
            return with_type(out, "Time"), "Time"
        m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(T(?:(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
                         r"(Z|[+-]\d{2}:\d{2})?)?", text)
        if not m:
            raise err(n, f"invalid date/time literal @{text}")
        year, month, day, tpart, hour, minute, second, frac, tz = m.groups()
        if month is not None and not 1 <= int(month) <= 12 or day is not None and not 1 <= int(day) <= 31:
            raise err(n, f"invalid date/time literal @{text}")
        _check_ranges(n, hour, minute, second)
        is_dt = tpart is not None
        out = {"type": "DateTime" if is_dt else "Date"}
        for field, g in (("year", year), ("month", month), ("day", day), ("hour", hour), ("minute", minute),
                         ("second", second)):
            if g is not None:
                out[field] = lit("Integer", int(g))
        if frac is not None:
            out["millisecond"] = lit("Integer", _ms(frac))
        if tz is not None:
            if tz == "Z":
                offset = Decimal("0.0")
            else:
                sign = -1 if tz[0] == "-" else 1
                offset = sign * (Decimal(int(tz[1:3])) + Decimal(int(tz[4:6])) / Decimal(60))
            out["timezoneOffset"] = lit("Decimal", _decimal_text(offset))
        t = "DateTime" if is_dt else "Date"
        return with_type(out, t), t

    def t_extconst(self, n: Node, scope: Scope) -> Typed:
        raise err(n, f"external constant %{n.name} is not supported")

    def t_interval(self, n: Node, scope: Scope) -> Typed:
        low, lt = self.tr(n.low, scope)
        high, ht = self.tr(n.high, scope)
        pt = common_type([lt, ht])
        if isinstance(pt, tuple) and pt[0] == "Choice":
            raise err(n, f"the bounds of an interval must have the same type ({show(lt)}, {show(ht)})")
        if pt != "Any":
            low, high = self.convert(low, lt, pt), self.convert(high, ht, pt)
        t = ("Interval", pt)
        return with_type({"type": "Interval", "lowClosed": n.low_closed, "highClosed": n.high_closed, "low": low,
                          "high": high}, t), t

    def t_list(self, n: Node, scope: Scope) -> Typed:
        items = [self.tr(e, scope) for e in n.elements]
        if n.type is not None:
            et = self.lib.resolve_type(n.type, n)
        else:
            et = common_type([t for _, t in items]) if items else "Any"
            if et is None and items:
                et = None
        elems = [self.convert(e, t, et) for e, t in items]
        t = ("List", et)
        return with_type({"type": "List", "element": elems}, t), t

    def t_tuple(self, n: Node, scope: Scope) -> Typed:
        elems, types = [], []
        for name, e in n.elements:
            elm, t = self.tr(e, scope)
            elems.append({"name": name, "value": elm})
            types.append((name, t))
        t = ("Tuple", tuple(types))
        return with_type({"type": "Tuple", "element": elems}, t), t

    def t_instance(self, n: Node, scope: Scope) -> Typed:
        tname = self.lib.resolve_type(("named", n.type), n)
        fields = INSTANCE_FIELDS.get(tname, {})
        elems = []
        for name, e in n.elements:
            elm, t = self.tr(e, scope)
            want = fields.get(name)
            if want is not None:
                if conversion_cost(t, want) is None:
                    raise err(e, f"element {name} of {tname} must be a {show(want)}, not a {show(t)}")
                elm = self.convert(elm, t, want)
            elems.append({"name": name, "value": elm})
        return with_type({"type": "Instance", "classType": qname(tname), "element": elems}, tname), tname

    def t_codesel(self, n: Node, scope: Scope) -> Typed:
        system = self.lib.codesystem_ref(n.system, n)
        out: Elm = {"type": "Code", "code": n.code, "system": system}
        if n.display is not None:
            out["display"] = n.display
        return with_type(out, "Code"), "Code"

    def t_conceptsel(self, n: Node, scope: Scope) -> Typed:
        codes = [self.tr(c, scope)[0] for c in n.codes]
        out: Elm = {"type": "Concept", "code": codes}
        if n.display is not None:
            out["display"] = n.display
        return with_type(out, "Concept"), "Concept"

    def t_ident(self, n: Node, scope: Scope) -> Typed:
        name = n.name
        found = scope.lookup(name)
        if found is not None:
            kind, t = found
            return with_type({"type": kind, "name": name}, t), t
        if scope.in_sort():
            st = _sort_type(scope)
            pt = self.lib.property_type(st, name) if st is not None else None
            pt = None if pt is False else pt
            return with_type({"type": "IdentifierRef", "name": name}, pt), pt
        ref = self.lib.resolve_identifier(name, n, self)
        if ref is not None:
            return ref
        implicit = scope.implicit_alias()
        if implicit is not None:
            alias, at = implicit
            pt = self.lib.property_type(at, name)
            if pt is not False:
                return with_type({"type": "Property", "path": name, "scope": alias}, pt), pt
        raise err(n, f"could not resolve identifier {name}")

    def t_member(self, n: Node, scope: Scope) -> Typed:
        src = n.source
        if src.kind == "ident" and scope.lookup(src.name) is None and self.lib.is_include(src.name):
            ref = self.lib.resolve_identifier(n.name, n, self, library=src.name)
            if ref is None:
                raise err(n, f"could not resolve {src.name}.{n.name}")
            return ref
        if src.kind == "ident" and src.name in scope_aliases(scope):
            at = scope.lookup(src.name)[1]  # type: ignore[index]
            if isinstance(at, str) and (at, n.name) in EXTENSION_ELEMENTS:
                ext = EXTENSION_ELEMENTS[(at, n.name)]
                return self.extension_element(with_type({"type": "AliasRef", "name": src.name}, at), ext), ext[1]
            pt = self.lib.property_type(at, n.name)
            if pt is False:
                raise err(n, f"{show(at)} has no element {n.name}")
            return with_type({"type": "Property", "path": n.name, "scope": src.name}, pt), pt
        elm, t = self.tr(src, scope)
        return self.property(elm, t, n.name, n)

    def property(self, elm: Elm, t: Any, name: str, n: Node) -> Typed:
        if isinstance(t, tuple) and t[0] == "List":  # path on a list: the property of every element
            pt = self.lib.property_type(t[1], name)
            if pt is False:
                raise err(n, f"{show(t[1])} has no element {name}")
            inner_t = pt
            flat = isinstance(inner_t, tuple) and inner_t[0] == "List"
            rt = inner_t if flat else ("List", inner_t)
            q = {"type": "Query", "source": [{"alias": "$this", "expression": elm}], "let": [], "relationship": [],
                 "where": {"type": "Not", "operand": {"type": "IsNull", "operand": {
                     "type": "Property", "path": name, "source": {"type": "AliasRef", "name": "$this"}}}},
                 "return": {"distinct": False, "expression": {"type": "Property", "path": name,
                                                             "source": {"type": "AliasRef", "name": "$this"}}}}
            if flat:
                return with_type({"type": "Flatten", "operand": q}, rt), rt
            return with_type(q, rt), rt
        ext = EXTENSION_ELEMENTS.get((t, name)) if isinstance(t, str) else None
        if ext is not None:
            return self.extension_element(elm, ext), ext[1]
        pt = self.lib.property_type(t, name)
        if pt is False:
            raise err(n, f"{show(t)} has no element {name}")
        return with_type({"type": "Property", "path": name, "source": elm}, pt), pt

    def extension_element(self, elm: Elm, ext: tuple[str, Any, bool]) -> Elm:
        """A QI-Core element that is an extension: the extensions of ``elm`` with that URL (their values for
        the simple ones), one or a list."""
        url, t, single = ext
        this = {"type": "AliasRef", "name": "$this"}
        q: Elm = {"type": "Query", "source": [{"alias": "$this", "expression": {
            "type": "Property", "path": "extension", "source": elm}}], "let": [], "relationship": [],
            "where": {"type": "Equal", "operand": [
                self.helper("ToString", {"type": "Property", "path": "url", "scope": "$this"}),
                lit("String", url)]}}
        if not (isinstance(t, str) and t.startswith("QICore.")):
            q["return"] = {"distinct": False, "expression": {"type": "Property", "path": "value", "source": this}}
        return with_type({"type": "SingletonFrom", "operand": q}, t) if single else with_type(q, t)

    def t_index(self, n: Node, scope: Scope) -> Typed:
        return self.call("Indexer", [self.tr(n.source, scope), self.tr(n.index, scope)], n)

    def t_unary(self, n: Node, scope: Scope) -> Typed:
        op = n.op
        arg = self.tr(n.operand, scope)
        if op == "Negate" and n.operand.kind == "literal" and n.operand.vtype in ("Integer", "Long"):
            pass  # -2147483648 is checked by the engine on the negated literal
        if op in ("Start", "End", "Width", "PointFrom") and arg[1] == "Any":
            arg = (self.convert(arg[0], "Any", ("Interval", "Any")), ("Interval", "Any"))
        if op == "Exists" and not (isinstance(arg[1], tuple) and arg[1][0] == "List"):
            if arg[1] == "Any":
                arg = (self.convert(arg[0], "Any", ("List", "Any")), ("List", "Any"))
            elif arg[1] is not None:
                raise err(n, f"exists expects a list, not {show(arg[1])}")
        if op in ("Distinct", "Flatten", "SingletonFrom") and arg[1] == "Any":
            arg = (self.convert(arg[0], "Any", ("List", "Any")), ("List", "Any"))
        if op == "Flatten" and isinstance(arg[1], tuple) and arg[1][0] == "List" and not (
                isinstance(arg[1][1], tuple) and arg[1][1][0] == "List") and arg[1][1] in ("Any", None):
            elm, t = arg
            out = {"type": "Flatten", "operand": elm}
            return with_type(out, ("List", None)), ("List", None)
        if op in ("Successor", "Predecessor", "Negate") or op in SYSTEM and SYSTEM[op][1] == "u":
            return self.call(op, [arg], n)
        return self.call(op, [arg], n)

    def t_component(self, n: Node, scope: Scope) -> Typed:
        elm, t = self.tr(n.operand, scope)
        comp = n.component
        if t == "Any":
            elm, t = self.convert(elm, "Any", "DateTime"), "DateTime"
        elif isinstance(t, str) and t.startswith("FHIR.") and system_target(t) is not None:
            target = system_target(t)
            elm, t = self.convert(elm, t, target), target
        elif _is_choice(t):
            elm, t = self.convert(elm, t, "DateTime"), "DateTime"
        if comp in ("Date", "Time", "TimezoneOffset"):
            node = {"Date": "DateFrom", "Time": "TimeFrom", "TimezoneOffset": "TimezoneOffsetFrom"}[comp]
            rt = {"Date": "Date", "Time": "Time", "TimezoneOffset": "Decimal"}[comp]
            return with_type({"type": node, "operand": elm}, rt), rt
        return with_type({"type": "DateTimeComponentFrom", "precision": comp, "signature": [spec(t)],
                          "operand": elm}, "Integer"), "Integer"

    def t_durbetween(self, n: Node, scope: Scope) -> Typed:
        name = "DifferenceBetween" if n.difference else "DurationBetween"
        a, b = self.tr(n.low, scope), self.tr(n.high, scope)
        ops, sig, _ = self.resolve("SameAs", [a, b], n)  # both operands of one temporal type
        rt = "Integer"
        out = {"type": name, "precision": n.precision, "signature": [spec(t) for t in sig], "operand": ops}
        return with_type(out, rt), rt

    def t_durof(self, n: Node, scope: Scope) -> Typed:
        elm, t = self.tr(n.operand, scope)
        if isinstance(t, str) and t.startswith("FHIR.") and _is_interval(t):
            target = system_target(t)
            elm, t = self.convert(elm, t, target), target
        name = "DifferenceBetween" if n.difference else "DurationBetween"
        pt = t[1] if isinstance(t, tuple) and t[0] == "Interval" else None
        ops = [with_type({"type": "Start", "operand": elm}, pt), with_type({"type": "End", "operand": elm}, pt)]
        return with_type({"type": name, "precision": n.precision, "operand": ops}, "Integer"), "Integer"

    def t_minmax(self, n: Node, scope: Scope) -> Typed:
        t = self.lib.resolve_type(n.type, n)
        if t not in ("Integer", "Long", "Decimal", "Quantity", "Date", "DateTime", "Time"):
            raise err(n, f"{n.op} is not defined for {show(t)}")
        return with_type({"type": n.op, "valueType": qname(t)}, t), t

    def t_if(self, n: Node, scope: Scope) -> Typed:
        cond, ct = self.tr(n.cond, scope)
        cond = self.convert(cond, ct, "Boolean")
        (a, at), (b, bt) = self.tr(n.then, scope), self.tr(n.els, scope)
        t = common_type([at, bt])
        if _is_choice(t):  # branches of different types: the If is of a choice type, branches unconverted
            return with_type({"type": "If", "condition": cond, "then": a, "else": b}, t), t
        return with_type({"type": "If", "condition": cond, "then": self.convert(a, at, t),
                          "else": self.convert(b, bt, t)}, t), t

    def t_case(self, n: Node, scope: Scope) -> Typed:
        comparand = self.tr(n.comparand, scope) if n.comparand is not None else None
        whens = [self.tr(w, scope) for w, _ in n.items]
        thens = [self.tr(t, scope) for _, t in n.items]
        els = self.tr(n.els, scope)
        rt = common_type([t for _, t in thens] + [els[1]])
        if _is_choice(rt):  # results of different types: the Case is of a choice type, results unconverted
            thens = [(e, rt) for e, _ in thens]
            els = (els[0], rt)
        items = []
        if comparand is not None:
            ct = common_type([comparand[1]] + [t for _, t in whens])
            for (we, wt), (te, tt) in zip(whens, thens, strict=True):
                items.append({"when": self.convert(we, wt, ct), "then": self.convert(te, tt, rt)})
            out = {"type": "Case", "comparand": self.convert(comparand[0], comparand[1], ct), "caseItem": items,
                   "else": self.convert(els[0], els[1], rt)}
        else:
            for (we, wt), (te, tt) in zip(whens, thens, strict=True):
                items.append({"when": self.convert(we, wt, "Boolean"), "then": self.convert(te, tt, rt)})
            out = {"type": "Case", "caseItem": items, "else": self.convert(els[0], els[1], rt)}
        return with_type(out, rt), rt

    def t_isbool(self, n: Node, scope: Scope) -> Typed:
        arg = self.tr(n.operand, scope)
        op = {"null": "IsNull", "true": "IsTrue", "false": "IsFalse"}[n.what]
        out, t = self.call(op, [arg], n)
        out.pop("signature", None)
        if n.neg:
            return with_type({"type": "Not", "operand": out}, "Boolean"), "Boolean"
        return out, t

    def t_is(self, n: Node, scope: Scope) -> Typed:
        elm, st = self.tr(n.operand, scope)
        t = self.lib.resolve_type(n.type, n)
        fhir = _fhir_source(st, t)
        if fhir is not None and fhir != st:
            t = fhir
        return with_type({"type": "Is", "operand": elm, "isTypeSpecifier": spec(t)}, "Boolean"), "Boolean"

    def t_as(self, n: Node, scope: Scope, strict: bool = False) -> Typed:
        elm, st = self.tr(n.operand, scope)
        t = self.lib.resolve_type(n.type, n)
        if st not in (None, "Any") and isinstance(st, str) and isinstance(t, str) and st != t \
                and conversion_cost(st, t) is None and conversion_cost(t, st) is None and st != "Any" \
                and not st.startswith("FHIR") and not t.startswith("FHIR"):
            raise err(n, f"expression of type {show(st)} cannot be cast as a value of type {show(t)}")
        fhir = _fhir_source(st, t)
        if fhir is not None:  # a FHIR value as a System type: the FHIR type, then its implicit conversion
            if fhir != st:
                elm = with_type({"type": "As", "operand": elm, "asTypeSpecifier": spec(fhir), "strict": strict},
                                fhir)
            return self.convert(elm, fhir, t), t
        out: Elm = {"type": "As", "operand": elm, "asTypeSpecifier": spec(t)}
        if strict:
            out["strict"] = True
        else:
            out["strict"] = False
        return with_type(out, t), t

    def t_cast(self, n: Node, scope: Scope) -> Typed:
        return self.t_as(n, scope, strict=True)

    def t_convert(self, n: Node, scope: Scope) -> Typed:
        arg = self.tr(n.operand, scope)
        t = self.lib.resolve_type(n.type, n)
        name = {"Boolean": "ToBoolean", "Integer": "ToInteger", "Long": "ToLong", "Decimal": "ToDecimal",
                "String": "ToString", "Date": "ToDate", "DateTime": "ToDateTime", "Time": "ToTime",
                "Quantity": "ToQuantity", "Ratio": "ToRatio", "Concept": "ToConcept"}.get(t)
        if name is None:
            raise err(n, f"cannot convert to {show(t)}")
        return self.call(name, [arg], n)

    def t_convertunit(self, n: Node, scope: Scope) -> Typed:
        return self.call("ConvertQuantity", [self.tr(n.operand, scope), (lit("String", n.unit), "String")], n)

    def t_between(self, n: Node, scope: Scope) -> Typed:
        a = self.tr(n.operand, scope)
        lo, hi = self.tr(n.low, scope), self.tr(n.high, scope)
        if n.properly:
            left, _ = self.call("Greater", [a, lo], n)
            right, _ = self.call("Less", [a, hi], n)
        else:
            left, _ = self.call("GreaterOrEqual", [a, lo], n)
            right, _ = self.call("LessOrEqual", [a, hi], n)
        return with_type({"type": "And", "operand": [left, right]}, "Boolean"), "Boolean"

    def t_setagg(self, n: Node, scope: Scope) -> Typed:
        arg = self.tr(n.operand, scope)
        per = self.tr(n.per, scope) if n.per is not None else ({"type": "Null"}, "Any")
        if arg[1] == "Any":
            arg = (self.convert(arg[0], "Any", ("List", ("Interval", "Any"))), ("List", ("Interval", "Any")))
        out, t = self.call(n.op, [arg, per], n)
        if n.per is None:
            out["operand"][1] = {"type": "Null"}
        return out, t

    def t_binary(self, n: Node, scope: Scope) -> Typed:
        op = n.op
        a, b = self.tr(n.left, scope), self.tr(n.right, scope)
        if op in ("=", "!=", "~", "!~"):
            name = "Equal" if op in ("=", "!=") else "Equivalent"
            out, t = self.call(name, [a, b], n)
            if op in ("!=", "!~"):
                return with_type({"type": "Not", "operand": out}, "Boolean"), "Boolean"
            return out, t
        if op in ("<", "<=", ">", ">="):
            name = {"<": "Less", "<=": "LessOrEqual", ">": "Greater", ">=": "GreaterOrEqual"}[op]
            return self.call(name, [a, b], n)
        if op == "Concat":
            a = (self.convert(a[0], a[1], "String"), "String")
            b = (self.convert(b[0], b[1], "String"), "String")
            ca = with_type({"type": "Coalesce", "operand": [a[0], lit("String", "")]}, "String")
            cb = with_type({"type": "Coalesce", "operand": [b[0], lit("String", "")]}, "String")
            return with_type({"type": "Concatenate", "operand": [ca, cb]}, "String"), "String"
        if op == "Add" and a[1] == "String" and b[1] in ("String", "Any") or (op == "Add" and b[1] == "String"
                                                                          and a[1] == "Any"):
            return self.call("Concatenate", [a, b], n)
        if op in ("Union", "Intersect", "Except"):
            a, b = _listify_null(self, a, b), _listify_null(self, b, a)
            if op == "Union" and _is_list(a[1]) and _is_list(b[1]) and a[1][1] != b[1][1] \
                    and common_type([a[1][1], b[1][1]]) is not None \
                    and isinstance(common_type([a[1][1], b[1][1]]), tuple) \
                    and common_type([a[1][1], b[1][1]])[0] == "Choice":
                rt = ("List", common_type([a[1][1], b[1][1]]))
                return with_type({"type": "Union", "operand": [a[0], b[0]]}, rt), rt
        return self.call(op, [a, b], n)

    def t_membership(self, n: Node, scope: Scope) -> Typed:
        a, b = self.tr(n.left, scope), self.tr(n.right, scope)
        extra = {"precision": n.precision} if n.precision else {}
        a, b = _pin(self, a, b), _pin(self, b, a)
        if n.op == "in":
            coll = b
            if coll[1] == "ValueSet" or (isinstance(coll[0], dict) and coll[0].get("type") == "ValueSetRef"):
                return self.terminology_in(a, coll, n)
            if coll[1] == "CodeSystem":
                return with_type({"type": "InCodeSystem", "code": a[0], "codesystem": coll[0]}, "Boolean"), "Boolean"
            if coll[1] == "Any":
                coll = (self.convert(coll[0], "Any", ("List", a[1] if a[1] else "Any")), ("List", a[1]))
            if isinstance(a[1], tuple) and a[1][0] == "Interval" and isinstance(coll[1], tuple) \
                    and coll[1][0] == "Interval":
                return self.call("IncludedIn", [a, coll], n, **extra)
            return self.call("In", [a, coll], n, **extra)
        coll = a
        if coll[1] == "ValueSet" or (isinstance(coll[0], dict) and coll[0].get("type") == "ValueSetRef"):
            return self.terminology_in(b, coll, n)
        if coll[1] == "Any":
            coll = (self.convert(coll[0], "Any", ("List", b[1] if b[1] else "Any")), ("List", b[1]))
        if isinstance(b[1], tuple) and b[1][0] == "Interval" and isinstance(coll[1], tuple) \
                and coll[1][0] == "Interval":
            return self.call("Includes", [coll, b], n, **extra)
        return self.call("Contains", [coll, b], n, **extra)

    def terminology_in(self, a: Typed, vs: Typed, n: Node) -> Typed:
        t = a[1]
        target = system_target(t) if isinstance(t, str) else None
        if target in ("Code", "Concept"):
            a = (self.convert(a[0], t, target), target)
        elif _is_list(t) and system_target(t[1]) in ("Code", "Concept"):
            lt = ("List", system_target(t[1]))
            a = (self.convert(a[0], t, lt), lt)
        elif t == "String":
            return with_type({"type": "InValueSet", "code": a[0], "valueset": vs[0]}, "Boolean"), "Boolean"
        t = a[1]
        if isinstance(t, tuple) and t[0] == "List":
            return with_type({"type": "AnyInValueSet", "codes": a[0], "valueset": vs[0]}, "Boolean"), "Boolean"
        return with_type({"type": "InValueSet", "code": a[0], "valueset": vs[0]}, "Boolean"), "Boolean"

    # ---- timing phrases
    def t_timing(self, n: Node, scope: Scope) -> Typed:
        p = n.phrase
        a, b = self.tr(n.left, scope), self.tr(n.right, scope)
        kind = p["kind"]
        extra = {"precision": p["precision"]} if p.get("precision") else {}
        if p.get("left"):
            a = self.boundary(a, p["left"], n)
        if p.get("right"):
            b = self.boundary(b, p["right"], n)
        if kind == "starts":
            return self.call("Starts", [a, b], n, **extra)
        if kind == "ends":
            return self.call("Ends", [a, b], n, **extra)
        if kind == "same":
            name = {"as": "SameAs", "or before": "SameOrBefore", "or after": "SameOrAfter"}[p["rel"]]
            return self.call(name, [a, b], n, **extra)
        if kind == "includes":
            a, b = _pin(self, a, b), _pin(self, b, a)
            point = not _is_interval(b[1]) and not _is_list(b[1]) and b[1] is not None and (
                b[1] != "Any" or _is_interval(a[1]) or _is_list(a[1]))
            if a[1] == "Any" and _is_list(b[1]):  # null includes {..}: the interval overload, as the reference does
                a = (self.convert(a[0], "Any", ("Interval", "Any")), ("Interval", "Any"))
                point = True
            if p["properly"]:
                return self.call("ProperContains" if point else "ProperIncludes", [a, b], n, **extra)
            return self.call("Contains" if point else "Includes", [a, b], n, **extra)
        if kind in ("during", "includes"):
            a, b = _pin(self, a, b), _pin(self, b, a)
        if kind == "during":
            point = not _is_interval(a[1]) and a[1] not in (None,) and not (
                isinstance(a[1], tuple) and a[1][0] == "List")
            if p["properly"]:
                return self.call("ProperIn" if point else "ProperIncludedIn", [a, b], n, **extra)
            return self.call("In" if point else "IncludedIn", [a, b], n, **extra)
        if kind in ("meets", "overlaps"):
            base = "Meets" if kind == "meets" else "Overlaps"
            name = base + {"before": "Before", "after": "After", None: ""}[p["dir"]]
            return self.call(name, [a, b], n, **extra)
        if kind == "within":
            return self.within(a, b, p, n)
        # before / after
        off = p.get("offset")
        if off is None:
            if p["on_or"]:
                name = "SameOrBefore" if kind == "before" else "SameOrAfter"
            else:
                name = "Before" if kind == "before" else "After"
            return self.call(name, [a, b], n, **extra)
        return self.offset_relation(a, b, kind, p, off, n)

    def boundary(self, x: Typed, which: str, n: Node) -> Typed:
        if x[1] == "Any":
            x = (self.convert(x[0], "Any", ("Interval", "Any")), ("Interval", "Any"))
        if not _is_interval(x[1]) and x[1] is not None:
            return x
        return self.call("Start" if which == "start" else "End", [x], n)

    def offset_relation(self, a: Typed, b: Typed, kind: str, p: dict[str, Any], off: dict[str, Any],
                        n: Node) -> Typed:
        q = self.t_quantity(off["q"], Scope())
        if _is_interval(a[1]):
            a = self.call("End" if kind == "before" else "Start", [a], n)
        if _is_interval(b[1]):
            b = self.call("Start" if kind == "before" else "End", [b], n)
        shift = self.call("Subtract" if kind == "before" else "Add", [b, q], n)
        qual = off["qual"]
        extra = {"precision": p["precision"]} if p.get("precision") else {}
        if qual is None:
            return self.call("SameAs", [a, shift], n, **extra) if extra else self.call("Equal", [a, shift], n)
        if qual == "or more":
            return self.call("SameOrBefore" if kind == "before" else "SameOrAfter", [a, shift], n, **extra)
        if qual == "more than":
            return self.call("Before" if kind == "before" else "After", [a, shift], n, **extra)
        # within a range next to b: or less (closed at the far end), less than (open)
        closed_far = qual == "or less"
        if kind == "before":
            low, high, lc, hc = shift, b, closed_far, p["on_or"]
        else:
            low, high, lc, hc = b, shift, p["on_or"], closed_far
        pt = common_type([low[1], high[1]])
        iv = with_type({"type": "Interval", "lowClosed": lc, "highClosed": hc, "low": low[0], "high": high[0]},
                       ("Interval", pt))
        within = self.call("In", [a, (iv, ("Interval", pt))], n, **extra)
        if not closed_far:
            return within
        # "or less" also requires the boundary it is measured from to be known (CQL 1.5 timing phrases:
        # "... and start of B is not null"), so an unknown boundary gives false, not null
        known = self.call("Not", [self.call("IsNull", [(copy.deepcopy(b[0]), b[1])], n)], n)
        return self.call("And", [within, known], n)

    def within(self, a: Typed, b: Typed, p: dict[str, Any], n: Node) -> Typed:
        q = self.t_quantity(p["quantity"], Scope())
        if _is_interval(a[1]):
            a = self.call("Start", [a], n)
        if _is_interval(b[1]):
            lo_src = self.call("Start", [b], n)
            hi_src = self.call("End", [b], n)
        else:
            lo_src = hi_src = b
        low = self.call("Subtract", [lo_src, q], n)
        high = self.call("Add", [hi_src, q], n)
        closed = not p["properly"]
        pt = common_type([low[1], high[1]])
        iv = with_type({"type": "Interval", "lowClosed": closed, "highClosed": closed, "low": low[0],
                        "high": high[0]}, ("Interval", pt))
        return self.call("In", [a, (iv, ("Interval", pt))], n)

    # ---- function calls
    def t_call(self, n: Node, scope: Scope) -> Typed:
        name: str = n.name
        src = n.source
        library = None
        if src is not None and src.kind == "ident" and scope.lookup(src.name) is None \
                and self.lib.is_include(src.name):
            library, src = src.name, None
        args = [self.tr(a, scope) for a in n.args]
        if src is not None:  # fluent or method style: the source is the first argument
            args = [self.tr(src, scope)] + args
        user = self.lib.resolve_function(name, args, n, self, library=library, fluent=src is not None)
        if user is not None:
            return user
        return self.system_call(name, args, n)

    def system_call(self, name: str, args: list[Typed], n: Node) -> Typed:
        if name not in SYSTEM and name[:1].islower() and name[:1].upper() + name[1:] in SYSTEM:
            name = name[:1].upper() + name[1:]
        if name in ("Skip", "Take", "Tail"):
            return self.slice_call(name, args, n)
        if name == "Coalesce" and len(args) == 1 and not (isinstance(args[0][1], tuple) and args[0][1][0] == "List"):
            raise err(n, "Coalesce of one operand needs a list")
        m = re.fullmatch(r"AgeIn(Years|Months|Weeks|Days|Hours|Minutes|Seconds)(At)?", name)
        if m:
            birth = self.lib.resolve_identifier("Patient", n, self)
            if birth is None:
                raise err(n, f"{name} needs the Patient context of a data model")
            prop = self.property(birth[0], birth[1], "birthDate", n)
            if m.group(2):
                target = args[0][1]
                bt = "DateTime" if target == "DateTime" or m.group(1) in ("Hours", "Minutes", "Seconds") else "Date"
                pv = (self.convert(prop[0], prop[1], bt), bt)
                return self.call(f"CalculateAgeIn{m.group(1)}At", [pv, args[0]], n, precision=m.group(1)[:-1])
            bt = "DateTime" if m.group(1) in ("Hours", "Minutes", "Seconds") else "Date"
            pv = (self.convert(prop[0], prop[1], bt), bt)
            return self.call(f"CalculateAgeIn{m.group(1)}", [pv], n, precision=m.group(1)[:-1])
        if name.startswith("CalculateAge"):
            prec = re.match(r"CalculateAgeIn(\w+?)s(At)?$", name)
            precision = prec.group(1) if prec else "Year"
            out, t = self.call(name, args, n, precision=precision)
            return out, t
        if name == "Message":
            out, t = self.call(name, args, n)
            return out, args[0][1]
        if name in ("Now", "Today", "TimeOfDay") and args:
            raise err(n, f"{name} takes no arguments")
        if name == "Round" and len(args) == 1:
            out, t = self.call(name, args, n)
            return out, t
        if name == "Length" and args and args[0][1] == "Any":
            args = [(self.convert(args[0][0], "Any", "String"), "String")]
        if name == "Exists" and args and args[0][1] == "Any":
            args = [(self.convert(args[0][0], "Any", ("List", "Any")), ("List", "Any"))]
        if name in ("Equal", "Equivalent") and len(args) == 2:
            return self.call(name, args, n)
        if name in ("Expand",) and len(args) == 1:
            args = args + [({"type": "Null"}, "Any")]
        if name == "Collapse" and len(args) == 1:
            args = args + [({"type": "Null"}, "Any")]
        if name == "Combine" and args and args[0][1] == "Any":
            args[0] = (self.convert(args[0][0], "Any", ("List", "String")), ("List", "String"))
        if name == "Size" and args and args[0][1] == "Any":
            args[0] = (self.convert(args[0][0], "Any", ("Interval", "Any")), ("Interval", "Any"))
        if name not in SYSTEM:
            raise err(n, f"could not resolve call to function {name} with "
                         f"({', '.join(show(t) for _, t in args)})")
        return self.call(name, args, n)

    def slice_call(self, name: str, args: list[Typed], n: Node) -> Typed:
        src = args[0]
        if src[1] == "Any":
            src = (self.convert(src[0], "Any", ("List", "Any")), ("List", "Any"))
        if not (isinstance(src[1], tuple) and src[1][0] == "List") and src[1] is not None:
            raise err(n, f"{name} expects a list")
        null_int = with_type({"type": "Null"}, "Integer")
        if name == "Tail":
            if len(args) != 1:
                raise err(n, "Tail takes one argument")
            start, end = lit("Integer", 1), null_int
        else:
            if len(args) != 2:
                raise err(n, f"{name} takes two arguments")
            count = self.convert(args[1][0], args[1][1], "Integer")
            if name == "Skip":
                start, end = count, null_int
            else:
                start = lit("Integer", 0)
                end = {"type": "Coalesce", "operand": [count, lit("Integer", 0)]}
        return with_type({"type": "Slice", "source": src[0], "startIndex": start, "endIndex": end}, src[1]), src[1]

    # ---- queries and retrieves
    def t_retrieve(self, n: Node, scope: Scope) -> Typed:
        return self.lib.retrieve(n, scope, self)  # type: ignore[no-any-return]

    def t_query(self, n: Node, scope: Scope) -> Typed:
        qs = Scope(scope)
        sources = []
        single = len(n.sources) == 1
        src_types = []
        for alias, src in n.sources:
            elm, t = self.tr(src, qs)
            if isinstance(t, tuple) and t[0] == "List":
                et = t[1]
            else:
                et = t
                single = single and True
            src_types.append((alias, t))
            qs.aliases[alias] = et
            sources.append({"alias": alias, "expression": elm})
        is_list = any(isinstance(t, tuple) and t[0] == "List" or t is None for _, t in src_types) or len(
            n.sources) > 1
        out: Elm = {"type": "Query", "source": sources}
        lets = []
        for name, e in n.lets:
            elm, t = self.tr(e, qs)
            qs.lets[name] = t
            lets.append({"identifier": name, "expression": elm})
        out["let"] = lets
        rels = []
        for kind, alias, src, cond in n.inclusions:
            elm, t = self.tr(src, qs)
            rs = Scope(qs)
            rs.aliases[alias] = t[1] if isinstance(t, tuple) and t[0] == "List" else t
            such, st = self.tr(cond, rs)
            rels.append({"type": "With" if kind == "with" else "Without", "alias": alias, "expression": elm,
                         "suchThat": self.convert(such, st, "Boolean")})
        out["relationship"] = rels
        if n.where is not None:
            w, wt = self.tr(n.where, qs)
            if wt not in ("Boolean", "Any", None):
                raise err(n.where, f"a where clause must be a Boolean, not {show(wt)}")
            out["where"] = self.convert(w, wt, "Boolean")
        if len(n.sources) == 1:
            elem_t = qs.aliases[n.sources[0][0]]
        else:
            elem_t = ("Tuple", tuple((a, qs.aliases[a]) for a, _ in n.sources))
        if n.ret is not None:
            mode, e = n.ret
            elm, elem_t = self.tr(e, qs)
            out["return"] = {"expression": elm} if mode != "all" else {"distinct": False, "expression": elm}
        elif len(n.sources) > 1:
            out["return"] = {"expression": {"type": "Tuple", "element": [
                {"name": a, "value": {"type": "AliasRef", "name": a}} for a, _ in n.sources]}}
        if n.agg is not None:
            mode, name, starting, e = n.agg
            start = self.tr(starting, qs) if starting is not None else ({"type": "Null"}, "Any")
            ags = Scope(qs)
            ags.lets[name] = start[1]
            elm, at = self.tr(e, ags)
            if start[1] == "Any" and at not in (None, "Any"):
                ags.lets[name] = at
                elm, at = self.tr(e, ags)
            agg: Elm = {"identifier": name, "distinct": mode == "distinct", "expression": elm}
            if starting is not None:
                agg["starting"] = self.convert(start[0], start[1], at)
            out["aggregate"] = agg
            return with_type(out, at), at
        rt = ("List", elem_t) if is_list else elem_t
        if n.sort is not None:
            kind, val = n.sort
            if kind == "dir":
                out["sort"] = {"by": [{"type": "ByDirection", "direction": val}]}
            else:
                items = []
                ss = Scope()
                ss.sort_item = True
                ss.sort_type = elem_t
                for direction, e, _tok in val:
                    if e.kind == "ident" and scope.lookup(e.name) is None:
                        items.append({"type": "ByColumn", "direction": direction, "path": e.name})
                    else:
                        elm, _ = self.tr(e, ss)
                        items.append({"type": "ByExpression", "direction": direction, "expression": elm})
                out["sort"] = {"by": items}
        return with_type(out, rt), rt


def _sort_type(scope: Scope) -> Any:
    s: Scope | None = scope
    while s is not None:
        if s.sort_item:
            return s.sort_type
        s = s.parent
    return None


def scope_aliases(scope: Scope) -> set[str]:
    names: set[str] = set()
    s: Scope | None = scope
    while s is not None:
        names |= set(s.aliases)
        s = s.parent
    return names


def _pin(tr: ExpressionTranslator, x: Typed, other: Typed) -> Typed:
    """An ``Interval[null, null]`` selector next to an operand of a known point type takes that point type (its
    bounds become typed nulls), as the reference translator does for membership and inclusion."""
    if x[1] != ("Interval", "Any") or x[0].get("type") != "Interval":
        return x
    ot = other[1]
    pt = ot[1] if _is_interval(ot) else ot
    if pt in (None, "Any") or isinstance(pt, tuple):
        return x
    elm = dict(x[0])
    elm["low"] = tr.convert(elm["low"], "Any", pt)
    elm["high"] = tr.convert(elm["high"], "Any", pt)
    return with_type(elm, ("Interval", pt)), ("Interval", pt)


def _fhir_source(st: Any, t: Any) -> Any:
    """For ``x as T`` with ``x`` a FHIR value (or a choice of them) and ``T`` a System type: the FHIR type of
    ``x`` that converts to ``T``, or None."""
    if not isinstance(t, (str, tuple)) or (isinstance(t, str) and t.startswith("FHIR.")):
        return None
    alts = st[1] if _is_choice(st) else (st,)
    for alt in alts:
        if isinstance(alt, str) and alt.startswith("FHIR.") and system_target(alt) == t:
            return alt
    return None


def _is_choice(t: Any) -> bool:
    return isinstance(t, tuple) and t[0] == "Choice"


def _is_list(t: Any) -> bool:
    return isinstance(t, tuple) and t[0] == "List"


def _is_interval(t: Any) -> bool:
    if isinstance(t, str) and t.startswith("FHIR."):
        t = system_target(t)
    return isinstance(t, tuple) and t[0] == "Interval"


def _listify_null(tr: ExpressionTranslator, x: Typed, other: Typed) -> Typed:
    if x[1] == "Any" and isinstance(other[1], tuple):
        return tr.convert(x[0], "Any", other[1]), other[1]
    return x


def _check_ranges(n: Node, hour: str | None, minute: str | None, second: str | None) -> None:
    if hour is not None and int(hour) > 23 or minute is not None and int(minute) > 59 \
            or second is not None and int(second) > 59:
        raise err(n, "invalid time in a date/time literal (hour 0-23, minute and second 0-59)")


def _ms(frac: str) -> int:
    return int((frac + "000")[:3])


def _decimal_text(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text if "." in text else text + ".0"


INSTANCE_FIELDS: dict[str, dict[str, Any]] = {
    "Quantity": {"value": "Decimal", "unit": "String"},
    "Code": {"code": "String", "system": "String", "version": "String", "display": "String"},
    "Concept": {"codes": ("List", "Code"), "display": "String"},
    "Ratio": {"numerator": "Quantity", "denominator": "Quantity"},
    "ValueSet": {"id": "String", "name": "String", "version": "String"},
    "CodeSystem": {"id": "String", "name": "String", "version": "String"},
}

SYSTEM_PROPERTIES: dict[str, dict[str, Any]] = {
    **INSTANCE_FIELDS,
    "Interval": {},
}

__all__ = ["ExpressionTranslator", "Scope", "CqlTranslationError", "PRECISIONS"]

"""CQL types as the translator sees them, the implicit conversions between them, and ELM type specifiers.

A type is a string for a named type (``"Integer"`` for System types, ``"FHIR.Encounter"`` for model types,
``"Any"`` for the type of ``null``), a tuple ``("List", T)``, ``("Interval", T)``, ``("Tuple", ((name, T),
...))`` or ``("Choice", (T, ...))``, or ``None`` when the type is not known statically (then no conversion
is inserted and the engine decides at run time).
"""

from __future__ import annotations

from typing import Any

SYS_NS = "{urn:hl7-org:elm-types:r1}"
FHIR_NS = "{http://hl7.org/fhir}"
SYSTEM_TYPES = {"Any", "Boolean", "Integer", "Long", "Decimal", "String", "Date", "DateTime", "Time", "Quantity",
                "Ratio", "Code", "Concept", "Vocabulary", "ValueSet", "CodeSystem"}

# implicit conversions (CQL §"Implicit Conversions"): (from, to) -> (ELM conversion node, cost)
CONVERSIONS: dict[tuple[str, str], tuple[str, int]] = {
    ("Integer", "Long"): ("ToLong", 4),
    ("Integer", "Decimal"): ("ToDecimal", 5),
    ("Long", "Decimal"): ("ToDecimal", 5),
    ("Integer", "Quantity"): ("ToQuantity", 6),
    ("Decimal", "Quantity"): ("ToQuantity", 6),
    ("Date", "DateTime"): ("ToDateTime", 5),
    ("Code", "Concept"): ("ToConcept", 6),
}


def qname(t: str) -> str:
    """The ELM qualified name of a named type."""
    if t in SYSTEM_TYPES:
        return SYS_NS + t
    if t.startswith("System."):
        return SYS_NS + t[7:]
    if t.startswith("FHIR."):
        return FHIR_NS + t[5:]
    return t


def spec(t: Any) -> dict[str, Any]:
    """The ELM TypeSpecifier of a type (``Any`` for an unknown one)."""
    if t is None:
        t = "Any"
    if isinstance(t, str):
        return {"type": "NamedTypeSpecifier", "name": qname(t)}
    kind = t[0]
    if kind == "List":
        return {"type": "ListTypeSpecifier", "elementType": spec(t[1])}
    if kind == "Interval":
        return {"type": "IntervalTypeSpecifier", "pointType": spec(t[1])}
    if kind == "Tuple":
        return {"type": "TupleTypeSpecifier", "element": [{"name": n, "elementType": spec(et)} for n, et in t[1]]}
    return {"type": "ChoiceTypeSpecifier", "choice": [spec(c) for c in t[1]]}


def with_type(elm: dict[str, Any], t: Any) -> dict[str, Any]:
    """``elm`` with its result type recorded (resultTypeName or resultTypeSpecifier), as the reference
    translator's EnableResultTypes option writes it; the engine reads it to tell lists from strings."""
    if t is None or t == "Any" and elm.get("type") != "Null":
        return elm
    if isinstance(t, str):
        elm["resultTypeName"] = qname(t)
    else:
        elm["resultTypeSpecifier"] = spec(t)
    return elm


def show(t: Any) -> str:
    """A type as CQL writes it, for messages."""
    if t is None:
        return "<unknown>"
    if isinstance(t, str):
        return t
    if t[0] in ("List", "Interval"):
        return f"{t[0]}<{show(t[1])}>"
    if t[0] == "Tuple":
        return "Tuple { " + ", ".join(f"{n} {show(et)}" for n, et in t[1]) + " }"
    return "Choice<" + ", ".join(show(c) for c in t[1]) + ">"


def conversion_cost(src: Any, dst: Any) -> int | None:
    """How costly the implicit conversion of a ``src`` value to ``dst`` is (0: the same type), or None when
    there is none. Lower wins in overload resolution: exact, then subtype/null, then conversions."""
    if src == dst:
        return 0
    if src is None or dst is None:
        return 1
    if dst == "Any":
        return 2
    if src == "Any":
        return 1  # null converts to anything (As)
    if isinstance(src, str) and src.startswith("FHIR."):
        return _fhir_cost(src, dst)
    if isinstance(src, str) and isinstance(dst, str):
        if (src, dst) in CONVERSIONS:
            return CONVERSIONS[(src, dst)][1]
        if dst == "Vocabulary" and src in ("ValueSet", "CodeSystem"):
            return 1
        return None
    if isinstance(src, tuple) and isinstance(dst, tuple) and src[0] == dst[0] and src[0] in ("List", "Interval"):
        inner = conversion_cost(src[1], dst[1])
        return None if inner is None else (inner if inner <= 2 else inner + 1)
    if isinstance(src, tuple) and isinstance(dst, tuple) and src[0] == dst[0] == "Tuple":
        a, b = dict(src[1]), dict(dst[1])
        if set(a) != set(b):
            return None
        costs = [conversion_cost(a[k], b[k]) for k in a]
        return None if any(c is None for c in costs) else max(costs, default=0)
    if isinstance(src, tuple) and src[0] == "Choice":
        from .model import system_target

        if isinstance(dst, tuple) and dst[0] == "Choice":
            if set(src[1]) <= set(dst[1]):
                return 1
            ok = any(a in dst[1] or system_target(a) in dst[1] for a in src[1])
            return 7 if ok else None
        if dst in src[1] or dst == "Any":
            return 3
        return 8 if any(system_target(a) == dst or conversion_cost(a, dst) is not None for a in src[1]) else None
    if isinstance(dst, tuple) and dst[0] == "Choice":
        return 2 if src in dst[1] else None
    return None


def common_type(types: list[Any]) -> Any:
    """The type all of ``types`` convert to most cheaply (nulls and unknowns adapt), or None if none."""
    known = [t for t in types if t is not None and t != "Any"]
    if not known:
        return "Any" if types and all(t == "Any" for t in types) else None
    best, best_cost = None, None
    from .model import system_target

    candidates = list(dict.fromkeys(known + [_targets(t, system_target) for t in known]))
    for cand in candidates:
        if cand is None:
            continue
        costs = [conversion_cost(t, cand) for t in known]
        if any(c is None for c in costs):
            continue
        total = sum(c for c in costs if c is not None)
        if best_cost is None or total < best_cost:
            best, best_cost = cand, total
    if best is None:
        return ("Choice", tuple(dict.fromkeys(known)))
    return best


def _targets(t: Any, system_target: Any) -> Any:
    if isinstance(t, tuple) and t[0] == "List":
        inner = system_target(t[1])
        return ("List", inner) if inner is not None else None
    if t == "Code":
        return "Concept"
    return system_target(t)


def _fhir_cost(src: str, dst: Any) -> int | None:
    """FHIR values convert to System values (the FHIR model info's conversions); a FHIR type also matches its
    base FHIR types (code is a string, Age a Quantity)."""
    from .. import fhirmodel
    from .model import system_target

    if isinstance(dst, str) and dst.startswith("FHIR."):
        return 1 if fhirmodel.is_subtype(src[5:], dst[5:]) else None
    if isinstance(dst, tuple) and dst[0] == "Choice":
        if src in dst[1]:
            return 2
        target = system_target(src)
        return 6 if target is not None and target in dst[1] else None
    target = system_target(src)
    if target is None:
        return None
    if target == dst:
        return 5
    inner = conversion_cost(target, dst)
    return None if inner is None else 5 + inner

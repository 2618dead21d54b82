"""CQL/ELM type specifiers at run time: is a value of a type (``Is``, ``As``, overload resolution)?"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .fhirmodel import Node, is_subtype
from .values import Code, Concept

SYSTEM = "{urn:hl7-org:elm-types:r1}"
FHIR = "{http://hl7.org/fhir}"


def spec_name(spec: Any) -> str | None:
    """The qualified name of a NamedTypeSpecifier or a name string; None for other specifiers."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and (spec.get("type") == "NamedTypeSpecifier" or ("name" in spec and "type" not in spec)):
        return spec.get("name")
    return None


def spec_key(spec: Any) -> str:
    """A canonical string for a type specifier, to compare signatures."""
    if spec is None:
        return "?"
    if isinstance(spec, str):
        return spec
    t = spec.get("type")
    if "choice" in spec:  # ChoiceTypeSpecifier, also written as {"type": [], "choice": [...]}
        return "Choice<" + ",".join(sorted(spec_key(c) for c in spec.get("choice") or [])) + ">"
    if t == "NamedTypeSpecifier":
        return spec["name"]
    if t == "ListTypeSpecifier":
        return f"List<{spec_key(spec.get('elementType'))}>"
    if t == "IntervalTypeSpecifier":
        return f"Interval<{spec_key(spec.get('pointType'))}>"
    if t == "ChoiceTypeSpecifier":
        return "Choice<" + ",".join(sorted(spec_key(c) for c in spec.get("choice") or spec.get("type_") or [])) + ">"
    if t == "TupleTypeSpecifier":
        return "Tuple<" + ",".join(f"{e['name']}:{spec_key(e.get('elementType') or e.get('type'))}"
                                   for e in spec.get("element", [])) + ">"
    return str(t)


def is_of_type(value: Any, spec: Any) -> bool:
    from .ops_types import type_test

    return type_test(spec)(value)


def is_named(value: Any, name: str) -> bool:
    if name.startswith(SYSTEM):
        return _is_system(value, name[len(SYSTEM):])
    local = name[len(FHIR):] if name.startswith(FHIR) else name.split(".")[-1] if name.startswith("FHIR.") else name
    if isinstance(value, Node):
        return is_subtype(value.type, local)
    return False


def _is_system(value: Any, t: str) -> bool:
    if t == "Any":
        return True
    if t == "Boolean":
        return isinstance(value, bool)
    if t == "Integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "Decimal":
        return isinstance(value, Decimal)
    if t == "String":
        return isinstance(value, str)
    if t == "Code":
        return isinstance(value, Code)
    if t == "Concept":
        return isinstance(value, Concept)
    if t in ("Date", "DateTime", "Time", "Quantity", "Ratio"):
        return type(value).__name__ == t
    return False

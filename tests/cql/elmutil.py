"""A tiny harness for operator tests: wrap one ELM expression in a one-definition library, compile it with
the engine and evaluate it against an empty patient, plus builders for the ELM nodes tests need most."""

from __future__ import annotations

from typing import Any

from gateway.cql.datasource import BundleDataSource
from gateway.cql.engine import Context, Engine
from gateway.cql.library import ElmLibrary, LibraryManager
from gateway.cql.terminology import ValueSetIndex

SYS = "{urn:hl7-org:elm-types:r1}"
FHIR = "{http://hl7.org/fhir}"


def library(expr_node: dict[str, Any], name: str = "X") -> dict[str, Any]:
    return {"library": {"identifier": {"id": "T", "version": "1"},
                        "statements": {"def": [{"name": name, "context": "Patient", "expression": expr_node}]}}}


def run(expr_node: dict[str, Any], **scope: Any) -> Any:
    """Compile and evaluate ``expr_node``; keyword arguments are put in scope (for OperandRef/AliasRef)."""
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(library(expr_node)))
    engine = Engine(manager)
    ctx = Context(data=BundleDataSource([]), terminology=ValueSetIndex())
    ctx.scope = dict(scope)
    return engine.evaluate(lib, ["X"], ctx)["X"]


def literal(value_type: str, value: Any) -> dict[str, Any]:
    return {"type": "Literal", "valueType": SYS + value_type, "value": value}


def lit_int(v: int) -> dict[str, Any]:
    return literal("Integer", str(v))


def lit_long(v: int) -> dict[str, Any]:
    return literal("Long", str(v))


def lit_dec(v: str) -> dict[str, Any]:
    return literal("Decimal", str(v))


def lit_str(v: str) -> dict[str, Any]:
    return literal("String", v)


def lit_bool(v: bool) -> dict[str, Any]:
    return literal("Boolean", "true" if v else "false")


def lit_date(v: str) -> dict[str, Any]:
    return literal("Date", v)


def lit_datetime(v: str) -> dict[str, Any]:
    return literal("DateTime", v)


def lit_time(v: str) -> dict[str, Any]:
    return literal("Time", v)


def null() -> dict[str, Any]:
    return {"type": "Null"}


def quantity(value: Any, unit: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "Quantity", "value": value}
    if unit is not None:
        node["unit"] = unit
    return node


def ratio(nv: Any, nu: str, dv: Any, du: str) -> dict[str, Any]:
    return {"type": "Ratio", "numerator": {"value": nv, "unit": nu}, "denominator": {"value": dv, "unit": du}}


def list_(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "List", "element": list(elements)}


def tuple_(**elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Tuple", "element": [{"name": k, "value": v} for k, v in elements.items()]}


def code(code_: str, system: str | None = None, display: str | None = None) -> dict[str, Any]:
    """A Code value built with an Instance (no code-system definition needed)."""
    elements = [{"name": "code", "value": lit_str(code_)}]
    if system is not None:
        elements.append({"name": "system", "value": lit_str(system)})
    if display is not None:
        elements.append({"name": "display", "value": lit_str(display)})
    return {"type": "Instance", "classType": SYS + "Code", "element": elements}


def ref(name: str) -> dict[str, Any]:
    """An OperandRef, resolved from the keyword arguments of ``run``."""
    return {"type": "OperandRef", "name": name}


def op(node_type: str, *operands: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    """An operator node: one operand is stored as a single node (unary ELM), several as a list."""
    node: dict[str, Any] = {"type": node_type, **attrs}
    if len(operands) == 1:
        node["operand"] = operands[0]
    elif operands:
        node["operand"] = list(operands)
    return node


def as_(operand: dict[str, Any], type_name: str, strict: bool = False) -> dict[str, Any]:
    """``operand as System.<type_name>`` (or a qualified name with braces)."""
    qualified = type_name if type_name.startswith("{") else SYS + type_name
    return {"type": "As", "operand": operand, "asType": qualified, "strict": strict}

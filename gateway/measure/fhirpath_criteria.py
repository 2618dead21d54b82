"""FHIRPath population criteria (``Expression.language = text/fhirpath``) for the measure calculator.

A payer can write a simple contract measure without a CQL toolchain: every ``criteria`` of the Measure (group
populations, stratifiers and their components, supplemental data) may be a FHIRPath expression instead of the
name of a CQL definition. A Measure whose criteria are all FHIRPath needs no ``library``.

Evaluation, per subject (one patient):

- The expression's context (the root of a path, ``%context``, ``%resource``, ``%rootResource``) is the
  **Patient** resource. For episode-based groups (population basis a resource type), stratifiers and
  measure observations are evaluated with the **member resource** (e.g. the Encounter) as context.
- Environment variables:

  ===================  =====================================================================================
  ``%patient``         the Patient resource
  ``%resources``       every resource of the patient of the types listed below (use ``ofType(Observation)``)
  ``%periodStart``     start of the measurement period, a FHIR ``dateTime`` (``2025-01-01T00:00:00.000``)
  ``%periodEnd``       end of the measurement period, a FHIR ``dateTime`` (``2025-12-31T23:59:59.999``)
  ``%measure``         the Measure resource
  ``%sct``/``%loinc``  the SNOMED CT and LOINC system URLs (``%ucum`` is fhirpathpy's own)
  ===================  =====================================================================================

  ``%resources`` holds the patient's Encounter, Condition, Observation, Procedure, MedicationRequest,
  MedicationDispense, Immunization, Coverage, DiagnosticReport and ServiceRequest resources (read through the
  calculator's data source, the Patient compartment of the store). A Measure can name other types of the
  Patient compartment instead, with one ``valueCode`` per type in extensions
  ``http://fhir-vbc-gateway.example.org/StructureDefinition/fhirpath-resource-types``. When every use of
  ``%resources`` in the measure is ``%resources.ofType(T)``, only those types are read from the store (the
  result is the same; the evaluation is faster).
  ``%periodStart``/``%periodEnd`` are typed like an element of type dateTime, so ``effective.ofType(dateTime)
  >= %periodStart``, ``%periodEnd - 18 years`` and ``%periodEnd.toString()`` all work.
- Results: for a **patient-based** group (population basis boolean) a criterion must give one boolean; true
  puts the patient in the population, false or empty does not. For an **episode-based** group it gives the
  member resources (keyed ``Type/id``). A stratifier gives at most one value per member (its text is the
  stratum); a measure observation at most one number or Quantity; supplemental data any collection.
- Each expression is parsed strictly (fhirpathpy's own parser ignores syntax errors), its functions and
  ``%variables`` are checked, and it is compiled once with ``fhirpathpy.compile(expr, model=r4)`` and cached by
  its text. Every error names the measure, the group and the population (or stratifier) and is raised as
  ``FhirPathCriteriaError`` (a ``CqlError``: ``$evaluate-measure`` answers 422 with an OperationOutcome).

Engine notes (fhirpathpy 2): ``sort()`` and ``defineVariable()`` are not implemented; "the most recent"
is written with ``aggregate(iif($total.empty() or $this.effective.ofType(dateTime) >
$total.effective.ofType(dateTime), $this, $total))``. Date/time comparisons follow FHIRPath precision rules: a
date-only ``effectiveDateTime`` compared with ``%periodStart`` (millisecond precision) on the same day is
empty (false in ``where``); compare ``toString().substring(0, 10)`` when data carry dates only. ``%periodEnd``
without an offset is taken as UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..cql.fhirmodel import Node
from ..cql.values import CqlError

if TYPE_CHECKING:
    from ..cql.engine import Context
    from .model import Group, MeasureDef, Population

FHIRPATH = "text/fhirpath"
RESOURCE_TYPES_EXT = "http://fhir-vbc-gateway.example.org/StructureDefinition/fhirpath-resource-types"
DEFAULT_TYPES = ("Encounter", "Condition", "Observation", "Procedure", "MedicationRequest", "MedicationDispense",
                 "Immunization", "Coverage", "DiagnosticReport", "ServiceRequest")
VARIABLES = ("context", "resource", "rootResource", "patient", "resources", "periodStart", "periodEnd", "measure",
             "ucum", "sct", "loinc")


class FhirPathCriteriaError(CqlError):
    """A FHIRPath criterion that does not parse, or fails or gives the wrong kind of result when evaluated."""


class FhirPathSyntaxError(ValueError):
    """The expression is not valid FHIRPath, or uses a function or variable this engine does not have."""


def is_fhirpath(criteria: Any) -> bool:
    """Whether a ``criteria`` Expression (dict) is FHIRPath."""
    if not isinstance(criteria, dict):
        return False
    lang = criteria.get("language")
    return isinstance(lang, str) and lang.split(";")[0].strip().lower() == FHIRPATH


def _all_criteria(measure: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for g in measure.get("group") or []:
        out.extend(p.get("criteria") for p in g.get("population") or [])
        for s in g.get("stratifier") or []:
            out.append(s.get("criteria"))
            out.extend(c.get("criteria") for c in s.get("component") or [])
    out.extend(s.get("criteria") for s in measure.get("supplementalData") or [])
    return [c for c in out if isinstance(c, dict) and c.get("expression")]


def fhirpath_only(measure: dict[str, Any]) -> bool:
    """True when the Measure has criteria and every one is FHIRPath: such a measure needs no library."""
    criteria = _all_criteria(measure)
    return bool(criteria) and all(is_fhirpath(c) for c in criteria)


# -- compiling -----------------------------------------------------------------------------------------------
_lock = threading.Lock()
_compiled: dict[str, tuple[Callable[..., list[Any]], frozenset[str] | None]] = {}
_types_for: dict[tuple[Any, ...], tuple[str, ...]] = {}
_MAX_CACHED = 4096


def _strict_parse(text: str) -> dict[str, Any]:
    """The AST fhirpathpy builds, but from the whole input (``entireExpression``) with errors raised."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from antlr4.tree.Tree import ParseTreeWalker
    from fhirpathpy.parser.ASTPathListener import ASTPathListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):
        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # type: ignore[no-untyped-def]  # noqa: N802
            raise FhirPathSyntaxError(f"syntax error at line {line}, column {column + 1}: {msg}")

    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    tree = parser.entireExpression()
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree.expression())
    return listener.parentStack[0]


def _variable(node: dict[str, Any]) -> str | None:
    """The name of an ExternalConstantTerm / ExternalConstant node (``%name``)."""
    if node.get("type") == "ExternalConstantTerm":
        node = (node.get("children") or [{}])[0]
    if node.get("type") != "ExternalConstant":
        return None
    children = node.get("children") or []
    raw = (children[0].get("text") if children else None) or "".join(node.get("terminalNodeText") or [])
    return raw.lstrip("%").strip("`'\"")


def _of_type_target(node: dict[str, Any]) -> str | None:
    """T when ``node`` is the invocation ``.ofType(T)``."""
    if node.get("type") != "FunctionInvocation":
        return None
    fn = (node.get("children") or [{}])[0]
    parts = fn.get("children") or []
    if len(parts) != 2 or parts[0].get("text") != "ofType" or parts[1].get("type") != "ParamList":
        return None
    params = parts[1].get("children") or []
    text = params[0].get("text") if len(params) == 1 else None
    return text.rsplit(".", 1)[-1].strip("`") if isinstance(text, str) else None


def _types_used(ast: dict[str, Any]) -> frozenset[str] | None:
    """The types read through ``%resources.ofType(T)``; None when ``%resources`` is used any other way."""
    used: set[str] = set()
    stack = [ast]
    while stack:
        node = stack.pop()
        children = node.get("children") or []
        if node.get("type") == "InvocationExpression" and len(children) == 2 \
                and children[0].get("type") == "TermExpression" \
                and _variable((children[0].get("children") or [{}])[0]) == "resources":
            target = _of_type_target(children[1])
            if target is None:
                return None
            used.add(target)
            continue
        if node.get("type") == "ExternalConstant" and _variable(node) == "resources":
            return None
        stack.extend(children)
    return frozenset(used)


def _check_names(ast: dict[str, Any]) -> None:
    from fhirpathpy.engine.invocations import invocation_registry

    stack = [ast]
    while stack:
        node = stack.pop()
        kind = node.get("type")
        children = node.get("children") or []
        if kind == "Functn" and children:
            name = (children[0].get("text") or "").strip("`")
            if name and name not in invocation_registry:
                raise FhirPathSyntaxError(f"function {name}() is not supported by the FHIRPath engine")
        elif kind == "ExternalConstant":
            name = _variable(node) or ""
            if name not in VARIABLES:
                raise FhirPathSyntaxError(f"unknown environment variable %{name} (known: "
                                          + ", ".join("%" + v for v in VARIABLES) + ")")
        stack.extend(children)


def _compile(text: str) -> tuple[Callable[..., list[Any]], frozenset[str] | None]:
    hit = _compiled.get(text)
    if hit is not None:
        return hit
    import fhirpathpy
    from fhirpathpy.models import models

    try:
        ast = _strict_parse(text)
        _check_names(ast)
        fn = fhirpathpy.compile(text, model=models["r4"], options={"returnRawData": True})
    except FhirPathSyntaxError:
        raise
    except Exception as exc:  # noqa: BLE001 - antlr and fhirpathpy raise plain exceptions
        raise FhirPathSyntaxError(f"cannot compile: {exc}") from None
    hit = (fn, _types_used(ast))
    with _lock:
        if len(_compiled) >= _MAX_CACHED:
            _compiled.clear()
        _compiled[text] = hit
    return hit


def compile_expression(text: str) -> Callable[..., list[Any]]:
    """The compiled expression (returning fhirpathpy's raw result list: ResourceNodes, FP types, Python
    values), parsed strictly and checked on first use, then cached by its text."""
    return _compile(text)[0]


def _measure_name(measure: MeasureDef | dict[str, Any] | None) -> str:
    res = measure.resource if measure is not None and not isinstance(measure, dict) else measure
    if not res:
        return "Measure"
    return f"Measure {res.get('url') or res.get('id') or '(no url)'}"


def _group_name(group: Group) -> str:
    return f"group {group.id or group.index + 1}"


def where_population(measure: MeasureDef | None, group: Group, population: Population) -> str:
    label = population.code + (f" ({population.id})" if population.id else "")
    return f"{_measure_name(measure)}, {_group_name(group)}, population {label}"


def check_measure(measure: MeasureDef) -> None:
    """Compile every FHIRPath criterion of the measure (syntax errors surface before any patient is read) and
    check the resource-type extension."""
    res = measure.resource
    for g in measure.groups:
        for p in g.populations:
            if p.expression and is_fhirpath(p.raw.get("criteria")):
                _compile_at(p.expression, where_population(measure, g, p))
        for si, s in enumerate(g.stratifiers):
            for expr, crit in _stratifier_parts(s.raw):
                if is_fhirpath(crit):
                    _compile_at(expr, f"{_measure_name(measure)}, {_group_name(g)}, stratifier {s.id or si + 1}")
    for i, sde in enumerate(res.get("supplementalData") or []):
        crit = sde.get("criteria")
        if is_fhirpath(crit) and crit.get("expression"):
            _compile_at(crit["expression"], f"{_measure_name(measure)}, supplemental data {sde.get('id') or i + 1}")
    _resource_types(res)


def _stratifier_parts(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    crit = raw.get("criteria") or {}
    if crit.get("expression"):
        return [(crit["expression"], crit)]
    return [((c.get("criteria") or {})["expression"], c.get("criteria")) for c in raw.get("component") or []
            if (c.get("criteria") or {}).get("expression")]


def _compile_at(text: str, where: str) -> Callable[..., list[Any]]:
    try:
        return compile_expression(text)
    except FhirPathSyntaxError as exc:
        raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r}: {exc}") from None


def _resource_types(measure: dict[str, Any]) -> tuple[str, ...]:
    """The types ``%resources`` holds: the measure's extension, else DEFAULT_TYPES, narrowed to those the
    measure's expressions reach through ``%resources.ofType(T)``."""
    named = [e.get("valueCode") for e in measure.get("extension") or [] if e.get("url") == RESOURCE_TYPES_EXT]
    texts = tuple(c["expression"] for c in _all_criteria(measure) if is_fhirpath(c))
    key = (texts, tuple(map(str, named)))
    cached = _types_for.get(key)
    if cached is not None:
        return cached
    types = _declared_types(measure, named)
    used: set[str] = set()
    for text in texts:
        try:
            reached = _compile(text)[1]
        except FhirPathSyntaxError:
            reached = None
        if reached is None:
            break
        used |= reached
    else:
        types = tuple(t for t in types if t in used)
    with _lock:
        if len(_types_for) >= _MAX_CACHED:
            _types_for.clear()
        _types_for[key] = types
    return types


def _declared_types(measure: dict[str, Any], named: list[Any]) -> tuple[str, ...]:
    if not named:
        return DEFAULT_TYPES
    from ..search.params import patient_compartment

    compartment = patient_compartment()
    for t in named:
        if not isinstance(t, str) or t not in compartment:
            raise FhirPathCriteriaError(f"{_measure_name(measure)}: extension {RESOURCE_TYPES_EXT} names {t!r}, "
                                        "which is not a resource type of the Patient compartment")
    return tuple(dict.fromkeys(named))


# -- evaluating ----------------------------------------------------------------------------------------------
def _environment(ctx: Context, measure: MeasureDef | None) -> dict[str, Any]:
    """The variables of one subject's evaluation, built once per evaluation context (and measure)."""
    types = _resource_types(measure.resource) if measure is not None else DEFAULT_TYPES
    res = measure.resource if measure is not None else {}
    key = ("$fhirpath", f"environment|{res.get('url') or res.get('id')}|{res.get('version')}|{','.join(types)}")
    env = ctx.cache.get(key)
    if env is not None:
        return env
    from fhirpathpy.engine.nodes import ResourceNode

    patients = ctx.data.retrieve("Patient")
    patient = patients[0] if patients else None
    resources: list[Any] = []
    for t in types:
        resources.extend(r for r in ctx.data.retrieve(t) if isinstance(r, dict))
    if ctx.evaluated is not None:
        for r in ([patient] if patient else []) + resources:
            ctx.evaluated.setdefault(f"{r.get('resourceType')}/{r.get('id')}", None)
    period = ctx.parameters.get("Measurement Period")
    low = getattr(period, "low", None)
    high = getattr(period, "high", None)
    patient_node = ResourceNode.create_node(patient) if patient is not None else None
    env = {
        "patient": patient_node,
        "resources": [ResourceNode.create_node(r) for r in resources],
        "periodStart": ResourceNode.create_node(str(low), "dateTime") if low is not None else None,
        "periodEnd": ResourceNode.create_node(str(high), "dateTime") if high is not None else None,
        "measure": ResourceNode.create_node(measure.resource) if measure is not None else None,
        "sct": "http://snomed.info/sct",
        "loinc": "http://loinc.org",
    }
    ctx.cache[key] = env
    return env


def _run(text: str, where: str, ctx: Context, measure: MeasureDef | None, root: Any = None) -> list[Any] | None:
    """Evaluate with ``root`` (default: the Patient) as context; None when there is no patient."""
    from fhirpathpy.engine.nodes import ResourceNode

    fn = _compile_at(text, where)
    env = _environment(ctx, measure)
    node = env["patient"] if root is None else ResourceNode.create_node(root)
    if node is None:
        return None
    variables = {**env, "context": node, "resource": node, "rootResource": node}
    try:
        return fn(node, variables)
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises plain exceptions
        raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r} failed: {exc}") from None


def _unwrap(item: Any) -> Any:
    from fhirpathpy.engine.nodes import ResourceNode

    return item.data if isinstance(item, ResourceNode) else item


def _show(items: list[Any]) -> str:
    shown = []
    for it in items[:3]:
        v = _unwrap(it)
        if isinstance(v, dict):
            shown.append(f"{v.get('resourceType', 'element')}/{v.get('id')}" if v.get("resourceType") else "{...}")
        else:
            shown.append(repr(str(v)) if not isinstance(v, bool | int | float | Decimal) else str(v).lower())
    return "[" + ", ".join(shown) + (", ..." if len(items) > 3 else "") + "]"


def population_value(measure: MeasureDef | None, group: Group, population: Population, ctx: Context) -> Any:
    """The criterion's value in the shape the calculator takes: a bool for patient-based groups, a list of
    resource Nodes for episode-based ones."""
    where = where_population(measure, group, population)
    text = population.expression or ""
    result = _run(text, where, ctx, measure)
    if result is None:
        return False if group.patient_based else []
    if group.patient_based:
        values = [_unwrap(v) for v in result]
        if not values:
            return False
        if len(values) == 1 and isinstance(values[0], bool):
            return values[0]
        raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r} must give a single boolean for a patient-based "
                                    f"group (add .exists() to test for resources), got {_show(result)}")
    members = []
    for v in result:
        data = _unwrap(v)
        if not (isinstance(data, dict) and data.get("resourceType") and data.get("id")):
            raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r} must give resources (with ids) for an "
                                        f"episode-based group ({group.basis}), got {_show(result)}")
        members.append(Node(data, data["resourceType"]))
    return members


def _single(result: list[Any], where: str, text: str, what: str) -> Any:
    if len(result) > 1:
        raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r} must give at most one {what}, got "
                                    f"{_show(result)}")
    return _unwrap(result[0]) if result else None


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        codings = value.get("coding") if "coding" in value else [value] if "code" in value else []
        for c in codings or []:
            if isinstance(c, dict) and c.get("code"):
                return str(c["code"])
        if value.get("text"):
            return str(value["text"])
        if value.get("resourceType"):
            return f"{value['resourceType']}/{value.get('id')}"
    return str(value)


def stratum_text(measure: MeasureDef | None, group: Group, index: int, text: str, ctx: Context,
                 member: Any = None) -> str:
    """The stratum of the subject (patient-based) or of the member resource (episode-based)."""
    strat = group.stratifiers[index]
    where = f"{_measure_name(measure)}, {_group_name(group)}, stratifier {strat.id or index + 1}"
    result = _run(text, where, ctx, measure, member)
    return _text(_single(result or [], where, text, "value"))


def observation_value(measure: MeasureDef | None, group: Group, population: Population, ctx: Context,
                      member: Any = None) -> Any:
    """A measure observation: a number (Decimal/int) or None."""
    where = where_population(measure, group, population)
    text = population.expression or ""
    value = _single(_run(text, where, ctx, measure, member) or [], where, text, "number or Quantity")
    if isinstance(value, dict):
        value = value.get("value")
    value = getattr(value, "value", value)
    if value is None or (isinstance(value, int | float | Decimal) and not isinstance(value, bool)):
        return value
    raise FhirPathCriteriaError(f"{where}: FHIRPath {text!r} must give a number or Quantity, got {value!r}")


def supplemental_value(measure: MeasureDef | None, sde_id: str | None, text: str, ctx: Context) -> Any:
    where = f"{_measure_name(measure)}, supplemental data {sde_id or text!r}"
    result = _run(text, where, ctx, measure)
    if not result:
        return None
    values = [_plain(v) for v in result]
    return values[0] if len(values) == 1 else values


def _plain(item: Any) -> Any:
    v = _unwrap(item)
    if isinstance(v, bool | int | float | Decimal | str | dict | list) or v is None:
        return v
    return str(v)

"""The terminology operations declared once: ValueSet $expand and $validate-code (type and instance),
CodeSystem $lookup (type) and $subsumes (type and instance), as the R4 OperationDefinitions define them.

The app assembly (gateway/app.py) collects them into the operation registry."""

from __future__ import annotations

from ..operations import USER_SYSTEM, Endpoint, Need, Operation, Param

OD = "http://hl7.org/fhir/OperationDefinition/"
H = "terminology.handlers"
VS_READ = (Need("ValueSet", "r"), Need("CodeSystem", "r"))


def _both(rtype: str, type_fn: str, instance_fn: str) -> tuple[Endpoint, ...]:
    return (Endpoint("type", f"{H}:{type_fn}", (rtype,)), Endpoint("instance", f"{H}:{instance_fn}", (rtype,)))


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "valueset-expand", "expand", "Expand a value set",
        "ValueSet/$expand and ValueSet/[id]/$expand: the value set's members computed from its compose "
        "(concept lists, other value sets, is-a/descendent-of/=/in/regex/exists filters over stored "
        "CodeSystems) or its stored expansion; filter, offset/count paging, activeOnly; 422 when it needs a "
        "code system that is not stored",
        _both("ValueSet", "expand_type", "expand_instance"), VS_READ, OD + "ValueSet-expand",
        (Param("url", "uri"), Param("valueSet", "ValueSet"), Param("valueSetVersion", "string"),
         Param("filter", "string"), Param("offset", "integer"), Param("count", "integer"),
         Param("activeOnly", "boolean"), Param("return", "ValueSet", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("terminology",)),
    Operation(
        "valueset-validate-code", "validate-code", "Is a code in a value set",
        "ValueSet/$validate-code and ValueSet/[id]/$validate-code: code+system, coding or codeableConcept "
        "against the value set's expansion; result, message and display",
        _both("ValueSet", "validate_code_type", "validate_code_instance"), VS_READ,
        OD + "ValueSet-validate-code",
        (Param("url", "uri"), Param("valueSet", "ValueSet"), Param("valueSetVersion", "string"),
         Param("code", "code"), Param("system", "uri"), Param("systemVersion", "string"),
         Param("display", "string"), Param("coding", "Coding"), Param("codeableConcept", "CodeableConcept"),
         Param("result", "boolean", use="out", min=1), Param("message", "string", use="out"),
         Param("display", "string", use="out")),
        scope_levels=USER_SYSTEM, tags=("terminology",)),
    Operation(
        "codesystem-lookup", "lookup", "Look a code up in a stored code system",
        "CodeSystem/$lookup: code+system[+version] or coding; name, version, display, designations and "
        "properties (with parent and child from the hierarchy)",
        (Endpoint("type", f"{H}:lookup_type", ("CodeSystem",)),), (Need("CodeSystem", "r"),),
        OD + "CodeSystem-lookup",
        (Param("code", "code"), Param("system", "uri"), Param("version", "string"), Param("coding", "Coding"),
         Param("property", "code", max="*"), Param("name", "string", use="out", min=1),
         Param("display", "string", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("terminology",)),
    Operation(
        "codesystem-subsumes", "subsumes", "Subsumption between two codes",
        "CodeSystem/$subsumes and CodeSystem/[id]/$subsumes: codeA/codeB (+system) or codingA/codingB; "
        "equivalent, subsumes, subsumed-by or not-subsumed from the stored hierarchy",
        _both("CodeSystem", "subsumes_type", "subsumes_instance"), (Need("CodeSystem", "r"),),
        OD + "CodeSystem-subsumes",
        (Param("codeA", "code"), Param("codeB", "code"), Param("system", "uri"), Param("version", "string"),
         Param("codingA", "Coding"), Param("codingB", "Coding"), Param("outcome", "code", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("terminology",)),
)

"""The RESTful API's one operation, [type]/$validate, declared once (the interactions themselves are
the routes of instance.py, type_level.py and system.py).

The app assembly (gateway/app.py) collects it into the operation registry."""

from __future__ import annotations

from ..operations import ANY_TYPE, PATH_TYPE, Endpoint, Need, Operation, Param

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "validate", "validate", "Validate a resource without storing it",
        "[type]/$validate (POST): R4 model checks plus the rules of any DEQM profile the resource claims, "
        "reported as an OperationOutcome; nothing is stored",
        (Endpoint("type", "rest.validate:validate", (ANY_TYPE,), ("POST",)),),
        (Need(PATH_TYPE, "c"),),  # reads and writes nothing, but answers as a create of that type would
        "http://hl7.org/fhir/OperationDefinition/Resource-validate",
        (Param("resource", "Resource", min=1), Param("return", "OperationOutcome", use="out", min=1)),
        patient=True, tags=("write",)),
)

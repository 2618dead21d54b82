"""$data-requirements declared once.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import Operation, Param
from ..parameters import MEASURE_READ, measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "data-requirements", "data-requirements", "Data requirements of a measure",
        "Measure/[id]/$data-requirements (and Measure/$data-requirements?measure=), GET and POST: "
        "module-definition Library derived from the measure's ELM (types, profiles, value set and code "
        "filters, date filters, mustSupport)",
        measure_endpoints("deqm.data_requirements.handler", "data_requirements_type", "data_requirements_instance"),
        MEASURE_READ, "http://hl7.org/fhir/OperationDefinition/Measure-data-requirements",
        (Param("periodStart", "date"), Param("periodEnd", "date"), Param("measure", "string"),
         Param("return", "Library", use="out", min=1)),
        patient=True, tags=("measure",)),
)

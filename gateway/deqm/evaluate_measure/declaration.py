"""$evaluate-measure declared once: its levels, handler, parameters, scopes and patient rule.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import Operation, Param
from ..parameters import EVALUATE_NEEDS, PERIOD, SUBJECTS, measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "evaluate-measure", "evaluate-measure", "Evaluate a measure",
        "Measure/$evaluate-measure and Measure/[id]/$evaluate-measure, GET and POST; reportType subject | "
        "subject-list | population; subject Patient/[id] or Group/[id] (active members)",
        measure_endpoints("deqm.evaluate_measure.handler", "evaluate_type", "evaluate_instance"), EVALUATE_NEEDS,
        "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
        (*PERIOD, Param("measure", "string"), Param("reportType", "code"), *SUBJECTS,
         Param("lastReceivedOn", "dateTime"), Param("reporter", "string"),
         Param("return", "MeasureReport", use="out", min=1)),
        patient=True, subject_param="subject", tags=("measure",)),
)

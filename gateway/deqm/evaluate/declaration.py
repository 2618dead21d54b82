"""DEQM $evaluate (several measures at once) declared once.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import Operation, Param
from ..parameters import DEQM, EVALUATE_NEEDS, MEASURE_CHOICE, PERIOD, SUBJECTS, measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "evaluate", "evaluate", "DEQM $evaluate: several measures",
        "DEQM Measure/$evaluate (STU5 and Universal realm): measureId, measureUrl, measureIdentifier, measure "
        "(repeatable), measureResource; subject or subjectGroup (inline Group or Group/[id]); parameters (CQL "
        "parameter values); productLine; reporter; returns Parameters of Bundles (MeasureReport + data of "
        "interest)",
        measure_endpoints("deqm.evaluate.handler", "evaluate_type", "evaluate_instance"), EVALUATE_NEEDS,
        DEQM + "evaluate",
        (*PERIOD, *MEASURE_CHOICE, Param("reportType", "code", documentation="subject | subject-list | population"),
         *SUBJECTS,
         Param("subjectGroup", "Group", documentation="a Group inline (POST) or Group/[id]; not with subject"),
         Param("parameters", "Parameters", documentation="CQL parameter values for the measure's libraries, by "
               "name (POST)"),
         Param("lastReceivedOn", "dateTime"), Param("reporter", "string"),
         Param("productLine", "string", documentation="e.g. Medicare; recorded on each MeasureReport as the "
               "cqfm-productLine extension"),
         Param("return", "Bundle", use="out", max="*")),
        patient=True, subject_param="subject", tags=("measure",)),
)

"""DEQM $collect-data declared once.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import Operation, Param
from ..parameters import DEQM, EVALUATE_NEEDS, MEASURE_CHOICE, PERIOD, SUBJECTS, measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "collect-data", "collect-data", "DEQM collect data",
        "Measure/$collect-data and Measure/[id]/$collect-data, GET and POST: per measure and patient a "
        "collection Bundle with a Data Exchange MeasureReport (reporter = organization) and the data the "
        "measure's retrieves select; subject Patient/Group, subjectGroup, practitioner or the whole "
        "population; lastReceivedOn for incremental pulls",
        measure_endpoints("deqm.collect_data.handler", "collect_type", "collect_instance"), EVALUATE_NEEDS,
        DEQM + "collect-data",
        (*PERIOD, *MEASURE_CHOICE, *SUBJECTS, Param("subjectGroup", "Group"),
         Param("organization", "string"), Param("organizationResource", "Organization"),
         Param("lastReceivedOn", "dateTime"), Param("return", "Bundle", use="out", max="*")),
        patient=True, subject_param="subject", tags=("measure",)),
)

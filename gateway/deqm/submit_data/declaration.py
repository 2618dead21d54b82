"""$submit-data declared once, with its older DEQM alias $deqm-submit-data.

The app assembly (gateway/app.py) collects it into the operation registry; the route, the access policy,
the CapabilityStatement entry and the OpenAPI text derive from it."""

from __future__ import annotations

from ...operations import USER_SYSTEM, Endpoint, Need, Operation, Param
from ..parameters import measure_endpoints

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "submit-data", "submit-data", "DEQM submit data",
        "Measure/$submit-data and Measure/[id]/$submit-data (POST; alias Measure/$deqm-submit-data): DEQM "
        "'bundle' parameters or the R4 measureReport + resource form; data-collection MeasureReport with "
        "submitDataUpdateType incremental or snapshot; stored atomically with a Provenance (X-Provenance "
        "honoured)",
        measure_endpoints("deqm.submit_data.handler", "submit_type", "submit_instance", ("POST",)),
        (Need("MeasureReport", "c"), Need("*", "cu")),
        "http://hl7.org/fhir/OperationDefinition/Measure-submit-data",
        (Param("bundle", "Bundle", max="*"), Param("measureReport", "MeasureReport"),
         Param("resource", "Resource", max="*")),
        scope_levels=USER_SYSTEM, tags=("measure",), affects_state=True,
        extension=tuple({"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
                                "extension-submitDataUpdateType", "valueCode": code}
                        for code in ("incremental", "snapshot"))),
    Operation(
        "deqm-submit-data", "deqm-submit-data", "DEQM submit data (alias of $submit-data)",
        "Measure/$deqm-submit-data: the DEQM form of $submit-data under its older name",
        (Endpoint("type", "deqm.submit_data.handler:submit_type", ("Measure",), ("POST",)),),
        (Need("MeasureReport", "c"), Need("*", "cu")), scope_levels=USER_SYSTEM, tags=("measure",),
        affects_state=True, part_of="submit-data"),
)

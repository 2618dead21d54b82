"""The pieces the DEQM operation declarations share: the needs of a measure evaluation, the measurement
period, the measure and subject choices, and the type plus instance endpoints on Measure."""

from __future__ import annotations

from ..operations import Endpoint, Need, Param

DEQM = "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/"
MEASURE_READ = (Need("Measure", "r"), Need("Library", "r"))
EVALUATE_NEEDS = (*MEASURE_READ, Need("*", "s"))  # the data a measure reads is only known while it runs
GET_POST = ("GET", "POST")
PERIOD = (Param("periodStart", "date", min=1, documentation="start of the measurement period"),
          Param("periodEnd", "date", min=1, documentation="end of the measurement period"))
MEASURE_CHOICE = (
    Param("measureId", "id", max="*"), Param("measureUrl", "canonical", max="*"),
    Param("measureIdentifier", "string", max="*"), Param("measure", "string", max="*"),
    Param("measureResource", "Resource", max="*", documentation="an inline Measure"))
SUBJECTS = (
    Param("subject", "string", documentation="Patient/[id] or Group/[id]; under patient/ scopes Patient/P only"),
    Param("practitioner", "string", documentation="the patients whose generalPractitioner it is"))


def measure_endpoints(module: str, type_fn: str, instance_fn: str, methods: tuple[str, ...] = GET_POST
                      ) -> tuple[Endpoint, ...]:
    """Measure/$op and Measure/[id]/$op, served by the handler module's two functions (``module`` is the
    handler's dotted path under gateway)."""
    return (Endpoint("type", f"{module}:{type_fn}", ("Measure",), methods),
            Endpoint("instance", f"{module}:{instance_fn}", ("Measure",), methods, "measure_id"))

"""The CPG CQL operations declared once: ``Library/$evaluate`` (type and instance level) and ``$cql`` (system
level), GET and POST.

The app assembly (gateway/app.py) collects them into the operation registry; the routes, the access policy,
the CapabilityStatement entries and the OpenAPI text derive from them.

Needs: what an expression reads is only known while it runs, so both need search on every type (``*.s``, as
``$evaluate-measure``), and what each retrieve returns is then decided by the store gate under the caller's
grant. ``$evaluate`` shares its code with DEQM ``Measure/$evaluate``; operations sharing a code share one
policy, so ``Library/$evaluate`` declares the same needs (Measure r, Library r, ``*.s``). Under patient/
scopes ``subject`` is required and must be the launch patient."""

from __future__ import annotations

from ..deqm.parameters import EVALUATE_NEEDS
from ..operations import Endpoint, Need, Operation, Param

CPG = "http://hl7.org/fhir/uv/cpg/OperationDefinition/"
H = "cqlops.handlers"
GET_POST = ("GET", "POST")
COMMON_IN = (
    Param("subject", "string", documentation="Patient/[id]: the Patient context; required for Patient-context "
          "expressions; under patient/ scopes the launch patient only"),
    Param("parameters", "Parameters", documentation="CQL parameter values by name (POST)"),
    Param("useServerData", "boolean", documentation="default true: read the subject's data in this server "
          "(through the caller's grant); false: the 'data' Bundle only"),
    Param("data", "Bundle", documentation="more data for the evaluation (POST); with useServerData=false the "
          "only data"),
    Param("prefetchData", "Parameters", max="*", documentation="not supported: refused with 501"),
    Param("dataEndpoint", "Endpoint", documentation="refused with 501: no outbound call"),
    Param("contentEndpoint", "Endpoint", documentation="refused with 501: no outbound call"),
    Param("terminologyEndpoint", "Endpoint", documentation="refused with 501: no outbound call"),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "library-evaluate", "evaluate", "Evaluate a CQL library",
        "CPG Library/$evaluate and Library/[id]/$evaluate, GET and POST: the library's definitions (all public "
        "ones, or those named by expression) for a subject, over the server's data (read with the caller's "
        "grant) and/or the request's data Bundle; a Library stored as text/cql is translated by the built-in "
        "translator; results as a Parameters resource (one entry per value, lists repeated, tuples as parts, "
        "null with the data-absent-reason extension)",
        (Endpoint("type", f"{H}:evaluate_type", ("Library",), GET_POST),
         Endpoint("instance", f"{H}:evaluate_instance", ("Library",), GET_POST)),
        EVALUATE_NEEDS, CPG + "cpg-library-evaluate",
        (Param("url", "canonical", documentation="type level: the Library canonical, url or url|version "
               "('library' is accepted too)"),
         Param("expression", "string", max="*", documentation="definitions to evaluate; default every public "
               "definition"),
         *COMMON_IN,
         Param("return", "Parameters", use="out", min=1)),
        patient=True, subject_param="subject", tags=("cql",)),
    Operation(
        "cql", "cql", "Evaluate one CQL expression",
        "CPG $cql, GET and POST: one CQL expression translated by the built-in translator in an ad-hoc library "
        "(FHIR 4.0.1, the stored libraries named in 'library' included under their aliases, the Patient context "
        "when a subject is given) and evaluated like Library/$evaluate; translation errors are a 400 with line "
        "and column in the expression; the expression's length and the evaluation time are bounded",
        (Endpoint("system", f"{H}:cql", (), GET_POST),),
        (Need("Library", "r"), Need("*", "s")), CPG + "cpg-cql",
        (Param("expression", "string", min=1, documentation="CQL text of one expression (not library "
               "statements)"),
         Param("library", "part", max="*", documentation="parts url (a stored Library canonical) and name (the "
               "alias the expression uses)"),
         *COMMON_IN,
         Param("return", "Any", use="out", max="*")),
        patient=True, subject_param="subject", tags=("cql",)),
)

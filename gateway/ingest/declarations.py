"""$ingest/{format} declared once.

The app assembly (gateway/app.py) collects it into the operation registry."""

from __future__ import annotations

from ..operations import Endpoint, Need, Operation, Param

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "ingest", "ingest", "Ingest one internal-format file through its mapping",
        "$ingest/{format} (POST, gateway-specific): one internal-format file (cclf, claims-csv, x12-837, "
        "x12-835, synthea-csv, hl7v2) as the body, mapped to FHIR through mappings/{format}.inbound.yaml and written "
        "idempotently; answers an OperationOutcome with the summary, per-record rejects, data-quality warnings "
        "by rule and the data-quality report as a JSON attachment (docs/guides/mappings.md)",
        (Endpoint("system", "ingest.handler:ingest", (), ("POST",), suffix="/{fmt}"),),
        (Need("*", "cu"),), "http://fhir-vbc-gateway.example.org/OperationDefinition/ingest",
        (Param("filename", "string", documentation="the file name the mapping expects"),
         Param("strictness", "code", documentation="lenient (default: records load with data-quality warnings) "
               "or strict (such records are rejected)"),
         Param("return", "OperationOutcome", use="out", min=1)),
        scope_levels=frozenset({"system"}), tags=("ingest",), affects_state=True),
)

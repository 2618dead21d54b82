"""$ingest/{format} and the read-only $ingest-runs, declared once.

The app assembly (gateway/app.py) collects it into the operation registry."""

from __future__ import annotations

from ..operations import FEEDS_SCOPE, USER_SYSTEM, Endpoint, Need, Operation, Param

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
    Operation(
        "ingest-runs", "ingest-runs", "Recorded ingest runs",
        "[base]/$ingest-runs (GET, gateway-specific): the recorded ingest runs, newest first (every run of "
        "$ingest and of `fhir-gateway ingest`: who ran it, format, files, start and end, counts); _count (1-100, "
        "default 20) and format narrow it; [base]/$ingest-runs/[id] is one run with its rejects (file, line, "
        "reason) and data-quality report. Needs the scope " + FEEDS_SCOPE + " at user or system level",
        (Endpoint("system", "ingest.runs:ingest_runs", (), ("GET",)),), (),
        "http://fhir-vbc-gateway.example.org/OperationDefinition/ingest-runs",
        (Param("_count", "integer", documentation="how many runs (1-100, default 20)"),
         Param("format", "code", documentation="only runs of this format"),
         Param("total", "integer", use="out", min=1), Param("run", "", use="out", max="*")),
        scope_levels=USER_SYSTEM, tags=("ingest",), scopes=frozenset({FEEDS_SCOPE})),
    Operation(
        "ingest-run", "ingest-runs", "One recorded ingest run",
        "[base]/$ingest-runs/[id] (GET): one run with its rejects (file, line, reason; the first 200, the count "
        "exact) and its data-quality report as a JSON attachment. Needs the scope " + FEEDS_SCOPE,
        (Endpoint("system", "ingest.runs:ingest_run", (), ("GET",), suffix="/{run_id}"),), (),
        scope_levels=USER_SYSTEM, tags=("ingest",), part_of="ingest-runs", scopes=frozenset({FEEDS_SCOPE})),
)

"""Application factory: wires settings, store and services into FastAPI."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..logs import RequestIdMiddleware
from ..services.capability import build_capability
from ..services.rest import RestService
from . import errors, ingest, instance, system, type_level
from .operations import (
    atr,
    bulk,
    care_gaps,
    collect_data,
    data_requirements,
    evaluate,
    evaluate_measure,
    submit_data,
    validate,
)

log = logging.getLogger("gateway")
OPERATIONS = [
    {"name": "evaluate-measure", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
     "documentation": "Measure/$evaluate-measure and Measure/[id]/$evaluate-measure, GET and POST; reportType "
                      "subject | subject-list | population; subject Patient/[id] or Group/[id] (active members)"},
    {"name": "evaluate", "definition": "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/evaluate",
     "documentation": "DEQM Measure/$evaluate: measureId, measureUrl, measureIdentifier, measure (repeatable), "
                      "measureResource; returns Parameters of Bundles (MeasureReport + data of interest)"},
    {"name": "care-gaps", "definition": "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/care-gaps",
     "documentation": "DEQM Measure/$care-gaps and Measure/[id]/$care-gaps, GET and POST: gaps-in-care document "
                      "(or collection, isDocument=false) Bundles per patient; status open-gap | closed-gap | "
                      "prospective-gap | not-applicable; subject Patient/Group, subjectGroup, practitioner, "
                      "organization(Resource); measures by measureId, measureUrl, measureIdentifier, measure, "
                      "measureResource, manifest, topic"},
    {"name": "data-requirements",
     "definition": "http://hl7.org/fhir/OperationDefinition/Measure-data-requirements",
     "documentation": "Measure/[id]/$data-requirements (and Measure/$data-requirements?measure=), GET and POST: "
                      "module-definition Library derived from the measure's ELM (types, profiles, value set and "
                      "code filters, date filters, mustSupport)"},
    {"name": "submit-data", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-submit-data",
     "extension": [{"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-submitDataUpdateType",
                    "valueCode": code} for code in ("incremental", "snapshot")],
     "documentation": "Measure/$submit-data and Measure/[id]/$submit-data (POST; alias Measure/$deqm-submit-data): "
                      "DEQM 'bundle' parameters or the R4 measureReport + resource form; data-collection "
                      "MeasureReport with submitDataUpdateType incremental or snapshot; stored atomically with a "
                      "Provenance (X-Provenance honoured)"},
    {"name": "collect-data", "definition": "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/collect-data",
     "documentation": "Measure/$collect-data and Measure/[id]/$collect-data, GET and POST: per measure and patient "
                      "a collection Bundle with a Data Exchange MeasureReport (reporter = organization) and the "
                      "data the measure's retrieves select; subject Patient/Group, subjectGroup, practitioner or "
                      "the whole population; lastReceivedOn for incremental pulls"},
    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
     "documentation": "[type]/$validate (POST): R4 model checks plus the rules of any DEQM profile the resource "
                      "claims, reported as an OperationOutcome; nothing is stored"},
    {"name": "ingest", "definition": "http://fhir-vbc-gateway.example.org/OperationDefinition/ingest",
     "documentation": "$ingest/{format} (POST, gateway-specific): one internal-format file (cclf, claims-csv, "
                      "x12-837, synthea-csv, hl7v2) as the body, mapped to FHIR through mappings/{format}.inbound.yaml "
                      "and written idempotently; answers an OperationOutcome with the summary and per-record "
                      "rejects (docs/guides/mappings.md)"},
    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
     "documentation": "Bulk Data [base]/$export, GET and POST, Prefer: respond-async; _outputFormat, _type, _since, "
                      "_until, _elements, _typeFilter; status at [base]/$export-status/[job] (202 + X-Progress, "
                      "200 manifest, DELETE cancels), NDJSON files at [base]/$export-file/[job]/[file]"},
    {"name": "patient-export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
     "documentation": "Patient/$export: every Patient's compartment plus referenced Practitioner, "
                      "PractitionerRole, Organization and Location; patient (POST) narrows it"},
    {"name": "group-export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
     "documentation": "Group/[id]/$export: the Group, its members' Patient compartments and the referenced "
                      "Practitioner, PractitionerRole, Organization and Location"},
    {"name": "davinci-data-export",
     "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export",
     "documentation": "Da Vinci ATR Group/[id]/$davinci-data-export: exportType hl7.fhir.us.davinci-atr; _type "
                      "defaults to the eight ATR types and must include Group, Patient and Coverage"},
    {"name": "member-add", "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/member-add",
     "documentation": "ATR Group/[id]/$member-add: memberId + providerNpi or patientReference + providerReference, "
                      "optional attributionPeriod; draft and open lists only; each change is a new Group version"},
    {"name": "member-remove", "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/member-remove",
     "documentation": "ATR Group/[id]/$member-remove: memberId [+ providerNpi] or patientReference "
                      "[+ providerReference [+ coverageReference]]; draft keeps the member inactive with "
                      "changeType dropped, open deletes it, final refuses"},
    {"name": "confirm-attribution-list",
     "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/confirm-attribution-list",
     "documentation": "ATR Group/[id]/$confirm-attribution-list: the list becomes final (inactive members "
                      "dropped); answers 201"},
    {"name": "attribution-status",
     "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/attribution-status",
     "documentation": "ATR Group/[id]/$attribution-status: memberId or patientReference; a Bundle of the "
                      "member's Patient, Coverage and attributed providers"},
]


def create_app(settings: Settings, store: Any = None, access_log: bool = True) -> FastAPI:
    if store is None:
        from ..store.sql.store import SqlStore

        store = SqlStore(settings.resolved_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if settings.demo:
            from ..services.loader import load_demo

            summary = load_demo(app.state.rest)
            log.info("demo data loaded", extra={"resources": summary.resources})
        app.state.bulk.start()
        if app.state.authority is not None:
            app.state.authority.audit.start()
        if settings.subscription_notifier:
            app.state.notifier.start()
        try:
            yield
        finally:
            app.state.notifier.stop()
            app.state.bulk.stop()
            if app.state.authority is not None:
                app.state.authority.audit.stop()  # and writes the last batch of audit rows

    app = FastAPI(title="FHIR VBC Gateway", version=__version__, lifespan=lifespan,
                  description="FHIR R4 gateway for value-based care. The FHIR base is /fhir.")
    base = settings.fhir_base()
    app.state.settings = settings
    app.state.store = store
    app.state.rest = RestService(store, base, settings.validation_rest, settings.default_page_size,
                                 settings.max_page_size)
    app.state.rest.search_bounds = {"max_params": settings.search_max_params,
                                    "max_values": settings.search_max_values,
                                    "max_chain": settings.search_max_chain}
    if hasattr(store, "search_timeout"):
        store.search_timeout = settings.search_timeout_seconds
    app.state.rest.subscription_endpoints = tuple(
        e.strip() for e in settings.subscription_endpoints.split(",") if e.strip())
    from ..subscriptions.notifier import Notifier

    app.state.notifier = Notifier(store, base, interval=settings.subscription_poll_seconds)
    from ..services.evaluate import MeasureService

    app.state.measures = MeasureService(store, base, settings.executor, reporter=settings.reporter)
    authority = None
    if settings.auth == "smart":
        from ..auth.service import Authority

        authority = Authority(settings, store)
        authority.rest = app.state.rest
    elif settings.auth != "off":
        raise ValueError(f"auth must be 'smart' or 'off', not {settings.auth!r}")
    app.state.authority = authority
    from ..bulk.service import BulkService

    app.state.bulk = BulkService(store, settings, base)
    capability = build_capability(base, OPERATIONS)
    if authority is not None:
        from ..auth.discovery import capability_security

        capability["rest"][0]["security"] = capability_security(authority)
    app.state.capability = orjson.dumps(capability)
    errors.install(app)
    app.include_router(system.health_router)
    from ..auth import routes as auth_routes
    from ..auth.middleware import AuthMiddleware

    app.include_router(auth_routes.router, prefix="/auth")
    # the generic REST routes first: they serve most requests, and their typed path parameters
    # (api/paths.py) keep them off operation, metadata, _history and .well-known paths
    app.include_router(type_level.router, prefix="/fhir")
    app.include_router(instance.router, prefix="/fhir")
    app.include_router(type_level.compartment_router, prefix="/fhir")
    app.include_router(auth_routes.wellknown, prefix="/fhir")
    app.include_router(ingest.router, prefix="/fhir")
    app.include_router(system.router, prefix="/fhir")
    app.include_router(evaluate_measure.router, prefix="/fhir")
    app.include_router(evaluate.router, prefix="/fhir")
    app.include_router(care_gaps.router, prefix="/fhir")
    app.include_router(data_requirements.router, prefix="/fhir")
    app.include_router(submit_data.router, prefix="/fhir")
    app.include_router(collect_data.router, prefix="/fhir")
    app.include_router(validate.router, prefix="/fhir")
    app.include_router(bulk.router, prefix="/fhir")
    app.include_router(atr.router, prefix="/fhir")
    # every /fhir request passes the auth middleware, whatever router serves it (gateway/auth/policy.py)
    app.add_middleware(AuthMiddleware, authority=authority)
    if authority is not None:  # outside the auth check: preflight requests carry no token
        from ..auth.cors import CorsMiddleware

        app.add_middleware(CorsMiddleware, authority=authority)
    app.add_middleware(RequestIdMiddleware, access_log=access_log)
    return app

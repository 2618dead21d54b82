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
from . import errors, instance, system, type_level
from .operations import atr, bulk, evaluate, evaluate_measure

log = logging.getLogger("gateway")
OPERATIONS = [
    {"name": "evaluate-measure", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
     "documentation": "Measure/$evaluate-measure and Measure/[id]/$evaluate-measure, GET and POST; reportType "
                      "subject | subject-list | population; subject Patient/[id] or Group/[id] (active members)"},
    {"name": "evaluate", "definition": "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/evaluate",
     "documentation": "DEQM Measure/$evaluate: measureId, measureUrl, measureIdentifier, measure (repeatable), "
                      "measureResource; returns Parameters of Bundles (MeasureReport + data of interest)"},
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
        try:
            yield
        finally:
            app.state.bulk.stop()

    app = FastAPI(title="FHIR VBC Gateway", version=__version__, lifespan=lifespan,
                  description="FHIR R4 gateway for value-based care. The FHIR base is /fhir.")
    base = settings.fhir_base()
    app.state.settings = settings
    app.state.store = store
    app.state.rest = RestService(store, base, settings.validation_rest, settings.default_page_size,
                                 settings.max_page_size)
    from ..services.evaluate import MeasureService

    app.state.measures = MeasureService(store, base, settings.executor)
    from ..bulk.service import BulkService

    app.state.bulk = BulkService(store, settings, base)
    app.state.capability = orjson.dumps(build_capability(base, OPERATIONS))
    errors.install(app)
    app.include_router(system.health_router)
    app.include_router(system.router, prefix="/fhir")
    app.include_router(evaluate_measure.router, prefix="/fhir")
    app.include_router(evaluate.router, prefix="/fhir")
    app.include_router(bulk.router, prefix="/fhir")
    app.include_router(atr.router, prefix="/fhir")
    app.include_router(type_level.router, prefix="/fhir")
    app.include_router(instance.router, prefix="/fhir")
    app.include_router(type_level.compartment_router, prefix="/fhir")
    app.add_middleware(RequestIdMiddleware, access_log=access_log)
    return app

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
from .operations import evaluate, evaluate_measure

log = logging.getLogger("gateway")
OPERATIONS = [
    {"name": "evaluate-measure", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
     "documentation": "Measure/$evaluate-measure and Measure/[id]/$evaluate-measure, GET and POST; reportType "
                      "subject | subject-list | population; subject Patient/[id] or Group/[id] (active members)"},
    {"name": "evaluate", "definition": "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/evaluate",
     "documentation": "DEQM Measure/$evaluate: measureId, measureUrl, measureIdentifier, measure (repeatable), "
                      "measureResource; returns Parameters of Bundles (MeasureReport + data of interest)"},
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
        yield

    app = FastAPI(title="FHIR VBC Gateway", version=__version__, lifespan=lifespan,
                  description="FHIR R4 gateway for value-based care. The FHIR base is /fhir.")
    base = settings.fhir_base()
    app.state.settings = settings
    app.state.store = store
    app.state.rest = RestService(store, base, settings.validation_rest, settings.default_page_size,
                                 settings.max_page_size)
    from ..services.evaluate import MeasureService

    app.state.measures = MeasureService(store, base, settings.executor)
    app.state.capability = orjson.dumps(build_capability(base, OPERATIONS))
    errors.install(app)
    app.include_router(system.health_router)
    app.include_router(ingest.router)
    app.include_router(system.router, prefix="/fhir")
    app.include_router(evaluate_measure.router, prefix="/fhir")
    app.include_router(evaluate.router, prefix="/fhir")
    app.include_router(type_level.router, prefix="/fhir")
    app.include_router(instance.router, prefix="/fhir")
    app.include_router(type_level.compartment_router, prefix="/fhir")
    app.add_middleware(RequestIdMiddleware, access_log=access_log)
    return app

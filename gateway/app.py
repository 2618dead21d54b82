"""The app assembly: collects the capability packages' operation declarations into one registry and wires
settings, store, use cases, routes, policy and middleware into FastAPI.

The capability packages (rest, deqm, atr, bulk, ingest, subscriptions) sit side by side above the shared
kernels; this module is the one place that imports all of them. The registry it collects is handed down to
what derives from it (routes, the authorization policy, the CapabilityStatement, OpenAPI), so no lower
layer imports a capability package."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI

from . import __version__
from .api import errors
from .api import routes as operation_routes
from .atr.declarations import OPERATIONS as ATR_OPERATIONS
from .auth import policy
from .auth.context import SYSTEM, acting_as
from .auth.gated import GatedStore
from .bulk.declarations import OPERATIONS as BULK_OPERATIONS
from .config import Settings
from .cqlops.declarations import OPERATIONS as CQL_OPERATIONS
from .deqm.declarations import OPERATIONS as DEQM_OPERATIONS
from .ingest.declarations import OPERATIONS as INGEST_OPERATIONS
from .logs import RequestIdMiddleware
from .operations import Registry
from .resources.jobs import JobWorker, runs_jobs
from .resources.rest import RestService
from .rest import instance, system, type_level
from .rest.capability import build_capability
from .rest.declarations import OPERATIONS as REST_OPERATIONS
from .rest.everything.declaration import OPERATIONS as EVERYTHING_OPERATIONS
from .subscriptions.declarations import OPERATIONS as SUBSCRIPTION_OPERATIONS
from .terminology.declarations import OPERATIONS as TERMINOLOGY_OPERATIONS

log = logging.getLogger("gateway")

# every operation the gateway serves, each declared once in its capability package
REGISTRY = Registry((*DEQM_OPERATIONS, *REST_OPERATIONS, *EVERYTHING_OPERATIONS, *INGEST_OPERATIONS, *BULK_OPERATIONS,
                     *ATR_OPERATIONS, *TERMINOLOGY_OPERATIONS, *CQL_OPERATIONS, *SUBSCRIPTION_OPERATIONS))


def create_app(settings: Settings, store: Any = None, access_log: bool = True) -> FastAPI:
    """The FastAPI app for ``settings``, on ``store`` (a SQL store from the settings' database URL when
    None); installs ``REGISTRY`` into the authorization policy, serves its operations and lists them in the
    CapabilityStatement."""
    policy.install(REGISTRY)  # the auth middleware classifies operation routes by this registry
    if store is None:
        from .store.sql.store import SqlStore

        store = SqlStore(settings.resolved_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.demo:
            from .ingest.loader import load_demo

            with acting_as(SYSTEM):  # the server loading its own demo data
                summary = load_demo(app.state.rest)
            log.info("demo data loaded", extra={"resources": summary.resources})
        if runs_jobs(settings, store):
            app.state.jobs.start()
        from .api import shutdown

        shutdown.install(settings.shutdown_timeout_seconds)  # under serve: SIGTERM ends the process in time
        if app.state.authority is not None:
            app.state.authority.audit.start()
        if settings.subscription_notifier:
            app.state.notifier.start()
        try:
            yield
        finally:
            app.state.notifier.stop()
            if app.state.jobs.started:  # leases handed back for another instance to take at once
                app.state.jobs.stop(timeout=min(10.0, settings.shutdown_timeout_seconds / 3))
            if app.state.authority is not None:
                app.state.authority.audit.stop()  # and writes the last batch of audit rows

    app = FastAPI(title="FHIR VBC Gateway", version=__version__, lifespan=lifespan,
                  description="FHIR R4 gateway for value-based care. The FHIR base is /fhir.")
    base = settings.fhir_base()
    app.state.settings = settings
    app.state.store = store  # the raw store: health checks, the authorization server, system components
    # services reach stored data only through the gate, under the grant of the caller they serve
    gated = GatedStore(store, base, opt_out=settings.provider_access_opt_out)
    app.state.rest = RestService(gated, base, settings.validation_rest, settings.default_page_size,
                                 settings.max_page_size)
    from .search.cursor import CursorCodec

    app.state.rest.cursors = CursorCodec(settings.paging_key or None)
    app.state.rest.search_bounds = {"max_params": settings.search_max_params,
                                    "max_values": settings.search_max_values,
                                    "max_chain": settings.search_max_chain}
    if hasattr(store, "search_timeout"):
        store.search_timeout = settings.search_timeout_seconds
    app.state.rest.subscription_endpoints = settings.egress_policy(settings.subscription_endpoints)
    from .subscriptions.notifier import Notifier

    app.state.notifier = Notifier(store, base, interval=settings.subscription_poll_seconds,
                                  egress=app.state.rest.subscription_endpoints,
                                  opt_out=settings.provider_access_opt_out)
    from .deqm.evaluation import MeasureService

    app.state.measures = MeasureService(gated, base, settings.executor, reporter=settings.reporter)
    from .cqlops.service import CqlService

    app.state.cql = CqlService(gated, base, settings.cql_timeout_seconds, settings.cql_max_expression_chars)
    authority = None
    if settings.auth == "smart":
        from .auth.service import Authority

        authority = Authority(settings, store)
        # the patient picker reads through the same gated services, explicitly as SYSTEM (auth/routes.py);
        # the authorization server's own tables stay outside the gate
        authority.rest = app.state.rest
    elif settings.auth != "off":
        raise ValueError(f"auth must be 'smart' or 'off', not {settings.auth!r}")
    app.state.authority = authority
    # the job core: one worker for every kind of asynchronous job, leases in the database (resources/jobs.py)
    from .store.sql.jobs import JobStore

    app.state.jobs = JobWorker(JobStore(store, lease_seconds=settings.job_lease_seconds), settings.job_threads,
                               retention_seconds=settings.export_retention_seconds)
    from .bulk.service import BulkService

    app.state.bulk = BulkService(store, settings, base, app.state.jobs)
    from .bulk.submit import SubmitService

    app.state.bulk_submit = SubmitService(app.state.jobs, app.state.rest, settings, base)
    from .deqm.async_jobs import AsyncJobs

    app.state.async_jobs = AsyncJobs(app.state.jobs, app.state.measures, settings)
    from .deqm.care_gaps.handler import care_gaps_work

    app.state.async_jobs.register("care-gaps", care_gaps_work(app.state.measures))
    capability = build_capability(base, REGISTRY)
    if authority is not None:
        from .auth.discovery import capability_security

        capability["rest"][0]["security"] = capability_security(authority)
    app.state.capability = orjson.dumps(capability)
    app.state.capability_by_base = {}  # the statement per request base (api/baseurl.py capability_for)
    errors.install(app)
    app.include_router(system.health_router)
    from .auth import routes as auth_routes
    from .auth.middleware import AuthMiddleware

    app.include_router(auth_routes.router, prefix="/auth")
    from .webapps import routes as webapp_routes

    app.include_router(webapp_routes.router, prefix="/apps")  # the care-gaps SMART app, the demo EHR launcher
    # the console for payer and provider staff: pages that use the FHIR API below with the user's token
    from .console.routes import router as console_router

    app.include_router(console_router, prefix="/console")
    # the generic REST routes first: they serve most requests, and their typed path parameters
    # (api/paths.py) keep them off operation, metadata, _history and .well-known paths
    app.include_router(type_level.router, prefix="/fhir")
    app.include_router(instance.router, prefix="/fhir")
    app.include_router(type_level.compartment_router, prefix="/fhir")
    app.include_router(auth_routes.wellknown, prefix="/fhir")
    app.include_router(system.router, prefix="/fhir")
    # every operation route comes from its one declaration in its capability package (REGISTRY above)
    app.include_router(operation_routes.router(REGISTRY), prefix="/fhir")
    # every /fhir request passes the auth middleware, whatever router serves it (gateway/auth/policy.py)
    app.add_middleware(AuthMiddleware, authority=authority)
    if authority is not None:  # outside the auth check: preflight requests carry no token
        from .auth.cors import CorsMiddleware

        app.add_middleware(CorsMiddleware, authority=authority)
    # FHIR XML bodies in and answers out, outside the auth check so it reads JSON only (api/xmlformat.py)
    from .api.xmlformat import XmlFormat

    app.add_middleware(XmlFormat)
    # NUL in the URL refused; an exception nothing else handled still gets an OperationOutcome (request id)
    app.add_middleware(errors.BoundaryGuard)
    app.add_middleware(RequestIdMiddleware, access_log=access_log)
    # outermost: the request's public base (links) and a trusted proxy's client address (api/baseurl.py)
    from .api.baseurl import BaseUrlMiddleware

    app.add_middleware(BaseUrlMiddleware, configured=settings.base_url, trusted_proxies=settings.trusted_proxies)
    return app

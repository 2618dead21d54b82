"""System-level interactions: capabilities, batch/transaction, system history, health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import check_accept, fhir_response, prefer, pretty, read_json_body
from ..resources.transaction import BundleProcessor
from .instance import history_response

router = APIRouter()
health_router = APIRouter()


@router.get("/metadata", tags=["system"], summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    check_accept(request)
    mode = request.query_params.get("mode", "full")
    from ..api.baseurl import capability_for

    rest = request.app.state.rest
    cs = capability_for(request.app.state.capability, rest.configured_base, rest.base_url,
                        request.app.state.capability_by_base)
    if mode == "terminology":
        from ..fhir.errors import NotSupported

        raise NotSupported("mode=terminology is not supported")
    return fhir_response(cs, is_pretty=pretty(request))


@router.post("", tags=["system"], summary="batch or transaction Bundle")
@router.post("/", include_in_schema=False)
async def batch_or_transaction(request: Request, rest: Rest, settings: Settings) -> Response:
    check_accept(request)
    body = await read_json_body(request, settings.max_body_bytes)
    proc = BundleProcessor(rest, settings.enforce_referential_integrity)
    ret = prefer(request).get("return", "minimal")
    out = await run_in_threadpool(proc.process, body, ret)
    return fhir_response(out, is_pretty=pretty(request))


@router.get("/_history", tags=["history"], summary="System history")
def system_history(request: Request, rest: Rest, settings: Settings) -> Response:
    return history_response(request, rest, settings, None, None)


@health_router.get("/healthz", tags=["operations"], summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/readyz", tags=["operations"], summary="Readiness: the database answers")
def readyz(request: Request) -> Response:
    ok = request.app.state.store.ping()
    import orjson

    return Response(orjson.dumps({"status": "ready" if ok else "unavailable", "database": ok}),
                    status_code=200 if ok else 503, media_type="application/json")

"""HTTP handler of Group/$provider-member-match: reads the Parameters body, runs the match for the calling
provider, answers the Parameters with the stored matched-members Group (Content-Location names it)."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Rest, Settings
from ...api.http import check_accept, fhir_response, pretty, read_json_body
from ...auth.context import current_grant
from ...auth.opt_out import OptOuts
from .service import ProviderMatchService


async def provider_member_match(request: Request, rest: Rest, settings: Settings) -> Response:
    """POST Group/$provider-member-match."""
    check_accept(request)
    body = await read_json_body(request, settings.max_body_bytes)
    grant = current_grant()
    service = ProviderMatchService(rest, OptOuts(rest.store, settings.provider_access_opt_out),
                                   settings.provider_access_payer, settings.provider_access_report_opt_outs)
    result = await run_in_threadpool(service.match, body, grant)
    location = f"{rest.base_url}/Group/{result.group_id}/_history/{result.version}"
    return fhir_response(result.parameters, 200, {"Content-Location": location}, pretty(request))

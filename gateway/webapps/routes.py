"""HTTP routes of the served apps (mounted at ``/apps``): the care-gaps app's static files and its
``config.json`` (the FHIR base of this gateway, the default server of a standalone launch), the browser
build of fhirclient from npm, and the demo EHR launcher (``--demo`` only): a clinician signs in, finds a
patient and opens the care-gaps app with an EHR launch context for that patient."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from ..auth import pages
from ..auth import routes as auth_routes
from ..demo import DEMO_PERIOD_YEAR

HERE = Path(__file__).parent
APP_DIR = HERE / "care_gaps"
FHIRCLIENT = HERE / "node_modules" / "fhirclient" / "build" / "fhir-client.min.js"
CARE_GAPS_CLIENT = "care-gaps"
LAUNCHER_AUD = "urn:fhir-gateway:ehr-launcher"
LAUNCHER_TTL = 1800
# only these files are served (nothing else of the package folder)
FILES = {"index.html": "text/html; charset=utf-8", "launch.html": "text/html; charset=utf-8",
         "app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# the app's pages run only their own scripts and styles; FHIR calls may go to any SMART server it is
# launched from (connect-src), nothing is loaded from elsewhere
APP_HEADERS = {"Content-Security-Policy": "default-src 'self'; connect-src *; img-src 'self' data:; "
                                          "object-src 'none'; base-uri 'self'; form-action 'self'",
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
NPM_MISSING = ("The care-gaps app's fhirclient library is not installed: run `make install` on a machine with npm "
               "(it runs `npm ci --prefix gateway/webapps`)")

router = APIRouter(tags=["apps"])  # mounted at /apps


@router.get("/care-gaps", include_in_schema=False)
@router.get("/care-gaps/", include_in_schema=False)
def care_gaps_home() -> RedirectResponse:
    """The app's address opens a standalone launch at this gateway."""
    return RedirectResponse("/apps/care-gaps/launch.html", status_code=302)


@router.get("/care-gaps/config.json", summary="The care-gaps app's default FHIR server (this gateway)")
def care_gaps_config(request: Request) -> JSONResponse:
    auth = request.app.state.authority
    base = auth.fhir_base if auth is not None else request.app.state.settings.fhir_base()
    return JSONResponse({"fhirBase": base, "clientId": CARE_GAPS_CLIENT},
                        headers={"Cache-Control": "no-cache"})


@router.get("/care-gaps/{name}", summary="The care-gaps SMART app (static files)")
def care_gaps_file(name: str) -> Response:
    media = FILES.get(name)
    if media is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return FileResponse(APP_DIR / name, media_type=media, headers=APP_HEADERS)


@router.get("/vendor/fhir-client.js", summary="fhirclient (npm), the SMART client library the apps use")
def fhirclient() -> Response:
    if not FHIRCLIENT.is_file():
        return Response(f"// {NPM_MISSING}\nthrow new Error({NPM_MISSING!r});\n", status_code=503,
                        media_type="text/javascript")
    return FileResponse(FHIRCLIENT, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


# -- the demo EHR launcher -------------------------------------------------------------------------------
def _demo(request: Request) -> bool:
    settings = getattr(request.app.state, "settings", None)
    return bool(getattr(settings, "demo", False))


def _authority(request: Request) -> Any:
    auth = request.app.state.authority
    return auth if auth is not None and _demo(request) else None


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=auth_routes.PAGE)


def _login_page(brand: pages.Branding, error: str | None = None) -> str:
    err = f"<p class=err role=alert>{escape(error)}</p>" if error else ""
    return pages.page("Demo EHR: open a patient", f"""<p>This page stands in for an electronic health record
system: a clinician signs in, finds a patient and opens the care-gaps SMART app for that patient (an EHR launch).
It exists only on a gateway started with <code>--demo</code>.</p>{err}
<form method=post action=ehr-launcher><input type=hidden name=_step value=login>
<label for=username>User name</label><input id=username name=username autocomplete=username required>
<label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>
<button type=submit id=sign-in>Sign in</button></form>""", brand)


def _list_page(brand: pages.Branding, ticket: str, picker: pages.Picker, user: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td><button type=submit name=patient value='{escape(pid)}' "
        f"id='launch-{escape(pid)}' aria-label='Open care gaps for {escape(label)}'>Open care gaps</button></td></tr>"
        for pid, label in picker.matches)
    count = picker.count_text
    nav = ""
    if picker.previous is not None:
        nav += (f"<button type=submit class=secondary name=page value='{picker.previous}' "
                "id=prev-page>Previous page</button>")
    if picker.following is not None:
        nav += f"<button type=submit class=secondary name=page value='{picker.following}' id=next-page>Next page</button>"
    hidden = (f"<input type=hidden name=ticket value='{escape(ticket)}'>"
              f"<input type=hidden name=q_name value='{escape(picker.name)}'>"
              f"<input type=hidden name=q_birthdate value='{escape(picker.birthdate)}'>"
              f"<input type=hidden name=q_identifier value='{escape(picker.identifier)}'>")
    err = f"<p class=err role=alert>{escape(picker.error)}</p>" if picker.error else ""
    return pages.page("Demo EHR: open a patient", f"""<p>Signed in as <strong>{escape(user)}</strong>.</p>
<form method=post action=ehr-launcher><input type=hidden name=_step value=search>
<input type=hidden name=ticket value='{escape(ticket)}'><fieldset><legend>Find a patient</legend><div class=row>
<div><label for=q-name>Name</label><input id=q-name name=q_name value='{escape(picker.name)}'></div>
<div><label for=q-birthdate>Birth date</label><input id=q-birthdate name=q_birthdate type=date value='{escape(picker.birthdate)}'></div>
<div><label for=q-identifier>Identifier</label><input id=q-identifier name=q_identifier value='{escape(picker.identifier)}'></div>
</div><button type=submit class=secondary id=search>Search</button></fieldset></form>{err}
<form method=post action=ehr-launcher><input type=hidden name=_step value=launch>{hidden}
<p class=muted role=status id=patient-count>{count}</p>
<table><caption class=muted>Patients</caption><thead><tr><th scope=col>Patient</th><th scope=col>App</th></tr></thead>
<tbody>{rows}</tbody></table>{nav}</form>""", brand)


def _open_page(request: Request, picker: pages.Picker) -> str:
    """The launcher of a gateway with authorization off (``make run``): no sign-in (the FHIR API is open on
    the loopback address anyway); each patient opens the app on this open server with ``patientId``, which
    fhirclient uses when the server offers no authorization endpoint."""
    base = request.app.state.settings.fhir_base()
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td><a id='launch-{escape(pid)}' href='/apps/care-gaps/launch.html?"
        f"{escape(urlencode({'iss': base, 'patientId': pid, 'period': str(DEMO_PERIOD_YEAR)}))}'>Open care gaps"
        f"<span class=muted> for {escape(label)}</span></a></td></tr>" for pid, label in picker.matches)
    count = picker.count_text
    q = {"q_name": picker.name, "q_birthdate": picker.birthdate, "q_identifier": picker.identifier}
    nav = ""
    if picker.previous is not None:
        nav += (f"<a id=prev-page href='?{escape(urlencode({**q, 'page': picker.previous}))}'>"
                "Previous page</a> ")
    if picker.following is not None:
        nav += f"<a id=next-page href='?{escape(urlencode({**q, 'page': picker.following}))}'>Next page</a>"
    return pages.page("Demo EHR: open a patient", f"""<p>This page stands in for an electronic health record
system. Authorization is off on this server, so the care-gaps app opens without a sign-in (start the gateway
with authorization on, <code>fhir-gateway serve --demo</code>, for the SMART EHR launch).</p>
<form method=get action=ehr-launcher><fieldset><legend>Find a patient</legend><div class=row>
<div><label for=q-name>Name</label><input id=q-name name=q_name value='{escape(picker.name)}'></div>
<div><label for=q-birthdate>Birth date</label><input id=q-birthdate name=q_birthdate type=date value='{escape(picker.birthdate)}'></div>
<div><label for=q-identifier>Identifier</label><input id=q-identifier name=q_identifier value='{escape(picker.identifier)}'></div>
</div><button type=submit class=secondary id=search>Search</button></fieldset></form>
<p class=muted role=status id=patient-count>{count}</p>
<table><caption class=muted>Patients</caption><thead><tr><th scope=col>Patient</th><th scope=col>App</th></tr></thead>
<tbody>{rows}</tbody></table><p>{nav}</p>""", pages.Branding(request.app.state.settings.org_name))


@router.get("/ehr-launcher", summary="Demo EHR launcher (--demo only)", response_class=HTMLResponse)
async def launcher(request: Request) -> Response:
    """With authorization on: the clinician sign-in. With it off (``make run``): the patient list at once,
    each patient a link that opens the app on the open server."""
    auth = _authority(request)
    if auth is None and _demo(request) and request.app.state.authority is None:
        q = request.query_params
        picker = await run_in_threadpool(auth_routes.search_patients, request.app.state.rest,
                                         q.get("q_name", ""), q.get("q_birthdate", ""), q.get("q_identifier", ""),
                                         auth_routes._int(q.get("page")))
        return _html(_open_page(request, picker))
    if auth is None:
        return Response("Not found: the demo EHR launcher runs only with --demo", status_code=404,
                        media_type="text/plain")
    return _html(_login_page(auth_routes.brand(auth)))


@router.post("/ehr-launcher", summary="Demo EHR launcher (--demo only): find a patient, launch the app",
             response_class=HTMLResponse)
async def launcher_post(request: Request) -> Response:
    """``_step=login`` signs a clinician in (patients and other users are refused); ``_step=search`` lists
    patients matching name, birth date and identifier, a page at a time; ``_step=launch`` stores a
    one-time EHR launch context for the chosen patient and the care-gaps client and sends the browser to
    the app's launch URL with ``iss`` and ``launch``."""
    auth = _authority(request)
    if auth is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    brand = auth_routes.brand(auth)
    try:
        form = await auth_routes._simple_form(request)  # each field once, no NUL; a bad body is a 400 page
    except auth_routes.BadInput as exc:
        return _html(_login_page(brand, str(exc)), 400)
    step = form.get("_step")
    if step == "login":
        keys = auth.throttle.keys("user", form.get("username", ""), auth_routes._address(request))
        if await run_in_threadpool(auth.throttle.retry_after, keys) is not None:
            return _html(_login_page(brand, "Too many failed sign-ins. Try again later."), 429)
        user = await run_in_threadpool(auth_routes.sign_in, auth, form.get("username", ""), form.get("password", ""))
        if user is None:
            await run_in_threadpool(auth.throttle.failed, keys)
            return _html(_login_page(brand, "Unknown user name or wrong password"), 401)
        if not user.clinician:
            return _html(_login_page(brand, "Only clinicians (Practitioner users) can open the EHR launcher"), 403)
        ticket = auth_routes.user_ticket(auth, user.username, LAUNCHER_AUD, LAUNCHER_TTL)
        picker = await run_in_threadpool(auth_routes.search_patients, auth.rest)
        return _html(_list_page(brand, ticket, picker, user.username))
    holder = auth_routes.ticket_user(auth, form.get("ticket", ""), LAUNCHER_AUD)
    user = await run_in_threadpool(auth.server.user, holder) if holder else None
    if user is None or not user.clinician:
        return _html(_login_page(brand, "Your sign-in has expired; sign in again"), 401)
    ticket = form.get("ticket", "")
    if step == "launch" and form.get("patient") and "page" not in form:
        pid = form["patient"]
        if auth.clients.get(CARE_GAPS_CLIENT) is None or auth.store.read("Patient", pid) is None:
            return _html(_login_page(brand, "Unknown patient or care-gaps client not registered"), 400)
        launch = await run_in_threadpool(auth.server.create_launch, CARE_GAPS_CLIENT, {"patient": pid})
        query = urlencode({"iss": auth.fhir_base, "launch": launch, "period": str(DEMO_PERIOD_YEAR)})
        return RedirectResponse(f"/apps/care-gaps/launch.html?{query}", status_code=303)
    if step not in ("search", "launch"):
        return _html(_login_page(brand, "Unknown step"), 400)
    picker = await run_in_threadpool(auth_routes.search_patients, auth.rest, form.get("q_name", ""),
                                     form.get("q_birthdate", ""), form.get("q_identifier", ""),
                                     auth_routes._int(form.get("page")))
    return _html(_list_page(brand, ticket, picker, user.username))

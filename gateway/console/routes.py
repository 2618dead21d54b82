"""The console's HTTP routes, mounted at ``/console``: sign-in and sign-out, the measures dashboard, the gap
worklist with its CSV, and the attribution lists with their changes. Pages are rendered on the server from
FHIR API answers (``data``) into plain HTML (``views``)."""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from . import data, feeds, views
from .api import (
    SESSION_COOKIE,
    ApiError,
    Fhir,
    Session,
    Sessions,
    SignInNeeded,
    auth_enabled,
    client_id,
    fhir_base,
    oauth_client,
    sessions,
    smart_configuration,
    transport,
)
from .views import e, link, table

log = logging.getLogger("gateway.console")
router = APIRouter(tags=["console"], include_in_schema=False)  # mounted at /console
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'"}


def _sessions(request: Request) -> Sessions:
    state = request.app.state
    if getattr(state, "console_cache", None) is None:
        state.console_cache = data.ReportCache()
    return sessions(request.app)


def _session(request: Request) -> Session | None:
    return _sessions(request).get(request.cookies.get(SESSION_COOKIE))


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def _set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(SESSION_COOKIE, session.sid, httponly=True, samesite="lax", path="/console",
                        secure=fhir_base(request.app).startswith("https:"))


def _safe_next(value: str | None) -> str:
    """A return path inside the console only (no open redirect)."""
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


class Screen:
    """What every console page needs: the API as the user sees it, who the user is, the CSRF token."""

    def __init__(self, request: Request, session: Session | None) -> None:
        self.request = request
        self.session = session
        self.fhir = Fhir(request.app, session)
        self.auth_on = auth_enabled(request.app)

    @property
    def who(self) -> str:
        """Whose view this is, for the report cache: the signed-in user and the scopes granted (one user's
        sessions share their reports), or "open" under --auth off."""
        if self.session is None or not self.session.token:
            return "open"
        return f"{self.session.username}|{self.session.fhir_user}|{self.session.token.get('scope')}"

    def render(self, title: str, body: str, current: str, status: int = 200) -> HTMLResponse:
        user = None
        if self.session is not None and self.session.username:
            user = self.session.username + (f" ({self.session.fhir_user})" if self.session.fhir_user else "")
        return _html(views.page(title, body, current=current, user=user,
                                csrf=self.session.csrf if self.session else None, auth_on=self.auth_on), status)


async def _screen(request: Request, current: str, title: str,
                  build: Callable[[Screen], Awaitable[Response | str]]) -> Response:
    """Run a page: sign-in first when it is needed; an API refusal is shown as a message on the page."""
    session = _session(request)
    if auth_enabled(request.app) and (session is None or not session.token):
        return RedirectResponse(link("/console/login", next=str(request.url.path) + (
            f"?{request.url.query}" if request.url.query else "")), status_code=303)
    screen = Screen(request, session)
    try:
        out = await build(screen)
    except SignInNeeded:
        if session is not None:
            session.token = None
            _sessions(request).save(session)
        return RedirectResponse(link("/console/login", next=str(request.url.path)), status_code=303)
    except ApiError as exc:
        status = exc.status if exc.status in (400, 403, 404, 409, 412, 422) else 502
        return screen.render(title, views.message(f"The FHIR API refused: {exc.message} (HTTP {exc.status})",
                                                  "error"), current, status)
    except ValueError as exc:
        return screen.render(title, views.message(str(exc), "error"), current, 400)
    if isinstance(out, Response):
        return out
    return screen.render(title, out, current)


def _check_csrf(session: Session | None, form: Any) -> bool:
    if session is None:
        return True  # authorization off: no session, nothing to forge a request into
    return hmac.compare_digest(str(form.get("csrf", "")), session.csrf)


# -- static and sign-in ----------------------------------------------------------------------------------------
@router.get("/console.css")
def stylesheet() -> Response:
    return Response(views.CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/login")
async def login(request: Request, next: str | None = None) -> Response:
    """Start the sign-in: to the gateway's authorization endpoint with PKCE (authlib makes the URL)."""
    if not auth_enabled(request.app):
        return RedirectResponse(_safe_next(next), status_code=303)
    session = _session(request) or _sessions(request).new()
    try:
        config = await smart_configuration(request.app)
    except ApiError as exc:
        return _html(views.page("Sign-in is not available", views.message(exc.message, "error"), current="",
                                user=None, csrf=None, auth_on=True), 502)
    from authlib.common.security import generate_token

    verifier = generate_token(64)
    client = oauth_client(request.app)
    async with client:
        url, state = client.create_authorization_url(str(config["authorization_endpoint"]), code_verifier=verifier,
                                                     aud=fhir_base(request.app))
    session.pending = {"state": state, "verifier": verifier, "next": _safe_next(next),
                       "token_endpoint": str(config["token_endpoint"])}
    _sessions(request).save(session)  # the callback may reach another instance
    response = RedirectResponse(url, status_code=303)
    _set_cookie(request, response, session)
    return response


def _claims(id_token: str | None) -> dict[str, Any]:
    """The claims of the id token the token endpoint just handed over in process (the channel vouches for
    it; the console only shows the user's name from it)."""
    try:
        body = str(id_token).split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
    except (IndexError, ValueError):
        return {}


@router.get("/callback")
async def callback(request: Request) -> Response:
    """The authorization server's answer: exchange the code (with the PKCE verifier) for the user's tokens."""
    session = _session(request)
    q = request.query_params
    pending = session.pending if session else {}

    def refused(text: str, status: int = 400) -> Response:
        body = views.message(text, "error") + "<p><a href='/console/login'>Sign in again</a></p>"
        return _html(views.page("Sign-in did not complete", body, current="", user=None, csrf=None, auth_on=True),
                     status)

    if session is None or not pending or not hmac.compare_digest(q.get("state", ""), pending.get("state", "")):
        return refused("This sign-in answer does not belong to a sign-in started here.")
    session.pending = {}
    _sessions(request).save(session)  # a sign-in answer is used once
    if q.get("error"):
        return refused(f"The authorization server said: {q.get('error_description') or q.get('error')}", 403)
    client = oauth_client(request.app)
    try:
        async with client:
            token = await client.fetch_token(pending["token_endpoint"], code=q.get("code", ""),
                                             code_verifier=pending["verifier"])
    except Exception as exc:  # noqa: BLE001  (authlib's OAuthError and transport errors alike)
        log.warning("console token exchange failed", extra={"error": str(exc)[:200]})
        return refused("The authorization code could not be exchanged for a token.", 502)
    claims = _claims(token.get("id_token"))
    session.token = dict(token)
    session.username = str(claims.get("sub") or "user")
    fhir_user = str(claims.get("fhirUser") or "")
    session.fhir_user = "/".join(fhir_user.split("/")[-2:]) if fhir_user else None
    _sessions(request).save(session)
    return RedirectResponse(pending["next"], status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out: the tokens are revoked at the authorization server and the session forgotten."""
    session = _session(request)
    form = await request.form()
    if session is not None and _check_csrf(session, form):
        tok = session.token or {}
        for value in (tok.get("refresh_token"), tok.get("access_token")):
            if value:
                import httpx

                root = fhir_base(request.app).removesuffix("/fhir")
                async with httpx.AsyncClient(transport=transport(request.app)) as http:
                    await http.post(f"{root}/auth/revoke", data={"token": value, "client_id": client_id(request.app)})
        _sessions(request).drop(session.sid)
    body = "<p>You are signed out.</p><p><a href='/console/login'>Sign in</a></p>"
    return _html(views.page("Signed out", body, current="", user=None, csrf=None, auth_on=True))


# -- measures dashboard ----------------------------------------------------------------------------------------
def _rate_cell(rate: data.Rate, cell_id: str) -> str:
    num, den = rate.numerator, rate.denominator
    frac = f"{num} / {den}" if num is not None and den is not None else "–"
    return (f"<span id='{e(cell_id)}' data-numerator='{e(num)}' data-denominator='{e(den)}' "
            f"data-initial-population='{e(rate.counts.get('initial-population'))}' "
            f"data-score='{e('' if rate.score is None else repr(rate.score))}'>{e(frac)}"
            f" <span class=note>({views.pct(rate.score)})</span></span>")


async def _dashboard(s: Screen) -> str:
    q = s.request.query_params
    grain = "year" if q.get("grain") == "year" else "quarter"
    raw_year = q.get("year", "")
    year = int(raw_year) if raw_year.isdigit() and len(raw_year) == 4 else await data.latest_care_year(s.fhir)
    raw_count = q.get("periods", "")
    count = int(raw_count) if raw_count.isdigit() and 2 <= int(raw_count) <= 12 else (4 if grain == "quarter" else 3)
    periods = data.trend_periods(year, grain, count)
    last = periods[-1]
    ms = await data.measures(s.fhir)
    cache = s.request.app.state.console_cache
    stamp = await data.data_stamp(s.fhir)

    async def report(m: dict[str, Any], params: list[tuple[str, str]]) -> list[data.GroupResult]:
        return data.report_groups(await data.population_report(s.fhir, cache, s.who, stamp, str(m["id"]), params))

    form = ("<form class=filters method=get action='/console/'>"
            f"<div><label for=year>Year</label><input id=year name=year inputmode=numeric size=6 value='{year}'></div>"
            + views.select("grain", "Periods", [("quarter", "Quarters"), ("year", "Years")], grain)
            + views.select("periods", "Trend", [(str(n), f"{n} periods") for n in range(2, 9)], str(count))
            + "<div><button type=submit>Show</button></div></form>")
    if not ms:
        return form + views.message("No Measure is readable with this sign-in.", "error")
    trend_rows, cards = [], []
    results: dict[str, list[list[data.GroupResult]]] = {}
    for m in ms:
        per_period = [await report(m, data.evaluate_params(p)) for p in periods]
        results[str(m["id"])] = per_period
        n_groups = max((len(g) for g in per_period), default=0)
        for gi in range(n_groups):
            label = data.measure_title(m) + (f" (group {gi + 1})" if n_groups > 1 else "")
            cells = [_rate_cell(groups[gi].rate, f"rate-{m['id']}-{gi}-{p.key}") if gi < len(groups) else "–"
                     for p, groups in zip(periods, per_period, strict=True)]
            trend_rows.append([e(label), *cells])
            points = [(p.label, groups[gi].rate.score if gi < len(groups) else None)
                      for p, groups in zip(periods, per_period, strict=True)]
            better = "lower is better" if data.lower_is_better(m) else "higher is better"
            cards.append(f"<div class=card><h3>{e(label)}</h3><p class=note>{better}</p>"
                         f"{views.line_chart(f'{label}, rate by period', points, data.lower_is_better(m))}</div>")
    body = [form, "<h2 id=trends>Rates by period</h2>",
            "<p class=note>Each cell is numerator / denominator (score) of the measure's population report "
            "(<code>$evaluate-measure</code>, reportType population) over every patient you may see.</p>",
            table("Measure rates by period", ["Measure", *[p.label for p in periods]], trend_rows,
                  set(range(1, len(periods) + 1)), "trend-table"),
            f"<div class=cards>{''.join(cards)}</div>"]
    # stratifiers of the last period
    body.append(f"<h2 id=strata>By stratifier, {e(last.label)}</h2>")
    any_strata = False
    for m in ms:
        for gi, gr in enumerate(results[str(m["id"])][-1]):
            for name, strata in gr.stratifiers:
                any_strata = True
                caption = f"{data.measure_title(m)}: {name}, {last.label}"
                rows = [[e(st.value), e(st.rate.counts.get("initial-population")), e(st.rate.denominator),
                         e(st.rate.numerator),
                         _rate_cell(st.rate, f"stratum-{m['id']}-{gi}-{name}-{st.value}")] for st in strata]
                body.append("<div class=cards><div class=card>"
                            + table(caption, ["Stratum", "Initial population", "Denominator", "Numerator", "Rate"],
                                    rows, {1, 2, 3})
                            + views.bar_chart(caption, [(st.value, st.rate.score) for st in strata]) + "</div></div>")
    if not any_strata:
        body.append("<p>The measures define no stratifiers.</p>")
    # practices (attribution lists) and their providers, last period
    body.append(f"<h2 id=practices>By practice and attributed provider, {e(last.label)}</h2>")
    groups = await s.fhir.search_all("Group", [], limit=50)
    atr = [g for g in groups if data.ext_value(g, data.EXT_STATUS) is not None]
    if not atr:
        body.append("<p>No attribution list is visible to you.</p>")
    for g in atr:
        gid = str(g["id"])
        providers: dict[str, str] = {}
        for mem in g.get("member") or []:
            ref = data.ext_value(mem, data.EXT_PROVIDER) or {}
            if str(ref.get("reference", "")).startswith(("Practitioner/", "PractitionerRole/")):
                providers.setdefault(str(ref["reference"]), data.ref_display(ref))
        unnamed = [ref.split("/", 1)[1] for ref, disp in providers.items()
                   if disp == ref and ref.startswith("Practitioner/")]
        if unnamed:
            for prac_res in await s.fhir.search_all("Practitioner", [("_id", ",".join(unnamed)),
                                                                      ("_elements", "name")]):
                providers[f"Practitioner/{prac_res['id']}"] = data.person_name(prac_res)
        rows = []
        subjects = [("All members", None), *[(f"{disp} ({ref})" if disp != ref else ref, ref)
                                              for ref, disp in sorted(providers.items())]]
        for label, prac in subjects:
            cells = []
            for m in ms:
                res = await report(m, data.evaluate_params(last, f"Group/{gid}", prac))
                cells.append(_rate_cell(res[0].rate, f"practice-{gid}-{prac or 'all'}-{m['id']}") if res else "–")
            rows.append([e(label), *cells])
        caption = f"{g.get('name') or gid}: rates by attributed provider, {last.label}"
        body.append(table(caption, ["Patients", *[data.measure_title(m) for m in ms]], rows,
                          set(range(1, len(ms) + 1)), f"practice-{gid}"))
    body.append("<p class=note>A practice is an attribution list (its members are the report's subject); a "
                "provider's row narrows the list to the patients whose general practitioner the provider is "
                "(the <code>practitioner</code> parameter of <code>$evaluate-measure</code>).</p>")
    return "".join(body)


@router.get("/")
async def dashboard(request: Request) -> Response:
    return await _screen(request, "dashboard", "Measures dashboard", _dashboard)


# -- gap worklist ----------------------------------------------------------------------------------------------
class WorklistQuery:
    def __init__(self, request: Request, default_year: int) -> None:
        q = request.query_params
        self.measure = q.get("measure", "")
        self.period = data.parse_period(q.get("period") or str(default_year))
        self.provider = q.get("provider", "")
        self.payer = q.get("payer", "")
        self.status = "all" if q.get("status") == "all" else "open"
        self.sort = "-due" if q.get("sort") == "-due" else "due"

    def params(self) -> dict[str, str]:
        return {"measure": self.measure, "period": self.period.key, "provider": self.provider, "payer": self.payer,
                "status": self.status, "sort": self.sort}


async def _worklist_rows(s: Screen) -> tuple[WorklistQuery, list[dict[str, Any]], data.Selection,
                                             list[dict[str, Any]], list[dict[str, Any]]]:
    wq = WorklistQuery(s.request, await data.latest_care_year(s.fhir))
    ms = await data.measures(s.fhir)
    chosen = [m for m in ms if not wq.measure or m.get("id") == wq.measure]
    if wq.measure and not chosen:
        raise ValueError(f"No readable Measure has the id {wq.measure!r}")
    sel = await data.selection(s.fhir, wq.provider or None, wq.payer or None)
    rows = await data.scorecard_rows(s.fhir, sel.patients, chosen, wq.period)
    if wq.status == "open":
        rows = [r for r in rows if r["gap_status"] == "open"]
    return wq, rows, sel, ms, chosen


async def _worklist(s: Screen) -> str:
    wq, rows, sel, ms, chosen = await _worklist_rows(s)
    by_id = {str(p["id"]): p for p in sel.patients}
    titles = {data.canonical(m).partition("|")[0]: data.measure_title(m) for m in ms}
    years = sorted({wq.period.start[:4], str(int(wq.period.start[:4]) - 1)}, reverse=True)
    period_opts = [(k, k.replace("-", " ")) for y in years for k in (y, *(f"{y}-Q{i}" for i in range(1, 5)))]
    form = ("<form class=filters method=get action='/console/worklist'>"
            + views.select("measure", "Measure", [("", "All measures"), *[(str(m["id"]), data.measure_title(m))
                                                                         for m in ms]], wq.measure)
            + views.select("period", "Period", period_opts, wq.period.key)
            + views.select("provider", "Provider", [("", "All providers"), *sorted(
                ((k, v) for k, v in sel.providers.items()), key=lambda kv: kv[1])], wq.provider)
            + views.select("payer", "Payer", [("", "All payers"), *sorted(
                ((ref, f"{name} ({ref.removeprefix('Organization/')})") for ref, name in sel.payers.items()),
                key=lambda kv: kv[1])], wq.payer)
            + views.select("status", "Gaps", [("open", "Open gaps"), ("all", "Every gap status")], wq.status)
            + views.select("sort", "Sort", [("due", "Due date, soonest first"), ("-due", "Due date, latest first")],
                           wq.sort)
            + "<div><button type=submit>Show</button></div></form>")
    ordered = sorted(rows, key=lambda r: (str(r["period_end"]), data.person_name(by_id.get(r["patient_id"])).lower(),
                                          r["patient_id"], r["measure_url"]), reverse=False)
    if wq.sort == "-due":
        ordered.sort(key=lambda r: str(r["period_end"]), reverse=True)
    table_rows = []
    for r in ordered:
        p = by_id.get(r["patient_id"], {})
        gp = ", ".join(data.ref_display(x) for x in p.get("generalPractitioner") or [])
        payers = ", ".join(dict.fromkeys(sel.payers.get(ref, ref) for ref in sel.payer_of.get(r["patient_id"], [])))
        table_rows.append([f"{e(data.person_name(p))} <span class=note>({e(r['patient_id'])})</span>",
                           e(p.get("birthDate")), e(titles.get(r["measure_url"], r["measure_url"])),
                           e(f"{r['period_start']} to {r['period_end']}"), e(r["deqm_gap_status"]),
                           e(r["period_end"]), e(gp), e(payers)])
    label = "open gaps" if wq.status == "open" else "rows"
    csv_href = link("/console/worklist.csv", **wq.params())
    summary = (f"<p role=status><strong id=gap-count>{len(rows)}</strong> {label} among {len(sel.patients)} patients "
               f"for {len(chosen)} measure{'s' if len(chosen) != 1 else ''}, {e(wq.period.label)}. "
               f"<a id=csv href='{e(csv_href)}'>Download these rows as CSV</a> (the columns of "
               "<code>fhir-gateway extract --to scorecard-csv</code>).</p>")
    note = ("<p class=note>A gap is due at the end of its measurement period. Gap statuses come from "
            "<code>$care-gaps</code> (open and prospective gaps are open).</p>")
    return form + summary + note + table(
        "Patients with gaps", ["Patient", "Birth date", "Measure", "Period", "Gap status", "Due", "Provider", "Payer"],
        table_rows, table_id="worklist")


@router.get("/worklist")
async def worklist(request: Request) -> Response:
    return await _screen(request, "worklist", "Gap worklist", _worklist)


@router.get("/worklist.csv")
async def worklist_csv(request: Request) -> Response:
    async def build(s: Screen) -> Response:
        wq, rows, *_ = await _worklist_rows(s)
        return PlainTextResponse(data.csv_text(rows), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f"attachment; filename=scorecard-{wq.period.key}.csv",
                                          "Cache-Control": "no-store"})
    return await _screen(request, "worklist", "Gap worklist", build)


# -- attribution lists -----------------------------------------------------------------------------------------
async def _lists(s: Screen) -> str:
    # the whole Groups (a _summary search would leave out the members an attribution-restricted grant's
    # visibility is decided on)
    groups = await s.fhir.search_all("Group", [], limit=500)
    rows = []
    for g in groups:
        meta = g.get("meta") or {}
        active = sum(1 for m in data.members(g) if not m.inactive)
        rows.append([f"<a href='/console/attribution/{e(g['id'])}'>{e(g.get('name') or g['id'])}</a>",
                     e(data.list_status(g) or "(not an ATR list)"), e(active), e(meta.get("versionId")),
                     e(meta.get("lastUpdated")), e(data.ref_display(g.get("managingEntity")))])
    return ("<p>The attribution lists (Groups) you may see. Open one to review its members, change a draft, "
            "confirm it and compare its versions.</p>"
            + table("Attribution lists", ["List", "Status", "Active members", "Version", "Last updated", "Managed by"], rows,
                    {2, 3}, "lists"))


def _member_label(names: dict[str, str], ref: str) -> str:
    return f"{e(names.get(ref) or ref)} <span class=note>({e(ref)})</span>" if ref else ""


async def _list_detail(s: Screen, gid: str) -> str:
    q = s.request.query_params
    group = await s.fhir.get(f"Group/{gid}")
    history = await s.fhir.get(f"Group/{gid}/_history", [("_count", "100")])
    versions = [en["resource"] for en in history.get("entry") or [] if en.get("resource")]
    versions.sort(key=lambda r: int((r.get("meta") or {}).get("versionId") or 0))
    mems = data.members(group)
    refs = sorted({m.patient for m in mems} | {m.provider for m in mems})
    names: dict[str, str] = {}
    for rtype in ("Patient", "Practitioner"):
        ids = [r.split("/", 1)[1] for r in refs if r.startswith(rtype + "/")]
        if ids:
            for res in await s.fhir.search_all(rtype, [("_id", ",".join(ids)), ("_elements", "name")]):
                names[f"{rtype}/{res['id']}"] = data.person_name(res)
    status = data.list_status(group) or "(none)"
    meta = group.get("meta") or {}
    csrf = s.session.csrf if s.session else ""
    hidden = f"<input type=hidden name=csrf value='{e(csrf)}'>"
    out = [views.message(q.get("done")), views.message(q.get("failed"), "error"),
           "<p><a href='/console/attribution'>All attribution lists</a></p>",
           f"<h2>{e(group.get('name') or gid)}</h2>",
           f"<p>Status <strong id=list-status>{e(status)}</strong>, version <strong id=list-version>"
           f"{e(meta.get('versionId'))}</strong> of {e(meta.get('lastUpdated'))}; managed by "
           f"{e(data.ref_display(group.get('managingEntity')))}.</p>"]
    editable = status in ("draft", "open")
    rows = []
    for i, m in enumerate(mems):
        action = ""
        if editable and not m.inactive:
            action = (f"<form method=post action='/console/attribution/{e(gid)}/remove' class=inline>{hidden}"
                      f"<input type=hidden name=patient value='{e(m.patient)}'>"
                      f"<input type=hidden name=provider value='{e(m.provider)}'>"
                      f"<button type=submit class=danger id='remove-{i}' aria-label='Remove {e(names.get(m.patient) or m.patient)}'>"
                      "Remove</button></form>")
        rows.append([_member_label(names, m.patient), _member_label(names, m.provider), e(m.coverage),
                     e(f"{m.start} to {m.end}" if m.start or m.end else ""), e(m.change),
                     "inactive" if m.inactive else "active", action])
    out.append(table("Members", ["Patient", "Attributed provider", "Coverage", "Attribution period", "Change",
                                 "State", "Action"], rows, table_id="members"))
    if editable:
        period = (data.ext_value(group, data.EXT_CONTRACT_PERIOD) or {})
        pats = await s.fhir.search_all("Patient", [("_elements", "name")], limit=2000)
        pracs = await s.fhir.search_all("Practitioner", [("_elements", "name")], limit=2000)
        patient_opts = "".join(f"<option value='Patient/{e(p['id'])}'>{e(data.person_name(p))} (Patient/{e(p['id'])})</option>"
                               for p in sorted(pats, key=lambda p: data.person_name(p).lower()))
        prac_opts = "".join(f"<option value='Practitioner/{e(p['id'])}'>{e(data.person_name(p))} (Practitioner/{e(p['id'])})</option>"
                            for p in sorted(pracs, key=lambda p: data.person_name(p).lower()))
        out.append(f"""<h2 id=add-member>Add a member</h2>
<form method=post action='/console/attribution/{e(gid)}/add' class=filters>{hidden}
<div><label for=add-patient>Patient</label><select id=add-patient name=patient required>{patient_opts}</select></div>
<div><label for=add-provider>Attributed provider</label><select id=add-provider name=provider required>{prac_opts}</select></div>
<div><label for=add-start>Attribution from</label><input type=date id=add-start name=start value='{e(period.get("start"))}'></div>
<div><label for=add-end>to</label><input type=date id=add-end name=end value='{e(period.get("end"))}'></div>
<div><button type=submit id=add>Add member</button></div></form>
<h2 id=confirm-list>Confirm the list</h2>
<form method=post action='/console/attribution/{e(gid)}/confirm'>{hidden}
<p>Confirming makes the list final: inactive members are dropped and no further change is possible.</p>
<button type=submit id=confirm>Confirm attribution list</button></form>""")
    # history and differences
    hist_rows = []
    for v in reversed(versions):
        vm = v.get("meta") or {}
        active = sum(1 for m in data.members(v) if not m.inactive)
        hist_rows.append([e(vm.get("versionId")), e(vm.get("lastUpdated")), e(data.list_status(v)), e(active),
                          e(len(data.members(v)))])
    out.append("<h2 id=history>History</h2>" + table(
        "Versions of the list", ["Version", "Saved", "Status", "Active members", "Members"], hist_rows, {3, 4},
        "history"))
    if len(versions) >= 2:
        vids = [str((v.get("meta") or {}).get("versionId")) for v in versions]
        to_v = str(q.get("to")) if q.get("to") in vids else vids[-1]
        from_v = str(q.get("from")) if q.get("from") in vids else vids[max(0, vids.index(to_v) - 1)]
        opts = [(v, f"version {v}") for v in vids]
        out.append(f"<h2 id=changes>Changes from version {e(from_v)} to version {e(to_v)}</h2>"
                   f"<form class=filters method=get action='/console/attribution/{e(gid)}'>"
                   + views.select("from", "From", opts, from_v) + views.select("to", "To", opts, to_v)
                   + "<div><button type=submit>Compare</button></div></form>")
        d = data.diff(versions[vids.index(from_v)], versions[vids.index(to_v)])
        if d.status[0] != d.status[1]:
            out.append(f"<p id=status-change>Status: {e(d.status[0])} → {e(d.status[1])}</p>")
        change_rows = ([["added", _member_label(names, m.patient), _member_label(names, m.provider), ""] for m in d.added]
                       + [["removed", _member_label(names, m.patient), _member_label(names, m.provider), ""]
                          for m in d.removed]
                       + [["changed", _member_label(names, b.patient), _member_label(names, b.provider),
                           e(_what_changed(a, b))] for a, b in d.changed])
        out.append(table("Member changes", ["Change", "Patient", "Attributed provider", "What changed"], change_rows,
                         table_id="changes-table"))
    return "".join(out)


def _what_changed(a: data.Member, b: data.Member) -> str:
    parts = []
    if a.inactive != b.inactive:
        parts.append("made inactive" if b.inactive else "made active")
    if a.change != b.change:
        parts.append(f"change type {a.change or '(none)'} → {b.change or '(none)'}")
    if (a.start, a.end) != (b.start, b.end):
        parts.append(f"period {a.start} to {a.end} → {b.start} to {b.end}")
    if a.coverage != b.coverage:
        parts.append(f"coverage {a.coverage} → {b.coverage}")
    return "; ".join(parts)


@router.get("/attribution")
async def attribution_lists(request: Request) -> Response:
    return await _screen(request, "attribution", "Attribution lists", _lists)


@router.get("/attribution/{gid}")
async def attribution_list(request: Request, gid: str) -> Response:
    async def build(s: Screen) -> str:
        return await _list_detail(s, gid)
    return await _screen(request, "attribution", "Attribution list", build)


def _ref(value: Any, types: tuple[str, ...]) -> dict[str, str]:
    text = str(value or "").strip()
    rtype, _, rid = text.partition("/")
    if rtype not in types or not rid or "/" in rid:
        raise ValueError(f"{text!r} is not a reference to a {' or '.join(types)}")
    return {"reference": text}


async def _change(request: Request, gid: str, op: str) -> Response:
    back = f"/console/attribution/{gid}"

    async def build(s: Screen) -> Response:
        form = await request.form()
        if not _check_csrf(s.session, form):
            raise ValueError("The form has expired; reload the page and try again")
        params: list[dict[str, Any]] = []
        if op == "member-add":
            params = [{"name": "patientReference", "valueReference": _ref(form.get("patient"), ("Patient",))},
                      {"name": "providerReference", "valueReference": _ref(form.get("provider"),
                                                                            ("Practitioner", "PractitionerRole",
                                                                             "Organization"))}]
            period = {k: str(form.get(k)) for k in ("start", "end") if form.get(k)}
            if period:
                params.append({"name": "attributionPeriod", "valuePeriod": period})
        elif op == "member-remove":
            params = [{"name": "patientReference", "valueReference": _ref(form.get("patient"), ("Patient",))}]
            if form.get("provider"):
                params.append({"name": "providerReference", "valueReference": _ref(
                    form.get("provider"), ("Practitioner", "PractitionerRole", "Organization"))})
        try:
            await s.fhir.post(f"Group/{gid}/${op}", {"resourceType": "Parameters", "parameter": params})
        except ApiError as exc:
            return RedirectResponse(link(back, failed=f"${op} refused: {exc.message}"), status_code=303)
        done = {"member-add": "Member added.", "member-remove": "Member removed.",
                "confirm-attribution-list": "The list is confirmed (final)."}[op]
        return RedirectResponse(link(back, done=done), status_code=303)
    return await _screen(request, "attribution", "Attribution list", build)


@router.post("/attribution/{gid}/add")
async def member_add(request: Request, gid: str) -> Response:
    return await _change(request, gid, "member-add")


@router.post("/attribution/{gid}/remove")
async def member_remove(request: Request, gid: str) -> Response:
    return await _change(request, gid, "member-remove")


@router.post("/attribution/{gid}/confirm")
async def confirm(request: Request, gid: str) -> Response:
    return await _change(request, gid, "confirm-attribution-list")



# -- data feeds ------------------------------------------------------------------------------------------------
async def _feeds(s: Screen) -> str:
    intro = ("<p>What came into the gateway and what went out: recorded ingest runs, the jobs you may see and the "
             "Subscriptions with their last notification. Every figure is read from the FHIR API with your "
             "sign-in.</p>")
    return intro + await feeds.ingest_section(s.fhir) + await feeds.jobs_section(s.fhir) \
        + await feeds.subscriptions_section(s.fhir)


@router.get("/feeds")
async def feeds_screen(request: Request) -> Response:
    return await _screen(request, "feeds", "Data feeds", _feeds)


@router.get("/feeds/runs/{run_id}")
async def feeds_run(request: Request, run_id: str) -> Response:
    async def build(s: Screen) -> str:
        if not run_id.isalnum() or len(run_id) > 64:
            raise ValueError("That is not an ingest run id")
        return await feeds.run_detail(s.fhir, run_id)
    return await _screen(request, "feeds", "Ingest run", build)

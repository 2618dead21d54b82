"""The care-gaps SMART app (gateway/webapps, fhirclient from npm) and the redesigned sign-in pages, against one
real `fhir-gateway serve --demo` with authorization on, in headless Debian chromium driven by Playwright:

- EHR launch from the demo EHR launcher: for three demo patients the app shows exactly the gap statuses
  `$care-gaps` returns to a direct API call; recording a mammogram (`$submit-data`) closes the breast-screening
  gap and the app shows it;
- standalone launch by a patient user: only that patient; the "apps you have authorized" page withdraws the
  app, and its tokens stop working;
- the patient picker's search finds each of the 206 demo patients (over HTTP, a few in the browser), with
  nothing preselected and no silent cap;
- a denied consent (by keyboard) returns `access_denied` to the app;
- axe-core (npm) reports no WCAG 2.1 A/AA violation on any screen, and no screen scrolls sideways at 200 % zoom.

Screens are saved for docs/apps.md when SCREENSHOTS_DIR is set (`make screenshots`)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.screenshots import VIEWPORT, screenshot
from tests.test_live_server import LiveServer, start_server, stop_server

from .smart_demo import chromium, cli, webapps_installed

pytestmark = [pytest.mark.live, pytest.mark.screenshots]
CLINICIAN, CLINICIAN_PASSWORD = "cg-doctor", "doctor-password-1"
PATIENT_USER, PATIENT_PASSWORD, PATIENT = "cg-patient", "patient-password-1", "demo-pat-1"
ORG = "Riverbend Health Network"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
STATUSES = ["open-gap", "closed-gap", "prospective-gap", "not-applicable"]
BREAST = "http://fhir-vbc-gateway.example.org/Measure/demo-breast-cancer-screening|1.0.0"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
LOGO = ("<svg xmlns='http://www.w3.org/2000/svg' width='120' height='40'><rect width='120' height='40' "
        "fill='#0b5394'/><text x='10' y='26' fill='#fff' font-size='16'>Riverbend</text></svg>")


@dataclass
class World:
    gateway: LiveServer
    workdir: Path
    backend: str  # a system/*.rs token of the demo backend client
    patients: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.gateway.base

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.base}/{path}", params=params, headers={"Authorization": f"Bearer {self.backend}"},
                      timeout=60)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def webapps() -> Path:
    """gateway/webapps with its locked npm packages (fhirclient for the app, axe-core for these tests)."""
    return webapps_installed()


@pytest.fixture(scope="module")
def world(webapps: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("care-gaps")
    db = f"sqlite:///{workdir / 'gw.sqlite3'}"
    cli("users", "add", "--database", db, "--username", CLINICIAN, "--fhir-user", "Practitioner/demo-prac-1",
        GATEWAY_USER_PASSWORD=CLINICIAN_PASSWORD)
    cli("users", "add", "--database", db, "--username", PATIENT_USER, "--fhir-user", f"Patient/{PATIENT}",
        GATEWAY_USER_PASSWORD=PATIENT_PASSWORD)
    (workdir / "logo.svg").write_text(LOGO)
    gw = start_server(db, workdir, demo=True, auth=None, timeout=180,
                      env={"GATEWAY_ORG_NAME": ORG, "GATEWAY_ORG_LOGO": str(workdir / "logo.svg")})
    try:
        token = cli("token", "--fhir-base", gw.base, "--client-id", "demo-backend", "--key",
                    str(workdir / "demo-backend-key.json"), "--scope", "system/*.rs").strip()
        w = World(gw, workdir, token)
        url: str | None = f"{gw.base}/Patient?_count=100&_elements=name,birthDate,identifier"
        while url:
            page = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
            w.patients += [e["resource"] for e in page.get("entry", [])]
            url = next((lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"), None)
        yield w
    finally:
        stop_server(gw)


@pytest.fixture(scope="module")
def browser(webapps: Path) -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture()
def page(browser: Any, webapps: Path) -> Iterator[Any]:
    """A fresh page (own cookies and storage) with axe-core loaded into every document it opens (an init
    script, which the pages' Content-Security-Policy does not block, unlike an injected script tag)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(path=str(webapps / "node_modules" / "axe-core" / "axe.min.js"))
    p = context.new_page()
    p.set_default_timeout(60_000)
    sent: list[Any] = []
    p.on("request", lambda r: sent.append(r))
    p.sent = sent
    try:
        yield p
    finally:
        context.close()


# -- helpers -----------------------------------------------------------------------------------------------
def accessible(page: Any, name: str) -> None:
    """axe-core finds no WCAG 2.1 A/AA violation on the page; at 200 % zoom (half the CSS width) nothing
    scrolls sideways; the screen is saved as ``name`` for the docs."""
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    problems = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert problems == [], f"{name}: {problems}"
    screenshot(page, name)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"] // 2, "height": size["height"] // 2})
    try:
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, f"{name} scrolls sideways by {wide} px at 200 % zoom"
    finally:
        page.set_viewport_size(size)


def wait_status(page: Any, prefix: str, timeout: float = 90) -> str:
    """Poll (from Python: the app's CSP allows no eval) until the app's status starts with ``prefix`` or
    reports an error."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            status = page.inner_text("#status") if page.query_selector("#status") else ""
        except PlaywrightError:  # the page navigated meanwhile (the sign-in redirects)
            status = ""
        if status.startswith(prefix) or status.startswith("error"):
            assert status.startswith(prefix), status
            return str(status)
        assert time.monotonic() < deadline, f"status stayed {status!r}"
        time.sleep(0.2)


def sign_in(page: Any, user: str, password: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#sign-in")


def shown_statuses(page: Any) -> dict[str, str]:
    return {str(e.get_attribute("data-measure")): str(e.get_attribute("data-status"))
            for e in page.query_selector_all(".gap")}


def api_statuses(w: World, pid: str) -> dict[str, str]:
    """{measure canonical: gap status} from a direct $care-gaps call for the patient."""
    out = w.api("Measure/$care-gaps", **PERIOD, subject=f"Patient/{pid}", status=STATUSES)
    found: dict[str, str] = {}
    for p in out["parameter"]:
        entries = {e["fullUrl"]: e["resource"] for e in p["resource"]["entry"]}
        for r in entries.values():
            if r["resourceType"] != "DetectedIssue":
                continue
            report = entries[r["evidence"][0]["detail"][0]["reference"]]
            code = r["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            found[report["measure"]] = code
    return found


def subject_list(w: World, measure: str, population: str) -> set[str]:
    report = w.api(f"Measure/{measure}/$evaluate-measure", **PERIOD, reportType="subject-list")
    lists = {c["id"]: {e["item"]["reference"].split("/")[-1] for e in c.get("entry", [])}
             for c in report.get("contained", [])}
    pop = next(p for p in report["group"][0]["population"] if p["code"]["coding"][0]["code"] == population)
    return lists[pop["subjectResults"]["reference"].lstrip("#")]


def identifier(w: World, pid: str) -> str:
    p = next(p for p in w.patients if p["id"] == pid)
    return str(p["identifier"][0]["value"])


def launcher_sign_in(page: Any, w: World) -> None:
    page.goto(f"{w.gateway.root}/apps/ehr-launcher")
    sign_in(page, CLINICIAN, CLINICIAN_PASSWORD)
    page.wait_for_selector("#patient-count")


def ehr_launch(page: Any, w: World, pid: str, shots: bool = False) -> None:
    """From the demo EHR launcher (signed in): find the patient by identifier, open the app, sign in at the
    gateway, allow; waits until the app is ready."""
    page.fill("#q-identifier", identifier(w, pid))
    page.click("#search")
    page.wait_for_selector(f"#launch-{pid}")
    if shots:
        accessible(page, "ehr-launcher")
    page.click(f"#launch-{pid}")
    page.wait_for_selector("#username")
    if shots:
        assert ORG in page.inner_text("header")
        accessible(page, "sign-in")
    sign_in(page, CLINICIAN, CLINICIAN_PASSWORD)
    page.wait_for_selector("#allow")
    label = page.inner_text("#launch-patient")  # the EHR-launch consent names the patient
    name = next(p for p in w.patients if p["id"] == pid)["name"][0]
    assert name["family"] in label and "Patient:" in label
    assert page.query_selector("#patients") is None  # the launch chose the patient: no picker
    if shots:
        accessible(page, "consent-ehr-launch")
    page.click("#allow")
    wait_status(page, "ready")


# -- tests -------------------------------------------------------------------------------------------------
def test_ehr_launch_shows_the_statuses_care_gaps_returns(world: World, page: Any) -> None:
    breast_gap = sorted(subject_list(world, "demo-breast-cancer-screening", "denominator")
                        - subject_list(world, "demo-breast-cancer-screening", "numerator"))
    bp_gap = sorted(subject_list(world, "demo-controlling-blood-pressure", "denominator")
                    - subject_list(world, "demo-controlling-blood-pressure", "numerator"))
    # three patients with different pictures: a screening gap, a blood-pressure gap, a screened member
    chosen = [breast_gap[0], next(p for p in bp_gap if p != breast_gap[0]), PATIENT]
    launcher_sign_in(page, world)
    for i, pid in enumerate(chosen):
        if i:
            launcher_sign_in(page, world)
        ehr_launch(page, world, pid, shots=i == 0)
        assert page.inner_text("#patient-id") == pid
        assert page.inner_text("#user") == "Practitioner/demo-prac-1"
        expected = api_statuses(world, pid)
        assert len(expected) == 3 and shown_statuses(page) == expected, (pid, expected)
        if i == 0:
            assert expected[BREAST] == "open-gap"
            accessible(page, "care-gaps-app")
    # the app reached the FHIR API only with its own bearer token, and only the FHIR API
    fhir_calls = [r for r in page.sent if "/fhir/" in r.url and r.method != "OPTIONS"
                  and ".well-known" not in r.url and "/metadata" not in r.url]
    assert fhir_calls and all(r.headers.get("authorization", "").startswith("Bearer ") for r in fhir_calls)
    assert all(urlsplit(r.url).netloc == f"127.0.0.1:{world.gateway.port}" for r in page.sent)


def test_recording_a_mammogram_closes_the_breast_screening_gap(world: World, page: Any) -> None:
    gap = sorted(subject_list(world, "demo-breast-cancer-screening", "denominator")
                 - subject_list(world, "demo-breast-cancer-screening", "numerator"))
    pid = gap[-1]
    assert api_statuses(world, pid)[BREAST] == "open-gap"
    launcher_sign_in(page, world)
    ehr_launch(page, world, pid)
    assert shown_statuses(page)[BREAST] == "open-gap"
    page.select_option("#evidence-measure", BREAST)
    page.select_option("#evidence-kind", "mammogram")
    page.fill("#evidence-date", "2025-06-02")
    accessible(page, "record-evidence")
    page.click("#evidence-send")
    page.wait_for_selector("#notice:not([hidden])")
    assert "the gap is closed after the new evaluation" in page.inner_text("#notice")
    assert shown_statuses(page)[BREAST] == "closed-gap"
    assert api_statuses(world, pid)[BREAST] == "closed-gap"  # the payer's gateway evaluates it closed too
    posts = [r for r in page.sent if r.method == "POST" and "/$submit-data" in r.url]
    assert len(posts) == 1 and posts[0].url.endswith("/Measure/demo-breast-cancer-screening/$submit-data")
    procs = world.api("Procedure", patient=pid, date="2025-06-02")
    assert [e["resource"]["code"]["coding"][0]["code"] for e in procs.get("entry", [])] == ["24623002"]
    accessible(page, "gap-closed")
    page.emulate_media(media="print")
    assert page.is_visible("#summary") and not page.is_visible("#gaps")
    assert "Breast cancer screening: Done" in page.inner_text("#summary-items")
    screenshot(page, "printed-summary")
    page.emulate_media(media="screen")


def test_standalone_launch_by_a_patient_user_then_withdrawn(world: World, page: Any) -> None:
    page.goto(f"{world.gateway.root}/apps/care-gaps/")
    sign_in(page, PATIENT_USER, PATIENT_PASSWORD)
    page.wait_for_selector("#allow")
    assert "Your record:" in page.inner_text("#launch-patient") and page.query_selector("#patients") is None
    text = page.inner_text("main")
    assert "your health record" in text and "See and search your health records (all kinds)" in text
    assert "Add and change" not in text  # the user/*.cu the app asks for is never given to a patient
    accessible(page, "consent-patient")
    page.click("#allow")
    wait_status(page, "ready")
    sent = [r for r in page.sent if urlsplit(r.url).path == "/auth/authorize" and r.method == "GET"]
    query = parse_qs(urlsplit(sent[0].url).query)
    assert query["code_challenge_method"] == ["S256"] and "launch" not in query
    tok = page.evaluate("careGaps.client().state.tokenResponse")
    assert tok["patient"] == PATIENT and not any(s.startswith("user/") for s in tok["scope"].split())
    assert page.inner_text("#patient-id") == PATIENT and page.is_hidden("#record")  # reads only
    page.select_option("#year", "2025")  # a standalone launch opens on the current year; the demo data is 2025
    page.click("#evaluate")
    wait_status(page, "ready")
    assert shown_statuses(page) == api_statuses(world, PATIENT)
    # only that patient: the token reads no other record
    other = next(p["id"] for p in world.patients if p["id"] != PATIENT)
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert httpx.get(f"{world.base}/Patient/{other}", headers=h).status_code in (403, 404)
    assert httpx.get(f"{world.base}/Patient/{PATIENT}", headers=h).status_code == 200
    # the patient withdraws the app on the authorized-apps page: its tokens stop working
    page.goto(f"{world.gateway.root}/auth/manage")
    accessible(page, "authorized-apps-sign-in")
    sign_in(page, PATIENT_USER, PATIENT_PASSWORD)
    page.wait_for_selector("#revoke-0")
    assert "Care gaps" in page.inner_text("table")
    accessible(page, "authorized-apps")
    page.click("#revoke-0")
    page.wait_for_selector("#notice")
    assert "Care gaps" in page.inner_text("#notice") and page.query_selector("#no-apps")
    deadline = time.monotonic() + 10
    while httpx.get(f"{world.base}/Patient/{PATIENT}", headers=h).status_code != 401:
        assert time.monotonic() < deadline, "the withdrawn app's access token still works"
        time.sleep(0.5)
    refresh = httpx.post(f"{world.gateway.root}/auth/token",
                         data={"grant_type": "refresh_token", "refresh_token": tok.get("refresh_token", "x")})
    assert refresh.status_code in (400, 401), refresh.text


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _hidden(page_html: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2)) for m in
            re.finditer(r"<input type=hidden name='([^']+)' value='([^']*)'>", page_html)}


def _choices(page_html: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(r"<input type=radio name=patient id='pt-\d+' value='([^']*)'", page_html)]


def test_picker_search_finds_every_demo_patient(world: World, page: Any) -> None:
    assert len(world.patients) == 206
    _, challenge = _pkce()
    root = world.gateway.root
    params = {"response_type": "code", "client_id": "care-gaps", "scope": "launch/patient openid patient/*.rs",
              "redirect_uri": f"{root}/apps/care-gaps/index.html", "state": "s1", "aud": world.base,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    with httpx.Client(base_url=root, timeout=30) as c:
        login = c.get("/auth/authorize", params=params)
        consent = c.post("/auth/authorize", data={**_hidden(login.text), "username": CLINICIAN,
                                                  "password": CLINICIAN_PASSWORD})
        form = _hidden(consent.text)
        assert "Showing 1 to 20 of 206 patients" in consent.text and " checked" not in consent.text
        # every page of the unfiltered list, then one search per patient by identifier and by name + birth date
        seen: list[str] = []
        offset = 0
        while True:
            got = c.post("/auth/authorize", data={**form, "decision": "search", "page": str(offset)})
            seen += _choices(got.text)
            nxt = re.search(r"name=page value='(\d+)' formnovalidate id=next-page", got.text)
            if not nxt:
                break
            offset = int(nxt.group(1))
        assert sorted(seen) == sorted(p["id"] for p in world.patients)
        for p in world.patients:
            by_id = c.post("/auth/authorize", data={**form, "decision": "search",
                                                    "q_identifier": p["identifier"][0]["value"]})
            assert p["id"] in _choices(by_id.text), p["id"]
            by_name = c.post("/auth/authorize", data={**form, "decision": "search", "q_name": p["name"][0]["family"],
                                                      "q_birthdate": p["birthDate"]})
            assert p["id"] in _choices(by_name.text), p["id"]
    # a few through the browser, then the chosen patient opens in the app
    target = next(p for p in world.patients if p["id"].startswith("synth-"))
    page.goto(f"{root}/apps/care-gaps/launch.html")
    sign_in(page, CLINICIAN, CLINICIAN_PASSWORD)
    page.wait_for_selector("#patients")
    assert page.inner_text("#patient-count") == "Showing 1 to 20 of 206 patients"
    assert page.eval_on_selector_all("input[name=patient]", "els => els.filter(e => e.checked).length") == 0
    accessible(page, "consent-patient-picker")
    page.click("#next-page")
    page.wait_for_selector("#prev-page")
    assert page.inner_text("#patient-count") == "Showing 21 to 40 of 206 patients"
    page.fill("#q-name", target["name"][0]["given"][0])
    page.fill("#q-birthdate", target["birthDate"])
    page.click("#search")
    page.wait_for_selector(f"input[name=patient][value='{target['id']}']")
    page.check(f"input[name=patient][value='{target['id']}']")
    page.click("#allow")
    wait_status(page, "ready")
    assert page.inner_text("#patient-id") == target["id"]


def test_denied_consent_returns_access_denied_to_the_app(world: World, page: Any) -> None:
    page.goto(f"{world.gateway.root}/apps/care-gaps/launch.html")
    page.wait_for_selector("#username")
    # the keyboard only: type, Tab, Enter; then Tab to the Deny button
    page.focus("#username")
    page.keyboard.type(CLINICIAN)
    page.keyboard.press("Tab")
    page.keyboard.type(CLINICIAN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#deny")
    for _ in range(60):
        if page.evaluate("document.activeElement && document.activeElement.id") == "deny":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "deny"
    page.keyboard.press("Enter")
    status = wait_status(page, "error")
    assert "access_denied" in status, status
    landed = parse_qs(urlsplit(page.url).query)
    assert landed["error"] == ["access_denied"] and landed["state"] and "code" not in landed

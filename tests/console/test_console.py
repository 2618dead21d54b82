"""The console at /console/ against a real `fhir-gateway serve --demo` with authorization on, in headless Debian
chromium driven by Playwright, signed in through the gateway's own sign-in pages: the dashboard's figures are
the population reports the API gives, the worklist's CSV is the scorecard extract of the same selection, a
draft attribution list is changed and confirmed through the pages and its Group versions show it, a user
whose grant does not cover the list sees none of it, and axe-core finds no WCAG 2.1 A/AA violation on any
screen. One server and one signed-in browser page for the module; each screen is loaded once."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import ROOT
from tests.screenshots import screenshot
from tests.smart.smart_demo import chromium, cli, webapps_installed
from tests.test_live_server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live
STAFF, STAFF_PASSWORD = "console-staff", "staff-password-1"  # Elena Marsh, an attributed provider of the list
OUTSIDER, OUTSIDER_PASSWORD = "console-outsider", "outsider-password-1"  # a practitioner of another practice
LIST = "demo-atr-riverbend-2025"
DEMO_MEASURES = ("demo-breast-cancer-screening", "demo-controlling-blood-pressure", "demo-diabetes-a1c-poor-control")
AXE_DIR = ROOT / "gateway" / "webapps"  # axe-core: a devDependency of the served apps' npm packages
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


class Console:
    def __init__(self, gateway: LiveServer, database: str, workdir: Path) -> None:
        self.gateway = gateway
        self.database = database
        self.workdir = workdir
        token = cli("token", "--fhir-base", gateway.base, "--client-id", "demo-backend", "--key",
                    str(workdir / "demo-backend-key.json"), "--scope", "system/*.rs").strip()
        self.api = httpx.Client(base_url=gateway.base, headers={"Authorization": f"Bearer {token}"}, timeout=300)

    def url(self, path: str, **params: str) -> str:
        return f"{self.gateway.root}{path}" + (f"?{urlencode(params)}" if params else "")

    def population(self, measure: str, start: str, end: str, **extra: str) -> dict[str, Any]:
        r = self.api.get(f"Measure/{measure}/$evaluate-measure",
                         params={"periodStart": start, "periodEnd": end, "reportType": "population", **extra})
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workdir = tmp_path_factory.mktemp("console")
    db = f"sqlite:///{workdir / 'gw.sqlite3'}"
    cli("users", "add", "--database", db, "--username", STAFF, "--fhir-user", "Practitioner/demo-prac-1",
        GATEWAY_USER_PASSWORD=STAFF_PASSWORD)
    cli("users", "add", "--database", db, "--username", OUTSIDER, "--fhir-user", "Practitioner/other-practice-1",
        GATEWAY_USER_PASSWORD=OUTSIDER_PASSWORD)
    server = start_server(db, workdir, demo=True, auth=None, timeout=180)  # authorization on (the default)
    try:
        yield Console(server, db, workdir)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webapps_installed()  # axe-core comes from gateway/webapps/package-lock.json (make install runs npm ci there)
    with chromium() as b:
        yield b


def signed_in(browser: Any, console: Console, path: str, username: str, password: str) -> Any:
    """A new browser context: open ``path``, sign in on the gateway's pages, allow, land on ``path``."""
    # bypass_csp: the console's pages allow no script; the test injects axe-core all the same
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(240_000)
    page.goto(console.url(path))
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector("#allow")
    assert page.query_selector("#patient") is None  # user scopes only: no patient picker
    page.click("#allow")
    page.wait_for_url(lambda u: "/console/" in u and "/callback" not in u)
    page.wait_for_selector("main h1")
    return page


@pytest.fixture(scope="module")
def staff(browser: Any, console: Console) -> Iterator[Any]:
    page = signed_in(browser, console, "/console/attribution", STAFF, STAFF_PASSWORD)
    try:
        yield page
    finally:
        page.context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"))
    result = page.evaluate("async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
                           ".violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))",
                           WCAG_AA)
    return list(result)


def check_access(page: Any) -> None:
    """No WCAG 2.1 A/AA violation (axe-core); at 200 % zoom (a 640 px wide window for a 1280 px screen) the
    page needs no horizontal scrolling; the first Tab reaches the skip link."""
    assert axe_violations(page) == []
    size = page.viewport_size
    page.set_viewport_size({"width": 640, "height": 450})
    try:
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    finally:
        page.set_viewport_size(size)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def shoot(request: pytest.FixtureRequest, page: Any, name: str) -> None:
    """docs/apps/console-NAME.png under `make screenshots` (tests/screenshots.py)."""
    screenshot(page, f"console-{name}")


def figures(page: Any, selector: str) -> dict[str, str | None]:
    return dict(page.eval_on_selector(selector, "el => ({num: el.dataset.numerator, den: el.dataset.denominator, "
                                                "ip: el.dataset.initialPopulation, score: el.dataset.score})"))


def counts(node: dict[str, Any]) -> dict[str, str | None]:
    c = {p["code"]["coding"][0]["code"]: p.get("count") for p in node.get("population") or []}
    score = (node.get("measureScore") or {}).get("value")
    return {"num": str(c["numerator"]), "den": str(c["denominator"]), "ip": str(c["initial-population"]),
            "score": "" if score is None else repr(float(score))}


@pytest.mark.screenshots
def test_dashboard_figures_are_the_population_reports(console: Console, staff: Any,
                                                      request: pytest.FixtureRequest) -> None:
    page = staff
    # two quarters keep the test lean; the screenshot shows the year's four
    periods = "4" if os.environ.get("SCREENSHOTS_DIR") else "2"
    page.goto(console.url("/console/", year="2025", grain="quarter", periods=periods))
    page.wait_for_selector("#trend-table")
    shoot(request, page, "dashboard")
    quarters = {"2025-Q3": ("2025-07-01", "2025-09-30"), "2025-Q4": ("2025-10-01", "2025-12-31")}
    for m in DEMO_MEASURES:
        for key, (start, end) in quarters.items():
            report = console.population(m, start, end)
            shown = figures(page, f"#rate-{m}-0-{key}")
            want = counts(report["group"][0])
            if key == "2025-Q4":  # the stratifier tables show the last period
                for strat in report["group"][0].get("stratifier") or []:
                    name = strat["code"][0].get("text") or strat["code"][0]["coding"][0]["code"]
                    for stratum in strat["stratum"]:
                        value = stratum["value"].get("text") or stratum["value"]["coding"][0]["code"]
                        got = figures(page, f"[id='stratum-{m}-0-{name}-{value}']")
                        exp = counts(stratum)
                        assert (got["num"], got["den"], got["ip"]) == (exp["num"], exp["den"], exp["ip"]), (m, value)
            assert shown == want, (m, key, shown, want)
    # the practice (the attribution list) and its attributed providers, last period
    for m in DEMO_MEASURES:
        whole = counts(console.population(m, "2025-10-01", "2025-12-31", subject=f"Group/{LIST}")["group"][0])
        assert figures(page, f"[id='practice-{LIST}-all-{m}']") == whole
        for prac in ("Practitioner/demo-prac-1", "Practitioner/demo-prac-2", "Practitioner/demo-prac-3"):
            theirs = console.population(m, "2025-10-01", "2025-12-31", subject=f"Group/{LIST}", practitioner=prac)
            assert figures(page, f"[id='practice-{LIST}-{prac}-{m}']") == counts(theirs["group"][0]), (m, prac)
    assert page.locator("svg[role=img]").count() >= len(DEMO_MEASURES)  # a trend chart per measure
    check_access(page)


def extract_rows(console: Console, measure: str, start: str, end: str) -> list[dict[str, str]]:
    out = console.workdir / f"extract-{measure}.csv"
    cli("extract", "--to", "scorecard-csv", "--database", console.database, "--measure", measure,
        "--period-start", start, "--period-end", end, "--out", str(out))
    return list(csv.DictReader(io.StringIO(out.read_text())))


def without_run_columns(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows without report_id and report_date: the id and time of the individual reports evaluated for
    this export (every evaluation makes new ones)."""
    return [{k: v for k, v in r.items() if k not in ("report_id", "report_date")} for r in rows]


@pytest.mark.screenshots
def test_worklist_csv_is_the_scorecard_extract(console: Console, staff: Any, request: pytest.FixtureRequest) -> None:
    page = staff
    measure, payer = "demo-controlling-blood-pressure", "Organization/payer-synth-payer-medicare"
    page.goto(console.url("/console/worklist", measure=measure, period="2025", payer=payer, status="open"))
    page.wait_for_selector("#worklist")
    shoot(request, page, "worklist")
    covered = {c["beneficiary"]["reference"].removeprefix("Patient/") for c in (
        e["resource"] for e in console.api.get("Coverage", params={"payor": payer, "status": "active",
                                                                   "_count": "1000"}).json().get("entry") or [])}
    expected = [r for r in extract_rows(console, measure, "2025-01-01", "2025-12-31") if r["patient_id"] in covered]
    assert len(expected) == len(covered) > 10
    # the CSV link of the page (the same selection, every gap status)
    href = page.get_attribute("#csv", "href")
    assert href is not None
    answer = page.request.get(console.url("/console/worklist.csv", measure=measure, period="2025", payer=payer,
                                          status="all"))
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    text = answer.text()
    got = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(expected[0].keys())
    assert without_run_columns(got) == without_run_columns(expected)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", r["report_id"]) and r["report_date"] for r in got)
    # the page lists exactly the open gaps of that selection, by due date
    open_ids = sorted(r["patient_id"] for r in expected if r["gap_status"] == "open")
    shown = page.eval_on_selector_all("#worklist tbody tr", "rows => rows.filter(r => r.cells.length > 1).map("
                                                            "r => [r.cells[0].textContent, r.cells[4].textContent, "
                                                            "r.cells[5].textContent])")
    assert open_ids and sorted(re.search(r"\(([^)]+)\)$", s[0]).group(1) for s in shown) == open_ids
    assert {s[1] for s in shown} <= {"open-gap", "prospective-gap"} and [s[2] for s in shown] == sorted(s[2] for s in shown)
    assert page.inner_text("#gap-count") == str(len(open_ids))
    # the page's own CSV link gives the open rows of the same selection
    own = page.request.get(console.url("") + href)
    assert without_run_columns(list(csv.DictReader(io.StringIO(own.text())))) == without_run_columns(
        [r for r in expected if r["gap_status"] == "open"])
    check_access(page)


def group_versions(console: Console) -> list[dict[str, Any]]:
    bundle = console.api.get(f"Group/{LIST}/_history", params={"_count": "50"}).json()
    return sorted((e["resource"] for e in bundle["entry"]), key=lambda g: int(g["meta"]["versionId"]))


def active_patients(group: dict[str, Any]) -> set[str]:
    return {m["entity"]["reference"] for m in group.get("member") or [] if not m.get("inactive")}


def status_of(group: dict[str, Any]) -> str:
    return next(e["valueCode"] for e in group["extension"] if e["url"].endswith("ext-attributionListStatus"))


@pytest.mark.screenshots
def test_a_draft_list_is_changed_and_confirmed_in_the_console(console: Console, staff: Any,
                                                             request: pytest.FixtureRequest) -> None:
    page = staff
    before = group_versions(console)
    assert len(before) == 1 and status_of(before[0]) == "draft"
    page.goto(console.url("/console/attribution"))
    page.wait_for_selector("#lists")
    check_access(page)
    page.click(f"a[href='/console/attribution/{LIST}']")
    page.wait_for_selector("#members")
    # add a member (keyboard: choose in the selects, submit)
    page.select_option("#add-patient", "Patient/synth-1-00007")
    page.select_option("#add-provider", "Practitioner/demo-prac-1")
    page.click("#add")
    page.wait_for_selector("[role=status] >> text=Member added.")
    # remove demo-pat-2
    page.click(_remove_button(page, "Patient/demo-pat-2"))
    page.wait_for_selector("[role=status] >> text=Member removed.")
    shoot(request, page, "attribution")
    check_access(page)
    page.click("#confirm")
    page.wait_for_selector("[role=status] >> text=The list is confirmed (final).")
    assert page.inner_text("#list-status") == "final"
    versions = group_versions(console)
    assert [status_of(v) for v in versions] == ["draft", "draft", "draft", "final"]
    first, added, removed, final = versions
    assert active_patients(added) == active_patients(first) | {"Patient/synth-1-00007"}
    assert active_patients(removed) == active_patients(added) - {"Patient/demo-pat-2"}
    assert {m["entity"]["reference"] for m in final["member"]} == active_patients(removed)
    # the console shows the history and the changes from the first version to the last
    page.goto(console.url(f"/console/attribution/{LIST}", **{"from": "1", "to": "4"}))
    page.wait_for_selector("#changes-table")
    shoot(request, page, "attribution-changes")
    assert page.locator("#history tbody tr").count() == 4
    changes = page.eval_on_selector_all("#changes-table tbody tr", "rows => rows.map(r => r.textContent)")
    assert any(c.startswith("added") and "synth-1-00007" in c for c in changes)
    assert any(c.startswith("removed") and "demo-pat-2" in c for c in changes)
    assert page.inner_text("#status-change") == "Status: draft → final"


def _remove_button(page: Any, patient: str) -> str:
    rows = page.eval_on_selector_all("#members tbody tr", "rows => rows.map(r => r.textContent)")
    index = next(i for i, text in enumerate(rows) if f"({patient})" in text)
    return f"#remove-{index}"


def test_a_user_whose_grant_does_not_cover_the_list_sees_none_of_it(browser: Any, console: Console) -> None:
    page = signed_in(browser, console, "/console/attribution", OUTSIDER, OUTSIDER_PASSWORD)
    try:
        assert page.locator("#lists tbody a").count() == 0
        page.goto(console.url(f"/console/attribution/{LIST}"))
        text = page.inner_text("main")
        assert "The FHIR API refused" in text and ("HTTP 404" in text or "HTTP 403" in text), text
        members = {m["entity"]["reference"].removeprefix("Patient/") for m in group_versions(console)[0]["member"]}
        assert members and not any(pid in text for pid in members)
    finally:
        page.context.close()

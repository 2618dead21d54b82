"""The care-gaps app on the gateway as `make run` starts it (`serve --auth off --demo`): the demo EHR launcher
lists the patients without a sign-in and opens the app on the open server (fhirclient's `patientId`, no
authorization endpoint to go through); the app shows the statuses `$care-gaps` returns and can record a
mammogram that closes the breast-screening gap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.screenshots import VIEWPORT
from tests.test_live_server import LiveServer, start_server, stop_server

from .smart_demo import CHROMIUM, CHROMIUM_ARGS, playwright
from .test_care_gaps_app import BREAST, PERIOD, shown_statuses, wait_status, webapps  # noqa: F401 - a fixture

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def gateway(webapps: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:  # noqa: F811
    workdir = tmp_path_factory.mktemp("care-gaps-open")
    gw = start_server(f"sqlite:///{workdir / 'gw.sqlite3'}", workdir, demo=True, auth="off", timeout=180)
    try:
        yield gw
    finally:
        stop_server(gw)


def statuses(gw: LiveServer, pid: str) -> dict[str, str]:
    out = httpx.get(f"{gw.base}/Measure/$care-gaps", params={**PERIOD, "subject": f"Patient/{pid}", "status": [
        "open-gap", "closed-gap", "prospective-gap", "not-applicable"]}, timeout=60).json()
    found = {}
    for p in out["parameter"]:
        entries = {e["fullUrl"]: e["resource"] for e in p["resource"]["entry"]}
        for r in entries.values():
            if r["resourceType"] == "DetectedIssue":
                report = entries[r["evidence"][0]["detail"][0]["reference"]]
                found[report["measure"]] = r["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
    return found


def test_the_app_on_the_gateway_make_run_starts(gateway: LiveServer) -> None:
    report = httpx.get(f"{gateway.base}/Measure/demo-breast-cancer-screening/$evaluate-measure",
                       params={**PERIOD, "reportType": "subject-list"}, timeout=60).json()
    lists = {c["id"]: {e["item"]["reference"].split("/")[-1] for e in c.get("entry", [])} for c in report["contained"]}
    refs = {p["code"]["coding"][0]["code"]: p["subjectResults"]["reference"][1:] for p in report["group"][0]["population"]}
    pid = sorted(lists[refs["denominator"]] - lists[refs["numerator"]])[0]
    assert statuses(gateway, pid)[BREAST] == "open-gap"
    patient = httpx.get(f"{gateway.base}/Patient/{pid}", timeout=30).json()
    sync_playwright = playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page: Any = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(60_000)
            page.goto(f"{gateway.root}/apps/ehr-launcher")
            assert page.inner_text("#patient-count") == "Showing 1 to 20 of 206 patients"
            page.fill("#q-identifier", patient["identifier"][0]["value"])
            page.click("#search")
            page.click(f"#launch-{pid}")
            wait_status(page, "ready")
            assert page.inner_text("#patient-id") == pid
            assert shown_statuses(page) == statuses(gateway, pid)
            page.select_option("#evidence-measure", BREAST)
            page.select_option("#evidence-kind", "mammogram")
            page.fill("#evidence-date", "2025-05-05")
            page.click("#evidence-send")
            page.wait_for_selector("#notice:not([hidden])")
            assert shown_statuses(page)[BREAST] == "closed-gap" == statuses(gateway, pid)[BREAST]
        finally:
            browser.close()

"""The curl examples in docs/guides run, in order, against a live demo server: every one answers with a
2xx status and JSON, and the provider guide's submission closes the gap the payer guide found open."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_live_server import LiveServer, start_server, stop_server

GUIDES = [ROOT / "docs" / "guides" / "payer.md", ROOT / "docs" / "guides" / "provider.md"]
DOC_BASE = "http://127.0.0.1:8080"


def curl_commands(path: Path) -> list[str]:
    """Each curl command of the guide's ```sh blocks (backslash continuations joined)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S):
        for command in re.split(r"\n(?=curl )", block.replace("\\\n", " ").strip()):
            if command.startswith("curl "):
                out.append(command)
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("guides")
    server = start_server(f"sqlite:///{workdir / 'guides.sqlite3'}", workdir, demo=True)
    try:
        yield server
    finally:
        stop_server(server)


def gap(live: LiveServer) -> str:
    r = httpx.get(f"{live.base}/Measure/demo-breast-cancer-screening/$care-gaps", timeout=60, params={
        "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": "Patient/demo-pat-3",
        "status": ["open-gap", "closed-gap"]})
    issue = next(e["resource"] for e in r.json()["parameter"][0]["resource"]["entry"]
                 if e["resource"]["resourceType"] == "DetectedIssue")
    return issue["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]


def test_guides_run_against_a_live_server(live: LiveServer) -> None:
    commands = [c for g in GUIDES for c in curl_commands(g)]
    assert len(commands) >= 10
    assert gap(live) == "open-gap"
    for command in commands:
        argv = shlex.split(command.replace(DOC_BASE, live.root))
        argv[1:1] = ["--fail-with-body", "--max-time", "120"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=150)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        body = json.loads(done.stdout)
        assert body["resourceType"] in ("Parameters", "Bundle", "Library", "OperationOutcome"), command
        if body["resourceType"] == "OperationOutcome":
            assert body["issue"][0]["severity"] == "information", command
    assert gap(live) == "closed-gap"

"""The Python client of docs/guides/bulk-submit.md runs as written against a live gateway and a Data Provider's
file server on 127.0.0.1, and prints the outcome of each file."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.jobs.harness import FileServer, instances, manifest, ndjson

pytestmark = pytest.mark.live
GUIDE = ROOT / "docs" / "guides" / "bulk-submit.md"


def test_the_guide_client_submits_and_reports(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(code) == 1
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    with FileServer(routes) as files:
        routes["/drop/Patient.ndjson"] = (200, {}, ndjson([{"resourceType": "Patient", "id": "g-1"},
                                                            {"resourceType": "Patient", "id": "g-2"}]))
        routes["/drop/Observation.ndjson"] = (200, {}, b'{"resourceType": "Patient", "id": "g-3"}\n')
        routes["/drop/manifest.json"] = (200, {}, manifest(files.url("/drop"), [
            ("Patient", "Patient.ndjson"), ("Observation", "Observation.ndjson")]))
        env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
               "GATEWAY_BULK_SUBMIT_SOURCES": files.url("/drop"), "GATEWAY_SUBSCRIPTION_NOTIFIER": "false"}
        with instances(f"sqlite:///{tmp_path / 'guide.sqlite3'}", tmp_path, ("a",), env) as (a,):
            out = io.StringIO()
            scope = {"GATEWAY": a.base, "MANIFEST": files.url("/drop/manifest.json"),
                     "HEADERS": {"Accept": "application/fhir+json"}}
            with contextlib.redirect_stdout(out):
                exec(compile(code[0], str(GUIDE), "exec"), scope)  # noqa: S102 - the guide's own snippet
    lines = out.getvalue().splitlines()
    assert lines[0] == f"loaded 2 Patient from {files.url('/drop/Patient.ndjson')}"
    assert lines[1].startswith(f"refused {files.url('/drop/Observation.ndjson')} - ")
    assert "not a Observation" in lines[1] and len(lines) == 2

"""The Python clients of docs/guides/bulk-submit.md run as written: the ``$bulk-submit`` one against a live gateway
and a Data Provider's file server on 127.0.0.1, printing the outcome of each file; the dynamic
``$bulk-submit-data`` one against a live gateway pulling from a second live gateway (``--auth smart``, demo
data, a Backend Services client registered for the first gateway's key), printing what it pulled — the same
counts as the provider's own export of those types."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.jobs.harness import FileServer, export_at, instances, manifest, ndjson, provider

pytestmark = pytest.mark.live
GUIDE = ROOT / "docs" / "guides" / "bulk-submit.md"


def test_the_guide_client_submits_and_reports(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(code) == 2
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


def test_the_guide_dynamic_client_pulls_from_a_provider(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert "$bulk-submit-data" in code[1]
    with provider(tmp_path) as b:
        env = {"GATEWAY_EGRESS_ALLOW_NETWORKS": "loopback", "GATEWAY_EGRESS_ALLOW_HTTP": "true",
               "GATEWAY_BULK_SUBMIT_SOURCES": f"{b.root}/", "GATEWAY_BULK_SUBMIT_CREDENTIALS": str(b.credentials),
               "GATEWAY_SUBSCRIPTION_NOTIFIER": "false"}
        with instances(f"sqlite:///{tmp_path / 'guide.sqlite3'}", tmp_path, ("a",), env) as (a,):
            out = io.StringIO()
            scope = {"GATEWAY": a.base, "PROVIDER": b.base, "HEADERS": {"Accept": "application/fhir+json"}}
            with contextlib.redirect_stdout(out):
                exec(compile(code[1], str(GUIDE), "exec"), scope)  # noqa: S102 - the guide's own snippet
        expected = export_at(b, "Patient,Condition")
    lines = out.getvalue().splitlines()
    assert lines == [f"pulled {len(expected['Condition'])} Condition, {len(expected['Patient'])} Patient", "errors 0"]

"""The client-library snippets of docs/integration-ehr.md and docs/integration-payer.md run as written.

How: every fenced block whose info string is ```python title=NAME or ```js title=NAME is extracted; the
documented base URL (http://127.0.0.1:8080) is replaced by the live server's; the snippet gets a Backend
Services token in FHIR_TOKEN, the registered client's id in CLIENT_ID and its private key as private-jwk.json
in its working folder. Python snippets run with this virtualenv's python, js snippets with node (stdin, as an
ES module, from tests/clients/node so that its node_modules resolve; NODE_PATH points there too). Each
snippet prints one JSON object, which is checked against the server. The test first checks that the set of
titled snippets is exactly the one listed here, so a snippet added to the docs without a check here, or one
renamed, fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import DEMO_GROUP, NODE_DIR, NODE_MODULES, Server, register_backend, require_node
from tests.conftest import ROOT, clean_env

pytestmark = pytest.mark.live
DOCS = [ROOT / "docs" / "integration-ehr.md", ROOT / "docs" / "integration-payer.md"]
DOC_ROOT = "http://127.0.0.1:8080"
BLOCK = re.compile(r"^```(python|js) title=([\w-]+)\n(.*?)^```$", re.S | re.M)
EXPECTED = {"fhirpy-ehr": "python", "fhir-kit-client-ehr": "js", "fhirpy-payer": "python",
            "fhir-kit-client-payer": "js", "bulk-export-jwt": "python"}


@dataclass(frozen=True)
class Snippet:
    doc: str
    lang: str
    title: str
    code: str


def snippets() -> list[Snippet]:
    """Every titled python/js block of the two integration guides."""
    return [Snippet(doc.name, lang, title, code) for doc in DOCS for lang, title, code in BLOCK.findall(doc.read_text())]


def run_snippet(s: Snippet, server: Server, env: dict[str, str], cwd: Path) -> Any:
    code = s.code.replace(DOC_ROOT, server.live.root)
    assert server.live.root in code, f"{s.title} does not name the documented base {DOC_ROOT}"
    full_env = {**clean_env(), **env}
    if s.lang == "python":
        argv, workdir = [sys.executable, "-"], cwd
    else:
        argv, workdir = [require_node(), "--input-type=module", "-"], NODE_DIR
        full_env["NODE_PATH"] = str(NODE_MODULES)
    done = subprocess.run(argv, input=code, capture_output=True, text=True, env=full_env, cwd=workdir, timeout=300)
    assert done.returncode == 0, f"{s.doc} {s.title} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_docs_carry_the_listed_snippets() -> None:
    found = snippets()
    assert {s.title: s.lang for s in found} == EXPECTED
    assert len(found) == len(EXPECTED)  # no title twice


def _ids(http: httpx.Client, rtype: str, params: dict[str, str]) -> list[str]:
    bundle = http.get(f"/{rtype}", params={**params, "_count": "1000"}).json()
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_every_snippet_runs_against_a_live_server(smart_server: Server, tmp_path: Path) -> None:
    if any(s.lang == "js" for s in snippets()):
        require_node()
    backend = register_backend(smart_server, "system/*.cruds", "ES384", tmp_path)
    (tmp_path / "private-jwk.json").write_text(json.dumps(backend.key.as_dict(private=True)))
    token = backend.token("system/*.cruds")
    env = {"FHIR_TOKEN": token, "CLIENT_ID": backend.client_id}
    out = {s.title: run_snippet(s, smart_server, env, tmp_path) for s in snippets()}
    assert set(out) == set(EXPECTED)

    with httpx.Client(base_url=smart_server.base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        ehr = out["fhirpy-ehr"]
        assert ehr["created"] is True
        assert sorted(ehr["found"]) == sorted([f"Observation/{ehr['observation']}", f"Patient/{ehr['patient']}"])
        patient = http.get(f"/Patient/{ehr['patient']}").json()
        assert patient["identifier"][0]["value"] == "MRN-4711"

        kit = out["fhir-kit-client-ehr"]
        assert sorted(kit["values"]) == [125, 128, 131]
        assert _ids(http, "Patient", {"identifier": "urn:oid:2.16.840.1.113883.3.999|MRN-0815"}) == [kit["patient"]]

        period = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
        direct = http.get("/Measure/demo-breast-cancer-screening/$evaluate-measure", params={
            **period, "reportType": "population", "subject": f"Group/{DEMO_GROUP}"}).json()
        payer = out["fhirpy-payer"]
        assert payer["populations"] == {p["code"]["coding"][0]["code"]: p["count"] for p in direct["group"][0]["population"]}
        group = http.get(f"/Group/{DEMO_GROUP}").json()
        assert payer["gaps"] and set(payer["gaps"]) <= {m["entity"]["reference"] for m in group["member"]}
        assert set(payer["gaps"].values()) <= {"open-gap", "closed-gap"}
        assert payer["populations"]["denominator"] - payer["populations"].get("denominator-exclusion", 0) == len(payer["gaps"])

        js = out["fhir-kit-client-payer"]
        assert js["offers"] == {"careGaps": True, "systemExport": True, "transaction": True}
        one = http.get("/Measure/demo-breast-cancer-screening/$evaluate-measure",
                       params={**period, "subject": "Patient/demo-pat-3"}).json()
        assert js["populations"] == {p["code"]["coding"][0]["code"]: p["count"] for p in one["group"][0]["population"]}

        counts = out["bulk-export-jwt"]
        members = sorted({m["entity"]["reference"].split("/")[1] for m in group["member"]})
        assert counts["Group"] == 1 and counts["Patient"] == len(members)
        for rtype in ("Observation", "Condition", "Encounter"):
            assert counts[rtype] == sum(len(_ids(http, rtype, {"patient": f"Patient/{p}"})) for p in members), rtype

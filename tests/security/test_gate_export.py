"""Bulk export runs under the grant of the client and user that started it (issue 13, gaps 1 and 4), on SQLite
and PostgreSQL with the real worker thread and real tokens:

- the job records the starting grant (client, user, scopes, launch patient, fhirUser) and every exported row
  passes the store gate under it, so an export never holds a resource the same token could not read by REST
  (attribution-restricted Groups, v2 scope filters);
- ``_typeFilter`` queries follow the search-scope rules of REST search: a chain or ``_has`` into a type the
  grant cannot search is refused at kick-off (403), and sub-queries are confined to what the grant sees;
- a grant change after the kick-off is honoured at download time: the manifest and the files need a token
  whose grant still reads what the job read (403 otherwise).

Another user of the same app reading the job is covered by test_authsrv_bulk.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer

from .authsrv_support import fresh_client, put

ASYNC = {"Prefer": "respond-async"}
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def _obs(oid: str, pid: str, category: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": CAT, "code": category}]}], "code": {"text": category},
            "subject": {"reference": f"Patient/{pid}"}}


SEED: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "o1", "name": "Riverside"},
    {"resourceType": "Organization", "id": "o2", "name": "Lakeside"},
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    _obs("lab-1", "p1", "laboratory"), _obs("vital-1", "p1", "vital-signs"),
    _obs("lab-2", "p2", "laboratory"), _obs("vital-2", "p2", "vital-signs"),
    {"resourceType": "Group", "id": "g-mine", "type": "person", "actual": True,
     "managingEntity": {"reference": "Organization/o1"},
     "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]},
    {"resourceType": "Group", "id": "g-other", "type": "person", "actual": True,
     "managingEntity": {"reference": "Organization/o2"}, "member": [{"entity": {"reference": "Patient/p2"}}]},
]


@pytest.fixture()
def app(store: SqlStore, tmp_path: Path) -> Iterator[TestClient]:
    with fresh_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        for r in SEED:
            put(c, r)
        yield c


def _token(c: TestClient, scope: str, subject: str = "alice", **ctx: str) -> dict[str, str]:
    auth = c.app.state.authority
    return bearer(auth.tokens.issue_access("exporter", scope, 300, f"fam-{subject}", subject, ctx).token)


def _wait(c: TestClient, url: str, token: dict[str, str]) -> Any:
    deadline = time.monotonic() + 60
    while True:
        r = c.get(url, headers=token)
        if r.status_code != 202:
            return r
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.05)


def _export(c: TestClient, url: str, token: dict[str, str]) -> tuple[str, dict[str, set[str]]]:
    """Kick off, wait, download: the status URL and the exported ids per type."""
    kick = c.get(url, headers={**ASYNC, **token})
    assert kick.status_code == 202, kick.text
    done = _wait(c, kick.headers["Content-Location"], token)
    assert done.status_code == 200, done.text
    out: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for item in done.json()["output"]:
        r = c.get(item["url"], headers=token)
        assert r.status_code == 200, r.text
        counts[item["type"]] = counts.get(item["type"], 0) + item["count"]
        for line in r.content.splitlines():
            res = orjson.loads(line)
            out.setdefault(res["resourceType"], set()).add(res["id"])
    # what the job wrote is what the caller gets: the files on disk hold nothing the response filter drops
    assert counts == {t: len(v) for t, v in out.items()}
    return kick.headers["Content-Location"], out


def _rest_ids(c: TestClient, rtype: str, token: dict[str, str]) -> set[str]:
    r = c.get(f"/fhir/{rtype}", params={"_count": "100"}, headers=token)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])
            if e["resource"]["resourceType"] == rtype}


def test_attribution_restricted_export_holds_only_what_rest_shows(app: TestClient) -> None:
    token = _token(app, "system/*.rs", fhirUser="Organization/o1")
    _, got = _export(app, "/fhir/$export?_type=Group,Patient,Observation", token)
    assert got["Group"] == _rest_ids(app, "Group", token) == {"g-mine"}  # never the other organization's list
    for rtype in ("Patient", "Observation"):
        assert got[rtype] == _rest_ids(app, rtype, token)


# reads every type, but searches Observations only in the laboratory category (the gate applies the filter
# of the 's' scope to reads too); $export needs 'rs' on each exported type and its status 'r' on every type
LAB_ONLY = f"user/*.r user/Patient.s user/Observation.s?category={CAT}|laboratory"


def test_filtered_scope_export_holds_only_matching_resources(app: TestClient) -> None:
    token = _token(app, LAB_ONLY)
    _, got = _export(app, "/fhir/Patient/$export?_type=Patient,Observation", token)
    assert got["Observation"] == _rest_ids(app, "Observation", token) == {"lab-1", "lab-2"}
    assert got["Patient"] == {"p1", "p2"}


def test_unrestricted_export_is_unchanged(app: TestClient) -> None:
    token = _token(app, "system/*.rs")
    _, got = _export(app, "/fhir/$export?_type=Group,Observation", token)
    assert got == {"Group": {"g-mine", "g-other"}, "Observation": {"lab-1", "lab-2", "vital-1", "vital-2"}}


def test_type_filter_reaching_an_unsearchable_type_is_refused_at_kickoff(app: TestClient) -> None:
    token = _token(app, "system/Patient.rs")
    for tf in ("Patient?_has:Observation:subject:category=laboratory", "Patient?general-practitioner:Practitioner.name=x"):
        r = app.get("/fhir/Patient/$export", params={"_type": "Patient", "_typeFilter": tf}, headers={**ASYNC, **token})
        assert r.status_code == 403, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and "Content-Location" not in r.headers
    assert app.app.state.bulk.jobs.active_count("exporter") == 0


def test_type_filter_sub_queries_are_confined_to_the_grant(app: TestClient) -> None:
    token = _token(app, LAB_ONLY)
    # vital signs exist for both patients, but this grant cannot see them: the _has answers about nothing
    _, got = _export(app, "/fhir/Patient/$export?_type=Patient&_typeFilter="
                     "Patient%3F_has%3AObservation%3Asubject%3Acategory%3Dvital-signs", token)
    assert got.get("Patient", set()) == set()
    _, got = _export(app, "/fhir/Patient/$export?_type=Patient&_typeFilter="
                     "Patient%3F_has%3AObservation%3Asubject%3Acategory%3Dlaboratory", token)
    assert got["Patient"] == {"p1", "p2"}


def test_reduced_grant_is_refused_at_download(app: TestClient) -> None:
    full = _token(app, "system/*.rs")
    status_url, got = _export(app, "/fhir/Patient/$export?_type=Patient,Observation", full)
    assert got["Observation"] == {"lab-1", "lab-2", "vital-1", "vital-2"}
    manifest = app.get(status_url, headers=full).json()
    # the client's access changed since the kick-off; a new token of the same client and user reflects it
    for reduced in (_token(app, "system/Patient.rs"),  # no read of every type: the route policy refuses
                    _token(app, f"system/*.r system/Patient.s system/Observation.s?category={CAT}|laboratory"),
                    _token(app, "system/*.rs", fhirUser="Organization/o1")):  # now an organization's client
        r = app.get(status_url, headers=reduced)
        assert r.status_code == 403 and "output" not in r.text, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        for item in manifest["output"]:
            denied = app.get(item["url"], headers=reduced)
            assert denied.status_code == 403 and b'"id"' not in denied.content
    # a later token with the same access still downloads
    again = _token(app, "system/*.rs")
    assert app.get(status_url, headers=again).status_code == 200
    assert all(app.get(i["url"], headers=again).status_code == 200 for i in manifest["output"])


def test_the_job_records_the_starting_grant(app: TestClient) -> None:
    token = _token(app, "system/*.rs", subject="bob", fhirUser="Organization/o1")
    kick = app.get("/fhir/Group/g-mine/$export", headers={**ASYNC, **token})
    assert kick.status_code == 202, kick.text
    job = app.app.state.bulk.jobs.get(kick.headers["Content-Location"].rsplit("/", 1)[1])
    assert job is not None
    assert job.params["grant"] == {"client_id": "exporter", "subject": "bob", "scope": "system/*.rs",
                                   "patient": None, "fhir_user": "Organization/o1"}
    assert _wait(app, kick.headers["Content-Location"], token).status_code == 200


def test_deletions_are_listed_only_when_the_grant_saw_the_resource(app: TestClient) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    time.sleep(1.1)
    for gid, org in (("g-mine-old", "o1"), ("g-other-old", "o2")):
        put(app, {"resourceType": "Group", "id": gid, "type": "person", "actual": True,
                  "managingEntity": {"reference": f"Organization/{org}"}})
        with acting_as(SYSTEM):
            app.app.state.rest.delete("Group", gid)
    token = _token(app, "system/*.rs", fhirUser="Organization/o1")
    kick = app.get("/fhir/$export", params={"_type": "Group", "_since": since}, headers={**ASYNC, **token})
    assert kick.status_code == 202, kick.text
    done = _wait(app, kick.headers["Content-Location"], token)
    assert done.status_code == 200, done.text
    deleted = []
    for item in done.json().get("deleted", []):
        r = app.get(item["url"], headers=token)
        assert r.status_code == 200
        deleted += [orjson.loads(line)["entry"][0]["request"]["url"] for line in r.content.splitlines()]
    assert deleted == ["Group/g-mine-old"]  # never the other organization's list

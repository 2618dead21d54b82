"""The Bulk Data v2.0.0 server checklist of ``../shared/spec/conformance-checklists.md`` (all but its DEQM
additions, which ``test_deqm_checklist.py`` covers), one test per line, against a real ``fhir-gateway serve``
over https with a Backend Services token. The export lines run on SQLite and on PostgreSQL (the export reads
the database with SQL of its own), for each of the system, Patient and Group levels."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.fhir.validation import validate_resource
from tests.conformance.checklist import assert_tls12_plus_only, bulk_line, check_mapping
from tests.conformance.conftest import PATIENTS, Gateway

pytestmark = pytest.mark.live

CHECKLIST = {
    "SMART Backend Services discovery reuses the STU2 discovery tests": "test_bulk_auth_01_backend_discovery",
    "`token_endpoint` is a valid URI": "test_bulk_auth_02_token_endpoint_is_a_valid_uri",
    "`token_endpoint_auth_methods_supported` includes `private_key_jwt`": "test_bulk_auth_03_private_key_jwt",
    "`token_endpoint_auth_signing_alg_values_supported` includes RS384 or ES384":
        "test_bulk_auth_04_signing_algorithms",
    "`scopes_supported` is present": "test_bulk_auth_05_scopes_supported",
    "It is returned with 200": "test_bulk_capability_01_returned_with_200",
    "`instantiates` includes": "test_bulk_capability_02_instantiates_bulk_data",
    "It declares operation `export` at system level": "test_bulk_capability_03_export_operations_declared",
    "A kick-off without a token is rejected": "test_bulk_kickoff_01_without_token_rejected",
    "A kick-off with `Accept: application/fhir+json`": "test_bulk_kickoff_02_accepted_with_content_location",
    "Status polling returns 202 while in progress": "test_bulk_kickoff_03_status_polling",
    "The complete-status body has `transactionTime`": "test_bulk_kickoff_04_complete_status_body",
    "Each `output[]` item has `type` and an absolute": "test_bulk_kickoff_05_output_items_absolute_urls",
    "If `requiresAccessToken` is true": "test_bulk_kickoff_06_download_needs_token",
    "Every NDJSON line is a valid FHIR resource": "test_bulk_kickoff_07_ndjson_lines_valid_and_typed",
    "The export contains at least 2 distinct Patients": "test_bulk_kickoff_08_at_least_two_patients",
    "The file server is TLS": "test_bulk_kickoff_09_file_server_is_tls",
    "`_outputFormat` set to": "test_bulk_parameters_01_output_formats",
    "`_since` given as a valid FHIR `instant`": "test_bulk_parameters_02_since_instant",
    "Recommended: `_type`, `_typeFilter`": "test_bulk_parameters_03_recommended_parameters",
    "`DELETE` on the status URL → 202": "test_bulk_cancel_01_delete_is_202",
    "A later poll → **404**": "test_bulk_cancel_02_later_poll_is_404_outcome",
}

LEVELS = {"system": "$export", "Patient": "Patient/$export", "Group": "Group/cf-group/$export"}
ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def test_bulk_checklist_every_line_has_one_test() -> None:
    """Every Bulk Data line of the checklist (but the DEQM additions) maps to exactly one test here."""
    check_mapping(CHECKLIST, bulk_line, globals())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def gw(request: pytest.FixtureRequest) -> Gateway:
    """The https gateway on SQLite, then on PostgreSQL."""
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "pg_gateway")  # type: ignore[no-any-return]


def _auth(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.backend_token('system/*.rs')}"}


def kickoff(gw: Gateway, level: str, params: dict[str, str] | None = None) -> httpx.Response:
    with gw.http() as c:
        return c.get(f"{gw.base}/{LEVELS[level]}", params=params, headers={**ASYNC, **_auth(gw)})


def poll(gw: Gateway, status_url: str, timeout: float = 180.0) -> tuple[httpx.Response, list[httpx.Response]]:
    """Poll the status URL, waiting as long as each Retry-After says; the final response and the 202s."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + timeout
    with gw.http() as c:
        while time.monotonic() < deadline:
            r = c.get(status_url, headers=_auth(gw))
            if r.status_code != 202:
                return r, seen
            seen.append(r)
            time.sleep(float(r.headers["Retry-After"]))
    raise AssertionError(f"export at {status_url} did not finish in {timeout:.0f} s")


def cancel(gw: Gateway, status_url: str) -> httpx.Response:
    with gw.http() as c:
        return c.delete(status_url, headers=_auth(gw))


def complete(gw: Gateway, level: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    r = kickoff(gw, level, params)
    assert r.status_code == 202, r.text
    final, _ = poll(gw, r.headers["Content-Location"])
    assert final.status_code == 200, final.text
    return dict(final.json())


def download(gw: Gateway, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with gw.http() as c:
        for item in manifest["output"]:
            r = c.get(item["url"], headers={**_auth(gw), "Accept": "application/fhir+ndjson"})
            assert r.status_code == 200, r.text
            out.setdefault(item["type"], []).extend(json.loads(line) for line in r.text.splitlines() if line)
    return out


# -- Authorization and discovery -----------------------------------------------------------------------------


def _conf(gw: Gateway) -> dict[str, Any]:
    with gw.http() as c:
        r = c.get(f"{gw.base}/.well-known/smart-configuration")
    assert r.status_code == 200
    return dict(r.json())


def test_bulk_auth_01_backend_discovery(gateway: Gateway) -> None:
    """SMART Backend Services discovery reuses the STU2 discovery tests: the same document (200 JSON,
    required fields, S256 only, TLS) advertises `client_credentials` and the `client-confidential-asymmetric`
    capability (test_smart_app_launch_checklist.py holds the STU2 discovery tests)."""
    conf = _conf(gateway)
    assert "client_credentials" in conf["grant_types_supported"]
    assert "client-confidential-asymmetric" in conf["capabilities"]
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["token_endpoint"].startswith("https://")


def test_bulk_auth_02_token_endpoint_is_a_valid_uri(gateway: Gateway) -> None:
    """`token_endpoint` is a valid URI (absolute https, with a host, and it answers a token request)."""
    url = _conf(gateway)["token_endpoint"]
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc and parts.path and not parts.fragment
    with gateway.http() as c:
        r = c.post(url, data={"grant_type": "client_credentials"})
    assert r.status_code in (400, 401) and "error" in r.json()


def test_bulk_auth_03_private_key_jwt(gateway: Gateway) -> None:
    """`token_endpoint_auth_methods_supported` includes `private_key_jwt`."""
    assert "private_key_jwt" in _conf(gateway)["token_endpoint_auth_methods_supported"]


def test_bulk_auth_04_signing_algorithms(gateway: Gateway) -> None:
    """`token_endpoint_auth_signing_alg_values_supported` includes RS384 or ES384 (both, here), and never
    `none` or a symmetric algorithm."""
    algs = _conf(gateway)["token_endpoint_auth_signing_alg_values_supported"]
    assert {"RS384", "ES384"} <= set(algs)
    assert not {"none", "HS256", "HS384", "HS512"} & set(algs)


def test_bulk_auth_05_scopes_supported(gateway: Gateway) -> None:
    """`scopes_supported` is present (and offers system scopes for bulk clients)."""
    scopes = _conf(gateway)["scopes_supported"]
    assert isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
    assert any(s.startswith("system/") for s in scopes)


# -- CapabilityStatement -------------------------------------------------------------------------------------


def _capability(gw: Gateway) -> httpx.Response:
    with gw.http() as c:
        return c.get(f"{gw.base}/metadata", headers={"Accept": "application/fhir+json"})


def test_bulk_capability_01_returned_with_200(gateway: Gateway) -> None:
    """It is returned with 200 (without a token)."""
    r = _capability(gateway)
    assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"


def test_bulk_capability_02_instantiates_bulk_data(gateway: Gateway) -> None:
    """`instantiates` includes `http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data` (warning only;
    required here)."""
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in _capability(gateway).json()["instantiates"]


def test_bulk_capability_03_export_operations_declared(gateway: Gateway) -> None:
    """It declares operation `export` at system level, on `Patient` and on `Group`, with the matching
    OperationDefinition URLs (`export`, `patient-export`, `group-export`)."""
    rest = _capability(gateway).json()["rest"][0]
    base = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"

    def ops(holder: dict[str, Any]) -> dict[str, str]:
        return {o["name"]: o["definition"] for o in holder.get("operation", [])}

    assert ops(rest)["export"] == base + "export"
    by_type = {r["type"]: r for r in rest["resource"]}
    assert ops(by_type["Patient"])["export"] == base + "patient-export"
    assert ops(by_type["Group"])["export"] == base + "group-export"


# -- Kick-off, status and output -----------------------------------------------------------------------------


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_01_without_token_rejected(gw: Gateway, level: str) -> None:
    """A kick-off without a token is rejected with 400/401 (401 with an OperationOutcome and
    `WWW-Authenticate: Bearer`; a made-up token too)."""
    with gw.http() as c:
        for extra in ({}, {"Authorization": "Bearer made-up"}):
            r = c.get(f"{gw.base}/{LEVELS[level]}", headers={**ASYNC, **extra})
            assert r.status_code in (400, 401), r.text
            assert r.json()["resourceType"] == "OperationOutcome"
            assert "Content-Location" not in r.headers


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_02_accepted_with_content_location(gw: Gateway, level: str) -> None:
    """A kick-off with `Accept: application/fhir+json` and `Prefer: respond-async` returns **202** and a
    `Content-Location` (an absolute https status URL on this server)."""
    r = kickoff(gw, level)
    assert r.status_code == 202, r.text
    loc = r.headers["Content-Location"]
    assert loc.startswith(f"{gw.base}/")
    assert cancel(gw, loc).status_code == 202


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_03_status_polling(gw: Gateway, level: str) -> None:
    """Status polling returns 202 while in progress (Retry-After honoured) and then **200** with
    `Content-Type: application/json`. Every in-progress answer is 202 with a whole-seconds Retry-After and an
    X-Progress; polling waits as told (a poll sooner than allowed would get 429, which never comes)."""
    r = kickoff(gw, level)
    assert r.status_code == 202, r.text
    final, in_progress = poll(gw, r.headers["Content-Location"])
    for p in in_progress:
        assert p.status_code == 202 and int(p.headers["Retry-After"]) >= 1 and p.headers["X-Progress"]
    assert final.status_code == 200, final.text
    assert final.headers["content-type"].split(";")[0] == "application/json"


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_04_complete_status_body(gw: Gateway, level: str) -> None:
    """The complete-status body has `transactionTime`, `request`, `requiresAccessToken`, `output` and
    `error`. Keep `request` for Inferno v2 even though STU4 drops it."""
    m = complete(gw, level)
    assert isinstance(m["transactionTime"], str) and "T" in m["transactionTime"]
    assert m["request"].startswith(f"{gw.base}/{LEVELS[level]}")
    assert m["requiresAccessToken"] is True
    assert isinstance(m["output"], list) and m["output"] and isinstance(m["error"], list)


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_05_output_items_absolute_urls(gw: Gateway, level: str) -> None:
    """Each `output[]` item has `type` and an absolute `http(s)` `url` (https here, on this server)."""
    m = complete(gw, level)
    for item in m["output"]:
        assert isinstance(item["type"], str) and item["type"]
        parts = urlsplit(item["url"])
        assert parts.scheme == "https" and parts.netloc == f"127.0.0.1:{gw.port}", item["url"]


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_06_download_needs_token(gw: Gateway, level: str) -> None:
    """If `requiresAccessToken` is true, an NDJSON download without a token → 400/401 (and with the token,
    200)."""
    m = complete(gw, level)
    assert m["requiresAccessToken"] is True
    with gw.http() as c:
        for item in m["output"]:
            assert c.get(item["url"]).status_code in (400, 401)
            assert c.get(item["url"], headers={"Authorization": "Bearer made-up"}).status_code in (400, 401)
            assert c.get(item["url"], headers=_auth(gw)).status_code == 200


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_07_ndjson_lines_valid_and_typed(gw: Gateway, level: str) -> None:
    """Every NDJSON line is a valid FHIR resource of the declared `type` (full R4 validation of each line;
    the manifest's counts match)."""
    m = complete(gw, level)
    with gw.http() as c:
        for item in m["output"]:
            r = c.get(item["url"], headers=_auth(gw))
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/fhir+ndjson")
            lines = r.text.splitlines()
            assert len(lines) == item["count"]
            for line in lines:
                resource = json.loads(line)
                assert resource["resourceType"] == item["type"]
                result = validate_resource(resource, "strict")
                assert result.ok, (item["type"], result.errors)


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_kickoff_08_at_least_two_patients(gw: Gateway, level: str) -> None:
    """The export contains at least 2 distinct Patients (every seeded one, here)."""
    files = download(gw, complete(gw, level))
    ids = {p["id"] for p in files.get("Patient", [])}
    assert len(ids) >= 2 and set(PATIENTS) <= ids


def test_bulk_kickoff_09_file_server_is_tls(gw: Gateway) -> None:
    """The file server is TLS: output URLs are https on the gateway's port, which takes TLS 1.2+ only."""
    m = complete(gw, "Group")
    ports = {urlsplit(item["url"]).port for item in m["output"]}
    assert ports == {gw.port} and all(item["url"].startswith("https://") for item in m["output"])
    assert_tls12_plus_only(gw.port, str(gw.cert))


# -- Parameters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
def test_bulk_parameters_01_output_formats(gw: Gateway, fmt: str) -> None:
    """`_outputFormat` set to `application/fhir+ndjson`, `application/ndjson` or `ndjson` → 202 each, at each
    level. Stricter: an unsupported format is 400 with an OperationOutcome."""
    for level in LEVELS:
        r = kickoff(gw, level, {"_outputFormat": fmt})
        assert r.status_code == 202, (level, r.text)
        assert cancel(gw, r.headers["Content-Location"]).status_code == 202
    bad = kickoff(gw, "system", {"_outputFormat": "text/csv"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_bulk_parameters_02_since_instant(gw: Gateway) -> None:
    """`_since` given as a valid FHIR `instant` → 202 (at each level; a `_since` after every write exports no
    Patients). Stricter: a malformed `_since` is 400."""
    for level in LEVELS:
        r = kickoff(gw, level, {"_since": "2020-01-01T00:00:00Z"})
        assert r.status_code == 202, (level, r.text)
        assert cancel(gw, r.headers["Content-Location"]).status_code == 202
    later = complete(gw, "Patient", {"_since": "2999-01-01T00:00:00.000+00:00"})
    assert not [o for o in later["output"] if o["type"] == "Patient"]
    bad = kickoff(gw, "Patient", {"_since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_bulk_parameters_03_recommended_parameters(gw: Gateway) -> None:
    """Recommended: `_type`, `_typeFilter`, `patient`, `_elements`, `includeAssociatedData`. Each is accepted
    and has its effect: `_type` limits the types, `_typeFilter` the rows, `_elements` the elements, `patient`
    (POST) the patients; `includeAssociatedData=LatestProvenanceResources` is accepted."""
    m = complete(gw, "system", {"_type": "Patient,Observation"})
    assert {o["type"] for o in m["output"]} == {"Patient", "Observation"}
    files = download(gw, complete(gw, "Patient", {"_type": "Observation",
                                                   "_typeFilter": "Observation?value-quantity=gt60"}))
    assert {o["subject"]["reference"] for o in files["Observation"]} == {f"Patient/{p}" for p in PATIENTS[1:]}
    files = download(gw, complete(gw, "Patient", {"_type": "Patient", "_elements": "gender"}))
    assert all("name" not in p and p["gender"] == "female" for p in files["Patient"])
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{PATIENTS[0]}"}},
        {"name": "_type", "valueString": "Patient"}]}
    with gw.http() as c:
        r = c.post(f"{gw.base}/Patient/$export", json=body,
                   headers={**ASYNC, **_auth(gw), "Content-Type": "application/fhir+json"})
    assert r.status_code == 202, r.text
    final, _ = poll(gw, r.headers["Content-Location"])
    assert final.status_code == 200, final.text
    assert [p["id"] for p in download(gw, final.json())["Patient"]] == [PATIENTS[0]]
    r = kickoff(gw, "Group", {"includeAssociatedData": "LatestProvenanceResources"})
    assert r.status_code == 202, r.text
    assert cancel(gw, r.headers["Content-Location"]).status_code == 202


# -- Cancellation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_cancel_01_delete_is_202(gw: Gateway, level: str) -> None:
    """`DELETE` on the status URL → 202 (with an OperationOutcome saying so), for a running and for a
    completed export; without a token the DELETE is refused and the export stays."""
    r = kickoff(gw, level)
    assert r.status_code == 202, r.text
    loc = r.headers["Content-Location"]
    with gw.http() as c:
        assert c.delete(loc).status_code in (400, 401)
    gone = cancel(gw, loc)
    assert gone.status_code == 202 and gone.json()["resourceType"] == "OperationOutcome"
    r = kickoff(gw, level)
    final, _ = poll(gw, r.headers["Content-Location"])
    assert final.status_code == 200
    assert cancel(gw, r.headers["Content-Location"]).status_code == 202


@pytest.mark.parametrize("level", list(LEVELS))
def test_bulk_cancel_02_later_poll_is_404_outcome(gw: Gateway, level: str) -> None:
    """A later poll → **404** with an `OperationOutcome` (and its files are gone: 404 too)."""
    r = kickoff(gw, level)
    assert r.status_code == 202, r.text
    final, _ = poll(gw, r.headers["Content-Location"])
    files = [o["url"] for o in final.json()["output"]]
    loc = r.headers["Content-Location"]
    assert cancel(gw, loc).status_code == 202
    with gw.http() as c:
        later = c.get(loc, headers=_auth(gw))
        assert later.status_code == 404 and later.json()["resourceType"] == "OperationOutcome"
        assert later.json()["issue"][0]["diagnostics"]
        for url in files:
            assert c.get(url, headers=_auth(gw)).status_code == 404
    assert cancel(gw, loc).status_code == 404

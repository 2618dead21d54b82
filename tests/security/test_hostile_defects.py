"""Regression tests for the hostile-input defects (issue 13, defect 16 and the NDJSON part of defect 15):
each request below answered 500, or no answer at all, before; now it gets a clear 4xx OperationOutcome (or
the right answer) and leaves the store as it was. The `client` and `store` fixtures run on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from gateway.store.sql.store import SqlStore
from tests.conftest import SHARED, make_client
from tests.security.hostile_corpus import deep_contained, deep_extension, nested_bundles, store_digest
from tests.smart.conftest import bearer, make_auth_client, register_backend, wipe_auth

FHIR = {"Content-Type": "application/fhir+json"}
PATCH = {"Content-Type": "application/json-patch+json"}


def outcome(r: Any, status: int) -> str:
    """The diagnostics of an OperationOutcome answer with ``status``, asserting both."""
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(str(i.get("diagnostics", "")) for i in body["issue"])


def seed(client: TestClient) -> None:
    for res in ({"resourceType": "Patient", "id": "p1", "name": [{"family": "Keep"}]},
                {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": "Patient/p1"}}]}):
        assert client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res).status_code == 201


@pytest.mark.parametrize("path,method", [("/fhir/Patient", "POST"), ("/fhir/Patient/p1", "PUT"),
                                         ("/fhir/Patient/$validate", "POST")])
@pytest.mark.parametrize("body", ["extension-250", "contained-300"])
def test_deep_nesting_is_refused_at_parse_time(client: TestClient, store: SqlStore, path: str, method: str,
                                               body: str) -> None:
    seed(client)
    before = store_digest(store)
    data = deep_extension("Patient", 250) if body == "extension-250" else deep_contained("Patient", 300)
    r = client.request(method, path, content=data, headers=FHIR)
    assert "nests deeper than 64 levels" in outcome(r, 400)
    assert store_digest(store) == before


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_bundles_nested_in_bundle_entries_are_refused(client: TestClient, store: SqlStore, kind: str) -> None:
    seed(client)
    before = store_digest(store)
    r = client.post("/fhir", content=nested_bundles(60, kind), headers=FHIR)
    assert "nests deeper" in outcome(r, 400)
    assert store_digest(store) == before


def test_parameters_resource_nested_deep_on_validate(client: TestClient) -> None:
    body = b'{"resourceType":"Parameters","parameter":[{"name":"resource","resource":' + \
        deep_contained("Patient") + b"}]}"
    assert "nests deeper" in outcome(client.post("/fhir/Patient/$validate", content=body, headers=FHIR), 400)


def test_the_depth_limit_is_a_setting(store: SqlStore) -> None:
    """A resource within the default limit passes; a lower configured limit refuses it."""
    nested = deep_extension("Patient", 10)  # 10 extension levels: 22 JSON levels
    with make_client(store) as c:
        assert c.post("/fhir/Patient", content=nested, headers=FHIR).status_code == 201
    with make_client(store, max_json_depth=16) as c:
        assert "nests deeper than 16 levels" in outcome(c.post("/fhir/Patient", content=nested, headers=FHIR), 400)


@pytest.mark.parametrize("where", ["value", "key", "id", "bundle-url", "patch"])
def test_nul_in_a_body_is_refused_before_the_database(client: TestClient, store: SqlStore, where: str) -> None:
    seed(client)
    before = store_digest(store)
    patient = {"resourceType": "Patient", "id": "p1"}
    if where == "value":
        r = client.put("/fhir/Patient/p1", json={**patient, "name": [{"family": "Sm\u0000ith"}]})
    elif where == "key":
        r = client.put("/fhir/Patient/p1", json={**patient, "na\u0000me": [{"family": "x"}]})
    elif where == "id":
        r = client.post("/fhir/Patient", json={"resourceType": "Patient", "id": "p\u00002"})
    elif where == "bundle-url":
        r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient?name=Keep\u0000x"}},
            {"request": {"method": "DELETE", "url": "Patient/p1\u0000"}}]})
    else:
        r = client.patch("/fhir/Patient/p1", content=json.dumps(
            [{"op": "add", "path": "/name", "value": [{"family": "a\u0000b"}]}]), headers=PATCH)
    assert "NUL" in outcome(r, 400)
    assert store_digest(store) == before


@pytest.mark.parametrize("path", ["/fhir/Measure/%00/$evaluate-measure", "/fhir/$export-status/%00",
                                  "/fhir/Group/%00/$export", "/fhir/Measure/$care-gaps-status/%00",
                                  "/fhir/Patient/p1%00", "/fhir/Patient?_id=%00"])
def test_nul_in_the_url_is_refused(client: TestClient, path: str) -> None:
    assert "NUL" in outcome(client.get(path), 400)


def test_version_beyond_any_integer_is_not_found(client: TestClient) -> None:
    seed(client)
    assert "not known" in outcome(client.get("/fhir/Patient/p1/_history/" + "9" * 25), 404)
    assert client.get("/fhir/Patient/p1/_history/1").status_code == 200


def test_export_type_repeated_many_times(client: TestClient, store: SqlStore) -> None:
    """A type named many times is exported once; a kick-off URL longer than the job can keep is a 400 on
    every backend (PostgreSQL refused to store it: 500)."""
    r = client.get("/fhir/$export?_type=" + ",".join(["Patient"] * 200), headers={"Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    before = store_digest(store)
    r = client.get("/fhir/$export?_type=" + ",".join(["Patient"] * 5000), headers={"Prefer": "respond-async"})
    assert "longer than 2048 characters" in outcome(r, 400)
    r = client.get("/fhir/$export?" + "&".join(["_type=Spaceship"] * 2000), headers={"Prefer": "respond-async"})
    assert r.status_code == 400
    assert store_digest(store) == before


@pytest.mark.parametrize("value", [[], "x", None])
def test_json_patch_replacing_the_document(client: TestClient, store: SqlStore, value: Any) -> None:
    seed(client)
    before = store_digest(store)
    r = client.patch("/fhir/Patient/p1", content=json.dumps([{"op": "replace", "path": "", "value": value}]),
                     headers=PATCH)
    assert "may not replace the document" in outcome(r, 422)
    assert store_digest(store) == before


SHAPES = [{"name": "periodStart", "valueDate": "2025-01-01"}, "x", [1, None], [{"name": {"a": 1}, "valueString": "x"}],
          [{"name": "resource", "resource": "Patient"}], [{"name": "x", "part": {"name": "y"}}]]


@pytest.mark.parametrize("path", ["/fhir/Measure/$evaluate-measure", "/fhir/Measure/$submit-data",
                                  "/fhir/Group/g1/$member-add", "/fhir/Measure/$evaluate", "/fhir/Measure/$care-gaps",
                                  "/fhir/Patient/$validate", "/fhir/$export", "/fhir/Group/g1/$member-remove"])
def test_parameters_of_the_wrong_shape(client: TestClient, store: SqlStore, path: str) -> None:
    """Parameters.parameter as an object, a string, scalars; names that are not strings, a resource that is
    a string, a part that is an object: each a 400 naming the parameter, nothing written."""
    seed(client)
    before = store_digest(store)
    for parameter in SHAPES:
        r = client.post(path, json={"resourceType": "Parameters", "parameter": parameter},
                        headers={"Prefer": "respond-async"})
        assert "Parameters.parameter" in outcome(r, 400), parameter
    assert store_digest(store) == before


def test_fhirpath_patch_parameters_of_the_wrong_shape(client: TestClient, store: SqlStore) -> None:
    seed(client)
    before = store_digest(store)
    for parameter in ({"name": "operation"}, [{"name": "operation", "part": "x"}], [{"name": "operation",
                                                                                     "part": [1]}]):
        r = client.patch("/fhir/Patient/p1", json={"resourceType": "Parameters", "parameter": parameter},
                         headers={"Content-Type": "application/fhir+json"})
        assert "Parameters.parameter" in outcome(r, 400)
    assert store_digest(store) == before


def test_contained_resource_of_unknown_type(client: TestClient, store: SqlStore) -> None:
    seed(client)
    before = store_digest(store)
    body = {"resourceType": "Patient", "id": "p1", "contained": [{"resourceType": "Spaceship", "id": "s"}]}
    assert "'Spaceship'" in outcome(client.put("/fhir/Patient/p1", json=body), 400)
    assert "'Spaceship'" in outcome(client.post("/fhir/Patient", json={**body, "id": "p2"}), 400)
    r = client.post("/fhir/Patient/$validate", json=body)
    assert r.status_code == 200 and "'Spaceship'" in r.text
    assert store_digest(store) == before


def test_ingest_field_beyond_the_csv_limit(client: TestClient, store: SqlStore) -> None:
    """A CSV field larger than the csv module reads becomes a reject, not a 500."""
    before = store_digest(store)
    r = client.post("/fhir/$ingest/claims-csv", content=b"x" * 200_000 + b"\n", headers={"Content-Type": "text/csv"})
    assert r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome"
    assert "not readable" in r.text
    assert store_digest(store) == before


def _load_measure(client: TestClient) -> str:
    bundle = json.loads((SHARED / "testdata" / "ecqm" / "CMS122" / "measure-bundle.json").read_text())
    entries = [{"resource": e["resource"], "request": {"method": "PUT", "url": f"{e['resource']['resourceType']}/"
                                                       f"{e['resource']['id']}"}} for e in bundle["entry"]]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text[:300]
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")


def test_evaluate_measure_with_year_precision_covers_the_year(store: SqlStore) -> None:
    """periodStart=2025&periodEnd=2025 is the whole of 2025 (DEQM allows date precision down to the year)."""
    with make_client(store, enforce_referential_integrity=False) as client:
        _evaluate_year(client)


def _evaluate_year(client: TestClient) -> None:
    mid = _load_measure(client)
    year = client.get(f"/fhir/Measure/{mid}/$evaluate-measure?periodStart=2025&periodEnd=2025")
    assert year.status_code == 200, year.text[:300]
    days = client.get(f"/fhir/Measure/{mid}/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31")
    assert [g["population"] for g in year.json()["group"]] == [g["population"] for g in days.json()["group"]]
    assert year.json()["period"] == {"start": "2025", "end": "2025"}
    month = client.get(f"/fhir/Measure/{mid}/$evaluate-measure?periodStart=2025-02&periodEnd=2025-03")
    assert month.status_code == 200, month.text[:300]


def test_period_precision_becomes_the_whole_interval() -> None:
    from gateway.deqm.evaluation import MeasureService

    _, interval = MeasureService.period("2025", "2025")
    assert (str(interval.low), str(interval.high)) == ("2025-01-01T00:00:00.000", "2025-12-31T23:59:59.999")
    _, interval = MeasureService.period("2024-02", "2024-02")
    assert (str(interval.low), str(interval.high)) == ("2024-02-01T00:00:00.000", "2024-02-29T23:59:59.999")


def test_unexpected_errors_name_neither_class_nor_message(store: SqlStore, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure nothing handles answers a 500 OperationOutcome with the request id only; the log has the
    exception under the same id."""
    with make_client(store) as c:
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret value Smith 1970-01-01")

        monkeypatch.setattr(c.app.state.rest, "read", boom)
        with caplog.at_level(logging.ERROR, logger="gateway.api"):
            r = c.get("/fhir/Patient/p1", headers={"X-Request-ID": "req-123"})
    assert r.status_code == 500
    text = outcome(r, 500)
    assert "RuntimeError" not in r.text and "secret" not in r.text and "Smith" not in r.text
    assert "req-123" in text and r.headers["x-request-id"] == "req-123"
    assert any(rec.exc_info and "secret value" in str(rec.exc_info[1]) for rec in caplog.records)


def test_database_data_errors_are_bad_requests(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the database itself refuses (out of range, invalid for the column) is the caller's error."""
    from sqlalchemy.exc import DataError

    with make_client(store) as c:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise DataError("SELECT ... WHERE x = %(v)s", {"v": "Smith"}, Exception("value out of range"))

        monkeypatch.setattr(c.app.state.rest, "read", refuse)
        r = c.get("/fhir/Patient/p1")
    text = outcome(r, 400)
    assert "Smith" not in r.text and "SELECT" not in r.text and "DataError" not in text


def test_ndjson_download_by_an_attribution_restricted_client(store: SqlStore, tmp_path: Path) -> None:
    """A client acting for an organization downloads multi-line NDJSON files; each line is filtered on its
    own (Groups it may not see are left out), instead of the whole file failing to parse."""
    from gateway.auth.tables import CLIENT

    wipe_auth(store)
    ext = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
    with make_auth_client(store, export_dir=tmp_path / "export", export_poll_min_seconds=0) as c:
        writer = bearer(register_backend(c, "system/*.cruds").token("system/*.cruds"))
        for pid in ("p1", "p2", "p3"):
            assert c.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                         headers=writer).status_code == 201
        for gid, provider in (("g-a", "Organization/clinic-a"), ("g-b", "Organization/clinic-b")):
            group = {"resourceType": "Group", "id": gid, "type": "person", "actual": True,
                     "member": [{"entity": {"reference": "Patient/p1"},
                                 "extension": [{"url": ext, "valueReference": {"reference": provider}}]}]}
            assert c.put(f"/fhir/Group/{gid}", json=group, headers=writer).status_code == 201
        clinic = register_backend(c, "system/*.rs")
        with store.engine.begin() as conn:
            conn.execute(update(CLIENT).where(CLIENT.c.client_id == clinic.client_id)
                         .values(fhir_user="Organization/clinic-a"))
        token = bearer(clinic.token("system/*.rs"))
        kick = c.get("/fhir/$export?_type=Patient,Group", headers={"Prefer": "respond-async", **token})
        assert kick.status_code == 202, kick.text
        deadline = time.monotonic() + 60
        while (r := c.get(kick.headers["Content-Location"], headers=token)).status_code == 202:
            assert time.monotonic() < deadline, "export did not finish"
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        got: dict[str, set[str]] = {}
        for out in r.json()["output"]:
            f = c.get(out["url"], headers=token)
            assert f.status_code == 200, f.text[:300]
            assert f.headers["content-type"].startswith("application/fhir+ndjson")
            lines = [json.loads(line) for line in f.content.splitlines() if line.strip()]
            got.setdefault(out["type"], set()).update(x["id"] for x in lines)
        assert got["Patient"] == {"p1"}  # its attributed patient only (test_gate_attribution.py)
        assert got.get("Group", set()) <= {"g-a"} and "g-b" not in got.get("Group", set())

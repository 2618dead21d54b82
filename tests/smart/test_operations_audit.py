"""Operations under the declarative policy (docs/security.md), operation outputs confined to the launch
patient, and the audit trail exported as AuditEvent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.auth import policy
from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.scopes import ScopeSet

from .conftest import bearer, issue

MEASURE = Path(__file__).resolve().parents[2] / "gateway" / "demo" / "measures" / "demo-diabetes-a1c-poor-control.json"
Q = "/fhir/Measure/demo-diabetes-a1c-poor-control/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31"


@pytest.fixture()
def measured(auth_client: TestClient) -> TestClient:
    rest = auth_client.app.state.rest
    m = json.loads(MEASURE.read_text())
    with acting_as(SYSTEM):
        rest.update("Measure", m["id"], m)
        for pid in ("p1", "p2"):
            rest.update("Patient", pid, {"resourceType": "Patient", "id": pid, "birthDate": "1960-01-01"})
    return auth_client


def test_evaluate_measure_under_patient_scope(measured: TestClient) -> None:
    t = bearer(issue(measured, "patient/*.rs", "p1"))
    r = measured.get(Q + "&subject=Patient/p1", headers=t)
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "MeasureReport" and r.json()["subject"]["reference"] == "Patient/p1"
    for extra in ("&subject=Patient/p2", "", "&reportType=population", "&subject=Group/g1"):
        r = measured.get(Q + extra, headers=t)
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome", extra
    body = {"resourceType": "Parameters", "parameter": [{"name": "periodStart", "valueDate": "2025-01-01"},
            {"name": "periodEnd", "valueDate": "2025-12-31"}, {"name": "subject", "valueString": "Patient/p2"}]}
    r = measured.post(Q.split("?")[0], json=body, headers={**t, "Content-Type": "application/fhir+json"})
    assert r.status_code == 403
    # population reports need user/ or system/ scopes
    r = measured.get(Q + "&reportType=population", headers=bearer(issue(measured, "user/*.rs")))
    assert r.status_code == 200 and r.json()["type"] == "summary"
    # a scope without Measure read is not enough
    assert measured.get(Q + "&subject=Patient/p1", headers=bearer(issue(measured, "patient/Patient.rs", "p1"))
                        ).status_code == 403


def test_operation_table_policy() -> None:
    def allowed(op: str, scope: str, query: list[tuple[str, str]] | None = None, path: str | None = None) -> bool:
        req = policy.classify("GET", path or f"/fhir/Group/{{rid}}/${op}", {"rid": "g"}, query or [])
        try:
            policy.check(ScopeSet.parse(scope), req)
            return True
        except policy.Denied:
            return False

    assert allowed("export", "system/*.rs")
    assert allowed("export", "system/*.read")  # v1
    assert not allowed("export", "patient/*.rs")
    assert not allowed("export", "system/Patient.rs")
    assert allowed("export", "system/Patient.rs system/Observation.rs", [("_type", "Patient,Observation")])
    assert not allowed("export", "system/Patient.rs", [("_type", "Patient,Observation")])
    assert allowed("member-add", "user/Group.u") and not allowed("member-add", "patient/Group.cruds")
    assert not allowed("member-add", "system/Group.rs")
    assert allowed("submit-data", "system/*.cu system/MeasureReport.c", path="/fhir/Measure/$submit-data")
    assert not allowed("submit-data", "patient/*.cruds", path="/fhir/Measure/$submit-data")
    assert allowed("care-gaps", "patient/*.rs", path="/fhir/Measure/$care-gaps")
    assert not allowed("never-heard-of", "user/*.cruds") and allowed("never-heard-of", "system/*.cruds")


def test_audit_trail(measured: TestClient) -> None:
    t = bearer(issue(measured, "patient/*.rs", "p1", client_id="chart-app"))
    measured.get("/fhir/Patient/p1", headers=t)
    measured.get("/fhir/Patient/p2", headers=t)
    measured.get("/fhir/Patient")
    admin = bearer(issue(measured, "__admin"))
    assert measured.get("/auth/admin/audit", headers=t).status_code == 403
    bundle = measured.get("/auth/admin/audit?_count=10", headers=admin).json()
    events = [e["resource"] for e in bundle["entry"]]
    by_path = {e["entity"][0]["description"]: e for e in events}
    ok = by_path["GET /fhir/Patient/p1"]
    assert ok["resourceType"] == "AuditEvent" and ok["outcome"] == "0" and ok["action"] == "R"
    assert ok["agent"][0]["who"]["identifier"]["value"] == "chart-app"
    assert {"reference": "Patient/p1"} in [e["what"] for e in ok["entity"]]
    assert by_path["GET /fhir/Patient/p2"]["outcome"] == "4"  # refused (404)
    anon = by_path["GET /fhir/Patient"]
    assert anon["outcome"] == "4" and anon["agent"][0]["who"]["identifier"]["value"] == "anonymous"
    assert all("Bearer" not in json.dumps(e) for e in events)


def test_atr_groups_are_checked_per_group(auth_client: TestClient) -> None:
    from .conftest import register_backend

    rest = auth_client.app.state.rest
    ext = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"

    def group(gid: str, provider: str) -> dict[str, object]:
        return {"resourceType": "Group", "id": gid, "type": "person", "actual": True,
                "managingEntity": {"reference": "Organization/payer"},
                "member": [{"entity": {"reference": "Patient/p1"},
                            "extension": [{"url": ext, "valueReference": {"reference": provider}}]}]}

    with acting_as(SYSTEM):
        rest.update("Group", "g-a", group("g-a", "Organization/clinic-a"))
        rest.update("Group", "g-b", group("g-b", "Organization/clinic-b"))
    auth = auth_client.app.state.authority
    b = register_backend(auth_client, "system/*.rs")
    with auth.store.engine.begin() as conn:  # bind the client to clinic A (as `clients add --fhir-user` does)
        from sqlalchemy import update

        from gateway.auth.tables import CLIENT

        conn.execute(update(CLIENT).where(CLIENT.c.client_id == b.client_id).values(fhir_user="Organization/clinic-a"))
    t = bearer(b.token())
    r = auth_client.get("/fhir/Group", headers=t)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["g-a"]
    assert auth_client.get("/fhir/Group/g-a", headers=t).status_code == 200
    assert auth_client.get("/fhir/Group/g-b", headers=t).status_code == 404
    assert auth_client.get("/fhir/Group/g-b/_history", headers=t).status_code == 404
    # the payer's own system (no fhirUser) sees both
    payer = bearer(register_backend(auth_client, "system/*.rs").token())
    assert len(auth_client.get("/fhir/Group", headers=payer).json()["entry"]) == 2
    # the intended recipient: a list addressed to clinic C's NPI, where clinic C is neither managing
    # entity nor attributed provider, is visible to clinic C only
    npi = "http://hl7.org/fhir/sid/us-npi"
    g = group("g-c", "Organization/clinic-a")
    g["extension"] = [{"url": "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
                              "atr-intended-recipient-identifier-extension",
                       "valueIdentifier": {"system": npi, "value": "1234567893"}}]
    with acting_as(SYSTEM):
        rest.update("Organization", "clinic-c", {"resourceType": "Organization", "id": "clinic-c", "name": "C",
                                                 "identifier": [{"system": npi, "value": "1234567893"}]})
        rest.update("Organization", "clinic-d", {"resourceType": "Organization", "id": "clinic-d", "name": "D",
                                                 "identifier": [{"system": npi, "value": "1999999984"}]})
        rest.update("Group", "g-c", g)
    seen = {}
    for org in ("clinic-c", "clinic-d"):
        b2 = register_backend(auth_client, "system/*.rs")
        with auth.store.engine.begin() as conn:
            conn.execute(update(CLIENT).where(CLIENT.c.client_id == b2.client_id).values(fhir_user=f"Organization/{org}"))
        t2 = bearer(b2.token())
        seen[org] = ([e["resource"]["id"] for e in auth_client.get("/fhir/Group", headers=t2).json().get("entry", [])],
                     auth_client.get("/fhir/Group/g-c", headers=t2).status_code)
    assert seen == {"clinic-c": (["g-c"], 200), "clinic-d": ([], 404)}


def test_audit_rows_are_written_by_the_background_writer(auth_client: TestClient) -> None:
    """No request waits for the audit write: a writer thread stores queued rows within about a second."""
    import time

    from sqlalchemy import func, select

    from gateway.auth.tables import AUDIT

    audit = auth_client.app.state.authority.audit
    assert audit._thread is not None and audit._thread.is_alive()
    engine = audit.engine
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(AUDIT)).scalar_one()
    token = issue(auth_client, "system/Patient.rs")
    assert auth_client.get("/fhir/Patient/nobody", headers=bearer(token)).status_code == 404
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(AUDIT.c.path, AUDIT.c.status).where(AUDIT.c.pk > 0)
                                .order_by(AUDIT.c.pk.desc()).limit(1)).all()
            count = conn.execute(select(func.count()).select_from(AUDIT)).scalar_one()
        if count > before:
            break
        assert time.monotonic() < deadline, "the audit row was not written"
        time.sleep(0.1)
    assert rows[0] == ("/fhir/Patient/nobody", 404)


def _audit_paths(engine: object) -> list[tuple[str, int]]:
    from sqlalchemy import select

    from gateway.auth.tables import AUDIT

    with engine.connect() as conn:  # type: ignore[attr-defined]
        return [tuple(r) for r in conn.execute(select(AUDIT.c.path, AUDIT.c.status).order_by(AUDIT.c.pk))]


def test_audit_rows_go_to_their_own_file_beside_a_sqlite_database(tmp_path: Path) -> None:
    """On SQLite the audit rows live in <name>-audit.sqlite3, so that a stream of audit inserts does not
    slow reads of the data file; the audit export reads them from there."""
    from gateway.store.sql.store import SqlStore

    from .conftest import make_auth_client

    store = SqlStore(f"sqlite:///{tmp_path / 'data.sqlite3'}")
    try:
        with make_auth_client(store) as c:
            audit = c.app.state.authority.audit
            assert audit.engine is not store.engine
            assert c.get("/fhir/Patient/x", headers=bearer(issue(c, "system/Patient.rs"))).status_code == 404
            audit.flush()
            admin = bearer(issue(c, "__admin"))
            events = [e["resource"] for e in c.get("/auth/admin/audit?_count=10", headers=admin).json()["entry"]]
            assert "GET /fhir/Patient/x" in [e["entity"][0]["description"] for e in events]
        assert (tmp_path / "data-audit.sqlite3").exists()
        assert ("/fhir/Patient/x", 404) in _audit_paths(audit.engine)
        assert _audit_paths(store.engine) == []  # nothing in the data file
        # "same" keeps them in the gateway database
        with make_auth_client(store, audit_database_url="same") as c:
            assert c.app.state.authority.audit.engine is store.engine
            c.get("/fhir/Patient/y", headers=bearer(issue(c, "system/Patient.rs")))
        assert ("/fhir/Patient/y", 404) in _audit_paths(store.engine)
    finally:
        store.close()


def test_audit_rows_are_written_in_one_call_on_every_backend(store: object) -> None:
    """The writer hands a whole batch to the database in few statements (SQLite: one multi-row INSERT per 500 rows;
    PostgreSQL: one JSON array unpacked by jsonb_array_elements); every column arrives intact, including
    text needing escapes."""
    from gateway.auth.audit import AuditLog
    from gateway.auth.context import Grant  # noqa: F401 - the type record() reads attributes of
    from gateway.auth.policy import AccessRequest

    engine = store.engine  # type: ignore[attr-defined]
    log = AuditLog(engine)
    from gateway.auth.tables import AUDIT

    with engine.begin() as conn:
        conn.execute(AUDIT.delete())

    class G:
        client_id, subject, patient = "app-1", "Practitioner/dr 'o' \"x\"", "p-1"

    scope = {"method": "GET", "path": "/fhir/Observation", "query_string": "code=a%20b&x=ü".encode()}
    for status in (200, 403, 500):
        log.record(scope, G(), AccessRequest("search-type"), status)
    log.flush()
    events = log.events(patient="p-1", limit=10)
    assert [e["outcomeDesc"] for e in events] == ["HTTP 500", "HTTP 403", "HTTP 200"]
    e = events[-1]
    assert e["agent"][0]["who"]["identifier"]["value"] == "app-1"
    assert e["agent"][0]["altId"] == "Practitioner/dr 'o' \"x\""
    assert e["entity"][0]["description"] == "GET /fhir/Observation?code=a%20b&x=ü"
    assert e["recorded"].endswith("Z") and e["action"] == "R"


def test_x_provenance_needs_provenance_create_scope(auth_client: TestClient) -> None:
    """A create or update carrying X-Provenance also writes a Provenance: the token must allow that."""
    prov = json.dumps({"resourceType": "Provenance", "recorded": "2026-11-20T10:00:00Z",
                       "agent": [{"who": {"reference": "Organization/payer-1"}}]})
    body = {"resourceType": "Organization", "id": "o1", "name": "Clinic"}
    h = {"Content-Type": "application/fhir+json", "X-Provenance": prov}
    narrow = bearer(issue(auth_client, "system/Organization.cu"))
    r = auth_client.put("/fhir/Organization/o1", json=body, headers={**h, **narrow})
    assert r.status_code == 403 and "Provenance" in r.text
    assert auth_client.get("/fhir/Organization/o1", headers=bearer(issue(auth_client, "system/*.rs"))).status_code == 404
    assert auth_client.put("/fhir/Organization/o1", json=body,
                           headers={**{"Content-Type": "application/fhir+json"}, **narrow}).status_code == 201
    wide = bearer(issue(auth_client, "system/Organization.cu system/Provenance.c"))
    assert auth_client.put("/fhir/Organization/o1", json=body, headers={**h, **wide}).status_code == 200

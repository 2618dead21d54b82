"""Hostile search input on SQLite and PostgreSQL (issue 13, defects 18 and the search parts of 15): control
characters, too many parameters or values, overflowing numbers, runaway statements, and what reaches the
server log when the database fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from gateway.auth.context import SYSTEM, acting_as
from gateway.fhir.errors import FhirError
from gateway.logs import JsonFormatter
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.smart.conftest import bearer, issue, make_auth_client

SMITH = {"resourceType": "Patient", "id": "smith", "name": [{"family": "Smith", "given": ["Ann"]}],
         "identifier": [{"system": "urn:mrn", "value": "MRN-4711"}]}



def seed(c: TestClient, rtype: str, rid: str, resource: dict[str, Any]) -> None:
    """Store a resource as test set-up, on behalf of the system."""
    with acting_as(SYSTEM):
        c.app.state.rest.update(rtype, rid, resource)

@pytest.fixture()
def api(store: SqlStore) -> Iterator[TestClient]:
    with make_auth_client(store) as c:
        seed(c, "Patient", "smith", SMITH)
        yield c


def system(c: TestClient) -> dict[str, str]:
    return bearer(issue(c, "system/*.cruds"))


def outcome(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    if code:
        assert body["issue"][0]["code"] == code, body
    assert "Error" not in body["issue"][0].get("diagnostics", "")  # no exception class names
    return body


def smith_is_there(c: TestClient) -> None:
    s = c.app.state.store.read("Patient", "smith")
    assert s is not None and not s.deleted


def test_nul_in_a_conditional_delete_deletes_nothing(api: TestClient) -> None:
    t = system(api)
    body = outcome(api.delete("/fhir/Patient?name=Smith%00anything", headers=t), 400, "invalid")
    diagnostics = body["issue"][0]["diagnostics"]  # refused at the edge, or by the search parser
    assert "NUL" in diagnostics or "control characters" in diagnostics
    smith_is_there(api)
    outcome(api.delete("/fhir/Patient?identifier=urn:mrn|MRN-4711%00x", headers=t), 400)
    smith_is_there(api)


def test_nul_in_search_values_is_refused_and_the_connection_survives(api: TestClient) -> None:
    t = system(api)
    for q in ("_id=%00", "name=Smith%00", "identifier=%00|x", "_sort=name%00", "na%00me=x", "name=%01%1f"):
        outcome(api.get(f"/fhir/Patient?{q}", headers=t), 400, "invalid")
    outcome(api.post("/fhir/Patient/_search", data={"name": "Smith\x00x"}, headers=t), 400)
    outcome(api.get("/fhir/Patient/smith/Observation?code=%00", headers=t), 400)
    # the next searches on the same pool answer normally
    for _ in range(3):
        r = api.get("/fhir/Patient?name=Smith", headers=t)
        assert r.status_code == 200 and r.json()["total"] == 1
    # tab, line feed and carriage return are ordinary text in FHIR strings
    assert api.get("/fhir/Patient?name=Smith%09", headers=t).status_code == 200


@pytest.mark.parametrize("n", [2000, 5000])
def test_thousands_of_repeated_parameters_are_refused_quickly(api: TestClient, n: int) -> None:
    t = system(api)
    start = time.monotonic()
    body = outcome(api.get("/fhir/Patient?" + "&".join(["name=x"] * n), headers=t), 400, "too-costly")
    assert "at most 50 parameters" in body["issue"][0]["diagnostics"]
    outcome(api.delete("/fhir/Patient?" + "&".join(["name=Smith"] * n), headers=t), 400, "too-costly")
    assert time.monotonic() - start < 10
    smith_is_there(api)


def test_too_many_or_values_and_too_deep_chains_are_refused(api: TestClient) -> None:
    t = system(api)
    outcome(api.get("/fhir/Patient?name=" + ",".join(["x"] * 401), headers=t), 400, "too-costly")
    assert api.get("/fhir/Patient?name=" + ",".join(["Smith"] * 400), headers=t).json()["total"] == 1
    deep = "link:Patient." * 30 + "name"
    outcome(api.get(f"/fhir/Patient?{deep}=x", headers=t), 400, "too-costly")
    deep_has = "_has:Observation:subject:" * 30 + "code"
    outcome(api.get(f"/fhir/Patient?{deep_has}=x", headers=t), 400, "too-costly")


def test_the_bounds_are_configurable(store: SqlStore) -> None:
    store_timeout = store.search_timeout
    try:
        with make_client(store, search_max_params=3, search_max_values=4, search_max_chain=1) as c:
            seed(c, "Patient", "smith", SMITH)
            assert c.get("/fhir/Patient?name=Smith&name=Smi&given=Ann").json()["total"] == 1
            outcome(c.get("/fhir/Patient?name=Smith&name=Smi&given=Ann&_count=5"), 400, "too-costly")
            outcome(c.get("/fhir/Patient?name=a,b,c&given=d,e"), 400, "too-costly")
            outcome(c.get("/fhir/Patient?link:Patient.link:Patient.name=x"), 400, "too-costly")
    finally:
        store.search_timeout = store_timeout


def test_huge_offsets_and_versions_answer_cleanly(api: TestClient) -> None:
    t = system(api)
    outcome(api.get("/fhir/Patient?_offset=99999999999999999999", headers=t), 400, "invalid")
    outcome(api.get("/fhir/Patient/smith/_history?_offset=99999999999999999999", headers=t), 400)
    outcome(api.get("/fhir/Patient/_history?_offset=99999999999999999999", headers=t), 400)
    outcome(api.get("/fhir/Patient/smith/_history/99999999999999999999", headers=t), 404, "not-found")
    outcome(api.get("/fhir/Patient/smith/_history/0", headers=t), 404, "not-found")
    # the largest offset allowed is a plain empty page
    r = api.get("/fhir/Patient?_offset=2147483647", headers=t)
    assert r.status_code == 200 and r.json()["total"] == 1 and not r.json().get("entry")
    assert api.get("/fhir/Patient/smith/_history/1", headers=t).status_code == 200


class _Capture(logging.Handler):
    """Every record the server side logs, rendered as the server would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("httpx", "httpcore")):  # the test client's own request log
            self.lines.append(self.format(record))


@pytest.fixture()
def server_log() -> Iterator[_Capture]:
    cap = _Capture()
    root = logging.getLogger()
    root.addHandler(cap)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield cap
    root.removeHandler(cap)
    root.setLevel(old)


def test_a_runaway_search_is_stopped_and_logs_no_values(store: SqlStore, server_log: _Capture) -> None:
    """With the bounds lifted, 2,000 criteria ran for minutes on PostgreSQL and failed on SQLite with a 500:
    the time limit stops the statement, and both answer 400 too-costly without the values in the log."""
    store_timeout = store.search_timeout
    try:
        with make_client(store, search_max_params=5000, search_max_values=5000, search_timeout_seconds=1) as c:
            seed(c, "Patient", "smith", SMITH)
            query = urlencode([("name", f"Zed{i}MRN-4711") for i in range(2000)])
            start = time.monotonic()
            r = c.get(f"/fhir/Patient?{query}", headers={"X-Request-ID": "req-runaway"})
            elapsed = time.monotonic() - start
            outcome(r, 400, "too-costly")
            assert elapsed < 60
            assert r.headers["x-request-id"] == "req-runaway"
            # the same store answers the next search normally
            assert c.get("/fhir/Patient?name=Smith").json()["total"] == 1
    finally:
        store.search_timeout = store_timeout
    logged = "\n".join(server_log.lines)
    assert "MRN-4711" not in logged and "Zed1" not in logged
    if store.dialect == "postgresql":  # the planner ran into statement_timeout (SQLite cannot compile it)
        assert "search cancelled at its time limit" in logged and "57014" in logged
    assert any('"request_id":"req-runaway"' in line and "error_kind" in line for line in server_log.lines), logged


def test_a_runaway_conditional_delete_is_stopped_and_deletes_nothing(store: SqlStore) -> None:
    """The time limit also holds for the search inside a write transaction, which is then rolled back; the
    transaction's later statements run without it."""
    store_timeout = store.search_timeout
    try:
        with make_client(store, search_max_params=5000, search_max_values=5000, search_timeout_seconds=1) as c:
            seed(c, "Patient", "smith", SMITH)
            seed(c, "Patient", "other", {**SMITH, "id": "other", "name": [{"family": "Other"}]})
            query = urlencode([("name", "Smith")] * 2000)
            outcome(c.delete(f"/fhir/Patient?{query}"), 400, "too-costly")
            smith_is_there(c)
            # a conditional delete within the limit works, and its write is not under the search's limit
            assert c.delete("/fhir/Patient?name=Other").status_code == 200
            assert c.app.state.store.read("Patient", "other").deleted
            smith_is_there(c)
    finally:
        store.search_timeout = store_timeout


def test_sqlite_searches_are_interrupted_at_the_time_limit(tmp_path: Any) -> None:
    """SQLite has no statement timeout: a progress handler stops the search, and the connection is usable
    (and unlimited) afterwards."""
    from gateway.search.query import QueryParser

    s = SqlStore(f"sqlite:///{tmp_path / 'slow.sqlite3'}")
    try:
        with s.session() as tx:
            for i in range(1000):
                tx.write({"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"Fam{i}",
                                                                              "given": [f"G{i}"]}]}, "PUT")
        q = QueryParser().parse("Patient", [("name:contains", "a"), ("given:contains", "1"), ("_sort", "name")])
        expected = sum(1 for i in range(1000) if "1" in str(i))
        s.search_timeout = 1e-9
        with pytest.raises(FhirError) as info:
            s.search(q)
        assert info.value.status == 400 and info.value.code == "too-costly"
        s.search_timeout = 30
        assert s.search(q).total == expected
        s.search_timeout = 0  # off
        assert s.search(q).total == expected
    finally:
        s.close()


def test_database_errors_reach_the_log_without_their_values(tmp_path: Any) -> None:
    """A real driver error whose statement carried a patient's name and MRN: the formatted log line names
    the kind of error, not the values."""
    s = SqlStore(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    # built apart from the call: the traceback quotes the source line that raised
    stmt = text("SELECT * FROM no_such_table WHERE name = :n AND mrn = :m")
    values = {"n": "Smith", "m": "MRN-4711"}
    try:
        with s.engine.connect() as conn:
            conn.execute(stmt, values)
    except OperationalError:
        rec = logging.getLogger("gateway.api").makeRecord("gateway.api", logging.ERROR, __file__, 1,
                                                         "unhandled error", (), __import__("sys").exc_info())
        line = JsonFormatter().format(rec)
    finally:
        s.close()
    assert "MRN-4711" not in line and "Smith" not in line and "no_such_table" not in line
    assert "OperationalError" in line and "message withheld" in line
    # other errors keep their message: they carry no statement parameters
    try:
        raise ValueError("plain problem")
    except ValueError:
        rec = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "m", (), __import__("sys").exc_info())
    assert "plain problem" in JsonFormatter().format(rec)

"""An asynchronous ``$care-gaps`` job (a row of the job core, answered on any instance) belongs to the client and
user that started it: another client — with every scope the operation needs — gets 403 on its status, its
output and its deletion, on SQLite and PostgreSQL. (Before the job core, any caller could read any job.)"""

from __future__ import annotations

from gateway.store.sql.jobs import Job, JobStore
from gateway.store.sql.store import SqlStore
from tests.conftest import wipe
from tests.smart.conftest import bearer, make_auth_client


def test_a_care_gaps_job_answers_only_its_owner(store: SqlStore) -> None:
    wipe(store)
    JobStore(store).create(Job("cg-owned", "queued", "owner-app", "http://x/fhir/Measure/$care-gaps", {},
                               "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", subject="owner-app",
                               kind="care-gaps"))
    with make_auth_client(store, export_worker=False) as client:  # no worker: the job stays queued
        authority = client.app.state.authority  # type: ignore[attr-defined]

        def token(client_id: str) -> dict[str, str]:
            return bearer(authority.tokens.issue_access(client_id, "system/*.rs", 300, f"f-{client_id}",
                                                        client_id, {}).token)

        path = "/fhir/Measure/$care-gaps-status/cg-owned"
        stranger, owner = token("other-app"), token("owner-app")
        assert client.get(path, headers=stranger).status_code == 403
        assert client.get(f"{path}/output", headers=stranger).status_code == 403
        assert client.delete(path, headers=stranger).status_code == 403
        assert client.get(path, headers=owner).status_code == 202
        assert client.get("/fhir/Measure/$care-gaps-status/no-such", headers=owner).status_code == 404
        assert client.delete(path, headers=owner).status_code == 202
        assert client.get(path, headers=owner).status_code == 404
    wipe(store)

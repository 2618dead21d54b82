"""The authorization server's sign-in and consent flow (issue 13, defects 7, 11 and 12): a patient user keeps
their own patient whatever the launch says, a consent ticket is good once and for its own request only, and
RelatedPerson and Person users are confined to the patient they act for, never treated as clinicians."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.auth.users import UserError, add_user
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, make_auth_client

from .authsrv_support import (
    PASSWORD,
    App,
    exchange,
    fresh_client,
    hidden,
    put,
    redirected,
    register_app,
    sign_in,
)


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with fresh_client(store) as c:
        for pid in ("pa", "pb"):
            put(c, {"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper()}]})
        yield c


@pytest.fixture()
def app(client: TestClient) -> App:
    engine = client.app.state.store.engine
    add_user(engine, "doc", PASSWORD, "Practitioner/doc")
    add_user(engine, "pat", PASSWORD, "Patient/pa")
    return register_app(client)


def consent_and_allow(app: App, consent_html: str, **extra: str) -> object:
    return app.client.post("/auth/authorize", data={**hidden(consent_html), "decision": "allow", **extra},
                           follow_redirects=False)


# -- defect 7: a launch for another patient does not override a patient user's own patient ---------------
def test_patient_user_with_a_launch_for_another_patient_is_refused(app: App) -> None:
    auth = app.client.app.state.authority
    launch = auth.server.create_launch(app.client_id, {"patient": "pb"})
    params = app.params(scope="launch patient/*.rs openid fhirUser", launch=launch)
    r = sign_in(app, params, "pat")
    back = redirected(r)
    assert back["error"] == "access_denied" and "code" not in back
    assert "another patient" in back["error_description"] and back["state"] == params["state"]


def test_patient_user_with_a_launch_for_their_own_patient_gets_it(app: App) -> None:
    auth = app.client.app.state.authority
    launch = auth.server.create_launch(app.client_id, {"patient": "pa", "encounter": "e1"})
    r = sign_in(app, app.params(scope="launch patient/*.rs", launch=launch), "pat")
    assert r.status_code == 200 and "Allow access?" in r.text
    tok = exchange(app, redirected(consent_and_allow(app, r.text))["code"]).json()
    assert tok["patient"] == "pa" and tok["encounter"] == "e1"


# -- defect 11: the consent ticket is single-use and bound to its request ---------------------------------
def test_consent_ticket_cannot_be_replayed(app: App) -> None:
    consent = sign_in(app, app.params(), "doc")
    first = consent_and_allow(app, consent.text, patient="pa")
    assert "code" in redirected(first)
    again = consent_and_allow(app, consent.text, patient="pb")
    assert again.status_code == 401 and "location" not in again.headers
    assert "sign in again" in again.text


@pytest.mark.parametrize("change", [
    {"scope": "launch/patient patient/*.rs user/*.rs openid fhirUser"},  # wider scope
    {"state": "another-state"},
    {"code_challenge": "A" * 43},
    {"redirect_uri": "https://app.example.org/other"},
])
def test_consent_ticket_is_bound_to_its_authorization_request(app: App, change: dict[str, str]) -> None:
    consent = sign_in(app, app.params(scope="launch/patient patient/Observation.rs"), "doc")
    form = {**hidden(consent.text), **change, "decision": "allow", "patient": "pa"}
    r = app.client.post("/auth/authorize", data=form, follow_redirects=False)
    assert "code=" not in r.headers.get("location", "")
    assert r.status_code in (400, 401), r.text


def test_consent_ticket_is_bound_to_the_launch(app: App) -> None:
    auth = app.client.app.state.authority
    consent = sign_in(app, app.params(), "doc")
    launch = auth.server.create_launch(app.client_id, {"patient": "pb"})
    r = app.client.post("/auth/authorize", data={**hidden(consent.text), "launch": launch, "decision": "allow"},
                        follow_redirects=False)
    assert r.status_code == 401 and "code=" not in r.headers.get("location", "")


def test_a_spent_ticket_is_refused_by_another_process(store: SqlStore) -> None:
    """Two apps on one database stand for two worker processes: the spent ticket is in the database."""
    with fresh_client(store) as one:
        put(one, {"resourceType": "Patient", "id": "pa"})
        add_user(one.app.state.store.engine, "doc", PASSWORD, "Practitioner/doc")
        app = register_app(one)
        consent = sign_in(app, app.params(), "doc")
        assert "code" in redirected(consent_and_allow(app, consent.text, patient="pa"))
        with make_auth_client(store) as two:
            r = two.post("/auth/authorize", data={**hidden(consent.text), "decision": "allow", "patient": "pa"},
                         follow_redirects=False)
            assert r.status_code == 401 and "code=" not in r.headers.get("location", "")


# -- defect 12: RelatedPerson and Person users are confined to their patient ------------------------------
def _signed_in_token(app: App, user: str) -> dict[str, object]:
    consent = sign_in(app, app.params(scope="launch/patient patient/*.rs user/*.rs openid fhirUser"), user)
    assert consent.status_code == 200 and "Allow access?" in consent.text, consent.text
    assert "<fieldset id=patients>" not in consent.text  # no patient picker: the user's own patient is the only choice
    r = exchange(app, redirected(consent_and_allow(app, consent.text, patient="pb"))["code"])
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("fhir_user,resource", [
    ("RelatedPerson/rp1", {"resourceType": "RelatedPerson", "id": "rp1", "patient": {"reference": "Patient/pa"}}),
    ("Person/per1", {"resourceType": "Person", "id": "per1",
                     "link": [{"target": {"reference": "Patient/pa"}}, {"target": {"reference": "Person/x"}}]}),
])
def test_related_person_and_person_users_see_only_their_patient(app: App, fhir_user: str,
                                                                resource: dict[str, object]) -> None:
    put(app.client, resource)
    add_user(app.client.app.state.store.engine, "carer", PASSWORD, fhir_user)
    tok = _signed_in_token(app, "carer")
    assert tok["patient"] == "pa"
    assert "user/" not in str(tok["scope"]) and "patient/*.rs" in str(tok["scope"])
    h = bearer(str(tok["access_token"]))
    assert app.client.get("/fhir/Patient/pa", headers=h).status_code == 200
    assert app.client.get("/fhir/Patient/pb", headers=h).status_code in (403, 404)
    ids = {e["resource"]["id"] for e in app.client.get("/fhir/Patient", headers=h).json().get("entry", [])}
    assert ids == {"pa"}


def test_practitioner_user_keeps_user_level_access(app: App) -> None:
    consent = sign_in(app, app.params(scope="launch/patient patient/*.rs user/*.rs"), "doc")
    assert "<fieldset id=patients>" in consent.text
    tok = exchange(app, redirected(consent_and_allow(app, consent.text, patient="pb"))["code"]).json()
    assert tok["patient"] == "pb" and "user/*.rs" in tok["scope"]


@pytest.mark.parametrize("fhir_user,resource", [
    ("RelatedPerson/rp2", None),  # the resource does not exist
    ("RelatedPerson/rp3", {"resourceType": "RelatedPerson", "id": "rp3", "patient": {"display": "someone"}}),
    ("Person/per2", {"resourceType": "Person", "id": "per2", "link": [{"target": {"reference": "Patient/pa"}},
                                                                      {"target": {"reference": "Patient/pb"}}]}),
    ("Person/per3", {"resourceType": "Person", "id": "per3", "active": False,
                     "link": [{"target": {"reference": "Patient/pa"}}]}),
])
def test_patient_bound_user_without_one_patient_is_refused(app: App, fhir_user: str,
                                                           resource: dict[str, object] | None) -> None:
    if resource is not None:
        put(app.client, resource)
    add_user(app.client.app.state.store.engine, "lost", PASSWORD, fhir_user)
    back = redirected(sign_in(app, app.params(scope="launch/patient patient/*.rs user/*.rs"), "lost"))
    assert back["error"] == "access_denied" and "code" not in back
    assert "no patient record" in back["error_description"]


def test_a_user_needs_a_fhir_identity(store: SqlStore) -> None:
    with pytest.raises(UserError):
        add_user(store.engine, "nobody", PASSWORD, None)
    with pytest.raises(UserError):
        add_user(store.engine, "odd", PASSWORD, "Organization/o1")


def test_refresh_stops_when_a_related_person_is_no_longer_linked(app: App) -> None:
    put(app.client, {"resourceType": "RelatedPerson", "id": "rp9", "patient": {"reference": "Patient/pa"}})
    add_user(app.client.app.state.store.engine, "carer", PASSWORD, "RelatedPerson/rp9")
    consent = sign_in(app, app.params(scope="launch/patient patient/*.rs offline_access"), "carer")
    tok = exchange(app, redirected(consent_and_allow(app, consent.text))["code"]).json()
    assert tok["patient"] == "pa" and tok["refresh_token"]
    refresh = {"grant_type": "refresh_token", "client_id": app.client_id}
    r = app.client.post("/auth/token", data={**refresh, "refresh_token": tok["refresh_token"]})
    assert r.status_code == 200, r.text
    put(app.client, {"resourceType": "RelatedPerson", "id": "rp9", "patient": {"reference": "Patient/pb"}})
    again = app.client.post("/auth/token", data={**refresh, "refresh_token": r.json()["refresh_token"]})
    assert again.status_code == 400 and "access_token" not in again.json()

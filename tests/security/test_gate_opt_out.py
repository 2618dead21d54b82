"""A member who opted out of Provider Access (CMS-0057-F, PDex) is out of a provider's reach on every path the
store gate serves, not only in Provider Access exports: against a live ``fhir-gateway serve`` on SQLite and
PostgreSQL, with tokens from its token endpoint (tests/security/test_gate_attribution.py's helpers).

The payer's records: a Provider Access Group (code PdexMultiMemberMatchResultCS#match, the provider its
intended recipient, as ``$provider-member-match`` makes it) with members q1 .. q5, and the provider's plain ATR
list with q4 only. q2 opted out by a Consent, q3 by the configured list (``GATEWAY_PROVIDER_ACCESS_OPT_OUT``),
q4 by a Consent but is also on the ATR list (the opt-out of Provider Access does not reach it), q5 opts out
and back in while the provider's token lives. The records of q2 and q3 carry the markers ``OPTOUTQ2`` and
``OPTOUTQ3``, so any leak shows in the raw text of an answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.auth.opt_out import API_PURPOSE_CS, MATCH_RESULT_CS
from tests.security.test_gate_attribution import (
    NPI,
    RECIPIENT,
    World,
    _database,
    assert_hidden,
    assert_missing,
    backend_token,
    export,
    exported_ids,
    ids,
    list_a,
    member,
    patient_data,
)
from tests.test_live_server import start_server, stop_server

pytestmark = pytest.mark.live

HIDDEN = ("OPTOUTQ2", "OPTOUTQ3")
MARKERS = {"q1": "SEENQ1", "q2": "OPTOUTQ2", "q3": "OPTOUTQ3", "q4": "SEENQ4", "q5": "SEENQ5"}


def opt_out_consent(cid: str, pid: str, kind: str = "deny", status: str = "active",
                    when: str = "2025-01-01T00:00:00Z") -> dict[str, Any]:
    """A PDex Provider Access Consent: ``deny`` opts the member out, ``permit`` revokes an opt-out."""
    return {"resourceType": "Consent", "id": cid, "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": API_PURPOSE_CS, "code": "provider-access"}]}],
            "patient": {"reference": f"Patient/{pid}"}, "dateTime": when,
            "provision": {"type": kind, "period": {"start": "2025-01-01"}}}


def records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "payer", "name": "Payer"},
        {"resourceType": "Organization", "id": "clinic-a", "name": "Clinic A",
         "identifier": [{"system": NPI, "value": "1234567893"}]},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Shared"}]},
    ]
    for pid, marker in MARKERS.items():
        out += patient_data(pid, marker)
    out.append({"resourceType": "Group", "id": "pa-a", "type": "person", "actual": True,
                "code": {"coding": [{"system": MATCH_RESULT_CS, "code": "match"}]},
                "name": "Provider Access: members matched for Clinic A",
                "managingEntity": {"reference": "Organization/payer"},
                "extension": [{"url": RECIPIENT, "valueIdentifier": {"system": NPI, "value": "1234567893"}}],
                "member": [member(p) for p in MARKERS]})
    atr = list_a(member("q4"))
    atr["id"] = "atr-a"
    out.append(atr)
    out += [opt_out_consent("optout-q2", "q2"), opt_out_consent("optout-q4", "q4")]
    return out


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp(f"opt-out-{request.param}")
    with _database(request.param, workdir) as database:
        server = start_server(database, workdir, demo=False, auth="smart", timeout=120, env={
            "GATEWAY_EXPORT_DIR": str(workdir / "export"), "GATEWAY_EXPORT_POLL_MIN_SECONDS": "0",
            "GATEWAY_SUBSCRIPTION_NOTIFIER": "false", "GATEWAY_PROVIDER_ACCESS_OPT_OUT": "Patient/q3"})
        w = World(server, database, workdir, {})
        try:
            w.load(records())
            w.tokens["provider"] = backend_token(w, "clinic-a-ehr", "Organization/clinic-a", "system/*.rs")
            w.tokens["payer"] = backend_token(w, "payer-system", None, "system/*.cruds")
            yield w
        finally:
            stop_server(server)


def no_leak(r: httpx.Response) -> None:
    assert_hidden(r, HIDDEN)


def not_found(r: httpx.Response) -> None:
    assert_missing(r, HIDDEN)


def test_opted_out_members_read_as_missing(world: World) -> None:
    for pid in ("q2", "q3"):  # by Consent; by the configured list
        for path in (f"Patient/{pid}", f"Patient/{pid}/_history/1", f"Observation/obs-{pid}",
                     f"Condition/cond-{pid}", f"Coverage/cov-{pid}"):
            not_found(world.get("provider", path))
        assert world.get("payer", f"Patient/{pid}").status_code == 200  # the payer's own client is not narrowed
    for pid in ("q1", "q4", "q5"):  # q4 opted out but is on the provider's ATR list too
        assert world.get("provider", f"Patient/{pid}").status_code == 200, pid
        assert world.get("provider", f"Observation/obs-{pid}").status_code == 200, pid


def test_searches_leave_out_opted_out_members(world: World) -> None:
    r = world.get("provider", "Observation?_count=100")
    no_leak(r)
    assert ids(r) == {"Observation/obs-q1", "Observation/obs-q4", "Observation/obs-q5"}
    assert r.json()["total"] == 3
    assert ids(world.get("provider", "Observation?subject=Patient/q2")) == set()
    assert ids(world.get("provider", "Patient?_count=100")) == {"Patient/q1", "Patient/q4", "Patient/q5"}
    r = world.get("provider", "Patient?_revinclude=Condition:subject&_count=100")
    no_leak(r)
    assert "Condition/cond-q2" not in ids(r) and "Condition/cond-q1" in ids(r)
    assert world.get("payer", "Observation?_summary=count").json()["total"] == 5


def test_everything_of_an_opted_out_member_is_404(world: World) -> None:
    for pid in ("q2", "q3"):
        not_found(world.get("provider", f"Patient/{pid}/$everything"))
    r = world.get("provider", "Patient/q1/$everything")
    assert "Observation/obs-q1" in ids(r)
    assert "Observation/obs-q4" in ids(world.get("provider", "Patient/q4/$everything"))
    r = world.get("provider", "Patient/$everything?_count=100")
    no_leak(r)
    assert {i for i in ids(r) if i.startswith("Patient/")} == {"Patient/q1", "Patient/q4", "Patient/q5"}


def test_exports_hold_no_opted_out_member(world: World) -> None:
    asynch = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    for path in ("Patient/$export", "$export", "Group/pa-a/$export"):
        kick = httpx.get(f"{world.fhir}/{path}", headers={**world.headers("provider"), **asynch}, timeout=60)
        _, text = export(world, "provider", kick)
        got = exported_ids(text)
        assert not [m for m in HIDDEN if m in text], (path, text[:2000])
        assert {"Patient/q1", "Observation/obs-q1"} <= got, (path, got)
        assert not {i for i in got if i.split("/")[1].endswith(("q2", "q3"))}, (path, got)
        # q4 comes with the provider's ATR list; the export of the Provider Access Group itself is a Provider
        # Access export, which leaves out every member who opted out (bulk/provider_access.py)
        assert ({"Patient/q4", "Observation/obs-q4"} <= got) == (path != "Group/pa-a/$export"), (path, got)
    kick = httpx.get(f"{world.fhir}/Patient/$export?_type=Patient", headers={**world.headers("payer"), **asynch},
                     timeout=60)
    _, text = export(world, "payer", kick)
    assert "OPTOUTQ2" in text and "OPTOUTQ3" in text  # the assertions above can fail


def _hidden(world: World, pid: str) -> bool:
    """True when ``pid`` is out of the provider's reach on a read and a search alike (never one of the two)."""
    read = world.get("provider", f"Patient/{pid}").status_code
    searched = f"Observation/obs-{pid}" in ids(world.get("provider", "Observation?_count=100"))
    assert (read == 404) != searched, (pid, read, searched)
    return read == 404


def test_an_opt_out_takes_effect_at_the_next_request_and_its_revocation_too(world: World) -> None:
    """Runs last in the module: it changes q5's Consents. The provider's token (and its cached attributed
    set) was issued before; the Consents are written through this server, so the next request sees them."""
    assert not _hidden(world, "q5")
    r = httpx.put(f"{world.fhir}/Consent/optout-q5", json=opt_out_consent("optout-q5", "q5"),
                  headers=world.headers("payer"), timeout=60)
    assert r.status_code in (200, 201), r.text
    assert _hidden(world, "q5")
    not_found(world.get("provider", "Patient/q5/$everything"))
    # revoked by setting the Consent inactive: visible again
    r = httpx.put(f"{world.fhir}/Consent/optout-q5", json=opt_out_consent("optout-q5", "q5", status="inactive"),
                  headers=world.headers("payer"), timeout=60)
    assert r.status_code == 200, r.text
    assert not _hidden(world, "q5")
    # opted out again, then the Consent deleted: visible again
    r = httpx.put(f"{world.fhir}/Consent/optout-q5", json=opt_out_consent("optout-q5", "q5"),
                  headers=world.headers("payer"), timeout=60)
    assert r.status_code == 200, r.text
    assert _hidden(world, "q5")
    r = httpx.delete(f"{world.fhir}/Consent/optout-q5", headers=world.headers("payer"), timeout=60)
    assert r.status_code in (200, 204), r.text
    assert not _hidden(world, "q5")
    # a later permit Consent revokes q2's opt-out (the most recent decisive Consent wins)
    assert _hidden(world, "q2")
    permit = opt_out_consent("optin-q2", "q2", kind="permit", when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    r = httpx.put(f"{world.fhir}/Consent/optin-q2", json=permit, headers=world.headers("payer"), timeout=60)
    assert r.status_code == 201, r.text
    assert not _hidden(world, "q2")
    # the configured list stays in force whatever the Consents say
    r = httpx.put(f"{world.fhir}/Consent/optin-q3", json={**permit, "id": "optin-q3",
                                                         "patient": {"reference": "Patient/q3"}},
                  headers=world.headers("payer"), timeout=60)
    assert r.status_code == 201, r.text
    assert _hidden(world, "q3")

"""The console under `--auth off` (what `make run` starts): no sign-in, the header says so, and the pages work
on the open API, in process: an attribution list is listed, shown and changed with `$member-remove`."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.demo.attribution import synthetic_population


def test_the_console_works_without_sign_in_when_authorization_is_off(client: TestClient) -> None:
    resources = list(synthetic_population(3, group_id="off-list"))
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                        for r in resources]}
    assert client.post("/fhir", json=bundle).status_code == 200
    lists = client.get("/console/attribution")
    assert lists.status_code == 200 and "Authorization is off: no sign-in" in lists.text
    assert "/console/attribution/off-list" in lists.text and "draft" in lists.text
    page = client.get("/console/attribution/off-list")
    assert page.status_code == 200 and "Patient/m1" in page.text
    removed = client.post("/console/attribution/off-list/remove",
                          data={"patient": "Patient/m1", "provider": "Practitioner/atr-pr-0"}, follow_redirects=False)
    assert removed.status_code == 303 and "done=" in removed.headers["location"], removed.text
    group = client.get("/fhir/Group/off-list").json()
    assert group["meta"]["versionId"] == "2"
    assert [m.get("inactive", False) for m in group["member"] if m["entity"]["reference"] == "Patient/m1"] == [True]
    after = client.get("/console/attribution/off-list")
    assert "Changes from version 1 to version 2" in after.text and "made inactive" in after.text

"""Core RESTful interactions through HTTP on both backends: versions, conditional requests, Prefer, formats."""

from __future__ import annotations

from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Rivera", ident: str = "A-1", **extra: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": ident}],
            "name": [{"family": family, "given": ["Ana"]}], "gender": "female", "birthDate": "1961-04-02", **extra}


def create(client: TestClient, body: dict, **headers: str) -> tuple[str, dict]:
    r = client.post(f"/fhir/{body['resourceType']}", json=body, headers={**JSON, **headers})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()


def test_create_read_headers(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers=JSON)
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert body["meta"]["versionId"] == "1"
    g = client.get(f"/fhir/Patient/{pid}")
    assert g.status_code == 200
    assert g.headers["etag"] == 'W/"1"'
    assert g.headers["last-modified"].endswith("GMT")
    assert g.json()["name"][0]["family"] == "Rivera"
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_conditional_read_compares_etags_weakly_and_honours_if_modified_since(client: TestClient) -> None:
    """R4 http.html#cread: 304 whenever the client's version is current, whichever ETag form it sends."""
    pid, _ = create(client, patient())
    url = f"/fhir/Patient/{pid}"
    for tag in ('"1"', 'W/"1"', '"7", W/"1"', "*"):
        r = client.get(url, headers={"If-None-Match": tag})
        assert r.status_code == 304, tag
        assert r.headers["etag"] == 'W/"1"' and not r.content
    assert client.get(url, headers={"If-None-Match": '"2"'}).status_code == 200
    modified = client.get(url).headers["last-modified"]
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "not a date"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2)
    assert client.get(url, headers={"If-None-Match": '"9"', "If-Modified-Since": modified}).status_code == 200
    client.put(url, json={**patient(), "id": pid}, headers=JSON)
    assert client.get(url, headers={"If-None-Match": '"1"'}).status_code == 200


def test_create_ignores_client_id(client: TestClient) -> None:
    pid, body = create(client, patient(id="chosen"))
    assert pid != "chosen"


def test_update_versions_and_vread(client: TestClient) -> None:
    pid, body = create(client, patient())
    body["gender"] = "other"
    r = client.put(f"/fhir/Patient/{pid}", json=body, headers=JSON)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{pid}/_history/2").json()["gender"] == "other"
    assert client.get(f"/fhir/Patient/{pid}/_history/3").status_code == 404


def test_create_on_update(client: TestClient) -> None:
    r = client.put("/fhir/Patient/p-new", json={**patient(), "id": "p-new"}, headers=JSON)
    assert r.status_code == 201
    assert r.headers["location"].endswith("/Patient/p-new/_history/1")


def test_if_match(client: TestClient) -> None:
    pid, body = create(client, patient())
    stale = client.put(f"/fhir/Patient/{pid}", json=body, headers={**JSON, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"
    ok = client.put(f"/fhir/Patient/{pid}", json=body, headers={**JSON, "If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    assert client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": 'W/"1"'}).status_code == 412


def test_delete_soft_with_history(client: TestClient) -> None:
    pid, _ = create(client, patient())
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 200
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE" and "resource" not in hist["entry"][0]
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 410
    assert client.get("/fhir/Patient").json()["total"] == 0
    # a deleted resource can be brought back by update
    r = client.put(f"/fhir/Patient/{pid}", json={**patient(), "id": pid}, headers=JSON)
    assert r.status_code == 201 and r.headers["etag"] == 'W/"3"'


def test_conditional_create(client: TestClient) -> None:
    pid, _ = create(client, patient(ident="X-9"))
    again = client.post("/fhir/Patient", json=patient(ident="X-9"), headers={**JSON, "If-None-Exist": "identifier=urn:mrn|X-9"})
    assert again.status_code == 200 and again.json()["id"] == pid
    other = client.post("/fhir/Patient", json=patient(ident="X-10"), headers={**JSON, "If-None-Exist": "identifier=urn:mrn|X-10"})
    assert other.status_code == 201
    create(client, patient(ident="DUP"))
    create(client, patient(ident="DUP"))
    multi = client.post("/fhir/Patient", json=patient(ident="DUP"), headers={**JSON, "If-None-Exist": "identifier=urn:mrn|DUP"})
    assert multi.status_code == 412
    assert client.get("/fhir/Patient?identifier=urn:mrn|DUP").json()["total"] == 2


def test_conditional_create_criteria_in_query_string(client: TestClient) -> None:
    """fhirpy's get_or_create sends its criteria as the POST's query string: they act as If-None-Exist, so a
    second call finds the first resource instead of creating a duplicate."""
    first = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=patient(ident="Q-1"), headers=JSON)
    assert first.status_code == 201, first.text
    again = client.post("/fhir/Patient?identifier=urn:mrn|Q-1&_format=json", json=patient(ident="Q-1"),
                        headers=JSON)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.get("/fhir/Patient?identifier=urn:mrn|Q-1").json()["total"] == 1
    both = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=patient(ident="Q-1"),
                       headers={**JSON, "If-None-Exist": "identifier=urn:mrn|Q-2"})
    assert both.status_code == 400 and both.json()["resourceType"] == "OperationOutcome"
    same = client.post("/fhir/Patient?identifier=urn:mrn|Q-1", json=patient(ident="Q-1"),
                       headers={**JSON, "If-None-Exist": "identifier=urn:mrn|Q-1"})
    assert same.status_code == 200
    # plain format parameters are no criteria
    assert client.post("/fhir/Patient?_pretty=true", json=patient(ident="Q-1"), headers=JSON).status_code == 201


def test_conditional_update_and_delete(client: TestClient) -> None:
    r = client.put("/fhir/Patient?identifier=urn:mrn|C-1", json=patient(ident="C-1"), headers=JSON)
    assert r.status_code == 201
    pid = r.json()["id"]
    r2 = client.put("/fhir/Patient?identifier=urn:mrn|C-1", json=patient(family="Changed", ident="C-1"), headers=JSON)
    assert r2.status_code == 200 and r2.json()["id"] == pid and r2.json()["meta"]["versionId"] == "2"
    create(client, patient(ident="C-2"))
    create(client, patient(ident="C-2"))
    assert client.put("/fhir/Patient?identifier=urn:mrn|C-2", json=patient(ident="C-2"), headers=JSON).status_code == 412
    assert client.delete("/fhir/Patient?identifier=urn:mrn|C-2").status_code == 412
    assert client.delete("/fhir/Patient?identifier=urn:mrn|C-1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_prefer_return(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers={**JSON, "Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and "location" in r.headers
    r = client.post("/fhir/Patient", json=patient(), headers={**JSON, "Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient", json=patient(), headers={**JSON, "Prefer": "return=representation"})
    assert r.json()["resourceType"] == "Patient"


def test_formats(client: TestClient) -> None:
    pid, _ = create(client, patient())
    assert client.get(f"/fhir/Patient/{pid}?_format=json").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/json"}).status_code == 200
    pretty = client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    for accept in ("application/fhir+xml", "application/xml"):  # XML: tests/test_xml_http.py
        r = client.get(f"/fhir/Patient/{pid}", headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+xml")
    r = client.get(f"/fhir/Patient/{pid}", headers={"Accept": "image/png"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}?_format=html").status_code == 406
    r = client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_history_levels_since_and_paging(client: TestClient) -> None:
    ids = [create(client, patient(ident=f"H-{i}"))[0] for i in range(5)]
    create(client, {"resourceType": "Organization", "name": "Acme"})
    t = client.get("/fhir/Patient/_history?_count=2")
    body = t.json()
    assert body["type"] == "history" and body["total"] == 5 and len(body["entry"]) == 2
    nxt = next(link["url"] for link in body["link"] if link["relation"] == "next")
    page2 = client.get(nxt.replace("http://testserver", "")).json()
    assert len(page2["entry"]) == 2
    assert {e["resource"]["id"] for e in page2["entry"]}.isdisjoint({e["resource"]["id"] for e in body["entry"]})
    assert client.get("/fhir/_history").json()["total"] == 6
    assert client.get("/fhir/_history?_since=2999-01-01").json()["total"] == 0
    assert client.get("/fhir/_history?_since=2000-01-01T00:00:00Z").json()["total"] == 6
    assert client.get(f"/fhir/Patient/{ids[0]}/_history").json()["total"] == 1
    assert client.get("/fhir/Patient/unknown/_history").status_code == 404


def test_read_summary_and_elements(client: TestClient) -> None:
    pid, _ = create(client, patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ana</div>"}))
    r = client.get(f"/fhir/Patient/{pid}?_elements=name").json()
    assert set(r) == {"resourceType", "id", "meta", "name"}
    assert any(t["code"] == "SUBSETTED" for t in r["meta"]["tag"])
    s = client.get(f"/fhir/Patient/{pid}?_summary=true").json()
    assert "name" in s and "text" not in s
    txt = client.get(f"/fhir/Patient/{pid}?_summary=text").json()
    assert "text" in txt and "name" not in txt


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["database"] is True
    assert client.get("/docs").status_code == 200
    assert "x-request-id" in client.get("/healthz").headers


def test_json_patch(client: TestClient) -> None:
    pid, _ = create(client, patient())
    ops = [{"op": "replace", "path": "/gender", "value": "other"}, {"op": "add", "path": "/active", "value": True}]
    hdr = {"Content-Type": "application/json-patch+json"}
    r = client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**hdr, "If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["gender"] == "other" and r.json()["active"] is True
    assert r.headers["etag"] == 'W/"2"'
    assert client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**hdr, "If-Match": 'W/"1"'}).status_code == 412
    bad = client.patch(f"/fhir/Patient/{pid}", json=[{"op": "replace", "path": "/gender", "value": 7}], headers=hdr)
    assert bad.status_code == 400
    missing = client.patch(f"/fhir/Patient/{pid}", json=[{"op": "remove", "path": "/nothing"}], headers=hdr)
    assert missing.status_code == 422
    assert client.patch(f"/fhir/Patient/{pid}", json=ops, headers=JSON).status_code == 415
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "2"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["entry"][0]["request"]["method"] == "PATCH"

"""Hostile FHIR XML bodies: external entities (XXE), entity expansion bombs, DTDs and deep nesting are refused
with a 400 OperationOutcome before any route runs, leak nothing and change nothing in the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.fhir.errors import BadRequest
from gateway.fhir.xml import MAX_XML_DEPTH, from_xml
from gateway.store.sql.store import SqlStore
from tests.security.hostile_corpus import store_digest

SECRET = "xml-attack-secret-7f3a"


def _bodies(secret_file: Path) -> dict[str, bytes]:
    laughs = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))  # 10**9 lols
    return {
        "xxe-file": (f"<?xml version='1.0'?><!DOCTYPE Patient [<!ENTITY x SYSTEM 'file://{secret_file}'>]>"
                     "<Patient xmlns='http://hl7.org/fhir'><name><family value='&x;'/></name></Patient>").encode(),
        "xxe-parameter": (f"<!DOCTYPE Patient [<!ENTITY % p SYSTEM 'file://{secret_file}'> %p;]>"
                          "<Patient xmlns='http://hl7.org/fhir'/>").encode(),
        "external-dtd": b"<!DOCTYPE Patient SYSTEM 'http://127.0.0.1:9/evil.dtd'><Patient xmlns='http://hl7.org/fhir'/>",
        "billion-laughs": ("<?xml version='1.0'?><!DOCTYPE Patient [<!ENTITY l0 'lol'>" + laughs + "]>"
                           "<Patient xmlns='http://hl7.org/fhir'><name><family value='&l9;'/></name></Patient>"
                           ).encode(),
        "plain-dtd": b"<!DOCTYPE Patient><Patient xmlns='http://hl7.org/fhir'/>",
        "deep-extension": (b"<Patient xmlns='http://hl7.org/fhir'>" + b"<extension url='u'>" * 5000
                           + b"</extension>" * 5000 + b"</Patient>"),
        "deep-contained": (b"<Patient xmlns='http://hl7.org/fhir'>" + b"<contained><Patient>" * 2000
                           + b"</Patient></contained>" * 2000 + b"</Patient>"),
        "nul": b"<Patient xmlns='http://hl7.org/fhir'><id value='a\x00b'/></Patient>",
    }


@pytest.fixture()
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/fhir+json"])
def test_hostile_xml_is_refused(client: TestClient, store: SqlStore, secret_file: Path, accept: str) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    before = store_digest(store)
    for name, body in _bodies(secret_file).items():
        for method, url in (("post", "/fhir/Patient"), ("put", "/fhir/Patient/p1"), ("post", "/fhir"),
                            ("post", "/fhir/Patient/$validate"), ("patch", "/fhir/Patient/p1")):
            r = client.request(method.upper(), url, content=body,
                               headers={"Content-Type": "application/fhir+xml", "Accept": accept})
            assert r.status_code == 400, (name, url, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith(accept), (name, r.headers["content-type"])
            assert b"OperationOutcome" in r.content and SECRET.encode() not in r.content
            assert b"Traceback" not in r.content and b"lollol" not in r.content
    assert store_digest(store) == before


def test_the_parser_refuses_before_expanding(secret_file: Path) -> None:
    bodies = _bodies(secret_file)
    for name in ("xxe-file", "xxe-parameter", "external-dtd", "billion-laughs", "plain-dtd"):
        with pytest.raises(BadRequest) as err:
            from_xml(bodies[name])
        assert "DTD" in str(err.value.outcome()), name
    for name in ("deep-extension", "deep-contained"):
        with pytest.raises(BadRequest) as err:
            from_xml(bodies[name])
        assert f"deeper than {MAX_XML_DEPTH}" in str(err.value.outcome()), name

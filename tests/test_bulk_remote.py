"""The pieces of the gateway's client side of bulk submission that need no network: reading the configured
Backend Services identities (private JWK and PEM files, and what is refused), choosing one per provider, the
Retry-After bound, the FHIR base of a kick-off URL and token scopes."""

from __future__ import annotations

import json
from email.utils import formatdate
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from gateway.auth.assertion_client import sign_assertion
from gateway.bulk.remote import MAX_RETRY_AFTER, credential_for, load_credentials, read_scope, retry_after
from gateway.bulk.submit import export_base


def _write(tmp_path: Path, entries: list[dict[str, str]]) -> str:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_credentials_from_jwk_and_pem_sign_verifiable_assertions(tmp_path: Path) -> None:
    ec = ECKey.generate_key("P-384", parameters={"kid": "ec-1", "alg": "ES384"})
    rsa = RSAKey.generate_key(2048)
    (tmp_path / "ec.jwk").write_text(json.dumps(ec.as_dict(private=True)))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "rsa.pem").write_bytes(rsa.as_pem(private=True))
    creds = load_credentials(_write(tmp_path, [
        {"source": "https://ehr.example/fhir", "clientId": "c-ec", "keyFile": "ec.jwk"},
        {"source": "https://ehr.example/fhir/tenant-2", "clientId": "c-rsa", "keyFile": "keys/rsa.pem",
         "scope": "system/Patient.rs"}]))
    assert [(c.client_id, c.scope) for c in creds] == [("c-ec", "system/*.rs"), ("c-rsa", "system/Patient.rs")]
    for cred, public in ((creds[0], ec), (creds[1], rsa)):
        token = sign_assertion(cred.jwk, cred.client_id, "https://ehr.example/auth/token")
        claims = jwt.decode(token, public, algorithms=["ES384", "RS384"]).claims
        assert claims["iss"] == cred.client_id and claims["aud"] == "https://ehr.example/auth/token"
    assert creds[1].jwk["kid"] == rsa.thumbprint()
    # the longest matching prefix wins; nothing for another provider or a look-alike path
    assert credential_for(creds, "https://ehr.example/fhir/tenant-2/$export") is creds[1]
    assert credential_for(creds, "https://ehr.example/fhir/Patient/$export") is creds[0]
    assert credential_for(creds, "https://ehr.example/fhir-other/$export") is None
    assert credential_for(creds, "https://other.example/fhir/$export") is None


@pytest.mark.parametrize("content, why", [
    ("not json", "creds.json"),
    ('{"source": "https://x.example"}', "a JSON list"),
    ('[{"source": "https://x.example", "clientId": "c"}]', "keyFile"),
    ('[{"source": "https://x.example", "clientId": "c", "keyFile": "public.jwk"}]', "not a private"),
    ('[{"source": "https://x.example", "clientId": "c", "keyFile": "missing.jwk"}]', "missing.jwk"),
    ('[{"source": "https://user@x.example", "clientId": "c", "keyFile": "ec.jwk"}]', "item 0"),
])
def test_bad_credentials_files_name_the_problem(tmp_path: Path, content: str, why: str) -> None:
    ec = ECKey.generate_key("P-384", parameters={"kid": "k"})
    (tmp_path / "ec.jwk").write_text(json.dumps(ec.as_dict(private=True)))
    (tmp_path / "public.jwk").write_text(json.dumps(ec.as_dict(private=False)))
    (tmp_path / "creds.json").write_text(content)
    with pytest.raises(ValueError, match=why):
        load_credentials(str(tmp_path / "creds.json"))


def test_retry_after_is_honoured_within_bounds() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("86400") == MAX_RETRY_AFTER
    assert retry_after("0") == 0.5
    assert retry_after(None) == retry_after("soon") == 2.0
    now = 1_800_000_000.0
    assert retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.5


def test_export_base_and_scopes() -> None:
    assert export_base("https://ehr.example/fhir/$export") == "https://ehr.example/fhir"
    assert export_base("https://ehr.example/fhir/Patient/$export?_type=Patient") == "https://ehr.example/fhir"
    assert export_base("https://ehr.example/fhir/Group/g-1/$export") == "https://ehr.example/fhir"
    assert export_base("https://ehr.example/fhir/Patient") is None
    assert read_scope(["Patient", "Condition", "Patient"], "system/*.rs") == "system/Condition.rs system/Patient.rs"
    assert read_scope(["Pat ient"], "system/*.rs") == "system/*.rs"

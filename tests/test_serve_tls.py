"""``fhir-gateway serve --tls-cert/--tls-key`` refuses incomplete or missing TLS files with a clear message
(the running https server is exercised by tests/conformance), and the registration rules for an app that
authenticates with its own keys (confidential-asymmetric)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.auth.assertion_client import generate_client_key
from gateway.auth.clients import ClientStore, RegistrationError
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([gateway_exe(), "serve", "--port", "1", "--database",
                           f"sqlite:///{tmp_path / 'gw.sqlite3'}", *args],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("which", ["--tls-cert", "--tls-key"])
def test_tls_cert_and_key_go_together(tmp_path: Path, which: str) -> None:
    pem = tmp_path / "one.pem"
    pem.write_text("x")
    out = _serve(tmp_path, which, str(pem))
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    out = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "absent.pem"))
    assert out.returncode == 2 and "absent.pem: no such file" in out.stderr
    assert "Traceback" not in out.stderr


def test_unusable_tls_files_are_refused(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    out = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    assert out.returncode == 2 and "cannot use --tls-cert" in out.stderr
    assert "Traceback" not in out.stderr


def test_default_base_url_follows_tls() -> None:
    assert Settings(port=8443).fhir_base() == "http://127.0.0.1:8443/fhir"
    assert Settings(port=8443, tls_cert="c.pem", tls_key="k.pem").fhir_base() == "https://127.0.0.1:8443/fhir"
    assert Settings(base_url="https://gw.example.org/fhir", tls_cert="c.pem").fhir_base() == \
        "https://gw.example.org/fhir"


def test_app_with_keys_registers_for_private_key_jwt(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    try:
        clients = ClientStore(store.engine)
        jwks = {"keys": [generate_client_key("RS384").as_dict(private=False)]}
        app, secret = clients.register("asym app", "launch/patient patient/*.rs openid",
                                       redirect_uris=["https://app.example.org/cb"], jwks=jwks)
        assert secret is None and app.auth_method == "private_key_jwt"
        assert app.grant_types == ["authorization_code", "refresh_token"]
        with pytest.raises(RegistrationError, match="keys or a client secret"):
            clients.register("both", "patient/*.rs", redirect_uris=["https://app.example.org/cb"], jwks=jwks,
                             confidential=True)
        with pytest.raises(RegistrationError, match="redirect URI"):
            clients.register("bad uri", "patient/*.rs", redirect_uris=["http://app.example.org/cb"], jwks=jwks)
        with pytest.raises(RegistrationError, match="system/ scopes only"):
            clients.register("backend", "patient/*.rs", jwks=jwks)
    finally:
        store.close()

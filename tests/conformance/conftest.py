"""One real ``fhir-gateway serve`` with authorization on, serving https itself (a self-signed certificate made
here with ``cryptography``), shared by the conformance checklist tests. Clients and users are registered in
the database before the server starts; data goes in over HTTP with a Backend Services token.

A second server on a PostgreSQL database of its own (``pg_gateway``) backs the Bulk Data lines, where the
database matters."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from gateway.auth.assertion_client import generate_client_key, sign_assertion
from gateway.auth.clients import ClientStore
from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe, own_pg_database, require_pg
from tests.smart.conftest import pkce
from tests.test_live_server import START_TIMEOUT, free_port, stop_process, wait_until_up

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "https://app.example.org/callback"
APP_ORIGIN = "https://app.example.org"
PASSWORD = "conformance-password-1"
APP_SCOPE = "launch launch/patient openid fhirUser offline_access patient/*.rs user/*.rs"
PATIENTS = ("cf-p1", "cf-p2", "cf-p3")
CLINICIAN = "Practitioner/cf-dr"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Backend:
    """A registered Backend Services client and its private key."""
    client_id: str
    jwk: dict[str, Any]


@dataclass
class Gateway:
    """The running server, what was registered before it started, and helpers to talk to it."""
    proc: subprocess.Popen[bytes]
    port: int
    cert: Path
    database: str
    workdir: Path
    backend: Backend  # system/*.cruds + __admin, ES384, inline JWKS
    clients: dict[str, Any] = field(default_factory=dict)  # name -> (client_id, secret or private JWK)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.root}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root}/auth/token"

    def http(self) -> httpx.Client:
        """An httpx client that trusts the server's certificate (and nothing else)."""
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.cert)), timeout=60.0)

    def backend_token(self, scope: str = "system/*.cruds __admin") -> str:
        """A Backend Services access token (cached per scope)."""
        if scope not in self._tokens:
            with self.http() as h:
                r = h.post(self.token_url, data={
                    "grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": sign_assertion(self.backend.jwk, self.backend.client_id, self.token_url)})
            assert r.status_code == 200, r.text
            self._tokens[scope] = r.json()["access_token"]
        return self._tokens[scope]

    def output(self) -> str:
        return "\n".join(f"--- {n}\n{(self.workdir / n).read_text(errors='replace')[-4000:]}"
                         for n in ("server.stdout", "server.stderr"))


def start_tls_server(database: str, workdir: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``fhir-gateway serve --tls-cert --tls-key`` (authorization on: the default) on a free loopback port,
    waiting for /healthz over https."""
    port = free_port()
    cmd = [gateway_exe(), "serve", "--host", "127.0.0.1", "--port", str(port), "--database", database,
           "--tls-cert", str(cert), "--tls-key", str(key)]
    with (workdir / "server.stdout").open("wb") as fo, (workdir / "server.stderr").open("wb") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=clean_env(), cwd=workdir)
    wait_until_up(proc, f"https://127.0.0.1:{port}/healthz", START_TIMEOUT,
                  lambda: (workdir / "server.stderr").read_text(errors="replace")[-4000:],
                  verify=ssl.create_default_context(cafile=str(cert)))
    return proc, port


stop = stop_process


def _register(database: str) -> tuple[Backend, dict[str, Any]]:
    """Register the clients and users the checklist needs (before the server starts, so its caches of
    clients and CORS origins hold them from the first request)."""
    store = SqlStore(database)
    try:
        clients = ClientStore(store.engine)
        key = generate_client_key("ES384")
        c, _ = clients.register("conformance backend", "system/*.cruds system/*.rs __admin",
                                jwks={"keys": [key.as_dict(private=False)]})
        backend = Backend(c.client_id, key.as_dict(private=True))
        out: dict[str, Any] = {}
        public, _ = clients.register("public app", APP_SCOPE, redirect_uris=[REDIRECT])
        out["public"] = (public.client_id, None)
        conf, secret = clients.register("symmetric app", APP_SCOPE, redirect_uris=[REDIRECT], confidential=True)
        out["symmetric"] = (conf.client_id, secret)
        for alg in ("RS384", "ES384"):
            akey = generate_client_key(alg)
            asym, _ = clients.register(f"asymmetric app {alg}", APP_SCOPE, redirect_uris=[REDIRECT],
                                       jwks={"keys": [akey.as_dict(private=False)]})
            out[f"asymmetric-{alg}"] = (asym.client_id, akey.as_dict(private=True))
        rs_key = generate_client_key("RS384")
        rs, _ = clients.register("conformance backend RS384", "system/*.rs",
                                 jwks={"keys": [rs_key.as_dict(private=False)]})
        out["backend-RS384"] = (rs.client_id, rs_key.as_dict(private=True))
        add_user(store.engine, "cf-clinician", PASSWORD, CLINICIAN)
    finally:
        store.close()
    return backend, out


def _seed(gw: Gateway) -> None:
    """Patients, the clinician and a few Observations, written over HTTP with the backend's token."""
    h = {"Authorization": f"Bearer {gw.backend_token()}", "Content-Type": "application/fhir+json"}
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "cf-dr", "name": [{"family": "Conformance"}]}]
    for i, pid in enumerate(PATIENTS):
        resources.append({"resourceType": "Patient", "id": pid, "name": [{"family": f"Checklist{i}"}],
                          "gender": "female", "birthDate": "1970-01-0" + str(i + 1)})
        resources.append({"resourceType": "Observation", "id": f"{pid}-obs", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 60 + i}})
        resources.append({"resourceType": "Encounter", "id": f"{pid}-enc", "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": f"Patient/{pid}"}})
    resources.append({"resourceType": "Group", "id": "cf-group", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": f"Patient/{p}"}} for p in PATIENTS]})
    with gw.http() as c:
        for r in resources:
            got = c.put(f"{gw.base}/{r['resourceType']}/{r['id']}", json=r, headers=h)
            assert got.status_code in (200, 201), got.text


def launch_gateway(workdir: Path, database: str) -> Gateway:
    cert, key = make_certificate(workdir)
    backend, clients = _register(database)
    proc, port = start_tls_server(database, workdir, cert, key)
    gw = Gateway(proc, port, cert, database, workdir, backend, clients)
    try:
        _seed(gw)
    except BaseException:
        stop(proc)
        raise
    return gw


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The https server on a SQLite file."""
    workdir = tmp_path_factory.mktemp("conformance")
    gw = launch_gateway(workdir, f"sqlite:///{workdir / 'gw.sqlite3'}")
    try:
        yield gw
    finally:
        stop(gw.proc)


@pytest.fixture(scope="module")
def pg_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The same https server on a PostgreSQL database of its own (not the session's: the tests of other
    modules wipe that one, and this server's export worker would pick up their jobs). Skips without a
    PostgreSQL server, and fails under CI=true, as the ``pg_url`` fixture does."""
    require_pg()
    workdir = tmp_path_factory.mktemp("conformance-pg")
    with own_pg_database("gw_conformance") as url:
        gw = launch_gateway(workdir, url)
        try:
            yield gw
        finally:
            stop(gw.proc)


# -- the authorization flow, driven over HTTP as a browser would ---------------------------------------------


def hidden(html: str) -> dict[str, str]:
    """The hidden inputs of the gateway's sign-in and consent forms."""
    return {m.group(1): m.group(2).replace("&amp;", "&") for m in
            re.finditer(r"<input type=hidden name='([^']+)' value='([^']*)'>", html)}


@dataclass
class Launch:
    """One authorization request: its parameters and PKCE verifier, and the redirect it ended with."""
    params: dict[str, str]
    verifier: str
    redirect: dict[str, str]


def authorize(gw: Gateway, client_id: str, scope: str = APP_SCOPE, patient: str | None = PATIENTS[0],
              method: str = "GET", **extra: str) -> Launch:
    """Authorize request → sign-in page → consent page → allow, as a browser would; the app's redirect."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
              "state": f"st-{time.monotonic_ns()}", "aud": gw.base, "code_challenge": challenge,
              "code_challenge_method": "S256", **extra}
    conf = discover(gw)
    with gw.http() as c:
        if method == "GET":
            page = c.get(conf["authorization_endpoint"], params=params)
        else:
            page = c.post(conf["authorization_endpoint"], data=params)
        assert page.status_code == 200 and "Sign in" in page.text, page.text
        consent = c.post(conf["authorization_endpoint"],
                         data={**hidden(page.text), "username": "cf-clinician", "password": PASSWORD})
        assert consent.status_code == 200, consent.text
        form = hidden(consent.text)
        if patient is not None and "<fieldset id=patients>" in consent.text:
            form["patient"] = patient
        done = c.post(conf["authorization_endpoint"], data={**form, "decision": "allow"}, follow_redirects=False)
    assert done.status_code == 302, done.text
    loc = done.headers["location"]
    assert loc.startswith(REDIRECT + "?"), loc
    return Launch(params, verifier, {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()})


def discover(gw: Gateway) -> dict[str, Any]:
    with gw.http() as c:
        r = c.get(f"{gw.base}/.well-known/smart-configuration")
    assert r.status_code == 200, r.text
    return dict(r.json())


def exchange(gw: Gateway, kind: str, launch: Launch) -> httpx.Response:
    """The code exchange with the PKCE verifier, authenticated as a ``kind`` client authenticates."""
    client_id, secret = gw.clients[kind]
    data = {"grant_type": "authorization_code", "code": launch.redirect["code"], "redirect_uri": REDIRECT,
            "code_verifier": launch.verifier}
    auth: Any = None
    if kind == "public":
        data["client_id"] = client_id
    elif kind == "symmetric":
        auth = (client_id, secret)
    else:
        data.update(client_assertion_type=ASSERTION_TYPE,
                    client_assertion=sign_assertion(secret, client_id, gw.token_url))
    with gw.http() as c:
        return c.post(gw.token_url, data=data, auth=auth)


def spki_hash(cert: Path) -> str:
    """base64 SHA-256 of the certificate's public key, for chromium's --ignore-certificate-errors-spki-list
    (trusts exactly this self-signed certificate, and nothing else)."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def browser_authorize(gw: Gateway, client_id: str, scope: str = APP_SCOPE, patient: str = PATIENTS[0]) -> Launch:
    """The authorization request typed into a real headless chromium (Playwright): sign in, pick the patient,
    allow; the app's redirect is caught at its origin. Skips (fails under CI=true) without Playwright or
    chromium, as the other browser tests do (tests/smart/smart_demo.py)."""
    from tests.smart.smart_demo import CHROMIUM, CHROMIUM_ARGS, playwright

    sync_playwright = playwright()
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
              "state": f"br-{time.monotonic_ns()}", "aud": gw.base, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    url = discover(gw)["authorization_endpoint"] + "?" + urlencode(params)
    landed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_hash(gw.cert)}"])
        try:
            page = browser.new_page()

            def app(route: Any) -> None:
                landed.append(route.request.url)
                route.fulfill(status=200, body="app")

            page.route(f"{APP_ORIGIN}/**", app)
            page.goto(url)
            page.fill("#username", "cf-clinician")
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            page.wait_for_selector("#allow")
            if page.query_selector("#patients"):
                page.check(f"input[name=patient][value='{patient}']")
            page.click("#allow")
            page.wait_for_url(lambda u: u.startswith(REDIRECT))
        finally:
            browser.close()
    assert landed, "the browser never reached the app's redirect URI"
    return Launch(params, verifier, {k: v[0] for k, v in parse_qs(urlsplit(landed[0]).query).items()})

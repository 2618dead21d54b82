"""Live gateways for the client-library tests (fhirpy, fhir-kit-client, a Bulk Data client with joserfc).

Each server is a real ``fhir-gateway serve --demo`` process on a loopback port, one per database kind and
authorization mode for the whole session: ``open_server`` runs with ``--auth off``, ``smart_server`` with SMART
on FHIR authorization. Every server gets a database of its own (a fresh SQLite file, or a PostgreSQL database
created here and dropped at teardown), so the session's shared ``pg_url`` database, which other tests wipe, is
never touched. The PostgreSQL variants skip with the server's reason when none answers, and fail under CI=true.

Node: the fhir-kit-client tests and the js snippets of the docs run ``node`` with the packages that
``make install-test`` puts in ``tests/clients/node/node_modules`` (``npm ci``); without node or those packages
they skip with a named reason, and fail under CI=true.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.conftest import clean_env, gateway_exe, own_pg_database, pg_available, skip_or_fail
from tests.test_live_server import LiveServer, start_server, stop_server

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_MODULES = NODE_DIR / "node_modules"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEMO_GROUP = "demo-group-attributed-2025"
KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Server:
    """A running gateway, its database URL and its kind (sqlite/postgres)."""
    live: LiveServer
    database: str
    kind: str

    @property
    def base(self) -> str:
        return self.live.base

    @property
    def token_url(self) -> str:
        return f"{self.live.root}/auth/token"


def _serve(kind: str, auth: str, factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = factory.mktemp(f"clients-{kind}-{auth}")
    with ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{workdir / 'gateway.sqlite3'}"
        else:
            reason = pg_available()
            if reason:
                skip_or_fail(f"{reason}; the PostgreSQL variants of the client-library tests need it")
            url = stack.enter_context(own_pg_database("gw_clients"))
        live = start_server(url, workdir, demo=True, auth=auth, timeout=180)
        try:
            yield Server(live, url, kind)
        finally:
            stop_server(live)


@pytest.fixture(scope="session", params=KINDS)
def open_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``--auth off --demo`` on SQLite and on PostgreSQL."""
    yield from _serve(request.param, "off", tmp_path_factory)


@pytest.fixture(scope="session", params=KINDS)
def smart_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``--auth smart --demo`` on SQLite and on PostgreSQL."""
    yield from _serve(request.param, "smart", tmp_path_factory)


# -- SMART Backend Services with a standard JWT library (joserfc) ------------------------------------------


@dataclass
class BackendClient:
    """A registered backend client: its id and its private key (RS384 or ES384)."""
    client_id: str
    key: RSAKey | ECKey
    alg: str
    server: Server

    def assertion(self) -> str:
        """A client_assertion JWT as SMART Backend Services asks: iss = sub = client_id, aud = token URL."""
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.server.token_url,
                  "exp": now + 240, "iat": now, "jti": jti}
        header = {"alg": self.alg, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])

    def token(self, scope: str) -> str:
        """A client_credentials access token for ``scope``."""
        r = httpx.post(self.server.token_url, data={
            "grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion()}, timeout=30.0)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"].lower() == "bearer" and body["scope"].split() == scope.split(), body
        return str(body["access_token"])


def register_backend(server: Server, scope: str, alg: str, tmp: Path) -> BackendClient:
    """Make a key pair with joserfc, write the public JWKS to a file and register it with the documented
    command (``fhir-gateway clients add --jwks FILE``) on the server's database."""
    kid = uuid.uuid4().hex[:16]
    key: RSAKey | ECKey
    if alg == "RS384":
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": alg, "use": "sig"})
    else:
        key = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": alg, "use": "sig"})
    jwks_file = tmp / f"jwks-{kid}.json"
    jwks_file.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    out = subprocess.run([gateway_exe(), "clients", "add", "--name", f"client tests {alg}", "--scope", scope,
                          "--jwks", str(jwks_file), "--database", server.database],
                         capture_output=True, text=True, env=clean_env(), timeout=120, cwd=tmp)
    assert out.returncode == 0, out.stderr
    return BackendClient(json.loads(out.stdout)["client_id"], key, alg, server)


# -- Node -----------------------------------------------------------------------------------------------------


def require_node() -> str:
    """The node executable, once the packages of tests/clients/node are installed; else skip (fail in CI)."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("needs Node.js ('node' on PATH) for the fhir-kit-client tests")
    assert node is not None
    if not (NODE_MODULES / "fhir-kit-client").is_dir():
        skip_or_fail("needs the npm packages of tests/clients/node (make install-test runs "
                     "'npm ci --prefix tests/clients/node')")
    return node


def run_node(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run a Node script with tests/clients/node's packages and return the JSON it prints on stdout."""
    node = require_node()
    full_env = {**clean_env(), "NODE_PATH": str(NODE_MODULES), **(env or {})}
    out = subprocess.run([node, str(script), *args], capture_output=True, text=True, env=full_env,
                         timeout=timeout, cwd=NODE_DIR)
    assert out.returncode == 0, f"node {script} exited {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return json.loads(out.stdout)

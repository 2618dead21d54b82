"""`fhir-gateway clients add --client-id` and `fhir-gateway launch` (the EHR launch URL docs/smart-apps.md uses):
what they print and store, and clear errors (exit 2, nothing stored) for bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from gateway.auth.assertion_client import generate_client_key
from gateway.auth.tables import CLIENT, LAUNCH
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe

SCOPE = "launch launch/patient openid fhirUser offline_access patient/*.rs"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([gateway_exe(), *args], capture_output=True, text=True, env=clean_env(), timeout=120)


def rows(db: str, table: object) -> list[dict[str, object]]:
    store = SqlStore(db)
    try:
        with store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings()]  # type: ignore[call-overload]
    finally:
        store.close()


def test_clients_add_with_a_chosen_client_id(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    add = ("clients", "add", "--database", db, "--name", "Demo", "--scope", SCOPE,
           "--redirect-uri", "http://127.0.0.1:9000/index.html")
    first = run(*add, "--client-id", "smart-demo")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["client_id"] == "smart-demo"
    again = run(*add, "--client-id", "smart-demo")
    assert again.returncode == 2 and "already registered" in again.stderr and "Traceback" not in again.stderr
    bad = run(*add, "--client-id", "no spaces/or slashes")
    assert bad.returncode == 2 and "--client-id" in bad.stderr and "Traceback" not in bad.stderr
    assert [r["client_id"] for r in rows(db, CLIENT)] == ["smart-demo"]


def test_launch_prints_the_apps_launch_url_with_iss_and_a_stored_launch(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    assert run("clients", "add", "--database", db, "--name", "Demo", "--scope", SCOPE, "--client-id", "app1",
               "--redirect-uri", "http://127.0.0.1:9000/index.html").returncode == 0
    out = run("launch", "--database", db, "--client-id", "app1", "--patient", "p1", "--encounter", "e1",
              "--app", "http://127.0.0.1:9000/launch.html?theme=dark", "--fhir-base", "http://127.0.0.1:8080/fhir")
    assert out.returncode == 0, out.stderr
    url = urlsplit(out.stdout.strip())
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.netloc, url.path) == ("127.0.0.1:9000", "/launch.html")
    assert q["theme"] == "dark" and q["iss"] == "http://127.0.0.1:8080/fhir"
    stored = rows(db, LAUNCH)
    assert len(stored) == 1 and stored[0]["launch_id"] == q["launch"] and stored[0]["client_id"] == "app1"
    assert json.loads(str(stored[0]["context"])) == {"patient": "p1", "encounter": "e1"}
    # without --fhir-base, the base serve would use (GATEWAY_PORT honoured as by serve)
    default = subprocess.run([gateway_exe(), "launch", "--database", db, "--client-id", "app1",
                              "--app", "http://127.0.0.1:9000/launch.html"], capture_output=True, text=True,
                             env={**clean_env(), "GATEWAY_PORT": "8123"}, timeout=120)
    assert default.returncode == 0, default.stderr
    assert parse_qs(urlsplit(default.stdout.strip()).query)["iss"] == ["http://127.0.0.1:8123/fhir"]


def test_launch_refuses_unknown_apps_and_bad_urls(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [generate_client_key("ES384").as_dict(private=False)]}))
    assert run("clients", "add", "--database", db, "--name", "Backend", "--scope", "system/*.rs", "--client-id",
               "backend", "--jwks", str(jwks)).returncode == 0
    for client_id in ("nobody", "backend"):  # unknown, and a client that is not an app
        r = run("launch", "--database", db, "--client-id", client_id, "--app", "http://127.0.0.1:9000/launch.html")
        assert r.returncode == 2 and "no SMART app" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("launch", "--database", db, "--client-id", "backend", "--app", "launch.html")
    assert r.returncode == 2 and "absolute" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert rows(db, LAUNCH) == []

"""End to end on a real `fhir-gateway serve` (authorization on by default, --demo): the demo prints a
ready-made backend client and the commands to get a token, which work as printed; and a SMART app performs a
standalone launch with PKCE in a real headless browser (Playwright driving Debian's chromium)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from gateway.auth.clients import ClientStore
from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.conftest import clean_env, gateway_exe
from tests.smart.smart_demo import chromium
from tests.test_live_server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live
PASSWORD = "e2e-password-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    workdir = tmp_path_factory.mktemp("live-smart")
    db = f"sqlite:///{workdir / 'gw.sqlite3'}"
    s = start_server(db, workdir, demo=True, auth=None, timeout=120)
    try:
        yield s, db
    finally:
        stop_server(s)


def test_auth_is_the_default_and_the_demo_prints_working_commands(server: tuple[LiveServer, str]) -> None:
    live, _ = server
    assert httpx.get(f"{live.base}/Patient").status_code == 401
    assert httpx.get(f"{live.base}/metadata").status_code == 200
    printed = live.stderr_path.read_text()
    m = re.search(r"TOKEN=\$\((fhir-gateway token [^)]*)\)", printed)
    assert m, printed
    args = shlex.split(m.group(1))
    out = subprocess.run([gateway_exe(), *args[1:]], capture_output=True, text=True, env=clean_env(), timeout=120,
                         cwd=live.stdout_path.parent)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    r = httpx.get(f"{live.base}/Patient?_count=2", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["entry"]
    assert "d" not in httpx.get(f"{live.root}/auth/jwks").json()["keys"][0]  # public keys only
    # secrets stay out of the log
    assert token not in live.stdout_path.read_text()


def test_standalone_launch_in_a_real_browser(server: tuple[LiveServer, str]) -> None:
    live, db = server
    redirect = f"http://127.0.0.1:{live.port}/e2e-app/callback"
    store = SqlStore(db)
    try:
        app, _ = ClientStore(store.engine).register("E2E app", "launch/patient patient/*.rs openid fhirUser",
                                                    redirect_uris=[redirect])
        add_user(store.engine, "e2e-clinician", PASSWORD, "Practitioner/e2e")
    finally:
        store.close()
    conf = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(24)
    url = conf["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": redirect, "state": state,
        "scope": "launch/patient patient/*.rs openid fhirUser", "aud": live.base, "code_challenge": challenge,
        "code_challenge_method": "S256"})
    landed: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        page.fill("#username", "e2e-clinician")
        page.fill("#password", PASSWORD)
        page.click("#sign-in")
        page.wait_for_selector("#patients")
        options = page.eval_on_selector_all("input[name=patient]", "els => els.map(e => e.value)")
        assert len(options) >= 2
        assert page.eval_on_selector_all("input[name=patient]", "els => els.filter(e => e.checked).length") == 0
        chosen, other = options[0], options[1]
        page.check(f"input[name=patient][value='{chosen}']")
        page.click("#allow")
        # the redirect lands on the gateway's own origin, where no app answers: its URL is what matters
        page.wait_for_url(lambda u: u.startswith(redirect))
        landed.append(page.url)
    assert landed, "the browser never reached the app's redirect URI"
    back = {k: v[0] for k, v in parse_qs(urlsplit(landed[0]).query).items()}
    assert back["state"] == state
    tok = httpx.post(conf["token_endpoint"], data={"grant_type": "authorization_code", "code": back["code"],
                                                   "redirect_uri": redirect, "client_id": app.client_id,
                                                   "code_verifier": verifier})
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["patient"] == chosen and body["id_token"]
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{live.base}/Patient/{chosen}", headers=h).status_code == 200
    assert httpx.get(f"{live.base}/Patient/{other}", headers=h).status_code == 404
    obs = httpx.get(f"{live.base}/Observation?_count=200", headers=h).json()
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{chosen}" for e in obs.get("entry", []))
    assert httpx.get(f"{live.base}/Patient/{other}/Observation", headers=h).status_code == 403

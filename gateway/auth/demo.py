"""Ready-made demo access when the demo runs with authorization on: a backend services client (its private
key written next to the database) and a clinician user (its password written to a file next to the
database, never to the console or the log), plus the commands to get a token."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..operations import FEEDS_SCOPE
from .assertion_client import generate_client_key
from .clients import ClientStore
from .users import add_user

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore

DEMO_BACKEND = "demo-backend"
DEMO_APP = "demo-app"
DEMO_USER = "demo-clinician"
CARE_GAPS = "care-gaps"
CARE_GAPS_SCOPE = "launch launch/patient openid fhirUser patient/*.rs user/*.rs user/*.cu"


def ensure_care_gaps_client(clients: ClientStore, settings: Any) -> str:
    """Register the care-gaps SMART app the gateway serves (public client, PKCE) with its redirect URI on
    this server's address; a later start on another address adds that address's URI."""
    base = settings.fhir_base()
    redirect = f"{base.removesuffix('/fhir')}/apps/care-gaps/index.html"
    client = clients.get(CARE_GAPS)
    if client is None:
        clients.register("Care gaps", CARE_GAPS_SCOPE, redirect_uris=[redirect], client_id=CARE_GAPS)
    elif redirect not in client.redirect_uris:
        import json

        from sqlalchemy import update

        from .tables import CLIENT

        with clients.engine.begin() as conn:
            conn.execute(update(CLIENT).where(CLIENT.c.client_id == CARE_GAPS).values(
                redirect_uris=json.dumps([*client.redirect_uris, redirect])))
    return f"Care-gaps SMART app: {base.removesuffix('/fhir')}/apps/care-gaps/ (client_id {CARE_GAPS}); demo EHR " \
           f"launcher: {base.removesuffix('/fhir')}/apps/ehr-launcher"
# the console at /console/ (gateway/console): a public client, PKCE, user scopes, attribution list changes and
# the ingest runs of its Data feeds screen (not everyone's jobs: an operator's console is registered for that)
CONSOLE_SCOPE = f"openid fhirUser online_access user/*.rs user/Group.u {FEEDS_SCOPE}"


def _state_dir(settings: Any) -> Path:
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).parent
    return Path("var")


def write_private(path: Path, text: str) -> None:
    """Write a secret to a file only its owner may read (mode 0600 from creation, not changed afterwards)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_demo_access(store: SqlStore, settings: Any) -> str:
    """Register the demo clients and user when missing; returns the text to print (never a password or key:
    the demo user's password goes to ``demo-user.txt`` and the backend key to ``demo-backend-key.json``,
    both mode 0600, next to the database)."""
    clients = ClientStore(store.engine)
    folder = _state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "demo-backend-key.json"
    base = settings.fhir_base()
    lines = []
    if clients.get(DEMO_BACKEND) is None or not key_file.exists():
        key = generate_client_key("ES384")
        if clients.get(DEMO_BACKEND) is None:
            clients.register("Demo backend service", "system/*.rs system/*.cruds __admin",
                             jwks={"keys": [key.as_dict(private=False)]}, client_id=DEMO_BACKEND)
        else:  # the key file was lost: the registered key cannot be used any more
            return (f"The demo client {DEMO_BACKEND} exists but {key_file} is missing; register a new client "
                    "with `fhir-gateway clients add`.")
        write_private(key_file, json.dumps(key.as_dict(private=True)))
    if clients.get(DEMO_APP) is None:
        clients.register("Demo SMART app", "launch launch/patient openid fhirUser offline_access online_access "
                         "patient/*.rs patient/*.read user/*.rs user/*.read",
                         redirect_uris=[f"http://127.0.0.1:{settings.port}/demo-app/callback",
                                        "http://localhost:9000/callback"], client_id=DEMO_APP)
    care_gaps = ensure_care_gaps_client(clients, settings)
    console = settings.console_client_id
    if clients.get(console) is None:
        clients.register("Gateway console", CONSOLE_SCOPE, client_id=console,
                         redirect_uris=[f"http://127.0.0.1:{settings.port}/console/callback",
                                        f"http://localhost:{settings.port}/console/callback"])
    from sqlalchemy import select

    from .tables import USER

    with store.engine.connect() as conn:
        has_user = conn.execute(select(USER.c.username).where(USER.c.username == DEMO_USER)).first()
    user_file = folder / "demo-user.txt"
    if not has_user:
        password = secrets.token_urlsafe(12)
        add_user(store.engine, DEMO_USER, password, "Practitioner/demo-practitioner")
        write_private(user_file, f"{DEMO_USER}\n{password}\n")
    lines.append(f"Demo user for the login page: {DEMO_USER}, password in {user_file} (readable by you only; "
                 "never printed)")
    lines[:0] = [
        "Authorization is on (SMART on FHIR). Demo backend client: " + DEMO_BACKEND + f" (private key {key_file})",
        "Get a token and read:",
        f"  TOKEN=$(fhir-gateway token --fhir-base {base} --client-id {DEMO_BACKEND} --key {key_file} "
        "--scope 'system/*.rs')",
        f"  curl -H \"Authorization: Bearer $TOKEN\" '{base}/Patient?_count=2'",
        f"Demo SMART app: client_id {DEMO_APP} (public, PKCE), discovery {base}/.well-known/smart-configuration",
        care_gaps,
        f"Console for payer and provider staff: {base.removesuffix('/fhir')}/console/ (client {console})",
    ]
    return "\n".join(lines)

"""Ready-made demo access when the demo runs with authorization on: a backend services client (its private
key written next to the database) and a clinician user, plus the commands to get a token."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .assertion_client import generate_client_key
from .clients import ClientStore
from .users import add_user

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore

DEMO_BACKEND = "demo-backend"
DEMO_APP = "demo-app"
DEMO_USER = "demo-clinician"


def _state_dir(settings: Any) -> Path:
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).parent
    return Path("var")


def ensure_demo_access(store: SqlStore, settings: Any) -> str:
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
        key_file.write_text(json.dumps(key.as_dict(private=True)))
        os.chmod(key_file, 0o600)
    if clients.get(DEMO_APP) is None:
        clients.register("Demo SMART app", "launch launch/patient openid fhirUser offline_access online_access "
                         "patient/*.rs patient/*.read user/*.rs user/*.read",
                         redirect_uris=[f"http://127.0.0.1:{settings.port}/demo-app/callback",
                                        "http://localhost:9000/callback"], client_id=DEMO_APP)
    from sqlalchemy import select

    from .tables import USER

    with store.engine.connect() as conn:
        has_user = conn.execute(select(USER.c.username).where(USER.c.username == DEMO_USER)).first()
    if not has_user:
        password = secrets.token_urlsafe(12)
        add_user(store.engine, DEMO_USER, password, "Practitioner/demo-practitioner")
        lines.append(f"Demo user for the login page: {DEMO_USER} / {password} (shown once)")
    lines[:0] = [
        "Authorization is on (SMART on FHIR). Demo backend client: " + DEMO_BACKEND + f" (private key {key_file})",
        "Get a token and read:",
        f"  TOKEN=$(fhir-gateway token --fhir-base {base} --client-id {DEMO_BACKEND} --key {key_file} "
        "--scope 'system/*.rs')",
        f"  curl -H \"Authorization: Bearer $TOKEN\" '{base}/Patient?_count=2'",
        f"Demo SMART app: client_id {DEMO_APP} (public, PKCE), discovery {base}/.well-known/smart-configuration",
    ]
    return "\n".join(lines)

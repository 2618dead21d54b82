"""EHR launch contexts: a one-time ``launch`` id that an EHR (or an administrator's tool) hands to a SMART app
together with ``iss``; the app sends it back on its authorization request and the token response then carries
the context (patient, encounter, ...) it stands for. Used by the admin API and the ``fhir-gateway launch``
command."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.common.security import generate_token
from sqlalchemy import Engine, insert

from .tables import LAUNCH

LAUNCH_TTL = 300  # seconds a launch id stays usable (once)


def create_launch(engine: Engine, client_id: str, context: dict[str, Any], ttl: int = LAUNCH_TTL) -> str:
    """Store a launch context for ``client_id`` and return its id (random, single use, ``ttl`` seconds)."""
    launch_id = generate_token(32)
    with engine.begin() as conn:
        conn.execute(insert(LAUNCH).values(launch_id=launch_id, client_id=client_id, context=json.dumps(context),
                                           expires_at=int(time.time()) + ttl))
    return launch_id


def launch_url(app_launch_url: str, iss: str, launch_id: str) -> str:
    """The app's launch URL with ``iss`` and ``launch`` added to its query (what an EHR opens)."""
    parts = urlsplit(app_launch_url)
    extra = urlencode({"iss": iss, "launch": launch_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

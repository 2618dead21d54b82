"""Two servers on one database and a signing key one of them has not loaded: two instances starting at once
each add a key, and a key rotated by one (or by ``fhir-gateway keys rotate``) is unknown to the other for up
to its 30-second refresh. A token naming a key the validating process has not loaded makes it reload the keys
(at most once a second), so the token is honoured at once instead of answered 401."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.auth.keys import KeyRing
from gateway.auth.tokens import TokenService, _header_kid
from gateway.store.sql.store import SqlStore

BASE = "http://localhost/fhir"


def test_a_key_added_by_another_instance_is_loaded_when_a_token_names_it(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/keys.sqlite3")
    try:
        ring_a, ring_b = KeyRing(store.engine), KeyRing(store.engine)
        ring_a.ensure()
        ring_b.ensure()
        kid = ring_b.rotate()  # instance B signs with a key A loaded before it existed
        a = TokenService(store.engine, ring_a, issuer=BASE, audience=BASE)
        b = TokenService(store.engine, ring_b, issuer=BASE, audience=BASE)
        token = b.issue_access("app", "user/*.rs", 300, "f-1", "someone", {}).token
        assert _header_kid(token) == kid and all(k.kid != kid for k in ring_a.public.keys)
        ring_a._loaded_at = time.monotonic() - 5  # past the once-a-second bound, well inside the 30 s refresh
        grant = a.validate(token)
        assert grant.client_id == "app"
        # a token naming no stored key is still refused, and does not make every request reload
        forged = token.split(".", 1)[0][:-2] + "x." + token.split(".", 1)[1]
        with pytest.raises(Exception):  # noqa: B017 - the token service's invalid_token error
            a.validate(forged)
    finally:
        store.close()


def test_header_kid_of_garbage_is_none() -> None:
    assert _header_kid("not-base64!.x.y") is None
    assert _header_kid("bnVsbA.x.y") is None  # the JSON null

"""The gateway's own signing keys: generated on first start, kept in the database, published as a JWKS.
Rotation adds a new key and retires the old one, which stays published until its tokens have expired."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Engine, insert, select, update

from .tables import KEY

ALG = "RS256"  # access and id tokens: RS256 is what every SMART client and joserfc's defaults accept


class KeyRing:
    def __init__(self, engine: Engine, retire_after: int = 86400) -> None:
        self.engine = engine
        self.retire_after = retire_after
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._signing: RSAKey | None = None
        self._public = KeySet([])

    def _load(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(KEY.c.kid, KEY.c.private_jwk, KEY.c.retired_at, KEY.c.created_at)
                                .order_by(KEY.c.created_at)).all()
        now = int(time.time())
        keys = [(RSAKey.import_key(json.loads(r[1])), r[2]) for r in rows
                if r[2] is None or r[2] > now - self.retire_after]
        active = [k for k, retired in keys if retired is None]
        self._signing = active[-1] if active else None
        self._public = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k, _ in keys])
        self._loaded_at = time.monotonic()

    def ensure(self) -> None:
        with self._lock:
            self._load()
            if self._signing is None:
                self._add()
                self._load()

    def _add(self) -> str:
        kid = uuid.uuid4().hex
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": ALG, "use": "sig"})
        with self.engine.begin() as conn:
            conn.execute(insert(KEY).values(kid=kid, alg=ALG, private_jwk=json.dumps(key.as_dict(private=True)),
                                            created_at=int(time.time())))
        return kid

    def rotate(self) -> str:
        """Start signing with a new key; the previous ones stay published while their tokens live."""
        with self._lock:
            kid = self._add()
            with self.engine.begin() as conn:
                conn.execute(update(KEY).where(KEY.c.kid != kid, KEY.c.retired_at.is_(None))
                             .values(retired_at=int(time.time())))
            self._load()
        return kid

    def refresh_if_stale(self, max_age: float = 30.0) -> None:
        if time.monotonic() - self._loaded_at > max_age:
            with self._lock:
                self._load()

    def refresh_for(self, kid: object, min_interval: float = 1.0) -> None:
        """Reload the keys when a token names a key this process has not loaded: another instance on the same
        database may have made it (two instances starting at once each add one) or rotated since the last
        load. At most once per ``min_interval`` seconds, so unknown kids cannot make every request query."""
        if not isinstance(kid, str) or any(k.kid == kid for k in self._public.keys):
            return
        if time.monotonic() - self._loaded_at > min_interval:
            with self._lock:
                self._load()

    @property
    def signing_key(self) -> RSAKey:
        if self._signing is None:
            self.ensure()
        assert self._signing is not None
        return self._signing

    @property
    def public(self) -> KeySet:
        return self._public

    def jwks(self) -> dict[str, Any]:
        return dict(self._public.as_dict(private=False))

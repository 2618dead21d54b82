"""Console sessions in the database (table ``console_session``), so a sign-in made on one gateway instance is
good on every other instance on the same database and survives a restart.

What the browser holds is the session's secret: 32 random bytes (``secrets.token_urlsafe``) in an HttpOnly,
SameSite=Lax cookie (Secure when the gateway is served over https). The database never holds that secret:

- the row is found by the secret's SHA-256 (``id_hash``), so a copy of the table names no usable cookie;
- the tokens (access, refresh, id), the PKCE verifier and state of a sign-in in progress and the CSRF token
  are encrypted together (Fernet: AES-128-CBC with HMAC-SHA256) under a key derived from the secret
  (HMAC-SHA256 of it with a fixed label), so they open only for a request that presents the cookie. No key
  has to be configured or shared between instances, and none is stored.

A session lives ``IDLE_SECONDS`` without use and at most ``MAX_SECONDS`` from its creation; a sign-in that
was started but not completed ``PENDING_SECONDS``. Expired rows are deleted when they are next presented and
in passing when new sessions are made; signing out deletes the row (after the tokens are revoked). At most
``MAX_PENDING`` sign-ins in progress are kept (the oldest half goes beyond it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, insert, select, update

from ..store.sql.tables import CONSOLE_SESSION

C = CONSOLE_SESSION.c
IDLE_SECONDS = 12 * 3600  # a session unused this long is gone
MAX_SECONDS = 24 * 3600  # and none lives longer than this from its creation
PENDING_SECONDS = 600  # a sign-in started but not finished
TOUCH_SECONDS = 60  # the last-use time is written at most this often
MAX_PENDING = 10_000  # sign-ins started and not finished; beyond it the oldest half is dropped
KEY_LABEL = b"gateway console session key v1"


@dataclass
class Session:
    """One console session as a request sees it; ``sid`` is the cookie's secret (never stored)."""
    sid: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token: dict[str, Any] | None = None
    username: str | None = None
    fhir_user: str | None = None
    pending: dict[str, str] = field(default_factory=dict)  # state, code_verifier and return path of a sign-in
    created: float = field(default_factory=time.time)


def id_hash(sid: str) -> str:
    """The row key of a session: the SHA-256 of its secret."""
    return hashlib.sha256(sid.encode()).hexdigest()


def _fernet(sid: str) -> Fernet:
    key = hmac.new(sid.encode(), KEY_LABEL, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _seal(s: Session) -> bytes:
    return _fernet(s.sid).encrypt(orjson.dumps({"csrf": s.csrf, "token": s.token, "pending": s.pending}))


class Sessions:
    """The console sessions of one database."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.engine = store.engine

    def _write(self, stmt: Any) -> int:
        lock = getattr(self.store, "_write_lock", None)
        if lock:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(stmt).rowcount)
        finally:
            if lock:
                lock.release()

    def _expiry(self, s: Session, now: float) -> float:
        idle = IDLE_SECONDS if s.token else PENDING_SECONDS
        return min(now + idle, s.created + MAX_SECONDS)

    def get(self, sid: str | None) -> Session | None:
        """The session whose secret is ``sid``; None when there is none, it expired (the row is then deleted)
        or its content does not open with that secret."""
        if not sid or len(sid) > 128:
            return None
        key = id_hash(sid)
        with self.engine.connect() as conn:
            row = conn.execute(select(CONSOLE_SESSION).where(C.id_hash == key)).first()
        if row is None:
            return None
        now = time.time()
        if row.expires < now:
            self._write(delete(CONSOLE_SESSION).where(C.id_hash == key))
            return None
        try:
            secret = orjson.loads(_fernet(sid).decrypt(bytes(row.secret)))
        except (InvalidToken, orjson.JSONDecodeError):
            return None
        s = Session(sid, secret["csrf"], secret.get("token"), row.username, row.fhir_user,
                    dict(secret.get("pending") or {}), row.created)
        if now - row.used > TOUCH_SECONDS:
            self._write(update(CONSOLE_SESSION).where(C.id_hash == key).values(used=now,
                                                                               expires=self._expiry(s, now)))
        return s

    def new(self) -> Session:
        """A new, empty session (its row written); expired rows of others are deleted on the way."""
        now = time.time()
        self._write(delete(CONSOLE_SESSION).where(C.expires < now))
        self._bound_pending()
        s = Session(secrets.token_urlsafe(32), created=now)
        self._write(insert(CONSOLE_SESSION).values(id_hash=id_hash(s.sid), username=s.username,
                                                   fhir_user=s.fhir_user, secret=_seal(s), created=now, used=now,
                                                   expires=self._expiry(s, now)))
        return s

    def _bound_pending(self) -> None:
        """Anyone may start a sign-in, and each one is a row until it expires: past ``MAX_PENDING`` of them the
        oldest half goes (their sign-ins then fail and start again), so a flood of sign-in starts cannot fill
        the table. Signed-in sessions are never dropped this way."""
        pending = C.username.is_(None)
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(CONSOLE_SESSION).where(pending)).scalar_one()
            if n < MAX_PENDING:
                return
            cutoff = conn.execute(select(C.created).where(pending).order_by(C.created.desc())
                                  .offset(MAX_PENDING // 2).limit(1)).scalar_one_or_none()
        if cutoff is not None:
            self._write(delete(CONSOLE_SESSION).where(pending, C.created <= cutoff))

    def save(self, s: Session) -> None:
        """Write the session's current state (sign-in progress, tokens after a sign-in or a refresh)."""
        now = time.time()
        self._write(update(CONSOLE_SESSION).where(C.id_hash == id_hash(s.sid)).values(
            username=s.username, fhir_user=s.fhir_user, secret=_seal(s), used=now, expires=self._expiry(s, now)))

    def drop(self, sid: str) -> None:
        """Delete the session (sign-out)."""
        self._write(delete(CONSOLE_SESSION).where(C.id_hash == id_hash(sid)))

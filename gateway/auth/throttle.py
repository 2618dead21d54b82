"""Throttling of failed sign-ins (login page) and failed token requests (token endpoint), per account and per
client address, counted in the database (table ``auth_failure``) so every worker process sees the same
counts. A key with too many failures inside the window is refused with a Retry-After until the oldest of
those failures leaves the window (a sliding window), without checking the password or secret at all.

Keys are stored as SHA-256 digests of ``<kind>:<value>``: a user name typed by mistake into the password
field, or a probing address, is never kept in clear."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from .tables import FAILURE

PRUNE_EVERY = 60  # seconds between deletions of failures older than the window (per process)


@dataclass(frozen=True)
class Key:
    """One throttled key: an account (a user name on the login page, a client id on the token endpoint)
    or a client address; ``limit`` is how many failures it may have inside the window."""
    kind: str  # "user" | "client" | "address"
    value: str
    limit: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.value}".encode("utf-8", "replace")).hexdigest()


class Throttle:
    """Failure counts per key over a sliding window of ``window`` seconds; a limit of 0 turns a kind off."""

    def __init__(self, engine: Engine, account_limit: int = 5, address_limit: int = 30, window: int = 900) -> None:
        self.engine = engine
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window = window
        self._pruned = 0.0

    def keys(self, account_kind: str, account: str | None, address: str | None) -> list[Key]:
        """The keys a request counts against: its account (when named) and its client address (when known)."""
        out = []
        if account and self.account_limit > 0:
            out.append(Key(account_kind, account, self.account_limit))
        if address and self.address_limit > 0:
            out.append(Key("address", address, self.address_limit))
        return out

    def retry_after(self, keys: list[Key], now: float | None = None) -> int | None:
        """Seconds until the most throttled of ``keys`` may try again; None when none is over its limit."""
        if not keys or self.window <= 0:
            return None
        now = int(time.time() if now is None else now)
        wait = 0
        with self.engine.connect() as conn:
            for k in keys:
                recent = conn.execute(select(FAILURE.c.at).where(FAILURE.c.key == k.digest,
                                                                 FAILURE.c.at > now - self.window)
                                      .order_by(FAILURE.c.at.desc()).limit(k.limit)).scalars().all()
                if len(recent) >= k.limit:  # the limit-th latest failure must leave the window first
                    wait = max(wait, recent[-1] + self.window - now)
        return max(1, wait) if wait else None

    def failed(self, keys: list[Key], now: float | None = None) -> None:
        """Record one failure against each key (and now and then forget failures older than the window)."""
        if not keys or self.window <= 0:
            return
        now = int(time.time() if now is None else now)
        with self.engine.begin() as conn:
            conn.execute(insert(FAILURE), [{"key": k.digest, "at": now} for k in keys])
            if now - self._pruned >= PRUNE_EVERY:
                conn.execute(delete(FAILURE).where(FAILURE.c.at <= now - self.window))
                self._pruned = now

    def succeeded(self, key: Key | None) -> None:
        """A successful sign-in clears its account's failures (the address keeps its count)."""
        if key is None:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(FAILURE).where(FAILURE.c.key == key.digest))

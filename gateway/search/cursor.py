"""Opaque, tamper-evident page cursors for keyset paging of searches and histories.

A page link the server builds carries ``_cursor=<token>`` instead of an offset. The token names a position
in the result order — the sort key values and the surrogate key of the row a page ends (or starts) at — and
the direction to go from there, so the next page starts right after the last row seen whatever was created
or deleted meanwhile. Offsets cannot do that: a deletion before the offset shifts every later row one place
forward and a client paging on never sees the row that moved onto the page it already read.

A token is ``base64url(JSON) "." base64url(HMAC-SHA256(key, JSON))[:16 bytes]``. The JSON holds the
direction, the key values, the surrogate key and a digest of what the position is relative to (the resource
type and the sort, or the history's scope), so a token is refused when it was altered, made by another
key, or is replayed on a search with another sort. Refusal is a ``BadRequest`` (400 OperationOutcome); a
token never reaches SQL except as bound values whose number and types were checked here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..fhir.errors import BadRequest

MAX_TOKEN = 4096  # characters; a genuine token is far shorter (a few sort values and two integers)
_INVALID = ("The paging cursor is not valid: it was altered, belongs to another search or sort, or was issued "
            "before the server restarted with another paging key; start again from the search's first page")


@dataclass(frozen=True)
class PageCursor:
    """A position in a result order: after (``forward``) or before (not ``forward``) the row whose sort
    key values are ``keys`` and surrogate key ``pk``. ``pk`` None with ``forward`` False means "before
    the end" (the last page); ``keys`` holds one value (str, float, int or None) per sort key."""

    forward: bool
    keys: tuple[Any, ...] = field(default=())
    pk: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes and checks cursors with one HMAC key. Every process serving the same clients needs the same
    key (``GATEWAY_PAGING_KEY``; ``serve --workers N`` hands one to its workers); without one a random key
    is made per process, so cursors stop working across a restart (their next use answers 400)."""

    def __init__(self, key: bytes | str | None = None) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        self.key = key or secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()[:16]

    @staticmethod
    def scope(*parts: Any) -> str:
        """A short digest of what a cursor's position is relative to (resource type and sort, or a history's
        type and id): a cursor is only accepted by a request with the same scope."""
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:16]

    def encode(self, cursor: PageCursor, scope: str) -> str:
        """The token for ``cursor`` within ``scope``."""
        body = {"d": "n" if cursor.forward else "p", "k": list(cursor.keys), "i": cursor.pk, "s": scope}
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, token: str, scope: str, n_keys: int) -> PageCursor:
        """The cursor a token holds; ``BadRequest`` unless it was made by this key for ``scope`` and holds
        ``n_keys`` sort values of the kinds the store compares (text, numbers, null)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise BadRequest(_INVALID)
        head, mac = token.split(".")
        try:
            payload, given = _unb64(head), _unb64(mac)
        except (binascii.Error, ValueError):
            raise BadRequest(_INVALID) from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise BadRequest(_INVALID)
        try:
            body = json.loads(payload)
        except ValueError:
            raise BadRequest(_INVALID) from None
        if not isinstance(body, dict) or body.get("s") != scope or body.get("d") not in ("n", "p"):
            raise BadRequest(_INVALID)
        keys, pk = body.get("k"), body.get("i")
        if not isinstance(keys, list) or any(not isinstance(k, (str, int, float)) and k is not None for k in keys):
            raise BadRequest(_INVALID)
        if pk is not None and (not isinstance(pk, int) or isinstance(pk, bool) or not 0 <= pk < 2**63):
            raise BadRequest(_INVALID)
        forward = body["d"] == "n"
        if pk is None and (forward or keys):
            raise BadRequest(_INVALID)
        if pk is not None and len(keys) != n_keys:
            raise BadRequest(_INVALID)
        return PageCursor(forward, tuple(keys), pk)


def search_scope(resource_type: str, sort: list[tuple[str, bool]]) -> str:
    """The scope of a search's cursors: its resource type and sort (the order its positions are in)."""
    return CursorCodec.scope("search", resource_type, sort)


def history_scope(resource_type: str | None, id: str | None) -> str:
    """The scope of a history's cursors: the system, a type, or one resource."""
    return CursorCodec.scope("history", resource_type, id)

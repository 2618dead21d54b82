"""A resource encoded for storage once, before its version is known.

Bulk writes (ingest) serialise each resource in the stage that maps and validates it, often in another process,
and the writing transaction only fills in what it alone knows: ``meta.versionId`` and ``meta.lastUpdated``. The
JSON is produced with two markers in those places and cut into three parts around them; the stored content is
the parts joined with the real values, byte for byte what ``orjson.dumps`` of the resource with that meta gives.
The same splice with a stored version's values tells whether a resource is unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from ..fhir.errors import FhirError
from ..search.index import IndexRows, index_resource

_VERSION = "@@gateway-version-id@@"
_UPDATED = "@@gateway-last-updated@@"
_VB, _UB = _VERSION.encode(), _UPDATED.encode()


class Encoded(NamedTuple):
    rtype: str
    rid: str
    parts: tuple[bytes, bytes, bytes]  # content = parts[0] + first value + parts[1] + second value + parts[2]
    version_first: bool  # the first value is meta.versionId (else meta.lastUpdated)
    index: IndexRows | None  # type: ignore[assignment]  # the field shadows tuple.index on purpose (no caller uses that)
    # the resource's index rows, or None: computed from the content when stored

    @property
    def digest(self) -> bytes:
        """Identifies the content apart from version and time (resources rendered alike give equal digests)."""
        return hashlib.sha1(b"\x00".join(self.parts)).digest()


def encode(res: dict[str, Any], index: IndexRows | None = None) -> Encoded:
    meta = dict(res.get("meta") or {})
    meta["versionId"] = _VERSION
    meta["lastUpdated"] = _UPDATED
    body = orjson.dumps({**res, "meta": meta})
    v, u = body.find(_VB), body.find(_UB)
    if body.count(_VB) != 1 or body.count(_UB) != 1:  # the markers themselves in the data
        raise FhirError(f"{res.get('resourceType')}/{res.get('id')} holds a value reserved by the server",
                        status=400, code="invalid")
    if v < u:
        parts = (body[:v], body[v + len(_VB):u], body[u + len(_UB):])
    else:
        parts = (body[:u], body[u + len(_UB):v], body[v + len(_VB):])
    return Encoded(res["resourceType"], str(res["id"]), parts, v < u, index)


def content_of(e: Encoded, version: str, last_updated: str) -> bytes:
    """The stored JSON of ``e`` as version ``version`` written at ``last_updated``."""
    a, b, c = e.parts
    if e.version_first:
        return b"".join((a, version.encode(), b, last_updated.encode(), c))
    return b"".join((a, last_updated.encode(), b, version.encode(), c))


def index_of(e: Encoded) -> IndexRows:
    return index_resource(orjson.loads(content_of(e, "1", "1970-01-01T00:00:00Z")))

"""X-Provenance (FHIR R4 provenance.html#header; Da Vinci ATR: a Producer SHOULD persist it): a client
sends a Provenance resource as JSON in the ``X-Provenance`` header of a create or update; the server stores
it together with the resource, in the same transaction, with ``target`` pointing at the version written."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from ..fhir.errors import BadRequest, Unprocessable

if TYPE_CHECKING:
    from ..store.base import Session

HEADER = "x-provenance"


def parse(header: str | None) -> dict[str, Any] | None:
    """The header's Provenance, or None without the header; 400 when it is not a JSON Provenance."""
    if header is None:
        return None
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise BadRequest("X-Provenance must hold a Provenance resource as JSON") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Provenance":
        raise BadRequest("X-Provenance must hold a Provenance resource (resourceType 'Provenance')")
    return doc


def _refers_to(reference: Any, rtype: str, rid: str | None) -> bool:
    if not isinstance(reference, str):
        return False
    parts = reference.split("/_history/")[0].split("/")
    return len(parts) >= 2 and parts[-2] == rtype and (rid is None or parts[-1] == rid)


def check_targets(provenance: dict[str, Any], rtype: str, rid: str | None) -> dict[str, Any]:
    """422 when a target the client gave names another resource; returns the Provenance with a stand-in
    target, for validation before anything is written (``target`` is 1..*)."""
    for t in provenance.get("target") or []:
        if not isinstance(t, dict) or not _refers_to(t.get("reference"), rtype, rid):
            raise Unprocessable(f"X-Provenance target {t!r} is not the {rtype} being written; leave target out "
                                "or name that resource")
    return {**provenance, "target": [{"reference": f"{rtype}/{rid or 'pending'}"}]}


def store_with(tx: Session, provenance: dict[str, Any], written: Any) -> Any:
    """Write the Provenance in ``tx`` (the resource's own transaction), targeting the written version."""
    body = {**provenance, "id": str(uuid.uuid4()),
            "target": [{"reference": f"{written.resource_type}/{written.id}/_history/{written.version}"}]}
    body.pop("meta", None)
    return tx.write(body, "POST", known_new=True)

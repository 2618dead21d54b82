"""Generate the CapabilityStatement from what the server implements: the template in profiles/, the
interaction list below (the routes' own table), the search parameter registry and the operation registry
(collected by gateway/app.py: system-level operations under ``rest.operation``, type- and instance-level
ones under the ``rest.resource`` entry of each type they serve)."""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..fhir.dates import now_instant
from ..fhir.deqm_rules import ENFORCED
from ..fhir.resource_types import RESOURCE_TYPES, profiles_dir
from ..operations import Registry
from ..search.params import registry

# type-level interactions every resource type supports; a test exercises each one
TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type")
SUPPORTED_PARAM_TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri"}
MODIFIER_DOC = {
    "string": ":exact :contains :missing",
    "token": ":not :text :missing",
    "reference": ":[type] :missing, chaining (e.g. subject:Patient.identifier), _has",
    "date": "prefixes eq ne gt lt ge le sa eb ap; :missing",
    "number": "prefixes eq ne gt lt ge le ap; :missing",
    "quantity": "prefixes eq ne gt lt ge le ap; [number]|[system]|[code]; :missing",
    "uri": ":below :above :missing",
    "composite": "value$value",
}


def served_formats() -> list[str]:
    """The wire formats the server answers in: FHIR JSON always, FHIR XML when its converter can run
    (``fhir/xml.py``; the middleware in ``api/xmlformat.py`` serves it for every interaction)."""
    from ..fhir.xml import available

    formats = ["application/fhir+json", "json", "application/json"]
    if available():
        formats += ["application/fhir+xml", "xml", "application/xml"]
    return formats


def build_capability(base_url: str, operations: Registry | None = None) -> dict[str, Any]:
    """The server's CapabilityStatement; ``operations`` (the registry) supplies the operation lists."""
    cs = json.loads((profiles_dir() / "capability-statement.json").read_text())
    cs["date"] = now_instant()
    cs["format"] = served_formats()
    cs["software"] = {"name": "fhir-vbc-gateway", "version": __version__}
    cs["implementation"] = {"description": "FHIR VBC gateway", "url": base_url}
    rest = cs["rest"][0]
    reg = registry()
    resources = []
    for rtype in sorted(RESOURCE_TYPES):
        params = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
        includes, revincludes = [], []
        for code, sp in sorted(reg.params_for(rtype).items()):
            if code in ("_id", "_lastUpdated") or sp.type not in SUPPORTED_PARAM_TYPES or sp.extract is None:
                continue
            if sp.type == "composite" and len(sp.components) != 2:  # only pairs are indexed
                continue
            p: dict[str, Any] = {"name": code, "definition": sp.url, "type": sp.type}
            if sp.type in MODIFIER_DOC:
                p["documentation"] = MODIFIER_DOC[sp.type]
            params.append(p)
            if sp.type == "reference":
                includes.append(f"{rtype}:{code}")
        for other in sorted(RESOURCE_TYPES):
            for code, sp in reg.params_for(other).items():
                if sp.type == "reference" and sp.extract is not None and (not sp.targets or rtype in sp.targets):
                    revincludes.append(f"{other}:{code}")
        entry: dict[str, Any] = {"type": rtype}
        if rtype == "Subscription":  # Subscriptions R5 Backport: the one topic offered (gateway/subscriptions)
            from ..fhir.subscription_topic import BACKPORT, TOPIC

            entry["extension"] = [{"url": f"{BACKPORT}/capabilitystatement-subscriptiontopic-canonical",
                                   "valueCanonical": TOPIC}]
            entry["documentation"] = ("Da Vinci ATR list-change topic only: criteria = the topic, filter "
                                      "Group/<id>, rest-hook, id-only or empty payloads; handshake on status "
                                      "'requested', heartbeats, failures set status 'error'")
        if rtype in ENFORCED:
            entry["supportedProfile"] = ENFORCED[rtype]
        resources.append({
            **entry,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": ["*", *includes],
            "searchRevInclude": revincludes,
            "searchParam": params,
        })
        ops = operations.resource_operations(rtype) if operations is not None else []
        if ops:
            resources[-1]["operation"] = [op.capability_entry() for op in ops]
    rest["resource"] = resources
    rest["searchParam"] = [
        {"name": "_count", "type": "number"}, {"name": "_sort", "type": "string"},
        {"name": "_summary", "type": "token"}, {"name": "_elements", "type": "string"},
        {"name": "_include", "type": "string"}, {"name": "_revinclude", "type": "string"},
        {"name": "_total", "type": "token"}, {"name": "_offset", "type": "number"},
    ]
    system_ops = operations.system_operations() if operations is not None else []
    if system_ops:
        rest["operation"] = [op.capability_entry() for op in system_ops]
    return cs

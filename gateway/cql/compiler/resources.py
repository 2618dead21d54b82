"""Translate FHIR Library resources that carry CQL text: the ELM JSON is added as an
``application/elm+json`` content entry, included libraries are found among the given Libraries by name.

This is how a measure whose Libraries hold only ``text/cql`` becomes runnable by the engine.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .library import Diagnostic, elm_json, translate_library

CQL_TYPE = "text/cql"
ELM_TYPE = "application/elm+json"
_INCLUDE = re.compile(r"^\s*include\s+(\"?)([A-Za-z_][\w.]*)\1(?:\s+version\s+'([^']*)')?", re.M)


@dataclass
class LibraryTranslation:
    """The translation of one Library resource: its name and version, and the diagnostics."""

    name: str
    version: str | None
    errors: list[Diagnostic]


def content_type(att: Any) -> str:
    """The media type of an attachment, without parameters."""
    return str(att.get("contentType", "")).split(";")[0].strip() if isinstance(att, dict) else ""


def cql_text(library: dict[str, Any]) -> str | None:
    """The ``text/cql`` content of a Library resource, decoded, or None."""
    for att in library.get("content") or []:
        if isinstance(att, dict) and content_type(att) == CQL_TYPE and isinstance(att.get("data"), str):
            try:
                return base64.b64decode(att["data"], validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):  # not base64 or not UTF-8: no CQL to translate
                return None
    return None


def translate_resources(resources: list[dict[str, Any]], replace_elm: bool = True
                        ) -> tuple[list[dict[str, Any]], list[LibraryTranslation]]:
    """The resources with the CQL of every Library translated: its ELM content entry added (an existing one
    replaced when ``replace_elm``, otherwise kept and the Library left as it is). Includes resolve to the other
    Libraries in ``resources`` by name (and version when several share a name)."""
    texts: dict[tuple[str, str | None], str] = {}
    for r in resources:
        if r.get("resourceType") == "Library" and r.get("name"):
            text = cql_text(r)
            if text is not None:
                texts[(r["name"], r.get("version"))] = text

    def provider(name: str, version: str | None) -> str | None:
        if (name, version) in texts:
            return texts[(name, version)]
        same = [t for (n, _), t in texts.items() if n == name]
        return same[0] if len(same) == 1 or (same and version is None) else None

    out: list[dict[str, Any]] = []
    report: list[LibraryTranslation] = []
    cache: dict[str, Any] = {}  # included libraries, translated once for all the Libraries
    for r in resources:
        text = cql_text(r) if r.get("resourceType") == "Library" else None
        has_elm = any(content_type(a) == ELM_TYPE for a in r.get("content") or [])
        if text is None or (has_elm and not replace_elm):
            out.append(r)
            continue
        result = translate_library(text, provider, cache)
        report.append(LibraryTranslation(r.get("name", ""), r.get("version"), result.errors))
        content = [a for a in r.get("content") or [] if content_type(a) != ELM_TYPE]
        if result.elm is not None:
            content.append({"contentType": ELM_TYPE,
                            "data": base64.b64encode(elm_json(result.elm).encode("utf-8")).decode("ascii")})
        out.append({**r, "content": content})
    return out, report


def included_names(library: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(name, version or None) of every library the Library's CQL text includes, in the order written."""
    return [(m.group(2), m.group(3)) for m in _INCLUDE.finditer(cql_text(library) or "")]


def translate_stored(library: dict[str, Any], find: Callable[[str, str | None], dict[str, Any] | None]
                     ) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """The ELM of a stored Library that holds only CQL (stored before the translator existed, or written when
    its CQL did not translate), translated on demand: the Libraries it includes, and theirs in turn, are
    looked up with ``find(name, version)`` (the caller's own, gated, way of reading Libraries). Returns the
    ELM JSON (None when there is no CQL or it does not translate cleanly) and the diagnostics."""
    text = cql_text(library)
    if text is None:
        return None, []

    def provider(name: str, version: str | None) -> str | None:
        found = find(name, version)
        return cql_text(found) if found is not None else None

    result = translate_library(text, provider)
    if result.errors:
        return None, result.errors
    return (json.loads(elm_json(result.elm)) if result.elm is not None else None), []

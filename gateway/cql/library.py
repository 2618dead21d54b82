"""ELM libraries: loading ELM JSON from Library resources and resolving includes by name and version.

Library canonicals do not line up in published content (Library resources say
``https://madie.cms.gov/Library/X`` while ELM includes and Measure.library say ``http://ecqi.healthit.gov/...``),
so libraries are resolved by their ELM identifier (name and version), with the canonical URL as a second key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .values import CqlError


class LibraryNotFound(CqlError):
    pass


class InvalidElm(CqlError):
    pass


@dataclass
class ElmLibrary:
    name: str
    version: str | None
    elm: dict[str, Any]
    url: str | None = None
    includes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local alias -> (name, version)
    defs: dict[str, dict[str, Any]] = field(default_factory=dict)  # expression definitions
    functions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # overloads by name
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    valuesets: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    codesystems: dict[str, dict[str, Any]] = field(default_factory=dict)
    concepts: dict[str, dict[str, Any]] = field(default_factory=dict)
    _retrieves: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def retrieves(self) -> list[dict[str, Any]]:
        """Every Retrieve node of the library's statements, found once: what ``retrieved_types`` and the
        read-ahead's scopes (``retrieve_scope.py``) look at. Annotations (the CQL source as narrative, often
        most of a library's ELM) are not walked: they hold no expressions."""
        if self._retrieves is None:
            found: list[dict[str, Any]] = []
            stack: list[Any] = [self.elm.get("statements")]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if node.get("type") == "Retrieve" and isinstance(node.get("dataType"), str):
                        found.append(node)
                    stack.extend(v for k, v in node.items() if k != "annotation" and isinstance(v, (dict, list)))
                elif isinstance(node, list):
                    stack.extend(v for v in node if isinstance(v, (dict, list)))
            self._retrieves = found
        return self._retrieves

    @property
    def key(self) -> str:
        return f"{self.name}|{self.version or ''}"

    @classmethod
    def from_elm(cls, elm: dict[str, Any], url: str | None = None) -> ElmLibrary:
        lib = elm.get("library") if isinstance(elm, dict) else None
        if not isinstance(lib, dict) or not isinstance(lib.get("identifier"), dict):
            raise InvalidElm("ELM JSON has no library.identifier")
        ident = lib["identifier"]
        out = cls(ident.get("id", ""), ident.get("version"), lib, url)
        for inc in (lib.get("includes") or {}).get("def", []):
            out.includes[inc["localIdentifier"]] = (inc["path"], inc.get("version"))
        for d in (lib.get("statements") or {}).get("def", []):
            if d.get("type") == "FunctionDef":
                out.functions.setdefault(d["name"], []).append(d)
            else:
                out.defs[d["name"]] = d
        for section, target in (("parameters", out.parameters), ("valueSets", out.valuesets),
                                ("codes", out.codes), ("codeSystems", out.codesystems), ("concepts", out.concepts)):
            for d in (lib.get(section) or {}).get("def", []):
                target[d["name"]] = d
        return out


def retrieved_types(libraries: Iterable[ElmLibrary]) -> set[str]:
    """The FHIR resource types the libraries' Retrieve expressions read (``{http://hl7.org/fhir}Observation``
    gives ``Observation``): what a data source has to provide for them."""
    return {node["dataType"].rsplit("}", 1)[-1] for lib in libraries for node in lib.retrieves()}


def elm_from_library_resource(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The ELM JSON attached to a FHIR Library (``application/elm+json``), or None."""
    for att in resource.get("content") or []:
        if att.get("contentType", "").split(";")[0].strip() == "application/elm+json" and att.get("data"):
            try:
                raw = base64.b64decode(att["data"])
                try:
                    return orjson.loads(raw)  # type: ignore[no-any-return]
                except orjson.JSONDecodeError:  # what orjson refuses and json reads (integers past 64 bits)
                    return json.loads(raw)  # type: ignore[no-any-return]
            except (ValueError, TypeError) as exc:
                raise InvalidElm(f"Library {resource.get('url') or resource.get('id')}: ELM does not parse "
                                 f"({exc})") from None
    return None


class LibraryManager:
    """Holds ELM libraries and resolves references between them."""

    def __init__(self) -> None:
        self._by_key: dict[str, ElmLibrary] = {}
        self._by_name: dict[str, list[ElmLibrary]] = {}
        self._by_url: dict[str, ElmLibrary] = {}

    def add(self, lib: ElmLibrary) -> ElmLibrary:
        self._by_key[lib.key] = lib
        self._by_name.setdefault(lib.name, []).append(lib)
        if lib.url:
            self._by_url[lib.url] = lib
            if lib.version:
                self._by_url[f"{lib.url}|{lib.version}"] = lib
        return lib

    def add_resources(self, resources: Iterable[dict[str, Any]]) -> None:
        for r in resources:
            if r.get("resourceType") == "Library":
                elm = elm_from_library_resource(r)
                if elm is not None:
                    self.add(ElmLibrary.from_elm(elm, r.get("url")))

    def get(self, name: str, version: str | None = None) -> ElmLibrary:
        if "/" in name:  # includes may name a library by canonical path: resolve by its last segment
            name = name.rstrip("/").rsplit("/", 1)[-1]
        if version is not None and f"{name}|{version}" in self._by_key:
            return self._by_key[f"{name}|{version}"]
        candidates = self._by_name.get(name)
        if not candidates:
            raise LibraryNotFound(f"Library {name}{' version ' + version if version else ''} is not loaded")
        if version is not None:
            raise LibraryNotFound(f"Library {name} version {version} is not loaded "
                                  f"(have {', '.join(c.version or '?' for c in candidates)})")
        return candidates[-1]

    def libraries(self) -> list[ElmLibrary]:
        return list(self._by_key.values())

    def by_canonical(self, url: str) -> ElmLibrary:
        """Resolve a Measure.library canonical: exact URL first, then the last path segment as the name."""
        if url in self._by_url:
            return self._by_url[url]
        base, _, version = url.partition("|")
        if base in self._by_url and not version:
            return self._by_url[base]
        name = base.rstrip("/").rsplit("/", 1)[-1]
        return self.get(name, version or None)

    def included(self, lib: ElmLibrary, alias: str) -> ElmLibrary:
        if alias not in lib.includes:
            raise LibraryNotFound(f"Library {lib.name} has no include named {alias}")
        name, version = lib.includes[alias]
        return self.get(name, version)

"""What the Retrieves of a set of libraries can return, known before any patient is read: for each resource
type whose every Retrieve filters by codes fixed in the ELM (a value set, a code, a concept, a list of them)
or by a FHIR vital-signs profile, the codes and profiles a resource must carry to be returned by one of them.

A population run reads each chunk of patients' data ahead of evaluation (``gateway/deqm/measure_data.py``).
Observations are most of a realistic chart (70 of 122 resources in the benchmark charts) and a measure looks
at a handful of their codes; reading, decoding and filtering the rest is most of the cost of a run that
retrieves them. The read-ahead uses these scopes to leave out, in the database's search index, resources no
Retrieve could return. The scope is a superset: a resource left in is still filtered by the Retrieve itself
(system and code, profile), exactly as without the scope, so results cannot change; a resource left out
carries none of the codes at the Retrieve's code path and declares none of the profiles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .library import ElmLibrary, LibraryManager, LibraryNotFound
from .ops_query import VITAL_SIGN_PROFILES
from .terminology import TerminologyService
from .values import CqlError

VITAL_SIGNS_BASE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class TypeScope:
    """The resources of one type some Retrieve may return: carrying one of the codes at one of the code
    paths (code values only: the system is checked by the Retrieve), or declaring one of the profiles."""

    codes: tuple[tuple[str, frozenset[str]], ...]  # (code path, code values), one entry per path
    profiles: frozenset[str]


class _Unknown(Exception):
    """A Retrieve whose codes are computed at run time (or cannot be resolved now): its type is read whole."""


def retrieve_scopes(manager: LibraryManager, libraries: Iterable[ElmLibrary], terminology: TerminologyService
                    ) -> dict[str, TypeScope]:
    """resource type -> the scope of its Retrieves, for the types whose every Retrieve in ``libraries`` (all of
    their statements, reachable or not) filters by fixed codes or a vital-signs profile. Types missing from the
    result have a Retrieve that may return any resource of the type."""
    paths: dict[str, dict[str, set[str]]] = {}
    profiles: dict[str, set[str]] = {}
    whole: set[str] = set()
    for lib in libraries:
        for node in lib.retrieves():
            data_type = str(node["dataType"]).rsplit("}", 1)[-1]
            if data_type in whole:
                continue
            try:
                path, codes, profile = _scope_of(manager, lib, node, terminology)
            except _Unknown:
                whole.add(data_type)
                continue
            by_path = paths.setdefault(data_type, {})
            if path is not None:
                by_path.setdefault(path, set()).update(codes)
            if profile is not None:
                profiles.setdefault(data_type, set()).add(profile)
    return {t: TypeScope(tuple((p, frozenset(c)) for p, c in sorted(by_path.items())),
                         frozenset(profiles.get(t, ())))
            for t, by_path in paths.items() if t not in whole}


def _scope_of(manager: LibraryManager, lib: ElmLibrary, node: dict[str, Any], terminology: TerminologyService
              ) -> tuple[str | None, set[str], str | None]:
    """(code path, code values, profile) of one Retrieve; _Unknown when it may return any resource."""
    template = str(node.get("templateId") or "")
    if node.get("codes") is None:
        name = template[len(VITAL_SIGNS_BASE):] if template.startswith(VITAL_SIGNS_BASE) else ""
        loinc = VITAL_SIGN_PROFILES.get(name)
        if loinc is None:  # a plain or QI-Core profile Retrieve: every resource of the type may qualify
            raise _Unknown
        # ops_query._vital_sign_match: declares the profile, or declares none and has the LOINC code
        return "code", {loinc}, template.split("|", 1)[0]
    path = node.get("codeProperty") or "code"
    if "." in path or node.get("context") is not None:
        raise _Unknown
    return path, _codes(manager, lib, node["codes"], terminology), None


def _codes(manager: LibraryManager, lib: ElmLibrary, node: Any, terminology: TerminologyService) -> set[str]:
    """The code values a Retrieve's codes expression stands for, when fixed in the ELM."""
    if not isinstance(node, dict):
        raise _Unknown
    t = node.get("type")
    if t == "ToList":
        return _codes(manager, lib, node.get("operand"), terminology)
    if t == "List":
        out: set[str] = set()
        for el in node.get("element") or []:
            out |= _codes(manager, lib, el, terminology)
        return out
    target = _library(manager, lib, node.get("libraryName"))
    if t == "ValueSetRef":
        d = target.valuesets.get(node.get("name", ""))
        if d is None or not d.get("id"):
            raise _Unknown
        url = d["id"] + (f"|{d['version']}" if d.get("version") else "")
        try:
            return {c for _, c in terminology.codes(url)}
        except CqlError:  # not resolvable now: the Retrieve reports it when evaluated
            raise _Unknown from None
    if t == "CodeRef":
        return {_code_id(target, node.get("name"))}
    if t == "ConceptRef":
        d = target.concepts.get(node.get("name", ""))
        if d is None:
            raise _Unknown
        return {_code_id(target, c.get("name")) for c in d.get("code") or []}
    if t == "Code" and isinstance(node.get("code"), str):
        return {node["code"]}
    if t == "Concept":
        codes = [c.get("code") for c in node.get("code") or []]
        if all(isinstance(c, str) for c in codes):
            return set(codes)
    raise _Unknown


def _library(manager: LibraryManager, lib: ElmLibrary, alias: str | None) -> ElmLibrary:
    if not alias:
        return lib
    try:
        return manager.included(lib, alias)
    except LibraryNotFound:
        raise _Unknown from None


def _code_id(lib: ElmLibrary, name: Any) -> str:
    d = lib.codes.get(name) if isinstance(name, str) else None
    if d is None or not isinstance(d.get("id"), str):
        raise _Unknown
    return str(d["id"])

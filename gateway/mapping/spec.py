"""Mapping files (YAML, ``mappings/`` at the repository root): loading and the parts the engine reads.

The format is described for integrators in ``docs/guides/mappings.md``. A mapping file names its format, its
version (recorded on every resource it creates, in ``meta.source``), the reader that turns input files into
records (``tables`` for CSV and fixed-width files, ``hl7v2``, ``x12-837``), the tables and their fields,
lookup tables, code and identifier systems, and the entities: which records make which FHIR resources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

# the repository's mappings/ folder; GATEWAY_MAPPINGS_DIR points elsewhere (an installed gateway, own mappings)
MAPPINGS_DIR = Path(os.environ.get("GATEWAY_MAPPINGS_DIR") or Path(__file__).resolve().parent.parent.parent / "mappings")
FIELD_TYPES = ("text", "date", "datetime", "decimal", "int")


class SpecError(Exception):
    """A mapping file that is itself wrong (not a data problem)."""


@dataclass
class FieldSpec:
    name: str
    start: int | None = None  # 1-based, fixed-width files only
    length: int | None = None
    type: str = "text"


@dataclass
class TableSpec:
    name: str
    match: list[str]
    fields: list[FieldSpec]
    record_length: int | None = None
    min_length: int | None = None  # shorter lines are truncated; longer ones up to record_length are padded

    @property
    def fixed_width(self) -> bool:
        return all(f.start is not None for f in self.fields) and bool(self.fields)


@dataclass
class EntitySpec:
    name: str
    source: str | None  # table name; None = emitted once (constants)
    resources: list[Any]
    key: str | None = None
    latest_by: list[str] = field(default_factory=list)
    group_by: str | None = None
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, Any] | None = None
    when: str | None = None


@dataclass
class MappingSpec:
    format: str
    version: str
    direction: str
    reader: str
    description: str
    systems: dict[str, str]
    lookups: dict[str, dict[str, Any]]
    null_values: list[str]
    tables: dict[str, TableSpec]
    crosswalks: dict[str, dict[str, str]]
    entities: list[EntitySpec]
    path: Path
    raw: dict[str, Any]
    # strict: a code that fails its format check and an X12 implementation-guide usage rule the file breaks
    # reject the record; lenient (the default): the record loads with a data-quality warning
    strictness: str = "lenient"

    @property
    def source_uri(self) -> str:
        return f"urn:fhir-gateway:mapping:{self.format}|{self.version}"


def _field(name: str, v: Any) -> FieldSpec:
    if v is None or isinstance(v, str):
        return FieldSpec(name, type=v or "text")
    if isinstance(v, list) and len(v) in (2, 3):
        t = v[2] if len(v) == 3 else "text"
        if t not in FIELD_TYPES:
            raise SpecError(f"field {name}: unknown type {t!r}")
        return FieldSpec(name, int(v[0]), int(v[1]), t)
    raise SpecError(f"field {name}: expected [start, length(, type)] or a type name, got {v!r}")


def load_spec(path: Path) -> MappingSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a mapping file is a YAML mapping")
    for k in ("format", "version", "reader", "entities"):
        if k not in raw:
            raise SpecError(f"{path}: missing '{k}'")
    systems = {str(k): str(v) for k, v in (raw.get("systems") or {}).items()}
    tables = {}
    for name, t in (raw.get("tables") or {}).items():
        fields = [_field(fn, fv) for fn, fv in (t.get("fields") or {}).items()]
        tables[name] = TableSpec(name, [str(m) for m in t.get("match") or [name]], fields, t.get("record_length"),
                                 t.get("min_length"))
    entities = []
    for e in raw["entities"]:
        entities.append(EntitySpec(
            name=e["name"], source=e.get("from"), resources=_expand_systems(e["resources"], systems),
            key=e.get("key"), latest_by=list(e.get("latest_by") or []), group_by=e.get("group_by"),
            children=dict(e.get("children") or {}), versions=e.get("versions"), when=e.get("when")))
    return MappingSpec(
        format=str(raw["format"]), version=str(raw["version"]), direction=str(raw.get("direction", "inbound")),
        reader=str(raw["reader"]), description=str(raw.get("description", "")).strip(), systems=systems,
        lookups={k: {str(a): b for a, b in v.items()} for k, v in (raw.get("lookups") or {}).items()},
        null_values=[str(v) for v in raw.get("null_values") or []], tables=tables,
        crosswalks=dict(raw.get("crosswalks") or {}), entities=entities, path=path, raw=raw,
        strictness=_strictness(raw.get("strictness", "lenient"), path))


STRICTNESS = ("lenient", "strict")


def _strictness(value: Any, path: Path) -> str:
    if value not in STRICTNESS:
        raise SpecError(f"{path}: strictness {value!r}: use {' or '.join(STRICTNESS)}")
    return str(value)


def with_strictness(spec: MappingSpec, strictness: str | None) -> MappingSpec:
    """The mapping with another strictness (``lenient`` or ``strict``); unchanged for None."""
    if strictness is None or strictness == spec.strictness:
        return spec
    if strictness not in STRICTNESS:
        raise SpecError(f"strictness {strictness!r}: use {' or '.join(STRICTNESS)}")
    return replace(spec, strictness=strictness)


def _expand_systems(node: Any, systems: dict[str, str]) -> Any:
    """``system: "@icd10cm"`` in a template stands for the URI the file declares under ``systems``."""
    if isinstance(node, str) and node.startswith("@"):
        if node[1:] not in systems:
            raise SpecError(f"unknown system alias {node!r}")
        return systems[node[1:]]
    if isinstance(node, dict):
        return {k: _expand_systems(v, systems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_systems(v, systems) for v in node]
    return node


def available(directory: Path = MAPPINGS_DIR) -> dict[str, Path]:
    """Inbound mapping files by format name."""
    out = {}
    for p in sorted(directory.glob("*.inbound.yaml")):
        out[p.name.removesuffix(".inbound.yaml")] = p
    return out


def find_spec(fmt: str, directory: Path = MAPPINGS_DIR) -> MappingSpec:
    files = available(directory)
    if fmt not in files:
        raise SpecError(f"no mapping for format '{fmt}' (known: {', '.join(files) or 'none'})")
    return load_spec(files[fmt])

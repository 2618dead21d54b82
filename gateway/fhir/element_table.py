"""The elements of every FHIR R4B type, read from a table generated from the ``fhir.resources`` models.

The CQL engine's property navigation (``gateway.cql.fhirmodel.type_info``), ``_summary=true``
(``elements.summary_elements``) and the XML converter (``xml.elements``) need only element metadata: each
element's JSON name, FHIR type, whether it repeats, its choice group, the isSummary flag and the XML order.
Reading that from the pydantic model classes costs a fresh process about 0.3 s (importing fhir.resources and
building the classes of the types a measure touches), which is a large share of a short CLI run, a pool
worker's start or a benchmark. So ``compute_table`` reads the models once, ``tools/gen_element_table.py``
commits its result as ``element-table.json`` next to this module, and the readers load that file (about a
millisecond) instead. ``tests/test_element_table.py`` compares the file with a fresh ``compute_table()``, so
a fhir.resources upgrade that changes an element fails there until the generator is run again.

Table layout (``types``: type name -> entry, one type per line): ``e`` the elements in the models' field
order, each ``[json name, FHIR type, 1 when it repeats else 0]`` plus the choice group's name for a choice
element (``valueQuantity`` -> ``value``); ``s`` the sorted JSON names flagged isSummary; ``x`` the XML order
as indices into ``e``. A type is in the table when ``fhir.resources.R4B.get_fhir_model_class`` knows it:
resources, complex data types, backbone elements (``EncounterHospitalization``), ``Element``, ``Resource``.
"""

from __future__ import annotations

import typing
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson

TABLE_FILE = Path(__file__).with_name("element-table.json")

_PRIMITIVE_MARKERS = {  # fhir.resources annotation metadata class -> FHIR primitive type name
    "Boolean": "boolean", "Integer": "integer", "Integer64": "integer64", "String": "string", "Decimal": "decimal",
    "Uri": "uri", "Url": "url", "Canonical": "canonical", "Base64Binary": "base64Binary", "Instant": "instant",
    "Date": "date", "DateTime": "dateTime", "Time": "time", "Code": "code", "Oid": "oid", "Id": "id",
    "Markdown": "markdown", "UnsignedInt": "unsignedInt", "PositiveInt": "positiveInt", "Uuid": "uuid",
    "Xhtml": "xhtml",
}
_PLAIN = {bool: "boolean", int: "integer", str: "string", Decimal: "decimal", float: "decimal"}
# the FHIR primitive types an element of the table can have (every other type is complex or Resource)
PRIMITIVE_TYPES = frozenset(_PRIMITIVE_MARKERS.values())


class Element(NamedTuple):
    """One element of a FHIR type."""

    json_name: str
    type: str  # FHIR type name: a primitive, a data type, Resource, or a backbone element's class name
    is_list: bool
    choice: str | None  # the choice group a typed alternative belongs to (valueQuantity -> value)


class TypeEntry(NamedTuple):
    """What the table holds for one FHIR type."""

    elements: tuple[Element, ...]  # in the models' field order
    summary: frozenset[str]  # JSON names of the elements flagged isSummary
    sequence: tuple[int, ...]  # the XML element order, as indices into ``elements``


@cache
def _entry_texts() -> dict[str, bytes]:
    """Type name -> the JSON text of its entry. The file holds one type per line (``"Name":{...},``, as
    ``table_bytes`` writes it), so indexing the lines takes about 1 ms where parsing the whole file takes 6 to
    10, and a process parses only the entries of the types it uses."""
    out: dict[str, bytes] = {}
    for line in TABLE_FILE.read_bytes().split(b"\n"):
        if line.startswith(b'"'):
            name, _, rest = line.partition(b'":')
            out[name[1:].decode()] = rest.rstrip(b",")
    return out


def type_entry(type_name: str) -> TypeEntry | None:
    """The elements of the R4B type ``type_name`` from the committed table, or None for a name that is not a
    type of the models (a primitive such as ``boolean``, a code type, an unknown name). The file is indexed on
    the first call and each entry parsed when asked for; callers cache what they build from it."""
    text = _entry_texts().get(type_name)
    if text is None:
        return None
    raw = orjson.loads(text)
    elements = tuple(Element(r[0], r[1], bool(r[2]), r[3] if len(r) > 3 else None) for r in raw["e"])
    return TypeEntry(elements, frozenset(raw["s"]), tuple(raw["x"]))


# ------------------------------------------------------------------------------- computing it from the models

def fhir_type_of(annotation: Any) -> tuple[str | None, bool]:
    """The FHIR type name and repetition of a model field's annotation (None for a type it does not name)."""
    is_list = False
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (origin is not None and type(None) in args):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return fhir_type_of(inner[0])
    if origin in (list, typing.List):  # noqa: UP006 - the models use typing.List
        name, _ = fhir_type_of(args[0])
        return name, True
    if origin is typing.Annotated:
        for meta in annotation.__metadata__:
            marker = _PRIMITIVE_MARKERS.get(type(meta).__name__)
            if marker:
                return marker, is_list
        return fhir_type_of(args[0])
    if annotation in _PLAIN:
        return _PLAIN[annotation], is_list
    name = getattr(annotation, "__name__", None)
    if name and name.endswith("Type") and name != "Type":
        name = name[:-4]
        return ("Resource" if name == "Resource" else name), is_list
    return None, is_list


def _entry(model: Any) -> dict[str, Any]:
    rows: list[list[Any]] = []
    summary: set[str] = set()
    for py_name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        json_name = f.alias or py_name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if not extra.get("element_property"):
            continue
        tname, is_list = fhir_type_of(f.annotation)
        if tname is None:
            continue
        choice = extra.get("one_of_many")
        rows.append([json_name, tname, int(is_list)] + ([choice] if choice is not None else []))
    index = {row[0]: i for i, row in enumerate(rows)}
    if len(index) != len(rows):  # the readers key elements by JSON name
        raise ValueError(f"{model.__name__}: two fields with one JSON name")
    sequence = [index[n] for n in model.elements_sequence() if n in index]
    sequence += [i for i in range(len(rows)) if i not in sequence]
    return {"e": rows, "s": sorted(summary), "x": sequence}


def compute_table() -> dict[str, Any]:
    """The table from the installed fhir.resources R4B models (imports them and builds every model class,
    a few seconds): what ``tools/gen_element_table.py`` writes and the test compares the file with."""
    from fhir.resources import __version__
    from fhir.resources.R4B import fhirtypes, get_fhir_model_class

    types: dict[str, Any] = {}
    # get_fhir_model_class(name) looks up fhirtypes.<name>Type (the module has no __getattr__): every name it
    # can answer for is one of these
    for attr in sorted(vars(fhirtypes)):
        if not attr.endswith("Type"):
            continue
        try:
            model = get_fhir_model_class(attr[:-4])
        except (KeyError, ValueError, ImportError, AttributeError):  # primitives have no model class
            continue
        types[attr[:-4]] = _entry(model)
    return {"source": f"fhir.resources {__version__}, R4B models; written by tools/gen_element_table.py",
            "types": types}


def table_bytes(table: dict[str, Any]) -> bytes:
    """The file form of a table: compact JSON with one type per line, the layout ``type_entry`` reads (and
    small diffs when the models change)."""
    lines = [b"{\"source\":" + orjson.dumps(table["source"]) + b",\"types\":{"]
    items = list(table["types"].items())
    for i, (name, entry) in enumerate(items):
        lines.append(orjson.dumps(name) + b":" + orjson.dumps(entry) + (b"," if i < len(items) - 1 else b""))
    lines.append(b"}}")
    return b"\n".join(lines) + b"\n"

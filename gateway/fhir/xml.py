"""FHIR R4 XML (application/fhir+xml) to and from the JSON form the gateway keeps.

The converter is driven by the R4B models' metadata (``fhir.resources``, as the generated element table of
``element_table`` holds it): the element order of a type is its ``elements_sequence()``, whether an element
repeats, is a primitive (and which), a complex type or a resource container comes from the field
annotations. XML rules followed (R4 xml.html): primitives carry their value in a ``value`` attribute with
``id`` and ``extension`` on the same element (the JSON ``_name`` sibling); an element's ``id`` and an
Extension's ``url`` are attributes; contained resources, ``Bundle.entry.resource``,
``Bundle.entry.response.outcome`` and ``Parameters.parameter.resource`` wrap the resource in its container
element; ``Narrative.div`` is embedded XHTML. Decimals keep the JSON number they came from, so a resource
makes the round trip JSON → XML → JSON unchanged (the XHTML of a narrative up to XML canonical form).

Parsing goes through ``defusedxml``: a DTD, an entity declaration or an external reference is refused, so
XXE and entity expansion bombs cannot happen; nesting is bounded like the JSON parser's. Every problem is a
``BadRequest`` (400 OperationOutcome)."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

import orjson

from .element_table import PRIMITIVE_TYPES, type_entry
from .errors import BadRequest

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"
MAX_XML_DEPTH = 128  # element nesting; a resource's JSON depth bound (64) takes about twice as many XML levels

_NUMBERS = {"integer", "integer64", "unsignedInt", "positiveInt", "decimal"}


@lru_cache(maxsize=1)
def available() -> bool:
    """True when the XML format can be served (the safe parser is installed); the CapabilityStatement's
    ``format`` lists XML only then."""
    try:
        import defusedxml.ElementTree  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Elem:
    """One element of a FHIR type: ``kind`` is primitive, complex, resource or xhtml; ``type`` the primitive
    or model class name."""

    name: str
    kind: str
    type: str
    is_list: bool


def _kind(type_name: str) -> str:
    if type_name == "xhtml":
        return "xhtml"
    if type_name in PRIMITIVE_TYPES:
        return "primitive"
    return "resource" if type_name == "Resource" else "complex"


@lru_cache(maxsize=2048)
def elements(type_name: str) -> dict[str, Elem]:
    """The elements of the R4B type ``type_name`` in XML order, by JSON name ({} for an unknown type), from
    the generated element table."""
    entry = type_entry(type_name)
    if entry is None:
        return {}
    out: dict[str, Elem] = {}
    for i in entry.sequence:
        e = entry.elements[i]
        out[e.json_name] = Elem(e.json_name, _kind(e.type), e.type, e.is_list)
    return out


# ---------------------------------------------------------------------------------------------------- writing

def _number_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    return str(value)


def html_entities(text: str) -> str:
    """``text`` with HTML named character references (``&nbsp;``, which XML does not define) as numeric ones:
    narratives written as HTML still become well-formed XHTML."""
    from html.entities import name2codepoint

    def sub(m: re.Match[str]) -> str:
        code = name2codepoint.get(m.group(1))
        return f"&#{code};" if code is not None else m.group(0)

    return re.sub(r"&([A-Za-z][A-Za-z0-9]*);", lambda m: m.group(0) if m.group(1) in (
        "amp", "lt", "gt", "quot", "apos") else sub(m), text)


def _div(out: list[str], div: Any) -> None:
    text = div if isinstance(div, str) else ""
    try:
        root = _parse(html_entities(text).encode("utf-8"))
        if root.tag in (f"{{{XHTML_NS}}}div", "div"):
            out.append(_xhtml(root, True))
            return
    except BadRequest:
        pass
    out.append(f'<div xmlns="{XHTML_NS}">{escape(text)}</div>')  # not XHTML: kept as its text


def _primitive(out: list[str], name: str, value: Any, ext: Any) -> None:
    attrs = ""
    inner: list[str] = []
    if isinstance(ext, dict):
        if "id" in ext:
            attrs += f" id={quoteattr(str(ext['id']))}"
        for e in ext.get("extension") or []:
            _complex(inner, "extension", "Extension", e)
    if value is not None:
        attrs += f" value={quoteattr(_number_text(value))}"
    if inner:
        out += [f"<{name}{attrs}>", *inner, f"</{name}>"]
    else:
        out.append(f"<{name}{attrs}/>")


def _resource(out: list[str], res: Any, top: bool = False) -> None:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        raise BadRequest("A resource in the document has no resourceType")
    rt = res["resourceType"]
    ns = f' xmlns="{FHIR_NS}"' if top else ""
    out.append(f"<{rt}{ns}>")
    _children(out, rt, res, True)
    out.append(f"</{rt}>")


def _complex(out: list[str], name: str, type_name: str, obj: Any) -> None:
    if not isinstance(obj, dict):
        out.append(f"<{name} value={quoteattr(_number_text(obj))}/>")
        return
    attrs = ""
    if "id" in obj:
        attrs += f" id={quoteattr(str(obj['id']))}"
    if type_name == "Extension" and "url" in obj:
        attrs += f" url={quoteattr(str(obj['url']))}"
    inner: list[str] = []
    _children(inner, type_name, obj, False)
    if inner:
        out += [f"<{name}{attrs}>", *inner, f"</{name}>"]
    else:
        out.append(f"<{name}{attrs}/>")


def _children(out: list[str], type_name: str, obj: dict[str, Any], is_resource: bool) -> None:
    meta = elements(type_name)
    skip = {"resourceType"} if is_resource else {"resourceType", "id"}
    if type_name == "Extension":
        skip.add("url")
    names = [n for n in meta if n in obj or f"_{n}" in obj]
    names += [k for k in obj if not k.startswith("_") and k not in meta]
    names += [k[1:] for k in obj if k.startswith("_") and k[1:] not in meta and k[1:] not in obj]
    for name in names:
        if name in skip:
            continue
        info = meta.get(name)
        value, ext = obj.get(name), obj.get(f"_{name}")
        if info is not None and info.kind == "xhtml":
            _div(out, value)
            continue
        kind = info.kind if info else ("complex" if isinstance(value, dict) or isinstance(
            value, list) and any(isinstance(v, dict) for v in value) else "primitive")
        if kind == "complex" and isinstance(value, dict) and "resourceType" in value and info is None:
            kind = "resource"
        many = isinstance(value, list) or isinstance(ext, list)
        values = value if isinstance(value, list) else ([] if value is None and many else [value])
        exts = ext if isinstance(ext, list) else [ext] * max(1, len(values))
        if kind == "primitive":
            for i in range(max(len(values), len(exts) if isinstance(ext, list) else 0)):
                _primitive(out, name, values[i] if i < len(values) else None, exts[i] if i < len(exts) else None)
        elif kind == "resource":
            for v in values:
                out.append(f"<{name}>")
                _resource(out, v)
                out.append(f"</{name}>")
        else:
            for v in values:
                _complex(out, name, info.type if info else "", v)


def _indented(pieces: list[str]) -> str:
    """One tag per line, indented by nesting; a narrative div stays one piece, its whitespace untouched."""
    lines, depth = [], 0
    for piece in pieces:
        if piece.startswith("</"):
            depth -= 1
            lines.append("  " * depth + piece)
        elif piece.endswith("/>") or piece.startswith(("<?", "<div ")):
            lines.append("  " * depth + piece)
        else:
            lines.append("  " * depth + piece)
            depth += 1
    return "\n".join(lines) + "\n"


def to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """The FHIR XML of a JSON ``resource`` (UTF-8, with the XML declaration); ``pretty`` puts each element on
    its own indented line (``_pretty=true``)."""
    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
    _resource(out, resource, True)
    return (_indented(out) if pretty else "".join(out)).encode("utf-8")


# ---------------------------------------------------------------------------------------------------- reading

def _parse(data: bytes) -> Element:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadRequest(f"XML with a DTD, entity declaration or external reference is refused ({exc})") from None
    except ParseError as exc:
        raise BadRequest(f"Malformed XML: {exc}") from None
    return typing.cast(Element, root)


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _xhtml(el: Element, root: bool) -> str:
    ns, tag = _local(el.tag)
    if ns not in (XHTML_NS, FHIR_NS, ""):
        raise BadRequest(f"Narrative XHTML holds an element outside the XHTML namespace: {tag}")
    attrs = f' xmlns="{XHTML_NS}"' if root else ""
    for k, v in el.attrib.items():
        ans, aname = _local(k)
        attrs += f" {'xml:' if ans == XML_NS else ''}{aname}={quoteattr(v)}"
    body = escape(el.text or "") + "".join(_xhtml(c, False) + escape(c.tail or "") for c in el)
    return f"<{tag}{attrs}>{body}</{tag}>" if body else f"<{tag}{attrs}/>"


def _value(type_name: str, text: str, where: str) -> Any:
    if type_name == "boolean":
        if text not in ("true", "false"):
            raise BadRequest(f"{where}: {text!r} is not a boolean")
        return text == "true"
    if type_name in _NUMBERS:
        try:
            num = orjson.loads(text)
        except orjson.JSONDecodeError:
            num = None
        if isinstance(num, bool) or not isinstance(num, (int, float)) or (
                type_name != "decimal" and not isinstance(num, int)):
            raise BadRequest(f"{where}: {text!r} is not a valid {type_name}")
        return num
    return text


def _read_resource(el: Element, depth: int) -> dict[str, Any]:
    from .resource_types import RESOURCE_TYPES

    ns, rt = _local(el.tag)
    if ns != FHIR_NS:
        raise BadRequest(f"The XML element <{rt}> is not in the FHIR namespace {FHIR_NS}")
    if rt not in RESOURCE_TYPES and not elements(rt):
        raise BadRequest(f"Unknown resource type {rt!r}")
    if el.attrib:
        raise BadRequest(f"The resource element <{rt}> takes no attributes")
    out: dict[str, Any] = {"resourceType": rt}
    _read_children(el, rt, out, depth, rt)
    return out


def _read_complex(el: Element, type_name: str, depth: int, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in el.attrib.items():
        if k == "id" or (k == "url" and type_name == "Extension"):
            out[k] = v
        else:
            raise BadRequest(f"{path}: unexpected attribute {k!r}")
    _read_children(el, type_name, out, depth, path)
    return out


def _read_children(el: Element, type_name: str, out: dict[str, Any], depth: int, path: str) -> None:
    if depth > MAX_XML_DEPTH:
        raise BadRequest(f"The XML document nests deeper than {MAX_XML_DEPTH} elements")
    if (el.text or "").strip():
        raise BadRequest(f"{path}: text content is not allowed in FHIR XML (values go in value attributes)")
    meta = elements(type_name)
    prim_lists: set[str] = set()
    for child in el:
        if not isinstance(child.tag, str):
            continue  # a comment or processing instruction
        ns, name = _local(child.tag)
        where = f"{path}.{name}"
        info = meta.get(name)
        if info is None or (ns != FHIR_NS and info.kind != "xhtml"):
            raise BadRequest(f"{where}: unknown element for {type_name}")
        if (child.tail or "").strip():
            raise BadRequest(f"{where}: text content is not allowed in FHIR XML")
        if info.kind == "xhtml":
            if ns != XHTML_NS:
                raise BadRequest(f"{where}: the narrative div must be in the XHTML namespace")
            out[name] = _xhtml(child, True)
            continue
        if info.kind == "primitive":
            ext: dict[str, Any] = {}
            for k, v in child.attrib.items():
                if k == "id":
                    ext["id"] = v
                elif k != "value":
                    raise BadRequest(f"{where}: unexpected attribute {k!r}")
            if (child.text or "").strip():
                raise BadRequest(f"{where}: text content is not allowed; use the value attribute")
            exts = []
            for sub in child:
                if not isinstance(sub.tag, str):
                    continue
                if _local(sub.tag) != (FHIR_NS, "extension"):
                    raise BadRequest(f"{where}: a primitive holds only extensions")
                exts.append(_read_complex(sub, "Extension", depth + 2, f"{where}.extension"))
            if exts:
                ext["extension"] = exts
            raw = child.get("value")
            val = _value(info.type, raw, where) if raw is not None else None
            if val is None and not ext:
                raise BadRequest(f"{where}: a primitive element needs a value or extensions")
            if info.is_list:
                prim_lists.add(name)
                out.setdefault(name, []).append(val)
                out.setdefault(f"_{name}", []).append(ext or None)
            else:
                if name in out or f"_{name}" in out:
                    raise BadRequest(f"{where}: the element may appear only once")
                if val is not None:
                    out[name] = val
                if ext:
                    out[f"_{name}"] = ext
            continue
        if info.kind == "resource":
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1 or child.attrib:
                raise BadRequest(f"{where}: a resource container holds exactly one resource")
            item: Any = _read_resource(inner[0], depth + 2)
        else:
            item = _read_complex(child, info.type, depth + 1, where)
        if info.is_list:
            out.setdefault(name, []).append(item)
        elif name in out:
            raise BadRequest(f"{where}: the element may appear only once")
        else:
            out[name] = item
    for name in prim_lists:  # JSON leaves out an all-null array and its all-null _ sibling
        if all(v is None for v in out[f"_{name}"]):
            del out[f"_{name}"]
        if all(v is None for v in out[name]):
            del out[name]


def from_xml(data: bytes) -> dict[str, Any]:
    """The JSON form of a FHIR XML resource; BadRequest for hostile, malformed or non-FHIR XML."""
    if b"\x00" in data:
        raise BadRequest("The XML document holds a NUL character, which FHIR does not allow")
    return _read_resource(_parse(data), 1)

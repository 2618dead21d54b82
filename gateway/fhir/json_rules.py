"""R4 JSON rules the R4B Pydantic models let through, checked on every write path.

The models validate in Pydantic's lax mode and know nothing of the R4 JSON format's own rules, so without this
module ``"active": "yes"`` is read as true, ``"multipleBirthInteger": "2"`` as 2, ``"name": []`` as no name and
``"gender": "x"`` as a code. The R4 JSON representation (json.html) and the R4 element definitions say:

- a primitive's JSON type is fixed: ``boolean`` is true/false, ``integer``, ``positiveInt`` and ``unsignedInt``
  are JSON numbers without a fraction, ``decimal`` is a JSON number, every other primitive is a JSON string;
- an array is never empty and an object is never empty (json.html#2.6.2.2: "if an element is present in the
  resource, it SHALL have properties as defined for its type, or 1 or more extensions");
- a ``code`` element with a *required* binding holds one of the value set's codes;
- ``Narrative.div`` holds no active content (txt-1: only basic formatting HTML; no scripts, no event-handler
  attributes, no ``javascript:`` links).

Required value sets come from the models: an element whose binding is required and whose codes are listed in
its short definition carries them as ``enum_values``. Where the short definition is cut short (``+``), the full
R4 value set is listed in ``TRUNCATED`` below.

:func:`json_issues` walks a whole resource (the full validation); :func:`value_rule` gives the per-value part
(codes, narrative) to the shape cache's fast path, whose shapes already fix every JSON type and container size.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from html.parser import HTMLParser
from typing import Any

from fhir_core.types import FhirBase, FhirElementOrResourceBase

from .errors import Issue

# R4 value sets of required bindings whose codes the models' short definitions list only in part ("a | b +")
_OBSERVATION_STATUS = frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                 "entered-in-error", "unknown"})
_ENCOUNTER_STATUS = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                               "entered-in-error", "unknown"})
TRUNCATED: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): _OBSERVATION_STATUS,
    ("DetectedIssue", "status"): _OBSERVATION_STATUS,
    ("RiskAssessment", "status"): _OBSERVATION_STATUS,
    ("DiagnosticReport", "status"): frozenset({"registered", "partial", "preliminary", "final", "amended",
                                               "corrected", "appended", "cancelled", "entered-in-error",
                                               "unknown"}),
    ("Encounter", "status"): _ENCOUNTER_STATUS,
    ("EncounterStatusHistory", "status"): _ENCOUNTER_STATUS,
    ("DeviceUseStatement", "status"): frozenset({"active", "completed", "entered-in-error", "intended", "stopped",
                                                 "on-hold"}),
    ("DeviceUdiCarrier", "entryType"): frozenset({"barcode", "rfid", "manual", "card", "self-reported",
                                                  "unknown"}),
    ("SupplyRequest", "status"): frozenset({"draft", "active", "suspended", "cancelled", "completed",
                                            "entered-in-error", "unknown"}),
    ("Task", "status"): frozenset({"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                                   "in-progress", "on-hold", "failed", "completed", "entered-in-error"}),
    ("QuestionnaireItem", "type"): frozenset({"group", "display", "question", "boolean", "decimal", "integer",
                                              "date", "dateTime", "time", "string", "text", "url", "choice",
                                              "open-choice", "attachment", "reference", "quantity"}),
    ("StructureMapGroupRuleTarget", "transform"): frozenset({"create", "copy", "truncate", "escape", "cast",
                                                             "append", "translate", "reference", "dateOp", "uuid",
                                                             "pointer", "evaluate", "cc", "c", "qty", "id", "cp"}),
}

_BOOL: tuple[type, ...] = (bool,)
_INT: tuple[type, ...] = (int,)
_NUMBER: tuple[type, ...] = (int, float)
_STRING: tuple[type, ...] = (str,)
_JSON_NAME = {_BOOL: "a JSON boolean", _INT: "a JSON integer", _NUMBER: "a JSON number", _STRING: "a JSON string"}


@dataclass(frozen=True)
class Rule:
    """What R4 JSON allows in one element of one model."""
    is_list: bool
    model: Any | None = None  # the element's model, for a complex type
    resource: bool = False  # a resource-typed element (contained, Bundle.entry.resource, ...)
    json: tuple[type, ...] | None = None  # the JSON types a primitive value may have
    value: Callable[[Any], str | None] | None = None  # a check of the value: the defect, or None


def strip_optional(ann: Any) -> Any:
    """``X | None`` (or ``Optional[X]``) -> ``X``: the element type a model field annotation declares."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _json_types(ann: Any) -> tuple[type, ...]:
    base = typing.get_args(ann)[0] if typing.get_origin(ann) is typing.Annotated else ann
    if base is bool:
        return _BOOL
    if base is int:
        return _INT
    if base in (Decimal, float):
        return _NUMBER
    return _STRING


def _code_rule(codes: frozenset[str]) -> Callable[[Any], str | None]:
    shown = ", ".join(sorted(codes)) if len(codes) <= 12 else ", ".join(sorted(codes)[:12]) + ", ..."

    def check(value: Any) -> str | None:
        if isinstance(value, str) and value not in codes:
            return f"code {value!r} is not in the required value set ({shown})"
        return None

    return check


@cache
def rules(model: Any) -> dict[str, Rule]:
    """JSON key (alias and field name) -> the rule of that element of ``model``."""
    out: dict[str, Rule] = {}
    for name, info in model.model_fields.items():
        if name == "fhir_comments":
            continue
        ann = strip_optional(info.annotation)
        is_list = typing.get_origin(ann) in (list, typing.List)  # noqa: UP006 - matching the models' annotations
        if is_list:
            ann = strip_optional(typing.get_args(ann)[0])
        if isinstance(ann, type) and issubclass(ann, FhirBase):
            if issubclass(ann, FhirElementOrResourceBase):
                rule = Rule(is_list, resource=True)
            else:
                rule = Rule(is_list, model=ann.get_model_klass())
        else:
            rule = Rule(is_list, json=_json_types(ann), value=_value_check(model, name, info, ann))
        out[info.alias or name] = rule
        out.setdefault(name, rule)
    return out


def _value_check(model: Any, name: str, info: Any, ann: Any) -> Callable[[Any], str | None] | None:
    meta = typing.get_args(ann)[1:] if typing.get_origin(ann) is typing.Annotated else ()
    kind = type(meta[0]).__name__ if meta else ""
    if kind == "Xhtml":
        return narrative_defect
    if kind != "Code":
        return None
    codes = TRUNCATED.get((model.__name__, name))
    if codes is None:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        listed = extra.get("enum_values")
        if not isinstance(listed, list) or not listed or "+" in listed or "etc." in listed:
            return None  # no list, or one cut short ("+") or open ("etc.": an extensible binding)
        codes = frozenset(str(c).encode().decode("unicode_escape") if "\\u" in str(c) else str(c)
                          for c in listed)
    return _code_rule(codes)


def value_rule(model: Any, key: str) -> Callable[[Any], str | None] | None:
    """The per-value check (required codes, narrative) of element ``key`` of ``model``, or None."""
    rule = rules(model).get(key)
    return rule.value if rule is not None else None


def json_issues(resource: dict[str, Any], model: Any, model_of: Callable[[str], Any | None]) -> list[Issue]:
    """Every breach of the rules above in ``resource`` (an object whose model is ``model``), located by
    FHIRPath-like expressions; ``model_of`` gives the model of a contained resource's type."""
    issues: list[Issue] = []
    _walk(resource, model, str(resource.get("resourceType") or model.__name__), model_of, issues)
    return issues


def _walk(node: dict[str, Any], model: Any, where: str, model_of: Callable[[str], Any | None],
          issues: list[Issue]) -> None:
    table = rules(model)
    for key, value in node.items():
        if key == "resourceType" or key == "fhir_comments":
            continue
        path = f"{where}.{key}"
        rule = table.get(key)
        if isinstance(value, list):
            if not value:
                issues.append(Issue("error", "structure", f"{path}: an array must not be empty (R4 JSON)", [path]))
                continue
            for i, item in enumerate(value):
                _item(item, rule, key, f"{path}[{i}]", model_of, issues)
        else:
            _item(value, rule, key, path, model_of, issues)


def _item(value: Any, rule: Rule | None, key: str, path: str, model_of: Callable[[str], Any | None],
          issues: list[Issue]) -> None:
    if value is None:
        return  # nulls: the model's verdict (they only pair primitive arrays with their "_" arrays)
    if isinstance(value, dict):
        if not value:
            issues.append(Issue("error", "structure", f"{path}: an object must not be empty (R4 JSON)", [path]))
            return
        if rule is None:
            return  # an unknown element: the model reports it
        if rule.resource:
            sub = model_of(str(value.get("resourceType")))
            if sub is not None:
                _walk(value, sub, path, model_of, issues)
        elif rule.model is not None:
            _walk(value, rule.model, path, model_of, issues)
        return
    if rule is None or rule.json is None or isinstance(value, list):
        return  # an unknown element, or a JSON type the model refuses itself
    if type(value) not in rule.json:  # type(): true and false are ints to isinstance
        issues.append(Issue("error", "value", f"{path}: must be {_JSON_NAME[rule.json]}, got "
                                              f"{_json_name(value)} {_short(value)}", [path]))
        return
    if rule.value is not None:
        defect = rule.value(value)
        if defect:
            issues.append(Issue("error", "code-invalid" if rule.value is not narrative_defect else "security",
                                f"{path}: {defect}", [path]))


def _json_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a " + type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- narrative -------------------------------------------------------------------------------------------------
ACTIVE_TAGS = frozenset({"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input",
                         "button", "select", "textarea", "link", "meta", "base"})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href", "background", "lowsrc",
                            "dynsrc", "poster", "cite", "longdesc", "usemap"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_ACTIVE_SCHEMES = frozenset({"javascript", "vbscript", "livescript", "mocha"})


class _ActiveContent(HTMLParser):
    """Collects the first active construct of an XHTML fragment: a scripting element, an event-handler
    attribute, a script URL or a CSS expression."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def _check(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.found:
            return
        if tag.split(":")[-1] in ACTIVE_TAGS:
            self.found = f"a <{tag}> element"
            return
        for name, value in attrs:
            if name.startswith("on"):
                self.found = f"an event-handler attribute ({name}) on <{tag}>"
                return
            text = "".join(ch for ch in (value or "") if ch > " " and ch != "\x7f").lower()
            if name in URL_ATTRIBUTES:
                m = _SCHEME.match(text)
                if m and (m.group(1) in _ACTIVE_SCHEMES or (m.group(1) == "data" and not text.startswith(
                        ("data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp")))):
                    self.found = f"a {m.group(1)}: URL in {name} on <{tag}>"
                    return
            if name == "style" and ("expression(" in text or "javascript:" in text or "url(" in text
                                    and "script" in text):
                self.found = f"script in a style attribute on <{tag}>"
                return


def narrative_defect(div: Any) -> str | None:
    """Why ``div`` (a Narrative.div) holds active content, or None when it holds none (R4 txt-1)."""
    if not isinstance(div, str):
        return None
    if "<" not in div:  # no element, no attribute: text only (entities stay text)
        return None
    parser = _ActiveContent()
    try:
        parser.feed(div)
        parser.close()
    except (AssertionError, ValueError):  # a fragment the HTML parser cannot read at all
        return "the narrative is not readable XHTML"
    if parser.found:
        return f"the narrative holds active content: {parser.found} (R4 txt-1 allows basic formatting only)"
    return None

"""Properties of the pieces behind the data-quality rules, with generated inputs (hypothesis): the qualifier
rule of ``classify`` on the x12-837 mapping's real lookup tables, and the outbound mapping of every HumanName
shape R4 allows on the real internal.outbound.yaml."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mapping.outbound import load_outbound, rows_for, scalar
from gateway.mapping.spec import find_spec
from gateway.mapping.template import Filters, MappingError

SPEC = find_spec("x12-837")
PATTERNS = SPEC.lookups["procedure_system"]
BY_QUALIFIER = SPEC.lookups["procedure_system_by_qualifier"]
OUTBOUND = load_outbound()

codes = st.from_regex(r"\A[0-9A-Z]{1,10}\Z")


@settings(max_examples=300, deadline=None)
@given(code=codes, qualifier=st.sampled_from(sorted(BY_QUALIFIER)))
def test_a_known_qualifier_never_drops_a_code(code: str, qualifier: str) -> None:
    """Lenient: every code under a qualifier the mapping knows gets a system; a warning exactly when the code
    fails the format check. Strict: the same codes are refused, with the code-format rule."""
    lenient = Filters(SPEC.lookups, {})
    system = lenient.apply("classify", f"procedure_system@{qualifier}", code, "PROC")
    entry = BY_QUALIFIER[qualifier]
    if isinstance(entry, dict):
        ok = entry.get("format") is None or re.fullmatch(entry["format"], code) is not None
        assert system == entry["system"]
    else:
        hit = next((out for pat, out in PATTERNS.items() if re.fullmatch(pat, code)), None)
        ok = hit is not None
        assert system == (hit or entry)
    assert [(w.rule, w.value) for w in lenient.warnings] == ([] if ok else [("code-format", code)])
    strict = Filters(SPEC.lookups, {}, strict=True)
    try:
        strict.apply("classify", f"procedure_system@{qualifier}", code, "PROC")
    except MappingError as exc:
        assert not ok and exc.rule == "code-format" and exc.value == code
    else:
        assert ok


@given(code=codes)
def test_without_a_qualifier_an_unknown_code_is_a_reject(code: str) -> None:
    f = Filters(SPEC.lookups, {})
    hit = next((out for pat, out in PATTERNS.items() if re.fullmatch(pat, code)), None)
    try:
        assert f.apply("classify", "procedure_system", code, "PROC") == hit
    except MappingError as exc:
        assert hit is None and f"unknown code '{code}'" in exc.reason
    assert f.warnings == []


words = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
extension = st.fixed_dictionaries({"url": st.just("http://example.org/ext"), "valueString": words})
human_names = st.fixed_dictionaries({}, optional={
    "use": st.sampled_from(["official", "usual", "old", "nickname"]), "text": words, "family": words,
    "given": st.lists(words, max_size=3), "prefix": st.lists(words, max_size=2),
    "suffix": st.lists(words, max_size=2), "extension": st.lists(extension, max_size=2),
    "_family": st.fixed_dictionaries({"extension": st.lists(extension, min_size=1, max_size=1)}),
    "period": st.fixed_dictionaries({"start": st.just("2020-01-01")})})


def _scalar_rows(rows: dict[str, list[dict[str, Any]]]) -> bool:
    return all(v is None or isinstance(v, (str, int, float, bool)) for rs in rows.values() for r in rs
               for v in r.values())


@settings(max_examples=200, deadline=None)
@given(names=st.lists(human_names, max_size=3), contained=st.booleans())
def test_outbound_columns_hold_scalars_for_every_name_shape(names: list[dict[str, Any]], contained: bool) -> None:
    """Every column of every row is a scalar; the provider name is the first name's text, else its parts
    (prefix, given, family, suffix) joined, else nothing."""
    prac: dict[str, Any] = {"resourceType": "Practitioner", "id": "p", "name": names}
    if contained:
        prac["contained"] = [{"resourceType": "Organization", "id": "o", "name": "Inline"}]
    for rtype in ("Practitioner", "Patient"):
        rows = rows_for(OUTBOUND, {**prac, "resourceType": rtype})
        assert _scalar_rows(rows)
    name = rows_for(OUTBOUND, prac)["internal_provider"][0]["name"]
    first = names[0] if names else {}
    parts = [*first.get("prefix", []), *first.get("given", []), first.get("family"), *first.get("suffix", [])]
    expect = first.get("text") or " ".join(p for p in parts if p) or None
    assert name == expect and scalar(first) == expect

"""String operators (CQL §17): null handling, 0-based indexes and their bounds, splitting, regular expressions
(whole-string Matches, Java-style replacement strings). Cases follow the HL7 cql-tests where they exist."""

from __future__ import annotations

import pytest

from gateway.cql.fhirmodel import Node
from gateway.cql.values import CqlError
from tests.cql.elmutil import SYS, as_, list_, lit_int, lit_str, null, op, ref, run


def s(v: str) -> dict:
    return lit_str(v)


# -------------------------------------------------------------------------------- Concatenate, Combine


@pytest.mark.parametrize(("operands", "expected"), [
    ([s("a"), s("b")], "ab"),
    ([s("a"), s("")], "a"),
    ([s("a"), s("b"), s("c")], "abc"),
    ([null(), null()], None),
    ([s("a"), null()], None),
    ([null(), s("b")], None),
])
def test_concatenate(operands: list[dict], expected: str | None) -> None:
    assert run(op("Concatenate", *operands)) == expected


def combine(source: dict, separator: dict | None = None) -> object:
    node = {"type": "Combine", "source": source}
    if separator is not None:
        node["separator"] = separator
    return run(node)


def test_combine() -> None:
    assert combine(list_(s("a"), s("b"), s("c"))) == "abc"
    assert combine(list_(s("a"), s("b"), s("c")), s("-")) == "a-b-c"
    assert combine(list_(s("a"), null(), s("c")), s(", ")) == "a, c"  # null elements are skipped
    assert combine(list_()) is None  # no non-null element: null (HL7 suite CombineEmptyList)
    assert combine(list_(null())) is None
    assert combine(null()) is None
    assert combine(list_(s("a")), null()) is None  # a null separator


# ------------------------------------------------------------------------------ Split, SplitOnMatches


def split(string: dict, separator: dict | None = None) -> object:
    node = {"type": "Split", "stringToSplit": string}
    if separator is not None:
        node["separator"] = separator
    return run(node)


@pytest.mark.parametrize(("string", "separator", "expected"), [
    (null(), null(), None),
    (null(), s(","), None),
    (s("a,b"), null(), ["a,b"]),
    (s("a,b"), s("-"), ["a,b"]),
    (s("a,b"), s(","), ["a", "b"]),
    (s("a,,b,"), s(","), ["a", "", "b", ""]),
    (s("a::b"), s("::"), ["a", "b"]),
    (s(""), s(","), [""]),
    (s("abc"), s(""), ["a", "b", "c"]),  # an empty separator splits into characters
])
def test_split(string: dict, separator: dict, expected: list[str] | None) -> None:
    assert split(string, separator) == expected


def test_split_without_separator_node() -> None:
    assert split(s("a,b")) == ["a,b"]


def split_on_matches(string: dict, pattern: dict) -> object:
    return run({"type": "SplitOnMatches", "stringToSplit": string, "separatorPattern": pattern})


def test_split_on_matches() -> None:
    assert split_on_matches(s("a1b22c"), s(r"\d+")) == ["a", "b", "c"]
    assert split_on_matches(s("a, b;c"), s(r"[,;]\s*")) == ["a", "b", "c"]
    assert split_on_matches(s("a-b"), s(r"(-)")) == ["a", "b"]  # groups are not returned
    assert split_on_matches(s("abc"), s(r"\d")) == ["abc"]
    assert split_on_matches(s("abc"), s("x*")) == ["abc"]  # empty matches do not split
    assert split_on_matches(null(), s(",")) is None
    assert split_on_matches(s("a,b"), null()) == ["a,b"]


# ------------------------------------------------------------------------------------ Length, case


def test_length() -> None:
    assert run(op("Length", s(""))) == 0
    assert run(op("Length", s("ab"))) == 2
    assert run(op("Length", s("héllo"))) == 5  # characters, not bytes
    assert run(op("Length", list_(lit_int(1), null(), lit_int(3)))) == 3
    assert run(op("Length", list_())) == 0
    assert run(op("Length", as_(null(), "String"))) is None  # Length(null as String) is null


def test_length_of_null_list_is_zero() -> None:
    null_list = {"type": "As", "operand": null(), "asTypeSpecifier": {
        "type": "ListTypeSpecifier", "elementType": {"type": "NamedTypeSpecifier", "name": SYS + "Integer"}}}
    assert run(op("Length", null_list)) == 0
    sig = [{"type": "ListTypeSpecifier", "elementType": {"type": "NamedTypeSpecifier", "name": SYS + "Any"}}]
    assert run(op("Length", ref("x"), signature=sig), x=None) == 0


@pytest.mark.parametrize(("node_type", "arg", "expected"), [
    ("Upper", s("aB"), "AB"),
    ("Upper", s(""), ""),
    ("Upper", null(), None),
    ("Lower", s("Ab"), "ab"),
    ("Lower", s("ÄÖ"), "äö"),
    ("Lower", null(), None),
])
def test_upper_lower(node_type: str, arg: dict, expected: str | None) -> None:
    assert run(op(node_type, arg)) == expected


# ---------------------------------------------------------------------------------------------- Indexer


@pytest.mark.parametrize(("source", "index", "expected"), [
    (s("ab"), lit_int(0), "a"),
    (s("ab"), lit_int(1), "b"),
    (s("ab"), lit_int(2), None),  # out of range
    (s("ab"), lit_int(-1), None),
    (s(""), lit_int(0), None),
    (as_(null(), "String"), lit_int(1), None),
    (s("a"), null(), None),
    (list_(s("x"), s("y")), lit_int(1), "y"),
    (list_(s("x"), s("y")), lit_int(2), None),
    (list_(s("x"), s("y")), lit_int(-1), None),
    (list_(null(), s("y")), lit_int(0), None),
])
def test_indexer(source: dict, index: dict, expected: object) -> None:
    assert run(op("Indexer", source, index)) == expected


# -------------------------------------------------------------------------------- PositionOf, Substring


def position(node_type: str, pattern: dict, string: dict) -> object:
    return run({"type": node_type, "pattern": pattern, "string": string})


@pytest.mark.parametrize(("node_type", "pattern", "string", "expected"), [
    ("PositionOf", null(), null(), None),
    ("PositionOf", s("a"), null(), None),
    ("PositionOf", null(), s("a"), None),
    ("PositionOf", s("a"), s("ab"), 0),
    ("PositionOf", s("b"), s("ab"), 1),
    ("PositionOf", s("c"), s("ab"), -1),
    ("PositionOf", s(""), s("Say hi to Ohio!"), 0),
    ("LastPositionOf", s("hi"), s("Ohio is the place to be!"), 1),
    ("LastPositionOf", s("hi"), s("Say hi to Ohio!"), 11),
    ("LastPositionOf", s(""), s("Say hi to Ohio!"), 15),
    ("LastPositionOf", s("x"), s("abc"), -1),
    ("LastPositionOf", null(), s("hi"), None),
])
def test_position_of(node_type: str, pattern: dict, string: dict, expected: int | None) -> None:
    assert position(node_type, pattern, string) == expected


def substring(string: dict, start: dict, length: dict | None = None) -> object:
    node = {"type": "Substring", "stringToSub": string, "startIndex": start}
    if length is not None:
        node["length"] = length
    return run(node)


@pytest.mark.parametrize(("string", "start", "length", "expected"), [
    (null(), null(), None, None),
    (s("a"), null(), None, None),
    (null(), lit_int(1), None, None),
    (s("ab"), lit_int(0), None, "ab"),
    (s("ab"), lit_int(1), None, "b"),
    (s("ab"), lit_int(2), None, None),  # start out of range
    (s("ab"), lit_int(-1), None, None),
    (s(""), lit_int(0), None, ""),
    (s("ab"), lit_int(0), lit_int(1), "a"),
    (s("abc"), lit_int(1), lit_int(1), "b"),
    (s("ab"), lit_int(0), lit_int(3), "ab"),  # length past the end: to the end
    (s("abc"), lit_int(1), null(), "bc"),
    (s("abc"), lit_int(1), lit_int(0), ""),
])
def test_substring(string: dict, start: dict, length: dict | None, expected: str | None) -> None:
    assert substring(string, start, length) == expected


# -------------------------------------------------------------------------------- StartsWith, EndsWith


@pytest.mark.parametrize(("node_type", "a", "b", "expected"), [
    ("StartsWith", null(), null(), None),
    ("StartsWith", s("hi"), null(), None),
    ("StartsWith", null(), s("hi"), None),
    ("StartsWith", s("Breathe deep the gathering gloom"), s("Bre"), True),
    ("StartsWith", s("Breathe deep the gathering gloom"), s("bre"), False),  # case-sensitive
    ("StartsWith", s("abc"), s(""), True),
    ("EndsWith", null(), null(), None),
    ("EndsWith", s("Chris Schuler is the man!!"), s("n!!"), True),
    ("EndsWith", s("Chris Schuler is the man!!"), s("n!"), False),
    ("EndsWith", s("abc"), s(""), True),
])
def test_starts_ends_with(node_type: str, a: dict, b: dict, expected: bool | None) -> None:
    assert run(op(node_type, a, b)) is expected


# ---------------------------------------------------------------------------- Matches, ReplaceMatches


@pytest.mark.parametrize(("string", "pattern", "expected"), [
    (s("Not all who wander are lost"), null(), None),
    (null(), s(".*"), None),
    (s("Not all who wander are lost"), s(r".*\d+"), False),
    (s("Not all who wander are lost - circa 2017"), s(r".*\d+"), True),
    (s("Not all who wander are lost"), s(".*"), True),
    (s("Not all who wander are lost"), s(r"[\w|\s]+"), True),
    (s("Not all who wander are lost - circa 2017"), s(r"^[\w\s]+$"), False),
    (s("   "), s(r"\W+"), True),
    (s(" \n\t"), s(r"\s+"), True),
    (s("abc"), s("b"), False),  # the whole string must match
    (s("abc"), s("a.c"), True),
    (s("a\nc"), s("a.c"), True),  # single-line mode: . matches a newline
    (s("ABC"), s("abc"), False),  # case-sensitive
    (s("8480-6"), s(r"\d{4}-\d"), True),
])
def test_matches(string: dict, pattern: dict, expected: bool | None) -> None:
    assert run(op("Matches", string, pattern)) is expected


def test_matches_invalid_pattern_is_an_error() -> None:
    with pytest.raises(CqlError):
        run(op("Matches", s("abc"), s("(")))


@pytest.mark.parametrize(("string", "pattern", "substitution", "expected"), [
    (s("Not all who wander are lost"), null(), s("But I am..."), None),
    (s("abc"), s("b"), null(), None),
    (null(), s("b"), s("x"), None),
    (s("Not all who wander are lost"), s("Not all who wander are lost"), s("But still waters run deep"),
     "But still waters run deep"),
    (s("Who put the bop in the bop she bop she bop?"), s("bop"), s("bang"),
     "Who put the bang in the bang she bang she bang?"),
    (s("All that glitters is not gold"), s(r"\s"), s(r"\$"), "All$that$glitters$is$not$gold"),
    (s("John Smith"), s(r"(\w+) (\w+)"), s("$2, $1"), "Smith, John"),  # Java-style group references
    (s("a.b"), s(r"\."), s(r"\\"), "a\\b"),
    (s("abc"), s("x"), s("y"), "abc"),
])
def test_replace_matches(string: dict, pattern: dict, substitution: dict, expected: str | None) -> None:
    assert run(op("ReplaceMatches", string, pattern, substitution)) == expected


def test_fhir_string_nodes_are_read_as_strings() -> None:
    assert run(op("Concatenate", ref("x"), s("!")), x=Node("final", "code")) == "final!"
    assert run(op("Upper", ref("x")), x=Node("final", "code")) == "FINAL"
    assert run(op("StartsWith", ref("x"), s("http")), x=Node("http://loinc.org", "uri")) is True


def test_type_errors() -> None:
    with pytest.raises(CqlError):
        run(op("Upper", lit_int(1)))
    with pytest.raises(CqlError):
        run(op("Length", lit_int(1)))

"""Path convertors for FHIR routes: a resource type is an upper-case name and an id uses only the FHIR id
characters, so `/{rtype}/{rid}` can never swallow `Measure/$evaluate-measure`, `metadata`, `_history` or
`.well-known/...`. That lets the generic REST routes be matched first (they serve most requests) instead of
after every operation's routes."""

from __future__ import annotations

import re

from starlette.convertors import Convertor, register_url_convertor

from ..fhir.rest_url import ID_PATTERN, TYPE_PATTERN


class FhirType(Convertor[str]):
    regex = TYPE_PATTERN  # shared with the Bundle entry parser (fhir/rest_url.py)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class FhirId(Convertor[str]):
    regex = ID_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirtype", FhirType())
register_url_convertor("fhirid", FhirId())
_TYPED = re.compile(r"\{(\w+):(?:fhirtype|fhirid)\}")


def template(path: str) -> str:
    """A route path without its FHIR convertors: `/{rtype:fhirtype}/{rid:fhirid}` -> `/{rtype}/{rid}`."""
    return _TYPED.sub(r"{\1}", path)

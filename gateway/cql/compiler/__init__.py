"""A CQL-to-ELM translator: CQL 1.5 text to the ELM JSON the engine (``gateway.cql``) runs.

``translate_library(text)`` gives a ``Translation`` (the ELM and the diagnostics with line and column). The
lexer and parser (``lexer.py``, ``parser.py``) are written from the CQL specification's grammar; the
translator (``translator.py``, ``library.py``) resolves names, infers types and picks overloads with the
specification's implicit conversions (``types.py``, ``system.py``).
"""

from .lexer import CqlSyntaxError
from .library import Diagnostic, Translation, elm_json, translate_library
from .translator import CqlTranslationError

__all__ = ["translate_library", "elm_json", "Translation", "Diagnostic", "CqlSyntaxError", "CqlTranslationError"]

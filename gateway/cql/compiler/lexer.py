"""The CQL 1.5 lexer: source text to tokens, each with its line and column (both from 1).

Token kinds: ``ident`` (plain identifiers and keywords: the parser decides which words are keywords where),
``qident`` (a "quoted" or `backtick` identifier), ``string`` ('...'), ``number`` (``12``, ``1.5``),
``long`` (``12L``), ``date`` (an ``@`` date, date-time or time literal, the text after ``@``), ``op``
(punctuation and symbolic operators) and ``eof``. Comments (``//`` and ``/* */``) and white space are
skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class CqlSyntaxError(Exception):
    """A lexical or syntax error at a line and column of the CQL text."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(f"{message} (line {line}, column {col})")
        self.message = message
        self.line = line
        self.col = col


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str  # the value: identifiers unquoted, strings unescaped, numbers as written
    line: int
    col: int


_SPEC = [
    ("ws", r"[ \t\r\n\f]+"),
    ("comment", r"//[^\n]*|/\*[\s\S]*?\*/"),
    ("date", r"@(?:T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?"
             r"|\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?"
             r"(?:Z|[+-]\d{2}:\d{2})?)?)"),
    ("long", r"\d+L"),
    ("number", r"\d+(?:\.\d+)?"),
    ("ident", r"[A-Za-z_][A-Za-z0-9_]*"),
    ("qident", r'"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`'),
    ("string", r"'(?:[^'\\]|\\.)*'"),
    ("op", r"<=|>=|!=|!~|\^|[-+*/&|<>=~(){}\[\],.:%]"),
]
_RX = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _SPEC))
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/"}


def unescape(body: str, line: int, col: int) -> str:
    """The value of a string or quoted identifier body: CQL escapes (\\n, \\t, \\', \\uXXXX ...) decoded."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise CqlSyntaxError(f"invalid escape sequence \\{nxt}", line, col)
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` followed by one ``eof`` token; raises CqlSyntaxError on a character that
    starts no token (an unterminated string, a stray symbol)."""
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    n = len(text)
    while pos < n:
        m = _RX.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            ch = text[pos]
            what = "unterminated string or identifier" if ch in "'\"`" else f"unexpected character {ch!r}"
            raise CqlSyntaxError(what, line, col)
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "string":
            tokens.append(Token("string", unescape(raw[1:-1], line, col), line, col))
        elif kind == "qident":
            tokens.append(Token("qident", unescape(raw[1:-1], line, col), line, col))
        elif kind == "date":
            tokens.append(Token("date", raw[1:], line, col))
        elif kind == "long":
            tokens.append(Token("long", raw[:-1], line, col))
        elif kind not in ("ws", "comment"):
            tokens.append(Token(kind, raw, line, col))
        newlines = raw.count("\n")
        if newlines:
            line += newlines
            line_start = pos + raw.rindex("\n") + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens

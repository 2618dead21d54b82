"""The text of an X12 file, and where it holds characters outside ASCII (shared by the 837 and 835 readers).

X12's basic and extended character sets are ASCII, but real feeds carry names such as ``O’BRIEN`` or ``MUÑOZ``
written by the systems that produced them, in UTF-8 or in a Windows code page. Such a character is no reason to
lose the file's claims: the file is read as UTF-8 (else Windows-1252, else Latin-1, which reads any byte), the
values are kept as sent, and every segment holding such characters is reported as an ``x12-charset`` warning on
the claims it belongs to.
"""

from __future__ import annotations

from typing import NamedTuple

ENCODINGS = ("utf-8", "cp1252", "latin-1")  # tried in this order; Latin-1 decodes any byte


class Foreign(NamedTuple):
    """A segment that holds characters outside ASCII."""

    segment: int  # its position among the file's segments, from 1 (the line pyx12 reports)
    line: int  # the physical line it starts on, from 1 (the line the 835 reader reports)
    id: str  # the segment id (NM1, N3, ...)
    chars: str  # the characters outside ASCII, each once, in order of first appearance


def x12_text(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read with (``ascii`` when it holds nothing else). A UTF-8
    byte-order mark, which some Windows tools write before the ISA, is not part of the interchange."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    for enc in ("ascii", *ENCODINGS):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def foreign_segments(text: str) -> list[Foreign]:
    """The segments of ``text`` that hold characters outside ASCII. Segments end at the terminator the ISA
    declares (its 106th character), else at ``~``; blank pieces between terminators are not segments."""
    if text.isascii():
        return []
    well_formed = len(text) >= 106 and text.startswith("ISA")
    term = text[105] if well_formed else "~"
    elem = text[3] if well_formed else "*"
    out: list[Foreign] = []
    segment = 0
    line = 1
    for raw in text.split(term):
        body = raw.strip()
        start = line + raw[:len(raw) - len(raw.lstrip())].count("\n")
        line += raw.count("\n")
        if not body:
            continue
        segment += 1
        if not body.isascii():
            chars = "".join(dict.fromkeys(ch for ch in body if not ch.isascii()))
            out.append(Foreign(segment, start, body.split(elem, 1)[0], chars))
    return out


def charset_message(f: Foreign, encoding: str) -> str:
    """What an ``x12-charset`` warning says about ``f``."""
    return (f"segment {f.id} holds {f.chars!r}, outside the X12 character sets; the file was read as {encoding} "
            "and the values are kept as sent")

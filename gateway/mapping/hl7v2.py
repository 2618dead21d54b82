"""HL7 v2 messages -> records, parsed with python-hl7.

Each message becomes one record of table ``message`` holding the first occurrence of every segment, flattened to
``SEG-n`` (first component of field n) and ``SEG-n.c`` (component c), plus ``MSG`` (a key for the message) and
``MSH-9.1`` etc. Every segment occurrence also becomes a record of the table named after the segment (``OBX``,
``RXA``, ``DG1``...) carrying the same ``MSG``, so a mapping file joins them as children of the message. Files
may hold several messages; CR, LF and CRLF segment ends and a UTF-8 byte-order mark are accepted."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import hl7

from .records import ReadResult, Record, Reject, iter_named_files
from .spec import MappingSpec

MAX_COMPONENTS = 12


def _value(seg: Any, f: int, c: int = 1) -> str | None:
    try:
        v = seg.extract_field(1, f, 1, c, 1)
    except (IndexError, KeyError):
        return None
    return str(v).strip() or None


def _flatten(seg: Any) -> dict[str, Any]:
    name = str(seg[0])
    out: dict[str, Any] = {}
    nfields = len(seg) if name != "MSH" else len(seg) + 1
    for f in range(1, nfields):
        first = _value(seg, f, 1)
        out[f"{name}-{f}"] = first
        for c in range(1, MAX_COMPONENTS + 1):
            v = _value(seg, f, c)
            if v is not None:
                out[f"{name}-{f}.{c}"] = v
    return out


def read_hl7v2(spec: MappingSpec, paths: list[Path]) -> ReadResult:
    res = ReadResult()
    for path, named in iter_named_files(paths):  # a named file is always read
        if not named and path.suffix.lower() not in (".hl7", ".txt", ".msg", ""):
            continue
        res.files += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise OSError(f"{path}: cannot read ({exc.strerror})") from exc
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            res.rejects.append(Reject(f"{path.name}:{line}", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                                      "the whole file is skipped"))
            continue
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        messages: list[tuple[int, list[str]]] = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if line.startswith("MSH"):
                messages.append((no, [line]))
            elif not messages:
                res.rejects.append(Reject(f"{path.name}:{no}", f"segment {line[:3]!r} before the MSH header "
                                          "(wrong segment order)"))
            else:
                messages[-1][1].append(line)
        for no, segs in messages:
            res.read += 1
            _message(path, no, segs, res)
    return res


def _message(path: Path, lineno: int, segs: list[str], res: ReadResult) -> None:
    where = f"{path.name}:{lineno}"
    try:
        msg = hl7.parse("\r".join(segs))
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises plain exceptions on malformed input
        res.rejects.append(Reject(where, f"not a parseable HL7 v2 message ({exc})"))
        return
    key = f"{path.name}#{lineno}"
    fields: dict[str, Any] = {"MSG": key}
    for i, seg in enumerate(msg):
        name = str(seg[0])
        if not name.isalnum() or len(name) != 3:
            res.rejects.append(Reject(f"{path.name}:{lineno + i}", f"{name!r} is not a segment id"))
            return
        flat = _flatten(seg)
        fields.update({k: v for k, v in flat.items() if k not in fields})  # first occurrence wins
        res.records.setdefault(name, []).append(Record(name, f"{path.name}:{lineno + i}", {**flat, "MSG": key}))
    if not fields.get("MSH-9.1"):
        res.rejects.append(Reject(where, "MSH-9 (message type) is empty"))
        return
    # a stable key for the message itself: sending application, time and control id
    ident = "|".join(str(fields.get(k) or "") for k in ("MSH-3", "MSH-7", "MSH-10"))
    fields["MSGID"] = hashlib.sha1(ident.encode()).hexdigest()[:20]
    res.records.setdefault("message", []).append(Record("message", where, fields))

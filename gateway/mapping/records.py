"""Reading input files into records: CSV tables (by header name) and fixed-width files (by position).

A file belongs to the table whose ``match`` text occurs in its name. Every record carries where it came from
(file and line) so a reject can name it. A line that cannot be read (truncated, not text, a field of the wrong
type) becomes a reject and the rest of the file is still read.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .quality import Finding
from .spec import FieldSpec, MappingSpec, TableSpec

DATE_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")


@dataclass
class Record:
    table: str
    where: str  # "file:line"
    fields: dict[str, Any]
    # found while reading (an X12 guide rule broken in the claim's loops); the unit the record becomes loads with
    # them (a grouped unit with those of all its records)
    warnings: list[Finding] = field(default_factory=list)


@dataclass
class Reject:
    where: str
    reason: str
    field: str | None = None
    rule: str | None = None  # the data-quality rule broken (quality.reject_rule names it when None)
    value: str | None = None  # the offending value, when one is to blame

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ReadResult:
    records: dict[str, list[Record]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    files: int = 0
    read: int = 0
    warnings: list[Finding] = field(default_factory=list)  # found outside any record (loaded records carry theirs)


class FieldError(ValueError):
    def __init__(self, name: str, reason: str, value: str | None = None) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason
        self.value = value  # the text that could not be read, for the data-quality report


def convert(f: FieldSpec, raw: str, nulls: frozenset[str]) -> Any:
    s = raw.strip()
    if s == "" or s in nulls:
        return None
    if f.type == "text":
        return s
    if f.type == "date":
        try:
            if not DATE_RE.match(s):
                raise ValueError
            date.fromisoformat(s)
        except ValueError:
            raise FieldError(f.name, f"field {f.name}: {s!r} is not a date (YYYY-MM-DD)", s) from None
        return s
    if f.type == "datetime":
        if not DATETIME_RE.match(s):
            raise FieldError(f.name, f"field {f.name}: {s!r} is not a date/time (ISO 8601)", s)
        return s
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise FieldError(f.name, f"field {f.name}: {s!r} is not a number", s) from None
    if f.type == "int":
        if d != d.to_integral_value():
            raise FieldError(f.name, f"field {f.name}: {s!r} is not a whole number", s)
        return int(d)
    return float(d)


def table_for(spec: MappingSpec, path: Path, first_line: bytes = b"") -> TableSpec | None:
    """The table a file belongs to: by name; when several fixed-width tables share a name pattern, by the
    length of the file's first record."""
    name = path.name
    found: list[TableSpec] = []
    for t in spec.tables.values():
        for m in t.match:
            if (m.endswith(".csv") and name == m) or (not m.endswith(".csv") and m in name):
                found.append(t)
                break
    if len(found) > 1 and path.suffix.lower() != ".csv":
        n = len(first_line.rstrip(b"\r\n"))
        exact = [t for t in found if t.record_length == n]
        return exact[0] if exact else max(found, key=lambda t: t.record_length or 0)
    return found[0] if found else None


def iter_input_files(paths: list[Path]) -> Iterator[Path]:
    """The files of the inputs: a named file as is, a folder's files (recursively, hidden and document files
    left out) in name order."""
    for p, _named in iter_named_files(paths):
        yield p


def iter_named_files(paths: list[Path]) -> Iterator[tuple[Path, bool]]:
    """Like ``iter_input_files``, with whether each file was named by the caller (True) or found in a folder:
    a named file is always read, a folder's files only when the mapping recognises their names."""
    for p in paths:
        if p.is_dir():
            yield from ((x, False) for x in sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")
                        and x.suffix.lower() not in (".md", ".pdf", ".zip")))
        else:
            yield p, True


def table_by_content(spec: MappingSpec, path: Path, first_line: bytes) -> tuple[TableSpec, bool] | None:
    """The table of a file named by the caller whose name the mapping does not recognise, and whether the file is
    CSV: the table whose declared columns a CSV header holds (the most specific), else the fixed-width table of
    the first record's length, else the mapping's only table (as CSV unless it is fixed width)."""
    tables = list(spec.tables.values())
    head = first_line.rstrip(b"\r\n").decode("utf-8", "replace")
    if "," in head:
        header = {h.strip().lstrip("\ufeff").strip() for h in next(csv.reader([head]), [])}
        fits = [t for t in tables if t.fields and {f.name for f in t.fields} <= header]
        if fits:
            return max(fits, key=lambda t: len(t.fields)), True
    fixed = [t for t in tables if t.fixed_width and t.record_length == len(head)]
    if fixed:
        return fixed[0], False
    if len(tables) == 1:
        return tables[0], not tables[0].fixed_width
    return None


def read_tables(spec: MappingSpec, paths: list[Path], result: ReadResult | None = None) -> ReadResult:
    res = result or ReadResult()
    nulls = frozenset(spec.null_values)
    for path, named in iter_named_files(paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise OSError(f"{path}: cannot read ({exc.strerror})") from exc
        first = data.split(b"\n", 1)[0]
        table = table_for(spec, path, first)
        as_csv = table is not None and (path.suffix.lower() == ".csv" or not table.fixed_width)
        if table is None and named:
            found = table_by_content(spec, path, first)
            if found is None:
                res.rejects.append(Reject(f"{path.name}:1", f"the {spec.format} mapping has no table for this file "
                                          f"(tables: {', '.join(spec.tables)}; see docs/guides/mappings.md)",
                                          rule="unrecognised-file"))
                continue
            table, as_csv = found
        if table is None:
            continue  # a file in a folder that this mapping does not read (e.g. a summary file)
        res.files += 1
        out = res.records.setdefault(table.name, [])
        if as_csv:
            _read_csv(path, data, table, nulls, out, res)
        else:
            _read_fixed(path, data, table, nulls, out, res)
    return res


def _decode(path: Path, lineno: int, raw: bytes, res: ReadResult) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        res.rejects.append(Reject(f"{path.name}:{lineno}", f"not UTF-8/ASCII text (byte {exc.start + 1} is "
                                  f"0x{raw[exc.start]:02x})"))
        return None


def _read_fixed(path: Path, data: bytes, table: TableSpec, nulls: frozenset[str], out: list[Record],
                res: ReadResult) -> None:
    full = max((f.start or 0) + (f.length or 0) - 1 for f in table.fields)
    need = table.min_length or full
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        res.read += 1
        line = _decode(path, lineno, raw, res)
        if line is None:
            continue
        where = f"{path.name}:{lineno}"
        if len(line) < need:
            res.rejects.append(Reject(where, f"truncated {table.name} record: {len(line)} characters, the layout "
                                      f"needs {need}"))
            continue
        line = line.ljust(full)
        try:
            fields = {f.name: convert(f, line[f.start - 1:f.start - 1 + f.length], nulls)  # type: ignore[operator]
                      for f in table.fields}
        except FieldError as exc:
            res.rejects.append(Reject(where, exc.reason, exc.name, value=exc.value))
            continue
        out.append(Record(table.name, where, fields))


def _rows(reader: Any, path: Path, res: ReadResult) -> Iterator[list[str]]:
    """The rows of a csv reader; a row the csv module cannot read (a field beyond its size limit, say) is
    rejected by line number and reading goes on with the next one."""
    while True:
        before = reader.line_num
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            res.rejects.append(Reject(f"{path.name}:{reader.line_num}", f"not readable as CSV ({exc})"))
            if reader.line_num == before:
                return  # no progress: stop rather than loop


def _read_csv(path: Path, data: bytes, table: TableSpec, nulls: frozenset[str], out: list[Record],
              res: ReadResult) -> None:
    lines = data.split(b"\n")
    text_lines: list[str] = []
    for lineno, raw in enumerate(lines, 1):
        t = _decode(path, lineno, raw, res) if raw else ""
        text_lines.append(t if t is not None else "")
    reader = csv.reader(io.StringIO("\n".join(text_lines)))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit: the file cannot be read
        res.rejects.append(Reject(f"{path.name}:1", f"{table.name} header is not readable CSV ({exc})"))
        return
    # column names as written, without the blanks around them or a byte-order mark (spreadsheet exports)
    header = [h.strip().lstrip("\ufeff").strip() for h in header]
    declared = {f.name: f for f in table.fields}
    missing = [n for n in declared if n not in header]
    if missing:
        res.rejects.append(Reject(f"{path.name}:1", f"{table.name} header lacks column(s) {', '.join(missing)}"))
        return
    for row in _rows(reader, path, res):
        lineno = reader.line_num
        if not row or (len(row) == 1 and not row[0]):
            continue
        res.read += 1
        where = f"{path.name}:{lineno}"
        if lines[lineno - 1] and text_lines[lineno - 1] == "":
            continue  # already rejected as undecodable
        if len(row) != len(header):
            res.rejects.append(Reject(where, f"{len(row)} columns, the header has {len(header)}"))
            continue
        fields: dict[str, Any] = {}
        try:
            for name, value in zip(header, row, strict=True):
                f = declared.get(name)
                fields[name] = convert(f or FieldSpec(name), value, nulls)
        except FieldError as exc:
            res.rejects.append(Reject(where, exc.reason, exc.name, value=exc.value))
            continue
        out.append(Record(table.name, where, fields))

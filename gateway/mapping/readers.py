"""The readers a mapping file can name: ``tables`` (CSV and fixed-width files), ``hl7v2`` (HL7 v2 messages) and
``x12-837`` (ASC X12 837 claims), ``x12-835`` (ASC X12 835 remittances). Each turns input files into records by table name plus rejects."""

from __future__ import annotations

from pathlib import Path

from .records import ReadResult, read_tables
from .spec import MappingSpec, SpecError


def read_input(spec: MappingSpec, paths: list[Path]) -> ReadResult:
    if spec.reader == "tables":
        return read_tables(spec, paths)
    if spec.reader == "hl7v2":
        from .hl7v2 import read_hl7v2

        return read_hl7v2(spec, paths)
    if spec.reader == "x12-837":
        from .x12 import read_x12

        return read_x12(spec, paths)
    if spec.reader == "x12-835":
        from .x12_835 import read_x12_835

        return read_x12_835(spec, paths)
    raise SpecError(f"{spec.path.name}: unknown reader '{spec.reader}'")

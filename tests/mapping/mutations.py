"""A mutation script for the robustness corpus (issue 17): variants of a sample input of every ingest format, the
kinds of messiness real feeds have. Samples are read from ../shared (or generated, for the claims CSV) and only
changed in memory; the tests write the variants to a temporary folder.

A variant is *benign* when it changes only the form (line endings, trailing blanks, quoting, X12 delimiters, one
segment a line or all on one): it must load exactly what the sample loads. The others (unknown but well-formed
codes, missing optional or situational segments and columns, repeated loops and rows, a delimiter the format does
not allow) may lose or reject records, but every record must be loaded or rejected with a reason."""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.mapping.helpers import INTERNAL

Files = dict[str, bytes]


@dataclass
class Variant:
    name: str
    files: Files
    benign: bool


def samples() -> dict[str, Files]:
    """Small inputs of every format: format -> file name -> content."""
    from gateway.demo.claims import claims_csv

    x12 = INTERNAL / "x12"
    tuva = INTERNAL / "cclf" / "csv_fixtures" / "tuva"
    bcda = INTERNAL / "cclf" / "fixed_width" / "bcda"
    syn = INTERNAL / "synthea_csv"
    hl7 = INTERNAL / "hl7v2"

    def head(path: object, n: int) -> bytes:
        return b"".join(path.read_bytes().splitlines(keepends=True)[:n])  # type: ignore[attr-defined]

    return {
        "x12-837": {"example1.837": (x12 / "837p" / "demo.example1.837").read_bytes(),
                    "two-claims.837i": (x12 / "837i" / "two-claims-single-provider.837i").read_bytes()},
        "claims-csv": {"claims.csv": claims_csv(5, 3, 2025).encode()},
        "cclf": {"partb_physicians.csv": (tuva / "partb_physicians.csv").read_bytes(),
                 "partd_claims.csv": (tuva / "partd_claims.csv").read_bytes(),
                 "T.BCD.A0001.ZC9Y18.D181120.T1000010": (bcda / "T.BCD.A0001.ZC9Y18.D181120.T1000010").read_bytes()},
        "synthea-csv": {"patients.csv": (syn / "patients.csv").read_bytes(),
                        "conditions.csv": head(syn / "conditions.csv", 40),
                        "procedures.csv": head(syn / "procedures.csv", 40)},
        "hl7v2": {"adt.hl7": (hl7 / "adt" / "ADT-A01-01.hl7").read_bytes(),
                  "oru.hl7": (hl7 / "oru" / "LAB-ORU-1.hl7").read_bytes()},
    }


# -- line-based mutations (every format) --------------------------------------------------------------------

def _lines(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


def crlf(data: bytes) -> bytes:
    return b"\r\n".join(_lines(data))


def trailing_blanks(data: bytes) -> bytes:
    return b"\n".join(ln + b"  \t" if ln else ln for ln in _lines(data))


# -- X12 ------------------------------------------------------------------------------------------------------

def _x12_delims(data: bytes) -> tuple[str, str, str, str]:
    text = data.decode("ascii")
    return text, text[3], text[104], text[105]


def x12_delimiters(data: bytes) -> bytes:
    """Element, component and segment separators replaced by others the standard allows ('|', '<', '!'):
    ISA declares them, so nothing else changes."""
    text, elem, comp, term = _x12_delims(data)
    for new in "|<!":
        assert new not in text, new
    table = {ord(elem): "|", ord(comp): "<", ord(term): "!"}
    if comp == ":":  # the TR3 examples' '>' inside CLM/HI/SV1/SV2 stands for ':' (see gateway/mapping/x12.py)
        table[ord(">")] = "<"
    return text.translate(table).encode()


def byte_order_mark(data: bytes) -> bytes:
    """A UTF-8 byte-order mark before the first byte, as some Windows tools write one."""
    return b"\xef\xbb\xbf" + data


def x12_one_line(data: bytes) -> bytes:
    """All segments on one line (no line breaks between them), as many senders write X12."""
    return b"".join(_lines(data))


def _segments(data: bytes) -> tuple[list[str], str, str]:
    text, elem, _comp, term = _x12_delims(data)
    return [s.strip("\r\n") for s in text.split(term)], elem, term


def _join(segs: list[str], term: str) -> bytes:
    count = 0
    out = []
    for s in segs:  # SE01 counts the segments from ST to SE
        if s.startswith("ST"):
            count = 0
        count += 1 if s else 0
        if s.startswith("SE"):
            parts = s.split(s[2])
            parts[1] = str(count)
            s = s[2].join(parts)
        out.append(s)
    return (term + "\n").join(out).encode()


def x12_unknown_codes(data: bytes) -> bytes:
    """Well-formed codes the patterns do not know: six-digit procedure codes, a HCPCS with a lower-case letter,
    an ICD-10 code of a valid shape that does not exist."""
    segs, elem, term = _segments(data)
    rng = random.Random(17)
    out = []
    for s in segs:
        if s.startswith(("SV1", "SV2")):
            s = re.sub(r"HC([:>])(\w+)", lambda m: f"HC{m.group(1)}{rng.randint(100000, 999999)}", s, count=1)
        elif s.startswith("HI") and "ABK" in s:
            s = re.sub(r"ABK([:>])\w+", r"ABK\1Z9999", s, count=1)
        out.append(s)
    return _join(out, term)


SITUATIONAL = ("PER", "DTP*431", "DTP*454", "REF*EI", "N3", "N4", "DMG", "PRV", "AMT", "NTE", "REF*G2", "REF*1G")


def x12_missing_segments(data: bytes) -> bytes:
    """Optional and situational segments left out (addresses, contacts, demographics, secondary ids; the
    billing provider's tax id REF*EI, which the guide requires)."""
    segs, _elem, term = _segments(data)
    return _join([s for s in segs if not s.startswith(SITUATIONAL)], term)


def x12_repeated_loops(data: bytes) -> bytes:
    """Every service line sent twice (a second LX loop with the next number) and the first claim loop twice."""
    segs, elem, term = _segments(data)
    out: list[str] = []
    i = 0
    while i < len(segs):
        s = segs[i]
        if s.startswith("LX" + elem):
            j = i + 1
            while j < len(segs) and not segs[j].startswith(("LX", "CLM", "SE", "HL")):
                j += 1
            block = segs[i:j]
            out += block + [f"LX{elem}{90 + len(out) % 9}"] + block[1:]
            i = j
            continue
        out.append(s)
        i += 1
    return _join(out, term)


def x12_names_outside_ascii(data: bytes) -> bytes:
    """Names written with characters outside ASCII, as real feeds send them: every person's last name in NM1
    gains a curly apostrophe and an N with tilde, and the files alternate between UTF-8 and Windows-1252."""
    segs, elem, term = _segments(data)
    out = []
    for s in segs:
        parts = s.split(elem)
        if parts[0] == "NM1" and len(parts) > 3 and parts[2] == "1" and parts[3]:
            parts[3] = f"O’{parts[3]}-MUÑOZ"
        out.append(elem.join(parts))
    text = _join(out, term).decode()
    return text.encode("cp1252" if len(data) % 2 else "utf-8")


# -- CSV ------------------------------------------------------------------------------------------------------

def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def _csv_bytes(rows: list[list[str]], **kw: object) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", **kw).writerows(rows)  # type: ignore[arg-type]
    return buf.getvalue().encode()


def csv_quote_all(data: bytes) -> bytes:
    return _csv_bytes(_csv_rows(data), quoting=csv.QUOTE_ALL)


def csv_semicolons(data: bytes) -> bytes:
    """';' between fields: not the comma the mappings read, so the file must be refused with a reason."""
    return _csv_bytes(_csv_rows(data), delimiter=";")


def csv_repeated_rows(data: bytes) -> bytes:
    rows = _csv_rows(data)
    return _csv_bytes(rows[:1] + [r for r in rows[1:] for _ in (0, 1)])


CODE_COLUMNS = re.compile(r"(PROCEDURE_CODE|DX\d|HCPCS_CD|DGNS_CD|NDC|^CODE$|REASONCODE)", re.I)
OPTIONAL_COLUMNS = re.compile(r"(PATIENT_ID|RENDERING_NPI|PLACE_OF_SERVICE|DX[234]|REVENUE_CODE|NDC|MIDDLE|SUFFIX|"
                              r"PREFIX|MAIDEN|ADDRESS|COUNTY|ZIP|DEATHDATE|STOP|REASON|MDFR)", re.I)


def csv_unknown_codes(data: bytes) -> bytes:
    """Codes of a well-formed shape that no pattern knows: six digits, letters + digits."""
    rows = _csv_rows(data)
    rng = random.Random(17)
    cols = [i for i, h in enumerate(rows[0]) if CODE_COLUMNS.search(h)]
    for r in rows[1:]:
        for i in cols:
            if i < len(r) and r[i]:
                r[i] = str(rng.randint(100000, 999999)) if rng.random() < 0.5 else f"Q{rng.randint(0, 9)}X{rng.randint(10, 99)}"
    return _csv_bytes(rows)


def csv_blank_optional(data: bytes) -> bytes:
    rows = _csv_rows(data)
    cols = [i for i, h in enumerate(rows[0]) if OPTIONAL_COLUMNS.search(h)]
    for r in rows[1:]:
        for i in cols:
            if i < len(r):
                r[i] = ""
    return _csv_bytes(rows)


def fixed_padding(data: bytes) -> bytes:
    """Fixed-width records without their trailing blanks (as editors save them)."""
    return b"\n".join(ln.rstrip() for ln in _lines(data))


# -- HL7 v2 ---------------------------------------------------------------------------------------------------

def hl7_missing_segments(data: bytes) -> bytes:
    """Optional segments left out (EVN, NK1, PD1, AL1, NTE, PV2)."""
    keep = [ln for ln in _lines(data) if not ln.startswith((b"EVN", b"NK1", b"PD1", b"AL1", b"NTE", b"PV2"))]
    return b"\n".join(keep)


def hl7_repeated_segments(data: bytes) -> bytes:
    """Every OBX and DG1 segment sent twice."""
    out: list[bytes] = []
    for ln in _lines(data):
        out.append(ln)
        if ln.startswith((b"OBX", b"DG1")):
            out.append(ln)
    return b"\n".join(out)


def hl7_unknown_codes(data: bytes) -> bytes:
    """OBX-3 observation identifiers replaced by a well-formed LOINC-shaped code nobody defined."""
    out = []
    for ln in _lines(data):
        if ln.startswith(b"OBX"):
            f = ln.split(b"|")
            if len(f) > 3 and f[3]:
                comps = f[3].split(b"^")
                comps[0] = b"99999-9"
                f[3] = b"^".join(comps)
            ln = b"|".join(f)
        out.append(ln)
    return b"\n".join(out)


def hl7_delimiters(data: bytes) -> bytes:
    """Another field separator and component separator declared in MSH-1/MSH-2 (two of '#', '@', '!', '$',
    '%', ';' the message does not use)."""
    text = data.decode("latin-1")
    field, comp = [c for c in "#@!$%;" if c not in text][:2]
    return text.replace("|", field).replace("^", comp).encode("latin-1")


Mutation = Callable[[bytes], bytes]

BENIGN: dict[str, dict[str, Mutation]] = {
    "x12-837": {"crlf": crlf, "trailing-blanks": trailing_blanks, "delimiters": x12_delimiters,
                "one-line": x12_one_line, "byte-order-mark": byte_order_mark},
    "claims-csv": {"crlf": crlf, "trailing-blanks": trailing_blanks, "quote-all": csv_quote_all},
    "cclf": {"crlf": crlf, "quote-all": csv_quote_all},
    "synthea-csv": {"crlf": crlf, "trailing-blanks": trailing_blanks, "quote-all": csv_quote_all},
    "hl7v2": {"crlf": crlf, "trailing-blanks": trailing_blanks},
}
LOSSY: dict[str, dict[str, Mutation]] = {
    "x12-837": {"unknown-codes": x12_unknown_codes, "missing-segments": x12_missing_segments,
                "repeated-loops": x12_repeated_loops, "names-outside-ascii": x12_names_outside_ascii},
    "claims-csv": {"unknown-codes": csv_unknown_codes, "blank-optional": csv_blank_optional,
                   "semicolons": csv_semicolons, "repeated-rows": csv_repeated_rows},
    "cclf": {"unknown-codes": csv_unknown_codes, "blank-optional": csv_blank_optional, "semicolons": csv_semicolons,
             "repeated-rows": csv_repeated_rows, "trailing-blanks": trailing_blanks, "unpadded": fixed_padding},
    "synthea-csv": {"unknown-codes": csv_unknown_codes, "blank-optional": csv_blank_optional,
                    "semicolons": csv_semicolons, "repeated-rows": csv_repeated_rows},
    "hl7v2": {"missing-segments": hl7_missing_segments, "repeated-segments": hl7_repeated_segments,
              "unknown-codes": hl7_unknown_codes, "delimiters": hl7_delimiters},
}


def _applies(fn: Mutation, name: str) -> bool:
    """CSV mutations apply to .csv files, the rest to any file; the fixed-width ones only to fixed width."""
    is_csv = name.endswith(".csv")
    if fn in (csv_quote_all, csv_semicolons, csv_repeated_rows, csv_unknown_codes, csv_blank_optional):
        return is_csv
    if fn is fixed_padding:
        return not is_csv
    return True


def variants(fmt: str, files: Files) -> list[Variant]:
    """Every variant of one format's sample: the benign ones and the lossy ones."""
    out = []
    for benign, table in ((True, BENIGN), (False, LOSSY)):
        for name, fn in table[fmt].items():
            out.append(Variant(name, {f: fn(d) if _applies(fn, f) else d for f, d in files.items()}, benign))
    return out

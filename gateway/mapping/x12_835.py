"""ASC X12 835 (005010X221A1, health care claim payment/advice) -> records.

One record of table ``clp`` per claim payment (loop 2100, ``CLP``), carrying what the ExplanationOfBenefit for
that claim needs: the payment of its transaction set (``BPR`` amount, method and date, ``TRN`` check/EFT
number), the payer (``N1*PR``) and payee (``N1*PE``), the claim payment itself (``CLP01``-``CLP07``), its
claim-level adjustments (``CAS``: group, reason, amount, up to six per segment), the patient (``NM1*QC``) and
service lines (``SVC`` with ``DTM*472``, ``CAS`` and ``AMT*B6`` allowed amount).

The interchange is tokenised with the separators its ``ISA`` declares. What cannot be read safely is rejected
with the file and line: a broken envelope or a file that is not an 835 rejects the file; a transaction set whose
``SE01`` segment count disagrees with its segments, or whose ``BPR``/``TRN`` is missing or wrong, is rejected
as a whole (its claims name the line); a claim payment with a bad amount or code is rejected alone. The
gateway-side building of resources from these records lives in ``gateway.ingest.remittance``."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .quality import Finding
from .records import ReadResult, Record, Reject, iter_named_files
from .spec import MappingSpec
from .x12text import charset_message, foreign_segments, x12_text

SUFFIXES = (".835", ".x12", ".edi", ".txt")
CLAIM_STATUS = {"1", "2", "3", "4", "19", "20", "21", "22", "23", "25"}
CAS_GROUPS = {"CO", "PR", "OA", "PI", "CR"}
AMOUNT = re.compile(r"^-?\d+(\.\d+)?$|^-?\.\d+$")
DATE8 = re.compile(r"^\d{8}$")


def is_date(v: str) -> bool:
    """A real calendar date written CCYYMMDD."""
    if not DATE8.match(v):
        return False
    try:
        datetime.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError:
        return False
    return True


class X12Error(ValueError):
    """A segment that cannot be read, with the 1-based line it starts on."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class Segment:
    id: str
    elements: list[str]  # elements[0] is the first data element (``CLP01``)
    line: int

    def get(self, n: int) -> str:
        """Element ``n`` (1-based, ``CLP01`` = 1), stripped; '' when absent."""
        return self.elements[n - 1].strip() if 0 < n <= len(self.elements) else ""


@dataclass
class _Set:
    start: int
    header: dict[str, Any] = field(default_factory=dict)
    claims: list[Record] = field(default_factory=list)


def tokenize(text: str) -> tuple[list[Segment], str]:
    """The segments of an interchange and its component separator; ``X12Error`` for a broken ISA."""
    if len(text) < 106 or not text.startswith("ISA"):
        raise X12Error(1, "not an X12 interchange: it must start with a 106-character ISA segment")
    elem, comp, term = text[3], text[104], text[105]
    if len({elem, comp, term}) < 3 or term.isalnum() or elem.isalnum():
        raise X12Error(1, "interchange envelope: ISA declares unusable separators")
    segments: list[Segment] = []
    line = 1
    for raw in text.split(term):
        lead = len(raw) - len(raw.lstrip())
        body = raw.strip()
        seg_line = line + raw[:lead].count("\n")
        line += raw.count("\n")
        if not body:
            continue
        parts = body.split(elem)
        segments.append(Segment(parts[0], parts[1:], seg_line))
    return segments, comp


def _amount(seg: Segment, n: int, required: bool = True) -> float | None:
    v = seg.get(n)
    if not v:
        if required:
            raise X12Error(seg.line, f"{seg.id}{n:02d} (amount) is missing")
        return None
    if not AMOUNT.match(v):
        raise X12Error(seg.line, f"{seg.id}{n:02d} '{v}' is not an amount")
    return float(v)


def _cas(seg: Segment) -> list[dict[str, Any]]:
    group = seg.get(1)
    if group not in CAS_GROUPS:
        raise X12Error(seg.line, f"CAS01 '{group}' is not a claim adjustment group code (CO, PR, OA, PI, CR)")
    out = []
    for i in range(2, 20, 3):  # CAS02/03/04, then 05/06/07, ... up to six adjustments
        reason = seg.get(i)
        if not reason:
            continue
        amount = _amount(seg, i + 1)
        qty = seg.get(i + 2)
        out.append({"group": group, "reason": reason, "amount": amount, "quantity": qty or None})
    if not out:
        raise X12Error(seg.line, "CAS carries no adjustment reason")
    return out


def _components(value: str, comp: str) -> list[str]:
    """SVC01 composite; the TR3 examples' ``>`` is read as the separator when the declared one is absent."""
    if comp not in value and ">" in value:
        return value.split(">")
    return value.split(comp)


def read_x12_835(spec: MappingSpec, paths: list[Path]) -> ReadResult:
    """Records of table ``clp`` from the 835 files among ``paths`` (see the module doc), plus rejects."""
    res = ReadResult()
    for path, named in iter_named_files(paths):
        if not named and path.suffix.lower() not in SUFFIXES:
            continue
        res.files += 1
        try:
            text, encoding = x12_text(path.read_bytes())
        except OSError as exc:
            raise OSError(f"{path}: cannot read ({exc.strerror})") from exc
        try:
            segments, comp = tokenize(text)
            sets = _structure(path, segments)
        except X12Error as exc:
            res.rejects.append(Reject(f"{path.name}:{exc.line}", f"{exc.reason}; the file is skipped",
                                      rule="x12-envelope"))
            continue
        # names written with characters outside ASCII: kept as sent, with a warning on the claim payments concerned
        charset = {f.line: Finding(f"{path.name}:{f.line}", "x12-charset", charset_message(f, encoding),
                                   value=f.chars) for f in foreign_segments(text)}
        for st_segments in sets:
            _read_set(path, st_segments, comp, res, charset)
        for line in sorted(charset.keys() - {s.line for st_segments in sets for s in st_segments}):
            res.warnings.append(charset[line])  # in the envelope, outside every transaction set
    return res


def _structure(path: Path, segments: list[Segment]) -> list[list[Segment]]:
    """The transaction sets (ST..SE) of a well-enveloped 835 interchange; ``X12Error`` otherwise."""
    if not segments or segments[0].id != "ISA":
        raise X12Error(1, "interchange envelope: no ISA segment")
    if segments[-1].id != "IEA":
        raise X12Error(segments[-1].line, "interchange envelope: the interchange does not end with IEA "
                       "(truncated file?)")
    sets: list[list[Segment]] = []
    cur: list[Segment] | None = None
    for seg in segments[1:-1]:
        if seg.id == "GS":
            if seg.get(1) != "HP":
                raise X12Error(seg.line, f"functional group: GS01 is '{seg.get(1)}', an 835 has HP "
                               "(health care claim payment/advice)")
        elif seg.id == "ST":
            if cur is not None:
                raise X12Error(seg.line, "transaction set: ST before the SE of the previous set")
            if seg.get(1) != "835":
                raise X12Error(seg.line, f"transaction set: ST01 is '{seg.get(1)}', not 835")
            cur = [seg]
        elif seg.id == "SE":
            if cur is None:
                raise X12Error(seg.line, "transaction set: SE without ST")
            cur.append(seg)
            sets.append(cur)
            cur = None
        elif cur is not None:
            cur.append(seg)
        elif seg.id not in ("GE",):
            raise X12Error(seg.line, f"segment {seg.id} outside a transaction set")
    if cur is not None:
        raise X12Error(cur[-1].line, "transaction set: no SE (truncated file?)")
    return sets


def _read_set(path: Path, segs: list[Segment], comp: str, res: ReadResult,
              charset: dict[int, Finding] | None = None) -> None:
    """The claim payments of one transaction set into ``res`` (all rejected when the set's frame is wrong).
    ``charset``: warnings by line; one in a claim payment's loop goes on that claim payment, one in the set's
    header (a payer's or payee's name) on every claim payment of the set."""
    st, se = segs[0], segs[-1]
    n_claims = sum(1 for s in segs if s.id == "CLP")
    res.read += n_claims
    try:
        count = se.get(1)
        if count != str(len(segs)):
            raise X12Error(se.line, f"SE01 says {count or 'nothing'} segments, the transaction set has {len(segs)}")
        header = _header(segs, st)
    except X12Error as exc:
        where = [f"{path.name}:{s.line}" for s in segs if s.id == "CLP"] or [f"{path.name}:{st.line}"]
        for w in where:
            res.rejects.append(Reject(w, f"{exc.reason} (line {exc.line}); the transaction set at line "
                                      f"{st.line} is rejected", rule="x12-structure"))
        return
    charset = charset or {}
    first = next((s.line for s in segs if s.id == "CLP"), se.line)
    shared = [charset[s.line] for s in segs if s.line < first and s.line in charset]
    placed = {s.line for s in segs if s.line < first} if n_claims else set()  # no claim payment: on the run
    clp: Segment | None = None
    body: list[Segment] = []
    for seg in segs[1:-1] + [Segment("__END__", [], se.line)]:
        if seg.id in ("CLP", "LX", "PLB", "__END__") and clp is not None:
            own = [charset[s.line] for s in (clp, *body) if s.line in charset]
            placed.update(s.line for s in (clp, *body))
            _claim(path, clp, body, header, comp, res, [*shared, *own])
            clp, body = None, []
        if seg.id == "CLP":
            clp = seg
        elif clp is not None:
            body.append(seg)
    res.warnings.extend(charset[s.line] for s in segs if s.line in charset and s.line not in placed)  # LX, PLB


def _header(segs: list[Segment], st: Segment) -> dict[str, Any]:
    bpr = next((s for s in segs if s.id == "BPR"), None)
    trn = next((s for s in segs if s.id == "TRN"), None)
    if bpr is None:
        raise X12Error(st.line, "the transaction set has no BPR (financial information)")
    if trn is None:
        raise X12Error(st.line, "the transaction set has no TRN (check or EFT trace number)")
    date = bpr.get(16)
    warn: list[tuple[int, str, str]] = []
    if date and not is_date(date):  # the TR3 managed-care example has 20002316: DTM*405 stands in
        warn.append((bpr.line, f"BPR16 '{date}' is not a date (CCYYMMDD): the payment date is taken from DTM*405",
                     date))
        date = ""
    if not trn.get(2):
        raise X12Error(trn.line, "TRN02 (check or EFT trace number) is missing")
    h: dict[str, Any] = {"BPR_AMOUNT": _amount(bpr, 2), "BPR_CREDIT": bpr.get(3), "BPR_METHOD": bpr.get(4),
                         "PAY_DATE": date or None, "TRACE": trn.get(2), "TRACE_ORIG": trn.get(3) or None,
                         "_WARN": warn}
    for s in segs:
        if s.id == "CLP":
            break
        if s.id == "N1" and s.get(1) == "PR":
            h["PAYER_NAME"], h["PAYER_ID"] = s.get(2) or None, s.get(4) or None
        elif s.id == "N1" and s.get(1) == "PE":
            h["PAYEE_NAME"], h["PAYEE_QUAL"], h["PAYEE_ID"] = s.get(2) or None, s.get(3) or None, s.get(4) or None
        elif s.id == "REF" and s.get(1) == "2U" and not h.get("PAYER_ID"):
            h["PAYER_ID"] = s.get(2) or None
        elif s.id == "DTM" and s.get(1) == "405" and not h["PAY_DATE"] and is_date(s.get(2)):
            h["PAY_DATE"] = s.get(2)
    return h


def _claim(path: Path, clp: Segment, body: list[Segment], header: dict[str, Any], comp: str,
           res: ReadResult, findings: list[Finding] | None = None) -> None:
    """One CLP loop as a record, or a reject naming its line."""
    where = f"{path.name}:{clp.line}"
    try:
        if not clp.get(1):
            raise X12Error(clp.line, "CLP01 (patient control number) is missing")
        status = clp.get(2)
        if status not in CLAIM_STATUS:
            raise X12Error(clp.line, f"CLP02 '{status}' is not a claim status code "
                           f"({', '.join(sorted(CLAIM_STATUS, key=int))})")
        fields: dict[str, Any] = {k: v for k, v in header.items() if k != "_WARN"}
        fields.update({"CLAIM_ID": clp.get(1), "STATUS": status, "CHARGE": _amount(clp, 3),
                       "PAID": _amount(clp, 4), "PATIENT_RESP": _amount(clp, 5, required=False),
                       "FILING": clp.get(6) or None, "PAYER_CLAIM_ID": clp.get(7) or None,
                       "FACILITY": clp.get(8) or None, "FREQUENCY": clp.get(9) or None})
        adjustments: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for seg in body:
            line = lines[-1] if lines else None
            if seg.id == "SVC":
                code = _components(seg.get(1), comp)
                lines.append({"QUAL": code[0] or None, "CODE": code[1] if len(code) > 1 else None,
                              "MODIFIERS": [m for m in code[2:6] if m], "CHARGE": _amount(seg, 2),
                              "PAID": _amount(seg, 3), "UNITS": _amount(seg, 5, required=False),
                              "DATE": None, "ALLOWED": None, "ADJUSTMENTS": [], "LINE": seg.line})
            elif seg.id == "CAS":
                (line["ADJUSTMENTS"] if line else adjustments).extend(_cas(seg))
            elif seg.id == "DTM" and line is not None and seg.get(1) in ("472", "150"):
                if not is_date(seg.get(2)):
                    raise X12Error(seg.line, f"DTM02 '{seg.get(2)}' is not a date (CCYYMMDD)")
                line["DATE"] = line["DATE"] or seg.get(2)
            elif seg.id == "DTM" and line is None and seg.get(1) in ("232", "233"):
                if not is_date(seg.get(2)):
                    raise X12Error(seg.line, f"DTM02 '{seg.get(2)}' is not a date (CCYYMMDD)")
                fields["START" if seg.get(1) == "232" else "END"] = seg.get(2)
            elif seg.id == "AMT" and line is not None and seg.get(1) == "B6":
                line["ALLOWED"] = _amount(seg, 2)
            elif seg.id == "NM1" and seg.get(1) == "QC":
                fields.update({"PAT_LAST": seg.get(3) or None, "PAT_FIRST": seg.get(4) or None,
                               "PAT_ID_QUAL": seg.get(8) or None, "PAT_ID": seg.get(9) or None})
        fields["ADJUSTMENTS"] = adjustments
        fields["LINES"] = lines
    except X12Error as exc:
        res.rejects.append(Reject(where, f"claim payment {clp.get(1) or '?'}: {exc.reason} (line {exc.line}); "
                                  "the claim payment is skipped", rule="x12-value"))
        return
    warnings = [Finding(f"{path.name}:{line}", "invalid-date", msg, "BPR16", value)
                for line, msg, value in header["_WARN"]] + list(findings or [])
    res.records.setdefault("clp", []).append(Record("clp", where, fields, warnings))

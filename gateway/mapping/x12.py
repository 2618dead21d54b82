"""ASC X12 837 (professional and institutional) -> records, parsed and checked with pyx12.

pyx12 reads the interchange against its implementation-guide maps (envelope, loop structure, segment order) and
gives loop nodes. Every claim (loop 2300) becomes one record of table ``claim`` and every service line (loop
2400) one record of table ``line``; the mapping file's tables say which X12 element becomes which field, as a
pyx12 path relative to the loop (``CLM01``, ``HI01-2``, ``2310B/NM109``) or to an enclosing loop with a prefix
(``2000B:2010BA/NM109`` for the subscriber, ``2000C:2010CA/NM103`` for a patient who is not the subscriber,
``2000A:2010AA/NM109`` for the billing provider). Envelope and structure errors reject the file or the claims
they fall in, naming the segment's line.

pyx12 ships maps for the 005010X222A1 / X223A2 guides and the 4010 ones; the later errata (X222A2, X223A3)
keep their loop structure, so those interchanges are read with the A1 / A2 maps."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context

from .quality import Finding
from .records import ReadResult, Record, Reject, iter_named_files
from .spec import MappingSpec
from .x12text import charset_message, foreign_segments, x12_text

ERRATA = {"005010X222A2": "005010X222A1", "005010X223A3": "005010X223A2"}


class _Errors(pyx12.error_handler.errh_null):
    """Collects envelope and segment errors with the line they occur on."""

    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.found: list[tuple[int, str]] = []
        self.codes: dict[int, str] = {}  # position in ``found`` -> pyx12's segment error code

    def add_seg(self, map_node: Any, seg: Any, seg_count: int, cur_line: int, ls_id: str | None) -> None:
        self.line = cur_line

    def isa_error(self, err_cde: str, err_str: str) -> None:
        self.found.append((self.line, f"interchange envelope: {err_str}"))

    def gs_error(self, err_cde: str, err_str: str) -> None:
        self.found.append((self.line, f"functional group: {err_str}"))

    def st_error(self, err_cde: str, err_str: str) -> None:
        self.found.append((self.line, f"transaction set: {err_str}"))

    def seg_error(self, err_cde: str, err_str: str, err_value: str | None = None,
                  src_line: int | None = None) -> None:
        self.codes[len(self.found)] = err_cde
        self.found.append((src_line or self.line, f"segment: {err_str}"))


def _get(node: Any, path: str, loops: dict[str, Any]) -> str | None:
    if ":" in path:
        loop, _, rel = path.partition(":")
        node = loops.get(loop)
        path = rel
        if node is None:
            return None
    try:
        v = node.get_value(path)
    except Exception:  # noqa: BLE001 - pyx12 raises several error types for a path that does not apply
        return None
    return v.strip() if isinstance(v, str) and v.strip() else None


def read_x12(spec: MappingSpec, paths: list[Path]) -> ReadResult:
    res = ReadResult()
    claim_t, line_t = spec.tables.get("claim"), spec.tables.get("line")
    claim_fields = {f.name: f.type for f in claim_t.fields} if claim_t else {}
    line_fields = {f.name: f.type for f in line_t.fields} if line_t else {}
    paths_of = spec.raw.get("x12_paths") or {}
    for path, named in iter_named_files(paths):  # a named file is always read
        if not named and path.suffix.lower() not in (".837", ".837p", ".837i", ".x12", ".edi", ".txt"):
            continue
        res.files += 1
        try:
            text, encoding = x12_text(path.read_bytes())
        except OSError as exc:
            raise OSError(f"{path}: cannot read ({exc.strerror})") from exc
        foreign = foreign_segments(text)  # names written with characters outside ASCII: kept, with a warning
        m = re.search(r"GS\W(?:[^~\n]*?\W){7}(\d{6}X\d{3}A\d)", text)
        guide = m.group(1) if m else None  # GS08, the implementation guide (X222 professional, X223 institutional)
        for old, new in ERRATA.items():
            text = text.replace(old, new)
        text = _tr3_component_quirk(text)
        _read_file(path, text, res, paths_of, claim_fields, line_fields, guide, spec.strictness == "strict",
                   [(f.segment, Finding(f"{path.name}:{f.segment}", "x12-charset", charset_message(f, encoding),
                                        value=f.chars)) for f in foreign])
    return res


def _read_file(path: Path, text: str, res: ReadResult, paths_of: dict[str, dict[str, str]],
               claim_fields: dict[str, str], line_fields: dict[str, str], guide: str | None,
               strict: bool = False, findings: list[tuple[int, Finding]] | None = None) -> None:
    """The claims of one 837 file into ``res``; ``findings`` (segment position, warning) are put on the claims
    their segments belong to, like the implementation-guide warnings pyx12 raises."""
    errh = _Errors()
    claims: list[tuple[int, int, Record, list[Record]]] = []
    sets: list[tuple[int, list[int]]] = []  # transaction sets: ST line, positions of their claims in ``claims``
    try:
        src = pyx12.x12context.X12ContextReader(pyx12.params.params(), errh, io.StringIO(text))
        for st in src.iter_segments("ST_LOOP"):
            if st.id != "ST_LOOP":
                continue
            sets.append((st.cur_line_number or errh.line or 1, []))
            for a in st.select("DETAIL/2000A"):
                for b in a.select("2000B"):
                    for loops, clm in _claims(a, b):
                        sets[-1][1].append(len(claims))
                        claims.append(_claim_record(path, clm, loops, len(claims), paths_of, claim_fields,
                                                    line_fields, res))
    except (pyx12.errors.X12Error, pyx12.errors.EngineError, ValueError, KeyError) as exc:
        res.rejects.append(Reject(f"{path.name}:{errh.line or 1}", f"not a readable X12 837 interchange "
                                  f"({_unreadable(exc)})", rule="x12-structure"))
        return
    env = [e for e in errh.found if e[1].startswith(("interchange", "functional", "transaction"))]
    if env:
        res.rejects.append(Reject(f"{path.name}:{env[0][0]}", f"{env[0][1]}; the file is skipped",
                                  rule="x12-envelope"))
        return
    res.read += len(claims)
    for _start, _end, rec, _lines in claims:
        rec.fields["GUIDE"] = guide
    starts = [line for line, _ in sets]

    def set_of(line: int) -> int | None:
        return max((i for i, s in enumerate(starts) if s <= line), default=None)

    def warn(line: int, finding: Finding) -> None:
        """On the claims whose loops hold ``line``; before the claims (a billing provider's loop), on every claim
        of the transaction set; outside any set, on the run."""
        st = set_of(line)
        owners = [i for i in (sets[st][1] if st is not None else []) if claims[i][0] <= line <= claims[i][1]]
        if not owners and st is not None:
            owners = sets[st][1]
        for i in owners:
            claims[i][2].warnings.append(finding)
        if not owners:
            res.warnings.append(finding)

    refused: dict[int, tuple[int, str, str]] = {}  # transaction set -> its first error that rejects it
    for n, (line, msg) in enumerate(errh.found):
        if not msg.startswith("segment:"):
            continue
        st = set_of(line)
        rule = USAGE_ERRORS.get(errh.codes.get(n, ""), "x12-structure")
        if rule == "x12-structure" or strict:
            if st is None or not sets[st][1]:
                res.rejects.append(Reject(f"{path.name}:{line}", msg, rule=rule))
            else:
                refused.setdefault(st, (line, msg, rule))
            continue
        warn(line, Finding(f"{path.name}:{line}", rule, f"implementation guide rule: {msg[len('segment: '):]}; "
                           "loaded (lenient strictness)"))
    for line, finding in findings or []:
        warn(line, finding)
    bad = {i: (st, refused[st]) for st in refused for i in sets[st][1]}
    for i, (_start, _end, rec, lines) in enumerate(claims):
        if i in bad:
            st, (line, msg, rule) = bad[i]
            why = "a structural error" if rule == "x12-structure" else "an implementation-guide rule (strict)"
            res.rejects.append(Reject(rec.where, f"{msg} (line {line}); the transaction set at line {starts[st]} "
                                      f"is rejected for {why}", rule=rule))
            continue
        res.records.setdefault("claim", []).append(rec)
        res.records.setdefault("line", []).extend(lines)


def _unreadable(exc: BaseException) -> str:
    """Why pyx12 could not read a file, in words a data team can act on: a guide version without a map (a 4010
    837, say) is named as such rather than as pyx12's "Map not found"."""
    m = re.search(r"Map not found\.\s*icvn=(\w+), fic=(\w+), vriic=(\w+)", str(exc))
    if not m:
        return str(exc)
    icvn, fic, guide = m.groups()
    return (f"implementation guide {guide} (GS08) in an interchange of version {icvn} (ISA12) is not one this "
            f"mapping reads: it reads 5010 837s, 005010X222 professional and 005010X223 institutional; "
            f"the file is skipped")


# pyx12 segment error codes that an implementation-guide usage rule raises, with the report's rule name: a
# required (or situationally required) segment or loop missing, a segment or loop repeated more than the guide
# allows. The loop structure stays readable, so the claim loads with a warning unless the mapping is strict.
USAGE_ERRORS = {"3": "x12-usage", "4": "x12-repeat", "5": "x12-repeat"}


QUIRK_SEGMENTS = ("CLM", "HI", "SV1", "SV2")


def _tr3_component_quirk(text: str) -> str:
    """The TR3 examples write ``>`` as the component separator inside CLM/HI/SV1/SV2 (``HI*BK>7215``) even where
    ISA16 declares ``:``. When a file declares ``:`` and such a segment has no ``:`` at all, its ``>`` are read
    as component separators; anything else is left to pyx12 as written."""
    if len(text) < 106 or not text.startswith("ISA") or text[104] != ":":
        return text
    term = text[105]
    elem = text[3]
    out = []
    for seg in text.split(term):
        sid = seg.strip().split(elem, 1)[0]
        if sid in QUIRK_SEGMENTS and ">" in seg and ":" not in seg:
            seg = seg.replace(">", ":")
        out.append(seg)
    return term.join(out)


def _claims(a: Any, b: Any) -> list[tuple[dict[str, Any], Any]]:
    out = [({"2000A": a, "2000B": b, "2000C": None}, clm) for clm in b.select("2300")]
    for c in b.select("2000C"):
        out += [({"2000A": a, "2000B": b, "2000C": c}, clm) for clm in c.select("2300")]
    return out


def _claim_record(path: Path, clm: Any, loops: dict[str, Any], index: int, paths_of: dict[str, dict[str, str]],
                  claim_fields: dict[str, str], line_fields: dict[str, str],
                  res: ReadResult) -> tuple[int, int, Record, list[Record]]:
    start = clm.cur_line_number or 0
    key = f"{path.name}#{index + 1}"
    fields: dict[str, Any] = {"CLAIM_KEY": key}
    for name, xpath in (paths_of.get("claim") or {}).items():
        fields[name] = _typed(_get(clm, xpath, loops), claim_fields.get(name))
    lines = []
    end = start
    for ln in clm.select("2400"):
        lf: dict[str, Any] = {"CLAIM_KEY": key}
        for name, xpath in (paths_of.get("line") or {}).items():
            lf[name] = _typed(_get(ln, xpath, loops), line_fields.get(name))
        end = max(end, ln.cur_line_number or end)
        lines.append(Record("line", f"{path.name}:{ln.cur_line_number}", lf))
    return start, end + 8, Record("claim", f"{path.name}:{start}", fields), lines


def _typed(v: str | None, t: str | None) -> Any:
    if v is None:
        return None
    if t == "decimal":
        try:
            return float(v)
        except ValueError:
            return v
    return v

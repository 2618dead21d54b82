"""Issue 17: real-world claims files lose nothing and explain everything. Each defect's input is generated here
from the TR3 examples in ../shared/testdata/internal/x12 (changed in memory, written to tmp_path), run through
the real ingest into the SQLite and PostgreSQL stores, and read back; the data-quality report is checked against
what the input holds."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from gateway.ingest.report import REPORT_EXTENSION
from gateway.ingest.service import Ingestor
from gateway.mapping.engine import DQ_EXTENSION
from gateway.resources.rest import RestService
from gateway.store.sql.tables import Resource
from tests.conftest import BASE, make_client, require_shared
from tests.mapping.helpers import INTERNAL, counts, read, search

X12 = INTERNAL / "x12"
EXAMPLE1 = X12 / "837p" / "demo.example1.837"  # CLM*26463774, SV1 lines 99213 87070 99214 86663
INSTITUTIONAL = X12 / "837i" / "institutional-claim.837i"  # CLM*756048Q, billing provider REF*EI*567891234
TWO_CLAIMS = X12 / "837i" / "two-claims-single-provider.837i"  # 756048Q and 756049Q in one transaction set
HCPCS = "https://bluebutton.cms.gov/resources/codesystem/hcpcs"


def _run(store: Any, path: Path, fmt: str = "x12-837", strictness: str | None = None) -> Any:
    return Ingestor(RestService(store, BASE), fmt, strictness=strictness).ingest([path])


def _drop_segment(text: str, starts: str) -> tuple[str, int]:
    """The interchange without its first segment starting with ``starts`` (SE's count fixed), and the line that
    segment was on (1-based: these files hold one segment a line)."""
    lines = text.split("\n")
    n = next(i for i, ln in enumerate(lines) if ln.startswith(starts))
    del lines[n]
    out = re.sub(r"SE\*(\d+)\*", lambda m: f"SE*{int(m.group(1)) - 1}*", "\n".join(lines))
    return out, n + 1


def test_a_code_off_its_format_loads_with_a_warning(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 1: SV1*HC:478331 (qualifier HC, six characters) used to reject the whole claim."""
    require_shared()
    text = EXAMPLE1.read_text()
    # a service line's records are placed at its loop's first segment: the LX before the SV1
    line = next(n for n, ln in enumerate(text.split("\n"), 1) if ln.startswith("SV1*HC:99213")) - 1
    assert text.split("\n")[line - 1].startswith("LX*1")
    path = tmp_path / "six.837"
    path.write_text(text.replace("SV1*HC:99213", "SV1*HC:478331", 1))
    summary = _run(store, path)
    assert summary.rejects == [] and summary.records == 1 and summary.units_with_warnings == 1
    claim = read(store, "Claim", "x12-1912301953-26463774")
    first = claim["item"][0]["productOrService"]["coding"][0]
    assert first["code"] == "478331" and first["system"] == HCPCS
    assert first["extension"] == [{"url": DQ_EXTENSION, "valueCode": "code-format"}]
    assert "extension" not in claim["item"][1]["productOrService"]["coding"][0]  # 87070 is a well-formed CPT
    assert read(store, "Procedure", "x12-1912301953-26463774-ln1")["code"]["coding"][0]["code"] == "478331"
    report = summary.quality()
    assert (report["recordsRead"], report["loaded"], report["loadedWithWarnings"], report["rejected"]) == (1, 1, 1, 0)
    [group] = report["warnings"]
    assert group["rule"] == "code-format" and group["count"] == 1  # the item and the Procedure: one finding
    ex = group["examples"][0]
    assert (ex["file"], ex["line"], ex["field"], ex["value"]) == ("six.837", line, "PROC", "478331")
    assert "qualifier 'HC'" in ex["message"]

    # strict: the same claim is rejected, saying which code and why; nothing of it is stored
    store_counts = counts(store)
    path2 = tmp_path / "strict.837"
    path2.write_text(text.replace("SV1*HC:99213", "SV1*HC:478331", 1).replace("26463774", "26463775"))
    strict = _run(store, path2, strictness="strict")
    assert len(strict.rejects) == 1 and "'478331'" in strict.rejects[0].reason
    assert strict.rejects[0].field == "PROC" and strict.rejects[0].value == "478331"
    assert strict.quality()["rejects"][0]["rule"] == "code-format" and counts(store) == store_counts


def test_an_implementation_guide_rule_loads_with_a_warning(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 2: a segment the guide requires (the billing provider's REF*EI tax id) is missing; the loops
    still read, so the claim loads with a warning naming the line; ``strict`` rejects the transaction set."""
    require_shared()
    text, line = _drop_segment(INSTITUTIONAL.read_text(), "REF*EI")
    path = tmp_path / "noref.837i"
    path.write_text(text)
    summary = _run(store, path)
    assert summary.rejects == [] and summary.units_with_warnings == 1
    assert read(store, "Claim", "x12-9876540809-756048Q")["type"]["coding"][0]["code"] == "institutional"
    [group] = summary.quality()["warnings"]
    assert group["rule"] == "x12-usage" and group["examples"][0]["where"] == f"noref.837i:{line}"
    assert "Billing Provider Tax Identification" in group["examples"][0]["message"]

    store2 = tmp_path / "strict.837i"
    store2.write_text(text.replace("756048Q", "756048S"))
    strict = _run(store, store2, strictness="strict")
    [reject] = strict.rejects
    assert f"(line {line})" in reject.reason and "transaction set" in reject.reason and "strict" in reject.reason
    assert strict.quality()["rejects"][0]["rule"] == "x12-usage"
    assert [c["id"] for c in search(store, "Claim")] == ["x12-9876540809-756048Q"]


def test_a_structural_error_rejects_the_transaction_set(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A segment pyx12 cannot place (SV2 before its LX) leaves the loops unreliable: every claim of the
    transaction set is rejected, each saying where the error is."""
    require_shared()
    lines = TWO_CLAIMS.read_text().split("\n")
    i = next(n for n, ln in enumerate(lines) if ln.startswith("LX*2"))
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path = tmp_path / "order.837i"
    path.write_text("\n".join(lines))
    summary = _run(store, path)
    assert summary.records == 2 and len(summary.rejects) == 2 and summary.units == 0
    assert all("transaction set" in r.reason and f"line {i + 1}" in r.reason for r in summary.rejects)
    assert summary.quality()["rejects"][0] == {**summary.quality()["rejects"][0], "rule": "x12-structure",
                                               "count": 2}
    assert search(store, "Claim") == []


def _report(outcome: dict[str, Any]) -> dict[str, Any]:
    [ext] = [e for e in outcome.get("extension", []) if e["url"] == REPORT_EXTENSION]
    assert ext["valueAttachment"]["contentType"] == "application/json"
    return json.loads(base64.b64decode(ext["valueAttachment"]["data"]))  # type: ignore[no-any-return]


def test_ingest_http_returns_the_report_and_a_refused_run_writes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    """Defect 5 and the report over HTTP: a junk CCLF body is 400 and creates no Organization/cms-medicare; an
    837 with a code off its format is 200 with a warning issue and the report attached."""
    require_shared()
    with make_client(store) as client:
        r = client.post("/fhir/$ingest/cclf", content=b"this is not a claims file\n")
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
        assert "nothing was stored" in r.json()["issue"][0]["diagnostics"]
        assert client.get("/fhir/Organization/cms-medicare").status_code == 404
        assert counts(store) == {}
        assert client.post("/fhir/$ingest/x12-837?strictness=loose", content=b"ISA").status_code == 400

        body = EXAMPLE1.read_bytes().replace(b"SV1*HC:99213", b"SV1*HC:478331", 1)
        r = client.post("/fhir/$ingest/x12-837?filename=feed.837", content=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert "1 loaded with warnings" in out["issue"][0]["diagnostics"]
        [warning] = [i for i in out["issue"] if i["severity"] == "warning"]
        assert "code-format" in warning["diagnostics"] and warning["expression"] == ["PROC"]
        report = _report(out)
        assert (report["recordsRead"], report["loaded"], report["loadedWithWarnings"], report["rejected"]) == \
            (1, 1, 1, 0)
        assert report["warnings"][0]["examples"][0]["file"] == "feed.837"

        r = client.post("/fhir/$ingest/x12-837?filename=feed2.837&strictness=strict",
                        content=body.replace(b"26463774", b"26463776"))
        assert r.status_code == 200 and _report(r.json())["rejected"] == 1
        assert client.get("/fhir/Claim/x12-1912301953-26463776").status_code == 404


def test_a_named_file_is_read_by_its_content(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 4 below the CLI: a file named by the caller is read whatever its name — a CCLF warehouse CSV by its
    header, a fixed-width CCLF file by its record length — while a folder's unrecognised files are left alone."""
    require_shared()
    tuva = INTERNAL / "cclf" / "csv_fixtures" / "tuva" / "partd_claims.csv"
    bcda = INTERNAL / "cclf" / "fixed_width" / "bcda" / "T.BCD.A0001.ZC8Y18.D181120.T1000009"
    (tmp_path / "named").mkdir()
    export = tmp_path / "named" / "export.txt"
    export.write_bytes(tuva.read_bytes())
    fixed = tmp_path / "named" / "feed.dat"
    fixed.write_bytes(bcda.read_bytes())
    summary = _run(store, export, "cclf")
    assert summary.files == 1 and summary.records == 2 and summary.rejects == []
    assert read(store, "MedicationDispense", "cclf-d-0000000001055-md")["status"]
    summary = _run(store, fixed, "cclf")
    members = len([ln for ln in bcda.read_bytes().split(b"\n") if ln.strip()])
    assert summary.files == 1 and summary.records == members and summary.rejects == []
    folder = Ingestor(RestService(store, BASE), "cclf").ingest([tmp_path / "named"])
    assert folder.files == 0 and folder.records == 0  # in a folder, names decide


def test_junk_to_every_format_writes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    """A refused run writes nothing, for every mapping: junk bodies are answered with an OperationOutcome (400
    when nothing was read, else 200 with the rejects), never a 500, and the store stays empty."""
    from gateway.mapping.spec import available

    junk = [b"\x00\x01\x02 binary junk\n", b"a,b,c\n1,2,3\n", b"ISA*00*garbage~\n", b"MSH|^~\\&|\n"]
    with make_client(store) as client:
        for fmt in available():
            for body in junk:
                r = client.post(f"/fhir/$ingest/{fmt}", content=body)
                assert r.status_code in (200, 400), (fmt, body, r.status_code, r.text)
                out = r.json()
                assert out["resourceType"] == "OperationOutcome" and out["issue"], (fmt, body)
                if r.status_code == 200:
                    assert any(i["severity"] == "error" for i in out["issue"]), (fmt, body, out)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Resource)).scalar_one() == 0


def test_rejects_are_grouped_by_rule_with_file_line_field_and_value(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The report groups rejects by rule, most frequent first, each example naming file, line, field and the
    value: here a claims CSV with two bad dates, one unknown claim type and one row cut short."""
    from gateway.demo.claims import claims_csv

    lines = claims_csv(5, 3, 2025).splitlines()
    header = lines[0].split(",")
    born, kind = header.index("MEMBER_BIRTH_DATE"), header.index("CLAIM_TYPE")

    def change(n: int, col: int, value: str) -> None:
        cells = lines[n].split(",")
        cells[col] = value
        lines[n] = ",".join(cells)

    change(1, born, "1970-13-01")
    change(2, born, "19700101")
    change(3, kind, "dental")
    lines[4] = ",".join(lines[4].split(",")[:5])
    path = tmp_path / "claims.csv"
    path.write_text("\n".join(lines) + "\n")
    report = _run(store, path, "claims-csv").quality()
    groups = {g["rule"]: g for g in report["rejects"]}
    assert groups["bad-date"]["count"] == 2 and report["rejects"][0]["rule"] == "bad-date"
    assert [(e["line"], e["field"], e["value"]) for e in groups["bad-date"]["examples"]] == \
        [(2, "MEMBER_BIRTH_DATE", "1970-13-01"), (3, "MEMBER_BIRTH_DATE", "19700101")]
    assert groups["column-count"]["examples"][0]["line"] == 5
    unknown = groups["unknown-code"]
    assert unknown["examples"][0]["line"] == 4 and "dental" in unknown["examples"][0]["message"]
    assert report["rejected"] == sum(g["count"] for g in report["rejects"])


def test_names_outside_ascii_load_with_a_charset_warning(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A patient's name written with characters outside ASCII (a curly apostrophe, an N with tilde), in UTF-8 or
    in Windows-1252 as real feeds send them, used to reject the whole 837 file: now the claim loads, the name is
    kept as sent, and the segment is reported as an x12-charset warning on the claim."""
    require_shared()
    text = EXAMPLE1.read_text()
    line = next(n for n, ln in enumerate(text.split("\n"), 1) if ln.startswith("NM1*QC*1*SMITH*TED"))
    name = "O’BRIEN-MUÑOZ"
    for n, encoding in enumerate(("utf-8", "cp1252")):
        path = tmp_path / f"names-{encoding}.837"
        path.write_bytes(text.replace("NM1*QC*1*SMITH*TED", f"NM1*QC*1*{name}*TED").encode(encoding))
        summary = _run(store, path)
        assert summary.rejects == [] and summary.records == 1 and summary.units_with_warnings == 1
        report = summary.quality()
        group = next(g for g in report["warnings"] if g["rule"] == "x12-charset")
        assert group["count"] == 1
        example = group["examples"][0]
        assert example["where"] == f"{path.name}:{line}" and example["value"] == "’Ñ"
        assert f"read as {encoding}" in example["message"] and "segment NM1" in example["message"]
        claim = read(store, "Claim", "x12-1912301953-26463774")
        patient = read(store, *claim["patient"]["reference"].split("/"))
        assert patient["name"][0]["family"] == name
        assert _run(store, path).created == 0 if n else True  # the same claim again: nothing new


def test_an_835_with_a_name_outside_ascii_loads_with_a_charset_warning(tmp_path: Path) -> None:
    """The 835 reader reads such a file too, the warning on the claim payment whose loop holds the name, and a
    payer name in the set's header on every claim payment of the set."""
    require_shared()
    from gateway.mapping.spec import find_spec
    from gateway.mapping.x12_835 import read_x12_835

    text = (X12 / "835" / "managed-care.835").read_text()
    lines = text.split("\n")
    budd = next(n for n, ln in enumerate(lines, 1) if ln.startswith("NM1*QC*1*BUDD"))
    payer = next(n for n, ln in enumerate(lines, 1) if ln.startswith("N1*PR*"))
    text = text.replace("NM1*QC*1*BUDD", "NM1*QC*1*BÜDD").replace(lines[payer - 1], lines[payer - 1].replace("~", "É~"), 1)
    path = tmp_path / "names.835"
    path.write_bytes(text.encode("utf-8"))
    read = read_x12_835(find_spec("x12-835"), [path])
    assert read.rejects == [] and len(read.records["clp"]) == 2
    by_patient = {r.fields["PAT_LAST"]: sorted(w.where for w in r.warnings if w.rule == "x12-charset")
                  for r in read.records["clp"]}
    assert by_patient == {"BÜDD": sorted([f"names.835:{payer}", f"names.835:{budd}"]),
                          "SETTLE": [f"names.835:{payer}"]}


def test_4010_837s_are_rejected_naming_their_guide(store) -> None:  # type: ignore[no-untyped-def]
    """The sample 4010 837s (GS08 004010X096A1/X098A1 in ISA version 00501; two hold names outside ASCII) are
    each one reject that names the guide and what the mapping reads, and nothing of them is stored."""
    require_shared()
    legacy = sorted((X12 / "legacy_4010").rglob("*.837"))
    assert len(legacy) == 11
    summary = _run(store, X12 / "legacy_4010")
    assert summary.files == 11 and summary.created == 0
    assert sorted(r.where for r in summary.rejects) == sorted(f"{p.name}:1" for p in legacy)
    for r in summary.rejects:
        assert re.search(r"implementation guide 004010X09[68]A1 \(GS08\) in an interchange of version 00501 "
                         r"\(ISA12\) is not one this mapping reads: it reads 5010 837s", r.reason), r.reason
    assert counts(store) == {}

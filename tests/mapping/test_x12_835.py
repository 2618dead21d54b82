"""X12 835 remittances -> ExplanationOfBenefit attached to the 837 claims they pay (SQLite and PostgreSQL).

The expected amounts are computed here from the raw segments of the TR3 sample files in
../shared/testdata/internal/x12/835 with a plain split on the separators, not with the gateway's reader."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.ingest.report import REPORT_EXTENSION
from tests.conftest import make_client, require_shared
from tests.mapping.helpers import INTERNAL, counts, ingest, read, search

X12 = INTERNAL / "x12"
R835 = X12 / "835"
EXAMPLE1 = X12 / "837p" / "demo.example1.837"  # CLM*26463774, billing NPI 1912301953
TWO_CLAIMS = X12 / "837i" / "two-claims-single-provider.837i"  # CLM*756048Q and 756049Q, NPI 1234567890
MANAGED = R835 / "managed-care.835"  # CLP 5554555444 and 8765432112, TRN 7170066655, payee NPI 5544667733
C4BB = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
APPLIED = "http://fhir-vbc-gateway.example.org/StructureDefinition/remittance-applied"


@pytest.fixture(autouse=True)
def _corpus() -> None:
    require_shared()


def segments(text: str) -> list[list[str]]:
    """The interchange split on '~' and '*' (what every sample declares)."""
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def expected_claims(text: str) -> dict[str, dict[str, Any]]:
    """CLP01 -> charge, paid, patient responsibility, claim CAS and lines (charge, paid, CAS) off the segments."""
    out: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    for seg in segments(text):
        if seg[0] == "CLP":
            cur = {"charge": float(seg[3]), "paid": float(seg[4]),
                   "resp": float(seg[5]) if len(seg) > 5 and seg[5] else None, "cas": [], "lines": []}
            out[seg[1]] = cur
        elif seg[0] in ("LX", "PLB", "SE"):
            cur = None
        elif cur is not None and seg[0] == "SVC":
            cur["lines"].append({"charge": float(seg[2]), "paid": float(seg[3]), "cas": []})
        elif cur is not None and seg[0] == "CAS":
            triples = [(seg[1], seg[i], float(seg[i + 1])) for i in range(2, len(seg) - 1, 3) if seg[i]]
            (cur["lines"][-1]["cas"] if cur["lines"] else cur["cas"]).extend(triples)
    return out


def amount(entries: list[dict[str, Any]], code: str) -> float:
    [hit] = [e["amount"]["value"] for e in entries if any(c["code"] == code for c in e["category"]["coding"])]
    return float(hit)


def cas_of(entries: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    out = []
    for e in entries:
        if "reason" in e:
            group = [c["code"] for c in e["category"]["coding"] if c["system"].endswith("adjustment-group-code")]
            out.append((group[0], e["reason"]["coding"][0]["code"], e["amount"]["value"]))
    return out


def eobs_by_claim(store: Any) -> dict[str, dict[str, Any]]:
    """CLP01 -> the stored EOB, by the payments the EOB lists as applied."""
    out = {}
    for e in search(store, "ExplanationOfBenefit"):
        for x in e.get("extension", []):
            if x["url"] == APPLIED:
                out[x["valueString"].split("|")[1]] = e
    return out


def test_samples_load_with_the_amounts_of_their_segments(store) -> None:  # type: ignore[no-untyped-def]
    assert ingest(store, "x12-837", EXAMPLE1, TWO_CLAIMS).rejects == []
    summary = ingest(store, "x12-835", R835)
    assert summary.rejects == [] and summary.files == 5
    expected: dict[str, dict[str, Any]] = {}
    for f in sorted(R835.glob("*.835")):
        expected.update(expected_claims(f.read_text()))
    assert summary.records == len(expected) == 8
    got = eobs_by_claim(store)
    assert set(got) == set(expected)
    for clp01, exp in expected.items():
        eob = got[clp01]
        assert amount(eob["total"], "submitted") == exp["charge"]
        assert amount(eob["total"], "paidtoprovider") == exp["paid"] == eob["payment"]["amount"]["value"]
        if exp["resp"] is not None:
            assert amount(eob["total"], "memberliability") == exp["resp"]
        assert cas_of(eob.get("adjudication", [])) == exp["cas"]
        assert len(eob.get("item", [])) == len(exp["lines"])
        for item, line in zip(eob.get("item", []), exp["lines"], strict=True):
            assert amount(item["adjudication"], "submitted") == line["charge"]
            assert amount(item["adjudication"], "paidtoprovider") == line["paid"]
            assert cas_of(item["adjudication"]) == line["cas"]
        assert eob["status"] == "active" and "claim" not in eob  # none of the samples pays a sample 837
        patient = read(store, "Patient", eob["patient"]["reference"].split("/")[1])
        assert patient["identifier"][0]["value"]
    # secondary-payment.835, line 2 of CLP 0001000053: CAS*PR*1*150.00**2*70.00 = deductible 150, coinsurance 70
    line2 = got["0001000053"]["item"][1]["adjudication"]
    assert amount(line2, "deductible") == 150.0 and amount(line2, "coinsurance") == 70.0
    # managed-care.835: BPR16 20002316 is no date; DTM*405 20020314 is the payment date (with a warning)
    assert got["5554555444"]["payment"]["date"] == "2002-03-14"
    assert got["5554555444"]["payment"]["identifier"]["value"] == "7170066655"
    report = summary.quality()
    assert (report["recordsRead"], report["loaded"], report["loadedWithWarnings"], report["rejected"]) == \
        (8, 8, 8, 0)
    rules = {g["rule"]: g["count"] for g in report["warnings"]}
    assert rules == {"unmatched-claim": 8, "invalid-date": 2, "missing-code": 1}


def _pays(text: str, old: str, new: str) -> str:
    """The managed-care 835 paying ``new`` instead of ``old``, sent to billing NPI 1912301953."""
    return text.replace(f"CLP*{old}*", f"CLP*{new}*").replace("*XX*5544667733~", "*XX*1912301953~")


def test_a_payment_attaches_to_the_claim_it_pays(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert ingest(store, "x12-837", EXAMPLE1).rejects == []
    claim = read(store, "Claim", "x12-1912301953-26463774")
    (tmp_path / "pays.835").write_text(_pays(MANAGED.read_text(), "5554555444", "26463774"))
    summary = ingest(store, "x12-835", tmp_path / "pays.835")
    assert summary.rejects == [] and summary.records == 2
    eob = read(store, "ExplanationOfBenefit", "x12-1912301953-26463774-eob")
    assert eob["claim"] == {"reference": "Claim/x12-1912301953-26463774"}
    assert eob["patient"] == claim["patient"] and eob["provider"] == claim["provider"]
    assert eob["insurance"][0]["coverage"] == claim["insurance"][0]["coverage"]
    assert amount(eob["total"], "paidtoprovider") == 450.0 and amount(eob["total"], "memberliability") == 300.0
    # the other payment (8765432112) pays no loaded claim: built from the 835 alone, with the warning
    unmatched = [w for w in summary.warnings if w.rule == "unmatched-claim"]
    assert [w.value for w in unmatched] == ["8765432112"]
    assert len(search(store, "ExplanationOfBenefit")) == 2


def test_reversal_then_correction_supersedes(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest(store, "x12-837", EXAMPLE1)
    original = _pays(MANAGED.read_text(), "5554555444", "26463774")
    (tmp_path / "original.835").write_text(original)
    assert ingest(store, "x12-835", tmp_path / "original.835").rejects == []
    eob_id = "x12-1912301953-26463774-eob"
    # a later remittance (new TRN) reverses the payment (CLP02 22, negated amounts) and repays it corrected
    later = (original.replace("TRN*1*7170066655*", "TRN*1*7170066999*")
             .replace("CLP*26463774*1*800.00*450.00*300.00*12*94060555410000~",
                      "CLP*26463774*22*-800.00*-450.00*-300.00*12*94060555410000~"))
    (tmp_path / "reversal.835").write_text(later)
    summary = ingest(store, "x12-835", tmp_path / "reversal.835")
    assert summary.rejects == []
    eob = read(store, "ExplanationOfBenefit", eob_id)
    assert eob["status"] == "cancelled" and amount(eob["total"], "paidtoprovider") == 450.0
    assert "7170066999" in eob["processNote"][0]["text"]
    corrected = (original.replace("TRN*1*7170066655*", "TRN*1*7170067000*")
                 .replace("CLP*26463774*1*800.00*450.00*300.00*12*94060555410000~",
                          "CLP*26463774*1*800.00*470.00*280.00*12*94060555410001~"))
    (tmp_path / "corrected.835").write_text(corrected)
    assert ingest(store, "x12-835", tmp_path / "corrected.835").rejects == []
    eob = read(store, "ExplanationOfBenefit", eob_id)
    assert eob["status"] == "active" and amount(eob["total"], "paidtoprovider") == 470.0
    assert eob["identifier"][0]["value"] == "94060555410001" and "processNote" not in eob
    # the original delivered again (already applied) does not undo the correction
    again = ingest(store, "x12-835", tmp_path / "original.835")
    assert again.created == again.updated == 0
    assert amount(read(store, "ExplanationOfBenefit", eob_id)["total"], "paidtoprovider") == 470.0


def test_reversal_and_correction_in_one_file_apply_in_order(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = MANAGED.read_text()
    clp = "CLP*5554555444*1*800.00*450.00*300.00*12*94060555410000~"
    both = text.replace(clp, "CLP*5554555444*22*-800.00*-450.00*-300.00*12*94060555410000~\n"
                        "CAS*CO*A2*-50.00~\n" + clp.replace("*450.00*", "*460.00*"))
    both = both.replace("SE*26*", "SE*28*")
    (tmp_path / "both.835").write_text(both)
    summary = ingest(store, "x12-835", tmp_path / "both.835")
    assert summary.rejects == [] and summary.records == 3
    [w] = [w for w in summary.warnings if w.rule == "reversal-without-payment"]
    eob = eobs_by_claim(store)["5554555444"]
    assert eob["status"] == "active" and amount(eob["total"], "paidtoprovider") == 460.0


def test_redelivery_changes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    ingest(store, "x12-837", EXAMPLE1)
    first = ingest(store, "x12-835", R835)
    assert first.created > 0
    before = counts(store)
    versions = {e["id"]: e["meta"]["versionId"] for e in search(store, "ExplanationOfBenefit")}
    second = ingest(store, "x12-835", R835)
    assert (second.created, second.updated) == (0, 0) and second.rejects == []
    assert counts(store) == before
    assert {e["id"]: e["meta"]["versionId"] for e in search(store, "ExplanationOfBenefit")} == versions


def test_malformed_835s_are_rejected_with_file_and_line(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = MANAGED.read_text()
    (tmp_path / "truncated.835").write_text(text[: text.index("SVC*HC:93555")])
    (tmp_path / "count.835").write_text(text.replace("SE*26*", "SE*25*"))
    (tmp_path / "notpay.835").write_text(text.replace("GS*HP*", "GS*HC*"))
    (tmp_path / "amount.835").write_text(text.replace("CLP*8765432112*1*1200.00*495.00*", "CLP*8765432112*1*1200.00*4X5*")
                                         .replace("TRN*1*7170066655*", "TRN*1*7170066656*"))
    summary = ingest(store, "x12-835", tmp_path)
    why = {r.where: r.reason for r in summary.rejects}
    lines = text.splitlines()
    trunc_last = len(text[: text.index("SVC*HC:93555")].rstrip().splitlines())
    assert why[f"truncated.835:{trunc_last}"].startswith("interchange envelope: the interchange does not end")
    se_line = next(n for n, ln in enumerate(lines, 1) if ln.startswith("SE*"))
    assert "SE01 says 25 segments, the transaction set has 26" in why["count.835:13"]
    assert f"(line {se_line})" in why["count.835:20"]
    assert "GS01 is 'HC'" in why["notpay.835:2"]
    clp_line = next(n for n, ln in enumerate(lines, 1) if ln.startswith("CLP*8765432112"))
    assert "CLP04 '4X5' is not an amount" in why[f"amount.835:{clp_line}"]
    assert len(why) == 5
    # nothing of the rejected files or claims was written; the good claim of amount.835 was
    assert list(eobs_by_claim(store)) == ["5554555444"]
    report = summary.quality()
    # claims read: those of count.835 and amount.835; a file refused whole is one reject and reads no claim
    assert (report["recordsRead"], report["loaded"], report["rejected"]) == (4, 1, 5)


def test_ingest_over_http(store) -> None:  # type: ignore[no-untyped-def]
    with make_client(store) as client:
        r = client.post("/fhir/$ingest/x12-835?filename=remit.835", content=MANAGED.read_bytes())
        assert r.status_code == 200, r.text
        [ext] = [e for e in r.json().get("extension", []) if e["url"] == REPORT_EXTENSION]
        report = json.loads(base64.b64decode(ext["valueAttachment"]["data"]))
        assert (report["recordsRead"], report["loaded"], report["rejected"]) == (2, 2, 0)
        before = counts(store)
        # a body that is no interchange: the run reports it refused (an error issue naming file and line) and
        # stores nothing; an empty body is a 400
        bad = client.post("/fhir/$ingest/x12-835?filename=bad.835", content=b"ISA*junk~")
        assert bad.status_code == 200 and bad.json()["resourceType"] == "OperationOutcome"
        [err] = [i for i in bad.json()["issue"] if i["severity"] == "error"]
        assert err["diagnostics"].startswith("bad.835:1: not an X12 interchange")
        assert counts(store) == before
        empty = client.post("/fhir/$ingest/x12-835", content=b"")
        assert empty.status_code == 400 and empty.json()["resourceType"] == "OperationOutcome"


def test_robustness_every_claim_loaded_or_rejected(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Form-only variants (CRLF, one line, other delimiters) store exactly what the samples store; the sample cut
    after every segment never crashes, every reject names a line of its file, every claim read is loaded or
    rejected, and running it again loads nothing twice."""
    from gateway.mapping.quality import reject_rule
    from tests.conftest import wipe
    from tests.mapping.mutations import crlf, x12_delimiters, x12_one_line

    def stored() -> dict[str, Any]:
        return {e["id"]: {k: v for k, v in e.items() if k != "meta"} for e in search(store, "ExplanationOfBenefit")}

    base: dict[str, Any] = {}
    for f in sorted(R835.glob("*.835")):
        ingest(store, "x12-835", f)
    base = stored()
    assert len(base) == 8
    for name, mutate in (("crlf", crlf), ("one-line", x12_one_line), ("delimiters", x12_delimiters)):
        wipe(store)
        folder = tmp_path / name
        folder.mkdir()
        for f in sorted(R835.glob("*.835")):
            (folder / f.name).write_bytes(mutate(f.read_bytes()))
        summary = ingest(store, "x12-835", folder)
        assert summary.rejects == [] and summary.records == 8, (name, summary.to_json())
        assert stored() == base, name
    data = MANAGED.read_bytes()
    cuts = [i + 1 for i, b in enumerate(data) if b == ord("~")]
    for n, cut in enumerate(cuts):
        wipe(store)
        path = tmp_path / f"cut{n}.835"
        path.write_bytes(data[:cut] + b"\n")
        summary = ingest(store, "x12-835", path)
        lines = data[:cut].count(b"\n") + 1
        for r in summary.rejects:
            name, _, line = r.where.rpartition(":")
            assert name == path.name and 1 <= int(line) <= lines and reject_rule(r.reason, r.rule) != "other", r
        assert summary.records == summary.units + len(summary.rejects) or (
            summary.records == 0 and len(summary.rejects) == 1), (n, summary.to_json())
        again = ingest(store, "x12-835", path)
        assert (again.created, again.updated) == (0, 0)
    assert summary.units == 2  # the last cut is the whole file


def test_attribution_counts_a_paid_claim_once(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Claims-based attribution reads the EOB of a paid claim in place of its Claim; after a reversal the EOB is
    out and the Claim counts again."""
    from gateway.atr.attribution_claims import claim_sources

    def sources() -> list[str]:
        return sorted(f"{r['resourceType']}/{r['id']}" for r in claim_sources(store)
                      if r["resourceType"] != "Encounter")

    ingest(store, "x12-837", EXAMPLE1)
    assert sources() == ["Claim/x12-1912301953-26463774"]
    original = _pays(MANAGED.read_text(), "5554555444", "26463774")
    (tmp_path / "pay.835").write_text(original)
    ingest(store, "x12-835", tmp_path / "pay.835")
    assert sources() == ["ExplanationOfBenefit/x12-1912301953-26463774-eob",
                         "ExplanationOfBenefit/x12-835-1912301953-8765432112"]
    reversal = (original.replace("TRN*1*7170066655*", "TRN*1*7170066999*")
                .replace("CLP*26463774*1*", "CLP*26463774*22*"))
    (tmp_path / "rev.835").write_text(reversal)
    ingest(store, "x12-835", tmp_path / "rev.835")
    assert sources() == ["Claim/x12-1912301953-26463774", "ExplanationOfBenefit/x12-835-1912301953-8765432112"]


@pytest.fixture()
def db_url(fresh_db_url: str) -> str:
    """A fresh database for the console script (tests/conftest.py ``fresh_db_url``)."""
    return fresh_db_url


def test_command_line_ingest(db_url: str, tmp_path: Path) -> None:
    """``fhir-gateway ingest --format x12-837`` then ``--format x12-835`` with the real console script."""
    import subprocess

    from tests.conftest import clean_env, gateway_exe

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", db_url, *args],
                              capture_output=True, text=True, env=clean_env(), timeout=600)

    r = run("--format", "x12-837", str(EXAMPLE1))
    assert r.returncode == 0, r.stdout + r.stderr
    (tmp_path / "pay.835").write_text(_pays(MANAGED.read_text(), "5554555444", "26463774"))
    report = tmp_path / "report.json"
    r = run("--format", "x12-835", "--report", str(report), str(tmp_path / "pay.835"))
    assert r.returncode == 0, r.stdout + r.stderr
    body = json.loads(report.read_text())
    assert body["format"] == "x12-835" and (body["recordsRead"], body["loaded"], body["rejected"]) == (2, 2, 0)
    assert {g["rule"]: g["count"] for g in body["warnings"]} == {"unmatched-claim": 1, "invalid-date": 2}
    r = run("--format", "x12-835", str(tmp_path / "pay.835"))
    assert r.returncode == 0 and "0 resources created, 0 updated" in r.stdout, r.stdout


def test_the_payee_npi_picks_among_claims_with_one_number(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two billing providers used the same patient control number: the payee's NPI picks the claim; a payee that
    is neither is attached to the first by id, with an ``ambiguous-claim`` warning."""
    other = EXAMPLE1.read_text().replace("*XX*1912301953~", "*XX*1111111112~")
    (tmp_path / "other.837").write_text(other)
    assert ingest(store, "x12-837", EXAMPLE1, tmp_path / "other.837").rejects == []
    pays = _pays(MANAGED.read_text(), "5554555444", "26463774")
    (tmp_path / "a.835").write_text(pays.replace("*XX*1912301953~", "*XX*1111111112~"))
    summary = ingest(store, "x12-835", tmp_path / "a.835")
    assert [w.rule for w in summary.warnings if w.value == "26463774"] == []
    assert read(store, "ExplanationOfBenefit", "x12-1111111112-26463774-eob")["claim"]["reference"] == \
        "Claim/x12-1111111112-26463774"
    (tmp_path / "b.835").write_text(pays.replace("*XX*1912301953~", "*XX*9999999995~")
                                    .replace("TRN*1*7170066655*", "TRN*1*7170066777*"))
    summary = ingest(store, "x12-835", tmp_path / "b.835")
    assert [w.rule for w in summary.warnings if w.value == "26463774"] == ["ambiguous-claim"]


def test_the_worker_process_attaches_payments_too(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Prepared in a worker process (large inputs), payments still find their claims: the worker opens the
    store for the look-ups."""
    from gateway.ingest.service import Ingestor
    from gateway.resources.rest import RestService
    from tests.conftest import BASE

    ingest(store, "x12-837", EXAMPLE1)
    (tmp_path / "pay.835").write_text(_pays(MANAGED.read_text(), "5554555444", "26463774"))
    summary = Ingestor(RestService(store, BASE), "x12-835", parallel=True).ingest([tmp_path / "pay.835"])
    assert summary.rejects == [] and summary.units == 2
    eob = read(store, "ExplanationOfBenefit", "x12-1912301953-26463774-eob")
    assert eob["claim"]["reference"] == "Claim/x12-1912301953-26463774"

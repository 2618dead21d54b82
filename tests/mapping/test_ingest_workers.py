"""Ingest in several processes (``workers=N``, ``fhir-gateway ingest --workers N``) stores exactly what one
process stores: the same resources with the same content, corrections and voids resolved the same way when a
claim's versions are far apart in the input or in different files, nothing loaded twice on a re-run."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.ingest.service import Ingestor
from gateway.mapping.engine import Engine
from gateway.mapping.readers import read_input
from gateway.mapping.spec import find_spec
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, FIXTURES

HEADER = (FIXTURES / "mapping" / "claims.csv").read_text().splitlines()[0].split(",")


def claims_rows(n_claims: int = 90, seed: int = 7) -> list[dict[str, str]]:
    """Claims of 12 members (so members' Patients and the providers are shared by claims of every partition),
    about a third corrected (the correction drops a diagnosis and a line) and some voided; versions of one
    claim placed far apart; one unreadable row."""
    rnd = random.Random(seed)
    rows: list[dict[str, str]] = []
    later: list[dict[str, str]] = []
    for c in range(n_claims):
        member = f"M{c % 12}"
        base = {"CLAIM_ID": f"K{c}", "VERSION": "1", "FREQUENCY": "1", "CLAIM_TYPE": "professional",
                "MEMBER_ID": member, "MEMBER_FAMILY": f"Fam{c % 12}", "MEMBER_GIVEN": "Ann",
                "MEMBER_BIRTH_DATE": "1960-02-03", "MEMBER_SEX": "F", "PAYER_ID": "P1", "PAYER_NAME": "Plan One",
                "BILLING_NPI": "1234567893", "RENDERING_NPI": "1234567893", "FROM_DATE": "2025-03-01",
                "THRU_DATE": "2025-03-01", "PLACE_OF_SERVICE": "11", "DX1": "Z1231", "DX2": "I10", "DX3": "",
                "DX4": "", "PROCEDURE_CODE": "77067", "REVENUE_CODE": "", "NDC": "", "UNITS": "1",
                "CHARGE": "200.00", "PAID": "150.00", "ADJUDICATED_DATE": "2025-03-10"}
        rows += [{**base, "LINE_NUMBER": "1"}, {**base, "LINE_NUMBER": "2", "PROCEDURE_CODE": "99213"}]
        fate = rnd.random()
        if fate < 0.35:  # corrected: DX2 and line 2 dropped
            later.append({**base, "VERSION": "2", "FREQUENCY": "7", "DX2": "", "LINE_NUMBER": "1",
                          "PAID": "160.00", "ADJUDICATED_DATE": "2025-03-20"})
        elif fate < 0.45:  # voided
            later.append({**base, "VERSION": "2", "FREQUENCY": "8", "LINE_NUMBER": "1",
                          "ADJUDICATED_DATE": "2025-03-21"})
    rnd.shuffle(later)
    out = rows[: len(rows) // 2] + later[: len(later) // 2] + rows[len(rows) // 2:] + later[len(later) // 2:]
    out.insert(7, {**out[7], "CLAIM_ID": "KBAD", "FROM_DATE": "2025-13-01"})  # rejected, with its line
    return out


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, HEADER)
        w.writeheader()
        w.writerows(rows)
    return path


def stored(store: SqlStore) -> dict[tuple[str, str], Any]:
    """Every current resource, without the store's own meta (versionId, lastUpdated)."""
    out = {}
    for s in store.iter_current():
        doc = orjson.loads(s.content)
        doc["meta"].pop("versionId")
        doc["meta"].pop("lastUpdated")
        out[(s.resource_type, s.id)] = doc
    return out


def _history_count(store: SqlStore) -> int:
    from sqlalchemy import func, select

    from gateway.store.sql.tables import HISTORY

    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(HISTORY)).scalar_one())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The input, whole and cut in three files at row positions that fall inside claims and between a claim's
    versions; and what one process stores from the whole input."""
    root = tmp_path_factory.mktemp("workers")
    rows = claims_rows()
    whole = write_csv(root / "claims.csv", rows)
    cuts = [0, len(rows) // 3 + 1, 2 * len(rows) // 3 - 1, len(rows)]
    parts = [write_csv(root / f"claims-part{i}.csv", rows[a:b]) for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]
    one = SqlStore(f"sqlite:///{root / 'one.sqlite3'}")
    try:
        summary = Ingestor(RestService(one, BASE), "claims-csv", parallel=False).ingest([whole])
        expected = stored(one)
    finally:
        one.close()
    return {"whole": whole, "parts": parts, "expected": expected, "summary": summary}


def test_the_input_exercises_what_the_workers_must_keep(inputs: dict[str, Any]) -> None:
    """Corrections, voids, retired facts, shared members and a reject are all there, and the partitions of the
    mapping split the claims without losing or repeating one."""
    expected, summary = inputs["expected"], inputs["summary"]
    retired = [d for (t, _i), d in expected.items() if t == "Procedure" and d.get("status") == "entered-in-error"]
    assert retired, "no correction or void retired a fact"
    assert any(d.get("status") == "entered-in-error" for (t, _i), d in expected.items() if t == "ExplanationOfBenefit")
    assert [r.where for r in summary.rejects] == ["claims.csv:9"]
    spec = find_spec("claims-csv")
    rd = read_input(spec, [inputs["whole"]])
    whole = sorted(u.where for u in Engine(spec).run(rd.records, []))
    rejects: list[Any] = []
    split = sorted(u.where for i in range(3) for u in Engine(spec).run(rd.records, rejects, part=(i, 3)))
    assert split == whole
    assert all(0 < sum(1 for _ in Engine(spec).run(rd.records, [], part=(i, 3))) < len(whole) for i in range(3))


def test_workers_store_what_one_process_stores(inputs: dict[str, Any], fresh_db_url: str) -> None:
    workers = 2
    store = SqlStore(fresh_db_url)
    try:
        got = Ingestor(RestService(store, BASE), "claims-csv", workers=workers).ingest([inputs["whole"]])
        assert stored(store) == inputs["expected"]
        assert [(r.where, r.reason) for r in got.rejects] == [(r.where, r.reason) for r in inputs["summary"].rejects]
        assert (got.files, got.records, got.units) == (1, inputs["summary"].records, inputs["summary"].units)
        versions = _history_count(store)
        again = Ingestor(RestService(store, BASE), "claims-csv", workers=workers).ingest([inputs["whole"]])
        assert again.created == again.updated == 0 and again.unchanged > 0
        assert _history_count(store) == versions  # no new version of anything
        assert stored(store) == inputs["expected"]
    finally:
        store.close()


def test_a_split_input_with_corrections_across_the_split_stores_what_the_whole_does(
        inputs: dict[str, Any], fresh_db_url: str) -> None:
    """The three cut files, ingested together by two processes: each claim's versions meet in one process
    whichever files they are in, so corrections and voids come out as from the whole file in one process."""
    store = SqlStore(fresh_db_url)
    try:
        got = Ingestor(RestService(store, BASE), "claims-csv", workers=2).ingest(inputs["parts"])
        assert got.files == 3 and len(got.rejects) == 1
        assert stored(store) == inputs["expected"]
    finally:
        store.close()


def test_a_refused_worker_run_raises_in_the_caller(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    try:
        with pytest.raises(OSError, match="missing.csv: cannot read"):
            Ingestor(RestService(store, BASE), "claims-csv", workers=2).ingest([tmp_path / "missing.csv"])
    finally:
        store.close()


def test_the_command_line_runs_workers(inputs: dict[str, Any], tmp_path: Path) -> None:
    """``fhir-gateway ingest --workers 2`` (the console script, through the authorization gate under the
    operator's grant): the stored resources of one process, the reject reported once, exit status 3."""
    import json
    import subprocess

    from tests.conftest import clean_env, gateway_exe

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    report = tmp_path / "report.json"
    r = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", url, "--format", "claims-csv",
                        "--workers", "2", "--report", str(report), str(inputs["whole"])],
                       capture_output=True, text=True, env=clean_env(), timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.count("rejected: claims.csv:9:") == 1
    body = json.loads(report.read_text())
    assert body["rejected"] == 1 and body["recordsRead"] == inputs["summary"].records
    store = SqlStore(url)
    try:
        assert stored(store) == inputs["expected"]
    finally:
        store.close()
    r = subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", url, "--format", "claims-csv",
                        "--workers", "0", str(inputs["whole"])], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 2 and "--workers" in r.stderr  # refused by the option's bounds, nothing run


def test_x12_claims_and_remittances_in_two_processes(tmp_path: Path) -> None:
    """The 837 samples (split by claim loop), then the 835 samples and a file that reverses and repeats a payment
    of one of them (every payment of a claim owned by one process, applied in input order): what one process
    stores, but for a provider the samples name differently under one NPI (the limit the guide states)."""
    from tests.conftest import require_shared
    from tests.mapping.helpers import INTERNAL

    require_shared()
    x12 = INTERNAL / "x12"
    text = (x12 / "835" / "managed-care.835").read_text()
    clp = "CLP*5554555444*1*800.00*450.00*300.00*12*94060555410000~"
    both = text.replace(clp, "CLP*5554555444*22*-800.00*-450.00*-300.00*12*94060555410000~\n"
                        "CAS*CO*A2*-50.00~\n" + clp.replace("*450.00*", "*460.00*")).replace("SE*26*", "SE*28*")
    (tmp_path / "both.835").write_text(both)
    runs = [("x12-837", [x12 / "837p", x12 / "837i"]), ("x12-835", [x12 / "835", tmp_path / "both.835"])]
    got = {}
    for workers in (1, 2):
        store = SqlStore(f"sqlite:///{tmp_path / f'x12-{workers}.sqlite3'}")
        try:
            summaries = [Ingestor(RestService(store, BASE), fmt, parallel=False, workers=workers).ingest(paths)
                         for fmt, paths in runs]
            got[workers] = (stored(store), [sorted((r.where, r.reason) for r in s.rejects) for s in summaries])
        finally:
            store.close()
    (one, one_rejects), (two, two_rejects) = got[1], got[2]
    several = rendered_differently("x12-837", runs[0][1])
    assert two_rejects == one_rejects
    assert set(two) == set(one)
    # the sample files reuse NPI 1234567890 under different provider names: one process leaves the name of the
    # last claim in file order, two processes the name of the claim written last (docs/guides/mappings.md)
    assert ("Organization", "npi-1234567890") in several
    for key, doc in two.items():
        if key in several:
            assert doc in several[key], key
        else:
            assert doc == one[key], key
    eobs = [d for (t, _i), d in one.items() if t == "ExplanationOfBenefit"]
    assert len(eobs) >= 5
    # managed-care.835 pays claim 5554555444, both.835 reverses that payment and then repeats it with the
    # original's trace number (a re-delivery, skipped): the files in order leave the EOB cancelled
    [eob] = [e for e in eobs if e["id"].endswith("-5554555444")]
    assert eob["status"] == "cancelled"


def rendered_differently(fmt: str, paths: list[Path]) -> dict[tuple[str, str], list[Any]]:
    """The resources the mapping renders with different content from different records of ``paths``."""
    spec = find_spec(fmt)
    rd = read_input(spec, paths)
    out: dict[tuple[str, str], list[Any]] = {}
    for unit in Engine(spec).run(rd.records, []):
        for r in unit.resources:
            seen = out.setdefault((r["resourceType"], r["id"]), [])
            if r not in seen:
                seen.append(r)
    return {k: v for k, v in out.items() if len(v) > 1}

"""The demo's synthetic claims (gateway/demo/claims.py, shipped as gateway/demo/claims.csv): the generator is
deterministic and the shipped file is its output; `--demo` ingests it through the claims-csv mapping, and the
demo breast cancer screening measure counts the members the claims put in its populations — worked out here
from the CSV rows themselves (latest version of each claim, voids dropped), not from the gateway."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import date
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

from gateway.demo.claims import claims_csv, demo_claims_csv
from gateway.services.evaluate import MeasureService
from gateway.services.loader import load_demo
from gateway.services.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, clean_env, gateway_exe

END = date(2025, 12, 31)


def _latest_claims(text: str) -> list[list[dict[str, str]]]:
    """The lines of the newest version of each claim, voided claims left out."""
    by_claim: dict[str, dict[int, list[dict[str, str]]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        by_claim.setdefault(row["CLAIM_ID"], {}).setdefault(int(row["VERSION"]), []).append(row)
    out = []
    for versions in by_claim.values():
        lines = versions[max(versions)]
        if lines[0]["FREQUENCY"] != "8":
            out.append(lines)
    return out


def _expected_screening(text: str) -> tuple[set[str], set[str]]:
    """Members in the demo breast cancer screening measure from claims: women 50-74 on 31 December with a
    (non-pharmacy) claim in 2025, and those of them with a 77067/G0202 line within 27 months of the period end."""
    ip: set[str] = set()
    screened: set[str] = set()
    for lines in _latest_claims(text):
        first = lines[0]
        birth = date.fromisoformat(first["MEMBER_BIRTH_DATE"])
        age = END.year - birth.year - ((END.month, END.day) < (birth.month, birth.day))
        if first["MEMBER_SEX"] != "F" or not 50 <= age <= 74:
            continue
        member = first["MEMBER_ID"]
        served = date.fromisoformat(first["FROM_DATE"])
        if first["CLAIM_TYPE"] != "pharmacy" and served.year == 2025:
            ip.add(member)
        if any(ln["PROCEDURE_CODE"] in ("77067", "G0202") for ln in lines) and served >= date(2023, 9, 30):
            screened.add(member)
    return ip, ip & screened


def _screening_counts(store: Any) -> dict[str, int]:
    svc = MeasureService(store, BASE)
    r = svc.evaluate(svc.find_measure("demo-breast-cancer-screening", None), "2025-01-01", "2025-12-31",
                     "population", None)
    return {p["code"]["coding"][0]["code"]: p["count"] for p in r["group"][0]["population"]}


def test_shipped_file_is_the_generators_output() -> None:
    shipped = pkg_resources.files("gateway.demo").joinpath("claims.csv").read_text()
    assert shipped == demo_claims_csv() == claims_csv(60, 1, 2025)
    assert claims_csv(60, 2, 2025) != shipped
    latest = _latest_claims(shipped)
    codes = {ln["PROCEDURE_CODE"] for lines in latest for ln in lines} | {
        ln[f"DX{i}"] for lines in latest for ln in lines for i in range(1, 5)}
    assert {"77067", "99213", "E119", "I10"} <= codes or {"G0202", "99214", "E1165", "I10"} <= codes
    assert any(ln["NDC"] for lines in latest for ln in lines)
    frequencies = {row["FREQUENCY"] for row in csv.DictReader(io.StringIO(shipped))}
    assert frequencies == {"1", "7", "8"}  # originals, replacements and voids


def test_demo_claims_change_the_screening_measure() -> None:
    without, with_claims = SqlStore("sqlite://"), SqlStore("sqlite://")
    try:
        load_demo(RestService(without, BASE), claims=False)
        summary = load_demo(RestService(with_claims, BASE))
        assert summary.errors == []
        before, after = _screening_counts(without), _screening_counts(with_claims)
    finally:
        without.close()
        with_claims.close()
    ip, numerator = _expected_screening(demo_claims_csv())
    assert len(numerator) >= 5 and len(ip) > len(numerator)
    assert after["initial-population"] - before["initial-population"] == len(ip)
    assert after["numerator"] - before["numerator"] == len(numerator)


def test_cli_writes_the_claims_file(tmp_path: Path) -> None:
    out = tmp_path / "claims.csv"
    run = subprocess.run([gateway_exe(), "synth", "--claims", str(out)], capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == demo_claims_csv()
    small = subprocess.run([gateway_exe(), "synth", "--claims", str(out), "--claims-members", "5", "--seed", "9"],
                           capture_output=True, text=True, env=clean_env(), timeout=120)
    assert small.returncode == 0 and out.read_text() == claims_csv(5, 9, 2025)
    db = tmp_path / "db.sqlite3"
    ingest = subprocess.run([gateway_exe(), "ingest", "--format", "claims-csv", "--database", f"sqlite:///{db}",
                             "--quiet", str(out)], capture_output=True, text=True, env=clean_env(), timeout=300)
    assert ingest.returncode == 0, ingest.stderr

"""`fhir-gateway evaluate` on a database filled by `fhir-gateway load`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import SHARED

CLI = [sys.executable, "-m", "gateway.cli"]
CASE = SHARED / "testdata/ecqm/CMS130/tests/007ec5f1-08cf-474a-a472-f6a92cca4b79.json"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_evaluate_subject_and_population(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    loaded = run("load", "--quiet", "--database", db, str(SHARED / "testdata/ecqm/CMS130/measure-bundle.json"), str(CASE))
    assert loaded.returncode == 0, loaded.stderr
    expected = json.loads(CASE.read_text())["entry"][-1]["resource"]["group"][0]["population"]
    out = run("evaluate", "--quiet", "--database", db, "--measure", "ColonCancerScreeningFHIR",
              "--period-start", "2025-01-01", "--period-end", "2025-12-31", "--subject", f"Patient/{CASE.stem}")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["type"] == "individual"
    got = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}
    assert got == {p["code"]["coding"][0]["code"]: p["count"] for p in expected}
    target = tmp_path / "summary.json"
    out = run("evaluate", "--quiet", "--database", db, "--measure",
              "https://madie.cms.gov/Measure/ColonCancerScreeningFHIR", "--period-start", "2025-01-01",
              "--period-end", "2025-12-31", "--output", str(target))
    assert out.returncode == 0, out.stderr
    assert json.loads(target.read_text())["type"] == "summary"
    bad = run("evaluate", "--quiet", "--database", db, "--measure", "nope", "--period-start", "2025-01-01",
              "--period-end", "2025-12-31")
    assert bad.returncode == 1 and "Measure/nope" in bad.stderr

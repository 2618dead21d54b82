"""``fhir-gateway cql translate`` and ``fhir-gateway cql run`` end to end: the real console script in a
subprocess, on CQL files written here (an included library found beside the main one), with the subject's
data from a Bundle file and from a SQLite database loaded with ``fhir-gateway load``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gateway.cql.library import ElmLibrary
from tests.conftest import clean_env, gateway_exe

COMMON = """library Common version '1.0'
using FHIR version '4.0.1'
define function Double(x Integer): x * 2
"""
MAIN = """library Main version '1.0'
using FHIR version '4.0.1'
include Common version '1.0' called C
parameter Limit Integer default 1
context Patient
define Six: C.Double(3)
define Gender: Patient.gender
define Conditions: [Condition] X return X.id
define OverLimit: Count([Condition]) > Limit
"""
BAD = "library Bad\ndefine A: 1 +\ndefine B: 2\n"
DATA = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
    {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}},
    {"resource": {"resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/p1"}}},
    {"resource": {"resourceType": "Patient", "id": "p2", "gender": "male"}},
    {"resource": {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"}}}]}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([gateway_exe(), *args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=120)


def _files(tmp_path: Path) -> None:
    (tmp_path / "Common.cql").write_text(COMMON)
    (tmp_path / "Main.cql").write_text(MAIN)
    (tmp_path / "Bad.cql").write_text(BAD)
    (tmp_path / "data.json").write_text(json.dumps(DATA))


def test_translate_writes_elm_and_reports_errors_with_position(tmp_path: Path) -> None:
    _files(tmp_path)
    r = _run("cql", "translate", "Main.cql", "Bad.cql", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Bad.cql:3:1: error: expected an expression" in r.stderr
    elm = json.loads((tmp_path / "Main.json").read_text())
    lib = ElmLibrary.from_elm(elm)
    assert lib.key.startswith("Main") and set(lib.defs) >= {"Patient", "Six", "Gender", "Conditions"}
    assert elm["library"]["includes"]["def"] == [{"localIdentifier": "C", "path": "Common", "version": "1.0"}]
    assert not (tmp_path / "Bad.json").exists()


def test_run_from_a_bundle_and_from_the_database(tmp_path: Path) -> None:
    _files(tmp_path)
    r = _run("cql", "run", "Main.cql", "--data", "data.json", "--subject", "Patient/p2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["Six"], out["Gender"], out["Conditions"], out["OverLimit"]) == (6, "male", ["c2"], False)

    db = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    loaded = _run("load", "data.json", "--database", db, "--quiet", cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    r = _run("cql", "run", "Main.cql", "--subject", "Patient/p1", "--database", db, "-p", "Limit=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["Gender"], sorted(out["Conditions"]), out["OverLimit"]) == ("female", ["c1", "c3"], False)
    r = _run("cql", "run", "Bad.cql", "--subject", "Patient/p1", "--database", db, cwd=tmp_path)
    assert r.returncode == 1 and "Bad.cql:3:1" in r.stderr

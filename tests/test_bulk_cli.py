"""``fhir-gateway export --group ID --out DIR``: the console script in a subprocess on a SQLite file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gateway.store.sql.store import SqlStore
from tests.bulk_helpers import load_population
from tests.conftest import clean_env, gateway_exe


def test_cli_export_of_a_group(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlStore(db)
    load_population(store, 40, "cli")
    store.close()
    out = tmp_path / "out"
    run = subprocess.run([gateway_exe(), "export", "--group", "cli", "--out", str(out), "--database", db,
                          "--type", "Group,Patient,Coverage,Practitioner,Organization"],
                         capture_output=True, text=True, env=clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Group": 1, "Patient": 40, "Coverage": 40, "Practitioner": 1, "Organization": 1}
    for o in manifest["output"]:
        lines = (out / o["url"]).read_text().splitlines()
        assert len(lines) == o["count"] and all(json.loads(x)["resourceType"] == o["type"] for x in lines)
    assert "Exported 83 resources" in run.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([o["url"] for o in manifest["output"]] + ["manifest.json"])
    bad = subprocess.run([gateway_exe(), "export", "--group", "nope", "--out", str(tmp_path / "x"), "--database", db],
                         capture_output=True, text=True, env=clean_env(), timeout=120)
    assert bad.returncode == 1 and "Group/nope is not known" in bad.stderr

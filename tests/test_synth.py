"""The synthetic patient generator (gateway/demo/synth.py), `fhir-gateway synth`, and `--demo`: determinism,
counts, R4B validity, and sensible results of the demo measures over the synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.demo.synth import demo_measures, generate, iter_resources, ndjson_lines, transaction_bundle
from gateway.ingest.loader import DEMO_PATIENTS, load_demo
from gateway.resources.rest import RestService
from gateway.store.sql.store import memory_store
from tests.conftest import BASE, make_client

CLI = [sys.executable, "-m", "gateway.cli"]
MEASURES = ["demo-breast-cancer-screening", "demo-controlling-blood-pressure", "demo-diabetes-a1c-poor-control"]
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_same_seed_same_output() -> None:
    a = b"".join(ndjson_lines(generate(60, seed=7)))
    b = b"".join(ndjson_lines(iter_resources(60, seed=7)))
    assert a == b
    assert a != b"".join(ndjson_lines(generate(60, seed=8)))
    assert generate(60, seed=7, period_year=2024) != generate(60, seed=7)
    # a prefix: patient n does not depend on how many follow
    assert generate(10, seed=7) == generate(60, seed=7)[:len(generate(10, seed=7))]


def test_counts_ids_and_references() -> None:
    resources = generate(300, seed=2)
    by_type = Counter(r["resourceType"] for r in resources)
    assert by_type["Patient"] == 300 and by_type["Coverage"] == 300 and by_type["Organization"] == 3
    assert by_type["Encounter"] > 300 and by_type["Condition"] > 30 and by_type["Observation"] > 60
    assert by_type["Procedure"] > 10
    keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(keys) == len(set(keys))
    known = set(keys)

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "reference"] + [x for v in node.values() for x in refs(v)]
        if isinstance(node, list):
            return [x for v in node for x in refs(v)]
        return []

    assert all(ref in known for r in resources for ref in refs(r))
    assert all(r["meta"]["tag"][0]["code"] == "synthetic" for r in resources)
    assert generate(0) == generate(0, seed=5) and Counter(r["resourceType"] for r in generate(0)) == {"Organization": 3}
    with pytest.raises(ValueError):
        generate(-1)


def test_realistic_spread() -> None:
    resources = generate(1000, seed=1)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    ages = [2025 - date.fromisoformat(p["birthDate"]).year for p in patients]
    assert min(ages) >= 0 and max(ages) <= 95 and sum(a >= 18 for a in ages) > 800
    genders = Counter(p["gender"] for p in patients)
    assert 400 < genders["female"] < 600
    codes = Counter(c["code"]["coding"][0]["code"] for c in resources if c["resourceType"] == "Condition")
    diabetes = codes["44054006"] + codes["E11.9"] + codes["E11.65"]
    assert 60 < diabetes < 200 and codes["E11.9"] + codes["E11.65"] > 10  # some coded in ICD-10-CM
    assert 200 < codes["38341003"] < 450
    a1c = [o["valueQuantity"]["value"] for o in resources
           if o["resourceType"] == "Observation" and o["code"]["coding"][0]["code"] == "4548-4"]
    assert sum(v > 9 for v in a1c) > 10 and sum(v <= 9 for v in a1c) > 50
    bps = [o for o in resources if o["resourceType"] == "Observation" and o["code"]["coding"][0]["code"] == "85354-9"]
    systolic = [b["component"][0]["valueQuantity"]["value"] for b in bps]
    assert sum(s < 140 for s in systolic) > 50 and sum(s >= 140 for s in systolic) > 20
    for r in resources:  # every clinical time is 08:00-17:00 away from the period's first and last day
        for key in ("effectiveDateTime", "performedDateTime"):
            if key in r:
                assert r[key][5:10] not in ("01-01", "12-31") and r[key].endswith("-05:00")


def test_every_resource_validates_r4b() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    from gateway.fhir.validation import validate_resource

    resources = generate(400, seed=11, period_year=2026)
    for r in resources:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
        result = validate_resource(r, "strict")
        assert result.ok and not result.warnings, (r["id"], result.errors, result.warnings)
    bundle = transaction_bundle(resources[:50])
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["entry"][3]["request"] == {"method": "PUT", "url": f"Patient/{resources[3]['id']}"}


def test_demo_loads_measures_and_synthetic_patients() -> None:
    """`--demo`: the demo bundle, the three measures and DEMO_PATIENTS synthetic patients; population
    $evaluate-measure of each demo measure gives non-zero, sensible counts."""
    store = memory_store()
    with make_client(store, demo=True) as client:
        ids = {m["id"] for m in demo_measures()}
        assert ids == set(MEASURES)
        found = client.get("/fhir/Measure", params={"_count": "50"}).json()
        assert ids <= {e["resource"]["id"] for e in found.get("entry", [])}
        tagged = client.get("/fhir/Patient", params={"_tag": "http://fhir-vbc-gateway.example.org/tags|synthetic",
                                                     "_summary": "count"}).json()
        assert tagged["total"] == DEMO_PATIENTS
        reports = {}
        for mid in MEASURES:
            r = client.get(f"/fhir/Measure/{mid}/$evaluate-measure", params=PERIOD)
            assert r.status_code == 200, r.text
            c = counts(r.json())
            assert c["initial-population"] >= 15, (mid, c)
            assert c["denominator"] == c["initial-population"]
            assert 0 < c["numerator"] < c["denominator"], (mid, c)
            reports[mid] = c
        # the numbers docs/demo-measures.md quotes (seed 1, 200 patients, plus the demo bundle's patients, with
        # the demo claims file)
        assert reports == {
            "demo-diabetes-a1c-poor-control": {"initial-population": 26, "denominator": 26, "numerator": 11},
            "demo-breast-cancer-screening": {"initial-population": 43, "denominator": 43, "numerator": 37},
            "demo-controlling-blood-pressure": {"initial-population": 59, "denominator": 59, "numerator": 33},
        }
        strata = client.get("/fhir/Measure/demo-controlling-blood-pressure/$evaluate-measure",
                            params=PERIOD).json()["group"][0]["stratifier"][0]["stratum"]
        assert {"Medicare", "Medicaid", "Private health insurance"} <= {s["value"]["text"] for s in strata}
        # the demo's ATR attribution list: every demo member with active Coverage, attributed to their GP
        atr = client.get("/fhir/Group", params={"identifier": "http://hl7.org/fhir/sid/us-npi|1291840357"}).json()
        group = next(e["resource"] for e in atr["entry"] if e["resource"]["id"] == "demo-atr-riverbend-2025")
        covered = client.get("/fhir/Coverage", params={"status": "active", "beneficiary:missing": "false",
                                                       "_count": "500"}).json()
        assert sorted(m["entity"]["reference"] for m in group["member"]) == sorted(
            e["resource"]["beneficiary"]["reference"] for e in covered["entry"]
            if e["resource"]["id"].startswith("demo-cov-"))
        assert all(m["extension"][2]["valueReference"]["reference"].startswith("Practitioner/demo-prac-")
                   for m in group["member"])
    # loading again (a restart on the same database) updates the same resources rather than adding any
    patients = sum(1 for _ in store.iter_current("Patient"))
    again = load_demo(RestService(store, BASE))
    assert not again.errors and sum(1 for _ in store.iter_current("Patient")) == patients
    store.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_cli_synth_output_and_database(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.ndjson"
    done = run("synth", "--patients", "40", "--seed", "3", "--output", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == generate(40, seed=3)
    stdout = run("synth", "--patients", "40", "--seed", "3", "--output", "-")
    assert stdout.stdout.encode() == out.read_bytes()

    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    done = run("synth", "--patients", "120", "--with-measures", "--database", db, "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"Loaded {len(generate(120)) + 3} resources" in done.stdout
    report = run("evaluate", "--quiet", "--database", db, "--measure", "demo-controlling-blood-pressure",
                 "--period-start", "2025-01-01", "--period-end", "2025-12-31")
    assert report.returncode == 0, report.stderr
    c = counts(json.loads(report.stdout))
    assert 0 < c["numerator"] < c["initial-population"]
    bad = run("synth", "--patients", "-3", "--output", str(out))
    assert bad.returncode != 0

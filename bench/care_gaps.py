#!/usr/bin/env python3
"""$care-gaps over a large Group: load N synthetic patients (the demo generator) and the demo measures into a
temporary SQLite file, put every patient in one Group, then time, side by side, a population
$evaluate-measure and GET Measure/[id]/$care-gaps for that Group through the ASGI app (real HTTP semantics, in
process) — the same path a client takes, minus the socket.

Results go to bench/results/care-gaps.json and bench/results/care-gaps.md.

    python bench/care_gaps.py [--patients 10000] [--measure demo-breast-cancer-screening]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import create_app  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.demo.synth import demo_measures, iter_resources, transaction_bundle  # noqa: E402
from gateway.store.sql.store import SqlStore  # noqa: E402

BATCH = 500


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--measure", default="demo-breast-cancer-screening")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{Path(tmp) / 'gaps.sqlite3'}")
        app = create_app(Settings(base_url="http://bench/fhir", auth="off"), store=store, access_log=False)
        with TestClient(app, base_url="http://bench") as client:
            t0 = time.perf_counter()
            batch: list[dict] = list(demo_measures())
            patients: list[str] = []
            for r in iter_resources(args.patients, seed=7, period_year=2025):
                batch.append(r)
                if r["resourceType"] == "Patient":
                    patients.append(r["id"])
                if len(batch) >= BATCH:
                    assert client.post("/fhir", json=transaction_bundle(batch)).status_code == 200
                    batch = []
            if batch:
                assert client.post("/fhir", json=transaction_bundle(batch)).status_code == 200
            group = {"resourceType": "Group", "id": "bench-group", "type": "person", "actual": True,
                     "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients]}
            assert client.put("/fhir/Group/bench-group", json=group).status_code in (200, 201)
            load_s = time.perf_counter() - t0
            # the same evaluation as a population report, side by side: what the gaps Bundles add
            t1 = time.perf_counter()
            pop = client.get(f"/fhir/Measure/{args.measure}/$evaluate-measure", params={
                "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": "Group/bench-group",
                "reportType": "population"})
            population_s = time.perf_counter() - t1
            assert pop.status_code == 200, pop.text[:500]
            t1 = time.perf_counter()
            r = client.get(f"/fhir/Measure/{args.measure}/$care-gaps", params={
                "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": "Group/bench-group",
                "status": ["open-gap", "closed-gap", "not-applicable"]})
            gaps_s = time.perf_counter() - t1
            assert r.status_code == 200, r.text[:500]
            bundles = r.json()["parameter"]
            statuses: dict[str, int] = {}
            for p in bundles:
                for e in p["resource"]["entry"]:
                    if e["resource"]["resourceType"] == "DetectedIssue":
                        code = e["resource"]["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
                        statuses[code] = statuses.get(code, 0) + 1
        store.close()
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "patients": len(patients),
              "measure": args.measure, "load_seconds": round(load_s, 1), "care_gaps_seconds": round(gaps_s, 1),
              "population_report_seconds": round(population_s, 1),
              "care_gaps_over_population": round(gaps_s / population_s, 2),
              "patients_per_second": round(len(patients) / gaps_s, 1), "bundles": len(bundles),
              "statuses": statuses, "response_bytes": len(r.content), "cpus": os.cpu_count(),
              "python": platform.python_version()}
    (out_dir / "care-gaps.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ("| patients | measure | load (s) | population report (s) | $care-gaps (s) | ratio | patients/s | bundles "
          "| statuses | response |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|\n"
          f"| {result['patients']:,} | `{args.measure}` | {result['load_seconds']} | "
          f"{result['population_report_seconds']} | {result['care_gaps_seconds']} | "
          f"{result['care_gaps_over_population']} | "
          f"{result['patients_per_second']} | {result['bundles']:,} | "
          f"{', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))} | {len(r.content) / 1e6:.1f} MB |\n")
    (out_dir / "care-gaps.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

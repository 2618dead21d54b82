#!/usr/bin/env python3
"""Bulk export benchmark: a Group of N members (Patient, Coverage and K Observations each, plus providers)
exported with the gateway's export runner, on a SQLite file and on PostgreSQL.

The data goes in with a bench-only bulk loader (batched inserts through the store's own bulk insert path:
executemany with RETURNING and buffered index rows), not over HTTP, so millions of rows load in minutes.
Each export runs in a fresh child process that reports its wall time and peak RSS (VmHWM), so the memory
figure is the export's alone; the child's peak RSS before exporting (imports, connection) is reported too.

    python bench/export_bench.py --members 10000,100000 --observations 3 --backends sqlite,postgres

Results: bench/results/export.json and bench/results/export.md (also printed; --tag names them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 5000


def observations(pid: str, k: int) -> list[dict[str, Any]]:
    return [{"resourceType": "Observation", "id": f"obs-{pid}-{j}", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": f"2025-0{1 + j % 9}-15",
             "valueQuantity": {"value": 5.5 + j / 10, "unit": "%", "system": "http://unitsofmeasure.org",
                               "code": "%"}} for j in range(k)]


def bulk_load(url: str, members: int, k: int) -> tuple[int, float]:
    """Load the population with batched inserts; returns (resources, seconds)."""
    from gateway.demo.attribution import synthetic_population
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url)
    start = time.monotonic()
    n = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        with store.session() as s:
            for r in batch:
                s.write(r, "POST", known_new=True)
        batch.clear()

    for r in synthetic_population(members, "bench", "m"):
        batch.append(r)
        if r["resourceType"] == "Patient":
            batch.extend(observations(r["id"], k))
        if len(batch) >= BATCH:
            n += len(batch)
            flush()
    n += len(batch)
    flush()
    if store.dialect == "postgresql":  # what autovacuum does soon after a bulk load: planner statistics
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    store.close()
    return n, time.monotonic() - start


def hwm_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage: its ru_maxrss is inherited from the parent
    across fork and exec, so a child would report the loader's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url: str, out: str) -> None:
    """Run one group export to its end and print wall time, counts and memory as JSON."""
    from gateway.bulk.request import parse_export
    from gateway.bulk.runner import ExportRunner
    from gateway.search.params import patient_compartment
    from gateway.store.sql.export_jobs import Job, JobStore
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url, migrate=False)
    comp = patient_compartment()
    jobs = JobStore(store)
    req = parse_export("group", [("_type", "Group,Patient,Coverage,Observation,Practitioner,Organization")], comp,
                       "bench")
    job = Job(uuid.uuid4().hex, "queued", None, "bench", req.to_json(), "2099-01-01T00:00:00.000Z",
              "2099-01-01T00:00:00.000Z")
    jobs.create(job)
    claimed = jobs.claim(3600, only=job.id)
    baseline = hwm_mb()
    runner = ExportRunner(store, jobs, Path(out), comp)
    start = time.monotonic()
    marks: dict[str, float] = {}

    def on_progress(p: dict[str, Any]) -> None:  # when each type's step begins
        steps = p.get("steps") or []
        if p.get("step", 0) < len(steps):
            marks.setdefault(steps[p["step"]][1], time.monotonic())

    status = runner.run(claimed, on_progress)
    wall = time.monotonic() - start
    order = sorted(marks.items(), key=lambda kv: kv[1]) + [("end", start + wall)]
    step_seconds = {t: round(order[i + 1][1] - at, 2) for i, (t, at) in enumerate(order[:-1])}
    done = jobs.get(job.id)
    counts: dict[str, int] = {}
    for o in done.progress.get("outputs", []):
        counts[o["type"]] = counts.get(o["type"], 0) + o["count"]
    size = sum(f.stat().st_size for f in (Path(out) / job.id).iterdir())
    print(json.dumps({"status": status, "seconds": wall, "counts": counts, "bytes": size, "steps": step_seconds,
                      "baseline_rss_mb": baseline, "peak_rss_mb": hwm_mb()}))


def pg_database() -> tuple[str, str]:
    import psycopg

    name = f"gw_bench_export_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_one(backend: str, members: int, k: int, work: Path) -> dict[str, Any]:
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{work / f'export-{members}.sqlite3'}"
    else:
        pg_name, url = pg_database()
    try:
        loaded, load_s = bulk_load(url, members, k)
        out = work / f"out-{backend}-{members}"
        proc = subprocess.run([sys.executable, __file__, "--child", url, str(out)], capture_output=True, text=True,
                              check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(out, ignore_errors=True)
        exported = sum(res["counts"].values())
        row = {"backend": backend, "members": members, "observations_per_member": k, "loaded": loaded,
               "load_seconds": round(load_s, 1), "exported": exported, "export_seconds": round(res["seconds"], 2),
               "resources_per_s": round(exported / res["seconds"]), "mb": round(res["bytes"] / 2**20, 1),
               "baseline_rss_mb": round(res["baseline_rss_mb"], 1), "peak_rss_mb": round(res["peak_rss_mb"], 1),
               "status": res["status"], "counts": res["counts"], "step_seconds": res["steps"]}
        print(json.dumps(row), flush=True)
        return row
    finally:
        if backend == "sqlite":
            for f in work.glob(f"export-{members}.sqlite3*"):
                f.unlink()
        elif pg_name:
            drop_pg(pg_name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", default="10000")
    ap.add_argument("--observations", type=int, default=3)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--tag", default="export", help="results file name: bench/results/TAG.json and TAG.md")
    ap.add_argument("--child", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="gw-export-bench-") as tmp:
        for backend in args.backends.split(","):
            for m in (int(x) for x in args.members.split(",")):
                rows.append(run_one(backend, m, args.observations, Path(tmp)))
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = ["| backend | members | resources exported | export s | resources/s | NDJSON MB | child RSS before MB "
             "| peak RSS MB | load s (bench loader) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['members']:,} | {r['exported']:,} | {r['export_seconds']} | "
                     f"{r['resources_per_s']:,} | {r['mb']} | {r['baseline_rss_mb']} | {r['peak_rss_mb']} | "
                     f"{r['load_seconds']} |")
    table = "\n".join(lines)
    (RESULTS / f"{args.tag}.md").write_text(f"{meta['when']}, {meta['machine']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Bulk export benchmark: an ATR Group of N members, each with a 50-resource clinical chart (Patient, Coverage,
Encounters, Conditions, Observations, DiagnosticReports, Procedures, MedicationRequests, Immunizations, an
AllergyIntolerance and a Claim), plus the shared Practitioners, clinic Locations and Organizations, exported
with the gateway's export runner, on a SQLite file and on PostgreSQL.

The data goes in with the bench-only cloning loader (``export_loader.py``: one template chart written through
the store's own code, its rows cloned per member and inserted with executemany or COPY), so 5 million
resources load in minutes. Each export runs in a fresh child process that reports its wall time and peak RSS
(VmHWM), so the memory figure is the export's alone; the child's peak RSS before exporting (imports,
connection) is reported too.

    python bench/export_bench.py --members 10000,100000 --backends sqlite,postgres --workdir ../bench-data

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
sys.path.insert(0, str(BENCH_DIR))
EXPORT_TYPES = ("Group", "Patient", "Coverage", "Encounter", "Condition", "Observation", "DiagnosticReport",
                "Procedure", "MedicationRequest", "Immunization", "AllergyIntolerance", "Claim", "Practitioner",
                "Organization", "Location")


def bulk_load(url: str, members: int) -> tuple[int, float]:
    """Load the population with the cloning loader; returns (resources, seconds)."""
    from export_loader import load

    start = time.monotonic()
    step = max(1, members // 10)

    def progress(done: int) -> None:
        if done % step < 2000:
            print(f"  loaded {done:,} of {members:,} members ({time.monotonic() - start:.0f} s)", file=sys.stderr,
                  flush=True)

    n = load(url, members, "bench", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), progress=progress)
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
    from gateway.store.sql.jobs import Job, JobStore
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url, migrate=False)
    comp = patient_compartment()
    jobs = JobStore(store)
    req = parse_export("group", [("_type", ",".join(EXPORT_TYPES))], comp, "bench")
    job = Job(uuid.uuid4().hex, "queued", None, "bench", req.to_json(), "2099-01-01T00:00:00.000Z",
              "2099-01-01T00:00:00.000Z")
    jobs.create(job)
    claimed = jobs.claim(only=job.id)
    baseline = hwm_mb()
    runner = ExportRunner(store, jobs, Path(out), comp, opt_out="")
    start = time.monotonic()
    cpu = os.times()
    marks: dict[str, float] = {}

    def on_progress(p: dict[str, Any]) -> None:  # when each type's step begins
        steps = p.get("steps") or []
        if p.get("step", 0) < len(steps):
            marks.setdefault(steps[p["step"]][1], time.monotonic())

    status = runner.run(claimed, on_progress=on_progress)
    wall = time.monotonic() - start
    cpu_s = sum(os.times()[:2]) - sum(cpu[:2])  # this process's user + system time: the export's own CPU
    order = sorted(marks.items(), key=lambda kv: kv[1]) + [("end", start + wall)]
    step_seconds = {t: round(order[i + 1][1] - at, 2) for i, (t, at) in enumerate(order[:-1])}
    done = jobs.get(job.id)
    counts: dict[str, int] = {}
    for o in done.progress.get("outputs", []):
        counts[o["type"]] = counts.get(o["type"], 0) + o["count"]
    size = sum(f.stat().st_size for f in (Path(out) / job.id).iterdir())
    print(json.dumps({"status": status, "seconds": wall, "counts": counts, "bytes": size, "steps": step_seconds,
                      "baseline_rss_mb": baseline, "peak_rss_mb": hwm_mb(), "cpu_seconds": cpu_s}))


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


def run_one(backend: str, members: int, work: Path, existing: str | None = None) -> dict[str, Any]:
    pg_name = None
    if existing:
        url = existing
    elif backend == "sqlite":
        url = f"sqlite:///{work / f'export-{members}.sqlite3'}"
    else:
        pg_name, url = pg_database()
    try:
        loaded, load_s = bulk_load(url, members) if not existing else (0, 0.0)
        out = work / f"out-{backend}-{members}"
        load_before = os.getloadavg()
        proc = subprocess.run([sys.executable, __file__, "--child", url, str(out)], capture_output=True, text=True,
                              check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(out, ignore_errors=True)
        exported = sum(res["counts"].values())
        row = {"backend": backend, "members": members, "loaded": loaded,
               "load_seconds": round(load_s, 1), "exported": exported, "export_seconds": round(res["seconds"], 2),
               "resources_per_s": round(exported / res["seconds"]), "mb": round(res["bytes"] / 2**20, 1),
               "baseline_rss_mb": round(res["baseline_rss_mb"], 1), "peak_rss_mb": round(res["peak_rss_mb"], 1),
               "cpu_seconds": round(res["cpu_seconds"], 1), "status": res["status"], "counts": res["counts"],
               "step_seconds": res["steps"],
               "loadavg_before": [round(x, 2) for x in load_before],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(row), flush=True)
        return row
    finally:
        if existing:
            pass
        elif backend == "sqlite":
            for f in work.glob(f"export-{members}.sqlite3*"):
                f.unlink()
        elif pg_name:
            drop_pg(pg_name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", default="10000")
    ap.add_argument("--workdir", type=Path, help="directory for the SQLite files and the NDJSON output (several "
                    "GB at 100,000 members; default: a temporary directory)")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--tag", default="export", help="results file name: bench/results/TAG.json and TAG.md")
    ap.add_argument("--existing", metavar="URL", help="export a database an earlier run loaded (one --members "
                    "value, one backend): nothing is loaded or removed; its load columns read 0")
    ap.add_argument("--child", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="gw-export-bench-", dir=args.workdir) as tmp:
        for backend in args.backends.split(","):
            for m in (int(x) for x in args.members.split(",")):
                rows.append(run_one(backend, m, Path(tmp), args.existing))
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = ["| backend | members | resources exported | export s | resources/s | export CPU s | NDJSON MB "
             "| child RSS before MB | peak RSS MB | load s (bench loader) | load average (1 min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['members']:,} | {r['exported']:,} | {r['export_seconds']} | "
                     f"{r['resources_per_s']:,} | {r['cpu_seconds']} | {r['mb']} | {r['baseline_rss_mb']} | "
                     f"{r['peak_rss_mb']} | {r['load_seconds']} | {r['loadavg_before'][0]} → {r['loadavg_after'][0]} |")
    steps = ["", "Seconds per type step:", ""]
    for r in rows:
        steps.append(f"- {r['backend']} {r['members']:,}: " + ", ".join(f"{t} {v}" for t, v in r["step_seconds"].items()))
    table = "\n".join(lines + steps)
    (RESULTS / f"{args.tag}.md").write_text(f"{meta['when']}, {meta['machine']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Mapping throughput: CCLF (Part B physician lines, CSV warehouse form, with the beneficiaries they belong to)
and the generic claims CSV, scaled from the sample rows to N claim lines, ingested end to end (read, map,
validate, write) into a fresh SQLite file and a fresh PostgreSQL database. A mapping-only pass (read + map, no
validation, no store) shows where the time goes.

    python bench/ingest.py --lines 1000000               # the issue's size
    python bench/ingest.py --lines 50000 --backends sqlite
    python bench/ingest.py --lines 50000 --prepare both   # prepare stage in process vs in a worker process

Scaling: every claim gets 3 lines; the sample row's codes and amounts are kept, the claim id, control number,
line number and member MBI are rewritten so that every claim and 1 member in 10 claims is new. Results go to
bench/results/ingest-<tag>.json and .md (`--tag`, default `latest`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TUVA = ROOT.parent / "shared" / "testdata" / "internal" / "cclf" / "csv_fixtures" / "tuva"
CLAIMS_SAMPLE = ROOT / "tests" / "fixtures" / "mapping" / "claims.csv"
PG_ADMIN = os.environ.get("GATEWAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def scale_cclf(out: Path, lines: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (TUVA / "partb_physicians.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (TUVA / "beneficiary_demographics.csv").open() as fh:
        benes = list(csv.DictReader(fh))
    header = list(rows[0])
    template = [r for r in rows if r["CLM_CNTL_NUM"] == "000000000007016" and r["CUR_CLM_UNIQ_ID"] == "0000000001066"]
    members = max(1, lines // 30)
    with (out / "partb_physicians.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        n = 0
        claim = 0
        while n < lines:
            claim += 1
            for i, t in enumerate(template):
                if n >= lines:
                    break
                r = dict(t)
                r.update(CUR_CLM_UNIQ_ID=f"{claim:013d}", CLM_CNTL_NUM=f"B{claim:014d}", CLM_LINE_NUM=f"{i + 1:010d}",
                         BENE_MBI_ID=f"9ZZ{claim % members:08d}", CLM_ADJSMT_TYPE_CD="0")
                w.writerow(r)
                n += 1
    bh = list(benes[0])
    with (out / "beneficiary_demographics.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, bh)
        w.writeheader()
        for m in range(members):
            r = dict(benes[0])
            r["BENE_MBI_ID"] = f"9ZZ{m:08d}"
            w.writerow(r)


def scale_claims_csv(out: Path, lines: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with CLAIMS_SAMPLE.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["CLAIM_ID"] == "C1" and r["VERSION"] == "1"]
    header = list(rows[0])
    members = max(1, lines // 30)
    with (out / "claims.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        for n in range(lines):
            claim = n // 3
            r = dict(rows[0])
            r.update(CLAIM_ID=f"K{claim}", LINE_NUMBER=str(n % 3 + 1), MEMBER_ID=f"M{claim % members}")
            w.writerow(r)


def run_one(fmt: str, data: Path, url: str, lines: int, parallel: bool | None = None, workers: int = 1) -> dict:
    """One end-to-end ingest into ``url`` (a fresh database), timed from the call to its return (with
    ``workers`` > 1 that includes starting the processes)."""
    from gateway.ingest.service import Ingestor
    from gateway.resources.rest import RestService
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url)
    t0 = time.perf_counter()
    cpu0 = _cpu()
    s = Ingestor(RestService(store, "http://bench/fhir"), fmt, parallel=parallel, workers=workers).ingest([data])
    secs = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    store.close()
    mode = (f"{workers} processes (--workers {workers})" if workers > 1 else
            {None: "auto", True: "worker process", False: "in process"}[parallel])
    return {"format": fmt, "lines": lines, "seconds": round(secs, 2), "lines_per_s": round(lines / secs),
            "resources": s.resources, "resources_per_s": round(s.resources / secs), "rejects": len(s.rejects),
            "retries": s.retries, "prepare": mode, "workers": workers, "cpu_seconds": round(cpu, 1),
            "load_avg_1m": round(os.getloadavg()[0], 1)}


def _cpu() -> float:
    """CPU seconds of this process and its ended children (the ingest's worker processes once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def map_only(fmt: str, data: Path, lines: int) -> dict:
    from gateway.mapping.engine import Engine
    from gateway.mapping.readers import read_input
    from gateway.mapping.spec import find_spec

    spec = find_spec(fmt)
    t0 = time.perf_counter()
    read = read_input(spec, [data])
    n = sum(len(u.resources) for u in Engine(spec).run(read.records, read.rejects))
    secs = time.perf_counter() - t0
    return {"format": fmt, "lines": lines, "seconds": round(secs, 2), "lines_per_s": round(lines / secs),
            "resources": n, "resources_per_s": round(n / secs), "backend": "none (read + map only)"}


def pg_database() -> tuple[str, str]:
    import psycopg

    name = f"gw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--formats", default="cclf,claims-csv")
    ap.add_argument("--tag", default="latest", help="results go to bench/results/ingest-<tag>.{json,md}")
    ap.add_argument("--prepare", default="auto",
                    help="auto (the ingest default: a worker process for inputs of 2 MB and more), inprocess, worker, "
                         "or both (in process and worker, side by side)")
    args = ap.parse_args()
    modes = {"auto": [None], "worker": [True], "inprocess": [False], "both": [False, True]}[args.prepare]
    results = []
    with tempfile.TemporaryDirectory(prefix="gw-bench-ingest-") as tmp:
        root = Path(tmp)
        for fmt in args.formats.split(","):
            data = root / fmt
            (scale_cclf if fmt == "cclf" else scale_claims_csv)(data, args.lines)
            results.append({**map_only(fmt, data, args.lines), "load_avg_1m": round(os.getloadavg()[0], 1)})
            print(json.dumps(results[-1]), flush=True)
            for backend in args.backends.split(","):
                for mode in modes:
                    if backend == "sqlite":
                        db = root / f"{fmt}-{mode}.sqlite3"
                        r = run_one(fmt, data, f"sqlite:///{db}", args.lines, mode)
                        db.unlink()
                    else:
                        name, url = pg_database()
                        try:
                            r = run_one(fmt, data, url, args.lines, mode)
                        finally:
                            drop_pg(name)
                    r["backend"] = backend
                    results.append(r)
                    print(json.dumps(r), flush=True)
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "note": "2-core machine; each row has the load average when it ended",
            "load_avg_at_end": [round(x, 1) for x in os.getloadavg()]}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"ingest-{args.tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    md = ["| format | backend | prepare | claim lines | seconds | lines/s | resources | resources/s | load (1 min) |",
          "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['format']} | {r['backend']} | {r.get('prepare', '')} | {r['lines']:,} | {r['seconds']} | "
           f"{r['lines_per_s']:,} | {r['resources']:,} | {r['resources_per_s']:,} | {r['load_avg_1m']} |"
           for r in results]
    (out / f"ingest-{args.tag}.md").write_text(f"Measured {meta['when']} ({meta['note']}).\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

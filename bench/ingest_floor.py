#!/usr/bin/env python3
"""The storage floor of an ingest on SQLite: what writing the rows alone costs, with no Python work per row.

Ingests N scaled CCLF claim lines (as `bench/ingest.py` does) into a fresh SQLite file, then replays every row
that ingest stored (resources, history, search index rows) into a fresh database with the same schema, through
the sqlite3 module's ``executemany`` in chunks the size of the ingest's, one transaction per chunk, the same
pragmas as the gateway's. Variants drop parts of the schema to show what each costs:

    full             the schema as it is
    no-query-index   without the index tables' search indexes (ix_idx_*_q, ix_idx_ref_target)
    no-res-pk-index  without the index tables' res_pk indexes (used to delete a resource's rows on update)
    no-index-rows    resources and history only

    python bench/ingest_floor.py --lines 20000

Results: bench/results/ingest-floor-<lines>.json and .md. The replay is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TABLES = ["resource", "resource_history", "idx_string", "idx_token", "idx_date", "idx_ref", "idx_number",
          "idx_uri", "idx_composite"]
VARIANTS = {
    "full": set(),
    "no-query-index": {"ix_idx_string_q", "ix_idx_token_q", "ix_idx_date_q", "ix_idx_ref_q", "ix_idx_ref_target",
                       "ix_idx_number_q", "ix_idx_uri_q", "ix_idx_composite_q"},
    "no-res-pk-index": {f"ix_{t}_res_pk" for t in TABLES if t.startswith("idx_")},
    "no-index-rows": set(),
}


def ingest(lines: int, root: Path) -> Path:
    from ingest import scale_cclf

    from gateway.ingest.service import Ingestor
    from gateway.resources.rest import RestService
    from gateway.store.sql.store import SqlStore

    data = root / "cclf"
    scale_cclf(data, lines)
    db = root / "ingested.sqlite3"
    store = SqlStore(f"sqlite:///{db}")
    summary = Ingestor(RestService(store, "http://bench/fhir"), "cclf").ingest([data])
    store.close()
    assert not summary.rejects, summary.rejects[:3]
    return db


def replay(src: sqlite3.Connection, rows: dict[str, tuple[list[str], list[tuple]]], variant: str, dst: Path,
           chunks: int) -> dict[str, float]:
    for p in dst.parent.glob(dst.name + "*"):
        p.unlink()
    d = sqlite3.connect(dst, isolation_level=None)
    d.execute("PRAGMA journal_mode=WAL")
    d.execute("PRAGMA synchronous=NORMAL")
    d.execute("PRAGMA cache_size=-32768")
    for name, sql in src.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                 "AND name NOT LIKE 'sqlite_%'"):
        if name not in VARIANTS[variant]:
            d.execute(sql)
    tables = TABLES[:2] if variant == "no-index-rows" else TABLES
    per = dict.fromkeys([*tables, "commit"], 0.0)
    t0 = time.perf_counter()
    for k in range(chunks):
        d.execute("BEGIN IMMEDIATE")
        for t in tables:
            cols, data = rows[t]
            part = data[len(data) * k // chunks:len(data) * (k + 1) // chunks]
            if part:
                t1 = time.perf_counter()
                d.executemany(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", part)
                per[t] += time.perf_counter() - t1
        t1 = time.perf_counter()
        d.execute("COMMIT")
        per["commit"] += time.perf_counter() - t1
    per["total"] = time.perf_counter() - t0
    d.close()
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gw-bench-floor-") as tmp:
        root = Path(tmp)
        db = ingest(args.lines, root)
        src = sqlite3.connect(db)
        rows = {}
        for t in TABLES:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({t})") if r[1] != "pk"]
            order = "res_pk, pk" if t.startswith("idx_") else "pk"
            rows[t] = (cols, src.execute(f"SELECT {', '.join(cols)} FROM {t} ORDER BY {order}").fetchall())
        counts = {t: len(rows[t][1]) for t in TABLES}
        chunks = max(1, counts["resource"] // 2000)  # the ingest's chunks: about 2,000 resources each
        results = {}
        for variant in VARIANTS:
            runs = [replay(src, rows, variant, root / "replay.sqlite3", chunks) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["total"])
            results[variant] = {k: round(v, 3) for k, v in best.items()}
            results[variant]["lines_per_s"] = round(args.lines / best["total"])
            print(variant, json.dumps(results[variant]), flush=True)
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "lines": args.lines, "rows": counts,
            "index_rows_per_line": round(sum(v for k, v in counts.items() if k.startswith("idx_")) / args.lines, 1),
            "cpus": os.cpu_count(), "load_avg_at_end": [round(x, 1) for x in os.getloadavg()]}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    result = json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    (out / f"ingest-floor-{args.lines}.json").write_text(result)
    md = ["| schema | seconds | lines/s (writes alone) |", "|---|---:|---:|"]
    md += [f"| {v} | {r['total']} | {r['lines_per_s']:,} |" for v, r in results.items()]
    (out / f"ingest-floor-{args.lines}.md").write_text(
        f"Measured {meta['when']}: {args.lines:,} CCLF claim lines, rows {counts}.\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

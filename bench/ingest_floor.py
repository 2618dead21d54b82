#!/usr/bin/env python3
"""End-to-end ingest against its storage floor, side by side in one run, on SQLite and PostgreSQL.

For each backend: N scaled claim lines (`bench/ingest.py`'s scaling) are ingested end to end into a fresh
database in each mode — one process (prepare and write in this process), the default (a prepare worker process
and this writing process) and `--workers 2` (two processes, each preparing and writing its share of the claims)
— then every row the one-process ingest stored (resources, history, search index rows) is replayed into a fresh
database with the same schema, with no Python work per row: SQLite through ``executemany`` with the gateway's
pragmas, PostgreSQL through ``COPY`` (the gateway's bulk path), in chunks the size of the ingest's, one
transaction per chunk. The floor is the best of ``--repeat`` replays. On SQLite, variants drop parts of the
schema to show what each costs (``--variants all``):

    full             the schema as it is
    no-query-index   without the index tables' search indexes (ix_idx_*_q, ix_idx_ref_target)
    no-res-pk-index  without the index tables' res_pk indexes (used to delete a resource's rows on update)
    no-index-rows    resources and history only

    python bench/ingest_floor.py --lines 20000
    python bench/ingest_floor.py --lines 20000 --backends sqlite --modes inprocess --variants all

Results: bench/results/ingest-floor-<tag>.json and .md (tag: --tag, default the line count), with each
ingest's share of the floor and the --workers 2 / one-process ratio.
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


def rows_of(url: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every row an ingest stored, per table (without the tables' own surrogate ``pk``), in write order."""
    out = {}
    if url.startswith("sqlite"):
        src = sqlite3.connect(url.removeprefix("sqlite:///"))
        for t in TABLES:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({t})") if r[1] != "pk"]
            order = "res_pk, pk" if t.startswith("idx_") else "pk"
            out[t] = (cols, src.execute(f"SELECT {', '.join(cols)} FROM {t} ORDER BY {order}").fetchall())
        src.close()
        return out
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as c:
        for t in TABLES:
            cols = [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                            "AND column_name <> 'pk' ORDER BY ordinal_position", (t,))]
            order = "res_pk, pk" if t.startswith("idx_") else "pk"
            out[t] = (cols, c.execute(f"SELECT {', '.join(cols)} FROM {t} ORDER BY {order}").fetchall())
    return out


def replay_pg(rows: dict[str, tuple[list[str], list[tuple]]], chunks: int) -> dict[str, float]:
    """The PostgreSQL floor: the rows into a fresh database with the gateway's schema (made by its migrations)
    through ``COPY`` (what the gateway's bulk path uses), one transaction per chunk."""
    import psycopg
    from ingest import drop_pg, pg_database

    from gateway.store.sql.store import SqlStore

    name, url = pg_database()
    try:
        SqlStore(url).close()  # the schema
        per = dict.fromkeys([*TABLES, "commit"], 0.0)
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as c:
            t0 = time.perf_counter()
            for k in range(chunks):
                with c.transaction():
                    for t in TABLES:
                        cols, data = rows[t]
                        part = data[len(data) * k // chunks:len(data) * (k + 1) // chunks]
                        if part:
                            t1 = time.perf_counter()
                            with c.cursor() as cur, cur.copy(f"COPY {t} ({', '.join(cols)}) FROM STDIN") as cp:
                                for row in part:
                                    cp.write_row(row)
                            per[t] += time.perf_counter() - t1
            per["total"] = time.perf_counter() - t0
        return per
    finally:
        drop_pg(name)


def fresh(backend: str, root: Path, tag: str) -> tuple[str, object]:
    from ingest import drop_pg, pg_database

    if backend == "sqlite":
        db = root / f"{tag}.sqlite3"
        return f"sqlite:///{db}", lambda: [p.unlink() for p in root.glob(f"{tag}.sqlite3*")]
    name, url = pg_database()
    return url, lambda: drop_pg(name)


MODES = {"inprocess": (False, 1), "auto": (None, 1), "workers2": (False, 2), "workers3": (False, 3)}
MODE_NAMES = {"inprocess": "1 process", "auto": "2 processes: prepare worker + writer (the default)",
              "workers2": "2 processes: --workers 2", "workers3": "3 processes: --workers 3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--format", default="cclf", choices=["cclf", "claims-csv"])
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--modes", default="inprocess,auto,workers2", help=f"ingest modes: {', '.join(MODES)}")
    ap.add_argument("--variants", default="full", help="SQLite floor schema variants: full, or all")
    ap.add_argument("--tag", default=None, help="results: bench/results/ingest-floor-<tag>.{json,md}")
    args = ap.parse_args()
    from ingest import run_one, scale_cclf, scale_claims_csv

    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    results: dict[str, dict] = {}
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="gw-bench-floor-") as tmp:
        root = Path(tmp)
        data = root / args.format
        (scale_cclf if args.format == "cclf" else scale_claims_csv)(data, args.lines)
        for backend in args.backends.split(","):
            out: dict = {"ingest": {}, "floor": {}}
            rows = None
            for mode in args.modes.split(","):
                parallel, workers = MODES[mode]
                url, cleanup = fresh(backend, root, f"ingest-{mode}")
                try:
                    r = run_one(args.format, data, url, args.lines, parallel, workers)
                    assert r["rejects"] == 0, r
                    if rows is None:
                        rows = rows_of(url)
                finally:
                    cleanup()  # type: ignore[operator]
                r["mode"] = MODE_NAMES[mode]
                out["ingest"][mode] = r
                print(backend, json.dumps(r), flush=True)
            assert rows is not None
            counts[backend] = {t: len(rows[t][1]) for t in TABLES}
            chunks = max(1, counts[backend]["resource"] // 2000)  # the ingest's chunks: about 2,000 resources each
            for variant in (variants if backend == "sqlite" else ["full"]):
                if backend == "sqlite":
                    src = sqlite3.connect(":memory:")
                    schema_db, drop = fresh("sqlite", root, "schema")
                    from gateway.store.sql.store import SqlStore

                    SqlStore(schema_db).close()
                    src = sqlite3.connect(schema_db.removeprefix("sqlite:///"))
                    runs = [replay(src, rows, variant, root / "replay.sqlite3", chunks) for _ in range(args.repeat)]
                    src.close()
                    drop()  # type: ignore[operator]
                else:
                    runs = [replay_pg(rows, chunks) for _ in range(args.repeat)]
                best = min(runs, key=lambda r: r["total"])
                f = {k: round(v, 3) for k, v in best.items()}
                f["lines_per_s"] = round(args.lines / best["total"])
                f["load_avg_1m"] = round(os.getloadavg()[0], 1)
                out["floor"][variant] = f
                print(backend, variant, json.dumps(f), flush=True)
            floor = out["floor"]["full"]["lines_per_s"]
            for r in out["ingest"].values():
                r["of_floor"] = round(r["lines_per_s"] / floor, 3)
            if "inprocess" in out["ingest"] and "workers2" in out["ingest"]:
                out["workers2_over_one"] = round(out["ingest"]["workers2"]["lines_per_s"]
                                                 / out["ingest"]["inprocess"]["lines_per_s"], 2)
            results[backend] = out
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "lines": args.lines,
            "format": args.format, "rows": counts, "cpus": os.cpu_count(),
            "load_avg_at_end": [round(x, 1) for x in os.getloadavg()]}
    tag = args.tag or str(args.lines)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"ingest-floor-{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    md = ["| backend | what | seconds | claim lines/s | of the floor | CPU s (this process + workers) | load (1 min) |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for backend, out in results.items():
        for variant, f in out["floor"].items():
            md.append(f"| {backend} | floor: rows replayed ({variant} schema) | {f['total']} | {f['lines_per_s']:,} | "
                      f"| | {f['load_avg_1m']} |")
        for r in out["ingest"].values():
            md.append(f"| {backend} | ingest, {r['mode']} | {r['seconds']} | {r['lines_per_s']:,} | "
                      f"{r['of_floor']:.0%} | {r['cpu_seconds']} | {r['load_avg_1m']} |")
    ratios = [f"{b}: --workers 2 / 1 process = {o['workers2_over_one']}x" for b, o in results.items()
              if "workers2_over_one" in o]
    (out_dir / f"ingest-floor-{tag}.md").write_text(
        f"Measured {meta['when']}: {args.lines:,} {args.format} claim lines, {os.cpu_count()} CPUs, load average at the "
        f"end {meta['load_avg_at_end']}. Rows per backend: {counts}.\n\n" + "\n".join(md) + "\n\n"
        + "; ".join(ratios) + "\n")
    print("\n".join(md))
    print("; ".join(ratios))


if __name__ == "__main__":
    main()

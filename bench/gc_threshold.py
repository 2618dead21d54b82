#!/usr/bin/env python3
"""Population runs with the cyclic collector's default first-generation threshold against the raised one the
gateway uses during a run (``gateway/measure/gcpolicy.py``), side by side in one process on the same data.

The data: ``--charts`` synthetic charts (``fhir-gateway synth --charts``, about 120 resources each) in a fresh
SQLite database, with the eCQM measure bundles from ``../shared/testdata/ecqm``. Each measure is prepared
once, then evaluated over all charts ``--rounds`` times in each mode, the modes alternating (default first),
so that load from elsewhere on the machine falls on both. Reported: process CPU seconds (all threads) and wall
seconds per run, the median of each mode, and the CPU ratio.

    python bench/gc_threshold.py --charts 600 --measures CMS130,CMS122,CMS125 --rounds 3

Results: bench/results/gc-threshold.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

from measures import BASE, load, measure_resource, period_of  # noqa: E402
from run import machine_info  # noqa: E402

from gateway.auth.context import SYSTEM, acting_as  # noqa: E402
from gateway.deqm.evaluation import MeasureService  # noqa: E402
from gateway.measure import gcpolicy  # noqa: E402
from gateway.store.sql.store import SqlStore  # noqa: E402


def one_run(svc: MeasureService, measure: dict[str, Any], name: str, ids: list[str], raised: bool) -> dict[str, float]:
    """One population run; with ``raised`` False the policy's threshold is set to the default's, so the run
    collects as often as CPython does by default."""
    gc.collect()
    gcpolicy.YOUNG_THRESHOLD = 50_000 if raised else 700
    start, end = period_of(name)
    t0, c0 = time.perf_counter(), time.process_time()
    with acting_as(SYSTEM):
        svc.evaluate(measure, start, end, "population", None, patient_ids=ids)
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--charts", type=int, default=600)
    p.add_argument("--measures", default="CMS130,CMS122,CMS125")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ecqm", default=str(BENCH_DIR.parent.parent / "shared" / "testdata" / "ecqm"))
    p.add_argument("--note", default="")
    p.add_argument("--out", default=str(BENCH_DIR / "results" / "gc-threshold"))
    args = p.parse_args(argv)
    names = args.measures.split(",")
    ecqm = Path(args.ecqm)
    result: dict[str, Any] = {"machine": machine_info(None), "charts": args.charts, "rounds": args.rounds,
                              "note": args.note, "measures": {}}
    with tempfile.TemporaryDirectory(prefix="gw-gc-") as tmp:
        url = f"sqlite:///{tmp}/gw.sqlite3"
        ids = load(url, ecqm, names, [], args.charts)["chart_ids"]
        store = SqlStore(url, migrate=False)
        svc = MeasureService(store, BASE)
        for name in names:
            measure = svc.find_measure(measure_resource(ecqm, name)["id"], None)
            svc.prepare(measure)
            runs: dict[str, list[dict[str, float]]] = {"default": [], "raised": []}
            for _ in range(args.rounds):
                for mode in ("default", "raised"):
                    runs[mode].append(one_run(svc, measure, name, ids, mode == "raised"))
            med = {m: {k: round(statistics.median(r[k] for r in rs), 2) for k in ("cpu", "wall")}
                   for m, rs in runs.items()}
            result["measures"][name] = {"runs": runs, "median": med,
                                        "cpu_ratio": round(med["raised"]["cpu"] / med["default"]["cpu"], 2)}
            print(name, med, flush=True)
        store.close()
    gcpolicy.YOUNG_THRESHOLD = 50_000
    info = result["machine"]
    lines = [f"# Collector threshold during population runs ({info.get('date')})", "",
             f"{args.charts:,} synthetic charts, SQLite, in process; {args.rounds} runs per mode, alternating. "
             f"Machine: {info.get('cores')} cores, Python {info.get('python')}, commit {info.get('commit', '?')}. "
             f"{args.note}".rstrip(), "",
             "| measure | default: CPU s | default: wall s | raised: CPU s | raised: wall s | CPU raised / default |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in result["measures"].items():
        d, r = m["median"]["default"], m["median"]["raised"]
        lines.append(f"| {name} | {d['cpu']} | {d['wall']} | {r['cpu']} | {r['wall']} | {m['cpu_ratio']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

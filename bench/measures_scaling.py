#!/usr/bin/env python3
"""Executor scaling benchmark (process pool and Dask workers; the fqm-execution comparison, and the loading,
expectation and checking helpers this script shares, are in bench/measures.py):
CMS122, CMS125, CMS130 and CMS165 over 1,000 / 10,000 / 100,000 patients in the gateway database.

For every size the script creates a fresh database (a temporary SQLite file, or a new PostgreSQL
database), loads the four measure bundles from ``../shared/testdata/ecqm`` (read at run time, never
copied), stores N re-identified copies of the measures' test patients (``reidentify.py``: every clinical
fact kept, new ids, names and MRNs) and evaluates each measure over all N patients through the same code
as ``$evaluate-measure`` (``MeasureService.results``), once per executor asked for.

Checks on every run:
- each copy's populations for its source measure equal the published expectation of the case it was copied
  from (with the documented corrections of tests/fixtures/ecqm-expectation-overrides.json);
- every executor gives the same per-patient results as the first.

    python bench/measures_scaling.py                                   # 1,000 and 10,000 on SQLite
    python bench/measures_scaling.py --sizes 1000,10000,100000 --executors inprocess,processes:2
    python bench/measures_scaling.py --backend postgres --sizes 10000
    python bench/measures_scaling.py --backend postgres --sizes 5000 --executors inprocess,dask-local:1,dask-local:2

``dask://host:port`` uses a running Dask cluster; ``dask-local:N`` makes the script start a ``dask scheduler``
and N ``dask worker`` processes (one thread each) on 127.0.0.1 for the run and stop them afterwards. With
``dask-local:1`` and ``dask-local:2`` in one run, the scaling efficiency (patients/s with 2 workers divided
by twice the patients/s with 1) is reported per measure. Dask workers get an untimed warm-up pass over four
chunks first (importing the gateway and compiling the measure in each worker), as the in-process executor
compiles outside the timing.

Results: bench/results/measures.json and bench/results/measures.md (also printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from measures import check_copies, load_overrides, measure_resource  # noqa: E402
from reidentify import Case, generate, load_cases  # noqa: E402
from run import machine_info, postgres_backend, sqlite_backend  # noqa: E402

from gateway.auth.context import SYSTEM, acting_as  # noqa: E402
from gateway.deqm.evaluation import MeasureService  # noqa: E402
from gateway.ingest.loader import Loader  # noqa: E402
from gateway.resources.rest import RestService  # noqa: E402
from gateway.store.sql.store import SqlStore  # noqa: E402

MEASURES = ["CMS122", "CMS125", "CMS130", "CMS165"]
PERIOD = ("2025-01-01", "2025-12-31")
BASE = "http://127.0.0.1/fhir"


def store_copies(store: SqlStore, cases: list[Case], n: int) -> tuple[list[str], dict[str, Case], int, float]:
    """N copies written through the store's bulk path (the data are copies of validated test cases)."""
    t0 = time.perf_counter()
    ids: list[str] = []
    source: dict[str, Case] = {}
    batch: list[dict[str, Any]] = []
    total = 0

    def flush() -> None:
        with store.session() as tx:
            for r in batch:
                tx.write(r, "POST", known_new=True)
        batch.clear()

    for case, pid, resources in generate(cases, n):
        ids.append(pid)
        source[pid] = case
        batch.extend(resources)
        total += len(resources)
        if len(batch) >= 2000:
            flush()
    flush()
    return ids, source, total, time.perf_counter() - t0


def known_copies(store: SqlStore, cases: list[Case], n: int) -> tuple[list[str], dict[str, Case], int] | None:
    """The copies a database made by an earlier run already holds (copies are deterministic), or None."""
    if store.count("Patient") != n:
        return None
    ids: list[str] = []
    source: dict[str, Case] = {}
    total = 0
    for case, pid, resources in generate(cases, n):
        ids.append(pid)
        source[pid] = case
        total += len(resources)
    return ids, source, total


def membership(result: Any) -> list[dict[str, bool]]:
    return [{code: bool(keys) for code, keys in g.members.items()} for g in result.groups]


class LocalDask:
    """A Dask scheduler and ``workers`` single-thread worker processes on 127.0.0.1 (the ``dask`` command of
    the ``[dask]`` extra), started for one benchmark run."""

    def __init__(self, workers: int) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.logs = Path(tempfile.mkdtemp(prefix="gw-dask-"))
        exe = Path(sys.executable).parent / "dask"
        dask = str(exe) if exe.exists() else "dask"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            with (self.logs / f"{name}.log").open("wb") as log:
                return subprocess.Popen([dask, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.logs)

        import atexit

        atexit.register(self.close)  # also when the run fails
        self.procs = [spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                          "--no-dashboard"])]
        self.procs += [spawn(f"worker-{i}", ["worker", f"tcp://127.0.0.1:{self.port}", "--nthreads", "1",
                                             "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                             "--local-directory", str(self.logs / f"w{i}")])
                       for i in range(workers)]
        from dask.distributed import Client

        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the local Dask cluster did not start (logs in {self.logs})") from None
                time.sleep(0.5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.logs, ignore_errors=True)


LOCAL_DASK: dict[str, LocalDask] = {}  # "dask-local:N" -> its running cluster


def executor_spec(name: str) -> str:
    """The executor setting for a name of the --executors list (``dask-local:N`` starts a cluster once)."""
    if not name.startswith("dask-local:"):
        return name
    if name not in LOCAL_DASK:
        LOCAL_DASK[name] = LocalDask(int(name.partition(":")[2]))
    return f"dask://{LOCAL_DASK[name].address}"


def evaluate(store: SqlStore, measure: dict[str, Any], ids: list[str], executor: str,
             chunk: int | None = None) -> tuple[list[Any], float]:
    svc = MeasureService(store, BASE, executor_spec(executor), chunk_size=chunk or max(200, len(ids) // 64))
    svc.prepare(measure)  # translation-free: libraries resolved and compiled once, outside the timing
    if executor.startswith("dask"):  # the workers import the gateway and compile the measure once each
        svc.results(measure, PERIOD, ids[:svc.chunk_size * 4])
    t0 = time.perf_counter()
    with acting_as(SYSTEM):  # spread runs read under the caller's grant: here the server's own, as the CLI
        results, _ = svc.results(measure, PERIOD, ids)
    return results, time.perf_counter() - t0


def check_expected(name: str, results: list[Any], source: dict[str, Case],
                   overrides: dict[tuple[str, str], Any]) -> tuple[int, int, list[str]]:
    """Each copy's populations for its source measure against the published expectation (bench/measures.py)."""
    counts = {r.subject.split("/", 1)[1]: [{code: len(keys) for code, keys in g.members.items()} for g in r.groups]
              for r in results}
    return check_copies(name, counts, source, overrides)


# -- one size -------------------------------------------------------------------------------------------------
def run_size(n: int, url: str, args: argparse.Namespace, cases: list[Case], ecqm: Path,
             overrides: dict[tuple[str, str], Any]) -> dict[str, Any]:
    store = SqlStore(url)
    known = known_copies(store, cases, n) if args.db else None
    if known is not None:
        ids, source, resources = known
        load_s = 0.0
        print(f"  reusing {args.db}: {n:,} patients already stored")
    else:
        rest = RestService(store, BASE, "lenient", 50, 1000)
        summary = Loader(rest, "lenient").load([ecqm / m / "measure-bundle.json" for m in args.measures])
        if summary.errors:
            raise RuntimeError(f"measure bundles did not load: {summary.errors[:3]}")
        ids, source, resources, load_s = store_copies(store, cases, n)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    row: dict[str, Any] = {"patients": n, "resources": resources, "load_seconds": round(load_s, 1),
                           "load_per_s": round(resources / load_s) if load_s else None, "measures": {}}
    if load_s:
        print(f"  {n:,} patients, {resources:,} resources stored in {load_s:.1f} s")
    try:
        for name in args.measures:
            measure = measure_resource(ecqm, name)
            m: dict[str, Any] = {"executors": {}}
            reference: list[Any] | None = None
            for ex in args.executors:
                results, secs = evaluate(store, measure, ids, ex, args.chunk)
                m["executors"][ex] = {"seconds": round(secs, 2), "patients_per_s": round(n / secs, 1),
                                      "ms_per_patient": round(secs / n * 1000, 3)}
                print(f"  {name} {ex}: {secs:.1f} s, {n / secs:,.0f} patients/s")
                if reference is None:
                    reference = results
                    checked, wrong, examples = check_expected(name, results, source, overrides)
                    m.update({"copies_checked": checked, "copies_wrong": wrong, "wrong_examples": examples})
                    m["population"] = dict(sum((Counter({c: len(k) for c, k in r.groups[0].members.items()})
                                                for r in results), Counter()))
                elif [membership(r) for r in results] != [membership(r) for r in reference]:
                    m.setdefault("errors", []).append(f"executor {ex} disagrees with {args.executors[0]}")
            one, two = (m["executors"].get(f"dask-local:{w}") for w in (1, 2))
            if one and two:
                m["dask_scaling_efficiency"] = round(two["patients_per_s"] / (2 * one["patients_per_s"]), 2)
                print(f"  {name} Dask scaling efficiency (2 workers / 2 x 1 worker): {m['dask_scaling_efficiency']}")
            row["measures"][name] = m
        row["all_measures_seconds"] = {ex: round(sum(m["executors"][ex]["seconds"]
                                                     for m in row["measures"].values()), 1)
                                       for ex in args.executors}
    finally:
        store.close()
    return row


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# Measure benchmark ({info.get('date')})", "",
             f"Machine: {info.get('cores')} cores, {info.get('cpu', '?')}, Python {info.get('python')}, "
             f"commit {info.get('commit', '?')}, backend {result['backend']}. {result.get('note', '')}".rstrip(), "",
             "| patients | measure | executor | seconds | patients/s | ms/patient | copies checked (wrong) |",
             "|---:|---|---|---:|---:|---:|---|"]
    for row in result["rows"]:
        for name, m in row["measures"].items():
            for ex, e in m["executors"].items():
                lines.append(f"| {row['patients']:,} | {name} | {ex} | {e['seconds']} | {e['patients_per_s']:,} | "
                             f"{e['ms_per_patient']} | {m['copies_checked']} ({m['copies_wrong']}) |")
        for ex, secs in row["all_measures_seconds"].items():
            lines.append(f"| {row['patients']:,} | **all {len(row['measures'])}** | {ex} | **{secs}** | | | |")
    scaling = [(row["patients"], name, m["dask_scaling_efficiency"]) for row in result["rows"]
               for name, m in row["measures"].items() if "dask_scaling_efficiency" in m]
    if scaling:
        lines += ["", "Dask scaling efficiency (patients/s with 2 workers / (2 x patients/s with 1 worker)), "
                  "both measured in this run:", "", "| patients | measure | efficiency |", "|---:|---|---:|"]
        lines += [f"| {n:,} | {name} | {eff} |" for n, name, eff in scaling]
    lines += ["", "Loading (store bulk path): " + ", ".join(
        f"{r['patients']:,} patients = {r['resources']:,} resources in {r['load_seconds']} s"
        if r["load_seconds"] else f"{r['patients']:,} patients = {r['resources']:,} resources (database reused)"
        for r in result["rows"])]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="patient counts, comma-separated")
    p.add_argument("--measures", default=",".join(MEASURES))
    p.add_argument("--executors", default="inprocess,processes:2",
                   help="inprocess, processes[:N], dask://host:port, dask-local:N; the others are checked against the first")
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--ecqm", default=str(ROOT.parent / "shared" / "testdata" / "ecqm"))
    p.add_argument("--pg-admin", default=os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"))
    p.add_argument("--db", help="keep the SQLite database in this file and reuse it when it already holds the "
                                "patients of the (single) size asked for: a 100,000-patient run then skips loading")
    p.add_argument("--chunk", type=int, default=None,
                   help="patients per chunk for distributed executors (default: max(200, patients / 64))")
    p.add_argument("--note", default="", help="free text written with the results (e.g. other load on the machine)")
    p.add_argument("--out", default=str(BENCH_DIR / "results" / "measures-scaling"))
    args = p.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.measures = args.measures.split(",")
    args.executors = args.executors.split(",")
    if args.db and len(args.sizes) != 1:
        p.error("--db takes one size")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ecqm = Path(args.ecqm)
    cases = load_cases(ecqm, args.measures)
    overrides = load_overrides()
    result: dict[str, Any] = {"machine": machine_info(args.pg_admin if args.backend == "postgres" else None),
                              "backend": args.backend, "note": args.note, "cases": len(cases), "rows": []}
    failed = False
    for n in args.sizes:
        print(f"{n:,} patients on {args.backend}")
        if args.db:
            backend = contextlib.nullcontext(f"sqlite:///{Path(args.db).resolve()}")
        elif args.backend == "sqlite":
            backend = sqlite_backend()
        else:
            backend = postgres_backend(args.pg_admin, args.pg_url)
        with backend as url:
            row = run_size(n, url, args, cases, ecqm, overrides)
        result["rows"].append(row)
        for name, m in row["measures"].items():
            if m["copies_wrong"] or m.get("errors"):
                failed = True
                print(f"  {name}: CHECK FAILED {m.get('wrong_examples')} {m.get('errors')}")
    for cluster in LOCAL_DASK.values():
        cluster.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

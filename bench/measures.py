#!/usr/bin/env python3
"""Measure benchmark: the eight shared CMS eCQMs over 1,000 / 10,000 / 100,000 patients with realistic
charts, the gateway and fqm-execution timed from the same starting point.

Population of a size N (one fresh SQLite database per size): one re-identified copy of every test case of
the measures (``reidentify.py``; 495 cases for the eight measures, every clinical fact kept, new ids, names
and MRNs) and N - 495 realistic charts from ``fhir-gateway synth --charts`` (``gateway/demo/charts.py``,
seed 1: adults with 50-300 resources each over 2022-2026), written through the store's bulk path
(``SqlSession.write_encoded``). The measure bundles are loaded through the FHIR loader.

Timing (each run in a fresh Python process, so nothing is compiled or cached beforehand): the Measure is
read from the database, then the clock starts and ``MeasureService.evaluate`` (what ``$evaluate-measure``
runs) resolves the libraries and value sets, compiles the ELM, reads every patient's data from the database,
evaluates and builds the population MeasureReport (strata and supplemental data included); the clock stops
with the report in hand. Preparation alone (resolve and compile, no patient) is timed separately in the same
process, before, on its own service. Peak memory: the process's peak RSS, and with a process pool the largest
worker's.

fqm-execution (the npm package, ``bench/fqm/run-fqm.js``, installed into ``bench/.fqm``) runs on the smallest
size, on the same patients exported from the database as patient Bundles: the measure bundle and the patient
Bundles are parsed, then its clock runs around ``Calculator.calculate`` (which prepares the measure and
evaluates every patient, supplemental data included, as the gateway does); its preparation is estimated by a
separate run over one patient with no data. The comparison runs separately on the charts and on the test-case
copies, the gateway timed in process (one core, as fqm-execution uses).

Checks (the script exits non-zero when one fails): at the smallest size every patient's populations are
computed one by one (untimed) and summed to the counts of every timed report; each copy's populations equal
the published expectation of its case (with the corrections of tests/fixtures/ecqm-expectation-overrides.json);
fqm-execution's membership equals the gateway's for every patient. At every size the executors' reports give
the same counts.

    python bench/measures.py                                  # 1,000 and 10,000; fqm-execution on 1,000
    python bench/measures.py --sizes 100000 --executors processes:2 --no-fqm --measures CMS122,CMS125,CMS130,CMS165

Results: bench/results/measures.json and .md (``--out``), also printed.
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

from reidentify import Case, generate, load_cases  # noqa: E402
from run import machine_info  # noqa: E402

MEASURES = ["CMS122", "CMS125", "CMS130", "CMS165", "CMS69", "CMS347", "CMS871", "CMS986"]
PERIODS = {"CMS871": ("2026-01-01", "2026-12-31"), "CMS986": ("2026-01-01", "2026-12-31")}  # their test cases'
DEFAULT_PERIOD = ("2025-01-01", "2025-12-31")
BASE = "http://127.0.0.1/fhir"
FQM_VERSION = "1.8.6"
CHART_SEED = 1
OVERRIDES = ROOT / "tests" / "fixtures" / "ecqm-expectation-overrides.json"
POPS = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception", "numerator",
        "numerator-exclusion", "measure-population", "measure-population-exclusion")


def period_of(name: str) -> tuple[str, str]:
    return PERIODS.get(name, DEFAULT_PERIOD)


def measure_resource(ecqm: Path, name: str) -> dict[str, Any]:
    bundle = json.loads((ecqm / name / "measure-bundle.json").read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")


def _status_kib(pid: int | str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class MemorySampler:
    """Peak resident memory of this process (VmHWM: its own image only — getrusage's ru_maxrss would carry
    over the parent's across fork and exec) and, sampled every 50 ms, of this process plus its children
    (a process pool's workers) together."""

    def __init__(self) -> None:
        import threading

        self.peak_total = 0
        self.peak_workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[str]:
        out: list[str] = []
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            with contextlib.suppress(OSError):
                out.extend((task / "children").read_text().split())
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            workers = [_status_kib(pid, "VmRSS") for pid in self._children()]
            self.peak_workers = max(self.peak_workers, max(workers, default=0))
            self.peak_total = max(self.peak_total, _status_kib("self", "VmRSS") + sum(workers))
            self._stop.wait(0.05)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, float]:
        return {"peak_rss_mib": round(_status_kib("self", "VmHWM") / 1024, 1),
                "worker_peak_rss_mib": round(self.peak_workers / 1024, 1),
                "total_peak_rss_mib": round(max(self.peak_total, _status_kib("self", "VmHWM")) / 1024, 1)}


# -- one timed run, in its own process ------------------------------------------------------------------------
def timed_run(spec: dict[str, Any]) -> dict[str, Any]:
    from gateway.auth.context import SYSTEM, acting_as
    from gateway.deqm.evaluation import MeasureService
    from gateway.store.sql.store import SqlStore

    store = SqlStore(spec["url"], migrate=False)
    ids = Path(spec["ids_file"]).read_text().split()
    measure = MeasureService(store, BASE).find_measure(spec["measure_id"], None)  # loaded, nothing compiled
    t0 = time.perf_counter()
    MeasureService(store, BASE).prepare(measure)
    prepare = time.perf_counter() - t0
    svc = MeasureService(store, BASE, spec["executor"], chunk_size=spec["chunk_size"])
    before = round(_status_kib("self", "VmRSS") / 1024, 1)
    with MemorySampler() as mem:
        t0 = time.perf_counter()
        with acting_as(SYSTEM):  # spread runs read under the caller's grant: here the server's own, as the CLI
            report = svc.evaluate(measure, spec["start"], spec["end"], "population", None, patient_ids=ids)
        seconds = time.perf_counter() - t0
    store.close()
    counts = [{p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]} for g in report["group"]]
    return {"seconds": seconds, "prepare_seconds": prepare, **mem.result(), "rss_before_mib": before,
            "counts": counts, "patients": len(ids)}


def run_child(url: str, measure_id: str, name: str, ids_file: Path, executor: str, n: int) -> dict[str, Any]:
    start, end = period_of(name)
    spec = {"url": url, "measure_id": measure_id, "start": start, "end": end, "executor": executor,
            "ids_file": str(ids_file), "chunk_size": max(100, min(1000, n // 32))}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"timed run of {name} ({executor}) failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- loading ---------------------------------------------------------------------------------------------------
def load(url: str, ecqm: Path, measures: list[str], cases: list[Case], n: int) -> dict[str, Any]:
    """The measure bundles, one copy of each case and ``n - len(cases)`` charts; ids in that order."""
    from gateway.demo.charts import chart, shared_resources
    from gateway.ingest.loader import Loader
    from gateway.resources.rest import RestService
    from gateway.store.encoded import encode
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url)
    rest = RestService(store, BASE, "lenient", 50, 1000)
    summary = Loader(rest, "lenient").load([ecqm / m / "measure-bundle.json" for m in measures])
    if summary.errors:
        raise RuntimeError(f"measure bundles did not load: {summary.errors[:3]}")
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    totals = {"copies": 0, "copy_resources": 0, "charts": 0, "chart_resources": 0}
    copy_ids: list[str] = []
    chart_ids: list[str] = []
    source: dict[str, Case] = {}

    def flush() -> None:
        with store.session() as tx:
            tx.write_encoded([encode(r) for r in batch], "PUT")
        batch.clear()

    batch.extend(shared_resources())
    n_copies = min(len(cases), n)
    for case, pid, resources in generate(cases, n_copies):
        copy_ids.append(pid)
        source[pid] = case
        batch.extend(resources)
        totals["copy_resources"] += len(resources)
        if len(batch) >= 5000:
            flush()
    for i in range(n - n_copies):
        resources = chart(CHART_SEED, i, 2026)
        chart_ids.append(resources[0]["id"])
        batch.extend(resources)
        totals["chart_resources"] += len(resources)
        if len(batch) >= 5000:
            flush()
    flush()
    if store.dialect == "sqlite":
        store.analyze()
    store.close()
    totals.update({"copies": len(copy_ids), "charts": len(chart_ids), "load_seconds": round(time.perf_counter() - t0, 1)})
    return {"copy_ids": copy_ids, "chart_ids": chart_ids, "source": source, "totals": totals}


def load_overrides() -> dict[tuple[str, str], Any]:
    if not OVERRIDES.exists():
        return {}
    data = json.loads(OVERRIDES.read_text())
    return {(c["measure"], c["case"]): c for c in data.get("cases", [])}


def expected_counts(case: Case, overrides: dict[tuple[str, str], Any]) -> list[dict[str, int]]:
    o = overrides.get((case.measure, case.case_id))
    if o is not None:
        return [{k: v for k, v in g.items() if k in POPS} for g in o["expected"]]
    out = []
    for g in case.expected.get("group") or []:
        counts = {}
        for p in g.get("population") or []:
            code = (p.get("code") or {}).get("coding", [{}])[0].get("code")
            if code in POPS:
                counts[code] = p.get("count", 0)
        out.append(counts)
    return out


# -- per-patient verification (untimed) ------------------------------------------------------------------------
def per_patient(url: str, measure: dict[str, Any], name: str, ids: list[str]) -> dict[str, list[dict[str, int]]]:
    from gateway.deqm.evaluation import MeasureService
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url, migrate=False)
    try:
        svc = MeasureService(store, BASE)
        return {r.subject.split("/", 1)[1]: [{c: len(k) for c, k in g.members.items()} for g in r.groups]
                for r in svc.iter_results(measure, period_of(name), ids)}
    finally:
        store.close()


def summed(results: dict[str, list[dict[str, int]]], ids: list[str]) -> list[dict[str, int]]:
    groups: list[Counter[str]] = []
    for pid in ids:
        for i, g in enumerate(results[pid]):
            if len(groups) <= i:
                groups.append(Counter())
            groups[i].update(g)
            for c in g:
                groups[i].setdefault(c, 0)
    return [dict(g) for g in groups]


def check_copies(name: str, results: dict[str, list[dict[str, int]]], source: dict[str, Case],
                 overrides: dict[tuple[str, str], Any]) -> tuple[int, int, list[str]]:
    checked = wrong = 0
    examples: list[str] = []
    for pid, case in source.items():
        if case.measure != name:
            continue
        checked += 1
        want = expected_counts(case, overrides)
        got = [{c: v for c, v in g.items() if c in want[i]} for i, g in enumerate(results[pid])]
        if got != want:
            wrong += 1
            if len(examples) < 5:
                examples.append(f"{pid} (copy of {case.case_id}): expected {want}, got {got}")
    return checked, wrong, examples


# -- fqm-execution ---------------------------------------------------------------------------------------------
def fqm_modules(args: argparse.Namespace) -> Path | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("fqm-execution: Node.js/npm not on PATH, skipped")
        return None
    target = Path(args.fqm_dir)
    if not (target / "node_modules" / "fqm-execution").exists():
        target.mkdir(parents=True, exist_ok=True)
        print(f"installing fqm-execution@{FQM_VERSION} into {target} ...")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(target),
                        f"fqm-execution@{FQM_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return target / "node_modules"


def write_bundles(url: str, ids: list[str], path: Path) -> int:
    """Each patient's data as the gateway stores it (Patient compartment plus shared Medications), one
    collection Bundle per patient, as fqm-execution takes them; returns the number of resources."""
    from gateway.deqm.measure_data import prefetch
    from gateway.search.params import patient_compartment
    from gateway.store.sql.store import SqlStore

    store = SqlStore(url, migrate=False)
    types = set(patient_compartment())
    shared = [json.loads(s.content) for s in store.iter_current("Medication")]
    total = 0
    with path.open("w") as fh:
        fh.write("[")
        for i in range(0, len(ids), 200):
            part = ids[i:i + 200]
            data = prefetch(store, part, types)
            for j, pid in enumerate(part):
                d = data[pid]
                resources = [d.patient] + [r for rs in d.by_type.values() for r in rs] + shared
                total += len(resources)
                if i or j:
                    fh.write(",")
                fh.write(json.dumps({"resourceType": "Bundle", "type": "collection",
                                     "entry": [{"resource": r} for r in resources]}))
        fh.write("]")
    store.close()
    return total


def run_fqm(modules: Path, measure_bundle: Path, bundles_file: Path, name: str) -> dict[str, Any]:
    env = {**os.environ, "NODE_PATH": str(modules)}
    start, end = period_of(name)
    cmd = ["node", "--max-old-space-size=12288", str(BENCH_DIR / "fqm" / "run-fqm.js"), str(measure_bundle),
           str(bundles_file), start, end]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"fqm-execution failed on {name}: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    out["wall"] = wall
    return out


def compare_fqm(ours: dict[str, list[dict[str, int]]], fqm: dict[str, Any], ids: list[str]) -> tuple[int, list[str]]:
    disagree = 0
    examples: list[str] = []
    for pid in ids:
        theirs = fqm["patients"].get(pid)
        mine = [{c: bool(v) for c, v in g.items()} for g in ours[pid]]
        if theirs is None:
            disagree += 1
            examples.append(f"{pid}: no fqm-execution result")
            continue
        theirs_d = [{c: v for c, v in g if i < len(mine) and c in mine[i]} for i, g in enumerate(theirs)]
        mine_d = [{c: v for c, v in g.items() if i < len(theirs_d) and c in theirs_d[i]} for i, g in enumerate(mine)]
        if mine_d != theirs_d:
            disagree += 1
            if len(examples) < 5:
                examples.append(f"{pid}: gateway {mine_d} fqm-execution {theirs_d}")
    return disagree, examples


def _ratio(theirs: float, ours: float) -> float | None:
    """theirs / ours, or None when either is too short to mean anything (under 0.5 s)."""
    return round(theirs / ours, 1) if theirs >= 0.5 and ours >= 0.5 else None


# -- one size --------------------------------------------------------------------------------------------------
def prepared_db(n: int, args: argparse.Namespace, cases: list[Case], ecqm: Path, tmp: Path) -> tuple[str, dict[str, Any]]:
    """The database of size ``n``: loaded now, or (``--keep-db``) reused when an earlier run left it complete
    (its ``.json`` beside it is written last)."""
    if args.keep_db:
        base = Path(args.keep_db) / f"measures-{n}-seed{CHART_SEED}"
        base.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{base.resolve()}.sqlite3"
        marker = base.with_suffix(".json")
        if marker.exists():
            pop = json.loads(marker.read_text())
            pop["source"] = {pid: case for case, pid, _ in generate(cases, len(pop["copy_ids"]))}
            pop["totals"]["reused"] = True
            print(f"{n:,} patients: reusing {base}.sqlite3", flush=True)
            return url, pop
        Path(f"{base}.sqlite3").unlink(missing_ok=True)
    else:
        url = f"sqlite:///{tmp}/bench.sqlite3"
    print(f"{n:,} patients: loading ...", flush=True)
    pop = load(url, ecqm, args.measures if not args.keep_db else MEASURES, cases, n)
    if args.keep_db:
        marker.write_text(json.dumps({k: v for k, v in pop.items() if k != "source"}))
    return url, pop


def run_size(n: int, args: argparse.Namespace, cases: list[Case], ecqm: Path, overrides: dict[tuple[str, str], Any],
             modules: Path | None, smallest: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-measures-", dir=args.tmp))
    try:
        url, pop = prepared_db(n, args, cases, ecqm, tmp)
        t = pop["totals"]
        print(f"  {t['copies']} copies ({t['copy_resources']:,} resources) and {t['charts']:,} charts "
              f"({t['chart_resources']:,} resources) stored in {t['load_seconds']} s", flush=True)
        if args.load_only:
            return {"patients": n, **t}
        ids = pop["copy_ids"] + pop["chart_ids"]
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids))
        row: dict[str, Any] = {"patients": n, **t,
                               "chart_resources_per_patient": round(t["chart_resources"] / max(1, t["charts"]), 1),
                               "measures": {}}
        subsets: dict[str, list[str]] = {}
        if smallest and modules is not None:
            subsets = {"charts": pop["chart_ids"][:args.fqm_charts], "copies": pop["copy_ids"]}
            for key, sub in subsets.items():
                (tmp / f"ids-{key}.txt").write_text("\n".join(sub))
                row[f"fqm_{key}_resources"] = write_bundles(url, sub, tmp / f"bundles-{key}.json")
            empty = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                "resourceType": "Patient", "id": "fqm-prepare-only", "gender": "female", "birthDate": "1960-01-01",
                "meta": {"profile": ["http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-patient"]}}}]}
            (tmp / "bundles-empty.json").write_text(json.dumps([empty]))
        for name in args.measures:
            measure = measure_resource(ecqm, name)
            m: dict[str, Any] = {"period": list(period_of(name)), "executors": {}}
            for ex in args.executors:
                r = run_child(url, measure["id"], name, ids_file, ex, n)
                m["executors"][ex] = {
                    "seconds": round(r["seconds"], 2), "prepare_seconds": round(r["prepare_seconds"], 2),
                    "patients_per_s": round(n / r["seconds"], 1),
                    "patients_per_s_without_prepare": round(n / max(1e-9, r["seconds"] - r["prepare_seconds"]), 1),
                    "peak_rss_mib": r["peak_rss_mib"], "worker_peak_rss_mib": r["worker_peak_rss_mib"],
                    "total_peak_rss_mib": r["total_peak_rss_mib"], "rss_before_mib": r["rss_before_mib"],
                    "counts": r["counts"]}
                print(f"  {name} {ex}: {r['seconds']:.1f} s (prepare {r['prepare_seconds']:.1f} s), "
                      f"{n / r['seconds']:,.0f} patients/s, peak RSS {r['peak_rss_mib']} MiB, largest worker "
                      f"{r['worker_peak_rss_mib']} MiB, all together {r['total_peak_rss_mib']} MiB", flush=True)
            first = m["executors"][args.executors[0]]["counts"]
            for ex, e in m["executors"].items():
                if e["counts"] != first:
                    m.setdefault("errors", []).append(f"executor {ex} counts {e['counts']} != {first}")
            if smallest and args.verify:
                results = per_patient(url, measure, name, ids)
                whole = summed(results, ids)
                if whole != first:
                    m.setdefault("errors", []).append(f"report counts {first} != per-patient sums {whole}")
                checked, wrong, examples = check_copies(name, results, pop["source"], overrides)
                m.update({"copies_checked": checked, "copies_wrong": wrong, "wrong_examples": examples})
                print(f"  {name}: per-patient sums match the reports: {whole == first}; copies checked "
                      f"{checked}, wrong {wrong}", flush=True)
                if subsets:
                    m["fqm"] = {}
                    bundle = ecqm / name / "measure-bundle.json"
                    try:
                        prep = run_fqm(modules, bundle, tmp / "bundles-empty.json", name)  # type: ignore[arg-type]
                    except RuntimeError as exc:  # recorded: fqm-execution cannot run this measure at all
                        prep = {"seconds": 0.0, "error": str(exc)}
                    for key, sub in subsets.items():
                        ours = run_child(url, measure["id"], name, tmp / f"ids-{key}.txt", "inprocess", len(sub))
                        try:
                            if "error" in prep:
                                raise RuntimeError(prep["error"])
                            fqm = run_fqm(modules, bundle, tmp / f"bundles-{key}.json", name)  # type: ignore[arg-type]
                        except RuntimeError as exc:  # recorded, not fatal: the other measures still run
                            error = next((ln.strip() for ln in str(exc).splitlines() if "Error Message" in ln
                                          or "Missing the following" in ln), str(exc)[-300:])
                            m["fqm"][key] = {"patients": len(sub), "fqm_error": error,
                                             "gateway_seconds": round(ours["seconds"], 2),
                                             "gateway_patients_per_s": round(len(sub) / ours["seconds"], 1)}
                            print(f"  {name} on {len(sub)} {key}: fqm-execution FAILED: {error}", flush=True)
                            continue
                        disagree, examples = compare_fqm(results, fqm, sub)
                        k = len(sub)
                        m["fqm"][key] = {
                            "patients": k, "fqm_seconds": round(fqm["seconds"], 2),
                            "fqm_prepare_seconds": round(prep["seconds"], 2),
                            "fqm_patients_per_s": round(k / fqm["seconds"], 2),
                            "fqm_peak_rss_mib": round(fqm["maxRSS"] / 1024, 1),
                            "gateway_seconds": round(ours["seconds"], 2),
                            "gateway_prepare_seconds": round(ours["prepare_seconds"], 2),
                            "gateway_patients_per_s": round(k / ours["seconds"], 1),
                            "gateway_peak_rss_mib": ours["peak_rss_mib"],
                            "ratio": round(fqm["seconds"] / ours["seconds"], 1),
                            "ratio_without_prepare": _ratio(fqm["seconds"] - prep["seconds"],
                                                            ours["seconds"] - ours["prepare_seconds"]),
                            "disagreements": disagree, "disagreement_examples": examples}
                        f = m["fqm"][key]
                        print(f"  {name} on {k} {key}: fqm-execution {f['fqm_seconds']} s "
                              f"({f['fqm_patients_per_s']} patients/s), gateway {f['gateway_seconds']} s -> "
                              f"{f['ratio']}x; {disagree} disagreements", flush=True)
            row["measures"][name] = m
            if args.progress_file:  # what is done so far, in case a later measure breaks the run
                Path(args.progress_file).write_text(json.dumps(row, indent=2))
        row["all_measures_seconds"] = {ex: round(sum(m["executors"][ex]["seconds"]
                                                     for m in row["measures"].values()), 1)
                                       for ex in args.executors}
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [f"# Measure benchmark ({info.get('date')})", "",
             f"Machine: {info.get('cores')} cores, {info.get('cpu', '?')}, {info.get('memory_gib', '?')} GiB, "
             f"Python {info.get('python')}, SQLite {info.get('sqlite')}, commit {info.get('commit', '?')}. "
             f"Load average at the start: {result.get('load_at_start')}, at the end: {result.get('load_at_end')}.",
             "", result.get("note", ""), "",
             "Timed from the same starting point: Measure read from the database, nothing compiled (a fresh "
             "process per run); the time includes preparation (resolve libraries and value sets, compile), "
             "reading every patient from the database, evaluation and the population MeasureReport. "
             "Preparation alone is also given.", "",
             "| patients | charts (resources each) | copies | measure | executor | seconds | of which prepare | "
             "patients/s | peak RSS MiB: process / largest worker / all |", "|---:|---:|---:|---|---|---:|---:|---:|---|"]
    for row in result["rows"]:
        for name, m in row["measures"].items():
            for ex, e in m["executors"].items():
                lines.append(f"| {row['patients']:,} | {row['charts']:,} ({row['chart_resources_per_patient']}) | "
                             f"{row['copies']} | {name} | {ex} | {e['seconds']} | {e['prepare_seconds']} | "
                             f"{e['patients_per_s']:,} | {e['peak_rss_mib']} / {e['worker_peak_rss_mib'] or '-'} / "
                             f"{e['total_peak_rss_mib']} |")
        for ex, secs in row["all_measures_seconds"].items():
            lines.append(f"| {row['patients']:,} | | | **all {len(row['measures'])}** | {ex} | **{secs}** | | | |")
    fq = [(row, name, m) for row in result["rows"] for name, m in row["measures"].items() if m.get("fqm")]
    if fq:
        lines += ["", "fqm-execution side by side (same patients, same run; gateway in process on one core; "
                  "both clocks include preparation; 'without prepare' subtracts each engine's preparation):", "",
                  "| patients | measure | fqm s | fqm patients/s | fqm peak RSS MiB | gateway s | gateway patients/s | "
                  "gateway peak RSS MiB | gateway / fqm | without prepare | disagreements |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for _row, name, m in fq:
            for key, f in m["fqm"].items():
                if "fqm_error" in f:
                    lines.append(f"| {f['patients']} {key} | {name} | fails: {f['fqm_error']} | | | "
                                 f"{f['gateway_seconds']} | {f['gateway_patients_per_s']} | | | | |")
                    continue
                lines.append(f"| {f['patients']} {key} | {name} | {f['fqm_seconds']} | {f['fqm_patients_per_s']} | "
                             f"{f['fqm_peak_rss_mib']} | {f['gateway_seconds']} | {f['gateway_patients_per_s']} | "
                             f"{f['gateway_peak_rss_mib']} | {f['ratio']}x | "
                             f"{str(f['ratio_without_prepare']) + 'x' if f['ratio_without_prepare'] else 'n/a'} | "
                             f"{f['disagreements']} |")
    checks = [(row["patients"], name, m) for row in result["rows"] for name, m in row["measures"].items()
              if "copies_checked" in m]
    if checks:
        lines += ["", "Copies of the test cases checked against the published expectations: " + ", ".join(
            f"{name} {m['copies_checked']} ({m['copies_wrong']} wrong)" for _, name, m in checks) + "."]
    lines += ["", "Loading (store bulk path): " + "; ".join(
        f"{r['patients']:,} patients = {r['copy_resources'] + r['chart_resources']:,} resources in "
        f"{r['load_seconds']} s" for r in result["rows"])]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="patient counts, comma-separated")
    p.add_argument("--measures", default=",".join(MEASURES))
    p.add_argument("--executors", default="inprocess,processes:2", help="inprocess, processes[:N], dask://host:port (bench/measures_scaling.py starts its own Dask workers)")
    p.add_argument("--ecqm", default=str(ROOT.parent / "shared" / "testdata" / "ecqm"))
    p.add_argument("--fqm", action=argparse.BooleanOptionalAction, default=True,
                   help="run fqm-execution on the smallest size (needs Node.js and npm)")
    p.add_argument("--fqm-dir", default=str(BENCH_DIR / ".fqm"))
    p.add_argument("--fqm-charts", type=int, default=250, help="charts in the fqm-execution comparison")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate every patient one by one (untimed) at the smallest size and check the reports, "
                        "the copies and fqm-execution against it (fqm-execution needs it)")
    p.add_argument("--tmp", default=None, help="where the temporary databases go")
    p.add_argument("--keep-db", help="keep each size's database (all eight measures loaded) in this folder and "
                                     "reuse it when a complete one is there")
    p.add_argument("--load-only", action="store_true", help="only build the databases (with --keep-db)")
    p.add_argument("--note", default="", help="free text written with the results (e.g. other load on the machine)")
    p.add_argument("--out", default=str(BENCH_DIR / "results" / "measures"))
    p.add_argument("--progress-file", help="write the current size's results here after every measure")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.measures = args.measures.split(",")
    args.executors = args.executors.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(timed_run(json.loads(args.child))))
        return 0
    ecqm = Path(args.ecqm)
    cases = load_cases(ecqm, MEASURES if args.keep_db else args.measures)
    overrides = load_overrides()
    modules = fqm_modules(args) if args.fqm and args.verify else None
    result: dict[str, Any] = {"machine": machine_info(None), "note": args.note, "cases": len(cases),
                              "load_at_start": round(os.getloadavg()[0], 1), "fqm_execution": FQM_VERSION,
                              "chart_seed": CHART_SEED, "rows": []}
    failed = False
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        row = run_size(n, args, cases, ecqm, overrides, modules, n == min(args.sizes))
        if args.load_only:
            continue
        result["rows"].append(row)
        for name, m in row["measures"].items():
            bad_fqm = {k: f["disagreement_examples"] for k, f in (m.get("fqm") or {}).items() if f.get("disagreements")}
            if m.get("copies_wrong") or m.get("errors") or bad_fqm:
                failed = True
                print(f"  {name}: CHECK FAILED {m.get('wrong_examples')} {m.get('errors')} {bad_fqm}")
        result["load_at_end"] = round(os.getloadavg()[0], 1)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2))  # kept after every size
        out.with_suffix(".md").write_text(markdown(result))
    md = markdown(result)
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

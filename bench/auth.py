"""Cost of authorization: token validation per request (in process), and read throughput of a live server
with --auth smart versus --auth off, measured side by side on the same SQLite file.

    python bench/auth.py                     # 3 alternating rounds of 10 s per mode
    python bench/auth.py --rounds 5 --duration 15 --out bench/results/auth.json

Both servers run at the same time on one database (1,000 seeded Patients); the rounds alternate off/on so
that load from other work on the machine hits both modes alike. The read scenario is bench/run.py's
(`GET Patient/{id}` at random, 32 connections, wrk when on PATH, else httpx).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import Load, Server, machine_info, make_patient, run_httpx, run_wrk, transaction  # noqa: E402

from gateway.auth.assertion_client import fetch_token, generate_client_key  # noqa: E402
from gateway.auth.clients import ClientStore  # noqa: E402
from gateway.auth.context import Grant  # noqa: E402
from gateway.auth.keys import KeyRing  # noqa: E402
from gateway.auth.policy import check as check_scopes  # noqa: E402
from gateway.auth.policy import classify  # noqa: E402
from gateway.auth.tokens import TokenService  # noqa: E402
from gateway.store.sql.store import SqlStore  # noqa: E402

FIELDS = ("req_s", "p50_ms", "p99_ms", "mean_ms", "cpu_us_per_req")


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of a process so far, summed over all its threads (the audit writer included) and
    its child processes' threads (uvicorn workers), from /proc/<pid>/task/*/schedstat."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                 for c in (t / "children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            for t in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((t / "schedstat").read_text().split()[0])
    return total


def per_call_us(fn: Any, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def validation_cost(db: str, n: int) -> dict[str, float]:
    store = SqlStore(db)
    keys = KeyRing(store.engine)
    keys.ensure()
    base = "http://127.0.0.1/fhir"
    tokens = TokenService(store.engine, keys, base, base)
    token = tokens.issue_access("bench", "system/*.rs", 3600, "f").token

    def uncached() -> Grant:
        tokens._cache.clear()
        return tokens.validate(token)

    grant = tokens.validate(token)
    req = classify("GET", "/fhir/{rtype}/{rid}", {"rtype": "Patient", "rid": "1"}, [])
    out = {"jwt_verify_and_claims_us": per_call_us(uncached, n),
           "cached_validate_us": per_call_us(lambda: tokens.validate(token), n * 10),
           "scope_check_us": per_call_us(lambda: check_scopes(grant.scopes, req), n * 10)}
    store.close()
    return out


def asgi_read_cost(db: str, ids: list[str], batches: int = 8, per_batch: int = 400) -> dict[str, Any]:
    """The whole app in process (no sockets, no load generator): microseconds per GET Patient/{id}, auth off
    and on, in alternating batches so that other work on the machine hits both alike."""
    import asyncio

    from gateway.app import create_app
    from gateway.config import Settings

    store = SqlStore(db)
    base = "http://127.0.0.1/fhir"
    apps = {"off": create_app(Settings(base_url=base, auth="off"), store=store, access_log=False),
            "on": create_app(Settings(base_url=base, auth="smart"), store=store, access_log=False)}
    token = apps["on"].state.authority.tokens.issue_access("bench", "system/*.rs", 3600, "bench").token
    headers = {"off": {}, "on": {"Authorization": f"Bearer {token}"}}

    async def batch(mode: str, rng: random.Random) -> float:
        transport = httpx.ASGITransport(app=apps[mode])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            t0 = time.perf_counter()
            for _ in range(per_batch):
                r = await c.get(f"/fhir/Patient/{rng.choice(ids)}", headers=headers[mode])
                if r.status_code != 200:
                    raise RuntimeError(f"{mode}: {r.status_code} {r.text[:200]}")
            return (time.perf_counter() - t0) / per_batch * 1e6

    rng = random.Random(3)
    out: dict[str, list[float]] = {"off": [], "on": []}
    asyncio.run(batch("off", rng))
    asyncio.run(batch("on", rng))  # warm both (token cache, compiled statements)
    for i in range(batches):
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            out[mode].append(asyncio.run(batch(mode, rng)))
    store.close()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"us_per_read": out, "median_us": med, "overhead_pct": (med["on"] / med["off"] - 1) * 100}


def seed(fhir: str, n: int, rng: random.Random) -> list[str]:
    ids: list[str] = []
    with httpx.Client(timeout=60) as c:
        for start in range(0, n, 200):
            entries = []
            for _ in range(min(200, n - start)):
                p = make_patient(rng)
                pid = uuid.uuid4().hex
                p["id"] = pid
                ids.append(pid)
                entries.append({"resource": p, "request": {"method": "PUT", "url": f"Patient/{pid}"}})
            r = c.post(fhir, json=transaction(entries),
                       headers={"Content-Type": "application/fhir+json"})
            r.raise_for_status()
    return ids


def _reads(c: httpx.Client, ids: list[str], rng: random.Random, k: int) -> None:
    for _ in range(k):
        r = c.get(f"/fhir/Patient/{rng.choice(ids)}")
        if r.status_code != 200:
            raise RuntimeError(f"read failed: {r.status_code} {r.text[:200]}")


AUDIT_SCRIPT = """
import sys, tempfile
from gateway.auth.audit import AuditLog
from gateway.auth.policy import AccessRequest
from gateway.store.sql.store import make_engine
from gateway.auth.tables import AUDIT
engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/audit.sqlite3")
AUDIT.create(engine)
log = AuditLog(engine)
class G:
    client_id, subject, patient = "bench", "bench-client", None
scope = {"method": "GET", "path": "/fhir/Patient/0f3c5a2e9b7d4c1e8a6f2b3c4d5e6f70", "query_string": b""}
n = int(sys.argv[1])
for i in range(n):
    log.record(scope, G(), AccessRequest("read", "Patient"), 200)
    if (i + 1) % 500 == 0:
        log.flush()
log.flush()
"""


def audit_row_instructions(work: str) -> dict[str, Any]:
    """Instructions the audit trail costs per request at full-speed batch sizes (500 rows a flush):
    queueing the row in the request and writing it in the writer, by callgrind over two runs of the same
    script that differ only in the number of rows (the difference cancels start-up)."""
    valgrind = shutil.which("valgrind")
    if not valgrind:
        return {"skipped": "valgrind not on PATH"}
    totals = {}
    for n in (500, 3000):
        out = Path(work) / f"callgrind-audit-{n}.out"
        subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                        AUDIT_SCRIPT, str(n)], check=True, capture_output=True)
        text = out.read_text(errors="replace")
        found = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
        totals[n] = int(found.group(1)) if found else 0
    return {"per_row": (totals[3000] - totals[500]) / 2500, "runs": totals}


def callgrind_cost(db: str, work: str, ids: list[str], client_id: str, n: int) -> dict[str, Any]:
    """CPU work per read as instructions counted by valgrind's callgrind: the same count whatever else the
    machine is doing, so it can settle a difference of a few percent that wall-clock runs on a shared
    machine cannot. Each mode's server runs under callgrind with instrumentation off until the measured
    requests (sequential, after a warm-up), and its threads are counted separately: the request-handling
    main thread and the others (with auth on, the audit writer). The export worker is switched off: its
    polling counts by elapsed time, not by request. The audit writer flushes every second, so under
    callgrind's slowdown each flush carries far fewer rows than at full speed and its share per request
    is overstated."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if not valgrind or not control:
        return {"skipped": "valgrind/callgrind_control not on PATH"}
    out: dict[str, Any] = {"requests": n}
    for mode in ("off", "on"):
        prefix = Path(work) / f"callgrind-{mode}"
        server = Server(db, 1, work, auth="off" if mode == "off" else "smart",
                        wrapper=[valgrind, "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                                 f"--callgrind-out-file={prefix}.out"],
                        env={"GATEWAY_EXPORT_WORKER": "false"})  # its polling counts by time, not by request
        headers = {}
        try:
            server.wait_ready(timeout=600)
            if mode == "on":  # a backend-services token for this server's own audience
                store = SqlStore(db)
                keys = KeyRing(store.engine)
                tokens = TokenService(store.engine, keys, server.fhir, server.fhir)
                headers = {"Authorization": f"Bearer {tokens.issue_access(client_id, 'system/*.rs', 3600, 'b').token}"}
                store.close()
            rng = random.Random(11)
            with httpx.Client(base_url=server.base, timeout=120, headers=headers) as c:
                _reads(c, ids, rng, 50)
                time.sleep(2.5)  # let a pending audit flush pass before counting starts
                subprocess.run([control, "-i", "on", str(server.proc.pid)], check=True, capture_output=True)
                t0 = time.monotonic()
                _reads(c, ids, rng, n)
                subprocess.run([control, "-i", "off", str(server.proc.pid)], check=True, capture_output=True)
                seconds = time.monotonic() - t0
        finally:
            server.stop()
        threads = {}
        for f in sorted(Path(work).glob(f"callgrind-{mode}.out-*")):
            text = f.read_text(errors="replace")
            total = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
            if total and int(total.group(1)):
                threads[f.name.rsplit("-", 1)[1]] = int(total.group(1))
        main_thread = threads.pop(min(threads)) if threads else 0
        out[mode] = {"seconds": seconds, "main_thread_per_request": main_thread / n,
                     "other_threads": threads, "all_threads_per_request": (main_thread + sum(threads.values())) / n}
    for key in ("main_thread_per_request", "all_threads_per_request"):
        out[f"{key}_overhead_pct"] = (out["on"][key] / out["off"][key] - 1) * 100
    # the audit writer at full speed: its batches hold hundreds of rows, not the few a slowed-down run gives
    out["audit_row"] = audit_row_instructions(work)
    per_row = out["audit_row"].get("per_row")
    if per_row:
        out["request_thread_plus_audit_row_overhead_pct"] = (
            (out["on"]["main_thread_per_request"] + per_row) / out["off"]["main_thread_per_request"] - 1) * 100
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 32],
                    help="comma-separated wrk connection counts, each measured in its own rounds (default 1,32)")
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--validations", type=int, default=2000)
    ap.add_argument("--no-in-process", dest="in_process", action="store_false",
                    help="skip the in-process (ASGI, no sockets) comparison")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="also count instructions per read under callgrind over N sequential reads per mode")
    ap.add_argument("--database", default="",
                    help="database URL of an empty database to run on (default: a fresh SQLite file)")
    ap.add_argument("--out", default="bench/results/auth.json")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="gw-bench-auth-")
    db = args.database or f"sqlite:///{work}/bench.sqlite3"
    wrk = shutil.which("wrk")
    result: dict[str, Any] = {"machine": machine_info(None), "client": "wrk" if wrk else "httpx",
                              "note": "2-core machine shared with other work; compare the modes side by side"}
    try:
        result["validation"] = validation_cost(db, args.validations)
        print("token validation:", json.dumps(result["validation"]), flush=True)
        off = Server(db, 1, work, auth="off")
        on = Server(db, 1, work, auth="smart")
        try:
            off.wait_ready()
            on.wait_ready()
            ids = seed(off.fhir, args.patients, random.Random(7))
            key = generate_client_key("ES384")
            store = SqlStore(db)
            client, _ = ClientStore(store.engine).register("bench", "system/*.rs",
                                                           jwks={"keys": [key.as_dict(private=False)]})
            store.close()
            def fresh() -> str:  # backend tokens live 5 minutes: one per round
                return str(fetch_token(on.fhir, client.client_id, key.as_dict(private=True),
                                       "system/*.rs")["access_token"])

            fresh()  # the token endpoint answers before anything is measured
            if args.in_process:
                result["asgi_in_process"] = asgi_read_cost(db, ids)
                print("in process:", json.dumps(result["asgi_in_process"]["median_us"]),
                      f"overhead {result['asgi_in_process']['overhead_pct']:.1f}%", flush=True)
            if args.callgrind:
                result["callgrind"] = callgrind_cost(db, work, ids, client.client_id, args.callgrind)
                print("callgrind:", json.dumps(result["callgrind"]), flush=True)
            result["read"] = {}
            for conc in args.concurrency:
                rounds: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
                for i in range(args.rounds):
                    for mode, server in (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off)):
                        pool = [f"/fhir/Patient/{pid}" for pid in ids]
                        load = Load("get", pool, expect='"resourceType":"Patient"', concurrency=conc,
                                    token=fresh() if mode == "on" else "")
                        cpu0 = cpu_ns(server.proc.pid)
                        m = run_wrk(wrk, server.base, load, args.duration, work) if wrk else \
                            run_httpx(server.base, load, args.duration)
                        cpu = cpu_ns(server.proc.pid) - cpu0
                        if m.ok != m.requests or m.socket_errors:
                            raise RuntimeError(f"{mode}: {m.requests - m.ok} failed requests, "
                                               f"{m.socket_errors} socket errors")
                        row = {"req_s": m.ok / m.seconds, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms,
                               "mean_ms": m.mean_ms, "cpu_us_per_req": cpu / 1000 / max(1, m.requests)}
                        rounds[mode].append(row)
                        print(f"c={conc} round {i + 1} {mode}: {json.dumps(row)}", flush=True)
                med = {k: {f: statistics.median(r[f] for r in v) for f in FIELDS} for k, v in rounds.items()}
                summary = {"median": med,
                           "mean_latency_overhead_pct": (med["on"]["mean_ms"] / med["off"]["mean_ms"] - 1) * 100,
                           "p50_latency_overhead_pct": (med["on"]["p50_ms"] / med["off"]["p50_ms"] - 1) * 100,
                           "cpu_per_request_overhead_pct":
                               (med["on"]["cpu_us_per_req"] / med["off"]["cpu_us_per_req"] - 1) * 100,
                           "throughput_ratio": med["on"]["req_s"] / med["off"]["req_s"]}
                result["read"][f"c{conc}"] = {"rounds": rounds, **summary}
                print(f"c={conc}", json.dumps(summary, indent=1), flush=True)
        finally:
            off.stop()
            on.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

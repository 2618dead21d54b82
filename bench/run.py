#!/usr/bin/env python3
"""Throughput benchmark of a live ``fhir-gateway serve`` process on loopback.

For every backend (a temporary SQLite file, a fresh PostgreSQL database) and every worker count, the script
starts the server on a free 127.0.0.1 port, waits for /healthz, seeds data over the FHIR API, runs four
scenarios with a concurrent load generator, stops the server and removes the database again:

1. ``read``        GET Patient/{id} over ~1,000 seeded Patients, random ids            (req/s)
2. ``create``      POST Patient with ``Prefer: return=minimal``                         (req/s)
3. ``search``      GET Observation?patient=Patient/{id}&code=http://loinc.org|{code}    (req/s)
4. ``transaction`` POST transaction Bundles of ~100 clinical resources, urn:uuid refs   (resources/s)

Only 2xx responses whose body looks right count as successes; everything else is reported as errors.
The load generator is ``wrk`` (one thread, with a generated Lua script) when it is on PATH, else a Python
``httpx.AsyncClient`` with N concurrent tasks (which competes with the server for CPU: the results say so).

Results go to bench/results/latest.json and bench/results/latest.md; the Markdown table is also printed.

    python bench/run.py [--backends sqlite,postgres] [--duration 10] [--concurrency 32] [--workers 1,2]

Only 127.0.0.1 is ever contacted; every load loop is bounded by --duration and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SCENARIOS = ("read", "create", "search", "transaction")
LOINC = [  # (code, display, unit, low, high, category)
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.0, 11.0, "laboratory"),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70.0, 220.0, "laboratory"),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 100.0, 170.0, "vital-signs"),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60.0, 105.0, "vital-signs"),
    ("29463-7", "Body weight", "kg", 45.0, 130.0, "vital-signs"),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18.0, 42.0, "vital-signs"),
]
SEARCH_CODES = [c[0] for c in LOINC[:5]]  # the "handful of LOINC codes" the search scenario queries
CONDITIONS = [
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("E66.9", "Obesity, unspecified"),
    ("N18.3", "Chronic kidney disease, stage 3"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("F32.9", "Major depressive disorder, single episode, unspecified"),
    ("Z72.0", "Tobacco use"),
]
FAMILY = ["Smith", "Johnson", "Garcia", "Nguyen", "Okafor", "Müller", "Kowalski", "Rossi", "Haddad", "Tanaka",
          "Brown", "Martínez", "Andersson", "Dubois", "Patel", "O'Brien"]
GIVEN = {"female": ["Maria", "Aisha", "Emma", "Sofia", "Mei", "Olivia", "Chloé", "Fatima"],
         "male": ["James", "Mohammed", "Liam", "Noah", "Diego", "Hiroshi", "Lukas", "Samuel"]}
CITIES = [("Springfield", "IL", "62701"), ("Columbus", "OH", "43004"), ("Austin", "TX", "73301"),
          ("Portland", "OR", "97035"), ("Raleigh", "NC", "27601"), ("Denver", "CO", "80014")]


# ---------------------------------------------------------------------------------------------------------------
# realistic FHIR R4 resources
# ---------------------------------------------------------------------------------------------------------------
def _date(rng: random.Random, y0: int, y1: int) -> str:
    return f"{rng.randint(y0, y1):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _instant(rng: random.Random, day: str, hour: int | None = None) -> str:
    h = rng.randint(8, 17) if hour is None else hour
    return f"{day}T{h:02d}:{rng.randint(0, 59):02d}:00Z"


def make_patient(rng: random.Random) -> dict[str, Any]:
    gender = rng.choice(["female", "male"])
    city, state, postal = rng.choice(CITIES)
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "usual",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR", "display": "Medical record number"}]},
                        "system": "urn:oid:2.16.840.1.113883.19.5.99999.1",
                        "value": f"MRN{rng.randrange(10**8):08d}"}],
        "active": True,
        "name": [{"use": "official", "family": rng.choice(FAMILY),
                  "given": [rng.choice(GIVEN[gender]), rng.choice(GIVEN[gender])]}],
        "telecom": [{"system": "phone", "value": f"555-{rng.randrange(1000):03d}-{rng.randrange(10000):04d}",
                     "use": "home"}],
        "gender": gender,
        "birthDate": _date(rng, 1935, 2010),
        "address": [{"use": "home", "line": [f"{rng.randint(1, 9999)} {rng.choice(['Oak', 'Main', 'Elm'])} St"],
                     "city": city, "state": state, "postalCode": postal, "country": "US"}],
    }


def make_encounter(rng: random.Random, patient_ref: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory"},
        "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213",
                              "display": "Office or other outpatient visit"}]}],
        "subject": {"reference": patient_ref},
        "period": {"start": _instant(rng, day, 9), "end": _instant(rng, day, 10)},
    }


def make_observation(rng: random.Random, patient_ref: str, loinc: tuple[Any, ...], day: str,
                     encounter_ref: str | None = None) -> dict[str, Any]:
    code, display, unit, lo, hi, category = loinc
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _instant(rng, day),
        "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit,
                          "system": "http://unitsofmeasure.org", "code": unit},
    }
    if encounter_ref:
        obs["encounter"] = {"reference": encounter_ref}
    return obs


def make_condition(rng: random.Random, patient_ref: str, encounter_ref: str, day: str) -> dict[str, Any]:
    code, display = rng.choice(CONDITIONS)
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}],
                 "text": display},
        "subject": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref},
        "onsetDateTime": day,
        "recordedDate": day,
    }


def _entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    return {"fullUrl": full_url or f"urn:uuid:{uuid.uuid4()}", "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def clinical_bundle(rng: random.Random, size: int) -> dict[str, Any]:
    """One patient's record: 1 Patient, ~12% Encounters, ~15% Conditions, the rest Observations."""
    rest = max(size - 1, 2)
    n_enc = max(1, round(rest * 0.12))
    n_cond = max(0, round(rest * 0.15))
    n_obs = rest - n_enc - n_cond
    p_url = f"urn:uuid:{uuid.uuid4()}"
    entries = [_entry(make_patient(rng), p_url)]
    encs = []
    for _ in range(n_enc):
        day = _date(rng, 2023, 2025)
        e_url = f"urn:uuid:{uuid.uuid4()}"
        encs.append((e_url, day))
        entries.append(_entry(make_encounter(rng, p_url, day), e_url))
    for i in range(n_obs):
        e_url, day = encs[i % n_enc]
        entries.append(_entry(make_observation(rng, p_url, LOINC[i % len(LOINC)], day, e_url)))
    for i in range(n_cond):
        e_url, day = encs[i % n_enc]
        entries.append(_entry(make_condition(rng, p_url, e_url, day)))
    return transaction(entries)


# ---------------------------------------------------------------------------------------------------------------
# machine, backends, server
# ---------------------------------------------------------------------------------------------------------------
def machine_info(pg_admin: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                            "sqlite": sqlite3.sqlite_version}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        info["memory_gib"] = round(kb / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(BENCH_DIR.parent)]
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "gateway"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            info["commit"] = rev.stdout.strip() + (" (gateway/ modified)" if dirty else "")
    if pg_admin:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(pg_admin, connect_timeout=3) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    return info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def sqlite_backend() -> Iterator[str]:
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    try:
        yield f"sqlite:///{tmp}/bench.sqlite3"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres_backend(admin: str, base_url: str) -> Iterator[str]:
    import psycopg

    name = f"gw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base_url.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_command() -> list[str]:
    exe = Path(sys.executable).with_name("fhir-gateway")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("fhir-gateway")
    if found:
        return [found]
    sys.exit("fhir-gateway is not installed: run `pip install -e .` first")


class Server:
    """A live ``fhir-gateway serve`` subprocess on a free loopback port."""

    def __init__(self, database_url: str, workers: int, log_dir: str, auth: str = "off",
                 wrapper: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.fhir = f"{self.base}/fhir"
        self.log_path = Path(log_dir) / f"server-{self.port}.log"
        cmd = [*(wrapper or []), *server_command(), "serve", "--host", HOST, "--port", str(self.port), "--auth", auth,
               "--database", database_url, "--workers", str(workers)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # default settings apart from the flags: no GATEWAY_* variable of the caller's shell leaks in
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}, **(env or {})}
        # its own session and process group, so that stop() reaches the uvicorn worker processes too
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # a worker left behind after its parent went away would keep the database busy
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


# ---------------------------------------------------------------------------------------------------------------
# CPU accounting: who used the cores while a scenario ran (the machine may be shared with other work)
# ---------------------------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_ticks() -> tuple[int, int] | None:
    """(process-context busy ticks, interrupt ticks) of the whole machine so far."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: interrupt time (loopback networking is mostly softirq)
    # is charged to no process, so it is kept apart from the other processes' share
    return fields[0] + fields[1] + fields[2] + fields[7], fields[5] + fields[6]


def _proc_ticks(server_sid: int | None, db_name: str | None) -> dict[str, int]:
    """CPU ticks used so far by the server's processes, the load generator (and this script), and the
    PostgreSQL backends serving the benchmark database."""
    t = os.times()
    out = {"server": 0, "client": round((t.user + t.system + t.children_user + t.children_system) * CLK_TCK),
           "database": 0}
    me = os.getpid()
    procs: dict[int, tuple[str, int, int, int, int]] = {}  # pid -> comm, ppid, session, ticks, reaped children
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        rest = stat.rsplit(")", 1)[1].split()
        procs[int(d.name)] = (comm, int(rest[1]), int(rest[3]), int(rest[11]) + int(rest[12]),
                              int(rest[13]) + int(rest[14]))
    for pid, (comm, ppid, sid, ticks, reaped) in procs.items():
        if server_sid is not None and sid == server_sid:
            out["server"] += ticks
        elif pid == me or ppid == me:
            continue  # the load generator is counted from os.times(), which includes exited children
        elif db_name and comm == "postgres":
            if procs.get(ppid, ("",))[0] != "postgres":
                # the postmaster: its reaped children are the backends of connections that were closed (a
                # server whose pool opens and closes connections leaves its database work here)
                out["database"] += reaped
            else:
                with contextlib.suppress(OSError):
                    if db_name.encode() in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                        out["database"] += ticks
    return out


class CpuMeter:
    """Cores used on average between start() and stop(), split into server, client, database and other."""

    def __init__(self, server_sid: int | None = None, db_name: str | None = None) -> None:
        self.sid, self.db = server_sid, db_name

    def start(self) -> None:
        self.t0, self.sys0, self.p0 = time.monotonic(), _system_ticks(), _proc_ticks(self.sid, self.db)

    def stop(self) -> dict[str, float]:
        t1, sys1, p1 = time.monotonic(), _system_ticks(), _proc_ticks(self.sid, self.db)
        secs = max(t1 - self.t0, 1e-3)
        out = {k: round(max(p1[k] - self.p0[k], 0) / CLK_TCK / secs, 2) for k in p1}
        if sys1 is not None and self.sys0 is not None:
            busy = (sys1[0] - self.sys0[0]) / CLK_TCK / secs
            # includes processes that exited meanwhile, e.g. database backends of closed connections
            out["other"] = round(max(busy - sum(out.values()), 0.0), 2)
            out["interrupts"] = round((sys1[1] - self.sys0[1]) / CLK_TCK / secs, 2)
        return out


def wait_for_quiet(limit_cores: float, max_wait: float, meter: CpuMeter) -> float:
    """Wait (at most max_wait s) until other work on the machine uses less than limit_cores; return that load."""
    deadline = time.monotonic() + max_wait
    while True:
        meter.start()
        time.sleep(1.0)
        other = meter.stop().get("other", 0.0)
        if other < limit_cores or time.monotonic() >= deadline:
            return other
        print(f"  waiting for the machine to go quiet (other processes use {other:.2f} cores)", flush=True)
        time.sleep(4.0)


def connections_per_process(session_id: int, port: int) -> list[int]:
    """Established client connections on ``port`` held by each process of the server's session, largest first:
    with several workers the kernel hands each new connection to whichever worker accepts first, and
    keep-alive connections stay where they landed."""
    inodes: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for name in ("tcp", "tcp6"):
            for line in (Path("/proc/net") / name).read_text().splitlines()[1:]:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01":  # local port, ESTABLISHED
                    inodes[f[9]] = 0
    counts: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) != session_id:
                continue
            n = 0
            for fd in (d / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    n += 1
        except OSError:
            continue
        if n:
            counts[int(d.name)] = n
    return sorted(counts.values(), reverse=True)


# ---------------------------------------------------------------------------------------------------------------
# seeding (over the FHIR API, in transaction Bundles)
# ---------------------------------------------------------------------------------------------------------------
def post_transaction(client: httpx.Client, fhir: str, bundle: dict[str, Any]) -> list[str]:
    r = client.post(fhir, content=json.dumps(bundle), headers={"Content-Type": "application/fhir+json"})
    if r.status_code != 200:
        raise RuntimeError(f"seeding transaction failed: {r.status_code} {r.text[:500]}")
    out = []
    for e in r.json().get("entry", []):
        status = e["response"]["status"]
        if not status.startswith("201"):
            raise RuntimeError(f"seeding entry not created: {status}")
        out.append(e["response"]["location"].split("/_history/")[0])  # Type/id
    if len(out) != len(bundle["entry"]):
        raise RuntimeError(f"seeding transaction returned {len(out)} entries for {len(bundle['entry'])}")
    return out


@dataclass
class Seed:
    read_ids: list[str] = field(default_factory=list)
    search: list[tuple[str, str, int]] = field(default_factory=list)  # patient id, code, expected matches
    create_bodies: list[str] = field(default_factory=list)
    bundles: list[str] = field(default_factory=list)
    bundle_resources: int = 0


def seed(fhir: str, rng: random.Random, args: argparse.Namespace) -> Seed:
    s = Seed()
    with httpx.Client(timeout=120) as client:
        left = args.read_patients
        while left > 0:
            n = min(100, left)
            locs = post_transaction(client, fhir, transaction([_entry(make_patient(rng)) for _ in range(n)]))
            s.read_ids += [loc.split("/", 1)[1] for loc in locs]
            left -= n
        per_bundle = 10
        for start in range(0, args.search_patients, per_bundle):
            entries, expected = [], []
            for _ in range(min(per_bundle, args.search_patients - start)):
                p_url = f"urn:uuid:{uuid.uuid4()}"
                p_index = len(entries)
                entries.append(_entry(make_patient(rng), p_url))
                counts: collections.Counter[str] = collections.Counter()
                for i in range(args.obs_per_patient):
                    loinc = LOINC[i % len(SEARCH_CODES)]
                    counts[loinc[0]] += 1
                    entries.append(_entry(make_observation(rng, p_url, loinc, _date(rng, 2023, 2025))))
                expected.append((p_index, counts))
            locs = post_transaction(client, fhir, transaction(entries))
            for p_index, counts in expected:
                pid = locs[p_index].split("/", 1)[1]
                s.search += [(pid, code, counts.get(code, 0)) for code in SEARCH_CODES]
    s.create_bodies = [json.dumps(make_patient(rng), ensure_ascii=False) for _ in range(500)]
    bundles = [clinical_bundle(rng, args.bundle_size) for _ in range(args.bundle_pool)]
    s.bundle_resources = len(bundles[0]["entry"])
    s.bundles = [json.dumps(b, ensure_ascii=False) for b in bundles]
    return s


def search_path(pid: str, code: str) -> str:
    return f"/fhir/Observation?patient=Patient/{pid}&code={quote('http://loinc.org|' + code, safe=':/')}"


def check_search(fhir: str, sd: Seed) -> None:
    """A fast answer is only a result if it is the right one: compare a sample with the seeded counts."""
    with httpx.Client(timeout=30) as client:
        for pid, code, want in random.Random(7).sample(sd.search, min(20, len(sd.search))):
            r = client.get(fhir.rsplit("/fhir", 1)[0] + search_path(pid, code))
            got = r.json().get("total") if r.status_code == 200 else None
            n = len(r.json().get("entry", [])) if r.status_code == 200 else None
            if r.status_code != 200 or got != want or n != want:
                raise RuntimeError(f"search check failed for Patient/{pid} {code}: status {r.status_code}, "
                                   f"total {got}, entries {n}, expected {want}")


# ---------------------------------------------------------------------------------------------------------------
# load generators
# ---------------------------------------------------------------------------------------------------------------
WRK_LUA = r"""
-- generated by bench/run.py: requests drawn at random from a pool file, one item per line
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local pool = {}
local mode, path, expect, headers
ok = 0
bad_status = 0
bad_body = 0

function init(args)
  mode, path, expect = args[1], args[3], args[4]
  if expect == nil or expect == "" then expect = nil end
  for line in io.lines(args[2]) do
    if #line > 0 then pool[#pool + 1] = line end
  end
  math.randomseed(os.time() * 1000 + (tid or 0))
  headers = {["Accept"] = "application/fhir+json"}
  if args[5] ~= nil and args[5] ~= "" then headers["Authorization"] = "Bearer " .. args[5] end
  if mode == "post" then
    headers["Content-Type"] = "application/fhir+json"
    headers["Prefer"] = "return=minimal"
  end
end

function request()
  local item = pool[math.random(#pool)]
  if mode == "post" then
    return wrk.format("POST", path, headers, item)
  end
  return wrk.format("GET", item, headers)
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
  elseif expect and not string.find(body, expect, 1, true) then
    bad_body = bad_body + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local o, bs, bb = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    bs = bs + t:get("bad_status")
    bb = bb + t:get("bad_body")
  end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"ok":%d,"bad_status":%d,"bad_body":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,'
    .. '"max_us":%d}\n', summary.requests, summary.duration, o, bs, bb, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class Load:
    """What one scenario sends: GETs of paths from a pool, or POSTs of bodies from a pool to one path."""

    mode: str  # get | post
    pool: list[str]
    path: str = ""
    expect: str = ""  # a 2xx response must contain this text to count as a success
    concurrency: int = 32
    timeout: float = 10.0
    token: str = ""  # a bearer access token, sent on every request when set


@dataclass
class Measured:
    requests: int
    ok: int
    bad_status: int
    bad_body: int
    socket_errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def run_wrk(wrk: str, base: str, load: Load, seconds: float, work: str) -> Measured:
    script = Path(work) / "pool.lua"
    if not script.exists():
        script.write_text(WRK_LUA)
    data = Path(work) / f"pool-{uuid.uuid4().hex[:8]}.txt"
    data.write_text("\n".join(load.pool) + "\n", encoding="utf-8")
    cmd = [wrk, "-t1", f"-c{load.concurrency}", f"-d{max(1, round(seconds))}s", f"--timeout={load.timeout:g}s",
           "-s", str(script), base, "--", load.mode, str(data), load.path, load.expect, load.token]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + load.timeout + 60)
    data.unlink(missing_ok=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()} {out.stdout[-500:]}")
    j = json.loads(line[len("BENCH_JSON "):])
    return Measured(requests=j["requests"], ok=j["ok"], bad_status=j["bad_status"], bad_body=j["bad_body"],
                    socket_errors=j["connect"] + j["read"] + j["write"] + j["timeout"],
                    seconds=j["duration_us"] / 1e6, p50_ms=j["p50_us"] / 1000, p90_ms=j["p90_us"] / 1000,
                    p99_ms=j["p99_us"] / 1000, mean_ms=j["mean_us"] / 1000, max_ms=j["max_us"] / 1000)


def _pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100 * (len(sorted_ms) - 1))))]


def run_httpx(base: str, load: Load, seconds: float) -> Measured:
    """Fallback load generator: N asyncio tasks on one httpx.AsyncClient (uses CPU on the same machine)."""
    headers = {"Accept": "application/fhir+json"}
    if load.token:
        headers["Authorization"] = f"Bearer {load.token}"
    if load.mode == "post":
        headers |= {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    pool = [p.encode() for p in load.pool] if load.mode == "post" else load.pool
    lat: list[float] = []
    counts = collections.Counter[str]()

    async def worker(client: httpx.AsyncClient, deadline: float, rng: random.Random) -> None:
        while time.monotonic() < deadline:
            item = rng.choice(pool)
            t0 = time.perf_counter()
            try:
                if load.mode == "post":
                    r = await client.post(load.path, content=item, headers=headers)
                else:
                    r = await client.get(item, headers=headers)
            except httpx.HTTPError:
                counts["socket"] += 1
                continue
            lat.append((time.perf_counter() - t0) * 1000)
            if not 200 <= r.status_code <= 299:
                counts["bad_status"] += 1
            elif load.expect and load.expect not in r.text:
                counts["bad_body"] += 1
            else:
                counts["ok"] += 1

    async def main() -> float:
        limits = httpx.Limits(max_connections=load.concurrency, max_keepalive_connections=load.concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=load.timeout) as client:
            t0 = time.monotonic()
            deadline = t0 + seconds
            await asyncio.gather(*(worker(client, deadline, random.Random(i)) for i in range(load.concurrency)))
            return time.monotonic() - t0

    elapsed = asyncio.run(main())
    lat.sort()
    return Measured(requests=len(lat), ok=counts["ok"], bad_status=counts["bad_status"], bad_body=counts["bad_body"],
                    socket_errors=counts["socket"], seconds=elapsed, p50_ms=_pct(lat, 50), p90_ms=_pct(lat, 90),
                    p99_ms=_pct(lat, 99), mean_ms=sum(lat) / len(lat) if lat else 0.0,
                    max_ms=lat[-1] if lat else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# profiling (optional): py-spy samples the server processes while a scenario runs
# ---------------------------------------------------------------------------------------------------------------
def start_profiler(pyspy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    # --gil: only the thread holding the GIL is sampled, so the profile shows where Python CPU time goes
    cmd = [pyspy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "200", "--format", "raw",
           "--duration", str(max(1, round(seconds))), "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 20) -> str:
    """Hot spots from py-spy's collapsed stacks: functions by own samples, and the gateway's functions by
    inclusive samples (time spent in them and everything they call)."""
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return f"(no profile at {path.name})\n"
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f]
        while frames and frames[0].startswith("process "):  # process labels (a command line may hold ';')
            cut = next((i for i, f in enumerate(frames) if f.endswith('"')), 0)
            frames = frames[cut + 1:]
        if not frames:
            continue
        total += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
        own[_short(frames[-1])] += count
    if not total:
        return "(no samples)\n"
    lines = [f"samples holding the GIL: {total}", "", "| self % | function |", "|---:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in own.most_common(top)]
    lines += ["", "| inclusive % | gateway function |", "|---:|---|"]
    ours = [(f, n) for f, n in incl.most_common() if "(gateway/" in f]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in ours[:top]]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``func (pkg/mod.py:123)`` -> ``func (pkg/mod.py)``, with no folder of this machine in it."""
    name, _, loc = frame.partition(" (")
    file = loc.rstrip(")").rsplit(":", 1)[0]
    if file.startswith("/"):
        file = "/".join(file.split("/")[-2:])
    return f"{name} ({file})"


# ---------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------
def loads_for(sd: Seed, args: argparse.Namespace) -> dict[str, Load]:
    c = args.concurrency
    return {
        "read": Load("get", [f"/fhir/Patient/{i}" for i in sd.read_ids], expect='"resourceType":"Patient"',
                     concurrency=c),
        "create": Load("post", sd.create_bodies, path="/fhir/Patient", concurrency=c),
        "search": Load("get", [search_path(p, code) for p, code, n in sd.search if n > 0],
                       expect='"resourceType":"Observation"', concurrency=c),
        "transaction": Load("post", sd.bundles, path="/fhir", expect='"transaction-response"',
                            concurrency=args.tx_concurrency, timeout=60.0),
    }


def _append_split(out: list[list[int]], session_id: int, port: int) -> None:
    out.append(connections_per_process(session_id, port))


def pg_sessions(admin: str, db_name: str) -> int | None:
    """pg_stat_database.sessions (PostgreSQL 14+): sessions of the database that have ended so far."""
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(admin, connect_timeout=3) as conn:
            row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (db_name,)).fetchone()
            return int(row[0]) if row and row[0] is not None else None
    return None


def pg_analyzed(admin: str, db_name: str) -> bool | None:
    """Whether PostgreSQL has planner statistics for the resource and index tables yet (autovacuum analyzes a
    freshly loaded table only after a while; without statistics the search plans are much slower)."""
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(admin.rsplit("/", 1)[0] + "/" + db_name, connect_timeout=3) as conn:
            rows = conn.execute("SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables "
                                "WHERE relname IN ('resource', 'idx_ref', 'idx_token')").fetchall()
            return bool(rows) and all(r[0] for r in rows)
    return None


def run_one(backend: str, database_url: str, workers: int, args: argparse.Namespace, work: str,
            wrk: str | None, pyspy: str | None) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    server = Server(database_url, workers, work)
    db_name = database_url.rsplit("/", 1)[1] if backend == "postgres" else None
    meter = CpuMeter(server.proc.pid, db_name)
    rows: list[dict[str, Any]] = []
    try:
        server.wait_ready()
        t0 = time.monotonic()
        sd = seed(server.fhir, rng, args)
        print(f"  seeded {len(sd.read_ids)} Patients for reads and {args.search_patients} Patients x "
              f"{args.obs_per_patient} Observations for search in {time.monotonic() - t0:.1f}s", flush=True)
        check_search(server.fhir, sd)
        loads = loads_for(sd, args)
        for name in args.scenarios:
            load = loads[name]
            attempt = 0
            imbalanced_attempts: list[str] = []
            while True:  # measure again when other work on the machine took CPU during the measurement
                attempt += 1
                other_before = wait_for_quiet(args.quiet_cores, args.quiet_wait, meter)
                if args.warmup > 0:  # first-request costs (imports, model classes, caches) are not throughput
                    _measure(wrk, server.base, load, args.warmup, work)
                prof = None
                if pyspy and args.profile:
                    prof_path = Path(args.profile) / f"{backend}-w{workers}-{name}.txt"
                    prof = start_profiler(pyspy, server.proc.pid, args.duration, prof_path)
                sessions0 = pg_sessions(args.pg_admin, db_name) if db_name else None
                analyzed = pg_analyzed(args.pg_admin, db_name) if db_name else None
                split: list[list[int]] = []
                probe = threading.Timer(min(2.0, args.duration / 2), _append_split,
                                        (split, server.proc.pid, server.port))
                probe.start()
                meter.start()
                m = _measure(wrk, server.base, load, args.duration, work)
                cpu = meter.stop()
                probe.cancel()
                sessions1 = pg_sessions(args.pg_admin, db_name) if db_name else None
                if prof is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        prof.wait(timeout=60)
                if server.proc.poll() is not None:
                    raise RuntimeError(f"server died during {name}:\n{server.log_tail()}")
                disturbed = cpu.get("other", 0.0) >= args.quiet_cores
                # with several workers, uvicorn's workers share one listening socket and a burst of new
                # connections can all be accepted by one worker: then the run measured one worker, not N
                conns = split[0] if split else []
                unbalanced = bool(workers > 1 and conns
                                  and (len(conns) < workers or conns[0] > 0.8 * sum(conns)))
                if not (disturbed or unbalanced) or attempt > args.retries:
                    break
                why = (f"other processes used {cpu.get('other')} cores meanwhile" if disturbed else
                       f"the connections landed unevenly on the workers ({'/'.join(map(str, conns))})")
                if unbalanced:
                    imbalanced_attempts.append("/".join(map(str, conns)))
                print(f"  {name}: {why}; measuring again", flush=True)
            per_req = sd.bundle_resources if name == "transaction" else 1
            row = {
                "backend": backend, "workers": workers, "scenario": name,
                "unit": "resources/s" if name == "transaction" else "req/s",
                "throughput": round(m.ok * per_req / m.seconds, 1) if m.seconds else 0.0,
                "requests_per_s": round(m.requests / m.seconds, 1) if m.seconds else 0.0,
                "resources_per_request": per_req,
                "p50_ms": round(m.p50_ms, 2), "p90_ms": round(m.p90_ms, 2), "p99_ms": round(m.p99_ms, 2),
                "mean_ms": round(m.mean_ms, 2), "max_ms": round(m.max_ms, 2),
                "errors": m.bad_status + m.bad_body + m.socket_errors,
                "error_detail": {"non_2xx": m.bad_status, "unexpected_body": m.bad_body,
                                 "socket_or_timeout": m.socket_errors},
                "requests": m.requests, "ok": m.ok, "seconds": round(m.seconds, 2),
                "concurrency": load.concurrency,
                "cpu_cores": cpu, "other_cpu_before": other_before, "disturbed": disturbed,
                "attempts": attempt, "connections_per_worker": split[0] if split else None,
                "unbalanced": unbalanced, "discarded_unbalanced_splits": imbalanced_attempts,
            }
            if db_name:
                row["pg_statistics_present"] = analyzed
            if sessions0 is not None and sessions1 is not None:
                # database sessions that ended during the measurement: connections the server opened and
                # closed again (a pool that keeps its connections shows ~0 here)
                row["pg_sessions_closed"] = sessions1 - sessions0
            rows.append(row)
            print(f"  {name:<12} {row['throughput']:>9.1f} {row['unit']:<12} p50 {row['p50_ms']:>7.1f} ms  "
                  f"p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}  cpu {cpu}  connections/worker "
                  f"{row['connections_per_worker']}", flush=True)
            if row["errors"]:
                print(f"    error detail {row['error_detail']}; server log tail:\n{server.log_tail(5)}", flush=True)
    finally:
        server.stop()
    return rows


def _measure(wrk: str | None, base: str, load: Load, seconds: float, work: str) -> Measured:
    if wrk:
        return run_wrk(wrk, base, load, seconds, work)
    return run_httpx(base, load, seconds)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# fhir-gateway benchmark results", "",
        f"- date: {m.get('date')}, commit {m.get('commit', '?')}",
        f"- machine: {m.get('cores')} cores ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB RAM, "
        f"{m.get('os', platform.system())}",
        f"- Python {m.get('python')}, SQLite {m.get('sqlite')}"
        + (f", PostgreSQL {m['postgresql']} (same machine)" if m.get("postgresql") else ""),
        f"- load generator: {result['client']}; {result['settings']['duration']} s per scenario after "
        f"{result['settings']['warmup']} s warm-up; concurrency {result['settings']['concurrency']} "
        f"(transactions: {result['settings']['tx_concurrency']} clients x "
        f"{result['settings']['bundle_size']} resources per Bundle)",
        "- server: `fhir-gateway serve --auth off`, server, database and load generator share the same cores",
    ]
    if result["settings"].get("profiled"):
        lines.append("- **profiled run**: py-spy was sampling the server, numbers are lower than usual")
    lines += ["- CPU columns: cores used on average during the measurement by the server processes, the load "
              "generator, the PostgreSQL backends of the benchmark database, and everything else on the machine; "
              f"a scenario is measured again when everything else took {result['settings']['quiet_cores']} cores "
              "or more, and marked (disturbed) if that still held after "
              f"{result['settings']['retries']} retries; likewise with several workers when one worker holds "
              "over 80% of the keep-alive connections (unbalanced)",
              "", "| backend | workers | scenario | throughput | unit | p50 ms | p99 ms | errors | requests "
              "| server CPU | client CPU | db CPU | other CPU | connections per worker |",
              "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["results"]:
        c = r.get("cpu_cores", {})
        flag = (" (disturbed)" if r.get("disturbed") else "") + (" (unbalanced)" if r.get("unbalanced") else "")
        conns = r.get("connections_per_worker")
        split = "/".join(map(str, conns or [])) or "-"
        lines.append(f"| {r['backend']} | {r['workers']} | {r['scenario']}{flag} | {r['throughput']:,.0f} | {r['unit']} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['requests']:,} | "
                     f"{c.get('server', 0):.2f} | {c.get('client', 0):.2f} | {c.get('database', 0):.2f} | "
                     f"{c.get('other', 0):.2f} | {split} |")
    lines += ratios(result["results"])
    lines += targets(result["results"], result["settings"].get("targets", {}))
    return "\n".join(lines) + "\n"


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, int, str], float]:
    return {(r["backend"], r["workers"], r["scenario"]): r["throughput"] for r in rows}


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Throughput ratios between runs of this same invocation: 2 workers vs 1, PostgreSQL vs SQLite."""
    t = _by_key(rows)
    backends = sorted({r["backend"] for r in rows}, key=["sqlite", "postgres"].index)
    workers = sorted({r["workers"] for r in rows})
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in rows)]
    cols: list[tuple[str, Any]] = []
    if len(workers) > 1:
        lo, hi = workers[0], workers[-1]
        cols += [(f"{b} {hi}w / {lo}w", lambda s, b=b, lo=lo, hi=hi: (t.get((b, hi, s)), t.get((b, lo, s))))
                 for b in backends]
    if len(backends) == 2:
        cols += [(f"postgres / sqlite, {w}w", lambda s, w=w: (t.get(("postgres", w, s)), t.get(("sqlite", w, s))))
                 for w in workers]
    if not cols:
        return []
    out = ["", "Throughput ratios within this run:", "",
           "| scenario | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for s in scenarios:
        cells = []
        for _, f in cols:
            a, b = f(s)
            cells.append(f"{a / b:.2f}x" if a is not None and b else "-")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def targets(rows: list[dict[str, Any]], goals: dict[str, float]) -> list[str]:
    if not goals:
        return []
    out = ["", "Against the targets (best and worst configuration of this run):", "",
           "| scenario | target | best | worst | met by |", "|---|---:|---:|---:|---|"]
    for scenario, goal in goals.items():
        mine = [r for r in rows if r["scenario"] == scenario]
        if not mine:
            continue
        unit = mine[0]["unit"]
        best = max(mine, key=lambda r: r["throughput"])
        worst = min(mine, key=lambda r: r["throughput"])
        met = [f"{r['backend']} {r['workers']}w" for r in mine if r["throughput"] >= goal]
        out.append(f"| {scenario} | {goal:,.0f} {unit} | {best['throughput']:,.0f} ({best['backend']} "
                   f"{best['workers']}w) | {worst['throughput']:,.0f} ({worst['backend']} {worst['workers']}w) | "
                   f"{', '.join(met) or 'none'} |")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres")
    p.add_argument("--workers", default="1,2", help="comma list of worker process counts")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each scenario")
    p.add_argument("--concurrency", type=int, default=32, help="connections for read, create and search")
    p.add_argument("--tx-concurrency", type=int, default=4, help="concurrent clients posting transactions")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ", ".join(SCENARIOS))
    p.add_argument("--read-patients", type=int, default=1000)
    p.add_argument("--search-patients", type=int, default=200)
    p.add_argument("--obs-per-patient", type=int, default=10)
    p.add_argument("--bundle-size", type=int, default=100, help="resources per transaction Bundle")
    p.add_argument("--bundle-pool", type=int, default=20, help="distinct transaction Bundles sent at random")
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto",
                   help="load generator; auto prefers wrk")
    p.add_argument("--pg-admin", default=os.environ.get("BENCH_PG_ADMIN", f"postgresql://postgres@{HOST}:5432/postgres"),
                   help="libpq URL used to create and drop the benchmark database (env BENCH_PG_ADMIN)")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", f"postgresql+psycopg://postgres@{HOST}:5432"),
                   help="SQLAlchemy URL of the server without the database name (env BENCH_PG_URL)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="sample the server with py-spy during each scenario; collapsed stacks and a summary "
                        "go to DIR (throughput is lower while profiling)")
    p.add_argument("--quiet-cores", type=float, default=0.3,
                   help="before each scenario, wait until other processes use less than this many cores")
    p.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for a quiet machine, seconds")
    p.add_argument("--retries", type=int, default=3,
                   help="measure a scenario again (at most this often) when other processes used at least "
                        "--quiet-cores meanwhile, or when one of several workers got over 80%% of the connections")
    p.add_argument("--targets", default="read=1500,transaction=3000",
                   help="throughput goals per scenario (req/s, resources/s for transaction) for the summary")
    p.add_argument("--output", default=None, help="folder for latest.json and latest.md (default: bench/results)")
    p.add_argument("--seed", type=int, default=20240601, help="random seed of the generated data")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    try:
        args.targets = {k.strip(): float(v) for k, v in (x.split("=", 1) for x in args.targets.split(",") if x)}
    except ValueError:
        p.error("--targets takes scenario=number pairs, e.g. read=1500,transaction=3000")
    for b in args.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b!r}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    for url in (args.pg_admin, args.pg_url):
        host = url.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            p.error(f"the benchmark only talks to loopback, not {host!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and not wrk:
        sys.exit("wrk is not on PATH (Debian: apt-get install wrk), or use --client httpx")
    client = ("wrk (1 thread, Lua script)" if wrk else
              "Python httpx.AsyncClient on the same machine (uses CPU the server would otherwise get)")
    pyspy = None
    if args.profile:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(pyspy).exists():
            sys.exit("--profile needs py-spy (pip install py-spy)")
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    machine = machine_info(args.pg_admin if "postgres" in args.backends else None)
    print(f"machine: {machine.get('cores')} cores, Python {machine['python']}; load generator: {client}", flush=True)

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gw-bench-work-") as work:
        for backend in args.backends:
            for workers in args.workers:
                print(f"\n== {backend}, {workers} worker(s)", flush=True)
                try:
                    cm = sqlite_backend() if backend == "sqlite" else postgres_backend(args.pg_admin, args.pg_url)
                    with cm as url:
                        rows += run_one(backend, url, workers, args, work, wrk, pyspy)
                except Exception as exc:  # noqa: BLE001 - report and go on with the next combination
                    failures.append(f"{backend}/{workers}: {exc}")
                    print(f"  FAILED: {exc}", flush=True)

    result = {
        "machine": machine, "client": client,
        "settings": {"duration": args.duration, "warmup": args.warmup, "concurrency": args.concurrency,
                     "tx_concurrency": args.tx_concurrency, "bundle_size": args.bundle_size,
                     "read_patients": args.read_patients, "search_patients": args.search_patients,
                     "obs_per_patient": args.obs_per_patient, "profiled": bool(args.profile),
                     "quiet_cores": args.quiet_cores, "retries": args.retries, "targets": args.targets},
        "results": rows, "failures": failures,
    }
    out = Path(args.output) if args.output else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    md = markdown(result)
    if failures:
        md += "\nFailed runs:\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    (out / "latest.md").write_text(md)
    if args.profile:
        summary = []
        for r in rows:
            path = Path(args.profile) / f"{r['backend']}-w{r['workers']}-{r['scenario']}.txt"
            summary.append(f"## {r['backend']}, {r['workers']} worker(s), {r['scenario']}\n\n"
                           + summarize_profile(path))
        (Path(args.profile) / "summary.md").write_text("\n".join(summary))
    print("\n" + md)
    return 1 if failures or any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

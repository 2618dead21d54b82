"""Ingest internal records (claims feeds, clinical extracts, HL7 v2 messages) through a mapping file into the
store. Every resource is validated before anything of its unit is written; a unit (what one record or one claim
becomes) is written in one database transaction with the others of its chunk, and alone when its chunk fails,
so a bad record never leaves half of itself behind and never stops the rest of the file.

Ids are stable (derived from source keys by the mapping file) and resources are written as updates, so loading
the same input again changes no counts (and, content unchanged, makes no new versions).

Two stages: *prepare* (read, map, validate, index, encode; no writes) and *write*. For inputs of some size
(``parallel=None``, the default) or on request the prepare stage runs in a worker process and streams its
results (units and rejects, in the order they arise) to this one, which writes; the outcome is the same as in
one process, rejects in the same order."""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..fhir.errors import Conflict, FhirError
from ..fhir.shapes import ShapeCache
from ..mapping.engine import Engine, Unit, owner
from ..mapping.quality import Finding, quality_report
from ..mapping.readers import read_input
from ..mapping.records import Reject
from ..mapping.spec import MappingSpec, find_spec, with_strictness
from ..measure.gcpolicy import fewer_collections
from ..resources.rest import RestService
from ..search.index import IndexRows, index_resource
from ..store.encoded import Encoded, encode
from .claim_versions import ClaimVersions
from .remittance import Remittance

if TYPE_CHECKING:
    from ..store.base import ResourceStore

CHUNK = 2_000  # resources per write transaction (larger ones measured no faster and hold SQLite's write lock longer)
PARALLEL_MIN_BYTES = 2_000_000  # smaller inputs: starting the worker process costs more than it saves
ANALYZE_FIRST = 20_000  # resources written before the first refresh of the planner's statistics (then x4)
EVENT_BATCH = 100  # prepared events per message from the worker
QUEUED_BATCHES = 64  # messages received ahead of the writes
RETRIES = 6  # a chunk that lost a race with another ingest process is written again, up to this many times
MAX_VALID = 200_000  # content digests of validated resources remembered by the prepare stage
MAX_INDEXED = 20_000  # index rows of repeated content remembered by the prepare stage

# ("read", (files, records)) | ("reject", Reject) | ("unit", Ready) | ("warning", Finding): what the prepare stage
# yields, in order
Event = tuple[str, Any]


class Ready(NamedTuple):
    """A valid unit, each of its resources encoded for storage with its index rows."""

    entity: str
    where: str
    lines: int
    items: list[Encoded]
    digests: list[bytes]
    warnings: list[Finding] = []  # data-quality findings: the unit loads with them (never mutated)


def prepare(spec: MappingSpec, level: str, paths: list[Path], shapes: ShapeCache | None = None,
            store: ResourceStore | None = None, part: tuple[int, int] | None = None) -> Iterator[Event]:
    """Read, map, validate, index and encode: the events of one ingest, in order. A unit with an invalid
    resource becomes a reject; a valid unit comes encoded, each resource with its content digest and index rows.
    With ``store``, corrected claims retire the facts their stored versions produced (``claim_versions``).
    ``part`` = (i, n): only partition i of n, split at claim boundaries (``Engine.run``); the reader's own
    rejects and warnings come with partition 0."""
    read = read_input(spec, paths)
    yield "read", (read.files, read.read)
    if part is None or part[0] == 0:
        for r in read.rejects:
            yield "reject", r
        for w in read.warnings:
            yield "warning", w
    rest = RestService(cast("ResourceStore", None), "urn:ingest", level)  # validation only: no store use
    shapes = shapes or ShapeCache()  # resources rendered from one template share their structure
    valid: set[bytes] = set()  # content already validated (a payer, a provider repeated by many claims)
    indexed: dict[bytes, IndexRows] = {}  # index rows by content digest: the same bytes give the same rows
    rejects: list[Reject] = []
    units: Iterable[Unit] = Engine(spec).run(read.records, rejects, part=part)
    if spec.reader == "x12-835":  # payments attach to the stored claims they pay (ingest/remittance.py)
        clp = read.records.get("clp", [])
        if part is not None:  # every payment of one claim in one partition, in file order
            clp = [r for r in clp if owner(r.fields.get("CLAIM_ID"), part[1]) == part[0]]
        units = Remittance(store, spec).units(clp)
    elif store is not None:
        units = ClaimVersions(store, spec).track(units)  # corrected claims retire facts
    for unit in units:
        while rejects:
            yield "reject", rejects.pop(0)
        items: list[Encoded] = []
        digests: list[bytes] = []
        repeated: set[int] = set()  # positions of content met before in this run (a provider of many claims)
        bad = None
        for res in unit.resources:
            unstorable = None
            try:
                enc: Encoded | None = encode(res)
            except (FhirError, KeyError, TypeError) as exc:  # no id, or a value JSON cannot hold
                enc = None
                unstorable = exc.diagnostics if isinstance(exc, FhirError) else f"{type(exc).__name__}: {exc}"
            if enc is not None:
                d = enc.digest
                digests.append(d)
                items.append(enc)
                if d in valid:
                    repeated.add(len(items) - 1)
                    continue
            grp = res["resourceType"] == "Group"  # its attribution rules are checked by RestService.validate
            if enc is not None and not grp and shapes.passes(res):
                valid.add(d)  # a shape validated in full before, every value checked against its element's type
                continue
            try:
                warnings = rest.validate(res, None, level)
            except FhirError as exc:
                bad = Reject(unit.where, f"{unit.entity}: mapped {res.get('resourceType')}/{res.get('id')} is "
                             f"not valid: {exc.diagnostics}")
                break
            if enc is None:
                bad = Reject(unit.where, f"{unit.entity}: mapped {res.get('resourceType')}/{res.get('id')} cannot "
                             f"be stored: {unstorable}")
                break
            if not warnings and not grp:
                shapes.learn(res)
            if len(valid) >= MAX_VALID:
                valid.clear()
            valid.add(d)
        if bad:
            yield "reject", bad
        else:
            for n, res in enumerate(unit.resources):
                known = indexed.get(digests[n]) if n in repeated else None
                if known is None:
                    known = index_resource(res)
                    if n in repeated:
                        if len(indexed) >= MAX_INDEXED:
                            indexed.clear()
                        indexed[digests[n]] = known
                items[n] = items[n]._replace(index=known)
            yield "unit", Ready(unit.entity, unit.where, unit.lines, items, digests, unit.warnings)
    while rejects:
        yield "reject", rejects.pop(0)


def _prepare_worker(spec: MappingSpec, level: str, paths: list[Path], conn: Any, store_url: str | None) -> None:
    """The worker process: prepared events to ``conn`` in batches, then ("end", None) or ("error", exc)."""
    # the records read stay in memory to the end: collect garbage rarely, as the heap is mostly long-lived
    gc.set_threshold(100_000, 50, 100)
    try:
        batch: list[Event] = []
        store = None
        if store_url and (any(e.versions for e in spec.entities) or spec.reader == "x12-835"):  # reads the stored claims' versions
            from ..store.sql.store import SqlStore

            store = SqlStore(store_url, migrate=False)
        for ev in prepare(spec, level, paths, store=store):
            batch.append(ev)
            if len(batch) >= EVENT_BATCH:
                conn.send(batch)
                batch = []
        batch.append(("end", None))
        conn.send(batch)

    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send([("error", exc)])
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send([("error", RuntimeError(f"{type(exc).__name__}: {exc}"))])
    finally:
        conn.close()


def _prepare_in_worker(spec: MappingSpec, level: str, paths: list[Path], store_url: str | None) -> Iterator[Event]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds database connections
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_prepare_worker, args=(spec, level, paths, send, store_url), daemon=True)
    proc.start()
    send.close()
    # a thread keeps the pipe drained, so the worker never waits for this process to finish a write
    batches: queue.Queue[list[Event]] = queue.Queue(maxsize=QUEUED_BATCHES)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                batch = _receive(receive)
            except (EOFError, OSError):
                batch = [("error", RuntimeError("the ingest worker process ended without a result"))]
            while not stop.is_set():
                try:
                    batches.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if batch[-1][0] in ("end", "error"):
                return

    reader = threading.Thread(target=pump, name="ingest-receive", daemon=True)
    reader.start()
    try:
        while True:
            for ev in batches.get():
                if ev[0] == "end":
                    return
                if ev[0] == "error":
                    raise ev[1]
                yield ev
    finally:
        stop.set()
        if proc.is_alive():  # this side stopped early
            proc.terminate()
        proc.join()
        reader.join()
        receive.close()


def _receive(conn: Any) -> list[Event]:
    """One batch from the worker. The collector stays off while it is unpickled: thousands of fresh containers
    in one go would otherwise trigger collections that scan this process's whole heap, again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return conn.recv()
    finally:
        if enabled:
            gc.enable()


# while ingests run in this process the collector's young generation is collected every 100,000 allocations
# rather than every 700: an ingest allocates millions of short-lived tuples (index and database rows). The raise
# goes through gateway.measure.gcpolicy, shared with population runs, so overlapping runs restore the process's
# thresholds once the last one ends.
INGEST_YOUNG_THRESHOLD = 100_000


def _input_bytes(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


@dataclass
class IngestSummary:
    format: str
    mapping_version: str
    files: int = 0
    records: int = 0
    units: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # already stored with the same content: no new version
    rejects: list[Reject] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    warnings: list[Finding] = field(default_factory=list)  # data-quality findings of loaded units and files
    units_with_warnings: int = 0
    strictness: str = "lenient"
    retries: int = 0  # chunks written again after losing a race with another process (``workers``)

    @property
    def resources(self) -> int:
        return self.created + self.updated + self.unchanged

    def quality(self) -> dict[str, Any]:
        """The run's data-quality report (gateway.mapping.quality): records read; units loaded, loaded with
        warnings and rejected; warnings and rejects grouped by rule with counts and first examples."""
        return {"format": self.format, "mappingVersion": self.mapping_version, "strictness": self.strictness,
                "files": self.files, **quality_report(self.records, self.units, self.units_with_warnings,
                                                      self.warnings, self.rejects)}

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "mappingVersion": self.mapping_version, "files": self.files,
                "recordsRead": self.records, "resourcesCreated": self.created, "resourcesUpdated": self.updated,
                "resourcesUnchanged": self.unchanged,
                "resourcesByType": dict(sorted(self.by_type.items())),
                "rejected": [{"where": r.where, "reason": r.reason, **({"field": r.field} if r.field else {})}
                             for r in self.rejects]}


def _where_key(where: str) -> tuple[str, int, str]:
    """Sorts ``file:line`` places by file, then line number."""
    name, _, rest = where.rpartition(":")
    return (name, int(rest), "") if rest.isdigit() else (where, 0, "")


def _partition_main(spec: MappingSpec, level: str, paths: list[Path], url: str, base: str, gated: str | None,
                    grant: dict[str, Any] | None, part: tuple[int, int], conn: Any) -> None:
    """One process of a ``workers=N`` ingest: partition ``part`` of the input, prepared and written here with
    its own database connection, under the caller's grant; progress counts, then ("done", (summary, written))
    or ("error", exc), to ``conn``. ``gated``: the parent writes through the store gate, built here again with
    this configured Provider Access opt-out list (``GatedStore``'s ``opt_out``); None: it writes directly."""
    gc.set_threshold(100_000, 50, 100)
    try:
        from ..auth.context import current
        from ..auth.gated import GatedStore
        from ..auth.grant_record import restore
        from ..store.sql.store import SqlStore

        if grant is not None:
            current.set(restore(grant))
        store = SqlStore(url, migrate=False)
        try:
            target: Any = GatedStore(store, base, opt_out=gated) if gated is not None else store
            ing = Ingestor(RestService(target, base), spec, level, progress=lambda n: conn.send(("progress", n)),
                           parallel=False, part=part)
            ing.final_analyze = False  # the parent refreshes the statistics once, after every partition
            summary = ing.ingest(paths)
            conn.send(("done", (summary, ing._written)))
        finally:
            store.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class Ingestor:
    def __init__(self, rest: RestService, spec: MappingSpec | str, level: str = "strict",
                 progress: Callable[[int], None] | None = None, parallel: bool | None = None,
                 strictness: str | None = None, workers: int = 1, part: tuple[int, int] | None = None) -> None:
        """``parallel``: prepare in a worker process (True), in this one (False), or decide by input size and
        CPU count (None, the default: a worker for inputs of 2 MB and more on a machine with two cores or more;
        see docs/performance.md). ``strictness``: ``lenient`` or ``strict`` instead of the mapping file's own
        (``SpecError`` for anything else). ``workers``: N > 1 runs N processes, each reading the whole input
        and mapping, validating and writing the claims (and other records) it owns by a hash of the claim key,
        each with its own database connection (docs/guides/mappings.md, "Several processes"; a private
        in-memory database, which no other process can open, is ingested in one); ``part`` is what one of them
        ingests."""
        if workers < 1:
            raise ValueError("workers must be 1 or more")
        self.rest = rest
        self.retries = 0
        self.workers = workers
        self.part = part
        self.final_analyze = True
        self.spec = with_strictness(find_spec(spec) if isinstance(spec, str) else spec, strictness)
        self.level = level
        self.progress = progress or (lambda n: None)
        # resources shared by many records (a payer, a provider, a member) are validated and written once per
        # run when their content repeats: content hash by (type, id)
        self._seen: dict[tuple[str, str], bytes] = {}
        self._written = 0  # resources written by this ingestor
        self._analyze_at = ANALYZE_FIRST
        self.parallel = parallel
        self.shapes = ShapeCache()  # the prepare stage's, when it runs in this process

    def ingest(self, paths: Iterable[Path]) -> IngestSummary:
        paths = list(paths)
        store = self.rest.store
        url = getattr(store, "url", None)
        private = url in (None, "sqlite://", "sqlite:///:memory:")  # no other process can open this database
        if self.workers > 1 and not private:
            return self._ingest_partitioned(paths, str(url))
        summary = IngestSummary(self.spec.format, self.spec.version, strictness=self.spec.strictness)
        parallel = self.parallel
        if parallel is None:
            parallel = (os.cpu_count() or 1) > 1 and _input_bytes(paths) >= PARALLEL_MIN_BYTES
        if private or self.part is not None:
            parallel = False
        events = (_prepare_in_worker(self.spec, self.level, paths, url) if parallel
                  else prepare(self.spec, self.level, paths, self.shapes, store, self.part))
        with fewer_collections(INGEST_YOUNG_THRESHOLD):
            batch: list[Ready] = []
            size = 0
            for kind, payload in events:
                if kind == "unit":
                    unit = self._unseen(payload)
                    batch.append(unit)
                    size += len(unit.items)
                    if size >= CHUNK:
                        self._write(batch, summary)
                        batch = []
                        size = 0
                elif kind == "reject":
                    summary.rejects.append(payload)
                elif kind == "warning":
                    summary.warnings.append(payload)
                else:
                    summary.files, summary.records = payload
            self._write(batch, summary)
        summary.retries = self.retries
        if self._written >= ANALYZE_FIRST and self.final_analyze:
            self._analyze(None)  # searches after a large load get plans for the tables as they now are
        return summary

    def _ingest_partitioned(self, paths: list[Path], url: str) -> IngestSummary:
        """Partition 0 of N in this process, partitions 1 .. N-1 in spawned processes (``_partition_main``);
        their summaries merged: counts added, rejects and warnings sorted by file and line. This process
        already has the mapping, the validation models and the search parameters loaded, so it costs no
        start-up; a thread receives the others' progress and results meanwhile."""
        from multiprocessing.connection import wait

        from ..auth.context import current
        from ..auth.gated import GatedStore
        from ..auth.grant_record import record

        store = self.rest.store
        # the parent's gate, rebuilt in each partition with the same configured opt-outs (None: not gated)
        gated = store.opt_out if isinstance(store, GatedStore) else None
        grant = current.get()
        rec = record(grant) if grant is not None else None
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds database connections
        procs: list[tuple[Any, Any]] = []
        n = self.workers
        for i in range(1, n):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_partition_main, daemon=True,
                               args=(self.spec, self.level, paths, url, self.rest.configured_base, gated, rec,
                                     (i, n), send))
            proc.start()
            send.close()
            procs.append((proc, receive))
        done: dict[int, tuple[IngestSummary, int]] = {}
        errors: list[BaseException] = []
        pending = {receive: i + 1 for i, (_p, receive) in enumerate(procs)}

        def receive_all() -> None:
            while pending and not errors:
                for ready in wait(list(pending), timeout=0.5):
                    conn = cast("Any", ready)
                    kind: str
                    payload: Any
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        kind, payload = "error", RuntimeError("an ingest worker process ended without a result")
                    if kind == "progress":
                        self.progress(payload)
                        continue
                    i = pending.pop(conn)
                    if kind == "error":
                        errors.append(payload)
                        return
                    done[i] = payload

        receiver = threading.Thread(target=receive_all, name="ingest-partitions", daemon=True)
        receiver.start()
        try:
            mine = Ingestor(self.rest, self.spec, self.level, progress=self.progress, parallel=False, part=(0, n))
            mine.final_analyze = False
            done[0] = (mine.ingest(paths), mine._written)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if errors:
                for proc, _r in procs:
                    if proc.is_alive():
                        proc.terminate()
            receiver.join()
            for proc, receive in procs:
                proc.join()
                receive.close()
        if errors:
            raise errors[0]
        summary = IngestSummary(self.spec.format, self.spec.version, strictness=self.spec.strictness)
        summary.files, summary.records = done[0][0].files, done[0][0].records
        for i in range(n):
            part, written = done[i]
            summary.created += part.created
            summary.updated += part.updated
            summary.unchanged += part.unchanged
            summary.units += part.units
            summary.units_with_warnings += part.units_with_warnings
            summary.retries += part.retries
            summary.rejects.extend(part.rejects)
            summary.warnings.extend(part.warnings)
            for k, v in part.by_type.items():
                summary.by_type[k] = summary.by_type.get(k, 0) + v
            self._written += written
        summary.rejects.sort(key=lambda r: _where_key(r.where))
        summary.warnings.sort(key=lambda w: _where_key(w.where))
        if self._written >= ANALYZE_FIRST:
            self._analyze(None)
        return summary

    def _analyze(self, tables: list[str] | None) -> None:
        analyze = getattr(self.rest.store, "analyze", None)
        if analyze is not None:
            analyze(tables)

    def _unseen(self, unit: Ready) -> Ready:
        """The unit without the resources already written in this run with the same content."""
        seen = self._seen
        keep = [i for i, (e, d) in enumerate(zip(unit.items, unit.digests, strict=True))
                if seen.get((e.rtype, e.rid)) != d]
        if len(keep) == len(unit.items):
            return unit
        return unit._replace(items=[unit.items[i] for i in keep], digests=[unit.digests[i] for i in keep])

    def _write(self, units: list[Ready], summary: IngestSummary) -> None:
        if not units:
            return
        try:
            self._store(units)
        except FhirError:
            for u in units:  # one unit spoiled the chunk's transaction: store one by one to keep the good ones
                try:
                    self._store([u])
                except FhirError as exc:
                    summary.rejects.append(Reject(u.where, f"{u.entity}: not stored: {exc.diagnostics}"))
                    continue
                self._count([u], summary)
            return
        self._count(units, summary)

    def _store(self, units: list[Ready]) -> None:
        latest: dict[tuple[str, str], tuple[Encoded, bytes]] = {}
        for u in units:
            for e, d in zip(u.items, u.digests, strict=True):
                latest[(e.rtype, e.rid)] = (e, d)  # the same Practitioner may come with many claims
        # in (type, id) order: two processes writing the same new resources wait for each other in one order
        items = [latest[k][0] for k in sorted(latest)]
        for attempt in range(RETRIES + 1):
            try:
                with self.rest.store.session() as tx:
                    status = tx.write_encoded(items, "PUT")
                break
            except FhirError as exc:
                # another process wrote one of these resources first (a member, a provider two claims share),
                # or the database broke a deadlock: the chunk, read again, then finds its stored version
                if attempt == RETRIES or not (isinstance(exc, Conflict) or exc.code == "transient"):
                    raise
                self.retries += 1
                time.sleep(0.05 * (2 ** attempt) * (1 + random.random()))  # noqa: S311 - jitter, not secrets
        self._pending = (status.count("created"), status.count("updated"), status.count("unchanged"), latest)

    def _count(self, units: list[Ready], summary: IngestSummary) -> None:
        created, updated, unchanged, latest = self._pending
        for key, (_e, digest) in latest.items():  # stored: the same content later in this run needs no write
            self._seen[key] = digest
        summary.created += created
        summary.updated += updated
        summary.unchanged += unchanged
        self._written += created + updated
        if self._written >= self._analyze_at:  # the resource table grew severalfold: new statistics
            self._analyze(["resource"])
            self._analyze_at *= 4
        summary.units += len(units)
        for u in units:
            if u.warnings:
                summary.units_with_warnings += 1
                summary.warnings.extend(u.warnings)
        for rtype, _id in latest:
            summary.by_type[rtype] = summary.by_type.get(rtype, 0) + 1
        self.progress(sum(u.lines for u in units))

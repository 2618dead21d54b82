"""Run one export job: stream each selected resource type from the store into NDJSON files.

Files are written under a temporary ``.part`` name, flushed to disk and renamed only when complete; after
each rename the job's checkpoint (the last primary key written for the current type) is saved, so a job
interrupted by a crash resumes after its last complete file and never presents a truncated one. A file
is closed and a new one begun once it reaches ``max_file_bytes``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from ..auth import policy
from ..auth.context import Grant, acting_as, constrain_search, current_grant
from ..auth.gated import GatedStore
from ..auth.grant_record import restore
from ..fhir.dates import now_instant
from ..fhir.errors import FhirError, Issue, operation_outcome
from ..resources.jobs import Heartbeat
from ..search.query import QueryParser
from ..store.base import StoredResource
from ..store.sql.export_sql import ExportSource, Scope
from ..store.sql.jobs import Job, JobStore
from .provider_access import exclude_opted_out, without_members
from .request import ExportRequest, subset, types_for_level

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore

log = logging.getLogger("gateway.bulk")
Progress = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    pass


class JobFailed(Exception):
    pass


class Interrupted(Exception):
    """The gateway is shutting down: the job stays claimable and resumes from its checkpoint."""


class Lost(Exception):
    """Another instance took the job over (this one stalled past its lease): leave its files alone."""


def job_dir(export_dir: Path, job_id: str) -> Path:
    return export_dir / job_id


def ordered_types(req: ExportRequest, compartment: dict[str, tuple[str, ...]]) -> list[str]:
    """The requested types in request order, or every type the level covers (Group and Patient first)."""
    if req.types is not None:
        types = list(req.types)
    else:
        first = ["Group", "Patient"] if req.level == "group" else ["Patient"]
        types = first + sorted(types_for_level(req.level, compartment) - set(first))
    if req.associated and "Provenance" not in types:
        types.append("Provenance")  # the associated Provenance comes in its own step after the data
    return types


def _deleted_line(row: Any, when: str) -> bytes:
    """One NDJSON line of the `deleted` file: a transaction Bundle deleting the (pk, type, id) row's resource."""
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "timestamp": when,
                         "entry": [{"request": {"method": "DELETE", "url": f"{row[1]}/{row[2]}"}}]})


class ExportRunner:
    def __init__(self, store: SqlStore, jobs: JobStore, export_dir: Path, compartment: dict[str, tuple[str, ...]],
                 max_file_bytes: int = 64 * 1024 * 1024, retention_seconds: float = 86400,
                 max_attempts: int = 3, *, opt_out: str) -> None:
        self.store = store
        self.jobs = jobs
        self.export_dir = export_dir
        self.compartment = compartment
        self.source = ExportSource(store, compartment)
        # the store gate: every exported row is decided by it
        self.gated = GatedStore(store, "", opt_out=opt_out)
        self.max_file_bytes = max_file_bytes
        self.retention_seconds = retention_seconds
        self.max_attempts = max_attempts
        self.beat_seconds = 1.0
        self.stopping = threading.Event()
        self.opt_out_list = opt_out  # configured Provider Access opt-outs (GATEWAY_PROVIDER_ACCESS_OPT_OUT)

    # -- the job life cycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """The process is stopping: a running export hands its job back at its next thousand rows."""
        self.stopping.set()

    def discard(self, job_id: str) -> None:
        """Delete the files of an expired job."""
        shutil.rmtree(job_dir(self.export_dir, job_id), ignore_errors=True)

    def run(self, job: Job, heart: Heartbeat | None = None, on_progress: Progress | None = None) -> str:
        """Run (or resume) a claimed job to its end; returns the final status (``interrupted``: handed back
        because the process is stopping; ``lost``: another instance took it over)."""
        out = job_dir(self.export_dir, job.id)
        try:
            if job.attempts > self.max_attempts:
                raise JobFailed(f"The export was interrupted {job.attempts - 1} times and was abandoned; "
                                "start a new export")
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob("*.part"):  # a file being written when the process stopped
                stale.unlink()
            if heart is None:
                with Heartbeat(self.jobs, job.id, self.beat_seconds) as own:
                    progress = self._execute(job, out, on_progress, own)
            else:
                progress = self._execute(job, out, on_progress, heart)
        except Lost:
            return "lost"
        except Cancelled:
            shutil.rmtree(out, ignore_errors=True)
            return "cancelled"
        except Interrupted:
            self.jobs.release(job.id)
            return "interrupted"
        except (JobFailed, FhirError) as exc:
            return self._fail(job, out, str(exc) if isinstance(exc, JobFailed) else exc.diagnostics)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with an explanation, never silently
            log.exception("export job %s failed", job.id)
            return self._fail(job, out, f"The export failed: {type(exc).__name__}: {exc}")
        if not self.jobs.finish(job.id, "complete", progress, time.time() + self.retention_seconds):
            after = self.jobs.get(job.id)
            if after is not None and after.status in ("running", "complete"):
                return "lost"  # taken over just before the end: the other instance finishes it
            shutil.rmtree(out, ignore_errors=True)  # cancelled just before the end
            return "cancelled"
        return "complete"

    def _fail(self, job: Job, out: Path, message: str) -> str:
        current = self.jobs.get(job.id)
        if current is not None and current.lease_owner not in (None, self.jobs.owner):
            return "lost"
        shutil.rmtree(out, ignore_errors=True)
        self.jobs.finish(job.id, "failed", {**job.progress, "outputs": [], "errors": []},
                         time.time() + self.retention_seconds, message)
        return "failed"

    def _scope(self, req: ExportRequest, errors: list[dict[str, Any]]) -> Scope:
        scope = Scope(req.level, since=req.since, until=req.until)
        if req.associated:
            types = ordered_types(req, self.compartment)
            scope.associated = req.associated
            scope.associated_of = [t for t in types if t != "Provenance"]
            scope.provenance_requested = req.types is None or "Provenance" in req.types
        if req.level == "group":
            pk = self.source.pk_of("Group", req.group_id or "")
            if pk is None:
                raise JobFailed(f"Group/{req.group_id} no longer exists")
            scope.group_pk = pk
        if req.patients is not None:
            known = (self.source.group_member_ids(scope.group_pk, req.patients) if scope.group_pk is not None
                     else self.source.existing_patients(req.patients))
            if self.gated.gate.needs_content(current_grant(), "Patient"):
                # a patient the job's grant may not see (another patient's, one not attributed to the caller)
                # is reported as unknown, exactly as one that is not stored
                known = {p for p in known if self.gated.read("Patient", p) is not None}
            for pid in req.patients:
                if pid not in known:
                    what = f"a member of Group/{req.group_id}" if scope.group_pk is not None else "a stored Patient"
                    errors.append(operation_outcome([Issue("error", "not-found",
                                                           f"patient Patient/{pid} is not {what}; ignored")]))
            scope.patients = [p for p in req.patients if p in known]
        parser = QueryParser(strict=True)
        for tf in req.type_filters:
            rtype, _, query = tf.partition("?")
            q = parser.parse(rtype, parse_qsl(query, keep_blank_values=True))
            constrain_search(q, parser)  # as a REST search under the job's grant: chains and _has confined
            scope.filters.setdefault(rtype, []).append(q)
        return scope

    def _admit(self, grant: Grant, row: Any, kind: str) -> tuple[bool, bytes | None]:
        """Whether the job's grant may see an exported row, through the store gate's read decision (the one
        REST reads use), and the JSON to write when the gate decided on the content (a Group may come back
        reduced); None: the row as stored. A large row is read in full only when its content decides."""
        gate = self.gated.gate
        rtype, rid = row[1], row[2]
        if kind != "output":  # a deletion: shown when the version before it was visible (gate.visible)
            current = self.store.read(rtype, rid)
            if current is None:
                return False, None
            prior = (lambda: self.store.vread(rtype, rid, current.version - 1)) if current.version > 1 else None
            return gate.visible(grant, current, prior) is not None, None
        if not policy.readable(grant.scopes, rtype):
            return False, None
        if not gate.needs_content(grant, rtype):
            return True, None
        content = row[3] if row[3] is not None else b"".join(self.source.chunks(row[0], row[4]))
        seen = gate.visible(grant, StoredResource(rtype, rid, 0, "", content))
        return (False, None) if seen is None or seen.content is None else (True, seen.content)

    def _execute(self, job: Job, out: Path, on_progress: Progress | None, heart: Heartbeat) -> dict[str, Any]:
        grant = restore(job.params.get("grant"))
        if grant is None:
            raise JobFailed("The export job does not record on whose behalf it runs; start a new export")
        with acting_as(grant):  # the grant of the client and user that started the job, as recorded then
            return self._export(job, grant, out, on_progress, heart)

    def _export(self, job: Job, grant: Grant, out: Path, on_progress: Progress | None,
                heart: Heartbeat) -> dict[str, Any]:
        req = ExportRequest.from_json(job.params)
        gated = not self.gated.gate.open_reads(grant)
        progress = dict(job.progress)
        errors: list[dict[str, Any]] = list(req.warnings)
        scope = self._scope(req, errors)
        # Provider Access: opt-outs are read now, when the job runs (bulk/provider_access.py)
        opted = exclude_opted_out(self.store, req, scope, self.opt_out_list, errors)
        if not progress.get("steps"):
            types = ordered_types(req, self.compartment)
            steps = [["output", t] for t in types]
            if req.since:
                steps += [["deleted", t] for t in types]
            progress = {"steps": steps, "step": 0, "after": 0, "part": 1, "outputs": [], "deleted": [],
                        "errors": [], "written": 0}
            self._save(job, progress)
        elements = req.elements
        last_report = time.monotonic()
        while progress["step"] < len(progress["steps"]):
            kind, rtype = progress["steps"][progress["step"]]
            if on_progress:
                on_progress(progress)
            if kind == "output":
                rows: Iterator[Any] = self.source.stream(rtype, scope, progress["after"])
            else:
                rows = self.source.deleted(rtype, scope, progress["after"])
            fh = None
            tmp = final = None
            size = count = 0
            last_pk = progress["after"]
            for row in rows:
                keep, admitted = self._admit(grant, row, kind) if gated else (True, None)
                if not keep:
                    continue  # the job's grant may not see it: as if it were not stored
                if fh is None:
                    name = (f"{rtype}-{progress['part']}.ndjson" if kind == "output"
                            else f"deleted-{rtype}-{progress['part']}.ndjson")
                    final = out / name
                    tmp = out / (name + ".part")
                    fh = open(tmp, "wb")  # noqa: SIM115 - closed when the file is full or the type ends
                    size = count = 0
                if kind != "output":
                    line = _deleted_line(row, job.transaction_time)
                elif rtype == "Group" and opted:  # the exported Group without the opted-out members
                    group = without_members(admitted or row[3] or b"".join(self.source.chunks(row[0], row[4])),
                                            opted)
                    line = orjson.dumps(group if elements is None else subset(group, elements))
                elif admitted is not None:  # decided on its content by the gate (a Group may come back reduced)
                    line = admitted if elements is None else orjson.dumps(subset(orjson.loads(admitted), elements))
                elif row[3] is None:  # a very large resource: copied piece by piece (or parsed for _elements)
                    if elements is None:
                        for piece in self.source.chunks(row[0], row[4]):
                            fh.write(piece)
                        line = b""
                        size += row[4]
                    else:
                        line = orjson.dumps(subset(orjson.loads(b"".join(self.source.chunks(row[0], row[4]))),
                                                   elements))
                else:
                    line = row[3] if elements is None else orjson.dumps(subset(orjson.loads(row[3]), elements))
                fh.write(line)
                fh.write(b"\n")
                size += len(line) + 1
                count += 1
                last_pk = row[0]
                if size >= self.max_file_bytes:
                    self._commit(fh, tmp, final, kind, rtype, count, last_pk, progress)
                    self._save(job, progress)
                    if on_progress:
                        on_progress(progress)
                    fh = None
                elif count % 1000 == 0:
                    if heart.lost:
                        fh.close()
                        raise Cancelled() if heart.cancelled else Lost()
                    if self.stopping.is_set():
                        fh.close()
                        raise Interrupted()
                    if on_progress and time.monotonic() - last_report > 0.5:
                        last_report = time.monotonic()
                        on_progress({**progress, "written": progress["written"] + count})
            if fh is not None:
                self._commit(fh, tmp, final, kind, rtype, count, last_pk, progress)
            progress["step"] += 1
            progress["after"] = 0
            progress["part"] = 1
            self._save(job, progress)
        progress["errors"] = self._write_errors(out, errors)
        if on_progress:
            on_progress(progress)
        return progress

    def _commit(self, fh: Any, tmp: Path | None, final: Path | None, kind: str, rtype: str, count: int,
                last_pk: int, progress: dict[str, Any]) -> None:
        assert tmp is not None and final is not None
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, final)
        item = {"type": rtype if kind == "output" else "Bundle", "file": final.name, "count": count}
        progress["outputs" if kind == "output" else "deleted"].append(item)
        progress["after"] = last_pk
        progress["part"] += 1
        progress["written"] += count

    def _write_errors(self, out: Path, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not errors:
            return []
        name = "OperationOutcome-1.ndjson"
        tmp = out / (name + ".part")
        with open(tmp, "wb") as fh:
            for oo in errors:
                fh.write(orjson.dumps(oo if oo.get("resourceType") else operation_outcome([Issue(**oo)])) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        return [{"type": "OperationOutcome", "file": name, "count": len(errors)}]

    def _save(self, job: Job, progress: dict[str, Any]) -> None:
        state = self.jobs.checkpoint(job.id, progress)
        if state == "lost":
            raise Lost()
        if state != "running":
            raise Cancelled()
        job.progress = progress


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> str:
    return now_instant()

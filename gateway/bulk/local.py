"""Run an export in the calling process (``fhir-gateway export``): the same request checks, selection and
NDJSON writer as the server's jobs, with the files and a manifest.json put in a local directory."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..auth.context import current_grant
from ..auth.grant_record import record
from ..fhir.dates import now_instant
from ..fhir.errors import FhirError, NotFound
from ..search.params import patient_compartment
from ..store.sql.jobs import Job, JobStore
from .request import parse_export
from .runner import ExportRunner, job_dir, new_job_id

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore


def export_to_dir(store: SqlStore, out: Path, group_id: str | None, params: list[tuple[str, str]],
                  max_file_bytes: int, on_progress: Callable[[dict[str, Any]], None] | None = None, *,
                  opt_out: str) -> dict[str, Any]:
    """Export a group (or, without one, the whole store) into ``out``; returns the manifest written there.
    ``opt_out`` is the configured Provider Access opt-out list (the server's setting), which the export and
    its store gate apply as the server would."""
    compartment = patient_compartment()
    level = "group" if group_id else "system"
    if group_id:
        s = store.read("Group", group_id)
        if s is None or s.deleted:
            raise NotFound(f"Group/{group_id} is not known")
    req = parse_export(level, params, compartment, group_id, method="POST")
    jobs = JobStore(store)
    staging = out / ".export-staging"
    runner = ExportRunner(store, jobs, staging, compartment, max_file_bytes, retention_seconds=0, opt_out=opt_out)
    # created already leased to this process: a server's job worker on the same database leaves it alone
    job = Job(new_job_id(), "running", "fhir-gateway export", f"fhir-gateway export --group {group_id}"
              if group_id else "fhir-gateway export", {**req.to_json(), "grant": record(current_grant())},
              now_instant(), now_instant(), attempts=1, lease_owner=jobs.owner,
              lease_expires=time.time() + jobs.lease_seconds)
    jobs.create(job)
    try:
        status = runner.run(job, on_progress=on_progress)
        done = jobs.get(job.id)
        assert done is not None
        if status != "complete":
            raise FhirError(done.message or f"The export ended {status}", status=500, code="exception")
        out.mkdir(parents=True, exist_ok=True)
        for f in job_dir(staging, job.id).iterdir():
            shutil.move(str(f), out / f.name)
        p = done.progress

        def items(key: str) -> list[dict[str, Any]]:
            return [{"type": o["type"], "url": o["file"], "count": o["count"]} for o in p.get(key, [])]

        manifest = {"transactionTime": done.transaction_time, "request": done.request_url,
                    "requiresAccessToken": False, "output": items("outputs"), "error": items("errors")}
        if p.get("deleted"):
            manifest["deleted"] = items("deleted")
        (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        jobs.delete(job.id)

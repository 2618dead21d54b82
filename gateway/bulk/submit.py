"""Bulk submission on the job core: Bulk Data 4.0 (ballot) ``$bulk-submit`` and DEQM ``$bulk-submit-data``.

A Data Provider announces a manifest (a Bulk Data export manifest listing NDJSON files it hosts). The request
is checked at once (the manifest URL must pass the egress policy and the bulk-submit allow-list, or nothing is
stored), then each manifest becomes a ``bulk-submit`` job; a job worker of any instance fetches the manifest
and every file through ``net/egress.py`` (checked addresses, no redirects, a size bound), and loads each file
as one transaction under the recorded grant of the client that submitted it, through the store gate: a file
with a bad line, or with a resource outside the client's rights, loads nothing of itself and is reported in
the submission's status with its reason; the other files load.

A submission (``submitter`` + ``submissionId``, per client) is a row of kind ``bulk-submission`` that no
worker runs: it holds the submission's state (``in-progress``, ``completed``, ``stopped``) and the manifests
announced for it. See docs/specs/bulk-submit.md for what is implemented of each section of the texts."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from ..auth.context import acting_as, current_grant
from ..auth.grant_record import record, restore
from ..config import public_base
from ..fhir.dates import now_instant
from ..fhir.errors import BadRequest, FhirError, Issue, NotFound, operation_outcome
from ..net.egress import EgressPolicy, EgressRefused, egress_client
from ..resources.jobs import Heartbeat, JobWorker, runs_jobs
from ..resources.transaction import BundleProcessor
from ..store.sql.jobs import Change, Job
from .remote import (
    Credential,
    Failed,
    ProviderAuth,
    credential_for,
    fetch,
    load_credentials,
    read_scope,
    release_export,
    run_export,
    under,
)

log = logging.getLogger("gateway.bulk")
SUBMISSION = "bulk-submission"  # the kind of a submission's own row (never run)
MANIFEST = "bulk-submit"  # the kind of one announced manifest's job
EVENT_STATUS = "http://hl7.org/fhir/event-status"
STATES = ("in-progress", "completed", "stopped")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class Forbidden(FhirError):
    status, code = 403, "forbidden"


def submission_key(client_id: str | None, submitter: str, submission_id: str) -> str:
    """The row id of a submission: the same client, submitter and submissionId name the same submission."""
    return hashlib.sha256(orjson.dumps([client_id, submitter, submission_id])).hexdigest()[:40]


def export_base(export_url: str) -> str | None:
    """The FHIR base of a Bulk Data kick-off URL (``[base]/$export``, ``[base]/Patient/$export``,
    ``[base]/Group/[id]/$export``), None when the URL is not one."""
    path = export_url.split("?", 1)[0].rstrip("/")
    if not path.endswith("/$export"):
        return None
    parts = path[: -len("/$export")].split("/")
    if len(parts) >= 2 and parts[-2] == "Group":
        parts = parts[:-2]
    elif parts and parts[-1] == "Patient":
        parts = parts[:-1]
    return "/".join(parts)


def metadata_url(source: dict[str, Any]) -> str | None:
    """Where to discover the provider's authorization server: ``oauthMetadataUrl``, else the SMART
    configuration under ``fhirBaseUrl``."""
    if source.get("oauthMetadataUrl"):
        return str(source["oauthMetadataUrl"])
    base = source.get("fhirBaseUrl")
    return f"{str(base).rstrip('/')}/.well-known/smart-configuration" if base else None


class SubmitRunner:
    """The ``bulk-submit`` job handler: get one manifest (fetch it, or run the provider's ``$export`` for a
    dynamic DEQM submission) and load its files, one transaction per file."""

    def __init__(self, rest: Any, jobs: Any, egress: EgressPolicy, max_file_bytes: int,
                 retention_seconds: float, credentials: tuple[Credential, ...] = (),
                 export_timeout: float = 3600.0) -> None:
        self.rest = rest
        self.jobs = jobs
        self.egress = egress
        self.max_file_bytes = max_file_bytes
        self.retention_seconds = retention_seconds
        self.credentials = credentials
        self.export_timeout = export_timeout

    def stop(self) -> None:
        """Nothing to interrupt: files already loaded are recorded, the rest resume on another instance."""

    def discard(self, job_id: str) -> None:
        """Nothing outside the row."""

    def run(self, job: Job, heart: Heartbeat) -> str:
        """Get the job's manifest and load each file it lists not yet processed; the per-file outcomes are the
        job's progress, a manifest that cannot be had fails the job with the reason."""
        expires = time.time() + self.retention_seconds
        grant = restore(job.params.get("grant"))
        source: dict[str, Any] = job.params
        progress = dict(job.progress)
        files: list[dict[str, Any]] = list(progress.get("files") or [])
        if grant is None:
            self.jobs.finish(job.id, "failed", progress, expires, "The submission does not record its submitter")
            return "failed"
        base = source.get("fhirBaseUrl") or (export_base(str(source["exportUrl"])) if source.get("exportUrl")
                                             else None)
        credential = credential_for(self.credentials, str(base or source.get("oauthMetadataUrl") or ""))
        with egress_client(self.egress, timeout=30) as client:
            auth = ProviderAuth(client, credential, metadata_url({**source, "fhirBaseUrl": base}))
            try:
                url, manifest = self._manifest(client, auth, job, heart, source, progress)
            except Failed as exc:
                if str(exc) == "lost":
                    return "cancelled" if heart.cancelled else "lost"
                return "failed" if self.jobs.finish(job.id, "failed", progress, expires, str(exc)) else "lost"
            items = manifest["output"]
            types = [str(i["type"]) for i in items if isinstance(i, dict) and isinstance(i.get("type"), str)]
            token_scope = read_scope(types, credential.scope if credential else "system/*.rs")
            with_token = manifest.get("requiresAccessToken") is True
            done = {f["url"] for f in files}
            for item in items:
                if heart.lost:
                    return "cancelled" if heart.cancelled else "lost"
                if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                    continue
                file_url = urljoin(url, item["url"])
                if file_url in done:
                    continue  # loaded (or refused) before this job was taken over
                files.append(self._load(client, file_url, item.get("type"), grant,
                                        (auth, token_scope, str(base or "")) if with_token else None))
                done.add(file_url)
                state = self.jobs.checkpoint(job.id, {**progress, "files": files})
                if state != "running":
                    return "lost" if state == "lost" else "cancelled"
            if source.get("exportUrl"):
                release_export(client, auth if credential is not None else None, url, token_scope)
        errors = [operation_outcome([Issue("error", f.get("code", "processing"), f["error"])])
                  for f in files if f.get("error")]
        result = b"".join(orjson.dumps(oo) + b"\n" for oo in errors)
        ok = self.jobs.finish(job.id, "complete", {**progress, "files": files}, expires, result=result)
        return "complete" if ok else "lost"

    def _manifest(self, client: httpx.Client, auth: ProviderAuth, job: Job, heart: Heartbeat,
                  source: dict[str, Any], progress: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(URL file URLs are relative to, manifest): fetched from ``manifestUrl`` (with a token when the
        request named ``oauthMetadataUrl``), or the manifest of an export run at the provider."""
        if source.get("exportUrl"):
            export_url = str(source["exportUrl"])
            kickoff = source.get("kickoff") or {}
            fallback = auth.credential.scope if auth.credential else "system/*.rs"
            scope = read_scope(str(kickoff.get("_type") or "").split(",") if kickoff.get("_type") else None,
                               fallback)

            def remember(status_url: str) -> bool:
                progress["statusUrl"] = status_url
                return self.jobs.checkpoint(job.id, progress) == "running"

            status_url, manifest = run_export(
                client, auth if auth.credential is not None else None, export_url, kickoff, scope,
                time.time() + self.export_timeout, lambda: not heart.lost, remember, progress.get("statusUrl"),
                source.get("fhirBaseUrl") or export_base(export_url))
            return status_url, manifest
        url = str(source.get("manifestUrl"))
        headers = {}
        if source.get("oauthMetadataUrl"):  # the text: a token for the manifest when this is given
            headers["Authorization"] = f"Bearer {auth.token(auth.credential.scope if auth.credential else '')}"
        try:
            manifest = orjson.loads(fetch(client, url, MAX_MANIFEST_BYTES, headers))
        except orjson.JSONDecodeError:
            raise Failed(f"{url} is not JSON") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
            raise Failed(f"{url} is not a Bulk Data manifest (no output list)")
        return url, manifest

    def _load(self, client: httpx.Client, url: str, rtype: Any, grant: Any,
              token: tuple[ProviderAuth, str, str] | None) -> dict[str, Any]:
        """Fetch and load one NDJSON file in one transaction; its outcome (loaded count, or the error).
        ``token``: (auth, scope, FHIR base) when the manifest says its files need an access token — sent only
        to a file under the provider's FHIR base."""
        out: dict[str, Any] = {"url": url, "type": rtype if isinstance(rtype, str) else None}
        try:
            self.egress.check_url(url)
        except EgressRefused as exc:
            return {**out, "error": f"{url} {exc}", "code": "security"}
        headers: dict[str, str] = {}
        try:
            if token is not None:
                auth, scope, base = token
                if not base or not under(url, base):
                    return {**out, "error": f"{url} is not under the provider's FHIR base "
                            f"{base or '(no fhirBaseUrl given)'}: the access token for its files is sent only "
                            "there; nothing of this file was loaded", "code": "security"}
                headers["Authorization"] = f"Bearer {auth.token(scope)}"
            body = fetch(client, url, self.max_file_bytes, headers)
        except Failed as exc:
            return {**out, "error": str(exc), "code": "security" if "refused" in str(exc) else "processing"}
        entries = []
        for n, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                return {**out, "error": f"{url} line {n} is not JSON; nothing of this file was loaded",
                        "code": "structure"}
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                return {**out, "error": f"{url} line {n} is not a FHIR resource; nothing of this file was loaded",
                        "code": "structure"}
            if out["type"] and res["resourceType"] != out["type"]:
                return {**out, "error": f"{url} line {n} is a {res['resourceType']}, not a {out['type']} as the "
                        "manifest says; nothing of this file was loaded", "code": "invalid"}
            rid = res.get("id")
            request = ({"method": "PUT", "url": f"{res['resourceType']}/{rid}"} if isinstance(rid, str) and rid
                       else {"method": "POST", "url": res["resourceType"]})
            entries.append({"resource": res, "request": request})
        try:
            with acting_as(grant):  # the submitter's rights, through the store gate; one transaction per file
                BundleProcessor(self.rest, enforce_references=False).transaction(entries)
        except FhirError as exc:
            text = exc.diagnostics
            return {**out, "error": f"{url}: {text} (an entry index n is line n+1); nothing of this file was "
                    "loaded", "code": exc.code if exc.status != 403 else "forbidden"}
        return {**out, "count": len(entries)}


class SubmitService:
    """The HTTP-free use case of ``$bulk-submit``, ``$bulk-submit-data`` and ``$bulk-submit-status``."""

    def __init__(self, worker: JobWorker, rest: Any, settings: Any, base_url: str) -> None:
        self.worker = worker
        self.jobs = worker.jobs
        self.settings = settings
        self.configured_base = base_url
        self.egress = settings.egress_policy(settings.bulk_submit_sources)
        self.credentials = load_credentials(settings.bulk_submit_credentials)
        self.runner = SubmitRunner(rest, self.jobs, self.egress, settings.bulk_submit_max_file_bytes,
                                   float(settings.export_retention_seconds), self.credentials,
                                   float(settings.bulk_submit_export_timeout_seconds))
        worker.register(MANIFEST, self.runner)

    @property
    def base_url(self) -> str:
        """The FHIR base of status URLs: the current request's, else the configured one."""
        return public_base(self.configured_base)

    def _check_url(self, url: str, what: str) -> None:
        try:
            self.egress.check_url(url)
        except EgressRefused as exc:
            raise FhirError(f"{what} {url} {exc}; nothing was fetched or stored", status=400,
                            code="security") from None

    def check_source(self, source: dict[str, Any]) -> None:
        """Refuse (400, before anything is fetched or stored) a Data Provider this gateway may not call: each of
        ``exportUrl``, ``fhirBaseUrl`` and ``oauthMetadataUrl`` must pass the egress policy and the bulk-submit
        allow-list; an export URL must be a Bulk Data kick-off under ``fhirBaseUrl``; and where the gateway
        must authorize itself (an export, ``oauthMetadataUrl``) a client of its own must be configured for the
        provider."""
        for name in ("exportUrl", "fhirBaseUrl", "oauthMetadataUrl"):
            if source.get(name) is not None:
                self._check_url(str(source[name]), name)
        base = source.get("fhirBaseUrl")
        if source.get("exportUrl"):
            derived = export_base(str(source["exportUrl"]))
            if derived is None:
                raise BadRequest(f"exportUrl {source['exportUrl']} is not a Bulk Data kick-off URL ([base]/$export, "
                                 "[base]/Patient/$export or [base]/Group/[id]/$export) for exportType dynamic")
            if base and not under(str(source["exportUrl"]), str(base)):
                raise BadRequest(f"exportUrl {source['exportUrl']} is not under fhirBaseUrl {base}")
            base = base or derived
        if (source.get("exportUrl") or source.get("oauthMetadataUrl")) and \
                credential_for(self.credentials, str(base or source.get("oauthMetadataUrl") or "")) is None:
            raise FhirError(f"This gateway has no Backend Services client of its own configured for the Data "
                            f"Provider at {base or source.get('oauthMetadataUrl')} "
                            "(GATEWAY_BULK_SUBMIT_CREDENTIALS), so it cannot authorize itself there; nothing was "
                            "fetched or stored", status=400, code="security")

    def submit(self, client_id: str | None, subject: str | None, submitter: str, submission_id: str,
               status: str | None, manifest_url: str | None, replaces: str | None, request_url: str,
               kind: str = "bulk-submit", source: dict[str, Any] | None = None) -> str:
        """Record a submission request: a new manifest (queued for a worker), a replaced one, the end or the
        abort of a submission. ``source`` carries how to reach the Data Provider (``fhirBaseUrl``,
        ``oauthMetadataUrl``; for a dynamic DEQM submission ``exportUrl`` and the kick-off parameters), checked
        before anything is stored. The record is updated atomically (``JobStore.modify``), so concurrent
        requests for one submission all land. Returns the submission's row id (its status URL's last
        segment)."""
        if not runs_jobs(self.settings, self.jobs.store):
            raise FhirError("Bulk submission needs a database file or server and the job worker", status=503,
                            code="not-supported")
        if status is not None and status not in STATES:
            raise BadRequest(f"submissionStatus must be one of {', '.join(STATES)} ({EVENT_STATUS}), not {status!r}")
        if status is None and manifest_url is None and source is None:
            raise BadRequest("Give manifestUrl, submissionStatus, or both")
        if source is not None:
            self.check_source(source)
        if manifest_url is not None or source is not None:
            if manifest_url is not None:
                self._check_url(manifest_url, "manifestUrl")
            limit = self.settings.export_max_active_jobs
            if self.jobs.active_count(client_id, MANIFEST) >= limit:
                raise FhirError(f"This client already has {limit} submitted manifests being processed; wait for "
                                "one to finish", status=429, code="throttled", headers={"Retry-After": "30"})
        key = submission_key(client_id, submitter, submission_id)
        created = self.jobs.create_if_absent(Job(
            key, "open", client_id, request_url[:2048], {"submitter": submitter, "submissionId": submission_id,
                                                        "kind": kind}, now_instant(), now_instant(),
            progress={"state": "in-progress", "manifests": []}, subject=subject, kind=SUBMISSION))
        manifest_job: Job | None = None
        if manifest_url is not None or source is not None:
            params: dict[str, Any] = {"submission": key, "grant": record(current_grant())}
            if manifest_url is not None:
                params["manifestUrl"] = manifest_url
            if source is not None:
                params.update(source)
            manifest_job = Job(uuid.uuid4().hex, "queued", client_id, request_url[:2048], params, now_instant(),
                               now_instant(), subject=subject, kind=MANIFEST)
        announced = manifest_url or (source or {}).get("exportUrl")

        def change(sub: Job) -> Change:
            # decided from the record as stored now, under its row lock: concurrent requests take turns
            if (sub.client_id, sub.subject) != (client_id, subject):
                raise Forbidden("This submission belongs to another client or user")
            if sub.progress.get("state") in ("completed", "stopped"):
                raise FhirError(f"Submission {submission_id} of {submitter} is {sub.progress['state']}: it takes "
                                "no more requests", status=409, code="conflict")
            manifests: list[dict[str, Any]] = [dict(m) for m in sub.progress.get("manifests") or []]
            cancel: list[str] = []
            if replaces is not None:
                old = next((m for m in manifests if m["manifestUrl"] == replaces and not m.get("replaced")), None)
                if old is None:
                    raise BadRequest(f"replacesManifestUrl {replaces} is not a manifest of this submission")
                old["replaced"] = True
                cancel.append(old["job"])  # not yet loaded files of it are not loaded; loaded ones stay
            if manifest_job is not None:
                manifests.append({"manifestUrl": announced, "job": manifest_job.id})
            state = status or sub.progress.get("state") or "in-progress"
            if state == "stopped":
                cancel.extend(m["job"] for m in manifests)
            return Change({"state": state, "manifests": manifests},
                          [manifest_job] if manifest_job is not None else [], cancel)

        try:
            self.jobs.modify(key, change)
        except FhirError:
            left = self.jobs.get(key) if created else None
            if left is not None and not left.progress.get("manifests"):
                self.jobs.delete(key)  # a refused first request leaves no submission behind
            raise
        self.worker.wake()
        return key

    def status_url(self, key: str) -> str:
        return f"{self.base_url}/$bulk-submit-status/{key}"

    def owned(self, key: str, client_id: str | None, subject: str | None) -> Job:
        """The submission row, when the caller submitted it."""
        sub = self.jobs.get(key)
        if sub is None or sub.kind != SUBMISSION:
            raise NotFound(f"No submission {key}")
        if (sub.client_id, sub.subject) != (client_id, subject):
            raise Forbidden("This submission belongs to another client or user")
        return sub

    def status(self, key: str, client_id: str | None, subject: str | None) -> tuple[bool, dict[str, Any]]:
        """(done, status manifest): done when the submission is completed or stopped and no manifest of it is
        still queued or running."""
        sub = self.owned(key, client_id, subject)
        state = sub.progress.get("state", "in-progress")
        active = False
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for m in sub.progress.get("manifests") or []:
            job = self.jobs.get(m["job"])
            if job is None:
                continue
            if job.status in ("queued", "running") and not m.get("replaced"):
                active = True
            ext = {"manifestUrl": m["manifestUrl"]}
            if job.status == "failed":
                errors.append({**ext, "type": "OperationOutcome", "url": f"{self.base_url}/$bulk-submit-outcome/"
                               f"{job.id}", "countSeverity": [{"code": "error", "count": 1}],
                               "diagnostics": job.message})
            for f in job.progress.get("files") or []:
                if f.get("error"):
                    errors.append({**ext, "type": "OperationOutcome", "file": f["url"],
                                   "url": f"{self.base_url}/$bulk-submit-outcome/{job.id}",
                                   "countSeverity": [{"code": "error", "count": 1}], "diagnostics": f["error"]})
                else:
                    output.append({**ext, "type": f.get("type"), "file": f["url"], "count": f.get("count", 0)})
        body = {"submissionId": sub.params.get("submissionId"), "submissionStatus": state,
                "transactionTime": sub.transaction_time, "request": sub.request_url,
                "requiresAccessToken": self.settings.auth != "off", "output": output, "error": errors}
        return (state in ("completed", "stopped") and not active), body

    def outcome(self, job_id: str, client_id: str | None, subject: str | None) -> bytes:
        """The OperationOutcomes (NDJSON) of one manifest's failed files, or of the manifest itself."""
        job = self.jobs.get(job_id)
        if job is None or job.kind != MANIFEST:
            raise NotFound(f"No submitted manifest {job_id}")
        if (job.client_id, job.subject) != (client_id, subject):
            raise Forbidden("This submission belongs to another client or user")
        if job.status == "failed":
            return orjson.dumps(operation_outcome([Issue("error", "processing", job.message or "failed")])) + b"\n"
        return self.jobs.result(job_id) or b""

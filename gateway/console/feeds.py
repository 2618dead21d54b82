"""The console's "Data feeds" screen: what came in and what went out, read from the FHIR API with the
signed-in user's token like every other screen:

- ingest runs from ``$ingest-runs`` (needs the ``gateway.feeds.read`` scope), each with its rejects (file,
  line, reason) and its data-quality warnings grouped by rule from the run's report (``$ingest-runs/[id]``);
- asynchronous jobs (Bulk exports, asynchronous ``$care-gaps``, bulk submissions) from ``$jobs``: the user's
  own, or everyone's with the ``gateway.jobs.read-all`` scope;
- Subscriptions from a ``Subscription`` search, each with its last notification from
  ``Subscription/[id]/$notification-status``.

A part the user's grant does not cover says so on the page; the other parts are still shown."""

from __future__ import annotations

import base64
import json
from typing import Any

from .api import ApiError, Fhir
from .views import e, link, message, table

RUNS_SHOWN = 20


def parts(param: dict[str, Any]) -> dict[str, list[Any]]:
    """A Parameters parameter's parts by name (every value[x] of each, in order)."""
    out: dict[str, list[Any]] = {}
    for p in param.get("part") or []:
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(str(p.get("name")), []).append(p if "part" in p else value)
    return out


def named(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The top-level parameters called ``name``."""
    return [p for p in body.get("parameter") or [] if p.get("name") == name]


def one(ps: dict[str, list[Any]], name: str, default: Any = "") -> Any:
    values = ps.get(name)
    return values[0] if values else default


def report_of(run: dict[str, list[Any]]) -> dict[str, Any]:
    """The data-quality report attached to a run (JSON), or an empty one."""
    att = one(run, "report", None)
    if not isinstance(att, dict) or not att.get("data"):
        return {}
    return dict(json.loads(base64.b64decode(att["data"])))


def _who(ps: dict[str, list[Any]]) -> str:
    client, user = one(ps, "client"), one(ps, "user")
    if not client and user == "local-operator":  # ingest/runs.py LOCAL_OPERATOR: the command line
        return "local operator (command line)"
    if client and user and user != client:
        return f"{user} (through {client})"
    return str(user or client or "local operator")


def _refused(what: str, exc: ApiError) -> str:
    if exc.status == 403:
        return message(f"Your sign-in does not cover {what}: {exc.message}", "error")
    return message(f"The FHIR API refused to list {what}: {exc.message} (HTTP {exc.status})", "error")


async def ingest_section(fhir: Fhir) -> str:
    """The recent ingest runs, newest first, each linking to its rejects and warnings."""
    out = ["<h2 id=ingest>Ingest runs</h2>"]
    try:
        body = await fhir.get("$ingest-runs", [("_count", str(RUNS_SHOWN))])
    except ApiError as exc:
        return out[0] + _refused("the ingest runs", exc)
    total = one(parts({"part": named(body, "total")}), "total", 0)
    rows = []
    for p in named(body, "run"):
        r = parts(p)
        rid = str(one(r, "id"))
        rows.append([f"<a href='{e(link('/console/feeds/runs/' + rid))}' id='run-{e(rid)}'>{e(one(r, 'started'))}</a>",
                     e(one(r, "format")), e(", ".join(str(f) for f in r.get("file", []))), e(_who(r)),
                     e(one(r, "records", 0)), e(one(r, "created", 0)), e(one(r, "updated", 0)),
                     e(one(r, "unchanged", 0)), f"<span class=rejected>{e(one(r, 'rejected', 0))}</span>",
                     e(one(r, "loadedWithWarnings", 0))])
    out.append(f"<p class=note>{e(len(rows))} of {e(total)} recorded runs, newest first. Open a run for its "
               "rejected records and its data-quality warnings.</p>")
    out.append(table("Ingest runs", ["Started", "Format", "Files", "Run by", "Records read", "Created",
                                     "Updated", "Unchanged", "Rejected", "Loaded with warnings"],
                     rows, {4, 5, 6, 7, 8, 9}, "runs"))
    return "".join(out)


async def run_detail(fhir: Fhir, run_id: str) -> str:
    """One run: its counts, its rejects (file, line, reason) and its warnings grouped by rule."""
    body = await fhir.get(f"$ingest-runs/{run_id}")
    runs = named(body, "run")
    if not runs:
        raise ValueError("The API returned no run")
    r = parts(runs[0])
    report = report_of(r)
    facts = [("Format", one(r, "format")), ("Run by", _who(r)), ("Through", one(r, "via")),
             ("Started", one(r, "started")), ("Ended", one(r, "ended")),
             ("Files", ", ".join(str(f) for f in r.get("file", []))), ("Mapping version", one(r, "mappingVersion")),
             ("Strictness", one(r, "strictness")), ("Records read", one(r, "records", 0)),
             ("Created", one(r, "created", 0)), ("Updated", one(r, "updated", 0)),
             ("Unchanged", one(r, "unchanged", 0)), ("Rejected", one(r, "rejected", 0)),
             ("Loaded with warnings", one(r, "loadedWithWarnings", 0))]
    out = ["<p><a href='/console/feeds'>Back to the data feeds</a></p>", "<dl class=facts>",
           *(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts), "</dl>"]
    reject_rows = []
    for rp in r.get("reject", []):
        x = parts(rp)
        reject_rows.append([e(one(x, "file")), e(one(x, "line")), f"<span class=wrap>{e(one(x, 'reason'))}</span>",
                            e(one(x, "field"))])
    shown = len(reject_rows)
    rejected = int(one(r, "rejected", 0) or 0)
    out.append("<h2 id=rejects>Rejected records</h2>")
    if rejected > shown:
        out.append(f"<p class=note>The first {shown} of {rejected} rejected records are kept.</p>")
    out.append(table("Rejected records", ["File", "Line", "Reason", "Field"], reject_rows, {1}, "rejects-table"))
    warn_rows = []
    for g in report.get("warnings") or []:
        ex = (g.get("examples") or [{}])[0]
        warn_rows.append([e(g.get("rule")), e(g.get("count")),
                          e(f"{ex.get('where', '')}: {ex.get('message', '')}")])
    out.append("<h2 id=warnings>Data-quality warnings by rule</h2>"
               "<p class=note>Records loaded despite breaking these rules, counted per rule (the run's "
               "data-quality report).</p>")
    out.append(table("Data-quality warnings by rule", ["Rule", "Count", "First example"], warn_rows, {1},
                     "warnings-table"))
    reject_groups = [[e(g.get("rule")), e(g.get("count"))] for g in report.get("rejects") or []]
    out.append(table("Rejects by rule", ["Rule", "Count"], reject_groups, {1}, "reject-rules-table"))
    return "".join(out)


async def jobs_section(fhir: Fhir) -> str:
    """The asynchronous jobs the user may see, newest first, with their status."""
    out = ["<h2 id=jobs>Bulk exports and other jobs</h2>"]
    try:
        body = await fhir.get("$jobs")
    except ApiError as exc:
        return out[0] + _refused("the jobs", exc)
    rows = []
    for p in named(body, "job"):
        j = parts(p)
        jid = str(one(j, "id"))
        rows.append([f"<span id='job-{e(jid)}'>{e(one(j, 'created'))}</span>", e(one(j, "kind")),
                     f"<strong class=status>{e(one(j, 'status'))}</strong>", e(_who(j)),
                     f"<span class=wrap>{e(one(j, 'request'))}</span>", e(one(j, "message"))])
    total = one(parts({"part": named(body, "total")}), "total", 0)
    out.append(f"<p class=note>{e(len(rows))} of {e(total)} jobs you may see, newest first (Bulk exports, "
               "asynchronous <code>$care-gaps</code>, bulk submissions).</p>")
    out.append(table("Jobs", ["Created", "Kind", "Status", "Started by", "Request", "Message"], rows,
                     table_id="jobs-table"))
    return "".join(out)


async def subscriptions_section(fhir: Fhir) -> str:
    """The Subscriptions the user may read, each with its status and last notification."""
    out = ["<h2 id=subscriptions>Subscriptions</h2>"]
    try:
        subs = await fhir.search_all("Subscription", [], limit=100)
    except ApiError as exc:
        return out[0] + _refused("the Subscriptions", exc)
    rows = []
    for sub in subs:
        sid = str(sub.get("id"))
        try:
            st = parts({"part": (await fhir.get(f"Subscription/{sid}/$notification-status")).get("parameter")})
        except ApiError as exc:
            st = {"lastError": [f"(status not readable: {exc.message})"]}
        channel = sub.get("channel") or {}
        last = one(st, "lastNotification")
        outcome = f"{one(st, 'lastKind')} {one(st, 'lastOutcome')}".strip() if last else "none sent yet"
        rows.append([f"<span id='sub-{e(sid)}'>{e(sid)}</span>", f"<span class=wrap>{e(sub.get('criteria'))}</span>",
                     f"<span class=wrap>{e(channel.get('endpoint'))}</span>",
                     f"<span class=sub-status>{e(one(st, 'status', sub.get('status')))}</span>",
                     f"<span class=last-at>{e(last)}</span>", f"<span class=last-outcome>{e(outcome)}</span>",
                     f"<span class=wrap>{e(one(st, 'lastError') or one(st, 'error'))}</span>",
                     e(one(st, "notificationsSent", 0))])
    out.append(table("Subscriptions and their last notification",
                     ["Subscription", "Criteria", "Endpoint", "Status", "Last notification", "What and outcome",
                      "Error", "Sent"], rows, {7}, "subscriptions-table"))
    return "".join(out)

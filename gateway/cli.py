"""The fhir-gateway command line (typer)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__

app = typer.Typer(help="FHIR R4 interoperability gateway for value-based care.", no_args_is_help=True,
                  add_completion=False)

DatabaseOpt = Annotated[str | None, typer.Option("--database", envvar="GATEWAY_DATABASE_URL", help="SQLAlchemy URL; default: the embedded "
                                                 "SQLite file var/gateway.sqlite3 (env GATEWAY_DATABASE_URL)")]


def _settings(database: str | None, **kw: object):  # type: ignore[no-untyped-def]
    from .config import Settings

    values = {k: v for k, v in kw.items() if v is not None}
    if database:
        values["database_url"] = database
    s = Settings(**values)
    url = s.resolved_database_url()
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return s


def _open_store_or_exit(settings) -> Any:  # type: ignore[no-untyped-def]
    """The configured store; a database that cannot be opened ends the command with exit code 1."""
    from .store.sql.store import SqlStore

    try:
        return SqlStore(settings.resolved_database_url())
    except Exception as exc:  # noqa: BLE001 - any connection failure is fatal here
        typer.echo(f"error: cannot open the database: {exc}", err=True)
        raise typer.Exit(1) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="GATEWAY_HOST", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="GATEWAY_PORT", help="TCP port")] = 8080,
    database: DatabaseOpt = None,
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="GATEWAY_BASE_URL", help="Public FHIR base URL "
                                                 "(default http://HOST:PORT/fhir)")] = None,
    auth: Annotated[str, typer.Option(envvar="GATEWAY_AUTH", help="smart (SMART on FHIR authorization, the "
                                      "default) | off (no authorization; only on a loopback host)")] = "smart",
    demo: Annotated[bool, typer.Option("--demo", envvar="GATEWAY_DEMO", help="Load the built-in demo data on start: "
                                       "sample patients, the demo measures and 200 synthetic patients "
                                       "(docs/demo-measures.md)")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", envvar="GATEWAY_TLS_CERT", help="PEM certificate "
                                                 "(chain) file: serve https (TLS 1.2 or later) on HOST:PORT")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", envvar="GATEWAY_TLS_KEY", help="PEM private key of "
                                                "--tls-cert")] = None,
    shutdown_timeout: Annotated[float | None, typer.Option(
        "--shutdown-timeout", envvar="GATEWAY_SHUTDOWN_TIMEOUT_SECONDS",
        help="Seconds SIGTERM may take: requests in flight finish within it, job leases are handed back, then "
             "the process exits whatever still runs (default 30)")] = None,
) -> None:
    """Run the FHIR server. The FHIR base is http://HOST:PORT/fhir (https with --tls-cert and --tls-key)."""
    import uvicorn

    from .logs import configure

    if auth not in ("smart", "off"):
        raise typer.BadParameter("--auth must be 'smart' or 'off'")
    if auth == "off" and not is_loopback(host):
        typer.echo(f"Refusing --auth off on non-loopback host {host}: patient data would be open to the "
                   "network. Use --auth smart, or bind 127.0.0.1.", err=True)
        raise typer.Exit(2)
    tls_error = "--tls-cert and --tls-key go together" if bool(tls_cert) != bool(tls_key) else next(
        (f"{p}: no such file" for p in (tls_cert, tls_key) if p and not Path(p).is_file()), None)
    if not tls_error and tls_cert and tls_key:
        tls_error = _tls_load_error(tls_cert, tls_key)
    if tls_error:
        typer.echo(f"error: {tls_error}", err=True)
        raise typer.Exit(2)
    extra = {} if shutdown_timeout is None else {"shutdown_timeout_seconds": shutdown_timeout}
    settings = _settings(database, host=host, port=port, base_url=base_url, auth=auth, demo=demo,
                         tls_cert=tls_cert, tls_key=tls_key, **extra)
    # the server acts for each caller: requests set their own grant, so the command's SYSTEM grant is not
    # handed down to the server's event loop (demo loading below sets it where it needs it)
    from .auth.context import current

    current.set(None)
    configure(settings.log_level)
    if auth == "smart" and demo:
        _demo_client(settings)
    # settings reach worker processes through the environment
    os.environ["GATEWAY_DATABASE_URL"] = settings.resolved_database_url()
    os.environ["GATEWAY_HOST"] = host
    os.environ["GATEWAY_PORT"] = str(port)
    os.environ["GATEWAY_AUTH"] = auth
    os.environ["GATEWAY_DEMO"] = "true" if demo else "false"
    if base_url:
        os.environ["GATEWAY_BASE_URL"] = base_url
    os.environ["GATEWAY_SHUTDOWN_TIMEOUT_SECONDS"] = str(settings.shutdown_timeout_seconds)
    from .api.shutdown import graceful_seconds

    tls = _tls_options(tls_cert, tls_key)
    # requests in flight get most of the shutdown bound; the app's watchdog ends the process at the bound
    opts = {**tls, "timeout_graceful_shutdown": graceful_seconds(settings.shutdown_timeout_seconds)}
    if tls_cert and tls_key:
        os.environ["GATEWAY_TLS_CERT"], os.environ["GATEWAY_TLS_KEY"] = tls_cert, tls_key
    # forwarding headers are judged by the gateway's own trusted_proxies (api/baseurl.py), not by uvicorn
    if workers > 1:
        if demo:  # load once, before the workers start
            _load_demo_once(settings)
            os.environ["GATEWAY_DEMO"] = "false"
        if not settings.paging_key:  # one paging cursor key for all workers: any worker serves any next page
            import secrets

            os.environ["GATEWAY_PAGING_KEY"] = secrets.token_hex(32)
        uvicorn.run("gateway.main:build_app", factory=True, host=host, port=port, workers=workers,
                    log_config=None, access_log=False, proxy_headers=False, **opts)
    else:
        from .main import build_app

        uvicorn.run(build_app(), host=host, port=port, log_config=None, access_log=False, proxy_headers=False,
                    **opts)


def _tls_load_error(cert: str, key: str) -> str | None:
    """Why the certificate and key cannot serve TLS (not PEM, a key of another certificate...), or None:
    checked before the server starts so a bad file is a one-line error, not a traceback from uvicorn."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return (f"cannot use --tls-cert {cert} with --tls-key {key} ({exc.strerror or exc}): give a PEM "
                "certificate (chain) and its private key")
    return None


def _tls_options(cert: str | None, key: str | None) -> dict[str, Any]:
    """uvicorn's TLS arguments for a certificate and key, or none (plain http). uvicorn builds an
    ``ssl.SSLContext(PROTOCOL_TLS_SERVER)``, whose minimum version is TLS 1.2 on the Pythons we support, so
    TLS 1.0 and 1.1 handshakes are refused (tests/conformance checks this against a real server)."""
    if not (cert and key):
        return {}
    import ssl

    return {"ssl_certfile": cert, "ssl_keyfile": key, "ssl_version": ssl.PROTOCOL_TLS_SERVER}


def _demo_client(settings) -> None:  # type: ignore[no-untyped-def]
    """Register (once) a demo backend client and a demo user, and print how to get a token."""
    from .auth.demo import ensure_demo_access
    from .store.sql.store import SqlStore

    store = SqlStore(settings.resolved_database_url())
    try:
        text = ensure_demo_access(store, settings)
    finally:
        store.close()
    typer.echo(text, err=True)


def _load_demo_once(settings) -> None:  # type: ignore[no-untyped-def]
    from .auth.context import SYSTEM, acting_as
    from .ingest.loader import load_demo
    from .resources.rest import RestService
    from .store.sql.store import SqlStore

    store = SqlStore(settings.resolved_database_url())
    with acting_as(SYSTEM):
        load_demo(RestService(_gated(store, settings), settings.fhir_base()))
    store.close()


@app.command()
def load(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders: .json (Bundle or resource), .ndjson")],
    database: DatabaseOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Reject resources with any validation defect")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Load FHIR JSON Bundles, resources and NDJSON files into the database."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .ingest.loader import Loader, iter_files
    from .resources.rest import RestService
    from .store.sql.store import SqlStore

    settings = _settings(database)
    missing = [str(p) for p in paths if not p.exists()]
    for m in missing:
        typer.echo(f"error: {m}: no such file or folder", err=True)
    store = SqlStore(settings.resolved_database_url())
    rest = RestService(_gated(store, settings), settings.fhir_base())
    files = list(iter_files(p for p in paths if p.exists()))
    with Progress(TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TextColumn("resources"),
                  TimeElapsedColumn(), disable=quiet, transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("load", total=None)
        loader = Loader(rest, "strict" if strict else "lenient", lambda n: progress.advance(task, n))
        summary = loader.load(files)
    store.close()
    for w in summary.warnings:
        typer.echo(f"warning: {w}", err=True)
    for e in summary.errors:
        typer.echo(f"error: {e}", err=True)
    typer.echo(f"Loaded {summary.resources} resources from {summary.files} files "
               f"({len(summary.errors) + len(missing)} errors, {len(summary.warnings)} warnings)")
    if summary.errors or missing:
        raise typer.Exit(1)


@app.command()
def evaluate(
    measure: Annotated[str, typer.Option(help="Measure id, Measure/[id], or canonical URL[|version]")],
    period_start: Annotated[str, typer.Option("--period-start", help="Start of the measurement period")],
    period_end: Annotated[str, typer.Option("--period-end", help="End of the measurement period")],
    subject: Annotated[str | None, typer.Option(help="Patient/[id] or Group/[id]; default: every patient")] = None,
    report_type: Annotated[str | None, typer.Option("--report-type",
                                                    help="subject | subject-list | population")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the MeasureReport here instead of stdout")] = None,
    database: DatabaseOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
    executor: Annotated[str, typer.Option(envvar="GATEWAY_EXECUTOR", help="Population runs: inprocess, "
                                          "processes[:N] or dask://host:port")] = "inprocess",
) -> None:
    """Evaluate a stored measure and print the MeasureReport (FHIR JSON)."""
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .deqm.evaluation import MeasureService
    from .fhir.errors import FhirError
    from .store.sql.store import SqlStore

    settings = _settings(database)
    store = SqlStore(settings.resolved_database_url())
    svc = MeasureService(_gated(store, settings), settings.fhir_base(), executor, reporter=settings.reporter)
    try:
        if "/" in measure and not measure.startswith("Measure/") or "|" in measure:
            measure_res = svc.find_measure(None, measure)
        else:
            measure_res = svc.find_measure(measure.removeprefix("Measure/"), None)
        with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("patients"),
                      TimeElapsedColumn(), disable=quiet, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("evaluate", total=None)

            def progress(step: int, total: int) -> None:
                bar.update(task, total=total, advance=step)

            report = svc.evaluate(measure_res, period_start, period_end, report_type, subject, None, progress)
    except FhirError as exc:
        typer.echo(f"error: {exc.diagnostics}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if output:
        output.write_bytes(data + b"\n")
    else:
        typer.echo(data.decode())


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory for the NDJSON files and manifest.json")],
    group: Annotated[str | None, typer.Option("--group", help="Group id; default: every resource (system level)")] = None,
    types: Annotated[str | None, typer.Option("--type", help="Comma-separated resource types (_type)")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only resources changed after this instant")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only resources changed up to this instant")] = None,
    type_filter: Annotated[list[str] | None, typer.Option("--type-filter", help="_typeFilter, e.g. "
                                                          "'Patient?gender=female' (repeatable)")] = None,
    max_file_mb: Annotated[int, typer.Option("--max-file-mb", min=1, help="Split files at this size")] = 64,
    database: DatabaseOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Bulk-export a Group's members (or everything) to NDJSON files, as the server's $export does."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .bulk.local import export_to_dir
    from .fhir.errors import FhirError
    from .store.sql.store import SqlStore

    params = [(k, v) for k, v in (("_type", types), ("_since", since), ("_until", until)) if v]
    params += [("_typeFilter", f) for f in type_filter or []]
    settings = _settings(database)
    store = SqlStore(settings.resolved_database_url())
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("types"),
                      TextColumn("{task.fields[written]} resources"), TimeElapsedColumn(), disable=quiet,
                      transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("exporting", total=None, written=0)

            def progress(p: dict) -> None:  # type: ignore[type-arg]
                steps = p.get("steps") or []
                label = steps[min(p.get("step", 0), len(steps) - 1)][1] if steps else ""
                bar.update(task, total=len(steps), completed=p.get("step", 0), written=p.get("written", 0),
                           description=f"exporting {label}")

            manifest = export_to_dir(store, out, group, params, max_file_mb * 1024 * 1024, progress,
                                     opt_out=settings.provider_access_opt_out)
    except FhirError as exc:
        typer.echo(f"error: {exc.diagnostics}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    total = sum(o["count"] for o in manifest["output"])
    typer.echo(f"Exported {total} resources in {len(manifest['output'])} files to {out} (manifest.json)")
    for o in manifest["error"]:
        typer.echo(f"warning: see {o['url']} ({o['count']} issues)", err=True)


@app.command()
def attribute(
    group: Annotated[str, typer.Option("--group", help="Id of the attribution list Group to (re)compute")],
    payer: Annotated[str, typer.Option("--payer", help="The payer, Organization/[id] (the list's managingEntity)")],
    as_of: Annotated[str, typer.Option("--as-of", help="End of the look-back window, YYYY-MM-DD")],
    lookback_months: Annotated[int, typer.Option("--lookback-months", min=1, max=120)] = 12,
    codes: Annotated[Path | None, typer.Option("--codes", help="JSON list of qualifying CPT/HCPCS codes "
                                               "(default: the primary-care codes in docs/integration-payer.md)")] = None,
    encounter_value: Annotated[float, typer.Option("--encounter-value", help="Allowed charge credited to an "
                                                   "Encounter (default 0: visits only break ties)")] = 0.0,
    database: DatabaseOpt = None,
) -> None:
    """Compute a draft ATR attribution list from the stored claims and encounters (plurality of primary-care
    allowed charges, ties to the most recent visit) and store it as a new version of the Group."""
    import datetime as dt
    import json

    from .atr.attribution_claims import compute_draft
    from .atr.claims_rule import DEFAULT_CODES, AttributionRule
    from .fhir.errors import FhirError
    from .resources.rest import RestService
    from .store.sql.store import SqlStore

    try:
        day = dt.date.fromisoformat(as_of)
    except ValueError:
        raise typer.BadParameter("--as-of must be a date, YYYY-MM-DD") from None
    code_set = frozenset(json.loads(codes.read_text())) if codes else DEFAULT_CODES
    settings = _settings(database)
    store = SqlStore(settings.resolved_database_url())
    try:
        g, n = compute_draft(RestService(_gated(store, settings), settings.fhir_base()), group, payer,
                             AttributionRule(day, lookback_months, code_set, encounter_value))
    except FhirError as exc:
        typer.echo(f"error: {exc.diagnostics}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    changes: dict[str, int] = {}
    for m in g.get("member") or []:
        for e in m.get("extension") or []:
            if e["url"].endswith("ext-changeType"):
                changes[e["valueCode"]] = changes.get(e["valueCode"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(changes.items())) or "no members"
    typer.echo(f"Group/{group} version {g['meta']['versionId']}: {n} patients attributed ({summary})")


@app.command()
def synth(
    patients: Annotated[int, typer.Option("--patients", min=0, help="How many synthetic patients")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same data")] = 1,
    period_year: Annotated[int, typer.Option("--period-year", min=1901, max=2199,
                                             help="Year of the measurement period the data is built for")] = 2025,
    output: Annotated[Path | None, typer.Option("--output", help="Write NDJSON here ('-' for stdout) instead of "
                                                "loading it into the database")] = None,
    with_measures: Annotated[bool, typer.Option("--with-measures", help="Also write or load the three demo "
                                                "Measures (FHIRPath criteria)")] = False,
    database: DatabaseOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
    claims: Annotated[Path | None, typer.Option("--claims", help="Instead: write the synthetic payers' claims "
                                                "for these patients (generic claims CSV) here; the demo's "
                                                "gateway/demo/claims.csv is --patients 200 --seed 1")] = None,
    charts: Annotated[bool, typer.Option("--charts", help="Instead of the demo patients: realistic charts of "
                                         "adults, 50-300 resources each over --years years ending with "
                                         "--period-year (encounters, conditions, vital signs and labs, "
                                         "procedures, medications, immunizations, coverage, claims; coded for "
                                         "the CMS eCQMs), for measure benchmarks")] = False,
    years: Annotated[int, typer.Option("--years", min=1, max=30, help="With --charts: years of history")] = 5,
) -> None:
    """Generate synthetic patients for the demo measures (docs/demo-measures.md): write NDJSON with --output,
    or load them into the database; or, with --claims, a synthetic claims file for `fhir-gateway ingest`;
    or, with --charts, realistic multi-year charts for measure benchmarks (gateway/demo/charts.py)."""
    import itertools
    import sys
    import tempfile

    if claims is not None:
        from .demo.claims import claims_csv

        claims.write_text(claims_csv(patients, seed, period_year), encoding="utf-8")
        typer.echo(f"Wrote the claims of {patients} synthetic patients to {claims}", err=True)
        return
    from .demo.synth import demo_measures, iter_resources, ndjson_lines

    if charts:
        from .demo.charts import iter_charts

        people: Any = iter_charts(patients, seed, period_year, years)
    else:
        people = iter_resources(patients, seed, period_year)
    resources = itertools.chain(demo_measures() if with_measures else [], people)
    if output is not None:
        if str(output) == "-":
            for line in ndjson_lines(resources):
                sys.stdout.buffer.write(line)
            sys.stdout.flush()
            return
        count = 0
        with output.open("wb") as fh:
            for line in ndjson_lines(resources):
                fh.write(line)
                count += 1
        typer.echo(f"Wrote {count} resources for {patients} synthetic patients to {output}", err=True)
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .ingest.loader import Loader
    from .resources.rest import RestService
    from .store.sql.store import SqlStore

    settings = _settings(database)
    store = SqlStore(settings.resolved_database_url())
    try:
        with tempfile.TemporaryDirectory(prefix="fhir-gateway-synth-") as tmp:
            path = Path(tmp) / "synthetic.ndjson"
            with path.open("wb") as fh:
                fh.writelines(ndjson_lines(resources))
            with Progress(TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TextColumn("resources"),
                          TimeElapsedColumn(), disable=quiet, transient=True,
                          console=Console(stderr=True)) as progress:
                task = progress.add_task("load", total=None)
                loader = Loader(RestService(_gated(store, settings), settings.fhir_base()), "strict",
                                lambda n: progress.advance(task, n))
                summary = loader.load([path])
    finally:
        store.close()
    for e in summary.errors:
        typer.echo(f"error: {e}", err=True)
    typer.echo(f"Loaded {summary.resources} resources for {patients} synthetic patients "
               f"({len(summary.errors)} errors)")
    if summary.errors:
        raise typer.Exit(1)


clients_app = typer.Typer(help="Register and list OAuth clients (SMART apps and backend services).",
                          no_args_is_help=True)
app.add_typer(clients_app, name="clients")
users_app = typer.Typer(help="The built-in user store for the login page.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Option("--name", help="Client name shown on the consent page")],
    scope: Annotated[str, typer.Option("--scope", help="Scopes the client may ask for, space separated "
                                       "(backend services: system/ scopes)")],
    database: DatabaseOpt = None,
    jwks: Annotated[Path | None, typer.Option("--jwks", help="File with the client's public JWKS "
                                              "(backend services, private_key_jwt)")] = None,
    jwks_url: Annotated[str | None, typer.Option("--jwks-url", help="URL of the client's JWKS "
                                                 "(backend services, private_key_jwt)")] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option("--redirect-uri", help="Redirect URI of a SMART "
                                                            "app (repeatable)")] = None,
    confidential: Annotated[bool, typer.Option("--confidential", help="An app with a client secret "
                                               "(client_secret_basic) instead of a public client")] = False,
    fhir_user: Annotated[str | None, typer.Option("--fhir-user", help="The Organization/<id> or Practitioner/<id> "
                                                  "a backend client acts for: it then sees only the ATR Groups "
                                                  "it manages or is attributed in")] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="Choose the client_id (letters, digits, "
                                                  "'.', '_', '-'; default: a random one)")] = None,
) -> None:
    """Register a client; prints it as one JSON object (with client_id, and client_secret once) on stdout."""
    import json

    from .auth.clients import ClientStore, RegistrationError
    from .store.sql.store import SqlStore

    settings = _settings(database)
    doc = None
    if jwks is not None:
        try:
            doc = json.loads(jwks.read_text())
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot read the JWKS file {jwks}: {exc}", err=True)
            raise typer.Exit(2) from None
    if client_id is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", client_id):
        typer.echo("error: --client-id takes 1 to 64 letters, digits, '.', '_' or '-'", err=True)
        raise typer.Exit(2)
    store = SqlStore(settings.resolved_database_url())
    try:
        clients = ClientStore(store.engine, settings.egress_policy())
        if client_id is not None and clients.get(client_id) is not None:
            raise RegistrationError(f"a client with client_id {client_id!r} is already registered "
                                    "(`fhir-gateway clients list` shows it)")
        client, secret = clients.register(name, scope, jwks=doc, jwks_uri=jwks_url,
                                          redirect_uris=redirect_uri or None, confidential=confidential,
                                          fhir_user=fhir_user, client_id=client_id)
    except RegistrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    out = client.public_view()
    if secret:
        out["client_secret"] = secret
    typer.echo(json.dumps(out))


@clients_app.command("list")
def clients_list(database: DatabaseOpt = None) -> None:
    """List the registered clients as JSON lines (no secrets)."""
    import json

    from .auth.clients import ClientStore
    from .store.sql.store import SqlStore

    store = SqlStore(_settings(database).resolved_database_url())
    try:
        for c in ClientStore(store.engine).list():
            typer.echo(json.dumps(c.public_view()))
    finally:
        store.close()


@app.command()
def launch(
    client_id: Annotated[str, typer.Option("--client-id", help="The SMART app to launch (a registered client "
                                           "with a redirect URI)")],
    app_url: Annotated[str, typer.Option("--app", help="The app's launch URL, e.g. "
                                         "http://127.0.0.1:9000/launch.html")],
    patient: Annotated[str | None, typer.Option("--patient", help="Patient id the launch is for")] = None,
    encounter: Annotated[str | None, typer.Option("--encounter", help="Encounter id of the launch")] = None,
    fhir_base: Annotated[str | None, typer.Option("--fhir-base", help="The `iss` the app is given: the "
                                                  "server's public FHIR base URL (default: as `serve` "
                                                  "computes it, env GATEWAY_BASE_URL)")] = None,
    database: DatabaseOpt = None,
) -> None:
    """EHR launch: create a one-time launch context (valid 5 minutes) and print the app's launch URL with `iss`
    and `launch`, as an EHR would open it. The server running on the same database honours it."""
    from urllib.parse import urlsplit

    from .auth.clients import ClientStore
    from .auth.launches import create_launch, launch_url

    if urlsplit(app_url).scheme not in ("http", "https") or not urlsplit(app_url).netloc:
        typer.echo("error: --app must be an absolute http(s) URL", err=True)
        raise typer.Exit(2)
    settings = _settings(database)
    store = _open_store_or_exit(settings)
    try:
        client = ClientStore(store.engine).get(client_id)
        if client is None or not client.redirect_uris:
            typer.echo(f"error: no SMART app with client_id {client_id!r} is registered "
                       "(`fhir-gateway clients add --redirect-uri ...` registers one)", err=True)
            raise typer.Exit(2)
        ctx = {k: v for k, v in (("patient", patient), ("encounter", encounter)) if v}
        launch_id = create_launch(store.engine, client_id, ctx)
    finally:
        store.close()
    typer.echo(launch_url(app_url, fhir_base or settings.fhir_base(), launch_id))


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Option("--username")],
    database: DatabaseOpt = None,
    fhir_user: Annotated[str | None, typer.Option("--fhir-user", help="The user's FHIR resource (required): "
                                                  "Practitioner/123 or PractitionerRole/1 (a clinician), "
                                                  "Patient/456, RelatedPerson/7 or Person/8 (one patient's "
                                                  "record)")] = None,
    password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True,
                                          envvar="GATEWAY_USER_PASSWORD")] = "",
) -> None:
    """Add a user to the built-in user store (a Patient, RelatedPerson or Person user sees only one patient's
    record; only Practitioner and PractitionerRole users are clinicians)."""
    from .auth.users import UserError, add_user
    from .store.sql.store import SqlStore

    store = SqlStore(_settings(database).resolved_database_url())
    try:
        add_user(store.engine, username, password, fhir_user)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(f"user {username} added")


keys_app = typer.Typer(help="The gateway's token signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate(database: DatabaseOpt = None) -> None:
    """Sign new tokens with a fresh key; older keys stay published at /auth/jwks for a day. Running servers
    pick the new key up within 30 seconds."""
    from .auth.keys import KeyRing
    from .store.sql.store import SqlStore

    store = SqlStore(_settings(database).resolved_database_url())
    try:
        ring = KeyRing(store.engine)
        ring.ensure()
        typer.echo(f"signing key {ring.rotate()} is now active")
    finally:
        store.close()


@app.command()
def token(
    fhir_base: Annotated[str, typer.Option("--fhir-base", help="FHIR base URL of the gateway")],
    client_id: Annotated[str, typer.Option("--client-id")],
    key: Annotated[Path, typer.Option("--key", help="File with the client's private JWK (RS384 or ES384)")],
    scope: Annotated[str, typer.Option("--scope")] = "system/*.rs",
    full: Annotated[bool, typer.Option("--json", help="Print the whole token response")] = False,
) -> None:
    """Backend Services: sign a client assertion and print an access token (client_credentials)."""
    import json

    from .auth.assertion_client import fetch_token

    try:
        body = fetch_token(fhir_base, client_id, json.loads(key.read_text()), scope)
    except (OSError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(body) if full else body["access_token"])



def _run_files(paths: list[Path]) -> list[str]:
    """The names of the files an ingest run read (a folder's files by name; no paths are recorded)."""
    names: list[str] = []
    for p in paths:
        names += [f.name for f in (sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])]
    return names[:1000]

@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Input files or folders")],
    fmt: Annotated[str, typer.Option("--format", help="cclf | claims-csv | synthea-csv | hl7v2 | x12-837 | "
                                     "x12-835 (a mapping file in mappings/ named FORMAT.inbound.yaml)")],
    database: DatabaseOpt = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Write rejected records here (tab-separated: "
                                                 "where, field, reason)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the run's data-quality report here "
                                                "(JSON: counts, warnings and rejects grouped by rule)")] = None,
    strictness: Annotated[str | None, typer.Option("--strictness", help="lenient: a code off its format or an "
                                                   "X12 implementation-guide rule broken loads with a warning; "
                                                   "strict: it rejects the record (default: the mapping file's, "
                                                   "lenient)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes that map and write at once, each "
                                         "its share of the claims (split by claim, every version of a claim in "
                                         "one process; docs/guides/mappings.md)")] = 1,
) -> None:
    """Map internal records (claims feeds, clinical extracts, HL7 v2) to FHIR and store them. A file named on the
    command line is always read; a folder's files when the mapping recognises their names. Exit status: 0 all
    records loaded (possibly with warnings), 3 some records rejected, 1 fatal error or nothing read."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .ingest.runs import LOCAL_OPERATOR
    from .ingest.runs import record as record_run
    from .ingest.service import Ingestor
    from .mapping.quality import report_lines
    from .mapping.spec import SpecError, find_spec, with_strictness
    from .resources.rest import RestService
    from .store.sql.feeds import now_instant

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        for m in missing:
            typer.echo(f"error: {m}: no such file or folder", err=True)
        raise typer.Exit(1)
    try:
        spec = with_strictness(find_spec(fmt), strictness)
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    settings = _settings(database)
    store = _open_store_or_exit(settings)
    started = now_instant()
    try:
        with Progress(TextColumn(f"ingesting {fmt}"), BarColumn(), MofNCompleteColumn(), TextColumn("records"),
                      TimeElapsedColumn(), disable=quiet, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("ingest", total=None)
            summary = Ingestor(RestService(_gated(store, settings), settings.fhir_base()), spec,
                               progress=lambda n: bar.advance(task, n), workers=workers).ingest(paths)
        if summary.files and (summary.records or summary.rejects):  # a run that read something is recorded
            record_run(store, summary, _run_files(paths), "cli", started, None, LOCAL_OPERATOR)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    for r in summary.rejects:
        typer.echo(f"rejected: {r}", err=True)
    if rejects is not None:
        with rejects.open("w", encoding="utf-8") as fh:
            for r in summary.rejects:
                fh.write(f"{r.where}\t{r.field or ''}\t{r.reason}\n")
    quality = summary.quality()
    if report is not None:
        report.write_text(json.dumps(quality, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"Ingested {summary.format} (mapping {summary.mapping_version}): {summary.files} files, "
               f"{summary.records} records read, {summary.created} resources created, {summary.updated} updated, "
               f"{summary.unchanged} unchanged, "
               f"{len(summary.rejects)} records rejected")
    for line in report_lines(quality):
        typer.echo(line)
    if summary.files == 0 or (summary.records == 0 and not summary.rejects):
        typer.echo(f"error: no records read from {', '.join(str(p) for p in paths)}: not files the {fmt} mapping "
                   "reads (see docs/guides/mappings.md)", err=True)
        raise typer.Exit(1)
    if summary.rejects:
        raise typer.Exit(3)


@app.command()
def extract(
    to: Annotated[str, typer.Option("--to", help="internal: the internal relational schema "
                                    "(mappings/internal.outbound.yaml); scorecard-csv | scorecard-parquet: one row "
                                    "per patient, measure and period with population flags and gap status")] = "internal",
    database: DatabaseOpt = None,
    target: Annotated[str | None, typer.Option("--target-database", help="SQLAlchemy URL of a separate database "
                                               "for the internal tables (default: the gateway database)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Scorecard file (default scorecard.csv / "
                                             "scorecard.parquet)")] = None,
    measure: Annotated[list[str] | None, typer.Option("--measure", help="Scorecard: evaluate this measure now (id, "
                                                      "Measure/[id] or canonical URL; repeatable) instead of "
                                                      "reading stored individual MeasureReports")] = None,
    period_start: Annotated[str | None, typer.Option("--period-start", help="Scorecard with --measure")] = None,
    period_end: Annotated[str | None, typer.Option("--period-end", help="Scorecard with --measure")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Extract stored FHIR data into internal tables (members, coverage, claims, claim lines, diagnoses,
    procedures, lab results, medications, providers), or measure results into a scorecard file. Repeating an
    extract replaces rows, it does not add. Exit status: 0 all extracted, 3 some resources rejected (listed),
    1 fatal error."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .ingest.extract import extract_internal

    if to in ("scorecard-csv", "scorecard-parquet"):
        _extract_scorecard(to, database, out, measure or [], period_start, period_end, quiet)
        return
    if to != "internal":
        typer.echo(f"error: --to {to!r} is not supported (internal, scorecard-csv, scorecard-parquet)", err=True)
        raise typer.Exit(1)
    settings = _settings(database)
    store = _open_store_or_exit(settings)
    try:
        with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TextColumn("resources"),
                      TimeElapsedColumn(), disable=quiet, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("extract", total=None)
            summary = extract_internal(store, target, progress=lambda n: bar.advance(task, n))
    finally:
        store.close()
    tables = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_table.items()))
    for r in summary.rejects:
        typer.echo(f"rejected: {r}", err=True)
    typer.echo(f"Extracted {summary.resources} resources into {summary.rows} internal rows ({tables}), "
               f"{len(summary.rejects)} resources rejected")
    if summary.rejects:
        raise typer.Exit(3)


def _extract_scorecard(to: str, database: str | None, out: Path | None, measures: list[str],
                       period_start: str | None, period_end: str | None, quiet: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .deqm.scorecard import ScorecardError, export_scorecard
    from .fhir.errors import FhirError

    path = out or Path("scorecard.csv" if to == "scorecard-csv" else "scorecard.parquet")
    settings = _settings(database)
    store = _open_store_or_exit(settings)
    try:
        with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("patients"),
                      TimeElapsedColumn(), disable=quiet or not measures, transient=True,
                      console=Console(stderr=True)) as bar:
            task = bar.add_task("scorecard", total=None)
            n = export_scorecard(store, settings.fhir_base(), to, path, measures=measures,
                                 period_start=period_start, period_end=period_end,
                                 progress=lambda step, total: bar.update(task, total=total, advance=step))
    except (ScorecardError, FhirError, OSError) as exc:
        typer.echo(f"error: {getattr(exc, 'diagnostics', None) or exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"Wrote {n} scorecard rows to {path}")


@app.command()
def migrate(database: DatabaseOpt = None) -> None:
    """Create or upgrade the database schema (also done automatically on start)."""
    from .store.sql.store import SqlStore

    settings = _settings(database)
    SqlStore(settings.resolved_database_url()).close()
    typer.echo("database schema is up to date")


cql_app = typer.Typer(help="Translate CQL to ELM and run CQL libraries (the built-in CQL-to-ELM translator).",
                      no_args_is_help=True)
app.add_typer(cql_app, name="cql")


def _cql_sources(files: list[Path]) -> dict[str, Path]:
    """CQL libraries by name: the given files and the other .cql files beside them (for includes)."""
    import re

    found: dict[str, Path] = {}
    folders = {f.resolve().parent for f in files}
    for path in [*files, *(p for d in sorted(folders) for p in sorted(d.glob("*.cql")))]:
        try:
            head = path.read_text(encoding="utf-8")[:4000]
        except (OSError, UnicodeDecodeError):
            continue
        m = re.search(r"^\s*library\s+(\"[^\"]+\"|[A-Za-z_][\w.]*)", head, re.M)
        if m:
            found.setdefault(m.group(1).strip('"'), path)
    return found


def _translate_file(path: Path, sources: dict[str, Path]) -> Any:
    from .cql.compiler import translate_library

    def provider(name: str, version: str | None) -> str | None:
        src = sources.get(name)
        return src.read_text(encoding="utf-8") if src is not None else None

    return translate_library(path.read_text(encoding="utf-8"), provider)


@cql_app.command("translate")
def cql_translate(
    files: Annotated[list[Path], typer.Argument(help="CQL files; includes are found among them and the .cql "
                                                     "files beside them, by library name")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Write FILE.json here instead of "
                                                                         "beside each FILE")] = None,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the ELM instead of writing files")] = False,
) -> None:
    """Translate CQL libraries to ELM JSON; errors are printed as FILE:LINE:COLUMN: message (exit status 1)."""
    from .cql.compiler import elm_json

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(f"error: no such file: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    sources = _cql_sources(files)
    failed = False
    for path in files:
        try:
            result = _translate_file(path, sources)
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"{path}: error: {exc}", err=True)
            failed = True
            continue
        for e in result.errors:
            where = f" (in {e.statement})" if e.statement else ""
            typer.echo(f"{path}:{e.line}:{e.col}: error: {e.message}{where}", err=True)
        failed = failed or bool(result.errors)
        if result.elm is None:
            continue
        text = elm_json(result.elm, indent=2)
        if stdout:
            typer.echo(text)
            continue
        target = (output_dir or path.parent) / (path.stem + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"{path} -> {target}" + (f" ({len(result.errors)} errors)" if result.errors else ""))
    if failed:
        raise typer.Exit(1)


def _cql_parameter(text: str) -> tuple[str, Any]:
    """NAME=CQL-EXPRESSION from the command line: the name and the value of the expression."""
    from .cql.compiler import translate_library
    from .cql.datasource import BundleDataSource
    from .cql.engine import Context, Engine
    from .cql.library import ElmLibrary, LibraryManager
    from .cql.terminology import ValueSetIndex

    name, sep, expr = text.partition("=")
    if not sep or not name.strip():
        raise typer.BadParameter(f"expected NAME=EXPRESSION, got {text!r}")
    result = translate_library(f"library P\ndefine V: {expr}")
    if result.elm is None or result.errors:
        raise typer.BadParameter(f"{name}: {'; '.join(e.message for e in result.errors)}")
    manager = LibraryManager()
    lib = manager.add(ElmLibrary.from_elm(result.elm))
    value = Engine(manager).evaluate(lib, ["V"], Context(BundleDataSource([]), ValueSetIndex()))["V"]
    return name.strip(), value


@cql_app.command("run")
def cql_run(
    file: Annotated[Path, typer.Argument(help="The CQL library to run")],
    subject: Annotated[str | None, typer.Option(help="Patient/[id]: the patient the Patient context is")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Read the patient's data from this FHIR Bundle "
                                                             "(JSON) instead of the database")] = None,
    parameter: Annotated[list[str] | None, typer.Option("--parameter", "-p",
                                                        help="NAME=CQL-EXPRESSION, e.g. "
                                                             "'Measurement Period=Interval[@2025-01-01, "
                                                             "@2026-01-01)'")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Translate a CQL library and print the value of each of its public definitions for the subject."""
    import json
    from datetime import datetime

    from .cql.datetime import now
    from .cql.engine import Context, Engine
    from .cql.library import ElmLibrary, LibraryManager
    from .cql.terminology import ValueSetIndex

    if not file.is_file():
        typer.echo(f"error: no such file: {file}", err=True)
        raise typer.Exit(2)
    sources = _cql_sources([file])
    result = _translate_file(file, sources)
    for e in result.errors:
        typer.echo(f"{file}:{e.line}:{e.col}: error: {e.message}", err=True)
    if result.elm is None or result.errors:
        raise typer.Exit(1)
    manager = LibraryManager()
    for path in {p for p in sources.values() if p != file}:
        r = _translate_file(path, sources)
        if r.elm is not None:
            manager.add(ElmLibrary.from_elm(r.elm))
    lib = manager.add(ElmLibrary.from_elm(result.elm))
    params = dict(_cql_parameter(p) for p in parameter or [])
    patient_id = subject.removeprefix("Patient/") if subject else None
    store = None
    if data is not None:
        from .cql.datasource import BundleDataSource

        try:
            bundle = json.loads(data.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot read {data}: {exc}", err=True)
            raise typer.Exit(2) from None
        resources = [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)] \
            if bundle.get("resourceType") == "Bundle" else [bundle]
        terminology = ValueSetIndex.from_resources(r for r in resources if r.get("resourceType") == "ValueSet")
        if patient_id is not None:
            resources = [r for r in resources if _belongs_to(r, patient_id)]
        source: Any = BundleDataSource(resources)
    else:
        if patient_id is None:
            typer.echo("error: give --subject Patient/[id] (or --data BUNDLE)", err=True)
            raise typer.Exit(2)
        from .deqm.measure_data import StoreDataSource
        from .store.sql.store import SqlStore

        settings = _settings(database)
        store = SqlStore(settings.resolved_database_url())
        gated = _gated(store, settings)
        source = StoreDataSource(gated, patient_id)
        terminology = ValueSetIndex.from_resources(_stored_value_sets(gated, settings, lib, manager))
    try:
        ctx = Context(source, terminology, params, now=now(datetime.now(UTC)))
        engine = Engine(manager)
        names = [n for n, d in lib.defs.items() if d.get("accessLevel", "Public") == "Public"]
        out = {}
        for n in names:
            try:
                out[n] = _cql_json(engine.evaluate(lib, [n], ctx)[n])
            except Exception as exc:  # noqa: BLE001 - one failing definition is reported, the others still run
                out[n] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if store is not None:
            store.close()
    typer.echo(json.dumps(out, indent=2, default=str))


def _belongs_to(resource: dict[str, Any], patient_id: str) -> bool:
    """Is the resource the patient or does it refer to the patient (subject, patient, beneficiary)?"""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    if resource.get("resourceType") in ("ValueSet", "CodeSystem", "Library", "Measure", "Medication",
                                        "Location", "Organization", "Practitioner"):
        return True
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict) and str(ref.get("reference", "")).rsplit("/", 1)[-1] == patient_id:
            return True
    return False


def _stored_value_sets(gated: Any, settings: Any, lib: Any, manager: Any) -> list[dict[str, Any]]:
    """The stored ValueSets the library and its includes declare."""
    import orjson

    from .search.query import QueryParser

    urls: set[str] = set()
    for other in manager.libraries():
        urls.update(d["id"] for d in other.valuesets.values())
    out = []
    for url in sorted(urls):
        q = QueryParser(settings.fhir_base(), strict=True, max_count=1000).parse("ValueSet", [("url", url)])
        q.count, q.total = 1000, "none"
        out.extend(orjson.loads(m.body) for m in gated.search(q).matches)
    return out


def _cql_json(value: Any) -> Any:
    """A CQL value as JSON for printing: lists and tuples as JSON, FHIR resources as their JSON, the rest as
    their CQL text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, list):
        return [_cql_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _cql_json(v) for k, v in value.items()}
    inner = getattr(value, "value", None)
    if type(value).__name__ == "Node" and isinstance(inner, (dict, str, bool, int)):
        return inner  # a FHIR element: its JSON
    return str(value)


def _gated(store: Any, settings: Any) -> Any:
    """The store as services reach it (through the authorization gate); the CLI acts under the SYSTEM grant."""
    from .auth.gated import GatedStore

    return GatedStore(store, settings.fhir_base(), opt_out=settings.provider_access_opt_out)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit")] = False) -> None:
    """FHIR R4 interoperability gateway for value-based care."""
    from .auth.context import SYSTEM, current

    current.set(SYSTEM)  # commands act for the operator running them: the explicit all-access grant


if __name__ == "__main__":
    app()

"""Settings from command-line flags and GATEWAY_* environment variables (pydantic-settings)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from .net.egress import EgressPolicy

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def default_database_url() -> str:
    return f"sqlite:///{Path('var/gateway.sqlite3').absolute()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=None, extra="ignore")

    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""  # public FHIR base; default http://HOST:PORT/fhir
    auth: str = "smart"  # smart | off
    auth_base_url: str = ""  # public URL of the /auth endpoints; default: the FHIR base's origin + /auth
    tls_cert: str = ""  # PEM certificate (chain) file: serve https directly (TLS 1.2 or later)
    tls_key: str = ""  # PEM private key file of tls_cert
    access_token_lifetime: int = 900  # seconds, app launch tokens (SMART: SHOULD be <= 3600)
    backend_token_lifetime: int = 300  # seconds, client_credentials tokens (Backend Services: SHOULD be <= 300)
    refresh_token_lifetime: int = 86400
    # failed sign-ins / token requests tolerated inside the window, per account (user name, client id) and
    # per client address, before 429 with Retry-After (0 turns that limit off)
    auth_account_failures: int = 5
    auth_address_failures: int = 30
    auth_failure_window: int = 900  # seconds
    # external identity provider whose access tokens are accepted too (validated with its JWKS)
    idp_issuer: str = ""
    idp_jwks_uri: str = ""
    idp_audience: str = ""  # default: the FHIR base
    demo: bool = False
    # the deployment's name and logo on the sign-in, consent and authorized-apps pages (logo: a PNG, JPEG or
    # SVG file the server reads and serves itself at /auth/logo)
    org_name: str = "FHIR VBC Gateway"
    org_logo: str = ""
    console_client_id: str = "console"  # the SMART client the console at /console/ signs its users in as
    profiles_dir: Path = REPO_PROFILES
    max_body_bytes: int = 32 * 1024 * 1024
    max_json_depth: int = 64  # nesting levels of a JSON request body (docs/security.md, hostile input)
    default_page_size: int = 20
    max_page_size: int = 1000
    # bounds on one search: parameters, OR-ed values (comma-separated) and chained/_has levels per parameter;
    # more is refused with 400 too-costly. On PostgreSQL a search statement running longer than
    # search_timeout_seconds is cancelled (400 too-costly); 0 turns the timeout off
    search_max_params: int = 50
    search_max_values: int = 400
    search_max_chain: int = 4
    search_timeout_seconds: float = 30.0
    # Library/$evaluate and $cql (gateway/cqlops): an evaluation running longer is stopped and answered 422
    # too-costly (0 turns the limit off); a $cql expression longer than cql_max_expression_chars is refused
    cql_timeout_seconds: float = 30.0
    cql_max_expression_chars: int = 10_000
    # validation level per entry point: strict rejects any defect, lenient stores and warns
    validation_rest: str = "strict"
    validation_load: str = "lenient"
    enforce_referential_integrity: bool = True  # for transaction bundles
    log_level: str = "INFO"
    executor: str = "inprocess"  # population runs: inprocess | processes[:N] | dask://host:port
    reporter: str = ""  # MeasureReport.reporter when a request names none, e.g. Organization/acme-health
    # where audit rows go: "" = beside a SQLite database file (<name>-audit.sqlite3), else the gateway database;
    # "same" = always the gateway database; or a database URL of its own
    audit_database_url: str = ""

    # Bulk Data export: where NDJSON files go, how big one file may grow, how long finished jobs stay
    export_dir: Path = Path("var/export")
    export_max_file_bytes: int = 64 * 1024 * 1024
    export_retention_seconds: int = 24 * 3600
    export_poll_min_seconds: float = 1.0  # a status poll sooner than this after the last one gets 429
    export_max_active_jobs: int = 4  # per client; more concurrent kick-offs get 429
    # the job core (resources/jobs.py): run the job worker in this process (exports, asynchronous
    # $care-gaps, bulk submissions), with this many threads; a job's lease lasts job_lease_seconds unless its
    # instance renews it (a third of it); past it another instance takes the job over
    export_worker: bool = True
    job_threads: int = 2
    job_lease_seconds: float = 30.0
    # SIGTERM: stop accepting work, let requests in flight finish, hand job leases back, and exit within
    # this many seconds whatever is still running (serve --shutdown-timeout)
    shutdown_timeout_seconds: float = 30.0
    # bulk submission ($bulk-submit, $bulk-submit-data): comma-separated allow-list of where manifests and
    # their files may be fetched from (scheme://host[:port][/path prefix]; empty: any address the egress
    # rules allow), and the largest file fetched
    bulk_submit_sources: str = ""
    bulk_submit_max_file_bytes: int = 256 * 1024 * 1024
    # this gateway's own SMART Backend Services client at Data Providers (a JSON file listing, per provider
    # URL prefix, the client id the provider registered and the private key file, JWK or PEM): used to run
    # the provider's $export (DEQM $bulk-submit-data exportType dynamic) and to fetch files that need a token
    bulk_submit_credentials: str = ""
    # the longest a provider's $export (dynamic submission) is waited for, polling as Retry-After asks
    bulk_submit_export_timeout_seconds: float = 3600.0
    # ATR list-change Subscriptions: a thread in this process sends the rest-hook notifications
    subscription_notifier: bool = True
    subscription_poll_seconds: float = 1.0
    # comma-separated allow-list of rest-hook endpoints: scheme://host[:port][/path prefix] (empty: any
    # endpoint the egress rules below allow)
    subscription_endpoints: str = ""
    # outbound calls (rest-hooks, JWKS): address classes (loopback, link-local, private, unique-local,
    # reserved) or networks (CIDR) they may reach besides public addresses; plain http allowed or not
    egress_allow_networks: str = ""
    egress_allow_http: bool = False
    # ATR $confirm-attribution-list: the IG says "SHALL return 201 Accepted" (201 is Created, 202 Accepted)
    atr_confirm_status: int = 201
    # Provider Access (PDex $provider-member-match, docs/guides/provider-access.md): the payer Organization/[id]
    # that manages the matched-member Groups (default: the payor of the first matched member's Coverage), and
    # members opted out of Provider Access by configuration (comma-separated Patient/[id] or member
    # identifiers system|value), besides the opt-out Consents and opt-out Groups stored
    provider_access_payer: str = ""
    provider_access_opt_out: str = ""
    # report matched-but-opted-out members as ConsentConstrainedMembers (PDex); false: report them as not
    # matched, for payers to whom a member's opt-out is itself sensitive
    provider_access_report_opt_outs: bool = True
    # absolute links (Bundle links, fullUrl, Location…) use base_url when it is set, else the request's own
    # scheme, host and port (api/baseurl.py). X-Forwarded-*/Forwarded headers are read only from these
    # proxy addresses (comma-separated IPs or networks; "" trusts none, "*" any): default loopback only
    trusted_proxies: str = "127.0.0.1,::1"
    # HMAC key of the paging cursors (search/cursor.py); empty: a random key per process (serve --workers N
    # hands one to its workers), so cursors end with the process
    paging_key: str = ""

    def egress_policy(self, allowed: str = "") -> EgressPolicy:
        """The outbound-call policy these settings describe, limited to the ``allowed`` destinations
        (comma-separated entries; empty: any); ValueError names a malformed setting."""
        from .net.egress import EgressPolicy

        return EgressPolicy.configure(self.egress_allow_networks, self.egress_allow_http, allowed)

    def resolved_database_url(self) -> str:
        return self.database_url or default_database_url()

    def resolved_audit_url(self, store_url: str) -> str | None:
        """The audit log's own database URL, or None for the gateway database. On SQLite a stream of audit
        inserts into the data file slows every read (readers keep the write-ahead log from being reset, so
        it grows and each page look-up searches it): the audit rows get a file of their own by default."""
        if self.audit_database_url == "same":
            return None
        if self.audit_database_url:
            return self.audit_database_url
        prefix = "sqlite:///"
        if not store_url.startswith(prefix) or store_url in ("sqlite:///:memory:",):
            return None
        path = Path(store_url[len(prefix):])
        return f"{prefix}{path.with_name(path.stem + '-audit' + (path.suffix or '.sqlite3'))}"

    def fhir_base(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}/fhir"


    def auth_base(self) -> str:
        if self.auth_base_url:
            return self.auth_base_url.rstrip("/")
        base = self.fhir_base()
        return (base[: -len("/fhir")] if base.endswith("/fhir") else base) + "/auth"


# the FHIR base URL of the request being served, when it is derived from the request (api/baseurl.py sets
# it per request; services read it through ``public_base``); None outside a request
_REQUEST_BASE: ContextVar[str | None] = ContextVar("gateway_request_base", default=None)


def public_base(default: str) -> str:
    """The FHIR base absolute URLs are built on: the current request's (set by the base-URL middleware when
    no base_url is configured) or else ``default``, the configured one. Background work outside any request
    (notifications, jobs) gets ``default``."""
    return _REQUEST_BASE.get() or default


def set_request_base(base: str | None) -> Token[str | None]:
    """Make ``base`` the current request's FHIR base (``reset_request_base`` with the token undoes it)."""
    return _REQUEST_BASE.set(base)


def reset_request_base(token: Token[str | None]) -> None:
    """Undo ``set_request_base``."""
    _REQUEST_BASE.reset(token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

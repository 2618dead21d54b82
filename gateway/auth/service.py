"""Wires the authorization server's parts on one database engine (the resource store's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Engine

from ..net.egress import EgressRefused, egress_client
from .assertions import JwksFetcher
from .audit import AuditLog
from .clients import ClientStore
from .keys import KeyRing
from .server import AuthServer
from .tables import AUDIT
from .throttle import Throttle
from .tokens import TokenService
from .users import linked_patient

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore


def audit_engine(settings: Any, store: SqlStore) -> Engine:
    """The gateway database's engine, or one on the audit log's own database (its table created there)."""
    url = settings.resolved_audit_url(store.url)
    if url is None or url == store.url:
        return store.engine
    from ..store.sql.store import make_engine

    engine = make_engine(url)
    AUDIT.create(engine, checkfirst=True)
    return engine


class Authority:
    def __init__(self, settings: Any, store: SqlStore, http: httpx.Client | None = None) -> None:
        engine = store.engine
        self.settings = settings
        self.store = store
        # the RestService that create_app hands over (over the raw store: the authorization server is part of
        # the trust boundary); typed loosely because services sit above auth in the layering
        self.rest: Any = None
        self.fhir_base = settings.fhir_base()
        self.auth_base = settings.auth_base()
        self.max_body = settings.max_body_bytes
        self.keys = KeyRing(engine)
        self.keys.ensure()
        # jwks_uri registrations and every JWKS fetch keep to the outbound-call policy (net/egress.py)
        self.egress = settings.egress_policy()
        self.clients = ClientStore(engine, self.egress)
        self.tokens = TokenService(engine, self.keys, issuer=self.fhir_base, audience=self.fhir_base)
        self.fetcher = JwksFetcher(http or egress_client(self.egress, timeout=5.0))
        if settings.idp_issuer:
            from .idp import ExternalIssuer

            self.tokens.external = ExternalIssuer(settings.idp_issuer, settings.idp_jwks_uri,
                                                  settings.idp_audience or self.fhir_base, self.fetcher)
            try:
                self.egress.check_url(self.tokens.external.jwks_uri)
            except EgressRefused as exc:
                raise ValueError(f"GATEWAY_IDP_JWKS_URI {exc} (see GATEWAY_EGRESS_ALLOW_NETWORKS, "
                                 "GATEWAY_EGRESS_ALLOW_HTTP)") from None
        self.server = AuthServer(engine, self.clients, self.tokens, self.fhir_base, self.token_url, self.fetcher,
                                 access_ttl=settings.access_token_lifetime,
                                 backend_ttl=settings.backend_token_lifetime,
                                 refresh_ttl=settings.refresh_token_lifetime)
        self.throttle = Throttle(engine, settings.auth_account_failures, settings.auth_address_failures,
                                 settings.auth_failure_window)
        self.server.patient_of = lambda fhir_user: linked_patient(store, fhir_user)
        self.audit = AuditLog(audit_engine(settings, store), store_engine=engine)

    @property
    def token_url(self) -> str:
        return f"{self.auth_base}/token"

    def endpoints(self) -> dict[str, str]:
        a = self.auth_base
        return {"authorize": f"{a}/authorize", "token": f"{a}/token", "introspect": f"{a}/introspect",
                "revoke": f"{a}/revoke", "jwks": f"{a}/jwks", "manage": f"{a}/manage",
                "register": f"{a}/admin/clients"}

"""The gateway as a client of a Data Provider's server, for bulk submission: fetching a manifest or a file,
SMART Backend Services authorization towards the provider, and a Bulk Data ``$export`` run at the provider
(DEQM ``$bulk-submit-data`` with ``exportType`` dynamic).

Every request goes through the egress client of ``net/egress.py`` under the bulk-submit policy (checked
URLs and addresses, the ``GATEWAY_BULK_SUBMIT_SOURCES`` allow-list, no redirects): the discovery document,
the token endpoint it names, the kick-off, each status poll and each file. A redirect answer is reported, never
followed.

The gateway's own Backend Services identity at a provider is configured per source
(``GATEWAY_BULK_SUBMIT_CREDENTIALS``, a JSON file): the client id the provider registered for this gateway and
the private key (JWK or PEM file) whose public half the provider holds."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from ..auth.assertion_client import token_form
from ..net.egress import EgressRefused, Target, parse_url, refusal

log = logging.getLogger("gateway.bulk")
NDJSON_ACCEPT = "application/fhir+ndjson, application/json"
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_RETRY_AFTER = 60.0  # a provider's Retry-After longer than this is waited this long, then polled again
DEFAULT_RETRY_AFTER = 2.0


class Failed(Exception):
    """One file, the manifest or the export could not be had: the reason, for the status report."""


@dataclass(frozen=True)
class Credential:
    """This gateway's Backend Services client at the provider(s) under ``source`` (a URL prefix)."""
    source: str
    client_id: str
    jwk: dict[str, Any]
    scope: str = "system/*.rs"


def _private_jwk(path: Path) -> dict[str, Any]:
    from joserfc.jwk import ECKey, RSAKey

    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        jwk = json.loads(data)
        if not isinstance(jwk, dict) or "d" not in jwk or jwk.get("kty") not in ("RSA", "EC"):
            raise ValueError(f"{path} is not a private RSA or EC JWK")
        key: Any = RSAKey.import_key(jwk) if jwk["kty"] == "RSA" else ECKey.import_key(jwk)
        out: dict[str, Any] = {**key.as_dict(private=True), **{k: v for k, v in jwk.items() if k in ("kid", "alg")}}
    else:
        try:
            key = RSAKey.import_key(data)
        except ValueError:
            key = ECKey.import_key(data)
        out = key.as_dict(private=True)
    if "d" not in out:
        raise ValueError(f"{path} holds a public key; the gateway signs with the private key")
    out.setdefault("kid", key.thumbprint())
    out.setdefault("alg", "RS384" if out["kty"] == "RSA" else "ES384")
    return out


def load_credentials(path: str) -> tuple[Credential, ...]:
    """The configured identities: a JSON list of ``{"source", "clientId", "keyFile", "scope"?}`` (``keyFile``
    relative to the JSON file). ValueError names what is wrong, so a bad setting stops the start."""
    if not path:
        return ()
    file = Path(path)
    try:
        items = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"bulk submit credentials {path}: {exc}") from None
    if not isinstance(items, list):
        raise ValueError(f"bulk submit credentials {path}: a JSON list of {{source, clientId, keyFile}}")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("source", "clientId",
                                                                                          "keyFile")):
            raise ValueError(f"bulk submit credentials {path} item {n}: source, clientId and keyFile are strings")
        try:
            parse_url(item["source"])
            jwk = _private_jwk(file.parent / item["keyFile"])
        except (EgressRefused, OSError, ValueError) as exc:
            raise ValueError(f"bulk submit credentials {path} item {n}: {exc}") from None
        out.append(Credential(item["source"], item["clientId"], jwk, str(item.get("scope") or "system/*.rs")))
    return tuple(out)


def under(url: str, prefix: str) -> bool:
    """Whether ``url`` is ``prefix`` or below it: same scheme, host and port, and a path under the prefix's
    (compared on the parsed, normalised URLs)."""
    try:
        t, p = parse_url(url), parse_url(prefix)
    except EgressRefused:
        return False
    return _below(t, p)


def _below(t: Target, p: Target) -> bool:
    if (t.scheme, t.host, t.port) != (p.scheme, p.host, p.port):
        return False
    return p.path in ("/", "") or t.path == p.path or t.path.startswith(p.path.rstrip("/") + "/")


def credential_for(credentials: tuple[Credential, ...], url: str) -> Credential | None:
    """The identity configured for the provider at ``url`` (the longest matching source prefix)."""
    found = [c for c in credentials if under(url, c.source)]
    return max(found, key=lambda c: len(c.source)) if found else None


def fetch(client: httpx.Client, url: str, limit: int, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` through the egress client; the body, at most ``limit`` bytes (Failed otherwise)."""
    try:
        with client.stream("GET", url, headers={"Accept": NDJSON_ACCEPT, **(headers or {})}) as r:
            if 300 <= r.status_code < 400:
                raise Failed(f"{url} answered {r.status_code} (a redirect): redirects are not followed")
            if r.status_code != 200:
                raise Failed(f"{url} answered {r.status_code}")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise Failed(f"{url} is {declared} bytes, more than the {limit} a file may have")
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise Failed(f"{url} is larger than the {limit} bytes a file may have")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise _transport_failure(url, exc) from None


def _transport_failure(url: str, exc: httpx.HTTPError) -> Failed:
    why = refusal(exc)
    return Failed(f"{url} refused: {why}" if why else f"{url} could not be reached: {exc}")


def _diagnostics(r: httpx.Response) -> str:
    """What an error answer says: an OperationOutcome's diagnostics, an OAuth error, or the status alone."""
    try:
        body = orjson.loads(r.content[:65536])
    except orjson.JSONDecodeError:
        return f"answered {r.status_code}"
    if isinstance(body, dict):
        if body.get("resourceType") == "OperationOutcome":
            texts = [str(i.get("diagnostics") or i.get("code")) for i in body.get("issue") or [] if isinstance(i, dict)]
            return f"answered {r.status_code}: {'; '.join(texts)[:500]}"
        if "error" in body:
            return f"answered {r.status_code}: {body.get('error')} {str(body.get('error_description') or '')[:300]}"
    return f"answered {r.status_code}"


def _send(client: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
    try:
        r = client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        raise _transport_failure(url, exc) from None
    if 300 <= r.status_code < 400:
        raise Failed(f"{url} answered {r.status_code} (a redirect): redirects are not followed")
    return r


def retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait before the next status poll: the provider's ``Retry-After`` (seconds or an HTTP date),
    within [0.5, MAX_RETRY_AFTER]; DEFAULT_RETRY_AFTER without one."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    if value.isdigit():
        wait = float(value)
    else:
        try:
            wait = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(0.5, wait))


class ProviderAuth:
    """Access tokens at one provider for this gateway's identity: the token endpoint found in the discovery
    document (``oauthMetadataUrl``, else ``[fhirBaseUrl]/.well-known/smart-configuration``), a client assertion
    signed with the configured key, one token per scope, reused until a minute before it expires."""

    def __init__(self, client: httpx.Client, credential: Credential | None, metadata_url: str | None) -> None:
        self.client = client
        self.credential = credential
        self.metadata_url = metadata_url
        self._token_url: str | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def token_url(self) -> str:
        """The provider's token endpoint, from its discovery document."""
        if self._token_url is not None:
            return self._token_url
        if not self.metadata_url:
            raise Failed("The provider's files need an access token, but the request named neither "
                         "oauthMetadataUrl nor fhirBaseUrl to find its authorization server")
        r = _send(self.client, "GET", self.metadata_url, headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise Failed(f"The authorization metadata at {self.metadata_url} {_diagnostics(r)}")
        try:
            conf = orjson.loads(r.content[:MAX_JSON_BYTES])
        except orjson.JSONDecodeError:
            raise Failed(f"The authorization metadata at {self.metadata_url} is not JSON") from None
        url = conf.get("token_endpoint") if isinstance(conf, dict) else None
        if not isinstance(url, str):
            raise Failed(f"The authorization metadata at {self.metadata_url} names no token_endpoint")
        self._token_url = url
        return url

    def token(self, scope: str) -> str:
        """An access token for ``scope`` (Failed says why the provider gave none)."""
        held = self._tokens.get(scope)
        if held is not None and held[1] > time.time():
            return held[0]
        if self.credential is None:
            raise Failed("The provider's files need an access token, and this gateway has no Backend Services "
                         "client configured for it (GATEWAY_BULK_SUBMIT_CREDENTIALS)")
        url = self.token_url()
        r = _send(self.client, "POST", url, data=token_form(self.credential.jwk, self.credential.client_id, url,
                                                              scope), headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise Failed(f"The provider's token endpoint {url} refused this gateway's client "
                         f"{self.credential.client_id}: {_diagnostics(r)}")
        try:
            body = orjson.loads(r.content[:MAX_JSON_BYTES])
            token, lifetime = str(body["access_token"]), float(body.get("expires_in") or 300)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise Failed(f"The provider's token endpoint {url} answered without an access token") from None
        self._tokens[scope] = (token, time.time() + max(0.0, lifetime - 60))
        return token

    def drop(self, scope: str) -> None:
        """Forget the token for ``scope`` (the provider refused it): the next call gets a new one."""
        self._tokens.pop(scope, None)


def read_scope(types: list[str] | None, fallback: str) -> str:
    """The read scopes of ``types`` (``system/[type].rs``), or ``fallback`` when no types are known."""
    clean = sorted({t for t in types or [] if t.isalnum()})
    return " ".join(f"system/{t}.rs" for t in clean) if clean else fallback


def run_export(client: httpx.Client, auth: ProviderAuth | None, export_url: str, kickoff: dict[str, Any],
               scope: str, deadline: float, alive: Callable[[], bool], remember: Callable[[str], bool],
               status_url: str | None = None, base: str | None = None) -> tuple[str, dict[str, Any]]:
    """Run a Bulk Data export at the provider: kick off at ``export_url`` (POST, a Parameters body with the
    ``kickoff`` parameters) unless ``status_url`` says an earlier attempt did, then poll the status URL,
    waiting what each ``Retry-After`` asks (bounded), until the manifest comes or ``deadline`` passes.
    ``remember(status_url)`` records the status URL (False: the job is no longer ours); ``alive()`` is False
    once the job was cancelled or taken over; a status URL outside ``base`` (the provider's FHIR base) is
    refused, so the provider's token goes nowhere else. Returns (status URL, manifest)."""

    def headers(extra: dict[str, str]) -> dict[str, str]:
        return {**extra, "Authorization": f"Bearer {auth.token(scope)}"} if auth is not None else extra

    if status_url is None:
        body = {"resourceType": "Parameters", "parameter": [
            {"name": name, "valueString": str(v)} for name, values in kickoff.items()
            for v in (values if isinstance(values, list) else [values])]}
        r = _send(client, "POST", export_url, json=body, headers=headers(
            {"Accept": "application/fhir+json", "Prefer": "respond-async"}))
        if r.status_code != 202 or not r.headers.get("content-location"):
            raise Failed(f"The export kick-off at {export_url} {_diagnostics(r)}"
                         + (" without a Content-Location" if r.status_code == 202 else ""))
        status_url = str(httpx.URL(export_url).join(r.headers["content-location"]))
        if base and not under(status_url, base):
            raise Failed(f"The export kick-off at {export_url} named the status URL {status_url}, which is not under "
                         f"the provider's FHIR base {base}: the access token is sent only there")
        if not remember(status_url):
            raise Failed("lost")
    retried = False
    while True:
        if not alive():
            raise Failed("lost")
        r = _send(client, "GET", status_url, headers=headers({"Accept": "application/json"}))
        if r.status_code == 401 and auth is not None and not retried:
            auth.drop(scope)  # expired or revoked: one new token, then the answer stands
            retried = True
            continue
        if r.status_code == 200:
            try:
                manifest = orjson.loads(r.content[:MAX_JSON_BYTES])
            except orjson.JSONDecodeError:
                raise Failed(f"The export status {status_url} answered 200 without a JSON manifest") from None
            if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                raise Failed(f"The export status {status_url} answered 200 without a manifest (no output list)")
            return status_url, manifest
        if r.status_code != 202:
            raise Failed(f"The export at {status_url} failed: {_diagnostics(r)}")
        retried = False
        wait = retry_after(r.headers.get("retry-after"))
        if time.time() + wait > deadline:
            raise Failed(f"The export at {export_url} did not finish in the time this gateway waits for one "
                         "(GATEWAY_BULK_SUBMIT_EXPORT_TIMEOUT_SECONDS)")
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not alive():
                raise Failed("lost")
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))


def release_export(client: httpx.Client, auth: ProviderAuth | None, status_url: str, scope: str) -> None:
    """Tell the provider its export's files are no longer needed (DELETE of the status URL, as the Bulk Data
    text lets a client do once it has its files); best effort: a refusal or an error is only logged."""
    try:
        headers = {"Authorization": f"Bearer {auth.token(scope)}"} if auth is not None else {}
        r = _send(client, "DELETE", status_url, headers=headers)
        if r.status_code >= 400:
            log.info("the provider kept its export %s: DELETE %s", status_url, _diagnostics(r))
    except Failed as exc:
        log.info("the provider's export %s was not released: %s", status_url, exc)

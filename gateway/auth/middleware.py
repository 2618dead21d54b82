"""The one place every /fhir request is authenticated and authorized (pure ASGI middleware).

For each request it finds the route that will serve it, asks ``policy`` which scopes that route needs, and
refuses with 401 (no or bad token) or 403 (insufficient scope) as an OperationOutcome. Routes added later
are covered without any change here: an unknown route is refused until ``policy`` names it. It sets the
grant in ``context.current`` (``SYSTEM`` under ``--auth off``) for the store gate (``gate.py``), which decides
on every read and write of stored data; under patient/ scopes it also refuses early what the route alone
shows to be outside the launch patient's compartment, and filters every response body (``confine``), as
defence in depth."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool

from ..fhir import jsonio
from ..fhir.errors import BadRequest, FhirError, NotFound, PayloadTooLarge, Unauthorized
from ..fhir.rest_url import parse_request
from . import policy
from .compartment import compartment_types, in_compartment
from .confine import Confiner
from .context import SYSTEM, Grant, acting_as, current
from .groups import caller_identifiers, group_visible, restricted
from .routing import RouteTable

log = logging.getLogger("gateway.auth")
WRITES = {"create", "update", "patch", "delete", "conditional-update", "conditional-delete"}
SINGLE = {"read", "vread"}  # one resource of a type the scope check has covered already
ACTION = {"create": "C", "update": "U", "patch": "U", "delete": "D", "conditional-update": "U",
          "conditional-delete": "D", "operation": "E", "transaction": "E"}


async def _send_error(send: Any, exc: FhirError) -> None:
    body = orjson.dumps(exc.outcome())
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    def __init__(self, app: Any, authority: Any) -> None:
        self.app = app
        self.authority = authority
        self.routes = RouteTable()

    # -- routing -----------------------------------------------------------------------------------------
    def match(self, scope: dict[str, Any], path: str | None = None, method: str | None = None
              ) -> tuple[str | None, dict[str, str], bool]:
        """(route template, path params, path matched with another method) for the route that will serve."""
        return self.routes.match(scope["app"], path or scope["path"], method or scope["method"])

    # -- the request -------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not (scope["path"] == "/fhir" or scope["path"].startswith("/fhir/")):
            await self.app(scope, receive, send)
            return
        if self.authority is None:  # --auth off: every request acts with the explicit all-access grant
            with acting_as(SYSTEM):
                await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":  # preflight: no token, and no stored data is reached
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        template, params, _ = self.match(scope, method=method)
        qs = scope.get("query_string", b"")
        query = parse_qsl(qs.decode("latin-1"), keep_blank_values=True) if qs else []
        access = policy.classify(method, template, params, query) if template else policy.AccessRequest("unknown")
        state = scope.setdefault("state", {})
        if access.interaction == "public":
            await self.app(scope, receive, send)
            return
        body: bytes | None = None
        grant: Grant | None = None
        try:
            grant = self.authenticate(scope)
            if template is None:  # no such route: let the app say 404/405, to authenticated callers only
                access = policy.AccessRequest("none")
            else:
                if method in ("POST", "PUT", "PATCH") and (access.interaction == "transaction" or grant.patient
                                                           or access.interaction == "operation"):
                    body, receive = await _buffer(receive, self.authority.max_body)
                self.authorize(scope, grant, access, query, body)
        except FhirError as exc:
            await self._audit(scope, grant, access, exc.status)
            log.info("request refused", extra={"status": exc.status, "path": scope["path"],
                                               "reason": exc.diagnostics})
            await _send_error(send, exc)
            return
        state.update(client_id=grant.client_id, scopes=grant.scopes.to_string(), patient=grant.patient,
                     grant=grant)
        status_box = [0]
        filtering = scope["method"] != "HEAD" and access.interaction not in WRITES | {"none"} and (
            bool(grant.scopes.levels() & {"patient"}) or restricted(grant.fhir_user)
            or (access.interaction not in SINGLE and not _reads_everything(grant)))
        token = current.set(grant)
        try:
            if filtering:
                await self.app(scope, receive, self._confining_send(send, grant, access, status_box))
            else:
                async def tap(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        status_box[0] = message["status"]
                    await send(message)

                await self.app(scope, receive, tap)
        finally:
            current.reset(token)
            await self._audit(scope, grant, access, status_box[0])

    async def _audit(self, scope: dict[str, Any], grant: Grant | None, access: policy.AccessRequest,
                     status: int) -> None:
        if self.authority.audit.record(scope, grant, access, status):
            await run_in_threadpool(self.authority.audit.flush)

    def authenticate(self, scope: dict[str, Any]) -> Grant:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            raise Unauthorized("An access token is required (Authorization: Bearer <token>)",
                               headers={"WWW-Authenticate": f'Bearer realm="{self.authority.fhir_base}"'})
        kind, _, token = header.decode("latin-1").partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must carry a Bearer token",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_request"'})
        return self.authority.tokens.validate(token.strip())

    def authorize(self, scope: dict[str, Any], grant: Grant, access: policy.AccessRequest,
                  query: list[tuple[str, str]], body: bytes | None) -> None:
        if access.interaction == "transaction":
            self._transaction(scope, grant, body)
            return
        if access.policy is not None and body and access.policy.type_names():  # types listed in the body too
            access = policy.with_body_types(access, query, [v for name in access.policy.type_names()
                                                            for v in _parameter_values(body, name)])
        policy.check(grant.scopes, access)
        if access.interaction in ("create", "update", "conditional-update") and any(
                k == b"x-provenance" for k, _ in scope["headers"]):  # the header writes a Provenance too
            policy.check(grant.scopes, policy.AccessRequest("create", "Provenance",
                                                            needs=[policy.Need("Provenance", "c")]))
        self._subject_groups(grant, access, query, body)
        self._compartment(grant, access, query, body)

    def _transaction(self, scope: dict[str, Any], grant: Grant, body: bytes | None) -> None:
        bundle = jsonio.loads(body or b"", self.authority.settings.max_json_depth)  # bounded depth, no NUL
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            req = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(req, dict):
                continue  # the bundle processor reports malformed entries
            method, url = str(req.get("method", "")).upper(), req.get("url")
            if not isinstance(url, str):
                continue  # the bundle processor reports an entry without a URL
            try:  # the one reading of an entry URL, the one the bundle processor executes
                route = parse_request(method, url, self.authority.fhir_base)
            except FhirError:
                continue  # a 400/404/405 the processor reports for this entry, running nothing
            q = route.query_pairs
            inner = policy.classify("GET" if route.method == "HEAD" else route.method, route.template,
                                    route.params, q)
            if inner.interaction in ("transaction", "public"):
                inner = policy.AccessRequest("unknown")
            try:
                policy.check(grant.scopes, inner)
                res = entry.get("resource")
                self._subject_groups(grant, inner, q, orjson.dumps(res) if isinstance(res, dict) else None)
                self._compartment(grant, inner, q, orjson.dumps(res) if isinstance(res, dict) else None)
            except FhirError as exc:
                raise FhirError(f"Bundle.entry[{i}] ({method} {url}): {exc.diagnostics}", status=exc.status,
                                code=exc.code, headers=exc.headers) from None

    def _compartment(self, grant: Grant, access: policy.AccessRequest, query: list[tuple[str, str]],
                     body: bytes | None) -> None:
        """patient/ scopes: the launch patient's compartment bounds compartment searches and operation
        subjects (early refusals; the store gate decides on the data itself)."""
        rtype = access.rtype
        if access.interaction == "operation":
            pol = access.policy
            if pol is None or not any(s.level == "patient" for s in grant.scopes.resource):
                return
            if any(s.level in ("user", "system") and s.covers("*", "s") for s in grant.scopes.resource):
                return
            pid = self._patient(grant)
            if rtype == "Patient" and access.rid and access.rid != pid:
                raise policy.Denied("patient/ scopes allow operations on the launch patient only")
            if pol.subject_param:
                subjects = [v for k, v in query if k == pol.subject_param]
                if body:
                    subjects += _parameter_values(body, pol.subject_param)
                if not subjects:
                    raise policy.Denied(f"Under patient/ scopes ${access.operation} needs "
                                        f"{pol.subject_param}=Patient/{pid}")
                if any(s.split("/_history")[0].removeprefix(self.authority.fhir_base + "/") != f"Patient/{pid}"
                       for s in subjects):
                    raise policy.Denied(f"patient/ scopes allow {pol.subject_param}=Patient/{pid} only")
            return
        if access.interaction == "search-compartment" and rtype is not None and policy.confined(
                grant.scopes, rtype, "s") and access.rid != self._patient(grant):
            raise policy.Denied("patient/ scopes allow the launch patient's compartment only")
        # reads of single resources and every write are decided by the store gate (auth/gate.py), which sees
        # the stored version and the new one whatever route or Bundle entry made the change; a body sent to
        # another patient's compartment is refused here already, before anything is read or validated
        if rtype is None or access.interaction not in ("create", "update", "conditional-update") or body is None:
            return
        if not policy.confined(grant.scopes, rtype, policy.LETTER[access.interaction]) or (
                rtype != "Patient" and rtype not in compartment_types()):
            return
        try:
            resource = jsonio.loads(body, self.authority.settings.max_json_depth)
        except BadRequest:
            return  # the route reports the bad body
        if isinstance(resource, dict) and not in_compartment(resource, self._patient(grant)):
            raise policy.Denied(f"patient/ scopes allow writes in Patient/{grant.patient}'s compartment only")

    def _stored_group(self, gid: str) -> dict[str, Any] | None:
        """The Group ``gid`` as stored (the response confiner judges a subsetted Group on it)."""
        stored = self.authority.store.read("Group", gid)
        if stored is None or stored.content is None:
            return None
        res = orjson.loads(stored.content)
        return res if isinstance(res, dict) else None

    def _group(self, grant: Grant, access: policy.AccessRequest) -> None:
        """ATR: a caller acting for an organization or practitioner reaches only its own Groups."""
        if access.rtype != "Group" or not access.rid or not restricted(grant.fhir_user):
            return
        stored = self.authority.store.read("Group", access.rid)
        if stored is not None and stored.content is not None and \
                not group_visible(orjson.loads(stored.content), str(grant.fhir_user),
                                  caller_identifiers(grant, self.authority.store)):
            raise NotFound(f"Group/{access.rid} is not known")

    def _subject_groups(self, grant: Grant, access: policy.AccessRequest, query: list[tuple[str, str]],
                        body: bytes | None) -> None:
        """ATR: a caller acting for an organization or practitioner may name as an operation's subject
        (``subject=Group/<id>``, as its declaration's subject parameter says) only a Group it can see;
        evaluating a measure over another list would reveal who is on it. Others answer 404."""
        pol = access.policy
        if access.interaction != "operation" or pol is None or not pol.subject_param or \
                not restricted(grant.fhir_user):
            return
        subjects = [v for k, v in query if k == pol.subject_param]
        if body:
            subjects += _parameter_values(body, pol.subject_param)
        for subject in subjects:
            rtype, _, rid = subject.removeprefix(self.authority.fhir_base + "/").partition("/")
            if rtype == "Group" and rid:
                self._group(grant, policy.AccessRequest("operation", "Group", rid.split("/")[0]))

    @staticmethod
    def _patient(grant: Grant) -> str:
        if not grant.patient:
            raise policy.Denied("patient/ scopes need a launch patient, and this token has none")
        return grant.patient

    # -- the response ------------------------------------------------------------------------------------
    def _confining_send(self, send: Any, grant: Grant, access: policy.AccessRequest, status_box: list[int]) -> Any:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        need_read = access.interaction != "transaction"

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                status_box[0] = message["status"]
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await self._emit(send, start, b"".join(chunks), grant, need_read, status_box)

        return wrapped

    async def _emit(self, send: Any, start: dict[str, Any], raw: bytes, grant: Grant, need_read: bool,
                    status_box: list[int]) -> None:
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if raw and b"ndjson" in ctype and start.get("status", 200) < 300:
            ids = caller_identifiers(grant, self.authority.store) if restricted(grant.fhir_user) else frozenset()
            raw = _confine_ndjson(raw, Confiner(grant, need_read, ids))
        elif raw and b"json" in ctype and start.get("status", 200) < 300:
            ids = caller_identifiers(grant, self.authority.store) if restricted(grant.fhir_user) else frozenset()
            filtered = Confiner(grant, need_read, ids, self._stored_group).filter(orjson.loads(raw))
            if filtered is None:
                exc = NotFound("The resource is not known, or not within the granted scopes")
                status_box[0] = exc.status
                await _send_error(send, exc)
                return
            raw = orjson.dumps(filtered)
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


def _confine_ndjson(raw: bytes, confiner: Confiner) -> bytes:
    """An NDJSON body (a bulk export file) filtered line by line: each line is one resource, kept only when
    the grant may see it. (Parsed as one JSON document the body is invalid as soon as it has two lines.)"""
    kept = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        filtered = confiner.filter(orjson.loads(line))
        if filtered is None:
            confiner.removed += 1
            continue
        kept.append(orjson.dumps(filtered))
    return b"".join(k + b"\n" for k in kept)


def _reads_everything(grant: Grant) -> bool:
    """A user/ or system/ scope reads and searches every type: responses need no filtering."""
    memo = grant.scopes.memo
    hit = memo.get(("reads-everything",))
    if hit is None:
        hit = memo[("reads-everything",)] = any(
            s.rtype == "*" and {"r", "s"} <= s.perms and not s.query and s.level != "patient"
            for s in grant.scopes.resource)
    return bool(hit)


def _parameter_values(body: bytes, name: str) -> list[str]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict) or doc.get("resourceType") != "Parameters":
        return []
    out = []
    for p in doc.get("parameter") or []:
        if isinstance(p, dict) and p.get("name") == name:
            v = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(v, dict):
                v = v.get("reference")
            if isinstance(v, str):
                out.append(v)
    return out


async def _buffer(receive: Any, limit: int) -> tuple[bytes, Any]:
    chunks = []
    more = True
    size = 0
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


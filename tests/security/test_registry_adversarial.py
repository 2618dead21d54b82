"""Adversarial suite: every operation in the registry and every REST interaction, against every kind of token,
with real tokens signed by the gateway, on SQLite and PostgreSQL.

Cases are generated: the operation cases from the registry (gateway/app.py) (every declared method and path, with the
subject variants a patient app could try), the REST cases from ``policy.ROUTES`` (each aimed at another
patient's data). A new operation or route is covered without new test code. What each token may do is modelled
here independently of the policy code, from the declaration alone (needs, scope levels, subject rule):

- no token: 401;
- scopes that do not cover the declared needs: 403;
- patient/ scopes reaching outside the launch patient's compartment: 404 for reads (existence is not
  revealed), 403 for writes, compartment searches and operation subjects;
- a filtered scope (``?category=laboratory``): a resource outside the filter reads as 404, never appears;
- an attribution-restricted user (a Practitioner fhirUser): a Group it is not attributed to reads as 404;
- the admin scope (``__admin``) carries no FHIR access: 403.

Every refused request answers an OperationOutcome that holds no resource data and no totals, and leaves the
store unchanged; every allowed answer to a confined token holds nothing of the other patient.

Cases the current code still fails belong to other parts of issue 13 and are listed in ``PENDING`` with the
defect they belong to; they are reported, not hidden: ``test_pending_cases_are_real`` proves each still
exists as a generated case, and removing an entry enables it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import REGISTRY
from gateway.auth import policy
from gateway.operations import ANY_TYPE, PATH_TYPE, SCOPE_LEVELS, Need, Operation
from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import RESOURCE
from tests.conftest import make_client
from tests.smart.conftest import bearer, make_auth_client

P1, P2 = "p1", "p2"
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
# strings that only the other patient's data (or data outside a scope's filter, or a hidden Group) contains
P2_MARKERS = ("MARKERP2", "Zyxwardtwo", "1901-02-03")
VITAL_MARKER = "MARKERP1VITAL"
GROUP_MARKER = "MARKERGROUPG1"
DATA: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": P1, "name": [{"family": "Ownfamily"}], "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": P2, "name": [{"family": "Zyxwardtwo", "given": ["MARKERP2name"]}],
     "birthDate": "1901-02-03", "managingOrganization": {"reference": "Organization/payer"}},
    {"resourceType": "Observation", "id": "obs-p1-lab", "status": "final", "category": [LAB],
     "code": {"text": "own lab"}, "subject": {"reference": f"Patient/{P1}"}},
    {"resourceType": "Observation", "id": "obs-p1-vital", "status": "final", "category": [VITAL],
     "code": {"text": VITAL_MARKER}, "subject": {"reference": f"Patient/{P1}"}},
    {"resourceType": "Observation", "id": "obs-p2", "status": "final", "category": [LAB],
     "code": {"text": "MARKERP2lab"}, "subject": {"reference": f"Patient/{P2}"}},
    {"resourceType": "Condition", "id": "cond-p2", "code": {"text": "MARKERP2condition"},
     "subject": {"reference": f"Patient/{P2}"}},
    {"resourceType": "Practitioner", "id": "dr-other", "identifier": [
        {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999999"}]},
    {"resourceType": "Organization", "id": "payer", "name": "Payer"},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "name": GROUP_MARKER,
     "managingEntity": {"reference": "Organization/payer"},
     "member": [{"entity": {"reference": f"Patient/{P2}", "display": "MARKERP2member"}}]},
    {"resourceType": "Measure", "id": "m1", "status": "active", "url": "http://example.org/Measure/m1",
     "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                             "code": "proportion"}]}},
]


# -- token kinds: the scopes each holds, modelled as (level, type, letters) grants ------------------------
@dataclass(frozen=True)
class Kind:
    name: str
    scope: str | None  # None: no token at all
    grants: tuple[tuple[str, str, str], ...] = ()
    patient: str | None = None
    fhir_user: str | None = None
    filtered: bool = False

    @property
    def confined(self) -> bool:
        return bool(self.grants) and all(level == "patient" for level, _, _ in self.grants)

    @property
    def restricted(self) -> bool:
        return self.fhir_user is not None

    @property
    def other_scopes(self) -> frozenset[str]:
        """The scopes it holds that are not resource scopes (gateway-defined ones such as gateway.feeds.read)."""
        return frozenset(t for t in (self.scope or "").split() if "/" not in t)

    def covers(self, need: Need, levels: frozenset[str]) -> bool:
        return any(level in levels and (rtype == "*" or rtype == need.rtype) and set(need.letters) <= set(letters)
                   for level, rtype, letters in self.grants)

    def forbidden_markers(self) -> tuple[str, ...]:
        out: tuple[str, ...] = ()
        if self.confined:
            out += P2_MARKERS
        if self.filtered:
            out += (VITAL_MARKER,)
        if self.restricted:
            out += (GROUP_MARKER, "MARKERP2member")
        return out


KINDS = (
    Kind("none", None),
    Kind("patient-v1-read", "patient/*.read", (("patient", "*", "rs"),), P1),
    Kind("patient-v2-read", "patient/*.rs", (("patient", "*", "rs"),), P1),
    Kind("patient-v2-write", "patient/*.cud", (("patient", "*", "cud"),), P1),
    Kind("patient-observation", "patient/Observation.rs", (("patient", "Observation", "rs"),), P1),
    Kind("patient-filtered", "patient/Observation.rs?category=laboratory", (("patient", "Observation", "rs"),), P1,
         filtered=True),
    Kind("user", "user/*.rs", (("user", "*", "rs"),)),
    Kind("system-read", "system/*.rs", (("system", "*", "rs"),)),
    Kind("attribution-restricted", "user/*.rs", (("user", "*", "rs"),), fhir_user="Practitioner/dr-other"),
    # the gateway-defined scopes of the Data feeds operations, at user level and (refused) at patient level
    Kind("user-feeds", "user/*.rs gateway.feeds.read gateway.jobs.read-all", (("user", "*", "rs"),)),
    Kind("patient-feeds", "patient/*.rs gateway.feeds.read gateway.jobs.read-all", (("patient", "*", "rs"),), P1),
    Kind("admin", "__admin"),
)


# -- cases ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    method: str
    url: str  # under /fhir
    needs: tuple[Need, ...]
    levels: frozenset[str] = SCOPE_LEVELS
    body: Any = None
    content_type: str = "application/fhir+json"
    outside: str | None = None  # how the case reaches outside a confined token's reach: read | write | group
    filter_outside: bool = False  # the target is outside the filtered scope's filter
    writes: bool = False
    empty_when_confined: bool = False  # an allowed answer to a confined token must match nothing
    state_changing_allowed: bool = False  # an allowed call would change the store (skipped for allowed kinds)
    batch_read: bool = False  # a batch of reads: refused entry by entry inside a 200 batch-response
    refused_for_all: frozenset[int] = frozenset()  # statuses refusing it whatever the token (e.g. 400)
    confined_by_search: bool = False  # a conditional write whose search the gate confines: may match nothing
    scopes: frozenset[str] = frozenset()  # gateway-defined scopes the declaration requires besides its needs
    extra: dict[str, Any] = field(default_factory=dict)


def _params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": k, "valueString": v} for k, v in pairs]}


def _fill(path: str, rtype: str | None) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"rtype": rtype or "Observation", "measure_id": "m1", "group_id": "g1",
                                           "rid": "m1", "pid": P2, "job_id": "no-such-job", "name": "x.ndjson",
                                           "run_id": "0" * 32,
                                           "fmt": "claims-csv"}[m.group(1)], path)


def operation_cases() -> Iterator[Case]:
    """Every declared (method, path) of every operation, with subject variants where the declaration has a
    subject rule."""
    for op in REGISTRY:
        for e in op.endpoints:
            types = ("Patient", "Observation") if ANY_TYPE in e.types else (e.types or (None,))
            for t in types:
                path = _fill(e.path(op.code, t), t)
                needs = tuple(Need(t or "*", n.letters) if n.rtype == PATH_TYPE else n for n in op.needs)
                group = "group" if t == "Group" and e.level == "instance" else None
                # an instance-level Patient operation names its patient in the path ({pid}): aimed at the other
                # patient it reaches outside a confined token's compartment (refused like a subject), and the
                # launch patient's own call must be let through without revealing anything of the other
                subject = "subject" if t == "Patient" and e.level == "instance" and e.id_param == "pid" else None
                for method in e.methods:
                    yield from _op_variants(op, method, path, needs, group or subject)
                    if subject:
                        own = path.replace(f"/Patient/{P2}/", f"/Patient/{P1}/")
                        yield from _op_variants(op, method, own, needs, None, " own patient")


def _op_variants(op: Operation, method: str, path: str, needs: tuple[Need, ...], outside: str | None,
                 label: str = "") -> Iterator[Case]:
    base = dict(needs=needs, levels=op.scope_levels, outside=outside, state_changing_allowed=op.affects_state,
                writes=op.affects_state, scopes=op.scopes)
    key = f"{op.key} {method} {path}{label}"
    if path.endswith("/$validate"):
        rtype = path.split("/")[1]
        yield Case(key, method, path, body={"resourceType": rtype}, **base)  # type: ignore[arg-type]
        return
    variants: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    if op.subject_param:
        variants += [(f" {op.subject_param}=other", [(op.subject_param, f"Patient/{P2}")]),
                     (f" {op.subject_param}=group", [(op.subject_param, "Group/g1")]),
                     (f" {op.subject_param}=own", [(op.subject_param, f"Patient/{P1}")])]
    for label, pairs in variants:
        own = label.endswith("=own")
        reach = None if own or not op.subject_param else ("subject-group" if label.endswith("=group") else "subject")
        sub = {**base, "outside": base["outside"] or reach}
        if method == "GET":
            q = "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs)
            yield Case(key + label, method, path + (f"?{q}" if q else ""), **sub)  # type: ignore[arg-type]
        else:
            yield Case(key + label, method, path, body=_params(pairs), **sub)  # type: ignore[arg-type]


OBS_P2 = next(r for r in DATA if r["id"] == "obs-p2")


def rest_cases() -> Iterator[Case]:
    """Every RESTful route of the policy table, aimed at the other patient's data (and, for the filtered
    scope, at the launch patient's own data outside the filter)."""
    moved = [{"op": "replace", "path": "/subject/reference", "value": f"Patient/{P2}"}]
    new_p2 = {"resourceType": "Observation", "status": "final", "code": {"text": "MARKERP2new"},
              "subject": {"reference": f"Patient/{P2}"}}
    for (method, template), interaction in policy.ROUTES.items():
        if interaction in ("public",) or template.endswith("/"):
            continue
        letter = policy.LETTER.get(interaction)
        if interaction == "transaction":
            yield Case(f"transaction {method} batch read", method, "", (Need("Observation", "r"),),
                       body={"resourceType": "Bundle", "type": "batch", "entry": [
                           {"request": {"method": "GET", "url": "Observation/obs-p2"}}]}, outside="read",
                       batch_read=True)
            yield Case(f"transaction {method} create for another patient", method, "", (Need("Observation", "c"),),
                       body={"resourceType": "Bundle", "type": "transaction", "entry": [
                           {"resource": new_p2, "request": {"method": "POST", "url": "Observation"}}]},
                       outside="write", writes=True)
            yield Case(f"transaction {method} operation url runs as create", method, "",
                       (Need("Measure", "c"),),
                       body={"resourceType": "Bundle", "type": "transaction", "entry": [
                           {"resource": {"resourceType": "Measure", "status": "draft"},
                            "request": {"method": "POST", "url": "Measure/$data-requirements"}}]},
                       levels=frozenset({"user", "system"}), writes=True, refused_for_all=frozenset({400}))
            continue
        assert letter is not None, interaction
        rtype = "Observation"
        url = {
            "read": "/Observation/obs-p2", "vread": "/Observation/obs-p2/_history/1",
            "history-instance": "/Observation/obs-p2/_history", "history-type": "/Observation/_history",
            "history-system": "/_history", "search-type": "/Observation",
            "search-compartment": f"/Patient/{P2}/Observation", "create": "/Observation",
            "update": "/Observation/obs-p2", "patch": "/Observation/obs-p2", "delete": "/Observation/obs-p2",
            "conditional-update": "/Observation?code:text=MARKERP2new",
            "conditional-delete": f"/Observation?subject=Patient/{P2}",
        }[interaction]
        if template.endswith("/_search"):
            url = "/Observation/_search"
        needs = (Need("*" if interaction == "history-system" else rtype, letter),)
        body: Any = None
        ctype = "application/fhir+json"
        outside: str | None = None
        if interaction in ("read", "vread", "history-instance"):
            outside = "read"
        elif interaction == "search-compartment":
            outside = "write"  # refused with 403, as writes are
        elif interaction in ("create", "update", "conditional-update"):
            body = dict(new_p2, id="obs-p2") if interaction == "update" else new_p2
            outside = "write"
        elif interaction == "patch":
            body, ctype, outside = moved, "application/json-patch+json", "write"
        elif interaction in ("delete", "conditional-delete"):
            outside = "write"
        elif template.endswith("/_search"):
            body, ctype = "", "application/x-www-form-urlencoded"
        key = f"{interaction} {method} {template}"
        yield Case(key, method, url, needs, body=body, content_type=ctype, outside=outside,
                   writes=letter in "cud", confined_by_search=interaction == "conditional-delete")
        if interaction == "read":  # own data outside the filtered scope
            yield Case(f"{key} outside filter", method, "/Observation/obs-p1-vital", needs, filter_outside=True)
        if interaction == "search-type" and method == "GET":
            for label, q, empty in (("include", "_include=Observation:subject", False),
                                    ("revinclude", "_revinclude=Observation:subject", False),
                                    ("chain", "subject:Patient.family=Zyxwardtwo", True),
                                    ("chain birthdate", "subject:Patient.birthdate=1901-02-03", True),
                                    ("has", "_has:Observation:subject:code:text=MARKERP2lab", True)):
                target = "Patient" if label in ("revinclude", "has") else "Observation"
                extra_needs = needs if target == "Observation" else (Need("Patient", "s"),)
                if label in ("revinclude", "has"):  # both reach Observation from Patient
                    extra_needs += (Need("Observation", "s"),)
                if label.startswith("chain"):  # a chain into Patient needs search access to Patient too
                    extra_needs += (Need("Patient", "s"),)
                yield Case(f"{key} {label}", method, f"/{target}?{q}", extra_needs, empty_when_confined=empty)
            # _has from a type outside the compartment: a yes/no oracle on another patient's data
            yield Case(f"{key} has from reference data", method,
                       "/Organization?_has:Patient:organization:birthdate=1901-02-03", (Need("Organization", "s"),),
                       empty_when_confined=True)
    # a patch that moves the launch patient's own resource into another compartment
    yield Case("patch moves own resource out", "PATCH", "/Observation/obs-p1-lab", (Need("Observation", "u"),),
               body=moved, content_type="application/json-patch+json", outside="write", writes=True)
    # a Group read by a token that is not attributed to it, and a patient reading a Group that lists others
    yield Case("read hidden Group", "GET", "/Group/g1", (Need("Group", "r"),), outside="group")
    yield Case("search Groups", "GET", "/Group", (Need("Group", "s"),))


CASES = [*operation_cases(), *rest_cases()]

# Cases the current code fails; each is another part of issue 13 (defect number and owning area), kept out
# of the run until that fix lands. The lead removes an entry when merging the fix.
_OP_URL_CREATE = "transaction POST operation url runs as create"
_HISTORY_TYPE = "history-type GET /fhir/{rtype}/_history"
_HISTORY_SYSTEM = "history-system GET /fhir/_history"
PENDING: dict[tuple[str, str], str] = {}  # every case generated from the registry is enforced


def expectation(kind: Kind, case: Case) -> set[int] | None:
    """The statuses a refusal may have, or None when the request must be let through."""
    if kind.scope is None:
        return {401}
    if case.refused_for_all:  # operations inside Bundle entries are refused for every token
        return {403, *case.refused_for_all}
    if not all(kind.covers(n, case.levels) for n in case.needs) or (
            not case.needs and not any(level in case.levels for level, _, _ in kind.grants)):
        return {403}
    if not case.scopes <= kind.other_scopes:
        return {403}
    if kind.confined and case.outside == "write" and case.confined_by_search:
        return None  # it must change nothing outside the compartment and reveal nothing (checked when let through)
    if kind.confined and case.outside == "write":
        # 403, or 404 where the write must first read a version the token may not see (a patch under
        # write-only scopes): either way refused, and nothing revealed
        return {403, 404}
    if kind.confined and case.outside in ("subject", "subject-group"):
        return {403}
    if kind.confined and case.outside == "read":
        return {404}
    if kind.confined and case.outside == "group":
        return {403, 404}  # a Group lists other patients
    if kind.filtered and case.filter_outside:
        return {404}
    if kind.restricted and case.outside in ("group", "subject-group"):
        return {404}
    return None


def _snapshot(store: SqlStore) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(
            select(RESOURCE.c.res_type, RESOURCE.c.res_id, RESOURCE.c.version, RESOURCE.c.deleted)))


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[tuple[TestClient, SqlStore, dict[str, str]]]:
    """One app with authorization on over the shared store (each backend), the data loaded once, one real
    token per kind."""
    from tests.conftest import wipe

    wipe(session_store)
    with make_client(session_store) as loader:
        for res in DATA:
            r = loader.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
            assert r.status_code in (200, 201), r.text
    client = make_auth_client(session_store)
    tokens = {}
    authority = client.app.state.authority
    for kind in KINDS:
        if kind.scope is None:
            continue
        ctx = {k: v for k, v in (("patient", kind.patient), ("fhirUser", kind.fhir_user)) if v}
        tokens[kind.name] = authority.tokens.issue_access(f"app-{kind.name}", kind.scope, 600, f"f-{kind.name}",
                                                          "someone", ctx).token
    yield client, session_store, tokens
    wipe(session_store)


def _send(client: TestClient, case: Case, token: str | None) -> Any:
    headers = {"Content-Type": case.content_type, **(bearer(token) if token else {})}
    content = None
    if case.body is not None:
        content = case.body if isinstance(case.body, str) else orjson.dumps(case.body)
    return client.request(case.method, "/fhir" + case.url, content=content, headers=headers)


def _reveals(r: Any, markers: tuple[str, ...]) -> list[str]:
    """Markers found in the answer, not counting Bundle links (they echo the query the caller sent)."""
    try:
        body = r.json()
    except ValueError:
        body = None
    text = orjson.dumps({k: v for k, v in body.items() if k != "link"}).decode() if isinstance(body, dict) \
        else r.text
    return [m for m in markers if m in text]


def _counts(r: Any) -> tuple[int | None, int]:
    """(Bundle.total, matched entries) of a Bundle answer on a single page; (None, 0) otherwise."""
    try:
        body = r.json()
    except ValueError:
        return None, 0
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return None, 0
    if any(link.get("relation") == "next" for link in body.get("link") or []):
        return None, 0
    matched = [e for e in body.get("entry") or [] if (e.get("search") or {}).get("mode", "match") == "match"]
    return body.get("total"), len(matched)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_refused_requests_are_refused_and_reveal_nothing(world: tuple[TestClient, SqlStore, dict[str, str]],
                                                         kind: Kind) -> None:
    client, store, tokens = world
    token = tokens.get(kind.name)
    failures: list[str] = []
    refused = allowed = 0
    for case in CASES:
        if (kind.name, case.id) in PENDING:
            continue
        expected = expectation(kind, case)
        if expected is None and case.state_changing_allowed:
            continue  # an allowed write would change what the other cases rely on
        before = _snapshot(store) if case.writes or case.method != "GET" else None
        r = _send(client, case, token)
        text = r.text
        if expected is not None:
            refused += 1
            if case.batch_read and r.status_code == 200:
                # a batch answers per entry: the refusal is the entry's own status, with nothing in it
                entries = r.json().get("entry") or []
                statuses = [str((e.get("response") or {}).get("status", "")).split()[0] for e in entries]
                if not entries or any(int(st) not in expected for st in statuses) or \
                        any("resource" in e and e["resource"].get("resourceType") != "OperationOutcome"
                            for e in entries):
                    failures.append(f"{case.id}: batch entries not refused: {text[:160]}")
                leaked = _reveals(r, (*P2_MARKERS, VITAL_MARKER, GROUP_MARKER, "Ownfamily", "own lab"))
                if leaked:
                    failures.append(f"{case.id}: refusal reveals {leaked}")
                continue
            if r.status_code not in expected:
                failures.append(f"{case.id}: {r.status_code} (expected {sorted(expected)}) {text[:160]}")
                continue
            body = r.json()
            if body.get("resourceType") != "OperationOutcome" or "total" in body or "entry" in body:
                failures.append(f"{case.id}: refusal is not a bare OperationOutcome: {text[:160]}")
            leaked = _reveals(r, (*P2_MARKERS, VITAL_MARKER, GROUP_MARKER, "Ownfamily", "own lab"))
            if leaked:
                failures.append(f"{case.id}: refusal reveals {leaked}")
            if before is not None and _snapshot(store) != before:
                failures.append(f"{case.id}: refused, yet the store changed")
        else:
            allowed += 1
            if r.status_code in (401, 403) or r.status_code >= 500:
                failures.append(f"{case.id}: {r.status_code}, expected to be let through: {text[:160]}")
            leaked = _reveals(r, kind.forbidden_markers())
            if leaked:
                failures.append(f"{case.id}: {r.status_code} reveals {leaked}: {text[:160]}")
            total, matched = _counts(r)
            if kind.forbidden_markers() and total is not None and total != matched:
                failures.append(f"{case.id}: total {total} counts {total - matched} resources not shown")
            if case.empty_when_confined and (kind.confined or kind.filtered) and matched:
                failures.append(f"{case.id}: matched {matched} resources outside the token's reach")
            if before is not None and case.outside == "write" and kind.confined and _snapshot(store) != before:
                failures.append(f"{case.id}: the other patient's data changed")
    assert not failures, f"{kind.name}: {len(failures)} of {refused + allowed} cases fail:\n" + "\n".join(failures)
    assert refused + allowed >= len(CASES) - 20 - len([p for p in PENDING if p[0] == kind.name])


def test_the_suite_is_generated_from_the_registry() -> None:
    """Every declared operation route and every REST route of the policy has cases; the model refuses and
    allows for each token kind, so the suite is not vacuous."""
    seen = {(c.method, c.url.split("?")[0]) for c in CASES}
    for (method, path), _ in REGISTRY.routes.items():
        if ANY_TYPE in path or "{rtype}" in path:
            continue
        assert (method, _fill(path, None)) in seen, (method, path)
    interactions = {i for i in policy.ROUTES.values() if i != "public"}
    assert interactions <= {c.id.split(" ")[0] for c in CASES}
    for kind in KINDS[1:-1]:
        outcomes = {expectation(kind, c) is None for c in CASES}
        assert outcomes == {True, False}, kind.name


def test_pending_cases_are_real() -> None:
    ids = {c.id for c in CASES}
    names = {k.name for k in KINDS}
    for kind, case in PENDING:
        assert kind in names and case in ids, (kind, case)

"""Bench-only fast loader: N members with a ~50-resource clinical chart each, cloned from one template.

Writing millions of resources through ``SqlSession.write`` runs at about 1,000 resources/s (index
extraction and SQLAlchemy parameter dicts per resource). For the export benchmark every member gets the same
chart shape, so the expensive part is done once:

1. the template member's chart (ids and references carry a placeholder member id and a placeholder
   practitioner number) is written through the store's own write path into a private in-memory store, and
   its ``resource``, ``resource_history`` and ``idx_*`` rows are read back;
2. for each member the rows are cloned by substituting the placeholders in the JSON bytes and index values,
   with explicit primary keys, and inserted with the database driver directly: SQLite ``executemany`` in large
   transactions, PostgreSQL ``COPY``.

Shared providers (Organizations, Practitioners, Locations) and the Group are written through the normal
write path. The result holds the same rows the gateway would have written for the same resources in one unit
of work (``tests/test_export_loader.py`` compares the two).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text

from gateway.demo.attribution import PAYER_ID, PROVIDER_ORG_ID, group_for, providers
from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import HISTORY, IDX, IDX_COLUMNS, RESOURCE

PID = "zzmemberzz"  # placeholder member id in the template
PRAC = "zzpraczz"  # placeholder practitioner (and clinic Location) number
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MEMBER_SYSTEM = "https://example.org/members"
PRACTITIONERS_PER = 200  # members per Practitioner (and per clinic Location), as in the ATR population

VITALS = [("8302-2", "Body height", 172.0, "cm"), ("29463-7", "Body weight", 81.5, "kg"),
          ("39156-5", "Body mass index", 27.5, "kg/m2"), ("8867-4", "Heart rate", 72, "/min"),
          ("9279-1", "Respiratory rate", 16, "/min")]
LABS = [("4548-4", "Hemoglobin A1c", 7.1, "%"), ("2093-3", "Cholesterol", 192, "mg/dL"),
        ("2085-9", "HDL cholesterol", 48, "mg/dL"), ("2089-1", "LDL cholesterol", 118, "mg/dL"),
        ("2571-8", "Triglyceride", 150, "mg/dL"), ("2345-7", "Glucose", 104, "mg/dL"),
        ("2160-0", "Creatinine", 0.9, "mg/dL"), ("33914-3", "eGFR", 88, "mL/min/{1.73_m2}"),
        ("718-7", "Hemoglobin", 13.9, "g/dL"), ("6690-2", "Leukocytes", 6.4, "10*3/uL"),
        ("777-3", "Platelets", 250, "10*3/uL")]
CONDITIONS = [("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertensive disorder"),
              ("55822004", "Hyperlipidemia"), ("195967001", "Asthma")]
PROCEDURES = [("24623002", "Screening mammography"), ("73761001", "Colonoscopy"),
              ("252416005", "Retinal examination"), ("171207006", "Depression screening")]
MEDICATIONS = [("860975", "metformin 500 MG"), ("314076", "lisinopril 10 MG"), ("617310", "atorvastatin 20 MG"),
               ("197361", "amlodipine 5 MG"), ("745679", "albuterol inhaler"), ("310965", "ibuprofen 200 MG")]


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def member_chart(pid: str = PID, prac: str = PRAC) -> list[dict[str, Any]]:
    """One member's chart, 50 resources: Patient, Coverage, 8 Encounters, 4 Conditions, 20 Observations,
    2 DiagnosticReports, 4 Procedures, 6 MedicationRequests, 2 Immunizations, 1 AllergyIntolerance and
    1 Claim, referencing the member's Practitioner, clinic Location and the shared Organizations."""
    subject = {"reference": f"Patient/{pid}"}
    doctor = {"reference": f"Practitioner/atr-pr-{prac}"}
    clinic = {"reference": f"Location/atr-loc-{prac}"}
    org = {"reference": f"Organization/{PROVIDER_ORG_ID}"}
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid, "active": True,
         "identifier": [{"type": _cc(V2_0203, "MB", "Member Number"), "system": MEMBER_SYSTEM, "value": pid}],
         "name": [{"use": "official", "family": "Member", "given": ["Alex", "J"]}], "gender": "female",
         "birthDate": "1961-04-12", "address": [{"use": "home", "line": ["12 Main Street"], "city": "Springfield",
                                                 "state": "IL", "postalCode": "62701", "country": "US"}],
         "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
         "generalPractitioner": [doctor], "managingOrganization": org},
        {"resourceType": "Coverage", "id": f"cov-{pid}", "status": "active",
         "identifier": [{"type": _cc(V2_0203, "MB", "Member Number"), "system": MEMBER_SYSTEM, "value": pid}],
         "subscriberId": pid, "beneficiary": subject, "relationship": _cc(
             "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
         "period": {"start": "2025-01-01", "end": "2025-12-31"}, "payor": [{"reference": f"Organization/{PAYER_ID}"}],
         "class": [{"type": _cc("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"),
                    "value": "PLAN-A"}]},
    ]
    encounters = []
    for k in range(8):
        day = f"2025-{1 + k:02d}-{10 + k:02d}"
        eid = f"{pid}-enc-{k}"
        encounters.append((eid, day))
        out.append({"resourceType": "Encounter", "id": eid, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                              "display": "ambulatory"},
                    "type": [_cc(SCT, "185349003", "Encounter for check up")], "subject": subject,
                    "participant": [{"individual": doctor}], "location": [{"location": clinic}],
                    "serviceProvider": org,
                    "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"}})
    for k, (code, display) in enumerate(CONDITIONS):
        out.append({"resourceType": "Condition", "id": f"{pid}-cond-{k}",
                    "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active",
                                          "Active"),
                    "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category",
                                     "problem-list-item", "Problem List Item")],
                    "code": _cc(SCT, code, display), "subject": subject,
                    "encounter": {"reference": f"Encounter/{encounters[k][0]}"},
                    "onsetDateTime": f"20{10 + k}-03-01", "recorder": doctor})
    observations = []
    for k in range(20):
        code, display, value, unit = (VITALS + LABS)[k % 16] if k < 16 else LABS[k - 16]
        eid, day = encounters[k % 8]
        oid = f"{pid}-obs-{k}"
        observations.append(oid)
        lab = (code, display, value, unit) in LABS
        out.append({"resourceType": "Observation", "id": oid, "status": "final",
                    "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category",
                                     "laboratory" if lab else "vital-signs",
                                     "Laboratory" if lab else "Vital Signs")],
                    "code": _cc(LOINC, code, display), "subject": subject, "encounter": {"reference": f"Encounter/{eid}"},
                    "effectiveDateTime": f"{day}T09:10:00Z", "performer": [doctor],
                    "valueQuantity": _qty(value, unit)})
    for k in range(2):
        eid, day = encounters[k]
        out.append({"resourceType": "DiagnosticReport", "id": f"{pid}-dr-{k}", "status": "final",
                    "code": _cc(LOINC, "24323-8", "Comprehensive metabolic panel"), "subject": subject,
                    "encounter": {"reference": f"Encounter/{eid}"}, "effectiveDateTime": f"{day}T09:10:00Z",
                    "performer": [doctor],
                    "result": [{"reference": f"Observation/{o}"} for o in observations[5 + 5 * k:10 + 5 * k]]})
    for k, (code, display) in enumerate(PROCEDURES):
        eid, day = encounters[2 + k]
        out.append({"resourceType": "Procedure", "id": f"{pid}-proc-{k}", "status": "completed",
                    "code": _cc(SCT, code, display), "subject": subject, "encounter": {"reference": f"Encounter/{eid}"},
                    "performedDateTime": f"{day}T09:20:00Z", "performer": [{"actor": doctor}], "location": clinic})
    for k, (code, display) in enumerate(MEDICATIONS):
        eid, day = encounters[k]
        out.append({"resourceType": "MedicationRequest", "id": f"{pid}-med-{k}", "status": "active",
                    "intent": "order", "medicationCodeableConcept": _cc(RXNORM, code, display), "subject": subject,
                    "encounter": {"reference": f"Encounter/{eid}"}, "authoredOn": f"{day}T09:25:00Z",
                    "requester": doctor,
                    "dosageInstruction": [{"text": "once daily", "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                                         "periodUnit": "d"}}}]})
    for k, (code, display) in enumerate([("140", "Influenza, seasonal"), ("213", "SARS-COV-2 vaccine")]):
        eid, day = encounters[6 + k]
        out.append({"resourceType": "Immunization", "id": f"{pid}-imm-{k}", "status": "completed",
                    "vaccineCode": _cc("http://hl7.org/fhir/sid/cvx", code, display), "patient": subject,
                    "encounter": {"reference": f"Encounter/{eid}"}, "occurrenceDateTime": f"{day}T09:15:00Z",
                    "performer": [{"actor": doctor}], "location": clinic})
    out.append({"resourceType": "AllergyIntolerance", "id": f"{pid}-allergy-0",
                "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active",
                                      "Active"),
                "code": _cc(SCT, "91936005", "Allergy to penicillin"), "patient": subject, "recorder": doctor,
                "recordedDate": "2019-06-01"})
    out.append({"resourceType": "Claim", "id": f"{pid}-claim-0", "status": "active",
                "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional"),
                "use": "claim", "patient": subject, "created": "2025-01-11", "provider": doctor,
                "insurer": {"reference": f"Organization/{PAYER_ID}"}, "priority": _cc(
                    "http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/cov-{pid}"}}],
                "item": [{"sequence": 1, "productOrService": _cc("http://www.ama-assn.org/go/cpt", "99213",
                                                                 "Office visit"),
                          "net": {"value": 120.0, "currency": "USD"}}],
                "total": {"value": 120.0, "currency": "USD"}})
    return out


def practitioners(members: int, per: int = PRACTITIONERS_PER) -> int:
    return max(1, members // per)


def shared_resources(n: int) -> Iterator[dict[str, Any]]:
    """Organizations and ``n`` Practitioners of the ATR population, plus one clinic Location per Practitioner."""
    yield from providers(n)
    for i in range(n):
        yield {"resourceType": "Location", "id": f"atr-loc-{i}", "status": "active", "name": f"Clinic {i}",
               "managingOrganization": {"reference": f"Organization/{PROVIDER_ORG_ID}"},
               "address": {"city": "Springfield", "state": "IL"}}


def member_id(i: int) -> str:
    return f"m{i}"


def population(members: int, group_id: str, per: int = PRACTITIONERS_PER) -> Iterator[dict[str, Any]]:
    """The same resources written the ordinary way (the reference the cloned load is compared with)."""
    n = practitioners(members, per)
    yield from shared_resources(n)
    for i in range(members):
        yield from member_chart(member_id(i), str(i % n))
    yield group_for(group_id, [member_id(i) for i in range(members)], n)


# -- the template: rows computed once by the store's own code --------------------------------------------------
@dataclass
class Template:
    resources: list[tuple[str, str, bytes]]  # (type, id, content) per chart resource, placeholders in id/content
    index: dict[str, list[tuple[int, tuple[Any, ...], bool]]]  # kind -> (resource slot, columns, has placeholder)
    last_updated: str


def build_template(now: str) -> Template:
    """Write the template chart through SqlSession into a private in-memory store and read its rows back."""
    store = SqlStore("sqlite://")
    with store.session() as s:
        s._now = now  # noqa: SLF001 - one timestamp for the whole load, as one unit of work has
        for r in member_chart():
            s.write(r, "POST", known_new=True)
    with store.engine.connect() as conn:
        rows = conn.execute(select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id, RESOURCE.c.content)
                            .order_by(RESOURCE.c.pk)).all()
        slot = {r[0]: i for i, r in enumerate(rows)}
        index: dict[str, list[tuple[int, tuple[Any, ...], bool]]] = {}
        for kind, table in IDX.items():
            cols = [table.c[c] for c in IDX_COLUMNS[kind]]
            items = []
            for row in conn.execute(select(table.c.res_pk, *cols).order_by(table.c.pk)):
                values = tuple(row[1:])
                marked = any(isinstance(v, str) and (PID in v or PRAC in v) for v in values)
                items.append((slot[row[0]], values, marked))
            index[kind] = items
    store.close()
    return Template([(r[1], r[2], r[3]) for r in rows], index, now)


def _sub(value: Any, pid: str, prac: str) -> Any:
    return value.replace(PID, pid).replace(PRAC, prac) if isinstance(value, str) else value


@dataclass
class Clone:
    """One member's rows: resources (pk, type, id, content) and index rows per kind (res_pk, type, columns)."""

    resources: list[tuple[int, str, str, bytes]]
    index: dict[str, list[tuple[Any, ...]]]


def clone(t: Template, pid: str, prac: str, first_pk: int) -> Clone:
    pid_b, prac_b = pid.encode(), prac.encode()
    pb, rb = PID.encode(), PRAC.encode()
    res = [(first_pk + j, rtype, rid.replace(PID, pid).replace(PRAC, prac),
            content.replace(pb, pid_b).replace(rb, prac_b)) for j, (rtype, rid, content) in enumerate(t.resources)]
    idx: dict[str, list[tuple[Any, ...]]] = {}
    for kind, items in t.index.items():
        idx[kind] = [(first_pk + j, t.resources[j][0],
                      *(tuple(_sub(v, pid, prac) for v in values) if marked else values))
                     for j, values, marked in items]
    return Clone(res, idx)


# -- the load ------------------------------------------------------------------------------------------------------
def _write_normally(store: SqlStore, resources: Iterator[dict[str, Any]] | list[dict[str, Any]], now: str) -> int:
    n = 0
    with store.session() as s:
        s._now = now  # noqa: SLF001
        for r in resources:
            s.write(r, "POST", known_new=True)
            n += 1
    return n


def _next_pks(store: SqlStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        res = conn.execute(select(func.coalesce(func.max(RESOURCE.c.pk), 0))).scalar_one()
        hist = conn.execute(select(func.coalesce(func.max(HISTORY.c.pk), 0))).scalar_one()
    return res + 1, hist + 1


def load(url: str, members: int, group_id: str, now: str, per: int = PRACTITIONERS_PER, batch: int = 2000,
         progress: Any = None) -> int:
    """Load the population into the (empty) database at ``url``; returns the number of resources."""
    store = SqlStore(url)
    n_prac = practitioners(members, per)
    n = _write_normally(store, list(shared_resources(n_prac)), now)
    template = build_template(now)
    res_pk, hist_pk = _next_pks(store)
    clones = (clone(template, member_id(i), str(i % n_prac), res_pk + i * len(template.resources))
              for i in range(members))
    if store.dialect == "sqlite":
        path = store.engine.url.database
        store.close()
        _sqlite_insert(path, clones, hist_pk - res_pk, now, batch, progress)
        store = SqlStore(url, migrate=False)
    else:
        store.close()
        _pg_insert(url, clones, hist_pk - res_pk, now, batch, progress)
        store = SqlStore(url, migrate=False)
        _pg_sequences(store)
    n += members * len(template.resources)
    n += _write_normally(store, [group_for(group_id, [member_id(i) for i in range(members)], n_prac)], now)
    if store.dialect == "postgresql":  # what autovacuum does soon after a bulk load: planner statistics, and
        # the visibility map that lets index-only scans skip the table
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    store.close()
    return n


def _rows(clones: Iterator[Clone], batch: int) -> Iterator[list[Clone]]:
    chunk: list[Clone] = []
    for c in clones:
        chunk.append(c)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sqlite_insert(path: str | None, clones: Iterator[Clone], hist_offset: int, now: str, batch: int,
                   progress: Any) -> None:
    conn = sqlite3.connect(path or "", isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # a fresh bench file: nothing to recover if the load dies
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    idx_sql = {kind: f"INSERT INTO {IDX[kind].name} (res_pk, res_type, {', '.join(cols)}) "
                     f"VALUES ({', '.join('?' * (len(cols) + 2))})" for kind, cols in IDX_COLUMNS.items()}
    done = 0
    for chunk in _rows(clones, batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO resource (pk, res_type, res_id, version, last_updated, deleted, content) "
                         "VALUES (?, ?, ?, 1, ?, 0, ?)",
                         ((pk, t, i, now, c) for cl in chunk for pk, t, i, c in cl.resources))
        conn.executemany("INSERT INTO resource_history (pk, res_type, res_id, version, last_updated, method, "
                         "content) VALUES (?, ?, ?, 1, ?, 'POST', ?)",
                         ((pk + hist_offset, t, i, now, c) for cl in chunk for pk, t, i, c in cl.resources))
        for kind, sql in idx_sql.items():
            conn.executemany(sql, (r for cl in chunk for r in cl.index[kind]))
        conn.execute("COMMIT")
        done += len(chunk)
        if progress:
            progress(done)
    conn.execute("PRAGMA journal_mode=WAL")  # what the gateway uses
    conn.close()


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _pg_insert(url: str, clones: Iterator[Clone], hist_offset: int, now: str, batch: int, progress: Any) -> None:
    import psycopg

    done = 0
    with psycopg.connect(_pg_dsn(url)) as conn:
        for chunk in _rows(clones, batch):
            with conn.cursor() as cur:
                with cur.copy("COPY resource (pk, res_type, res_id, version, last_updated, deleted, content) "
                              "FROM STDIN") as cp:
                    for cl in chunk:
                        for pk, t, i, c in cl.resources:
                            cp.write_row((pk, t, i, 1, now, False, c))
                with cur.copy("COPY resource_history (pk, res_type, res_id, version, last_updated, method, content) "
                              "FROM STDIN") as cp:
                    for cl in chunk:
                        for pk, t, i, c in cl.resources:
                            cp.write_row((pk + hist_offset, t, i, 1, now, "POST", c))
                for kind, cols in IDX_COLUMNS.items():
                    with cur.copy(f"COPY {IDX[kind].name} (res_pk, res_type, {', '.join(cols)}) FROM STDIN") as cp:
                        for cl in chunk:
                            for r in cl.index[kind]:
                                cp.write_row(r)
            conn.commit()
            done += len(chunk)
            if progress:
                progress(done)


def _pg_sequences(store: SqlStore) -> None:
    """Move the key sequences past the explicit keys of the cloned rows."""
    with store.engine.connect() as conn:
        for table in (RESOURCE, HISTORY):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'pk'), "
                              f"(SELECT max(pk) FROM {table.name}))"))
        conn.commit()

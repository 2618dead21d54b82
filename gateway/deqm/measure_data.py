"""The engine's data port over the gateway store: one patient's data, loaded through the Patient compartment
on first use of each resource type and kept for the rest of that patient's evaluation.

Population runs prefetch: for a chunk of patients, every resource of the types a measure retrieves is read
in one query over the reference index (``prefetch``), instead of one search per patient and type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..cql.fhirmodel import type_info
from ..search.params import patient_compartment, registry
from ..search.query import Criterion, RefValue, SearchQuery
from ..store.base import IndexScope

if TYPE_CHECKING:
    from ..cql.retrieve_scope import TypeScope
    from ..store.base import ResourceStore

PAGE = 1000


class PatientData:
    """One patient's resources read ahead of evaluation, by type (only the prefetched types are present).

    The resources of a type stay as stored JSON until the evaluation first retrieves that type: a measure's
    logic often stops before reading some of the types it may retrieve (no qualifying encounter, no
    observation looked at), and decoding is most of the cost of a read ahead."""

    __slots__ = ("patient", "_raw", "_decoded")

    def __init__(self, patient: dict[str, Any] | None, raw: dict[str, list[bytes]] | None = None) -> None:
        self.patient = patient
        self._raw: dict[str, list[bytes]] = raw if raw is not None else {}
        self._decoded: dict[str, list[dict[str, Any]]] = {}

    def types(self) -> list[str]:
        """The prefetched resource types (Patient aside)."""
        return list(self._raw)

    def resources(self, rtype: str) -> list[dict[str, Any]] | None:
        """The patient's resources of ``rtype``, decoded on first use; None when the type was not prefetched."""
        got = self._decoded.get(rtype)
        if got is None:
            raw = self._raw.get(rtype)
            if raw is None:
                return None
            got = self._decoded[rtype] = [orjson.loads(c) for c in raw]
        return got

    @property
    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        """Every prefetched type's resources, decoded."""
        return {t: self.resources(t) or [] for t in self._raw}


def index_scopes(scopes: dict[str, TypeScope]) -> dict[str, IndexScope]:
    """The retrieve scopes (``gateway/cql/retrieve_scope.py``) the search index can apply: a code path maps to
    a token search parameter of the type whose expression reads that element whole (``Observation.code``, or
    ``(MedicationRequest.medication as CodeableConcept)`` for a choice of a CodeableConcept and a Reference,
    whose Reference never carries a code the Retrieve would match). A parameter may read more elements than
    the path (``code`` of AllergyIntolerance also reads reaction.substance): the scope stays a superset. A
    type with a path no parameter reads whole is left out (read whole)."""
    out: dict[str, IndexScope] = {}
    for rtype, scope in scopes.items():
        tokens: list[tuple[str, tuple[str, ...]]] = []
        for path, codes in scope.codes:
            param = _token_param(rtype, path)
            if param is None:
                break
            tokens.append((param, tuple(sorted(codes))))
        else:
            out[rtype] = IndexScope(tuple(tokens), tuple(sorted(scope.profiles)))
    return out


def _token_param(rtype: str, path: str) -> str | None:
    """The token search parameter of ``rtype`` whose expression has ``rtype.path`` as one of its branches."""
    info = type_info(rtype)
    if info is None:
        return None
    field = info.fields.get(path)
    alts = info.choices.get(path) or ()
    if field is not None and field.type in ("CodeableConcept", "Coding", "code"):
        wanted = {f"{rtype}.{path}"}
    elif alts and {a.type for a in alts} <= {"CodeableConcept", "Reference"}:
        wanted = {f"({rtype}.{path} as CodeableConcept)", f"{rtype}.{path}.as(CodeableConcept)"}
    else:
        return None
    sp = registry().token_reading(rtype, wanted)
    return sp.code if sp is not None else None


def prefetch(store: ResourceStore, patient_ids: list[str], types: set[str],
             scopes: dict[str, IndexScope] | None = None) -> dict[str, PatientData]:
    """The Patient resources of ``patient_ids`` and their compartment resources of ``types`` (see
    ``PatientData``: kept as stored JSON until used), of the types in ``scopes`` only those in their scope."""
    comp = patient_compartment()
    wanted = {t: comp[t] for t in types if t in comp and t != "Patient"}
    patients = store.read_many("Patient", patient_ids)
    rows = store.compartment_contents(patient_ids, wanted, scopes)
    out: dict[str, PatientData] = {}
    for pid in patient_ids:
        s = patients.get(pid)
        raw: dict[str, list[bytes]] = {t: [] for t in wanted}
        for rtype, _pk, content in rows.get(pid, ()):
            raw[rtype].append(content)
        out[pid] = PatientData(orjson.loads(s.content) if s is not None and s.content else None, raw)
    return out


class StoreDataSource:
    """``shared`` caches resources outside the Patient compartment (Medication, Location, ...) across the
    patients of one evaluation run: a retrieve of such a type returns all of them."""

    def __init__(self, store: ResourceStore, patient_id: str, shared: dict[str, list[dict[str, Any]]] | None = None,
                 prefetched: PatientData | None = None) -> None:
        self.store = store
        self.patient_id = patient_id
        self._by_type: dict[str, list[dict[str, Any]]] = {}
        self._prefetched = prefetched
        self._patient: dict[str, Any] | None = prefetched.patient if prefetched else None
        self._shared = shared if shared is not None else {}

    def patient(self) -> dict[str, Any] | None:
        if self._patient is None:
            s = self.store.read("Patient", self.patient_id)
            self._patient = orjson.loads(s.body) if s is not None and not s.deleted else None
        return self._patient

    def retrieve(self, data_type: str, *, codes: Any = None, valueset: str | None = None,
                 date_range: Any = None) -> list[dict[str, Any]]:
        if data_type == "Patient":
            p = self.patient()
            return [p] if p else []
        cached = self._by_type.get(data_type)
        if cached is not None:
            return cached
        if self._prefetched is not None:
            cached = self._prefetched.resources(data_type)
            if cached is not None:
                self._by_type[data_type] = cached
                return cached
        params = patient_compartment().get(data_type)
        out: list[dict[str, Any]] = []
        if not params:
            shared = self._shared.get(data_type)
            if shared is None:
                shared = self._shared[data_type] = [orjson.loads(s.body)
                                                    for s in self.store.iter_current(data_type)]
            return shared
        if params:
            offset = 0
            while True:
                q = SearchQuery(data_type, count=PAGE, offset=offset, total="none")
                q.criteria.append(Criterion("_compartment", "_compartment", None, None,
                                            [RefValue("Patient", self.patient_id, None)], has_param=",".join(params)))
                res = self.store.search(q)
                out.extend(orjson.loads(m.body) for m in res.matches)
                if len(res.matches) < PAGE:
                    break
                offset += PAGE
        self._by_type[data_type] = out
        return out

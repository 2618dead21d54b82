"""$evaluate-measure over the store: resolve the Measure, its Libraries (by canonical, then by name and
version: published content does not line up its canonicals) and value sets, then evaluate subjects."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..cql.engine import Context, Engine
from ..cql.library import (
    ElmLibrary,
    InvalidElm,
    LibraryManager,
    LibraryNotFound,
    elm_from_library_resource,
    retrieved_types,
)
from ..cql.retrieve_scope import retrieve_scopes
from ..cql.terminology import ValueSetIndex
from ..cql.values import CqlError
from ..fhir.dates import DateParseError, parse_range
from ..fhir.errors import BadRequest, FhirError, NotFound, Unprocessable
from ..measure.aggregate import ReportTally
from ..measure.calculator import SubjectResult, evaluate_subject
from ..measure.executor import ExecutorUnavailable
from ..measure.fhirpath_criteria import FhirPathCriteriaError, check_measure
from ..measure.gcpolicy import fewer_collections
from ..measure.model import MeasureDef
from ..measure.report import individual_report, summary_report
from ..search.query import QueryParser
from ..store.base import IndexScope
from .measure_data import PatientData, StoreDataSource, index_scopes, prefetch
from .measure_select import group_members, search_all
from .population import ChunkFailed

if TYPE_CHECKING:
    from ..store.base import ResourceStore

PREFETCH = 100  # patients whose data a population run reads in one go


@dataclass
class PreparedMeasure:
    measure: MeasureDef
    engine: Engine
    library: ElmLibrary | None  # None: the measure's criteria are all FHIRPath (text/fhirpath)
    terminology: ValueSetIndex
    version_key: str
    data_types: frozenset[str] | None = None  # what the libraries retrieve; None: not known (FHIRPath criteria)
    # the types whose every Retrieve filters by fixed codes, narrowed in the read-ahead (cql/retrieve_scope.py)
    scopes: dict[str, IndexScope] = field(default_factory=dict)


class MeasureService:
    def __init__(self, store: ResourceStore, base_url: str, executor: str | None = None, chunk_size: int = 200,
                 reporter: str | None = None) -> None:
        """``executor``: inprocess (default), processes[:N] or dask://host:port for population runs;
        ``reporter``: MeasureReport.reporter when a request names none."""
        self.default_reporter = reporter or None
        self.executor_spec = executor or "inprocess"
        self.chunk_size = chunk_size
        self.store = store
        self.configured_base = base_url
        self._cache: dict[str, PreparedMeasure] = {}
        self._stamps: dict[str, tuple[object, ...]] = {}  # measure key -> terminology stamp it was prepared at
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The FHIR base of absolute URLs: the current request's when derived from requests, else the
        configured one (``config.public_base``)."""
        from ..config import public_base

        return public_base(self.configured_base)

    # -- resolution --------------------------------------------------------------------------------------
    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        q = QueryParser(self.base_url, strict=True, max_count=1000).parse(rtype, params)
        q.count, q.total = 1000, "none"
        return [orjson.loads(m.body) for m in self.store.search(q).matches]

    def _terminology_stamp(self) -> tuple[object, ...]:
        """Changes whenever a ValueSet or CodeSystem is written or deleted: a prepared measure's value sets
        (computed from compose over stored CodeSystems when they have no expansion) are rebuilt then."""
        out: list[object] = []
        for rtype in ("ValueSet", "CodeSystem"):
            entries, total = self.store.history(rtype, None, None, 1, 0)
            out.append((total, entries[0].pk if entries else 0))
        return tuple(out)

    def _terminology_resource(self, rtype: str, url: str, version: str | None) -> dict[str, Any] | None:
        """The stored CodeSystem or ValueSet a value set's compose names (for expansions computed when a
        value set has no stored expansion); the last one when no version is given."""
        found = self._search(rtype, [("url", url)])
        if version is not None:
            found = [r for r in found if r.get("version") == version]
        return found[-1] if found else None

    def find_measure(self, measure_id: str | None, measure_ref: str | None) -> dict[str, Any]:
        if measure_id:
            s = self.store.read("Measure", measure_id)
            if s is None or s.deleted:
                raise NotFound(f"Measure/{measure_id} is not known")
            return orjson.loads(s.body)
        if not measure_ref:
            raise BadRequest("Name the measure: Measure/[id]/$evaluate-measure or the 'measure' parameter")
        if measure_ref.startswith("Measure/"):
            return self.find_measure(measure_ref.split("/", 1)[1], None)
        url, _, version = measure_ref.partition("|")
        params = [("url", url)] + ([("version", version)] if version else [])
        found = self._search("Measure", params)
        if not found:
            raise NotFound(f"No Measure with url {measure_ref}")
        return found[-1]

    def find_by_identifier(self, token: str) -> list[dict[str, Any]]:
        found = self._search("Measure", [("identifier", token)])
        if not found:
            raise NotFound(f"No Measure with identifier {token}")
        return found

    def _library_resource(self, canonical: str, name: str | None, version: str | None) -> dict[str, Any] | None:
        url, _, ver = canonical.partition("|") if canonical else ("", "", "")
        version = version or ver or None
        if url:
            found = self._search("Library", [("url", url)] + ([("version", version)] if version else []))
            if found:
                return found[-1]
        name = name or url.rstrip("/").rsplit("/", 1)[-1]
        if name:
            found = self._search("Library", [("name:exact", name)] + ([("version", version)] if version else []))
            if found:
                return found[-1]
        return None

    def _translate_on_demand(self, res: dict[str, Any]) -> dict[str, Any]:
        """ELM for a Library stored with CQL only (before the translator existed, or with CQL that did not
        translate then): translated now with the Libraries it includes, read as this caller reads them;
        the prepared measure caches the result. No CQL, or CQL that does not translate, is a 422 naming
        the first diagnostics."""
        from ..cql.compiler.resources import translate_stored

        elm, errors = translate_stored(res, lambda name, version: self._library_resource("", name, version))
        if elm is not None:
            return elm
        if errors:
            first = "; ".join(f"{e.line}:{e.col} {e.message}" for e in errors[:3])
            raise Unprocessable(f"Library {res.get('url') or res.get('id')}: its CQL does not translate to ELM "
                                f"({first})")
        raise Unprocessable(f"Library {res.get('url') or res.get('id')} has neither application/elm+json nor "
                            "text/cql content: there is nothing to evaluate")

    def prepare(self, measure_res: dict[str, Any]) -> PreparedMeasure:
        key = f"{measure_res.get('id')}|{(measure_res.get('meta') or {}).get('versionId')}"
        stamp = self._terminology_stamp()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._stamps.get(key) == stamp:
                return cached
        # parsing and compiling megabytes of ELM makes objects that all live on: the collector would walk them
        # again and again and free nothing
        with fewer_collections():
            return self._prepare(measure_res, key, stamp)

    def _prepare(self, measure_res: dict[str, Any], key: str, stamp: tuple[object, ...]) -> PreparedMeasure:
        try:
            measure = MeasureDef.from_resource(measure_res)
            check_measure(measure)  # FHIRPath criteria compile (or fail) before any patient is read
        except (ValueError, FhirPathCriteriaError) as exc:
            raise Unprocessable(str(exc)) from None
        if not measure.library_url:  # every criterion is FHIRPath: nothing to translate or resolve
            prepared = PreparedMeasure(measure, Engine(LibraryManager()), None, ValueSetIndex(), key)
            with self._lock:
                self._cache[key] = prepared
                self._stamps[key] = stamp
            return prepared
        manager = LibraryManager()
        pending: list[tuple[str, str | None, str | None]] = [(measure.library_url, None, None)]
        seen: set[str] = set()
        main: ElmLibrary | None = None
        valueset_urls: set[str] = set()
        while pending:
            canonical, name, version = pending.pop()
            res = self._library_resource(canonical, name, version)
            if res is None:
                what = canonical or f"{name} version {version}"
                raise Unprocessable(f"Measure {measure_res.get('url') or measure_res.get('id')}: library {what} "
                                    "is not in the server; load it first")
            try:
                elm = elm_from_library_resource(res)
            except InvalidElm as exc:
                raise Unprocessable(str(exc)) from None
            if elm is None:
                elm = self._translate_on_demand(res)
            try:
                lib = manager.add(ElmLibrary.from_elm(elm, res.get("url")))
            except InvalidElm as exc:
                raise Unprocessable(f"Library {res.get('url')}: {exc}") from None
            main = main or lib
            seen.add(lib.key)
            valueset_urls.update(d["id"] for d in lib.valuesets.values())
            for path, ver in lib.includes.values():
                nm = path.rstrip("/").rsplit("/", 1)[-1]
                if f"{nm}|{ver or ''}" not in seen:
                    pending.append(("", nm, ver))
        terminology = ValueSetIndex(resolver=self._terminology_resource)
        for url in sorted(valueset_urls):
            for vs in self._search("ValueSet", [("url", url)]):
                terminology.add(vs)
        assert main is not None
        libraries = manager.libraries()
        prepared = PreparedMeasure(measure, Engine(manager), main, terminology, key,
                                   frozenset(retrieved_types(libraries)),
                                   index_scopes(retrieve_scopes(manager, libraries, terminology)))
        with self._lock:
            self._cache[key] = prepared
            self._stamps[key] = stamp
        return prepared

    # -- subjects ----------------------------------------------------------------------------------------
    def subjects(self, subject: str | None) -> list[str]:
        if subject:
            rtype, _, rid = subject.partition("/")
            if rtype == "Patient" and rid:
                s = self.store.read("Patient", rid)
                if s is None or s.deleted:
                    raise NotFound(f"Subject {subject} is not known")
                return [rid]
            if rtype == "Group" and rid:
                s = self.store.read("Group", rid)
                if s is None or s.deleted:
                    raise NotFound(f"Subject {subject} is not known")
                return group_members(orjson.loads(s.body))
            raise BadRequest(f"subject must be Patient/[id] or Group/[id], got {subject!r}")
        return [s.id for s in self.store.iter_current("Patient")]

    # -- evaluation --------------------------------------------------------------------------------------
    def evaluate(self, measure_res: dict[str, Any], period_start: str | None, period_end: str | None,
                 report_type: str | None, subject: str | None, reporter: str | None = None,
                 progress: Any = None, *, practitioner: str | None = None,
                 last_received_on: str | None = None, patient_ids: list[str] | None = None,
                 cql_parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """``practitioner``: only the patients whose generalPractitioner it is (within ``subject`` when given);
        ``last_received_on`` (individual reports only): evaluatedResource lists only what changed after it;
        ``patient_ids``: the patients to evaluate when the caller chose them (an inline Group), instead of
        ``subject``; ``cql_parameters``: values of the libraries' parameters by name (DEQM ``parameters``)."""
        period, _ = self.period(period_start, period_end)
        prepared = self.prepare(measure_res)
        reporter = reporter or self.default_reporter
        report_type = report_type or ("subject" if subject and subject.startswith("Patient/") else "population")
        if report_type not in ("subject", "subject-list", "population"):
            raise BadRequest(f"reportType must be subject, subject-list or population, got {report_type!r}")
        if report_type == "subject" and not (subject and subject.startswith("Patient/")):
            raise BadRequest("reportType=subject needs subject=Patient/[id]")
        since = None
        if last_received_on:
            if report_type != "subject":
                raise BadRequest("lastReceivedOn is only valid for patient-level reports (reportType=subject)")
            try:
                since = parse_range(last_received_on)[1]
            except DateParseError as exc:
                raise BadRequest(f"lastReceivedOn: {exc}") from None
        ids = self.subjects(subject) if patient_ids is None else patient_ids
        if practitioner:
            ids = self.patients_of(practitioner, ids, subject)
        if report_type == "subject":
            results, last_evaluated = self.results(measure_res, period, ids, progress, distribute=False,
                                                   parameters=cql_parameters)
            if since is not None:
                last_evaluated = self._changed_since(last_evaluated, since)
            return individual_report(prepared.measure, results[0], period, last_evaluated, reporter)
        tally = self.tally(measure_res, period, ids, progress, subject_lists=report_type == "subject-list",
                           parameters=cql_parameters)
        try:
            if report_type == "subject-list":
                mr = summary_report(prepared.measure, tally, period, "subject-list", subject, None, reporter)
                self._attach_subject_lists(mr, prepared, tally)
                return mr
            return summary_report(prepared.measure, tally, period, "summary", None, None, reporter)
        finally:
            tally.close()

    def patients_of(self, practitioner: str, ids: list[str], subject: str | None) -> list[str]:
        rtype, _, rid = practitioner.partition("/")
        if rtype not in ("Practitioner", "PractitionerRole", "Organization") or not rid:
            raise BadRequest(f"practitioner must be Practitioner/[id] (or PractitionerRole/[id]), got {practitioner!r}")
        s = self.store.read(rtype, rid)
        if s is None or s.deleted:
            raise NotFound(f"{practitioner} is not known")
        theirs = {r["id"] for r in search_all(self.store, self.base_url, "Patient",
                                              [("general-practitioner", practitioner)])}
        kept = [pid for pid in ids if pid in theirs]
        if subject and subject.startswith("Patient/") and not kept:
            raise BadRequest(f"{subject} is not a patient of {practitioner} (Patient.generalPractitioner)")
        return kept

    def _changed_since(self, refs: list[str], since: str) -> list[str]:
        """The resources among ``refs`` whose current version was stored after ``since`` (UTC, as parse_range
        gives it)."""
        by_type: dict[str, list[str]] = {}
        for ref in refs:
            rtype, _, rid = ref.partition("/")
            by_type.setdefault(rtype, []).append(rid)
        fresh: set[str] = set()
        for rtype, rids in by_type.items():
            for rid, stored in self.store.read_many(rtype, rids).items():
                if parse_range(stored.last_updated)[0] > since:
                    fresh.add(f"{rtype}/{rid}")
        return [r for r in refs if r in fresh]

    def results(self, measure_res: dict[str, Any], period: tuple[str, str], ids: list[str], progress: Any = None,
                distribute: bool = True, parameters: dict[str, Any] | None = None
                ) -> tuple[list[SubjectResult], list[str]]:
        """Per-patient results for ``ids`` in order, through the configured executor for large runs; with the
        resources evaluated for the last patient (an individual report lists them). ``parameters``: CQL
        parameter values for every patient (runs with them stay in process). Every result is kept: for a
        population report use ``tally`` (nothing per patient kept), for results one by one ``iter_results``."""
        evaluated: list[str] = []
        results = list(self.iter_results(measure_res, period, ids, progress, distribute, parameters, evaluated))
        return results, evaluated

    def iter_results(self, measure_res: dict[str, Any], period: tuple[str, str], ids: list[str],
                     progress: Any = None, distribute: bool = True, parameters: dict[str, Any] | None = None,
                     evaluated: list[str] | None = None) -> Iterator[SubjectResult]:
        """Per-patient results for ``ids`` in order, one at a time (a process pool's chunks are put back in
        order as they arrive); ``evaluated`` receives the resources read for a single patient."""
        prepared = self.prepare(measure_res)
        _, interval = self.period(*period)
        if progress is not None:
            progress(0, len(ids))
        if distribute and not parameters and self._distributes(len(ids)):
            from .population import evaluate_chunk

            for part in self._chunks(evaluate_chunk, measure_res, period, ids, progress, False):
                yield from part
            return
        shared: dict[str, list[dict[str, Any]]] = {}
        with fewer_collections() if len(ids) > 1 else contextlib.nullcontext():
            for pid, data in self.with_data(prepared, ids):
                result, last = self.evaluate_patient(prepared, pid, interval, shared, data,
                                                     track=len(ids) == 1, parameters=parameters)
                if evaluated is not None and len(ids) == 1:
                    evaluated[:] = last
                if progress is not None:
                    progress(1, len(ids))
                yield result

    def tally(self, measure_res: dict[str, Any], period: tuple[str, str], ids: list[str], progress: Any = None,
              subject_lists: bool = False, parameters: dict[str, Any] | None = None) -> ReportTally:
        """A population run folded into a ``ReportTally`` as results arrive: no patient's result is kept, so
        memory does not grow with the number of patients (subject lists, when asked for, go to a temporary
        file). Large runs go through the configured executor, whose workers send back one tally per chunk."""
        prepared = self.prepare(measure_res)
        tally = ReportTally(prepared.measure, subject_lists=subject_lists)
        try:
            if not parameters and self._distributes(len(ids)):
                from .population import tally_chunk

                for part in self._chunks(tally_chunk, measure_res, period, ids, progress, subject_lists):
                    tally.merge(part)
                return tally
            for r in self.iter_results(measure_res, period, ids, progress, False, parameters):
                tally.add(r)
        except BaseException:
            tally.close()
            raise
        return tally

    def with_data(self, prepared: PreparedMeasure, ids: list[str]) -> Any:
        """(patient id, prefetched data or None) in order; data is read ahead in chunks of PREFETCH patients
        when the measure's retrieved types are known."""
        if prepared.data_types is None or len(ids) < 2:
            for pid in ids:
                yield pid, None
            return
        for i in range(0, len(ids), PREFETCH):
            part = ids[i:i + PREFETCH]
            data = prefetch(self.store, part, set(prepared.data_types), prepared.scopes)
            for pid in part:
                yield pid, data.get(pid)

    def _distributes(self, n: int) -> bool:
        url = getattr(self.store, "url", "")
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        return self.executor_spec != "inprocess" and not in_memory and n > self.chunk_size

    def _chunks(self, fn: Any, measure_res: dict[str, Any], period: tuple[str, str], ids: list[str],
                progress: Any, subject_lists: bool) -> Iterator[Any]:
        """Population run through the configured executor: workers open their own store on the same database
        and compile the measure once each; ``fn``'s result per chunk is yielded in chunk order (chunks that
        finish early wait for the ones before them; the executor keeps a bounded number in flight). Workers
        read under the caller's grant, through the gate."""
        from ..auth.context import current_grant
        from ..auth.grant_record import record
        from ..measure.executor import make_executor
        from .population import ChunkTask

        measure_json = orjson.dumps(measure_res)
        grant = record(current_grant())
        size = self.chunk_size
        # the workers' gates get this gate's configured Provider Access opt-outs (auth/gated.py GatedStore); a
        # service on a store without a gate (tools and tests under the SYSTEM grant) has none to carry
        opt_out = str(getattr(self.store, "opt_out", ""))
        tasks = (ChunkTask(self.store.url, self.base_url, measure_json, period[0], period[1],
                           tuple(ids[i:i + size]), opt_out, grant=grant, index=i // size, subject_lists=subject_lists)
                 for i in range(0, len(ids), size))
        executor = make_executor(self.executor_spec)
        waiting: dict[int, Any] = {}
        expected = 0
        try:
            for index, n, part in executor.map(fn, tasks):
                waiting[index] = part
                if progress is not None:
                    progress(n, len(ids))
                while expected in waiting:
                    yield waiting.pop(expected)
                    expected += 1
        except CqlError as exc:
            raise Unprocessable(str(exc)) from None
        except ChunkFailed as exc:
            raise FhirError(f"The population run on {executor.name} failed: {exc}; nothing was reported, "
                            "retry once the workers reach the database", status=503, code="transient") from None
        except ExecutorUnavailable as exc:
            raise FhirError(f"The population run could not use {executor.name}: {exc}", status=503,
                            code="transient") from None
        finally:
            executor.close()
        assert not waiting, "executor lost chunks"

    def evaluate_patient(self, prepared: PreparedMeasure, patient_id: str, interval: Any,
                         shared: dict[str, list[dict[str, Any]]] | None = None,
                         data: PatientData | None = None, track: bool = True,
                         parameters: dict[str, Any] | None = None) -> tuple[SubjectResult, list[str]]:
        ds = StoreDataSource(self.store, patient_id, shared, data)
        ctx = Context(ds, prepared.terminology, {**(parameters or {}), "Measurement Period": interval},
                      evaluated={} if track else None)
        try:
            result = evaluate_subject(prepared.measure, prepared.engine, prepared.library, ctx,
                                      f"Patient/{patient_id}")
        except CqlError as exc:
            raise Unprocessable(f"Evaluating Patient/{patient_id}: {exc}") from None
        except LibraryNotFound as exc:
            raise Unprocessable(str(exc)) from None
        return result, list(ctx.evaluated or {})

    def _attach_subject_lists(self, mr: dict[str, Any], prepared: PreparedMeasure, tally: ReportTally) -> None:
        contained = []
        for gi, group in enumerate(prepared.measure.groups):
            for pi, pop in enumerate(mr["group"][gi]["population"]):
                code = pop["code"]["coding"][0]["code"]
                members = tally.members(gi, code)
                list_id = f"subjects-g{gi}-p{pi}"
                listed: dict[str, Any] = {"resourceType": "List", "id": list_id, "status": "current",
                                          "mode": "snapshot", "title": f"{group.id or gi} {code}"}
                if members:  # FHIR JSON has no empty arrays
                    listed["entry"] = [{"item": {"reference": s}} for s in members]
                contained.append(listed)
                pop["subjectResults"] = {"reference": f"#{list_id}"}
        mr["contained"] = contained + mr.get("contained", [])

    @staticmethod
    def period(start: str | None, end: str | None) -> tuple[tuple[str, str], Any]:
        from ..cql.datetime import parse_datetime
        from ..cql.interval import Interval

        if not start or not end:
            raise BadRequest("periodStart and periodEnd are required")
        try:
            lo, _ = parse_range(start)
            _, hi = parse_range(end)
        except DateParseError as exc:
            raise BadRequest(str(exc)) from None
        if hi < lo:
            raise BadRequest(f"periodEnd {end} is before periodStart {start}")
        # a date without a time (2025, 2025-03, 2025-03-01) stands for its whole year, month or day (DEQM)
        s = parse_datetime(lo[:10] + "T00:00:00.000") if "T" not in start else parse_datetime(start)
        e = parse_datetime(hi[:10] + "T23:59:59.999") if "T" not in end else parse_datetime(end)
        return (start, end), Interval(s, e, True, True)

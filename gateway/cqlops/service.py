"""Evaluate CQL for ``Library/$evaluate`` and ``$cql``: resolve the stored Libraries (through the gated store,
so a Library the caller may not read is not there), build the engine over them, read the subject's data
through the same gate, and turn the results into a Parameters resource.

Everything the evaluation reads goes through the ``GatedStore`` the app assembly hands in, under the grant of
the request being served: an expression sees what the caller could read with a search, nothing more. Remote
data, content and terminology endpoints are refused (no outbound call); evaluation time is bounded by
``cql_timeout_seconds`` and the ad-hoc expression's size by ``cql_max_expression_chars``."""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from ..cql import datetime as cqldt
from ..cql import quantity as cqlq
from ..cql.compiler import translate_library
from ..cql.compiler.resources import cql_text, translate_stored
from ..cql.datasource import BundleDataSource
from ..cql.engine import Context, Engine
from ..cql.interval import Interval
from ..cql.library import ElmLibrary, InvalidElm, LibraryManager, elm_from_library_resource
from ..cql.terminology import ValueSetIndex
from ..cql.values import Code, CqlError
from ..deqm.measure_data import StoreDataSource
from ..fhir.errors import BadRequest, FhirError, Issue, NotFound, Unprocessable
from ..search.query import QueryParser
from .results import result_parameters

if TYPE_CHECKING:
    from ..store.base import ResourceStore

SUBJECT = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ADHOC_NAME = "CqlOperationExpression"
RETURN = "return"
REFIRE_SECONDS = 0.2  # past the deadline, the stop is raised again this often until the evaluation ends
T = TypeVar("T")


class EvaluationTimeout(BaseException):
    """Raised inside the evaluating thread when the time limit passes (a BaseException, so no ``except
    Exception`` in the engine swallows it)."""


@dataclass
class Inputs:
    """What both operations take besides the library or expression."""
    subject: str | None = None
    expressions: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # CQL values by parameter name
    use_server_data: bool = True
    data: list[dict[str, Any]] = field(default_factory=list)  # the resources of the ``data`` Bundle


class _SubjectBundle(BundleDataSource):
    """Resources given in the request (``data``), with the subject's Patient picked by id."""

    def __init__(self, resources: list[dict[str, Any]], patient_id: str | None) -> None:
        super().__init__(resources)
        self.patient_id = patient_id

    def patient(self) -> dict[str, Any] | None:
        for p in self.by_type.get("Patient") or []:
            if self.patient_id is None or p.get("id") == self.patient_id:
                return p
        return None


class _Combined:
    """Server data (gated) plus the request's ``data``: a retrieve answers both."""

    def __init__(self, server: StoreDataSource, extra: _SubjectBundle) -> None:
        self.server = server
        self.extra = extra

    def patient(self) -> dict[str, Any] | None:
        return self.server.patient() or self.extra.patient()

    def retrieve(self, data_type: str, *, codes: Any = None, valueset: str | None = None,
                 date_range: Any = None) -> list[dict[str, Any]]:
        if data_type == "Patient":
            p = self.patient()
            return [p] if p else []
        return [*self.server.retrieve(data_type, codes=codes, valueset=valueset, date_range=date_range),
                *self.extra.retrieve(data_type)]


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(0))


class _Guard:
    """The state one evaluation shares with its watcher: how deep the evaluating thread is in store calls, and
    whether the deadline has passed. ``lock`` orders the watcher's check-and-raise against a store call's entry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.expired = False


_LOCAL = threading.local()  # .guard: the _Guard of the evaluation this thread runs, if any


class GuardedStore:
    """The store as ``CqlService`` uses it: while an evaluation with a time limit runs in this thread, every
    call is marked as data access, and the watcher never raises the stop inside one (it would land in the
    database driver or the connection pool and could leave a connection half used). A stop that falls due
    during a call is raised when the call returns, in this frame. A result that reads lazily (an iterator) is
    read to the end inside the call. Everything else is the wrapped store's own behaviour."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            guard: _Guard | None = getattr(_LOCAL, "guard", None)
            if guard is None:
                return attr(*args, **kwargs)
            with guard.lock:
                guard.depth += 1
            try:
                out = attr(*args, **kwargs)
                if isinstance(out, Iterator):
                    out = iter(list(out))
            finally:
                with guard.lock:
                    guard.depth -= 1
            if guard.expired:
                raise EvaluationTimeout
            return out

        return call


def with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` in this thread, stopped with 422 too-costly when it runs longer than ``seconds`` (0: no
    limit). The engine is pure Python, so an exception raised into the thread at the deadline ends even an
    evaluation that never reads data; it is raised again every ``REFIRE_SECONDS`` while ``fn`` runs (a
    finalizer running in the thread may swallow one), and a pending one is cleared when ``fn`` ends. It is
    never raised while the thread is inside a call of a ``GuardedStore`` (see there)."""
    if seconds <= 0:
        return fn()
    tid = threading.get_ident()
    guard = _Guard()
    done = [False]
    finished = threading.Event()

    def watch() -> None:
        if finished.wait(seconds):
            return
        while True:
            with guard.lock:
                if done[0]:
                    return
                guard.expired = True
                if guard.depth == 0:
                    _async_raise(tid, EvaluationTimeout)
            if finished.wait(REFIRE_SECONDS):
                return

    watcher = threading.Thread(target=watch, name="cql-deadline", daemon=True)
    outer = getattr(_LOCAL, "guard", None)
    _LOCAL.guard = guard
    try:
        watcher.start()
        try:
            return fn()
        finally:
            with guard.lock:
                done[0] = True
            finished.set()
            _async_raise(tid, None)
            _LOCAL.guard = outer
    except EvaluationTimeout:
        raise FhirError(f"The CQL evaluation took longer than {seconds:g} s and was stopped", status=422,
                        code="too-costly") from None


def cql_type_of(value: Any) -> str:
    """The CQL type a ``$cql`` parameter is declared with in the ad-hoc library, from its value."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, Decimal):
        return "Decimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, cqldt.DateTime):
        return "DateTime"
    if isinstance(value, cqldt.Date):
        return "Date"
    if isinstance(value, cqldt.Time):
        return "Time"
    if isinstance(value, cqlq.Quantity):
        return "Quantity"
    if isinstance(value, Code):
        return "Code"
    if isinstance(value, Interval):
        return "Interval<DateTime>"
    raise BadRequest(f"parameters: a {type(value).__name__} value cannot be declared as a CQL parameter")


class CqlService:
    """The use case behind both operations, over the gated store ``store``."""

    def __init__(self, store: ResourceStore, base_url: str, timeout_seconds: float = 30.0,
                 max_expression_chars: int = 10_000) -> None:
        self.store = cast("ResourceStore", GuardedStore(store))  # no stop raised inside a store call
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self.max_expression_chars = max_expression_chars

    # -- stored Libraries ------------------------------------------------------------------------------------
    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        q = QueryParser(self.base_url, strict=True, max_count=1000).parse(rtype, params)
        q.count, q.total = 1000, "none"
        return [orjson.loads(m.body) for m in self.store.search(q).matches]

    def library_by_id(self, library_id: str) -> dict[str, Any]:
        """The stored Library ``library_id`` the caller may read, else 404."""
        s = self.store.read("Library", library_id)
        if s is None or s.deleted or s.content is None:
            raise NotFound(f"Library/{library_id} is not known")
        return dict(orjson.loads(s.content))

    def library_by_url(self, canonical: str) -> dict[str, Any]:
        """The stored Library with canonical ``url`` (``url|version``) the caller may read, else 404; the
        last one stored when several match."""
        url, _, version = canonical.partition("|")
        if not url or len(canonical) > 1000:
            raise BadRequest("url must be a Library canonical, url or url|version")
        found = self._search("Library", [("url", url)] + ([("version", version)] if version else []))
        if not found:
            raise NotFound(f"No Library with url {canonical}")
        return found[-1]

    def _library_by_name(self, name: str, version: str | None) -> dict[str, Any] | None:
        found = self._search("Library", [("name:exact", name)] + ([("version", version)] if version else []))
        return found[-1] if found else None

    def _elm(self, res: dict[str, Any]) -> dict[str, Any]:
        """The Library's ELM: its application/elm+json content, else its CQL translated now (the translation
        errors, with line and column, are the 422)."""
        what = res.get("url") or f"Library/{res.get('id')}"
        try:
            elm = elm_from_library_resource(res)
        except (InvalidElm, AttributeError) as exc:
            raise Unprocessable(str(exc)) from None
        if elm is not None:
            return elm
        if cql_text(res) is None:
            raise Unprocessable(f"{what} has neither application/elm+json nor text/cql content to evaluate")
        translated, errors = translate_stored(res, self._library_by_name)
        if translated is None:
            issues = [Issue("error", "processing", f"CQL {e.line}:{e.col}: {e.message}", ["Library.content"])
                      for e in errors] or [Issue("error", "processing", "the CQL gives no ELM", ["Library.content"])]
            raise FhirError(f"{what}: the CQL does not translate", issues=issues, status=422, code="processing")
        return translated

    def _cql_provider(self, name: str, version: str | None) -> str | None:
        """CQL text of a stored Library by name (and version), for the translator's includes."""
        res = self._library_by_name(name, version)
        return cql_text(res) if res is not None else None

    def _manager(self, main_elm: dict[str, Any], url: str | None) -> tuple[LibraryManager, ElmLibrary]:
        """The engine's libraries: the main one and, transitively, the stored Libraries it includes."""
        manager = LibraryManager()
        try:
            main = manager.add(ElmLibrary.from_elm(main_elm, url))
        except (InvalidElm, KeyError, TypeError, AttributeError) as exc:
            raise Unprocessable(f"The library's ELM is not usable: {exc}") from None
        pending = list(main.includes.values())
        seen = {main.key}
        while pending:
            path, version = pending.pop()
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if f"{name}|{version or ''}" in seen:
                continue
            res = self._library_by_name(name, version)
            if res is None:
                raise Unprocessable(f"Library {name}{' version ' + version if version else ''}, included by "
                                    f"{main.name}, is not in the server (or not readable with this grant)")
            try:
                lib = manager.add(ElmLibrary.from_elm(self._elm(res), res.get("url")))
            except (InvalidElm, KeyError, TypeError, AttributeError) as exc:
                raise Unprocessable(f"Library {name}: {exc}") from None
            seen.update({lib.key, f"{name}|{version or ''}"})
            pending.extend(lib.includes.values())
        return manager, main

    def _terminology(self, manager: LibraryManager, extra: list[dict[str, Any]]) -> ValueSetIndex:
        def resolve(rtype: str, url: str, version: str | None) -> dict[str, Any] | None:
            found = self._search(rtype, [("url", url)])
            if version is not None:
                found = [r for r in found if r.get("version") == version]
            return found[-1] if found else None

        index = ValueSetIndex(resolver=resolve)
        urls = sorted({d["id"] for lib in manager.libraries() for d in lib.valuesets.values()
                       if isinstance(d.get("id"), str)})
        for url in urls:
            for vs in self._search("ValueSet", [("url", url)]):
                index.add(vs)
        for i, r in enumerate(extra):
            if r.get("resourceType") == "ValueSet":
                try:
                    index.add(r)
                except Exception as exc:  # noqa: BLE001 - caller-sent content of any shape: a 400, never a 500
                    raise BadRequest(f"data: ValueSet entry {i} cannot be used ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})") from None
        return index

    # -- evaluation -----------------------------------------------------------------------------------------
    def _patient_id(self, inputs: Inputs) -> str | None:
        if inputs.subject is None:
            return None
        m = SUBJECT.match(inputs.subject.removeprefix(self.base_url.rstrip("/") + "/"))
        if not m:
            raise BadRequest(f"subject must be Patient/[id], got {inputs.subject[:100]!r}")
        pid = m.group(1)
        if inputs.use_server_data:
            s = self.store.read("Patient", pid)
            if s is None or s.deleted:
                raise NotFound(f"Subject Patient/{pid} is not known")
        return pid

    def _source(self, inputs: Inputs, pid: str | None) -> Any:
        extra = _SubjectBundle(inputs.data, pid)
        if pid is None or not inputs.use_server_data:
            return extra  # no subject: the request's data only (server data is read per patient)
        server = StoreDataSource(self.store, pid)
        return _Combined(server, extra) if inputs.data else server

    def _run(self, manager: LibraryManager, lib: ElmLibrary, names: list[str], inputs: Inputs,
             pid: str | None) -> dict[str, Any]:
        engine = Engine(manager)
        ctx = Context(self._source(inputs, pid), self._terminology(manager, inputs.data), inputs.parameters,
                      now=cqldt.now(datetime.now(UTC)))
        out: list[dict[str, Any]] = []
        for name in names:
            try:
                value = engine.evaluate(lib, [name], ctx)[name]
            except FhirError:
                raise
            except RecursionError:
                raise Unprocessable(f"{name}: the expression is nested too deeply to evaluate") from None
            except CqlError as exc:
                raise Unprocessable(f"{name}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a defect or odd input in the engine: a 422, never a 500
                raise Unprocessable(f"{name}: the evaluation failed ({type(exc).__name__}: {exc})") from None
            out.extend(result_parameters(name, value))
        return {"resourceType": "Parameters", "parameter": out}

    def evaluate_library(self, res: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        """Library/$evaluate: the named (default: every public) definitions of ``res`` for the subject;
        translation (of a Library holding only CQL) and evaluation together within the time limit."""
        return with_deadline(lambda: self._evaluate_library(res, inputs), self.timeout_seconds)

    def _evaluate_library(self, res: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        manager, lib = self._manager(self._elm(res), res.get("url"))
        public = [n for n, d in lib.defs.items() if d.get("accessLevel", "Public") == "Public"]
        names = inputs.expressions or public
        unknown = [n for n in names if n not in lib.defs]
        if unknown:
            raise BadRequest(f"Library {lib.name} has no definition {', '.join(repr(n) for n in unknown[:5])}")
        declared = {n for other in manager.libraries() for n in other.parameters}
        stray = [n for n in inputs.parameters if n.rsplit(".", 1)[-1] not in declared]
        if stray:
            raise BadRequest(f"parameters: the library declares no parameter {stray[0][:100]!r}")
        pid = self._patient_id(inputs)
        in_patient = [n for n in names if lib.defs[n].get("context") == "Patient"]
        if pid is None and in_patient:
            if inputs.expressions:
                raise BadRequest(f"subject (Patient/[id]) is required for Patient-context expressions: "
                                 f"{', '.join(in_patient[:5])}")
            names = [n for n in names if n not in in_patient]
            if not names:
                raise BadRequest("subject (Patient/[id]) is required: every definition of this library is in "
                                 "the Patient context")
        return self._run(manager, lib, names, inputs, pid)

    def evaluate_expression(self, expression: str, libraries: list[tuple[str, str]], inputs: Inputs
                            ) -> dict[str, Any]:
        """$cql: ``expression`` in an ad-hoc library (FHIR 4.0.1, the named stored libraries included under
        their aliases, the Patient context when a subject is given), answered as the ``return`` parameter;
        its length is checked first, then translation and evaluation run within the time limit."""
        if len(expression) > self.max_expression_chars:
            raise FhirError(f"expression is {len(expression)} characters long; the limit is "
                            f"{self.max_expression_chars}", status=400, code="too-costly")
        return with_deadline(lambda: self._evaluate_expression(expression, libraries, inputs), self.timeout_seconds)

    def _evaluate_expression(self, expression: str, libraries: list[tuple[str, str]], inputs: Inputs
                             ) -> dict[str, Any]:
        if not expression.strip():
            raise BadRequest("expression is empty")
        if "\x00" in expression:
            raise BadRequest("expression contains a NUL character")
        header = [f"library {ADHOC_NAME} version '0'", "using FHIR version '4.0.1'"]
        for url, alias in libraries:
            if not IDENTIFIER.match(alias) or alias == ADHOC_NAME:
                raise BadRequest(f"library: name {alias[:70]!r} is not a CQL identifier")
            res = self.library_by_url(url)
            name, version = res.get("name"), res.get("version")
            if not isinstance(name, str) or not IDENTIFIER.match(name) or cql_text(res) is None:
                raise Unprocessable(f"Library {url} has no CQL name and text/cql content to include")
            ver = f" version '{version}'" if isinstance(version, str) and "'" not in version else ""
            header.append(f"include {name}{ver} called {alias}")
        for pname, value in inputs.parameters.items():
            if '"' in pname or "\\" in pname or not pname.isprintable():
                raise BadRequest(f"parameters: {pname[:70]!r} is not a usable CQL parameter name")
            header.append(f'parameter "{pname}" {cql_type_of(value)}')
        if inputs.subject is not None:
            header.append("context Patient")
        header.append(f'define "{RETURN}":')
        text = "\n".join(header) + "\n" + expression + "\n"
        try:
            result = translate_library(text, self._cql_provider)
        except RecursionError:
            raise BadRequest("expression is nested too deeply") from None
        if result.elm is None or result.errors:
            raise _translation_error(result.errors, len(header))
        defs = [d.get("name") for d in (result.elm["library"].get("statements") or {}).get("def", [])]
        if any(d not in (RETURN, "Patient") for d in defs):
            raise BadRequest("expression must be one CQL expression, not library statements")
        manager, lib = self._manager(result.elm, None)
        pid = self._patient_id(inputs)
        return self._run(manager, lib, [RETURN], inputs, pid)


def _translation_error(errors: list[Any], header_lines: int) -> FhirError:
    """400 with each translator diagnostic placed in the caller's expression (line and column from 1)."""
    issues = []
    for e in errors or []:
        line = e.line - header_lines
        text = f"line {line}, column {e.col}: {e.message}" if line >= 1 else str(e.message)
        issues.append(Issue("error", "invalid", text, ["Parameters.parameter('expression')"]))
    if not issues:
        issues = [Issue("error", "invalid", "the expression does not translate")]
    return FhirError("The CQL expression does not translate: " + issues[0].diagnostics, issues=issues,
                     status=400, code="invalid")

"""A CQL library to an ELM library: statements, name resolution across definitions, functions, parameters,
terminology and included libraries.

Definitions translate on first reference (so a definition's type is known where it is used, whatever the
order in the text); an error in one definition is recorded with its line and column and the others still
translate, as the reference translator reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import model
from .ast import Node
from .lexer import CqlSyntaxError
from .parser import parse_library
from .translator import (
    SYSTEM_PROPERTIES,
    CqlTranslationError,
    ExpressionTranslator,
    Scope,
    err,
)
from .types import SYSTEM_TYPES, conversion_cost, qname, spec, with_type

SCHEMA = {"id": "urn:hl7-org:elm", "version": "r1"}
SYSTEM_USING = {"localIdentifier": "System", "uri": "urn:hl7-org:elm-types:r1"}


@dataclass
class Diagnostic:
    """One translator message: severity, message, line and column (from 1), and the statement it is in."""

    severity: str
    message: str
    line: int
    col: int
    statement: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "line": self.line, "col": self.col,
                "statement": self.statement}


@dataclass
class Translation:
    """The result of translating one library: the ELM JSON (``{"library": ...}``) and the diagnostics."""

    elm: dict[str, Any] | None
    errors: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class LibraryTranslator:
    """Translates one parsed library."""

    def __init__(self, ast: Node, libraries: dict[str, LibraryTranslator] | None = None) -> None:
        self.ast = ast
        self.expr = ExpressionTranslator(self)
        self.errors: list[Diagnostic] = []
        self.libraries = libraries or {}  # included libraries by alias
        self.defs: dict[str, Node] = {}
        self.functions: dict[str, list[Node]] = {}
        self.context = "Unfiltered"
        self.def_context: dict[str, str] = {}
        for st in ast.statements:
            if st.kind == "context":
                self.context = st.name
            elif st.kind == "define":
                self.defs[st.name] = st
                self.def_context[st.name] = self.context
            elif st.kind == "function":
                self.functions.setdefault(st.name, []).append(st)
                self.def_context[f"fn:{id(st)}"] = self.context
        self.models = [u.name for u in ast.usings if u.name != "System"]
        self.params = {p.name: p for p in ast.parameters}
        self.codesystems = {c.name: c for c in ast.codesystems}
        self.valuesets = {v.name: v for v in ast.valuesets}
        self.codes = {c.name: c for c in ast.codes}
        self.concepts = {c.name: c for c in ast.concepts}
        self.includes = {i.alias: i for i in ast.includes}
        self._done: dict[str, dict[str, Any] | None] = {}
        self._types: dict[str, Any] = {}
        self._in_progress: set[str] = set()
        self._fn_done: dict[int, dict[str, Any]] = {}
        self._fn_types: dict[int, Any] = {}
        self._param_types: dict[str, Any] = {}

    # ---- the library
    def translate(self) -> Translation:
        lib: dict[str, Any] = {"identifier": {"id": self.ast.name or "Anonymous"}, "schemaIdentifier": SCHEMA,
                               "usings": {"def": [SYSTEM_USING]}}
        if self.ast.version:
            lib["identifier"]["version"] = self.ast.version
        for u in self.ast.usings:
            if u.name != "System":
                entry = {"localIdentifier": u.name, "uri": MODEL_URIS.get(u.name, u.name)}
                if u.version:
                    entry["version"] = u.version
                lib["usings"]["def"].append(entry)
        if self.includes:
            lib["includes"] = {"def": [dict({"localIdentifier": i.alias, "path": i.path},
                                            **({"version": i.version} if i.version else {}))
                                       for i in self.includes.values()]}
        if self.params:
            lib["parameters"] = {"def": [self.parameter_def(p) for p in self.params.values()]}
        if self.codesystems:
            lib["codeSystems"] = {"def": [dict({"name": c.name, "id": c.id, "accessLevel": c.access or "Public"},
                                               **({"version": c.version} if c.version else {}))
                                          for c in self.codesystems.values()]}
        if self.valuesets:
            lib["valueSets"] = {"def": [self.valueset_def(v) for v in self.valuesets.values()]}
        if self.codes:
            lib["codes"] = {"def": [self.code_def(c) for c in self.codes.values()]}
        if self.concepts:
            lib["concepts"] = {"def": [{"name": c.name, "accessLevel": c.access or "Public", "display": c.display,
                                        "code": [{"name": k} for k in c.codes]} for c in self.concepts.values()]}
        ctxs = list(dict.fromkeys(st.name for st in self.ast.statements if st.kind == "context"))
        if ctxs:
            lib["contexts"] = {"def": [{"name": c} for c in ctxs]}
        defs: list[dict[str, Any]] = []
        for ctx in ctxs:
            if ctx == "Patient" and self.models:
                defs.append(self.patient_def())
        for st in self.ast.statements:
            if st.kind == "define":
                d = self.definition(st.name)
                if d is not None:
                    defs.append(d)
            elif st.kind == "function":
                d = self.function_def(st)
                if d is not None:
                    defs.append(d)
        lib["statements"] = {"def": defs}
        return Translation({"library": lib}, self.errors)

    def record(self, exc: CqlSyntaxError, statement: str | None) -> None:
        self.errors.append(Diagnostic("error", exc.message, exc.line, exc.col, statement))

    def definition(self, name: str) -> dict[str, Any] | None:
        if name in self._done:
            return self._done[name]
        st = self.defs[name]
        if name in self._in_progress:
            raise err(st, f"definition {name} refers to itself")
        self._in_progress.add(name)
        try:
            elm, t = self.expr.tr(st.body, Scope())
        except CqlSyntaxError as exc:
            self.record(exc, name)
            self._done[name] = None
            return None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            self.errors.append(Diagnostic("error", f"internal translator error: {type(exc).__name__}: {exc}",
                                          st.line, st.col, name))
            self._done[name] = None
            return None
        finally:
            self._in_progress.discard(name)
        self._types[name] = t
        d = {"name": name, "context": self.def_context[name], "accessLevel": st.access, "expression": elm}
        d = with_type(d, t)
        self._done[name] = d
        return d

    def def_type(self, name: str, node: Node) -> Any:
        if name not in self._types:
            if name in self._in_progress:
                return None
            if self.definition(name) is None:
                raise err(node, f"definition {name} has errors")
        return self._types.get(name)

    def function_def(self, st: Node) -> dict[str, Any] | None:
        key = id(st)
        if key in self._fn_done:
            return self._fn_done[key]
        try:
            operands = [(n, self.resolve_type(t, st)) for n, t in st.operands]
        except CqlSyntaxError as exc:
            self.record(exc, st.name)
            self._fn_done[key] = None  # type: ignore[assignment]
            return None
        d: dict[str, Any] = {"type": "FunctionDef", "name": st.name, "context": self.def_context[f"fn:{key}"],
                             "accessLevel": st.access,
                             "operand": [{"name": n, "operandTypeSpecifier": spec(t)} for n, t in operands]}
        if st.fluent:
            d["fluent"] = True
        declared = self.resolve_type(st.returns, st) if st.returns is not None else None
        if st.body is None:
            d["external"] = True
            self._fn_types[key] = declared
            self._fn_done[key] = with_type(d, declared)
            return self._fn_done[key]
        if key in self._in_progress_fns:
            return None
        self._in_progress_fns.add(key)
        scope = Scope()
        scope.operands = dict(operands)
        try:
            elm, t = self.expr.tr(st.body, scope)
        except CqlSyntaxError as exc:
            self.record(exc, st.name)
            self._fn_done[key] = None  # type: ignore[assignment]
            return None
        finally:
            self._in_progress_fns.discard(key)
        rt = declared if declared is not None else t
        d["expression"] = elm
        self._fn_types[key] = rt
        self._fn_done[key] = with_type(d, rt)
        return self._fn_done[key]

    _in_progress_fns: set[int] = set()

    def parameter_def(self, p: Node) -> dict[str, Any]:
        d: dict[str, Any] = {"name": p.name, "accessLevel": p.access or "Public"}
        t = self.resolve_type(p.type, p) if p.type is not None else None
        if p.default is not None:
            try:
                elm, dt = self.expr.tr(p.default, Scope())
                d["default"] = self.expr.convert(elm, dt, t) if t is not None else elm
                t = t if t is not None else dt
            except CqlSyntaxError as exc:
                self.record(exc, p.name)
        if p.type is not None:
            d["parameterTypeSpecifier"] = spec(t)
        self._param_types[p.name] = t
        return with_type(d, t)

    def param_type(self, name: str) -> Any:
        if name not in self._param_types:
            self.parameter_def(self.params[name])
        return self._param_types.get(name)

    def valueset_def(self, v: Node) -> dict[str, Any]:
        d: dict[str, Any] = {"name": v.name, "id": v.id, "accessLevel": v.access or "Public"}
        if v.version:
            d["version"] = v.version
        if v.codesystems:
            d["codeSystem"] = [{"type": "CodeSystemRef", "name": c} for c in v.codesystems]
        return d

    def code_def(self, c: Node) -> dict[str, Any]:
        d: dict[str, Any] = {"name": c.name, "id": c.code, "accessLevel": c.access or "Public",
                             "codeSystem": {"name": c.system}}
        if c.display is not None:
            d["display"] = c.display
        return d

    def patient_def(self) -> dict[str, Any]:
        ret = {"type": "Retrieve", "dataType": qname("FHIR.Patient"),
               "templateId": model.template_id("Patient", self.models)}
        return {"name": "Patient", "context": "Patient", "expression": {"type": "SingletonFrom", "operand": ret}}

    def helpers_alias(self) -> str | None:
        """The alias FHIRHelpers is included under (None inside FHIRHelpers itself)."""
        if self.ast.name == "FHIRHelpers":
            return None
        for alias, inc in self.includes.items():
            if inc.path == "FHIRHelpers":
                return alias
        return "FHIRHelpers"

    # ---- resolution used by the expression translator
    def resolve_type(self, ts: Any, node: Node) -> Any:
        kind = ts[0]
        if kind == "named":
            name = ts[1]
            local = name[7:] if name.startswith("System.") else name
            if name in ("Quantity", "Ratio") and "FHIR" in self.models:
                return f"FHIR.{name}"  # the FHIR model's own types come before System's of the same name
            if local in SYSTEM_TYPES:
                return local
            if self.models:
                found = model.resolve_model_type(name, self.models)
                if found is not None:
                    return found
            raise err(node, f"could not resolve type name {name}")
        if kind in ("list", "interval"):
            inner = self.resolve_type(ts[1], node)
            return ("List" if kind == "list" else "Interval", inner)
        if kind == "tuple":
            return ("Tuple", tuple((n, self.resolve_type(t, node)) for n, t in ts[1]))
        return ("Choice", tuple(self.resolve_type(t, node) for t in ts[1]))

    def is_include(self, name: str) -> bool:
        return name in self.includes

    def resolve_identifier(self, name: str, node: Node, tr: ExpressionTranslator,
                           library: str | None = None) -> tuple[dict[str, Any], Any] | None:
        if library is not None:
            other = self.libraries.get(library)
            if other is None:
                raise err(node, f"library {library} is not loaded")
            ref = other.resolve_identifier(name, node, other.expr)
            if ref is None:
                return None
            elm, t = ref
            elm["libraryName"] = library
            return elm, t
        if name in self.defs:
            t = self.def_type(name, node)
            return with_type({"type": "ExpressionRef", "name": name}, t), t
        if name in self.params:
            t = self.param_type(name)
            return with_type({"type": "ParameterRef", "name": name}, t), t
        if name in self.valuesets:
            return {"type": "ValueSetRef", "name": name, "preserve": True}, "ValueSet"
        if name in self.codesystems:
            return {"type": "CodeSystemRef", "name": name}, "CodeSystem"
        if name in self.codes:
            return with_type({"type": "CodeRef", "name": name}, "Code"), "Code"
        if name in self.concepts:
            return with_type({"type": "ConceptRef", "name": name}, "Concept"), "Concept"
        if name == "Patient" and self.models:
            return with_type({"type": "ExpressionRef", "name": "Patient"}, "FHIR.Patient"), "FHIR.Patient"
        return None

    def codesystem_ref(self, name: str, node: Node) -> dict[str, Any]:
        if "." in name:
            lib, local = name.split(".", 1)
            return {"type": "CodeSystemRef", "name": local, "libraryName": lib}
        if name not in self.codesystems:
            raise err(node, f"could not resolve code system {name}")
        return {"type": "CodeSystemRef", "name": name}

    def resolve_function(self, name: str, args: list[tuple[dict[str, Any], Any]], node: Node,
                         tr: ExpressionTranslator, library: str | None = None,
                         fluent: bool = False) -> tuple[dict[str, Any], Any] | None:
        owner = self
        if library is not None:
            owner = self.libraries.get(library)  # type: ignore[assignment]
            if owner is None:
                raise err(node, f"library {library} is not loaded")
        cands = owner.functions.get(name, [])
        if not cands and fluent:
            for alias, other in self.libraries.items():
                fl = [f for f in other.functions.get(name, []) if f.fluent]
                if fl:
                    owner, cands, library = other, fl, alias
                    break
        best = None
        for f in cands:
            if len(f.operands) != len(args):
                continue
            ptypes = [owner.resolve_type(t, f) for _, t in f.operands]
            costs = [conversion_cost(a, p) for (_, a), p in zip(args, ptypes, strict=True)]
            if any(c is None for c in costs):
                continue
            total = sum(c for c in costs if c is not None)
            if best is None or total < best[0]:
                best = (total, f, ptypes)
        if best is None:
            if cands and library is not None:
                raise err(node, f"no overload of {library}.{name} matches the arguments")
            return None
        _, f, ptypes = best
        operands = [tr.convert(e, a, p) for (e, a), p in zip(args, ptypes, strict=True)]
        owner.function_def(f)
        rt = owner._fn_types.get(id(f))
        out: dict[str, Any] = {"type": "FunctionRef", "name": name, "operand": operands,
                               "signature": [spec(p) for p in ptypes]}
        if library is not None:
            out["libraryName"] = library
        return with_type(out, rt), rt

    def property_type(self, t: Any, name: str) -> Any:
        """The type of element ``name`` of a value of type ``t``: None when unknown (model types), False
        when the type has no such element."""
        if t is None or t == "Any":
            return None
        if isinstance(t, tuple) and t[0] == "Choice":  # the element of each alternative that has it
            found = [self.property_type(alt, name) for alt in t[1]]
            types = list(dict.fromkeys(f for f in found if f is not False))
            if not types:
                return False
            if None in types:
                return None
            flat: list[Any] = []
            for x in types:
                flat.extend(x[1] if isinstance(x, tuple) and x[0] == "Choice" else [x])
            flat = list(dict.fromkeys(flat))
            return flat[0] if len(flat) == 1 else ("Choice", tuple(flat))
        if isinstance(t, tuple) and t[0] == "Tuple":
            for n, et in t[1]:
                if n == name:
                    return et
            return False
        if isinstance(t, tuple) and t[0] == "Interval":
            if name in ("low", "high"):
                return t[1]
            if name in ("lowClosed", "highClosed"):
                return "Boolean"
            return False
        if isinstance(t, str) and t in SYSTEM_PROPERTIES:
            return SYSTEM_PROPERTIES[t].get(name, None)
        if isinstance(t, str) and t.startswith(("FHIR.", "QICore.")):
            return model.property_type(t, name)
        return None

    def retrieve(self, n: Node, scope: Scope, tr: ExpressionTranslator) -> tuple[dict[str, Any], Any]:
        if not self.models:
            raise err(n, "a retrieve needs a data model (a using statement)")
        ftype = model.fhir_type(n.type)
        tname = f"FHIR.{ftype}"
        if model.fhirmodel.type_info(ftype) is None:
            raise err(n, f"could not resolve type name {n.type}")
        out: dict[str, Any] = {"type": "Retrieve", "dataType": qname(tname),
                               "templateId": model.template_id(n.type, self.models)}
        if n.terminology is not None:
            term, tt = tr.tr(n.terminology, scope)
            out["codeProperty"] = n.codepath or model.PRIMARY_CODE_PATHS.get(ftype, "code")
            if tt == "ValueSet":
                out["codeComparator"] = n.comparator or "in"
            else:
                out["codeComparator"] = n.comparator or "~"
            if tt in ("Code", "Concept"):
                term = {"type": "ToList", "operand": term}
            out["codes"] = term
        t = ("List", tname)
        return with_type(out, t), t


MODEL_URIS = {"FHIR": "http://hl7.org/fhir", "QICore": "http://hl7.org/fhir/us/qicore"}
DEFAULT_CODE_PATHS = {"Encounter": "type", "Observation": "code", "Condition": "code", "Procedure": "code",
                      "MedicationRequest": "medication", "MedicationAdministration": "medication",
                      "Immunization": "vaccineCode", "DiagnosticReport": "code", "ServiceRequest": "code",
                      "AllergyIntolerance": "code", "Coverage": "type", "DeviceRequest": "code"}


Provider = Callable[[str, "str | None"], "str | None"]


def translate_library(text: str, included: dict[str, str] | Provider | None = None,
                      cache: dict[str, LibraryTranslator | None] | None = None) -> Translation:
    """Translate CQL library text to ELM JSON. ``included`` gives the CQL text of included libraries: a dict
    by library name, or a function of (name, version). A syntax error gives no ELM and that one error;
    semantic errors are reported per statement with their line and column, and the statements without errors
    are still translated. ``cache`` keeps the included libraries (parsed, with the definitions translated so
    far) for the next call with the same provider, so a set of libraries translates each include once."""
    if isinstance(included, dict):
        texts = included

        def provider(name: str, version: str | None) -> str | None:
            return texts.get(name)
    else:
        provider = included or (lambda name, version: None)  # noqa: E731
    try:
        ast = parse_library(text)
    except CqlSyntaxError as exc:
        return Translation(None, [Diagnostic("error", exc.message, exc.line, exc.col, None)])
    except RecursionError:
        return Translation(None, [Diagnostic("error", "expressions are nested too deeply", 1, 1, None)])
    errors: list[Diagnostic] = []
    cache = cache if cache is not None else {}
    translator = LibraryTranslator(ast, _load_includes(ast, provider, cache, errors, set()))
    result = translator.translate()
    result.errors[:0] = errors
    return result


def _load_includes(ast: Node, provider: Provider, cache: dict[str, LibraryTranslator | None],
                   errors: list[Diagnostic], loading: set[str]) -> dict[str, LibraryTranslator]:
    libs: dict[str, LibraryTranslator] = {}
    for inc in ast.includes:
        key = f"{inc.path}|{inc.version or ''}"
        if key not in cache:
            if key in loading:
                errors.append(Diagnostic("error", f"circular include of {inc.path}", inc.line, inc.col, None))
                continue
            source = provider(inc.path, inc.version)
            if source is None:
                errors.append(Diagnostic("error", f"could not load library {inc.path}"
                                         + (f" version '{inc.version}'" if inc.version else ""),
                                         inc.line, inc.col, None))
                cache[key] = None
                continue
            try:
                sub = parse_library(source)
            except RecursionError:
                errors.append(Diagnostic("error", f"in library {inc.path}: expressions are nested too deeply",
                                         inc.line, inc.col, None))
                cache[key] = None
                continue
            except CqlSyntaxError as exc:
                errors.append(Diagnostic("error", f"in library {inc.path}: {exc.message}", exc.line, exc.col,
                                         None))
                cache[key] = None
                continue
            loading.add(key)
            cache[key] = LibraryTranslator(sub, _load_includes(sub, provider, cache, errors, loading))
            loading.discard(key)
        found = cache.get(key)
        if found is not None:
            libs[inc.alias] = found
    return libs


__all__ = ["translate_library", "Translation", "Diagnostic", "LibraryTranslator", "CqlTranslationError", "elm_json"]


_DECIMAL_MARK = "\u0000dec:"


def elm_json(elm: dict[str, Any], indent: int | None = None) -> str:
    """ELM as JSON text, with decimals (Quantity values) written as JSON numbers that keep their scale."""
    import json
    import re
    from decimal import Decimal

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            return _DECIMAL_MARK + format(o, "f")
        raise TypeError(f"not JSON: {type(o).__name__}")

    text = json.dumps(elm, default=default, indent=indent)
    return re.sub(r'"\\u0000dec:([-0-9.]+)"', r"\1", text)

"""The ELM interpreter core: libraries compile once into Python closures over an evaluation context.

Every ELM node type is compiled by a function registered with ``@compiles("Type")`` (operator families live
in the ``ops_*`` modules, one per CQL spec chapter). A node type nobody registered raises ``UnsupportedNode``
naming the node, the library and the definition, at compile time — never a silent null.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .datasource import DataSource
from .library import ElmLibrary, LibraryManager
from .terminology import TerminologyService
from .values import CqlError

Fn = Callable[["Context"], Any]
Compiler = Callable[[dict[str, Any], "LibraryCompiler"], Fn]
_REGISTRY: dict[str, Compiler] = {}


class UnsupportedNode(CqlError):
    def __init__(self, node_type: str, library: str, definition: str | None) -> None:
        where = f" in definition \"{definition}\"" if definition else ""
        super().__init__(f"unsupported ELM node {node_type} (library {library}{where})")
        self.node_type = node_type


class EvaluationError(CqlError):
    pass


def compiles(*types: str) -> Callable[[Compiler], Compiler]:
    def register(fn: Compiler) -> Compiler:
        for t in types:
            _REGISTRY[t] = fn
        return fn

    return register


def registered_types() -> set[str]:
    _load_ops()
    return set(_REGISTRY)


_OPS_LOADED = False


def _load_ops() -> None:
    global _OPS_LOADED
    if _OPS_LOADED:
        return
    import importlib
    import pkgutil

    from . import __path__ as pkg_path

    for mod in pkgutil.iter_modules(pkg_path):
        if mod.name.startswith("ops_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    _OPS_LOADED = True


@dataclass
class Context:
    """Everything one evaluation (one patient, one library tree) needs; closures read it, never globals."""

    data: DataSource
    terminology: TerminologyService
    parameters: dict[str, Any] = field(default_factory=dict)  # "Library.Param" or "Param" -> value
    now: Any = None  # CQL DateTime of the evaluation request (Now(), Today())
    cache: dict[tuple[str, str], Any] = field(default_factory=dict)  # (library key, definition) -> value
    scope: dict[str, Any] = field(default_factory=dict)  # aliases, lets, operands of the current frame
    messages: list[str] = field(default_factory=list)
    strict_messages: bool = False
    # "Type/id" of the resources retrieves returned (an ordered set); None: not tracked. When tracked, each
    # definition also records the resources that fed it, its own retrieves and those of what it references
    evaluated: dict[str, None] | None = None
    used_by: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)  # definition -> resources
    trace: list[dict[str, None]] = field(default_factory=list)  # collectors of the definitions being evaluated
    retrieve_cache: dict[Any, Any] = field(default_factory=dict)
    # results of function calls whose arguments are FHIR elements of this evaluation's data (ops_refs), kept
    # only while resources are not tracked: a memoised call would not note the resources it read
    calls: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = field(default_factory=dict)

    def note_resources(self, refs: list[str]) -> None:
        """Resources a retrieve returned: evaluated, and used by every definition being evaluated."""
        if self.evaluated is None:
            return
        for r in refs:
            self.evaluated.setdefault(r, None)
        if self.trace:
            self.trace[-1].update(dict.fromkeys(refs))

    def child_scope(self, **values: Any) -> dict[str, Any]:
        saved = self.scope
        self.scope = {**saved, **values}
        return saved


class LibraryCompiler:
    """Compiles the definitions of one library on demand; each definition once."""

    def __init__(self, library: ElmLibrary, manager: LibraryManager, engine: Engine) -> None:
        self.library = library
        self.manager = manager
        self.engine = engine
        self._defs: dict[str, Fn] = {}
        self._functions: dict[int, Fn] = {}
        self.current: str | None = None  # definition being compiled, for error messages

    def compile(self, node: dict[str, Any] | None) -> Fn:
        if node is None:
            return _null
        t = node.get("type")
        fn = _REGISTRY.get(t or "")
        if fn is None:
            raise UnsupportedNode(str(t), self.library.key, self.current)
        return fn(node, self)

    def operands(self, node: dict[str, Any]) -> list[Fn]:
        op = node.get("operand")
        if op is None:
            return []
        if isinstance(op, list):
            return [self.compile(o) for o in op]
        return [self.compile(op)]

    def definition(self, name: str) -> Fn:
        fn = self._defs.get(name)
        if fn is not None:
            return fn
        with self.engine.lock:  # compiled once, also when threads (a Dask worker's) ask at the same time
            fn = self._defs.get(name)
            if fn is not None:
                return fn
            return self._compile_definition(name)

    def _compile_definition(self, name: str) -> Fn:
        d = self.library.defs.get(name)
        if d is None:
            raise EvaluationError(f"Library {self.library.key} has no definition \"{name}\"")
        key = (self.library.key, name)
        slot: list[Fn] = []

        lock = self.engine.lock

        def memo(ctx: Context) -> Any:  # definitions are evaluated once per context
            try:
                value = ctx.cache[key]
            except KeyError:
                body = slot[0] if slot else _compiled(slot, lock)
                if ctx.evaluated is None:
                    value = ctx.cache[key] = body(ctx)
                    return value
                ctx.trace.append({})
                try:
                    value = body(ctx)
                finally:
                    used = ctx.trace.pop()
                ctx.cache[key] = value
                ctx.used_by[key] = used
                if ctx.trace:
                    ctx.trace[-1].update(used)
                return value
            if ctx.trace:  # a definition already evaluated still feeds the one that references it
                ctx.trace[-1].update(ctx.used_by.get(key, ()))
            return value

        self._defs[name] = memo  # registered before compiling the body: definitions may recurse via refs
        saved, self.current = self.current, name
        try:
            slot.append(self.compile(d.get("expression")))
        except Exception:
            del self._defs[name]  # a failed compile must fail again next time, not leave a hollow entry
            raise
        finally:
            self.current = saved
        return memo

    def function(self, fdef: dict[str, Any]) -> Fn:
        """The body of a FunctionDef as a closure reading its operands from ctx.scope."""
        fid = id(fdef)
        fn = self._functions.get(fid)
        if fn is not None:
            return fn
        with self.engine.lock:
            fn = self._functions.get(fid)
            if fn is not None:
                return fn
            return self._compile_function(fdef, fid)

    def _compile_function(self, fdef: dict[str, Any], fid: int) -> Fn:
        slot: list[Fn] = []
        lock = self.engine.lock

        def call(ctx: Context) -> Any:
            return (slot[0] if slot else _compiled(slot, lock))(ctx)

        self._functions[fid] = call
        if fdef.get("external"):
            from .ops_native import native_function

            slot.append(native_function(self.library, fdef))
            return call
        saved, self.current = self.current, fdef.get("name")
        try:
            slot.append(self.compile(fdef.get("expression")))
        except Exception:
            del self._functions[fid]
            raise
        finally:
            self.current = saved
        return call

    def other(self, alias: str | None) -> LibraryCompiler:
        if not alias:
            return self
        return self.engine.compiler(self.manager.included(self.library, alias))


def _null(ctx: Context) -> Any:
    return None


def _compiled(slot: list[Fn], lock: Any) -> Fn:
    """The body of a definition or function another thread is still compiling: wait for that compile."""
    with lock:
        pass
    if not slot:
        raise EvaluationError("a definition whose compilation failed was called")
    return slot[0]


class Engine:
    """Compiled libraries, shared across evaluations (thread-safe to read once compiled)."""

    def __init__(self, manager: LibraryManager) -> None:
        _load_ops()
        self.manager = manager
        self._compilers: dict[str, LibraryCompiler] = {}
        self.lock = threading.RLock()  # guards lazy compilation (definitions compile on first use)

    def compiler(self, library: ElmLibrary) -> LibraryCompiler:
        c = self._compilers.get(library.key)
        if c is None:
            with self.lock:
                c = self._compilers.get(library.key)
                if c is None:
                    c = self._compilers[library.key] = LibraryCompiler(library, self.manager, self)
        return c

    def evaluate(self, library: ElmLibrary, names: list[str], ctx: Context) -> dict[str, Any]:
        comp = self.compiler(library)
        return {n: comp.definition(n)(ctx) for n in names}

"""Functions implemented natively: ``external`` FunctionDefs and system functions reached through FunctionRef."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .library import ElmLibrary
from .values import CqlError

NATIVE: dict[tuple[str, int], Callable[..., Any]] = {}


def system_function(name: str, arity: int) -> Callable[..., Any] | None:
    return NATIVE.get((name, arity))


def native_function(library: ElmLibrary, fdef: dict[str, Any]) -> Callable[[Any], Any]:
    fn = NATIVE.get((fdef["name"], len(fdef.get("operand", []))))
    if fn is None:
        raise CqlError(f"External function {fdef['name']} of library {library.key} has no native implementation")
    names = [o["name"] for o in fdef.get("operand", [])]
    return lambda ctx: fn(*[ctx.scope.get(n) for n in names])

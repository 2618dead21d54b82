"""Logical and nullological operators (CQL §6 Logical Operators, §7 Nullological Operators), conditionals
(If, Case) and Message. Three-valued logic: None is unknown."""

from __future__ import annotations

from typing import Any

from .engine import Context, Fn, LibraryCompiler, compiles
from .values import CqlError, equal


def and3(a: Any, b: Any) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def or3(a: Any, b: Any) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


@compiles("And")
def _and(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        result: bool | None = True
        for op in ops:  # short-circuit on false; unknown stays unknown unless a later operand is false
            v = op(ctx)
            if v is False:
                return False
            if v is None:
                result = None
        return result

    return f


@compiles("Or")
def _or(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        result: bool | None = False
        for op in ops:
            v = op(ctx)
            if v is True:
                return True
            if v is None:
                result = None
        return result

    return f


@compiles("Xor")
def _xor(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        x, y = a(ctx), b(ctx)
        return None if x is None or y is None else x != y

    return f


@compiles("Implies")
def _implies(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    a, b = c.operands(node)

    def f(ctx: Context) -> Any:
        x = a(ctx)
        if x is False:
            return True
        y = b(ctx)
        if y is True:
            return True
        if x is True and y is False:
            return False
        return None

    return f


@compiles("Not")
def _not(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)

    def f(ctx: Context) -> Any:
        v = a(ctx)
        return None if v is None else not v

    return f


@compiles("IsNull")
def _is_null(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    return lambda ctx: a(ctx) is None


@compiles("IsTrue")
def _is_true(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    return lambda ctx: a(ctx) is True


@compiles("IsFalse")
def _is_false(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    (a,) = c.operands(node)
    return lambda ctx: a(ctx) is False


@compiles("Coalesce")
def _coalesce(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    ops = c.operands(node)

    def f(ctx: Context) -> Any:
        if len(ops) == 1:  # Coalesce(list): first non-null element
            v = ops[0](ctx)
            if isinstance(v, list):
                return next((x for x in v if x is not None), None)
            return v
        for op in ops:
            v = op(ctx)
            if v is not None:
                return v
        return None

    return f


@compiles("If")
def _if(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    cond, then, other = c.compile(node["condition"]), c.compile(node["then"]), c.compile(node.get("else"))
    return lambda ctx: then(ctx) if cond(ctx) is True else other(ctx)


@compiles("Case")
def _case(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    comparand = c.compile(node["comparand"]) if node.get("comparand") is not None else None
    items = [(c.compile(i["when"]), c.compile(i["then"])) for i in node.get("caseItem", [])]
    other = c.compile(node.get("else"))

    def f(ctx: Context) -> Any:
        if comparand is not None:
            v = comparand(ctx)
            for when, then in items:
                if equal(v, when(ctx)) is True:
                    return then(ctx)
        else:
            for when, then in items:
                if when(ctx) is True:
                    return then(ctx)
        return other(ctx)

    return f


@compiles("Message")
def _message(node: dict[str, Any], c: LibraryCompiler) -> Fn:
    source = c.compile(node["source"])
    condition = c.compile(node.get("condition"))
    code = c.compile(node.get("code"))
    severity = c.compile(node.get("severity"))
    message = c.compile(node.get("message"))

    def f(ctx: Context) -> Any:
        value = source(ctx)
        if condition(ctx) is True:
            sev = (severity(ctx) or "Message").lower()
            text = f"{code(ctx) or ''}: {message(ctx) or ''}"
            if sev == "error" and ctx.strict_messages:
                raise CqlError(text)
            # Error messages are recorded and evaluation goes on with the source value (null in
            # FHIRHelpers), as the engine the published eCQM test cases were computed with does;
            # docs/measures.md explains the choice. strict_messages=True stops instead, as the spec says.
            ctx.messages.append(f"{sev}: {text}")
        return value

    return f

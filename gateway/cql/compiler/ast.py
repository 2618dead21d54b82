"""The syntax tree the parser builds: one ``Node`` class with a kind and named fields, and type specifiers.

Kinds and their fields are listed in ``parser.py`` where each is built; the translator dispatches on
``kind``. Every node carries the line and column of its first token for error messages.
"""

from __future__ import annotations

from typing import Any


class Node:
    """A syntax tree node: ``kind``, position, and the fields of that kind as attributes."""

    __slots__ = ("kind", "line", "col", "f")

    def __init__(self, kind: str, line: int, col: int, **fields: Any) -> None:
        self.kind = kind
        self.line = line
        self.col = col
        self.f = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self.f[name]  # type: ignore[index]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in self.f.items())})"

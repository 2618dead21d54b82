"""Splitting dotted element paths (FHIRPath-like) at the dots that are not inside brackets."""

from __future__ import annotations


def split_top_level(path: str, opening: str = "(", closing: str = ")") -> list[str]:
    """``a.where(b.c = 1).d`` -> ``["a", "where(b.c = 1)", "d"]`` (with ``[``/``]``: ``a[b.c].d``)."""
    segs: list[str] = []
    depth, cur = 0, ""
    for ch in path:
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
        if ch == "." and depth == 0:
            segs.append(cur)
            cur = ""
        else:
            cur += ch
    segs.append(cur)
    return segs

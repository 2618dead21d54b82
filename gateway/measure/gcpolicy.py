"""Fewer garbage collections while a population run is under way.

A population run parses thousands of FHIR resources into short-lived dicts and lists (about a hundred per
patient on a realistic chart) and drops them a patient later. With CPython's default first-generation
threshold (700 allocations) the cyclic collector runs every few resources and walks the young objects each
time, though almost none of them are in cycles: reference counting frees them. Measured on 600 synthetic
charts (bench/measures.py data), CMS130 spent 25–30 % and CMS122 about 17 % less CPU with the threshold at
50,000. The threshold is process-wide, so it is raised while at least one run is active and put back when
the last one ends; collections still happen, only less often.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG_THRESHOLD = 50_000  # a population run's first-generation threshold (read at each call: tests lower it)

_lock = threading.Lock()
_active: list[int] = []  # the threshold each run under way asked for
_saved: tuple[int, int, int] | None = None


def _apply() -> None:
    assert _saved is not None
    gc.set_threshold(max(_saved[0], *_active), _saved[1], _saved[2])


@contextlib.contextmanager
def fewer_collections(young: int | None = None) -> Iterator[None]:
    """Raise the first-generation collection threshold to ``young`` (default ``YOUNG_THRESHOLD``) for the
    duration. Every kind of run in the process uses this one function (population runs, ingests at 100,000),
    so overlapping runs share one raise, the highest asked for while they last, and the thresholds the process
    had before the first of them come back when the last one ends, whatever the order they end in."""
    global _saved
    want = YOUNG_THRESHOLD if young is None else young
    with _lock:
        if not _active:
            _saved = gc.get_threshold()
        _active.append(want)
        _apply()
    try:
        yield
    finally:
        with _lock:
            _active.remove(want)
            if _active:
                _apply()
            elif _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None

"""A bounded graceful shutdown for ``fhir-gateway serve``.

On SIGTERM (or SIGINT) uvicorn stops accepting connections and waits for the requests in flight, for at most
its ``timeout_graceful_shutdown`` (set by ``serve`` a little under the bound), then runs the app's shutdown
(the job worker hands its leases back). A request running in a worker thread — a long ``$evaluate-measure`` —
cannot be cancelled, though, and Python waits for it before the process ends. So the signal also starts a
watchdog: the job worker stops claiming at once, and when the bound is reached the process hands back every
job lease it still holds and exits, whatever is still running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from ..resources import jobs

log = logging.getLogger("gateway")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def graceful_seconds(bound: float) -> float:
    """How long uvicorn waits for requests in flight: the bound less the time the app's shutdown and the
    lease hand-back need (a third of it, at most 5 s)."""
    return max(0.1, bound - min(5.0, bound / 3))


def _watchdog(bound: float, started: float) -> None:
    time.sleep(max(0.0, started + bound - time.monotonic()))
    n = jobs.release_all()
    log.warning("shutdown bound of %g s reached: exiting with work still running (%d job lease(s) handed back)",
                bound, n)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # exiting anyway
            handler.flush()
    sys.stderr.flush()
    os._exit(0)


def install(bound: float) -> bool:
    """Wrap the server's SIGTERM/SIGINT handlers (installed by uvicorn before the app starts) so the first
    signal drains the job worker and starts the watchdog that ends the process ``bound`` seconds later.
    Only in the main thread (a test client runs the app elsewhere); returns whether it was installed."""
    if bound <= 0 or threading.current_thread() is not threading.main_thread():
        return False
    fired = threading.Event()

    def wrap(previous: Any) -> Any:
        def handler(sig: int, frame: FrameType | None) -> None:
            if not fired.is_set():
                fired.set()
                log.info("signal %d: stopping (at most %g s)", sig, bound)
                jobs.drain_all()
                threading.Thread(target=_watchdog, args=(bound, time.monotonic()), name="shutdown-watchdog",
                                 daemon=True).start()
            if callable(previous):
                previous(sig, frame)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt

        return handler

    for sig in SIGNALS:
        signal.signal(sig, wrap(signal.getsignal(sig)))
    return True

"""Where population runs execute: the same chunk function runs in-process, in a local process pool, or on a
Dask cluster, chosen by one setting (``GATEWAY_EXECUTOR`` / ``--executor``):

- ``inprocess`` (default): chunks run one after another in the calling thread;
- ``processes`` or ``processes:N``: a ``concurrent.futures.ProcessPoolExecutor`` with N workers (default: CPUs);
- ``dask://host:port``: a ``dask.distributed`` scheduler (``pip install fhir-vbc-gateway[dask]``).

A chunk function takes a picklable task and returns picklable results; workers build their own store and
compiled measure from the task (database URL, Measure JSON, period), so nothing unpicklable crosses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol


class ExecutorUnavailable(RuntimeError):
    """The executor itself cannot run the work: its scheduler does not answer, no worker joins, or no chunk
    finishes for a whole stall period (every worker gone)."""


class Executor(Protocol):
    name: str

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Results in completion order (callers key results by task, not by order)."""
        ...

    def close(self) -> None: ...


class InProcess:
    name = "inprocess"

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        for t in tasks:
            yield fn(t)

    def close(self) -> None:
        return None


class Processes:
    def __init__(self, workers: int | None = None, in_flight: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.name = f"processes:{self.workers}"
        self.in_flight = in_flight or 4 * self.workers  # tasks submitted and not yet collected
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Tasks are taken from ``tasks`` lazily, at most ``in_flight`` at a time, so neither the tasks nor
        their results pile up (a generator of a million patients' chunks stays a generator)."""
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        pending: set[Future[Any]] = set()
        source = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.in_flight:
                try:
                    pending.add(self._pool.submit(fn, next(source)))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class Dask:
    """A ``dask.distributed`` scheduler. A worker that dies mid-run (killed, out of memory) loses nothing: the
    scheduler runs its chunks again on the others. Waits are bounded: ``connect_timeout`` seconds for the
    scheduler and a first worker, ``stall_timeout`` seconds without any chunk finishing (every worker gone)
    before the run fails with ``ExecutorUnavailable`` instead of hanging."""

    connect_timeout = 30.0
    stall_timeout = 600.0

    def __init__(self, address: str) -> None:
        self.address = address
        self.name = f"dask://{address}"
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            try:
                from dask.distributed import Client
            except ImportError as exc:  # pragma: no cover - depends on the optional extra
                raise RuntimeError("the dask executor needs `pip install fhir-vbc-gateway[dask]`") from exc
            if self.address == "local":
                self._client = Client(processes=False)
                return self._client
            try:
                client = Client(self.address, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ExecutorUnavailable(f"the Dask scheduler at {self.address} does not answer "
                                          f"({type(exc).__name__})") from None
            try:
                client.wait_for_workers(1, timeout=self.connect_timeout)
            except (OSError, TimeoutError):
                client.close()
                raise ExecutorUnavailable(f"no Dask worker joined the scheduler at {self.address} within "
                                          f"{self.connect_timeout:g} s") from None
            self._client = client
        return self._client

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        from dask.distributed import wait

        client = self._connect()
        pending = set(client.map(fn, list(tasks), pure=False))
        try:
            while pending:
                try:
                    done, pending = wait(pending, timeout=self.stall_timeout, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    raise ExecutorUnavailable(f"no chunk finished on {self.name} for {self.stall_timeout:g} s "
                                              "(no worker left?)") from None
                for f in done:
                    yield f.result()
        finally:
            if pending:  # a failed or abandoned run: the cluster stops working on it
                client.cancel(list(pending))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def make_executor(spec: str | None) -> Executor:
    spec = (spec or "inprocess").strip()
    if spec == "inprocess":
        return InProcess()
    if spec.startswith("processes"):
        _, _, n = spec.partition(":")
        return Processes(int(n) if n else None)
    if spec.startswith("dask://"):
        return Dask(spec[len("dask://"):])
    raise ValueError(f"Unknown executor {spec!r}: use inprocess, processes[:N] or dask://host:port")


def chunked(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]

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
            self._client = Client(self.address) if self.address != "local" else Client(processes=False)
        return self._client

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed as dask_completed

        client = self._connect()
        futures = client.map(fn, list(tasks), pure=False)
        for f in dask_completed(futures):
            yield f.result()

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

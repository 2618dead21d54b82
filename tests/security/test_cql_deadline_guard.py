"""The CQL operations' time limit never interrupts a store call.

The stop is an exception raised into the evaluating thread (the engine has no loop of its own to check a
clock in every operator). Raised inside a store call it would land in the database driver or the connection
pool and could leave a connection half used. ``GuardedStore`` marks every call as data access: the watcher
raises the stop only outside one, and a stop that fell due during a call is raised when the call returns."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.cqlops.service import GuardedStore, with_deadline
from gateway.fhir.errors import FhirError


class SlowStore:
    """A store whose read keeps the thread busy in Python bytecode (where a raised exception is delivered)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.completed = 0
        self.interrupted = 0

    def read(self, resource_type: str, id: str) -> None:
        try:
            end = time.monotonic() + self.seconds
            spins = 0
            while time.monotonic() < end:
                spins += 1
            self.completed += 1
        except BaseException:
            self.interrupted += 1
            raise

    def iter_current(self, resource_type: str) -> Iterator[int]:
        for i in range(3):
            self.read(resource_type, str(i))
            yield i


def runaway(store: object) -> None:
    store.read("Patient", "p")  # type: ignore[attr-defined]
    while True:
        pass


def test_the_stop_waits_for_the_store_call_to_end() -> None:
    slow = SlowStore(0.6)
    with pytest.raises(FhirError) as err:
        with_deadline(lambda: runaway(GuardedStore(slow)), 0.1)
    assert err.value.status == 422 and err.value.code == "too-costly"
    assert slow.completed == 1 and slow.interrupted == 0


def test_without_the_guard_the_stop_lands_inside_the_call() -> None:
    # what the guard prevents: the same read, unguarded, is cut off in the middle
    slow = SlowStore(0.6)
    with pytest.raises(FhirError):
        with_deadline(lambda: runaway(slow), 0.1)
    assert slow.completed == 0 and slow.interrupted == 1


def test_a_stop_due_during_the_last_call_is_raised_when_it_returns() -> None:
    slow = SlowStore(0.4)

    def one_read() -> str:
        GuardedStore(slow).read("Patient", "p")
        return "finished"

    with pytest.raises(FhirError) as err:
        with_deadline(one_read, 0.1)
    assert err.value.status == 422
    assert slow.completed == 1 and slow.interrupted == 0


def test_a_lazy_result_is_read_inside_the_guard() -> None:
    slow = SlowStore(0.05)
    got = with_deadline(lambda: list(GuardedStore(slow).iter_current("Library")), 5)
    assert got == [0, 1, 2] and slow.completed == 3


def test_outside_a_time_limit_the_store_is_called_as_it_is() -> None:
    slow = SlowStore(0.0)
    GuardedStore(slow).read("Patient", "p")
    assert slow.completed == 1

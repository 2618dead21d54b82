"""The same chunk function runs in-process, in a process pool and on a (local) Dask cluster."""

from __future__ import annotations

import pytest

from gateway.measure.executor import chunked, make_executor


def square_all(chunk: list[int]) -> list[int]:
    return [x * x for x in chunk]


@pytest.mark.parametrize("spec", ["inprocess", "processes:2", "dask://local"])
def test_executors_agree(spec: str) -> None:
    ex = make_executor(spec)
    try:
        results = sorted(x for part in ex.map(square_all, chunked(list(range(50)), 7)) for x in part)
    finally:
        ex.close()
    assert results == [x * x for x in range(50)]


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match="Unknown executor"):
        make_executor("threads")

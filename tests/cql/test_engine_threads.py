"""One compiled measure shared by threads (a Dask worker runs chunks on threads): definitions compile lazily
on first use, so threads that reach the same definition at once must all get its complete body."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from gateway.cql.datasource import BundleDataSource
from gateway.cql.engine import Context, Engine
from gateway.measure.calculator import evaluate_subject
from gateway.measure.cases import case_paths, load_measure, measurement_period
from tests.conftest import SHARED

ECQM = SHARED / "testdata" / "ecqm"


def test_threads_compiling_the_same_measure_get_the_same_results() -> None:
    fx = load_measure(ECQM / "CMS165")
    cases = []
    for path in case_paths(ECQM / "CMS165")[:24]:
        res = [e["resource"] for e in json.loads(path.read_text())["entry"]]
        cases.append((res[:-1], measurement_period(res[-1])))

    def run(engine: Engine, barrier: threading.Barrier | None, i: int) -> list[dict[str, int]]:
        data, period = cases[i]
        ctx = Context(BundleDataSource(data), fx.terminology, {"Measurement Period": period})
        if barrier is not None:
            barrier.wait()  # every thread reaches the uncompiled definitions together
        sr = evaluate_subject(fx.measure, engine, fx.library, ctx, "Patient/x")
        return [{c: len(k) for c, k in g.members.items()} for g in sr.groups]

    expected = [run(Engine(fx.manager), None, i) for i in range(len(cases))]
    for _ in range(3):
        shared = Engine(fx.manager)  # nothing compiled yet
        barrier = threading.Barrier(8)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(run, [shared] * len(cases),
                                [barrier if i < 8 else None for i in range(len(cases))], range(len(cases))))
        assert got == expected

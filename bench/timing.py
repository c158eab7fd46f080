"""The one timing helper of the benchmarks (not a benchmark itself: ``run.py`` runs ``bench_*.py``)."""
from __future__ import annotations

import time


def best_of(fn, repeats: int, warm_up: bool = True) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one untimed call when
    ``warm_up``: tracing and allocation are not what is measured)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)

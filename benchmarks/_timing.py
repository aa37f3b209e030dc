"""The timing loop every benchmark shares, without imports: ``_common`` imports PyTorch first,
and the inference workers (``inference_worker.py``) must not load it."""

from __future__ import annotations

import gc
import time


def timed_calls(fn, min_calls: int, budget_s: float, max_calls: int | None = None) -> list:
    """Seconds of each ``fn()`` call, timed until both ``min_calls`` calls and ``budget_s``
    seconds are done (stopping at ``max_calls`` once ``min_calls`` are), with the garbage
    collector paused (a collection inside a timed call would be charged to it)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        times = []
        start = time.perf_counter()
        while len(times) < min_calls or (
            time.perf_counter() - start < budget_s
            and (max_calls is None or len(times) < max_calls)
        ):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if was_enabled:
            gc.enable()
    return times

"""Shared helpers of the benchmark scripts: machine description, timing, optional imports, output.

Not a benchmark itself.  The scripts import it as ``_common`` (Python puts a script's own folder
first on ``sys.path``, so ``python benchmarks/bench_conv.py`` finds it without any path hacks).

Protocol (SPEC section 7): float32 unless stated, both libraries on the same number of threads,
warm-up calls first, then the *median* of repeated runs, with at least ``min_repeats`` runs and
at least ``budget_s`` seconds of runs per measurement, contenders interleaved in rounds
(:func:`measure_group`); the garbage collector is paused while a measurement runs.  Results are
reported as ratios to PyTorch CPU measured in the same process.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _timing import timed_calls

# PyTorch is imported before nbconv (whose import starts numba's OpenMP threads): in one
# process, importing nbconv first slowed PyTorch's LeNet epoch from about 7.3 s to 9.7 s, which
# would flatter nbconv's ratios.  Every benchmark script imports this module first.
try:
    import torch  # noqa: F401
except ImportError:
    pass

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: the SPEC section 7 convolution layers, name -> (N, C, F, H(=W), k, stride, pad, groups);
#: bench_conv.py times them on the CPU, bench_cuda.py on the GPU.
CONV_LAYERS: dict[str, tuple[int, int, int, int, int, int, int, int]] = {
    "lenet_c1": (64, 1, 6, 28, 5, 1, 0, 1),
    "lenet_c2": (64, 6, 16, 12, 5, 1, 0, 1),
    "alexnet_c1": (8, 3, 64, 224, 11, 4, 2, 1),
    "alexnet_c2": (8, 64, 192, 27, 5, 1, 2, 1),
    "vgg": (8, 128, 128, 56, 3, 1, 1, 1),
    "resnet": (16, 64, 64, 56, 3, 1, 1, 1),
    "conv1x1": (16, 256, 64, 56, 1, 1, 0, 1),
    "depthwise": (16, 128, 128, 56, 3, 1, 1, 128),
    "nnlib1": (2, 3, 64, 224, 7, 2, 3, 1),
    "nnlib2": (1, 64, 64, 56, 3, 1, 1, 1),
    "nnlib3": (1, 128, 128, 28, 3, 1, 1, 1),
    "nnlib4": (1, 256, 256, 14, 1, 1, 0, 1),
}
#: the layers of a --quick run
QUICK_LAYERS = ["lenet_c1", "lenet_c2", "nnlib3", "nnlib4"]

TORCH_MISSING = (
    "torch not installed: pip install nbconv[bench] / torch==2.13.0 -- PyTorch columns skipped"
)


def import_torch(threads: int | None = None):
    """``torch`` with ``threads`` intra-op threads, or None (printing the install hint)."""
    try:
        import torch
    except ImportError:
        print(TORCH_MISSING)
        return None
    if threads is not None:
        torch.set_num_threads(threads)
    return torch


def set_threads(threads: int, torch=None) -> int:
    """Set nbconv's (numba's) and torch's thread counts; exit with a message if impossible."""
    import nbconv

    top = nbconv.max_num_threads()
    if not 1 <= threads <= top:
        sys.exit(f"--threads {threads}: must be in [1, {top}] (NUMBA_NUM_THREADS={top}); "
                 "set NUMBA_NUM_THREADS to allow more")
    nbconv.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    want = ("avx", "avx2", "fma", "avx512f")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in want if w in have]
    except OSError:
        pass
    return []


def _blas_info() -> dict | None:
    """NumPy's BLAS as threadpoolctl sees it: library, version and the kernels it chose
    (OpenBLAS's "architecture": ``OPENBLAS_CORETYPE`` forces it; nbconv's products use it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath")):
            return {"library": lib.get("internal_api"), "version": lib.get("version"),
                    "architecture": lib.get("architecture"),
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    return None


def machine_info(torch=None) -> dict:
    """CPU, cores, load, thread settings and library versions (JSON-ready)."""
    import numba
    import numpy

    import nbconv

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = f"(not initialised; config: {numba.config.THREADING_LAYER})"
    info = {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "nbconv": nbconv.__version__,
        "nbconv_threads": nbconv.get_num_threads(),
        "numba_threading_layer": layer,
        "torch": None,
        "torch_threads": None,
        "blas": _blas_info(),
    }
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        info["scipy"] = None
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def print_machine(info: dict) -> None:
    load = info["load_average"]
    print(f"machine : {info['cpu']} ({', '.join(info['cpu_flags']) or 'no AVX flags'}), "
          f"{info['cores']} cores ({info['usable_cores']} usable), load average {load}")
    print(f"threads : nbconv {info['nbconv_threads']} (numba layer "
          f"{info['numba_threading_layer']}), torch {info['torch_threads']}")
    print(f"versions: python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, "
          f"scipy {info['scipy']}, torch {info['torch']}, nbconv {info['nbconv']}")
    blas = info.get("blas")
    if blas:
        forced = (f", forced by OPENBLAS_CORETYPE={blas['OPENBLAS_CORETYPE']}"
                  if blas["OPENBLAS_CORETYPE"] else "")
        print(f"blas    : NumPy's {blas['library']} {blas['version']}, "
              f"{blas['architecture']} kernels{forced}")
    if load is not None and load[0] > (info["usable_cores"] or 1):
        print(f"WARNING : 1-minute load average {load[0]} exceeds the core count: other work "
              "shares the machine. Multi-threaded timings (both libraries) then stall at thread "
              "barriers and even ratios are unreliable; rerun on an idle machine (or compare "
              "with --threads 1, which suffers less)")
    print()


def measure(fn, min_repeats: int = 5, budget_s: float = 0.5, warmup: int = 1,
            max_repeats: int = 10_000) -> dict:
    """Time ``fn()``: ``warmup`` untimed calls, then repeats until both ``min_repeats`` runs and
    ``budget_s`` seconds are done (or ``max_repeats``).  Returns median/min/max in seconds."""
    for _ in range(warmup):
        fn()
    times = timed_calls(fn, min_repeats, budget_s, max_repeats)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
    }


def measure_group(fns: dict, min_repeats: int = 5, budget_s: float = 0.5, rounds: int = 3,
                  settle_s: float = 0.02, first_s: dict | None = None,
                  slow_s: float = 0.05) -> dict:
    """Time several contenders fairly on a shared, drifting machine.

    ``fns`` maps a name to a zero-argument callable that has already been called once (compiled,
    warm).  The measurement runs in ``rounds`` rounds; in each round every contender runs one
    *block* (order rotated from round to round): a pause of ``settle_s`` (lets the previous
    contender's spinning worker threads go idle), one untimed call (skipped for slow calls:
    those whose ``first_s`` time, or previous block median, exceeds ``slow_s``), then timed
    calls until the block has ``ceil(min_repeats / rounds)`` runs and ``budget_s / rounds``
    seconds.  So each contender gets >= ``min_repeats`` runs and >= ``budget_s`` seconds in
    total, and a load change during the measurement hits all contenders alike.  Returns
    ``{name: stats}``: ``median_s`` is the median of the per-round block medians
    (``round_medians_s``), so that every round weighs the same -- a pooled median over all runs
    (kept as ``pooled_median_s``) would favour whichever contender happened to get a quiet
    period, since a fast block holds more runs.  With ``rounds=1`` both are the same.
    """
    names = list(fns)
    per_block = -(-min_repeats // rounds)
    block_budget = budget_s / rounds
    times = {n: [] for n in names}
    rounds_med = {n: [] for n in names}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                fn = fns[n]
                if settle_s:
                    time.sleep(settle_s)
                last = rounds_med[n][-1] if rounds_med[n] else (first_s or {}).get(n, 0.0)
                if last <= slow_s:
                    fn()
                block = []
                start = time.perf_counter()
                while len(block) < per_block or time.perf_counter() - start < block_budget:
                    t0 = time.perf_counter()
                    fn()
                    block.append(time.perf_counter() - t0)
                times[n] += block
                rounds_med[n].append(statistics.median(block))
    finally:
        if was_enabled:
            gc.enable()
    return {
        n: {
            "median_s": statistics.median(rounds_med[n]),
            "pooled_median_s": statistics.median(times[n]),
            "min_s": min(times[n]),
            "max_s": max(times[n]),
            "repeats": len(times[n]),
            "round_medians_s": rounds_med[n],
        }
        for n in names
    }


def write_json(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")
    print(f"JSON written to {path}")
    return path


def _json_default(o):
    try:
        import numpy

        if isinstance(o, numpy.generic):
            return o.item()
    except ImportError:
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` gives "l"/"r" per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(r, widths, align))

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def fmt_num(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"

"""nbconv.correlate2d against scipy.signal.correlate2d (the drop-in it replaces).

Default case (SPEC section 7): a 512x512 float64 image and a 5x5 kernel, modes "valid" and
"same" (plus "full" for information); target: nbconv >= 20x faster than SciPy.  Results are
checked against SciPy (allclose) before timing.  Thread count: ``--threads`` (default 2) for
nbconv; SciPy's correlate2d is single-threaded.

Usage::

    python benchmarks/bench_correlate.py [--quick] [--size 512] [--kernel 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import (
    RESULTS_DIR,
    fmt_num,
    format_table,
    machine_info,
    measure_group,
    print_machine,
    set_threads,
    write_json,
)

import nbconv

TARGET = 20.0
MODES = ("valid", "same", "full")
TARGET_MODES = ("valid", "same")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke run: 128x128 image, few repeats, tiny time budget")
    ap.add_argument("--size", type=int, default=None, help="image height = width (512)")
    ap.add_argument("--kernel", type=int, default=5, help="kernel height = width (5)")
    ap.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv (2)")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 0.5; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "correlate.json"),
                    help="JSON output path")
    args = ap.parse_args(argv)
    try:
        import scipy.signal
    except ImportError:
        raise SystemExit(
            "scipy not installed (pip install scipy): nothing to compare with") from None
    size = args.size or (128 if args.quick else 512)
    timing = {
        "min_repeats": args.min_repeats or (3 if args.quick else 5),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 0.5),
        "rounds": args.rounds or (1 if args.quick else 3),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    set_threads(args.threads)
    print_machine(machine_info())

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(args.dtype)
    k = rng.standard_normal((args.kernel, args.kernel)).astype(args.dtype)
    rows, results, ok_all = [], {}, True
    for mode in MODES:
        fns = {
            "scipy": lambda mode=mode: scipy.signal.correlate2d(a, k, mode),
            "nbconv": lambda mode=mode: nbconv.correlate2d(a, k, mode),
        }
        t0 = time.perf_counter()
        got = fns["nbconv"]()
        first = time.perf_counter() - t0
        ref = fns["scipy"]()
        tol = 1e-10 if args.dtype == "float64" else 1e-4
        ok = got.shape == ref.shape and got.dtype == ref.dtype and bool(
            np.allclose(got, ref, rtol=tol, atol=tol * float(np.max(np.abs(ref)))))
        ok_all &= ok
        st = measure_group(fns, **timing)
        speedup = st["scipy"]["median_s"] / st["nbconv"]["median_s"]
        rounds = [s / n for s, n in zip(st["scipy"]["round_medians_s"],
                                        st["nbconv"]["round_medians_s"])]
        results[mode] = {
            "scipy_ms": st["scipy"]["median_s"] * 1e3,
            "nbconv_ms": st["nbconv"]["median_s"] * 1e3,
            "speedup": speedup,
            "round_speedups": rounds,
            "nbconv_first_call_s": first,
            "matches_scipy": ok,
            "target": TARGET if mode in TARGET_MODES else None,
            "meets_target": speedup >= TARGET if mode in TARGET_MODES else None,
            "timings": st,
        }
        rows.append([mode, fmt_num(st["scipy"]["median_s"] * 1e3, 3),
                     fmt_num(st["nbconv"]["median_s"] * 1e3, 3), fmt_num(speedup, 1),
                     "/".join(fmt_num(v, 1) for v in rounds),
                     f">= {TARGET:g}" if mode in TARGET_MODES else "-",
                     ("yes" if speedup >= TARGET else "NO") if mode in TARGET_MODES else "-",
                     "yes" if ok else "NO"])
    print(f"correlate2d, {size}x{size} {args.dtype} image, {args.kernel}x{args.kernel} kernel, "
          f"nbconv on {args.threads} thread(s); speedup = SciPy time / nbconv time")
    print(format_table(["mode", "scipy ms", "nbconv ms", "speedup", "per round", "target", "ok",
                        "same result"], rows))
    print()
    payload = {
        "benchmark": "correlate2d",
        "machine": machine_info(),
        "protocol": {"dtype": args.dtype, "size": size, "kernel": args.kernel,
                     "threads": args.threads, **timing, "statistic": "median of per-round medians",
                     "speedup": "median scipy time / median nbconv time"},
        "quick": args.quick,
        "target_speedup": TARGET,
        "results": results,
    }
    write_json(args.json, payload)
    if not ok_all:
        print("RESULTS DIFFER FROM SCIPY")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

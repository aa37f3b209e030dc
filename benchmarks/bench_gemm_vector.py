"""nbconv's vector matrix product against NumPy's BLAS, one thread, on a grid of shapes.

For every transpose case (``NN``: op(A) = A, op(B) = B; ``NT``: B transposed, as a linear
layer's forward product; ``TN``: A transposed, as weight gradients) and every (m, n, k) of
the grid, both products are called in a numba loop through the same CBLAS-style entry point
the convolution kernels use (``nbconv.kernels.gemm._cblas_gemm``), the best of a few runs;
GFLOP/s, their ratio, and what ``nbconv.kernels.gemm_vector.orientation`` (the rule that
chooses between them per product) takes.  The rule is right where it takes the vector product
on rows with a ratio above 1 and leaves BLAS the others.

Usage::

    python benchmarks/bench_gemm_vector.py              # the grid the rule was set on
    python benchmarks/bench_gemm_vector.py --quick      # a few shapes
    python benchmarks/bench_gemm_vector.py --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
from _common import format_table, machine_info, print_machine

GRID_M = (16, 64, 200, 1152)
GRID_N = (10, 32, 48, 96, 256)
GRID_K = (64, 256, 1152)
CASES = {"NN": (111, 111), "NT": (111, 112), "TN": (112, 111)}


def _looped():
    import numba

    from nbconv.kernels.gemm import _cblas_gemm

    @numba.njit
    def run(fn, width, ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc, reps):
        for _ in range(reps):
            _cblas_gemm(fn, width, ta, tb, m, n, k, np.float32(1), pa, lda, pb, ldb,
                        np.float32(0), pc, ldc)

    return run


def _best(fn, runs):
    fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few shapes, one run each")
    ap.add_argument("--json", default=None, help="JSON output")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from nbconv import _blas
    from nbconv.kernels.gemm import VECTOR_ALWAYS
    from nbconv.kernels.gemm_vector import orientation

    info = machine_info()
    print_machine(info)
    blas = _blas._gemm_functions()
    if not blas:
        print("no CBLAS gemm found in NumPy's BLAS: nothing to compare")
        return 0
    sgemm = _blas.blas_gemm[np.dtype(np.float32)]
    vector = _blas.vector_descriptor(sgemm, np.float32, VECTOR_ALWAYS)
    width = _blas._gemm_int(0)
    print(f"nbconv's products here: {_blas.gemm_description()}")
    run = _looped()
    if args.quick:
        shapes = [(200, 96, 256), (16, 32, 64)]
        cases = {"NT": CASES["NT"]}
        runs = 1
    else:
        shapes = list(itertools.product(GRID_M, GRID_N, GRID_K))
        cases, runs = CASES, 3
    rng = np.random.default_rng(0)
    rows, table = [], []
    with threadpool_limits(1):
        for (case, (ta, tb)), (m, n, k) in itertools.product(cases.items(), shapes):
            lda = k if ta == 111 else m
            ldb = n if tb == 111 else k
            a = rng.standard_normal(m * k).astype(np.float32)
            b = rng.standard_normal(n * k).astype(np.float32)
            c = np.zeros(m * n, np.float32)
            reps = 1 if args.quick else max(1, int(2e7 // (m * n * k)))
            rate = {}
            operands = (ta, tb, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb,
                        c.ctypes.data, n, reps)
            for name, fn in (("vector", vector), ("blas", sgemm)):
                t = _best(lambda fn=fn, o=operands: run(fn, width, *o), runs)
                rate[name] = 2 * m * n * k * reps / t / 1e9
            rule = int(orientation(ta, tb, m, n, k, 4))
            ratio = rate["vector"] / rate["blas"]
            rows.append(dict(case=case, m=m, n=n, k=k, vector_gflops=rate["vector"],
                             blas_gflops=rate["blas"], ratio=ratio, rule=rule))
            table.append([case, m, n, k, f"{rate['vector']:.1f}", f"{rate['blas']:.1f}",
                          f"{ratio:.2f}", ("vector", "vector (transposed)")[rule - 1]
                          if rule else "blas"])
    print(format_table(["case", "m", "n", "k", "vector GF/s", "BLAS GF/s", "ratio",
                        "rule takes"], table))
    taken = [r for r in rows if r["rule"]]
    if taken:
        print(f"\nthe rule takes the vector product on {len(taken)} of {len(rows)} shapes; "
              f"ratio there {min(r['ratio'] for r in taken):.2f}-"
              f"{max(r['ratio'] for r in taken):.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(benchmark="gemm_vector", machine=info, quick=args.quick,
                           gemm=_blas.gemm_description(), shapes=rows), fh, indent=1)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A BLAS ``gemm`` called from numba kernels, so that matrix products run on numba's threads
(see :mod:`nbconv._blas` for why, and for how the function's address is found).

``cblas_?gemm`` is reached through its address, passed in as an integer ``fn``: the compiled
code stays valid across processes (numba's on-disk cache), whichever BLAS library is loaded.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .._config import JIT_OPTIONS

__all__: list[str] = []

# CBLAS constants: row-major storage; op(A) = A or A^T
_ROW_MAJOR = 101
_NO_TRANS, _TRANS = 111, 112


@intrinsic
def _cblas_at(typingctx, fn, width, order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta,
              c, ldc):
    """Call the ``cblas_?gemm`` at address ``fn`` (``order``: CBLAS's layout code).

    ``a``, ``b``, ``c`` are addresses; ``transa``/``transb`` CBLAS codes; the integers are
    passed at the width of ``width`` (a zero of the library's integer type);
    ``alpha``/``beta`` are of the matrices' float type."""
    if alpha not in (types.float32, types.float64) or beta != alpha:
        return None
    sig = types.void(fn, width, order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                     ldc)

    def codegen(context, builder, signature, args):
        fn_, _, order_, ta, tb, m_, n_, k_, al, pa, lda_, pb, ldb_, be, pc, ldc_ = args
        i32 = ir.IntType(32)
        blas_int = context.get_value_type(width)
        real = context.get_value_type(alpha)
        ptr = real.as_pointer()

        def as_int(v, ty):
            if v.type.width > ty.width:
                return builder.trunc(v, ty)
            return builder.sext(v, ty) if v.type.width < ty.width else v

        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, blas_int, blas_int, blas_int,
                                               real, ptr, blas_int, ptr, blas_int, real, ptr,
                                               blas_int])
        func = builder.inttoptr(fn_, fnty.as_pointer())
        ints = [as_int(v, blas_int) for v in (m_, n_, k_, lda_, ldb_, ldc_)]
        builder.call(func, [as_int(order_, i32), as_int(ta, i32), as_int(tb, i32),
                            ints[0], ints[1], ints[2], al, builder.inttoptr(pa, ptr), ints[3],
                            builder.inttoptr(pb, ptr), ints[4], be, builder.inttoptr(pc, ptr),
                            ints[5]])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _cblas_gemm(fn, width, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``C = alpha * op(A) @ op(B) + beta * C`` with CBLAS's row-major arguments, by the
    ``cblas_?gemm`` at address ``fn``."""
    _cblas_at(fn, width, _ROW_MAJOR, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _gemm_tasks(fn, width, geometry, addresses, parts, alpha, beta):
    """``C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i]`` for a batch of matrices, each cut
    into ``parts`` slabs, one BLAS call per slab, spread over numba's threads.

    ``geometry`` = (transa, transb, m, n, k, lda, ldb, ldc, batch, itemsize, split_rows);
    ``addresses`` = (A, B, C, and their batch strides in bytes; 0 broadcasts a matrix).
    Slabs are runs of C's rows (``split_rows``) or columns."""
    ta, tb, m, n, k, lda, ldb, ldc, batch, it, split_rows = geometry
    for task in numba.prange(batch * parts):
        i = task // parts
        s = task - i * parts
        pa = addresses[0] + i * addresses[3]
        pb = addresses[1] + i * addresses[4]
        pc = addresses[2] + i * addresses[5]
        rows, cols = m, n
        if split_rows:
            r0 = m * s // parts
            rows = m * (s + 1) // parts - r0
            pa += r0 * (lda if ta == _NO_TRANS else 1) * it
            pc += r0 * ldc * it
        else:
            c0 = n * s // parts
            cols = n * (s + 1) // parts - c0
            pb += c0 * (1 if tb == _NO_TRANS else ldb) * it
            pc += c0 * it
        if rows > 0 and cols > 0:
            _cblas_gemm(fn, width, ta, tb, rows, cols, k, alpha, pa, lda, pb, ldb, beta, pc,
                        ldc)

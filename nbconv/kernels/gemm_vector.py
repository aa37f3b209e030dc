"""A register-blocked matrix product on the machine's vectors, with CBLAS ``gemm``'s arguments.

For machines whose BLAS runs narrower vectors than the CPU has: this workplace's machines set
``OPENBLAS_CORETYPE=Haswell``, so NumPy's OpenBLAS multiplies with AVX2 (8 float32 lanes) on
CPUs with AVX-512, while numba compiles for AVX-512.  Single-threaded on a Zen 5 core, float32
(``benchmarks/bench_gemm_vector.py``): 1.3-2.2x OpenBLAS's Haswell kernels on products with
128+ rows and 128+ terms whose columns fill the vectors (up to 200 GFLOP/s against 90-115);
slower on small products and with a transposed A.  :func:`orientation` is that rule, per
product; :mod:`nbconv._blas` decides whether the vector product is offered at all (not where
OpenBLAS has AVX-512 kernels: 195 GFLOP/s there).

``C = alpha * op(A) @ op(B) + beta * C`` (row-major, ``op`` a transpose or not; ``beta == 0``
does not read ``C``, as BLAS).  The columns of ``op(B)`` are packed, :data:`KC` terms at a
time, into a panel of :data:`NV` vectors (zeros past the last column), and the micro-kernel
:func:`.conv2d_regblock._fma_block` keeps an :data:`MR` x ``NV`` block of accumulators in
registers while it runs through the panel: for every term ``MR`` broadcasts of ``op(A)``
and ``NV`` vector loads feed ``MR*NV`` fused multiply-adds.  A transposed A is packed first
(its rows are A's columns).  A product may be computed transposed (``C.T = op(B).T @
op(A).T``, written back transposed): a fully connected layer's few images then fill the
vectors while its weights stream through once.  The reference is ``numpy.matmul``
(``tests/test_gemm_vector.py``)."""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

from .._config import JIT_OPTIONS
from ._ir import LANES32, LANES64
from .conv2d_regblock import _fma_block

__all__ = ["_vector_gemm", "orientation", "itemsize", "vector_address", "VECTOR_ORDER", "MR",
           "NV", "KC"]

#: CBLAS's codes for op(X) = X and op(X) = X.T
_NO_TRANS, _TRANS = 111, 112

#: rows of op(A) per register block: 6 x 2 accumulators of AVX-512's 32 vector registers
MR = 6
#: vectors of op(B)'s columns per block
NV = 2
#: reduction terms per packed panel: 256 x 32 float32 (32 KiB) stay in a 48 KiB L1
KC = 256


def itemsize(x):
    """Bytes of the float ``x``'s type (a compile-time constant in numba code)."""
    return np.dtype(type(x)).itemsize


@overload(itemsize)
def _itemsize_overload(x):
    if x not in (types.float32, types.float64):
        return None
    size = 4 if x == types.float32 else 8
    return lambda x: size


@intrinsic
def _pointer(typingctx, addr, zero):
    """The integer ``addr`` as a pointer to ``zero``'s number type (for indexing or
    ``numba.carray``)."""
    if not isinstance(addr, types.Integer) or not isinstance(zero, types.Number):
        return None
    sig = types.CPointer(zero)(addr, zero)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _flat(addr, rows, cols, ld, zero):
    """The row-major matrix at ``addr`` (``rows`` x ``cols``, row pitch ``ld``) as a flat
    array of exactly the elements it spans."""
    return numba.carray(_pointer(addr, zero), ((rows - 1) * ld + cols,))


@numba.njit(**JIT_OPTIONS)
def _rows_block(xa, xstep, offa, kc, pa, nb, acca, rows, it, zero):
    """``acc[:rows] += op(A)[block rows] @ panel`` in register blocks of :data:`MR`, 4, 2 and 1
    rows (each a literal block shape of :func:`_fma_block`); ``xa`` is the block's first row,
    ``xstep`` the distance of rows, ``acca`` the block's accumulator rows (``nb`` wide)."""
    i = 0
    while i < rows:
        left = rows - i
        x = xa + i * xstep * it
        a = acca + i * nb * it
        if left >= MR:
            _fma_block(x, xstep, offa, kc, pa, nb, a, 2, 6, zero)
            i += MR
        elif left >= 4:
            _fma_block(x, xstep, offa, kc, pa, nb, a, 2, 4, zero)
            i += 4
        elif left >= 2:
            _fma_block(x, xstep, offa, kc, pa, nb, a, 2, 2, zero)
            i += 2
        else:
            _fma_block(x, xstep, offa, kc, pa, nb, a, 2, 1, zero)
            i += 1


@numba.njit(**JIT_OPTIONS)
def _padded(count, block):
    return (count + block - 1) // block * block


@numba.njit(**JIT_OPTIONS)
def _cost(m, n, k, pack_a, nb):
    """Estimated cost of an (m x k) @ (k x n) product computed as written, in lane
    multiply-adds: the padded blocks, every packed element (about 32: measured on small
    products where packing dominated), op(A) read again for every further column block (4)."""
    work = _padded(m, MR) * _padded(n, nb) * k
    packed = k * n + (2 * m * k if pack_a else 0)
    reread = m * k * ((n + nb - 1) // nb - 1)
    return work + 32 * packed + 4 * reread


#: bytes of either operand beyond which a product with several column blocks goes to BLAS
#: (see :func:`_takes`)
CACHED_OPERAND_BYTES = 8 << 20


@numba.njit(**JIT_OPTIONS)
def _takes(rows, cols, k, nb, itemsize):
    """Whether the vector product beats BLAS on ``rows`` unpacked rows of op(A) against
    ``cols`` packed columns: 128+ rows and 128+ terms with 90% of the lanes filled, or 192+
    rows and 256+ terms with 75%; and either one block of columns or both operands within
    :data:`CACHED_OPERAND_BYTES`.  op(A) is read again for every block of columns, from the
    cache only while streaming op(B) through does not evict it: a linear layer 9216 -> 4096
    at batch 128 ran at 0.73-0.77x BLAS's speed (x re-read from memory for each of 64 column
    blocks), at batch 32 (transposed: one column block of images) at 1.8-1.9x."""
    filled = cols / _padded(cols, nb)
    shape_ok = (rows >= 128 and k >= 128 and filled >= 0.9) or (
        rows >= 192 and k >= 256 and filled >= 0.75)
    cached = cols <= nb or (rows * k * itemsize <= CACHED_OPERAND_BYTES
                            and k * cols * itemsize <= CACHED_OPERAND_BYTES)
    return shape_ok and cached


@numba.njit(**JIT_OPTIONS)
def orientation(ta, tb, m, n, k, itemsize, vector_bytes=LANES32 * 4):
    """How :func:`_vector_gemm` beats single-threaded OpenBLAS on Haswell kernels for this
    product: 1 as written, 2 transposed, 0 not (BLAS then runs it).  A pure function of the
    shape and the vector width (``vector_bytes``: 64 for AVX-512, 32 for AVX2; this host's by
    default), so the rule can be checked for either instruction set on any host.

    Measured on a Zen 5 core over m in {16, 64, 200, 1152}, n in {10, 32, 48, 96, 256}, k in
    {64, 256, 1152} and the three transpose cases (``benchmarks/bench_gemm_vector.py``): the
    vector product wins by 1.1-2.2x where op(A) needs no packing (no transpose), has at least
    128-192 rows, the reduction 128-256 terms and op(B)'s columns fill their vectors
    (:func:`_takes`); with fewer rows packing op(B) costs more than the products, with a
    transposed A (weight gradients: 0.4-1.3x) packing A does; BLAS wins or ties elsewhere.
    Transposed, op(B).T is the one to read unpacked (stored without the transpose when ``tb``
    is a transpose)."""
    nb = NV * (vector_bytes // itemsize)
    if ta == _NO_TRANS and _takes(m, n, k, nb, itemsize):
        return 1
    if tb == _TRANS and _takes(n, m, k, nb, itemsize):
        return 2
    return 0


@numba.njit(**JIT_OPTIONS)
def _vector_gemm(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, how):
    """``C = alpha * op(A) @ op(B) + beta * C`` at integer addresses, CBLAS row-major
    arguments (``ta``/``tb`` CBLAS transpose codes; ``op(A)`` m x k, ``op(B)`` k x n, ``C`` m x n
    with row pitch ``ldc``); ``alpha``/``beta`` of the matrices' float type.  ``how``: 1 as
    written, 2 transposed, 0 whichever :func:`_cost` estimates cheaper.  Serial: the callers
    run one product per numba task."""
    if m <= 0 or n <= 0:
        return
    if k <= 0:  # an empty sum: C = beta * C
        c = _flat(pc, m, n, ldc, alpha)
        for i in range(m):
            for j in range(n):
                at = i * ldc + j
                c[at] = c[at] * beta if beta != 0 else 0
        return
    like = np.full(1, alpha)
    zero = np.zeros_like(like)[0]
    it = like.itemsize
    nb = NV * (LANES32 if it == 4 else LANES64)
    # computed transposed when that is cheaper: a fully connected layer's few images then
    # fill the vectors and its weights stream through once as rows instead of being packed
    if how == 0:
        swap = _cost(n, m, k, tb == _NO_TRANS, nb) < _cost(m, n, k, ta != _NO_TRANS, nb)
    else:
        swap = how == 2
    if swap:  # C.T = op(B).T @ op(A).T: op(B).T is stored as op(B) with the code flipped
        ta, tb = (_TRANS if tb == _NO_TRANS else _NO_TRANS), (_TRANS if ta == _NO_TRANS
                                                              else _NO_TRANS)
        m, n, pa, lda, pb, ldb = n, m, pb, ldb, pa, lda
    # term r of op(A)'s row i: A[i*lda + r] (no transpose: r elements on from the row's
    # start), else A[r*lda + i], packed below so that it is r*MR elements on
    off = np.arange(k)
    offp = np.arange(min(k, KC)) * MR
    mp = _padded(m, MR)
    if ta == _NO_TRANS:
        apack = np.empty((1, 1, MR), dtype=like.dtype)  # (not used)
    else:
        # op(A)'s rows are A's columns: reading MR of them term by term would walk A's rows,
        # lda apart (4 KiB strides alias in L1), so A is packed once, each block of MR rows
        # as (k, MR) (the zero rows past m are never stored back)
        a = _flat(pa, k, m, lda, zero)
        apack = np.zeros((mp // MR, k, MR), dtype=like.dtype)
        for ib in range(mp // MR):
            i0 = ib * MR
            rows = min(MR, m - i0)
            for r in range(k):
                row = r * lda + i0
                for i in range(rows):
                    apack[ib, r, i] = a[row + i]
    b = _flat(pb, k, n, ldb, zero) if tb == _NO_TRANS else _flat(pb, n, k, ldb, zero)
    c = _flat(pc, n if swap else m, m if swap else n, ldc, zero)
    acc = np.empty((mp, nb), dtype=like.dtype)
    panel = np.empty((min(k, KC), nb), dtype=like.dtype)
    for j0 in range(0, n, nb):
        cols = min(nb, n - j0)
        acc[:] = zero
        for k0 in range(0, k, KC):
            kc = min(KC, k - k0)
            # the panel: op(B)[k0:k0+kc, j0:j0+cols], zeros in the lanes past the last column
            if tb == _NO_TRANS:
                for r in range(kc):
                    row = (k0 + r) * ldb + j0
                    for j in range(cols):
                        panel[r, j] = b[row + j]
            else:
                for j in range(cols):
                    row = (j0 + j) * ldb + k0
                    for r in range(kc):
                        panel[r, j] = b[row + r]
            for r in range(kc):
                for j in range(cols, nb):
                    panel[r, j] = zero
            if ta == _NO_TRANS:  # MR rows of A read along their rows
                _rows_block(pa, lda, off.ctypes.data + k0 * 8, kc, panel.ctypes.data, nb,
                            acc.ctypes.data, m, it, zero)
            else:
                for ib in range(mp // MR):
                    _rows_block(apack[ib].ctypes.data + k0 * MR * it, 1, offp.ctypes.data, kc,
                                panel.ctypes.data, nb, acc.ctypes.data + ib * MR * nb * it,
                                min(MR, m - ib * MR), it, zero)
        # write back; with beta == 0 C is not read (BLAS's rule: NaN there does not leak)
        for i in range(m):
            for j in range(cols):
                v = alpha * acc[i, j]
                at = (j0 + j) * ldc + i if swap else i * ldc + j0 + j
                c[at] = v if beta == zero else v + beta * c[at]


#: ``order`` argument of the C function at :func:`vector_address`: this plus ``how`` (see
#: :func:`_vector_gemm`) instead of CBLAS's row-major code
VECTOR_ORDER = 1000

_INT, _PTR = types.int64, types.int64  # integers and addresses: 64-bit, as ILP64 CBLAS


def _cblas_signature(real):
    return types.void(types.int32, types.int32, types.int32, _INT, _INT, _INT, real, _PTR, _INT,
                      _PTR, _INT, real, _PTR, _INT)


def _vector_cblas(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """:func:`_vector_gemm` with ``cblas_?gemm``'s arguments (64-bit integers; ``order`` is
    :data:`VECTOR_ORDER` plus ``how``), compiled as a C function by :func:`vector_address`."""
    _vector_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, order - VECTOR_ORDER)


_compiled: dict = {}


def vector_address(dtype) -> int:
    """Address of the vector product for ``dtype`` (float32 or float64) as a C function with
    CBLAS's arguments, compiled (or loaded from numba's cache) on first use: called through
    its address like BLAS, it is compiled once instead of into every kernel that multiplies
    (which doubled resnet18's first-step compile time, 30 -> 59 s)."""
    dtype = np.dtype(dtype)
    if dtype not in _compiled:
        real = types.float32 if dtype == np.float32 else types.float64
        _compiled[dtype] = numba.cfunc(_cblas_signature(real), **JIT_OPTIONS)(_vector_cblas)
    return _compiled[dtype].address

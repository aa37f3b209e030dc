"""LLVM IR helpers for the convolution kernels' ``@intrinsic`` functions: their one SIMD and
raw-memory module (elsewhere only :mod:`.gemm`'s BLAS call and :mod:`._vmath`'s bit tricks
build IR).

* :class:`VectorIR`: float vectors of the machine's width (:data:`VECTOR_BYTES`), raw
  pointers from integer addresses, fused multiply-adds and register-resident reduction
  loops, for the register-blocked convolution kernels
  (:mod:`nbconv.kernels.conv.register_blocks`, :mod:`nbconv.kernels.conv.pixel_vectors`).
* :func:`copy_bytes` and :func:`zero_bytes`: ``memcpy`` and ``memset`` on integer
  addresses.  Padding copies many short rows (LeNet's are 24 values); a numba element loop
  over such a row becomes a vectorised loop with a runtime alias check and a scalar
  remainder, whose set-up costs more than the copy, which LLVM's ``memcpy``/``memset``
  intrinsics do not pay.
"""

from __future__ import annotations

import numba
from llvmlite import binding, ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["VECTOR_BYTES", "LANES32", "LANES64", "lanes", "float_type_ok", "VectorIR",
           "copy_bytes", "zero_bytes"]


def _native_vector_bytes() -> int:
    """64 where numba generates code for a CPU with AVX-512 (numba's ``NUMBA_CPU_FEATURES``
    when set, else the host's features), else 32 (AVX2 and older: LLVM splits wider vectors
    into what the target has, so 32 is also the safe choice for a ``generic`` target)."""
    features = numba.config.CPU_FEATURES
    if not features and not numba.config.CPU_NAME:
        try:
            features = binding.get_host_cpu_features().flatten()
        except RuntimeError:  # a host llvmlite cannot describe
            features = ""
    return 64 if "+avx512f" in (features or "").split(",") else 32


#: bytes of one vector of the filter-vector register blocks (:mod:`.register_blocks`): 64 (16
#: float32 lanes) with AVX-512, 32 (8 lanes) without; the pixel-vector blocks keep 8 lanes
#: (:data:`.pixel_vectors.LANES32`).  Fixed at import from the same CPU description that
#: numba compiles (and keys its cache) for, so cached kernels and the drivers' block sizes
#: always agree.  With AVX-512 (2 cores, float32, ms, 32 -> 64 bytes): LeNet c2 forward 0.20
#: -> 0.18 at batch 64, 0.72 -> 0.57 at batch 256; 16 -> 32 3x3 on 16x16 at batch 32 0.79 ->
#: 0.53.
VECTOR_BYTES = _native_vector_bytes()
LANES32 = VECTOR_BYTES // 4
LANES64 = VECTOR_BYTES // 8


def lanes(itemsize: int) -> int:
    """Lanes of one native vector of ``itemsize``-byte floats."""
    return VECTOR_BYTES // itemsize


def float_type_ok(zero) -> bool:
    """Whether an intrinsic's ``zero`` argument names a supported element type."""
    return zero in (types.float32, types.float64)


class VectorIR:
    """Helpers bound to one codegen call: ``lanes`` (of ``vector_bytes``-byte vectors, the
    native :data:`VECTOR_BYTES` unless given), the vector type ``vec`` and constructors for
    the handful of instructions the kernels use."""

    def __init__(self, context, builder, zero, vector_bytes=VECTOR_BYTES):
        self.builder = builder
        self.real = context.get_value_type(zero)
        single = zero == types.float32
        self.lanes = vector_bytes // (4 if single else 8)
        self.vec = ir.VectorType(self.real, self.lanes)
        self.i64 = ir.IntType(64)
        self._fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vec, [self.vec] * 3),
            f"llvm.fma.v{self.lanes}{'f32' if single else 'f64'}")

    def int64(self, v):
        """An integer argument widened to i64."""
        return self.builder.sext(v, self.i64) if v.type.width < 64 else v

    def const(self, v):
        return ir.Constant(self.i64, v)

    def reals(self, addr):
        """``addr`` as a pointer to the element type."""
        return self.builder.inttoptr(addr, self.real.as_pointer())

    def ints(self, addr):
        """``addr`` as a pointer to int64 (term offsets)."""
        return self.builder.inttoptr(addr, self.i64.as_pointer())

    def _vector_ptr(self, base, index):
        return self.builder.bitcast(self.builder.gep(base, [index]), self.vec.as_pointer())

    def load_vector(self, base, index):
        """The vector at element ``index`` of ``base`` (unaligned)."""
        return self.builder.load(self._vector_ptr(base, index), align=4)

    def store_vector(self, value, base, index):
        self.builder.store(value, self._vector_ptr(base, index), align=4)

    def splat(self, scalar):
        """``scalar`` in every lane."""
        i32 = ir.IntType(32)
        undef = ir.Constant(self.vec, ir.Undefined)
        one = self.builder.insert_element(undef, scalar, ir.Constant(i32, 0))
        return self.builder.shuffle_vector(one, undef,
                                           ir.Constant(ir.VectorType(i32, self.lanes),
                                                       [0] * self.lanes))

    def lanes_from(self, first):
        """The mask of lanes ``>= first`` (an i64 value)."""
        i32 = ir.IntType(32)
        ids = ir.Constant(ir.VectorType(i32, self.lanes), list(range(self.lanes)))
        first = self.builder.trunc(first, i32)
        undef = ir.Constant(ir.VectorType(i32, self.lanes), ir.Undefined)
        bound = self.builder.shuffle_vector(
            self.builder.insert_element(undef, first, ir.Constant(i32, 0)), undef,
            ir.Constant(ir.VectorType(i32, self.lanes), [0] * self.lanes))
        return self.builder.icmp_signed(">=", ids, bound)

    def fma(self, a, b, c):
        """``a * b + c`` lane by lane, one rounding."""
        return self.builder.call(self._fma, [a, b, c])

    def reduction_loop(self, count, init, body, name):
        """``accs = body(r, accs)`` for ``r`` in ``[0, count)``, the accumulators as SSA values
        (so that they live in registers); returns the final ones (``init`` when ``count <= 0``).
        ``body`` emits the loop's instructions and returns the new accumulators."""
        b = self.builder
        pre = b.block
        loop = b.append_basic_block(name + ".loop")
        done = b.append_basic_block(name + ".done")
        b.cbranch(b.icmp_signed(">", count, self.const(0)), loop, done)
        b.position_at_end(loop)
        r = b.phi(self.i64)
        r.add_incoming(self.const(0), pre)
        accs = []
        for a in init:
            phi = b.phi(a.type)
            phi.add_incoming(a, pre)
            accs.append(phi)
        new = body(r, accs)
        r_next = b.add(r, self.const(1))
        end = b.block
        r.add_incoming(r_next, end)
        for phi, val in zip(accs, new):
            phi.add_incoming(val, end)
        b.cbranch(b.icmp_signed("<", r_next, count), loop, done)
        b.position_at_end(done)
        final = []
        for a, n in zip(init, new):
            phi = b.phi(a.type)
            phi.add_incoming(a, pre)
            phi.add_incoming(n, end)
            final.append(phi)
        return final


# ------------------------------------------------------------------ memcpy and memset


def _pointer_and_size(builder, addr, nbytes):
    ptr = builder.inttoptr(addr, ir.IntType(8).as_pointer())
    if nbytes.type.width < 64:
        nbytes = builder.sext(nbytes, ir.IntType(64))
    return ptr, nbytes


@intrinsic
def copy_bytes(typingctx, dst_addr, src_addr, nbytes):
    """``memcpy(dst, src, nbytes)``; the ranges must not overlap."""
    if not all(isinstance(a, types.Integer) for a in (dst_addr, src_addr, nbytes)):
        return None
    sig = types.void(dst_addr, src_addr, nbytes)

    def codegen(context, builder, signature, args):
        dst, n = _pointer_and_size(builder, args[0], args[2])
        src = builder.inttoptr(args[1], ir.IntType(8).as_pointer())
        cgutils.raw_memcpy(builder, dst, src, n, 1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def zero_bytes(typingctx, dst_addr, nbytes):
    """``memset(dst, 0, nbytes)`` (all-zero bytes are 0.0 in IEEE floats)."""
    if not all(isinstance(a, types.Integer) for a in (dst_addr, nbytes)):
        return None
    sig = types.void(dst_addr, nbytes)

    def codegen(context, builder, signature, args):
        dst, n = _pointer_and_size(builder, args[0], args[1])
        cgutils.memset(builder, dst, n, 0)
        return context.get_dummy_value()

    return sig, codegen

"""``memcpy`` and ``memset`` for numba kernels, on integer addresses.

Padding copies many short rows (LeNet's are 24 values).  A numba element loop over such a
row becomes a vectorised loop with a runtime alias check and a scalar remainder, whose set-up
costs more than the copy; LLVM's ``memcpy``/``memset`` intrinsics do not pay it (LeNet c1's
data gradient: padding dy 0.12 -> ~0.03 ms).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["copy_bytes", "zero_bytes"]


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

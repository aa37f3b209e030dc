"""Which values of a planned network stay as rows of channels between layers.

The tap-GEMM convolution works on maps held as rows of channels, ``(H, W, N, C)``: one row of
``C`` numbers per pixel and image.  Writing its result back as NCHW and having the next
tap-GEMM layer rearrange it again costs two passes over the map per layer, and NCHW pooling
of small maps transposes too.  So a value stays in rows when its producer can write rows and
every reader can take them:

* producers: a tap-GEMM convolution; a ReLU, residual sum or channel concatenation whose
  inputs are all rows (their results are rows too); a max pooling of rows, or of NCHW maps
  small enough to pool across planes (the stem's pool of a CIFAR network: its result enters
  rows there);
* readers: a tap-GEMM convolution (rows are its input layout; a strided one splits them into
  stride phases by block copies), those same elementwise and pooling steps (their own results
  then in rows), and a global average pooling (which writes NCHW ``(N, C, 1, 1)``).

Everything else (the network's result, a flatten, a linear layer, a convolution of another
algorithm, any module run as it is) reads NCHW, so a value one of them reads stays NCHW.
The decision is a fixpoint: dropping a value from rows can drop the values that depended
on it.
"""

from __future__ import annotations

from collections import defaultdict

from ..conv import engine
from ..kernels.pool2d import ACROSS_MAX_PLANE

__all__ = ["rows_values", "ROWS_KINDS"]

#: step kinds that read and write rows of channels (besides convolutions)
ROWS_KINDS = {"maxpool", "relu", "add", "concat"}


def rows_values(steps, out: int, shapes: dict, fasts: dict, conv_geometry, algorithm,
                dtype) -> set:
    """The values held as rows of channels (``(H, W, N, C)`` instead of ``(N, C, H, W)``).

    Parameters
    ----------
    steps : list of Step
    out : int
        The network's result (always NCHW).
    shapes : dict
        Each value's NCHW shape.
    fasts : dict
        ``id(step) -> bool``: whether the step runs on planned buffers.
    conv_geometry : callable
        ``conv_geometry(step, x_shape)``: a convolution step's checked geometry.
    algorithm : str
        The convolutions' ``algorithm``.
    dtype : numpy dtype
    """
    producer = {s.output: s for s in steps}
    readers = defaultdict(list)
    for s in steps:
        for i in s.inputs:
            readers[i].append(s)
    layouts = {}  # conv step id -> (writes rows, reads rows)
    for s in steps:
        if s.kind == "conv" and fasts[id(s)] and shapes[s.inputs[0]][0] > 0:
            x_shape = shapes[s.inputs[0]]
            layouts[id(s)] = engine.rows_layouts("conv2d", x_shape, s.weight.shape,
                                                 conv_geometry(s, x_shape), dtype, algorithm)

    def writes(s):
        if s.kind == "conv":
            return layouts.get(id(s), (False, False))[0]
        if s.kind == "maxpool":
            return fasts[id(s)] and _plain_window(s)
        if s.kind == "concat":
            return fasts[id(s)] and s.module._config["axis"] in (1, -3)
        return s.kind in ("relu", "add") and fasts[id(s)]

    def reads(s):
        if s.kind == "conv":
            return layouts.get(id(s), (False, False))[1]
        if s.kind == "global_avg" or (s.kind == "adaptive_avg"
                                      and shapes[s.output][-2:] == (1, 1)):
            return fasts[id(s)]
        return False

    rows = {s.output for s in steps if writes(s) and len(shapes[s.output]) == 4}
    changed = True
    while changed:
        changed = False
        for v in sorted(rows):
            s = producer[v]
            ok = v != out and (s.kind not in ROWS_KINDS or all(i in rows for i in s.inputs)
                               or (s.kind == "maxpool" and _across(shapes[s.inputs[0]])))
            for r in readers[v]:
                if not ok:
                    break
                ok = (r.output in rows) if r.kind in ROWS_KINDS else reads(r)
            if not ok:
                rows.discard(v)
                changed = True
    return rows


def _across(shape) -> bool:
    """Whether an NCHW map's planes are pooled across planes, straight into rows."""
    return shape[2] * shape[3] <= ACROSS_MAX_PLANE


def _plain_window(s) -> bool:
    """Whether a max pooling's windows suit the rows kernel: no dilation, no argmax (the
    padding is at most half the window, so every window holds an input tap)."""
    c = s.module._config
    d = c["dilation"]
    return (d == 1 or tuple(d) == (1, 1)) and not c["return_indices"]

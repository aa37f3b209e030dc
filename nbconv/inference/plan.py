"""A network planned for one input shape: shapes, buffers and the closures that run it."""

from __future__ import annotations

import math

import numpy as np

from .layouts import rows_values
from .memory import plan_memory
from .steps import (
    ELEMENTWISE,
    build,
    build_fresh,
    conv_geometry,
    describe,
    fast,
    output_kind,
    uses_blas,
)

__all__ = ["Plan"]


class Plan:
    """The steps of a compiled network laid out for the input shape ``x_shape``.

    Attributes
    ----------
    runs : list of callables
        ``run(vals)`` per step, in order.
    vals : list
        Value id -> array; the planned buffers and views are in place, the input goes in
        ``vals[0]``, fresh results are stored by their steps.
    out : int
        The value returned.
    rows : list of tuple
        ``(name, op, fused, shape, where)`` per step, for ``explain``.
    nbytes : int
        The planned buffers' size.
    """

    def __init__(self, steps, out, x_shape, dtype, algorithm):
        shapes, dtypes = _infer(steps, x_shape, dtype)
        fasts = {id(s): fast(s, [shapes[i] for i in s.inputs], [dtypes[i] for i in s.inputs],
                             dtype) for s in steps}
        kinds = {s.output: output_kind(s, fasts[id(s)]) for s in steps}
        elementwise = {id(s) for s in steps if s.kind in ELEMENTWISE and fasts[id(s)]}
        layout = plan_memory(steps, out, kinds, shapes, dtypes, elementwise)
        #: the values held as rows of channels (H, W, N, C) between layers
        self.rows = rows_values(steps, out, shapes, fasts, conv_geometry, algorithm, dtype)
        stored = {v: _rows_shape(shapes[v]) if v in self.rows else shapes[v] for v in shapes}
        buffers = layout.arrays(stored, dtypes)
        vals = [None] * (max([s.output for s in steps], default=0) + 1)
        for v, a in buffers.items():
            vals[v] = a
        #: whether the call keeps BLAS single-threaded around all steps (saving the switch
        #: per product) rather than per product: with two products or more and no module
        #: of the user's, whose own products may want BLAS's threads
        self.blas_held = (all(k != "fresh" for k in kinds.values()) and sum(
            uses_blas(s, [shapes[i] for i in s.inputs], dtype, algorithm)
            for s in steps if kinds[s.output] == "buffer") >= 2)
        runs, rows, run_rows = [], [], []
        fixed = set(buffers) | {0}  # values that are always C-contiguous arrays
        for s in steps:
            ins = [shapes[i] for i in s.inputs]
            v = s.output
            if kinds[v] == "view" and s.inputs[0] in fixed and s.inputs[0] != 0:
                vals[v] = vals[s.inputs[0]].reshape(shapes[v])  # no step at all
                fixed.add(v)
            elif kinds[v] == "view" and s.inputs[0] == 0:
                runs.append(build_fresh(s, dtype))
                fixed.add(v)
            elif kinds[v] == "buffer":
                # the inputs that are planned buffers (the same arrays at every call)
                planned = [vals[i] if i in fixed and i != 0 else None for i in s.inputs]
                run = build(s, ins, vals[v], algorithm, dtype, self.blas_held,
                            [i in self.rows for i in s.inputs], v in self.rows, planned)
                loose = [i for i in s.inputs if i not in fixed]
                # an opaque module's result: the kernels take C order
                runs.append(_contiguous(loose, run) if loose else run)
            else:
                runs.append(build_fresh(s, dtype))
            run_rows += [len(rows)] * (len(runs) - len(run_rows))
            where = {"buffer": "buf", "view": "view of", "fresh": "own array"}[kinds[v]]
            if kinds[v] == "buffer":
                where = (f"buf {layout.slot[v]}" + (" (in place)" if v in layout.inplace
                                                   else "")
                         + (" rows" if v in self.rows else ""))
            elif kinds[v] == "view":
                where = "view of input"
                for r, slot in layout.slot.items():
                    if s.inputs[0] == r:
                        where = f"view of buf {slot}"
            rows.append((s.name or type(s.module).__name__,
                         describe(s, ins, dtype, algorithm, v in self.rows),
                         ", ".join(s.fused), shapes[v], where))
        self.runs, self.vals, self.out, self.rows = runs, vals, out, rows
        self.run_rows = run_rows  # the row of each run (a view of a buffer has no run)
        #: whether a module's own forward runs (then under no_grad)
        self.opaque = any(kinds[s.output] == "fresh" for s in steps)
        #: the values that calls store (dropped after each call, not kept alive)
        self.transient = [s.output for s in steps
                          if kinds[s.output] == "fresh" or vals[s.output] is None]
        self.nbytes = layout.nbytes
        self.nslots = len(layout.slots)
        self.out_shape = shapes[out]


def _rows_shape(shape):
    """The stored shape of a value held as rows of channels: (N, C, H, W) -> (H, W, N, C)."""
    n, c, h, w = shape
    return h, w, n, c


def _contiguous(loose, step):
    def run(vals):
        for i in loose:
            vals[i] = np.ascontiguousarray(vals[i])
        step(vals)
    return run


def _infer(steps, x_shape, dtype):
    """Each value's shape and dtype, by running every step's module on zeros of its input
    shapes (a module with its own forward can only be asked that way; the layers raise
    their own errors for an input they cannot take)."""
    shapes = {0: tuple(x_shape)}
    dtypes = {0: np.dtype(dtype)}
    vals = {0: np.zeros(x_shape, dtype)}
    remaining = {}
    for s in steps:
        for i in s.inputs:
            remaining[i] = remaining.get(i, 0) + 1
    for s in steps:
        y = s.module(*[vals[i] for i in s.inputs])
        if not isinstance(y, np.ndarray):
            y = np.asarray(y) if s.kind != "opaque" else y
        shapes[s.output] = tuple(np.shape(y))
        dtypes[s.output] = getattr(y, "dtype", None)
        vals[s.output] = y
        for i in s.inputs:  # free what no later step reads
            remaining[i] -= 1
            if remaining[i] == 0 and i != 0:
                vals.pop(i, None)
    return shapes, dtypes


def plan_bytes(shape, dtype) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize

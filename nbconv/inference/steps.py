"""Each step as a prebuilt closure: arguments checked and bound once, kernels called directly.

A closure ``run(vals)`` reads its inputs from the list ``vals`` (value id -> array) and
writes its planned buffer (bound when it was built), or stores a fresh array in ``vals``.
Everything the functional ops check on each call (shapes, dtypes, window arguments,
convolution geometry) is checked here once, when the step is built for an input shape.
"""

from __future__ import annotations

import numpy as np

from .._blas import SMALL_MACS
from .._checks.conv import shaped
from .._checks.pool import window_args
from ..conv import engine
from ..conv.convplan import forward_plan
from ..functional import conv as _conv
from ..functional.activation import _add_relu_into, _relu_into, _unary_into
from ..functional.linear import _linear_into, pack_panels, panels_apply
from ..functional.pool import (
    _adaptive_avg_pool2d_into,
    _avg_pool2d_into,
    _classic_2x2,
    _global_mean,
    _max_pool2d_2x2_values,
    _max_pool2d_into,
    _planes,
    _values_blocks,
)
from ..kernels.linear import _linear_panels, _linear_tiny
from ..kernels.pool2d import _max_pool2d_planes_to_rows, _max_pool2d_rows_fwd

__all__ = ["output_kind", "ELEMENTWISE", "build", "describe", "conv_geometry"]

#: the kinds whose output goes in a planned buffer when their inputs are plain 4-D (2-D for
#: linear) arrays of the model's dtype
_BUFFERED = {"conv", "linear", "relu", "sigmoid", "tanh", "leaky_relu", "maxpool", "avgpool",
             "adaptive_avg", "global_avg", "add", "concat"}
#: the kinds whose closure depends on rows of channels (ReLU and residual sums are the same
#: elementwise pass in either layout)
_ROWS_SPECIFIC = {"conv", "maxpool", "concat", "global_avg", "adaptive_avg"}
#: the kinds that may write over their first input
ELEMENTWISE = {"relu", "sigmoid", "tanh", "leaky_relu", "add"}
_SPATIAL = {"conv", "maxpool", "avgpool", "adaptive_avg", "global_avg"}


#: largest linear layer (multiply-adds) that runs as one serial kernel (:func:`nbconv.kernels.
#: linear._linear_tiny`) rather than NumPy's product, sum and maximum (LeNet's classifier at
#: batch 1: 48,000, 10,000 and 840)
TINY_MACS = 1 << 16


def fast(step, in_shapes, in_dtypes, dtype) -> bool:
    """Whether ``step`` runs on planned buffers for these input shapes and dtypes (else its
    module, or the functional op, is called with fresh results)."""
    if step.kind not in _BUFFERED or any(d != dtype for d in in_dtypes):
        return False
    if step.kind in _SPATIAL:
        return len(in_shapes[0]) == 4
    if step.kind == "add":
        return len(set(in_shapes)) == 1
    if step.kind == "concat":
        return len({len(s) for s in in_shapes}) == 1
    return True


def output_kind(step, is_fast: bool) -> str:
    if step.kind == "flatten":
        return "view"
    return "buffer" if is_fast else "fresh"


def _linear_path(x_shape, weight_shape) -> str:
    """How a planned linear layer runs: ``"tiny"`` (one serial kernel, at most
    :data:`TINY_MACS`), ``"panels"`` (weights packed once: :func:`~nbconv.functional.linear.
    panels_apply`) or ``"blas"``."""
    rows, (out_f, in_f) = int(np.prod(x_shape[:-1])), weight_shape
    if 0 < rows * out_f * in_f <= TINY_MACS:
        return "tiny"
    return "panels" if panels_apply(rows, out_f, in_f) else "blas"


def uses_blas(step, x_shapes, dtype, algorithm) -> bool:
    """Whether the fast ``step`` calls BLAS (a linear layer larger than :data:`TINY_MACS` and
    not on packed panels, a convolution by a GEMM)."""
    if step.kind == "linear":
        return _linear_path(x_shapes[0], step.weight.shape) == "blas"
    if step.kind == "conv" and x_shapes[0][0]:
        g = conv_geometry(step, x_shapes[0])
        p = forward_plan("conv2d", tuple(x_shapes[0]), step.weight.shape, g, dtype, algorithm)
        return p.algorithm != "direct"
    return False


def build(step, x_shapes, y, algorithm, dtype, blas_held=False, in_rows=None, out_rows=False,
          planned=None):
    """The closure ``run(vals)`` of a fast step, ``y`` its output buffer; ``blas_held``: the
    caller keeps BLAS single-threaded around the whole network.  ``in_rows`` (one flag per
    input) and ``out_rows``: which of its values are rows of channels ``(H, W, N, C)``
    (:mod:`.layouts`); ``x_shapes`` are NCHW all the same.  ``planned`` (one per input): the
    input's array where it is a planned buffer, the same at every call (its views are then
    made once), else None."""
    i = step.inputs
    x_planned = planned[0] if planned else None
    kind, m = step.kind, step.module
    if kind in _ROWS_SPECIFIC and (in_rows and any(in_rows) or out_rows):
        return _build_rows(step, x_shapes, y, algorithm, in_rows or [False] * len(i), out_rows)
    if kind == "conv":
        w, b, relu = step.weight, step.bias, step.relu
        g = conv_geometry(step, x_shapes[0])
        i0 = i[0]
        if x_shapes[0][0] == 0:
            def run(vals):
                pass  # an empty batch: nothing to compute
        else:  # the plan, the weights it runs with and the checks it makes, decided once
            call = engine.bind_forward("conv2d", x_shapes[0], w, b, g, algorithm, relu)

            def run(vals):
                call(vals[i0], y)
    elif kind == "linear":
        w, b, relu = step.weight, step.bias, step.relu
        in_f = w.shape[1]
        rows = int(np.prod(x_shapes[0][:-1]))
        y2 = y.reshape(rows, w.shape[0])
        i0 = i[0]
        no_bias = np.zeros(1, dtype=y2.dtype)
        path = _linear_path(x_shapes[0], w.shape)
        if path == "tiny":
            run = _bound(_linear_tiny, i0, x_planned, (rows, in_f), w,
                         no_bias if b is None else b, b is not None, relu, y2)
        elif path == "panels":
            panels = pack_panels(w)  # the weights are constant: packed once

            def run(vals):  # (the kernel reads x's rows by address)
                _linear_panels(np.ascontiguousarray(vals[i0].reshape(rows, in_f)), panels,
                               no_bias if b is None else b, b is not None, relu, y2)
        elif blas_held and 0 < y2.size * in_f <= SMALL_MACS:
            # a product too small for threads: NumPy's, without the thread bookkeeping of
            # _blas.matmul (LeNet at batch 1: 5.3 -> 2 us a layer)
            wt = w.T

            def run(vals):
                np.matmul(vals[i0].reshape(rows, in_f), wt, out=y2)
                if b is not None:
                    np.add(y2, b, out=y2)
                if relu:
                    np.maximum(y2, 0, out=y2)
        else:
            def run(vals):
                _linear_into(vals[i0].reshape(rows, in_f), w, b, y2, relu)
    elif kind == "relu":
        i0 = i[0]

        def run(vals):
            _relu_into(vals[i0], y)
    elif kind in ("sigmoid", "tanh", "leaky_relu"):
        args = (m._config["negative_slope"],) if kind == "leaky_relu" else ()
        i0 = i[0]

        def run(vals):
            _unary_into(kind, vals[i0], y, *args)
    elif kind == "maxpool":
        c = m._config
        _, k, s, p, d = window_args("max_pool2d", x_shapes[0], c["kernel_size"], c["stride"],
                                    c["padding"], c["dilation"], c["ceil_mode"])
        i0 = i[0]
        xs = x_shapes[0]
        if _classic_2x2(xs, y.shape, k, s, p, d):  # its kernel and views bound once
            kernel = _max_pool2d_2x2_values(int(np.prod(xs)))
            planes, yp = (-1, *xs[-2:]), _planes(y)

            run = _bound(kernel, i0, x_planned, planes, yp)
        else:
            def run(vals):
                _max_pool2d_into(vals[i0], y, False, k, s, p, d)
    elif kind == "avgpool":
        c = m._config
        _, k, s, p, _ = window_args("avg_pool2d", x_shapes[0], c["kernel_size"], c["stride"],
                                    c["padding"], 1, c["ceil_mode"])
        include = int(c["count_include_pad"])
        i0 = i[0]

        def run(vals):
            _avg_pool2d_into(vals[i0], y, k, s, p, include, 0)
    elif kind == "adaptive_avg":
        i0 = i[0]

        def run(vals):
            _adaptive_avg_pool2d_into(vals[i0], y)
    elif kind == "global_avg":
        i0 = i[0]

        def run(vals):
            _global_mean(vals[i0], y)
    elif kind == "add":
        run = _add(i, y, step.relu)
    elif kind == "concat":
        axis = m._config["axis"]
        ins = tuple(i)

        def run(vals):
            np.concatenate([vals[k] for k in ins], axis=axis, out=y)
    else:  # pragma: no cover - fast() admits only the kinds above
        raise AssertionError(kind)
    return run


def _bound(kernel, i, x_planned, shape, *args):
    """``run(vals)`` calling ``kernel(x, *args)``, ``x`` value ``i`` seen as ``shape``: a
    view made once where the value is a planned buffer (``x_planned``), else at each call
    (at batch 1 a step's own Python costs as much as a small kernel)."""
    if x_planned is not None:
        x = x_planned.reshape(shape)

        def run(vals):
            kernel(x, *args)
    else:
        def run(vals):
            kernel(vals[i].reshape(shape), *args)
    return run


def _build_rows(step, x_shapes, y, algorithm, in_rows, out_rows):
    """The closure of a step that reads or writes rows of channels (see :mod:`.layouts`)."""
    i = step.inputs
    kind, m = step.kind, step.module
    if kind == "conv":
        w, b, relu = step.weight, step.bias, step.relu
        g = conv_geometry(step, x_shapes[0])
        i0, r_in = i[0], in_rows[0]
        prepared = engine.prepare_forward("conv2d", x_shapes[0], w, g, algorithm, r_in,
                                          out_rows, b)
        fwd_rows, fwd = engine.forward_rows, engine.forward

        def exact(xn):  # the plain forward, for results holding inf or NaN
            return fwd("conv2d", xn, w, b, g, algorithm, relu)

        def run(vals):
            fwd_rows(vals[i0], b, y, relu, prepared, r_in, out_rows, exact)
    elif kind == "maxpool":
        c = m._config
        _, k, st, p, _ = window_args("max_pool2d", x_shapes[0], c["kernel_size"], c["stride"],
                                     c["padding"], c["dilation"], c["ceil_mode"])
        N, C, H, W = x_shapes[0]
        y3 = y.reshape(y.shape[0], y.shape[1], N * C)
        i0 = i[0]
        if in_rows[0]:
            def run(vals):
                _max_pool2d_rows_fwd(vals[i0].reshape(H, W, N * C), y3, *k, *st, *p)
        else:  # an NCHW map enters rows here
            blocks = _values_blocks((N * C, H, W))

            def run(vals):
                _max_pool2d_planes_to_rows(vals[i0].reshape(N * C, H, W), y3, blocks, *k, *st,
                                           *p)
    elif kind == "concat":
        ins = tuple(i)

        def run(vals):  # channels are the last axis of rows
            np.concatenate([vals[k] for k in ins], axis=3, out=y)
    elif kind in ("global_avg", "adaptive_avg"):
        N, C, H, W = x_shapes[0]
        y1 = y.reshape(N * C)
        i0 = i[0]

        def run(vals):  # float64 sums, as the NCHW kernels
            y1[...] = vals[i0].reshape(H * W, N * C).mean(axis=0, dtype=np.float64)
    else:  # pragma: no cover - build() sends only _ROWS_SPECIFIC kinds here
        raise AssertionError(kind)
    return run


def _add(ins, y, relu):
    if relu and len(ins) == 2:
        a, b = ins

        def run(vals):
            _add_relu_into(vals[a], vals[b], y)
        return run
    first, rest = ins[0], tuple(ins[1:])

    def run(vals):
        np.add(vals[first], vals[rest[0]], out=y)
        for k in rest[1:]:
            np.add(y, vals[k], out=y)
        if relu:
            _relu_into(y, y)
    return run


def build_fresh(step, dtype):
    """The closure of a step that allocates its own result: a module called as it is, or a
    convolution / linear layer with fusions whose input is not what the kernels take."""
    i, o, m = tuple(step.inputs), step.output, step.module
    if step.kind in ("conv", "linear") and (step.fused or step.weight is not m.weight.data):
        w, b, relu = step.weight, step.bias, step.relu

        if step.kind == "conv":
            def call(x):
                return _conv._conv2d_checked("conv2d", x, w, b, m.stride, m.padding, m.dilation,
                                             m.groups, m.padding_mode, "auto", relu=relu)
        else:
            from ..functional.linear import linear

            def call(x):
                y = linear(x, w, b)
                return np.maximum(y, 0, out=y) if relu else y

        def run(vals):
            vals[o] = call(vals[i[0]])
        return run
    if step.kind == "flatten":
        flat = m._flat_shape
        i0 = i[0]

        def run(vals):
            x = vals[i0]
            vals[o] = x.reshape(flat(tuple(x.shape)))
        return run
    if step.relu:  # a residual sum with its ReLU, on arrays the kernels do not take
        def run(vals):
            y = m(*[vals[k] for k in i])
            vals[o] = np.maximum(y, 0, out=y)
        return run

    def run(vals):
        vals[o] = m(*[vals[k] for k in i])
    return run


def conv_geometry(step, x_shape):
    """A convolution step's checked geometry for inputs of ``x_shape``."""
    m, w = step.module, step.weight
    desc = f"x shape {tuple(x_shape)}, weight shape {tuple(w.shape)}"
    return shaped("conv2d", tuple(x_shape), w.shape, m._hyper(), desc)  # validated by m


def describe(step, x_shapes, dtype, algorithm, out_rows=False) -> str:
    """What runs the step: the convolution's algorithm and kernels, or the op."""
    if step.kind == "conv" and len(x_shapes[0]) == 4:
        if x_shapes[0][0] == 0:
            return "conv2d (empty batch: no kernel)"
        g = conv_geometry(step, x_shapes[0])
        p = forward_plan("conv2d", tuple(x_shapes[0]), step.weight.shape, g, dtype, algorithm)
        if out_rows and engine.pixel_rows(p, x_shapes[0], step.weight.shape, g, dtype):
            return "conv2d im2col (pixel rows)"
        if engine.panels(p, x_shapes[0], step.weight.shape):
            return "conv2d tapgemm (packed panels)"
        return f"conv2d {p.algorithm}"
    if step.kind == "opaque":
        return f"{type(step.module).__name__}.forward"
    if step.kind == "linear" and _linear_path(x_shapes[0], step.weight.shape) == "panels":
        return "linear (packed panels)"
    return step.kind

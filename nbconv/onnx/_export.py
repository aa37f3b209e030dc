"""nbconv model -> ONNX file.

The model runs once on zeros of ``input_shape`` (eval mode, no gradient caching) while every
layer writes its ONNX nodes: the traced shapes fix what ONNX cannot say without them (an
adaptive pool's windows, a reflect-padded "same" convolution's pads).  The batch axis stays
symbolic (``"N"``) in the file.  A PyTorch-style module (a forward pass without a
hand-written backward) is first traced into a ``Graph`` by :mod:`nbconv.onnx._trace`.
"""

from __future__ import annotations

import os
import secrets

import numpy as np

from .. import nn as _nn
from .._checks import conv_padding
from .._version import __version__
from . import _deps, _trace
from . import layers as _ox

__all__ = ["export", "adaptive_matrix", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax along one axis, Squeeze/Unsqueeze axes as inputs, Pad pads as input
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class _Builder:
    """Collects nodes and initialisers with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.inits, self.names = [], [], set()
        self.need_opset = MIN_OPSET
        # a ceil_mode pool whose last window would start in the right padding: PyTorch (and
        # onnxruntime) drop that window, ONNX's shape inference keeps it
        self.shapes_disagree = False

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def const(self, base: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self._unique(base)
        self.inits.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), name))
        return name

    def ints(self, base: str, values) -> str:
        return self.const(base, np.asarray(values, np.int64), np.int64)

    def node(self, op: str, inputs, base: str, **attrs) -> str:
        out = self._unique(base)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out],
                                                     name=self._unique(f"{base}/{op}"), **attrs))
        return out


def _tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            v = v * n
        return tuple(int(a) for a in v)
    return (int(v),) * n


# -- per-layer writers: (builder, module, path, input names, input values, output) -> name ------
def _conv(b, m, path, xs, vs, y):
    w = m.weight.data
    nd = w.ndim - 2
    k = w.shape[2:]
    stride, dil = _tuple(m.stride, nd), _tuple(m.dilation, nd)
    x = xs[0]
    attrs = dict(kernel_shape=list(k), strides=list(stride), dilations=list(dil),
                 group=int(m.groups))
    pads = _conv_pads(m, vs[0].shape[2:], k, stride, dil)
    if m.padding_mode != "zeros" and any(map(any, pads)):
        # ONNX Conv pads with zeros only: the other modes are a Pad node, sized for the
        # traced input
        pad_in = b.ints(f"{path}.pads", [0, 0] + [p[0] for p in pads] + [0, 0]
                        + [p[1] for p in pads])
        mode = _PAD_MODES[m.padding_mode]
        if mode == "wrap":
            b.need_opset = max(b.need_opset, 19)
        x = b.node("Pad", [x, pad_in], f"{path}.pad", mode=mode)
        attrs["pads"] = [0] * (2 * nd)
    elif m.padding == "same" and m.padding_mode == "zeros" and any(s > 1 for s in stride):
        attrs["auto_pad"] = "SAME_UPPER"  # TensorFlow's rule, for any input size
    else:  # fixed pads (stride-1 "same" pads do not depend on the input size)
        attrs["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
    ins = [x, b.const(f"{path}.weight", w)]
    if m.bias is not None:
        ins.append(b.const(f"{path}.bias", m.bias.data))
    return b.node("Conv", ins, path, **attrs)


def _conv_transpose(b, m, path, xs, vs, y):
    """``nn.ConvTranspose2d``/``1d`` as ConvTranspose: the same padding at both ends, and
    the output padding of the traced call (``forward``'s ``output_size`` may have set it)."""
    w = m.weight.data
    nd = w.ndim - 2
    k, pads = w.shape[2:], _tuple(m.padding, nd)
    stride, dil = _tuple(m.stride, nd), _tuple(m.dilation, nd)
    out_pad = [o - ((n - 1) * s - 2 * p + d * (kk - 1) + 1) for o, n, s, p, d, kk in
               zip(y.shape[-nd:], vs[0].shape[-nd:], stride, pads, dil, k)]
    attrs = dict(kernel_shape=list(k), strides=list(stride), dilations=list(dil),
                 group=int(m.groups), pads=list(pads) * 2, output_padding=out_pad)
    ins = [xs[0], b.const(f"{path}.weight", w)]
    if m.bias is not None:
        ins.append(b.const(f"{path}.bias", m.bias.data))
    return b.node("ConvTranspose", ins, path, **attrs)


def _conv_pads(m, in_sizes, k, stride, dil) -> list[tuple[int, int]]:
    """(before, after) per spatial axis, as nbconv pads (``"same"`` from the traced size)."""
    nd = len(k)
    if isinstance(m.padding, str):
        hw, kk, ss, dd = (tuple(in_sizes), k, stride, dil) if nd == 2 else (
            (1,) + tuple(in_sizes), (1,) + tuple(k), (1,) + stride, (1,) + dil)
        t, btm, lft, rgt = conv_padding(type(m).__name__, m.padding, hw, kk, ss, dd)
        both = [(t, btm), (lft, rgt)]
        return both[2 - nd:]
    return [(p, p) for p in _tuple(m.padding, nd)]


def _pool_attrs(cfg) -> dict:
    k = _tuple(cfg["kernel_size"], 2)
    s = k if cfg["stride"] is None else _tuple(cfg["stride"], 2)
    p = _tuple(cfg["padding"], 2)
    return dict(kernel_shape=list(k), strides=list(s), pads=list(p) * 2,
                ceil_mode=int(cfg["ceil_mode"]))


def _note_ceil(b, cfg, x, y) -> None:
    """Flag a ceil_mode pool whose output is smaller than the plain ceil formula's."""
    if cfg["ceil_mode"]:
        attrs = _pool_attrs(cfg)
        k, s, p = attrs["kernel_shape"], attrs["strides"], attrs["pads"][:2]
        d = _tuple(cfg.get("dilation", 1), 2)
        for o, n, kk, ss, pp, dd in zip(y.shape[-2:], x.shape[-2:], k, s, p, d):
            if o != -(-(n + 2 * pp - dd * (kk - 1) - 1) // ss) + 1:
                b.shapes_disagree = True


def _maxpool(b, m, path, xs, vs, y):
    _no_indices(m, path)
    _note_ceil(b, m._config, vs[0], y)
    return b.node("MaxPool", xs, path, dilations=list(_tuple(m._config["dilation"], 2)),
                  **_pool_attrs(m._config))


def _avgpool(b, m, path, xs, vs, y):
    _note_ceil(b, m._config, vs[0], y)
    return b.node("AveragePool", xs, path, count_include_pad=int(m._config["count_include_pad"]),
                  **_pool_attrs(m._config))


def adaptive_matrix(n: int, out: int) -> np.ndarray:
    """(out, n) matrix whose row i averages PyTorch's adaptive window
    ``[floor(i n / out), ceil((i + 1) n / out))``."""
    a = np.zeros((out, n))
    for i in range(out):
        s, e = (i * n) // out, -(-((i + 1) * n) // out)
        a[i, s:e] = 1.0 / (e - s)
    return a


def _adaptive(b, m, path, xs, vs, y):
    h, w = vs[0].shape[-2:]
    oh, ow = y.shape[-2:]
    if (oh, ow) == (1, 1):
        return b.node("GlobalAveragePool", xs, path)
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        return b.node("AveragePool", xs, path, kernel_shape=k, strides=k)
    # overlapping or replicated windows: average along W, then along H, as two products
    t = b.node("MatMul", [xs[0], b.const(f"{path}.pool_w", adaptive_matrix(w, ow).T)],
               f"{path}.w")
    return b.node("MatMul", [b.const(f"{path}.pool_h", adaptive_matrix(h, oh)), t], path)


def _gap(b, m, path, xs, vs, y):
    out = b.node("GlobalAveragePool", xs, path)
    if not m._config["keepdims"]:
        out = b.node("Flatten", [out], f"{path}.flatten", axis=1)
    return out


def _linear(b, m, path, xs, vs, y):
    w = m.weight.data
    if vs[0].ndim == 2:
        ins = [xs[0], b.const(f"{path}.weight", w)]
        if m.bias is not None:
            ins.append(b.const(f"{path}.bias", m.bias.data))
        return b.node("Gemm", ins, path, transB=1)
    out = b.node("MatMul", [xs[0], b.const(f"{path}.weight", w.T)], path)
    if m.bias is not None:
        out = b.node("Add", [out, b.const(f"{path}.bias", m.bias.data)], f"{path}.add")
    return out


def _flatten(b, m, path, xs, vs, y):
    nd = vs[0].ndim
    s, e = m._config["start_dim"] % nd, m._config["end_dim"] % nd
    if s == 1 and e == nd - 1:
        return b.node("Flatten", xs, path, axis=1)
    target = [0] * s + [-1] + list(vs[0].shape[e + 1:])  # 0: keep that axis (the batch)
    return b.node("Reshape", [xs[0], b.ints(f"{path}.shape", target)], path)


def _simple(op):
    def write(b, m, path, xs, vs, y):
        return b.node(op, xs, path)
    return write


def _leaky(b, m, path, xs, vs, y):
    return b.node("LeakyRelu", xs, path, alpha=m._config["negative_slope"])


def _softmax(b, m, path, xs, vs, y):
    return b.node("Softmax", xs, path, axis=m._config["dim"])


def _log_softmax(b, m, path, xs, vs, y):
    return b.node("LogSoftmax", xs, path, axis=m._config["dim"])


def _dropout(b, m, path, xs, vs, y):
    # an inference graph: ONNX Dropout without training_mode is the identity
    return b.node("Dropout", [xs[0], b.const(f"{path}.ratio", m._config["p"])], path)


def _batchnorm(b, m, path, xs, vs, y):
    cfg = m._config
    if not cfg["track_running_stats"]:
        raise ValueError(f"export: layer {path!r} ({type(m).__name__}) has "
                         "track_running_stats=False: it normalises with the batch statistics "
                         "even in eval mode, which ONNX BatchNormalization cannot express")
    c = cfg["num_features"]
    scale = m.weight.data if m.weight is not None else np.ones(c)
    shift = m.bias.data if m.bias is not None else np.zeros(c)
    ins = [xs[0], b.const(f"{path}.weight", scale), b.const(f"{path}.bias", shift),
           b.const(f"{path}.running_mean", m._buffers["running_mean"]),
           b.const(f"{path}.running_var", m._buffers["running_var"])]
    return b.node("BatchNormalization", ins, path, epsilon=cfg["eps"],
                  momentum=1.0 - cfg["momentum"])


def _lrn(b, m, path, xs, vs, y):
    cfg = m._config
    if cfg["size"] % 2 == 0:
        raise ValueError(f"export: layer {path!r} (LocalResponseNorm) has an even size "
                         f"{cfg['size']}: ONNX LRN centres even windows one channel later than "
                         "PyTorch and nbconv do, so only odd sizes export exactly")
    return b.node("LRN", xs, path, size=cfg["size"], alpha=cfg["alpha"], beta=cfg["beta"],
                  bias=cfg["k"])


def _concat(b, m, path, xs, vs, y):
    return b.node("Concat", xs, path, axis=m._config["axis"])


def _add(b, m, path, xs, vs, y):
    if len(xs) == 1:
        return b.node("Identity", xs, path)
    return b.node("Add" if len(xs) == 2 else "Sum", xs, path)


def _clip(b, m, path, xs, vs, y):
    lo, hi = m._config["min"], m._config["max"]
    ins = [xs[0], "" if lo is None else b.const(f"{path}.min", lo),
           "" if hi is None else b.const(f"{path}.max", hi)]
    while ins[-1] == "":
        ins.pop()
    return b.node("Clip", ins, path)


def _pad(b, m, path, xs, vs, y):
    pads = m._config["pads"]
    ins = [xs[0], b.ints(f"{path}.pads", [p[0] for p in pads] + [p[1] for p in pads])]
    if m._config["mode"] == "constant":
        ins.append(b.const(f"{path}.value", m._config["value"]))
    if m._config["mode"] == "wrap":
        b.need_opset = max(b.need_opset, 19)
    return b.node("Pad", ins, path, mode=m._config["mode"])


def _slice(b, m, path, xs, vs, y):
    cfg = m._config
    ins = [xs[0]] + [b.ints(f"{path}.{k}", cfg[k]) for k in ("starts", "ends", "axes", "steps")]
    return b.node("Slice", ins, path)


def _arithmetic(b, m, path, xs, vs, y):
    c = b.const(f"{path}.constant", m._buffers["constant"])
    return b.node(m._config["op"].capitalize(),
                  [xs[0], c] if m._config["side"] == "right" else [c, xs[0]], path)


def _reshape(b, m, path, xs, vs, y):
    return b.node("Reshape", [xs[0], b.ints(f"{path}.shape", m._config["shape"])], path,
                  allowzero=int(m._config["allowzero"]))


def _squeeze(b, m, path, xs, vs, y):
    axes = m._config["axes"]
    ins = xs if axes is None else [xs[0], b.ints(f"{path}.axes", axes)]
    return b.node("Squeeze", ins, path)


def _unsqueeze(b, m, path, xs, vs, y):
    return b.node("Unsqueeze", [xs[0], b.ints(f"{path}.axes", m._config["axes"])], path)


def _matmul(b, m, path, xs, vs, y):
    c = b.const(f"{path}.matrix", m._buffers["matrix"])
    return b.node("MatMul", [xs[0], c] if m._config["side"] == "right" else [c, xs[0]], path)


def _traced_op(b, m, path, xs, vs, y):
    cfg = m._config
    op = cfg["op"]
    if op == "Transpose":
        return b.node("Transpose", xs, path, perm=list(cfg["perm"]))
    if op not in ("ReduceSum", "ReduceMean"):
        return b.node(op, xs, path)
    axes = b.ints(f"{path}.axes", cfg["axes"])
    keep = int(cfg["keepdims"])
    if op == "ReduceSum":
        return b.node("ReduceSum", [xs[0], axes], path, keepdims=keep)
    total = b.node("ReduceSum", [xs[0], axes], f"{path}.sum", keepdims=keep)
    if 0 not in cfg["axes"]:  # the count is fixed by the traced sizes
        count = b.const(f"{path}.count", np.prod([vs[0].shape[a] for a in cfg["axes"]]))
    else:  # the batch axis is open in the file: count the values it holds at run time
        sizes = b.node("Gather", [b.node("Shape", xs[:1], f"{path}.shape"), axes],
                       f"{path}.sizes", axis=0)
        n = b.node("ReduceProd", [sizes], f"{path}.n", keepdims=0)
        count = b.node("Cast", [n], f"{path}.count",
                       to=b.onnx.helper.np_dtype_to_tensor_dtype(b.dtype))
    return b.node("Div", [total, count], path)


# -- issue 27's activations ------------------------------------------------------------------
def _needs(b, opset: int) -> None:
    b.need_opset = max(b.need_opset, opset)


def _prelu(b, m, path, xs, vs, y):
    w = m.weight.data
    nd = vs[0].ndim
    # ONNX broadcasts the slope from the last axis: one per channel is (C, 1, ..., 1)
    shape = (w.size,) + (1,) * (nd - 2) if w.size > 1 and nd >= 2 else (w.size,)
    return b.node("PRelu", [xs[0], b.const(f"{path}.weight", w.reshape(shape))], path)


def _with_opset(op, opset, **attrs):
    def write(b, m, path, xs, vs, y):
        _needs(b, opset)
        return b.node(op, xs, path, **{k: (v(m) if callable(v) else v)
                                       for k, v in attrs.items()})
    return write


def _silu(b, m, path, xs, vs, y):
    # no ONNX operator before Swish (opset 24): x * Sigmoid(x), which the importer fuses back
    return b.node("Mul", [xs[0], b.node("Sigmoid", xs, f"{path}.sigmoid")], path)


def _relu6(b, m, path, xs, vs, y):
    return b.node("Clip", [xs[0], b.const(f"{path}.min", 0.0), b.const(f"{path}.max", 6.0)],
                  path)


def _softplus(b, m, path, xs, vs, y):
    # ONNX Softplus is log(1 + exp(x)), without beta or a linear region: beyond PyTorch's
    # threshold (20 by default) the two differ by less than exp(-threshold)
    beta = m._config["beta"]
    if beta == 1.0:
        return b.node("Softplus", xs, path)
    z = b.node("Mul", [xs[0], b.const(f"{path}.beta", beta)], f"{path}.scaled")
    sp = b.node("Softplus", [z], f"{path}.softplus")
    return b.node("Div", [sp, b.const(f"{path}.beta_", beta)], path)


def _register_activations():
    from ..functional.activation_ext import SELU_ALPHA, SELU_SCALE

    _WRITERS.update({
        _nn.PReLU: _prelu,
        _nn.ELU: _with_opset("Elu", MIN_OPSET, alpha=lambda m: m._config["alpha"]),
        _nn.SELU: _with_opset("Selu", MIN_OPSET, alpha=SELU_ALPHA, gamma=SELU_SCALE),
        _nn.CELU: _with_opset("Celu", MIN_OPSET, alpha=lambda m: m._config["alpha"]),
        _nn.GELU: _with_opset("Gelu", 20, approximate=lambda m: m._config["approximate"]),
        _nn.SiLU: _silu, _nn.Mish: _with_opset("Mish", 18),
        _nn.Hardswish: _with_opset("HardSwish", 14),
        _nn.Hardsigmoid: _with_opset("HardSigmoid", MIN_OPSET, alpha=1.0 / 6.0, beta=0.5),
        _nn.ReLU6: _relu6, _nn.Softplus: _softplus,
    })


_WRITERS = {
    _nn.Conv2d: _conv, _nn.Conv1d: _conv, _nn.ConvTranspose2d: _conv_transpose,
    _nn.ConvTranspose1d: _conv_transpose, _nn.MaxPool2d: _maxpool, _nn.AvgPool2d: _avgpool,
    _nn.AdaptiveAvgPool2d: _adaptive, _nn.GlobalAvgPool2d: _gap, _nn.Linear: _linear,
    _nn.Flatten: _flatten, _nn.ReLU: _simple("Relu"), _nn.LeakyReLU: _leaky,
    _nn.Sigmoid: _simple("Sigmoid"), _nn.Tanh: _simple("Tanh"), _nn.Softmax: _softmax,
    _nn.Dropout: _dropout, _nn.BatchNorm1d: _batchnorm, _nn.BatchNorm2d: _batchnorm,
    _nn.LocalResponseNorm: _lrn, _nn.Concat: _concat, _nn.Add: _add,
    _ox.Clip: _clip, _ox.LogSoftmax: _log_softmax, _ox.Pad: _pad, _ox.Slice: _slice,
    _ox.Reshape: _reshape, _ox.Squeeze: _squeeze, _ox.Unsqueeze: _unsqueeze,
    _ox.MatMul: _matmul, _ox.Arithmetic: _arithmetic, _trace.TracedOp: _traced_op,
}

_register_activations()


# -- the layers of nbconv.nn.pooling: 1-D pooling, adaptive/global max pooling, channel dropout
def _pool1d_attrs(cfg) -> dict:
    k = _tuple(cfg["kernel_size"], 1)
    s = k if cfg["stride"] is None else _tuple(cfg["stride"], 1)
    p = _tuple(cfg["padding"], 1)
    return dict(kernel_shape=list(k), strides=list(s), pads=list(p) * 2,
                ceil_mode=int(cfg["ceil_mode"]))


def _note_ceil_1d(b, attrs, d, x, y) -> None:
    """:func:`_note_ceil` along L."""
    if attrs["ceil_mode"]:
        (k,), (s,), p = attrs["kernel_shape"], attrs["strides"], attrs["pads"][0]
        if y.shape[-1] != -(-(x.shape[-1] + 2 * p - d * (k - 1) - 1) // s) + 1:
            b.shapes_disagree = True


def _no_indices(m, path) -> None:
    if m._config.get("return_indices"):
        raise ValueError(f"export: layer {path!r} ({type(m).__name__}) has return_indices=True:"
                         " ONNX MaxPool's Indices count over the whole tensor, not PyTorch's "
                         "positions per plane; export it with return_indices=False")


def _maxpool1d(b, m, path, xs, vs, y):
    _no_indices(m, path)
    attrs = _pool1d_attrs(m._config)
    d = _tuple(m._config["dilation"], 1)
    _note_ceil_1d(b, attrs, d[0], vs[0], y)
    return b.node("MaxPool", xs, path, dilations=list(d), **attrs)


def _avgpool1d(b, m, path, xs, vs, y):
    attrs = _pool1d_attrs(m._config)
    _note_ceil_1d(b, attrs, 1, vs[0], y)
    return b.node("AveragePool", xs, path, count_include_pad=int(m._config["count_include_pad"]),
                  **attrs)


def _adaptive_avg1d(b, m, path, xs, vs, y):
    n, out = vs[0].shape[-1], y.shape[-1]
    if out == 1:
        return b.node("GlobalAveragePool", xs, path)
    if n % out == 0:
        return b.node("AveragePool", xs, path, kernel_shape=[n // out], strides=[n // out])
    # overlapping or unequal windows: a product with the averaging matrix along L
    return b.node("MatMul", [xs[0], b.const(f"{path}.pool", adaptive_matrix(n, out).T)], path)


def _adaptive_max(b, m, path, xs, vs, y):
    _no_indices(m, path)
    nd = 1 if isinstance(m, _nn.AdaptiveMaxPool1d) else 2
    ins, outs = vs[0].shape[-nd:], y.shape[-nd:]
    if all(o == 1 for o in outs):
        return b.node("GlobalMaxPool", xs, path)
    if all(n % o == 0 for n, o in zip(ins, outs)):
        k = [n // o for n, o in zip(ins, outs)]  # the windows tile the input
        return b.node("MaxPool", xs, path, kernel_shape=k, strides=k)
    raise ValueError(f"export: layer {path!r} ({type(m).__name__}) pools {tuple(ins)} to "
                     f"{tuple(outs)}: ONNX has no adaptive max pooling, and windows that "
                     "overlap or differ in size are no MaxPool; export it with an input size "
                     "that the output size divides")


def _gmp(b, m, path, xs, vs, y):
    out = b.node("GlobalMaxPool", xs, path)
    if not m._config["keepdims"]:
        out = b.node("Flatten", [out], f"{path}.flatten", axis=1)
    return out


_WRITERS.update({
    _nn.MaxPool1d: _maxpool1d, _nn.AvgPool1d: _avgpool1d, _nn.AdaptiveAvgPool1d: _adaptive_avg1d,
    _nn.AdaptiveMaxPool1d: _adaptive_max, _nn.AdaptiveMaxPool2d: _adaptive_max,
    _nn.GlobalMaxPool2d: _gmp, _nn.Dropout1d: _dropout, _nn.Dropout2d: _dropout,
})


def _onnx_pool(op):
    """The writer of :class:`nbconv.onnx.layers.MaxPool`/``AveragePool``: their attributes
    are ONNX's."""
    def write(b, m, path, xs, vs, y):
        cfg = m._config
        attrs = dict(kernel_shape=cfg["kernel_shape"], strides=cfg["strides"],
                     ceil_mode=int(cfg["ceil_mode"]))
        if cfg["auto_pad"] == "NOTSET":
            attrs["pads"] = cfg["pads"]
        else:
            attrs["auto_pad"] = cfg["auto_pad"]
        if op == "MaxPool" or any(d != 1 for d in cfg["dilations"]):
            attrs["dilations"] = cfg["dilations"]
        if op == "AveragePool":
            attrs["count_include_pad"] = int(cfg["count_include_pad"])
            if "dilations" in attrs:
                _needs(b, 19)  # AveragePool's dilations are new in opset 19
        if cfg["ceil_mode"]:
            nd = len(cfg["kernel_shape"])
            for i, (n, o) in enumerate(zip(vs[0].shape[2:], y.shape[2:])):
                ek = cfg["dilations"][i] * (cfg["kernel_shape"][i] - 1) + 1
                span = n + cfg["pads"][i] + cfg["pads"][nd + i] - ek
                if o != -(-span // cfg["strides"][i]) + 1:  # a dropped last window
                    b.shapes_disagree = True
        return b.node(op, xs, path, **attrs)
    return write


_WRITERS.update({_ox.MaxPool: _onnx_pool("MaxPool"), _ox.AveragePool: _onnx_pool("AveragePool")})


def _flatten_axis(b, m, path, xs, vs, y):
    return b.node("Flatten", xs, path, axis=m._config["axis"])


def _transpose(b, m, path, xs, vs, y):
    perm = m._config["perm"]
    return b.node("Transpose", xs, path, **({} if perm is None else {"perm": perm}))


def _reduce_mean(b, m, path, xs, vs, y):
    # the attribute form of opsets 13-17; :func:`_axes_as_inputs` moves it to an input from 18
    axes = m._config["axes"]
    return b.node("ReduceMean", xs, path, keepdims=int(m._config["keepdims"]),
                  **({} if axes is None else {"axes": axes}))


def _concat_constant(b, m, path, xs, vs, y):
    it, k, ins = iter(xs), 0, []
    for slot in m._config["slots"]:
        if slot is None:
            ins.append(next(it))
        else:
            ins.append(b.const(f"{path}.constant{k}", m._buffers[f"constant{k}"]))
            k += 1
    return b.node("Concat", ins, path, axis=m._config["axis"])


_WRITERS.update({_ox.FlattenAxis: _flatten_axis, _ox.Transpose: _transpose,
                 _ox.ReduceMean: _reduce_mean, _ox.ConcatConstant: _concat_constant})


def _axes_as_inputs(b, version: int) -> None:
    """From opset 18 ReduceMean takes its axes as an input, not an attribute."""
    if version < 18:
        return
    for node in b.nodes:
        attr = next((a for a in node.attribute if a.name == "axes"), None)
        if node.op_type == "ReduceMean" and attr is not None:
            node.input.append(b.ints(f"{node.name}.axes", list(attr.ints)))
            node.attribute.remove(attr)


def _groupnorm(b, m, path, xs, vs, y):
    """PyTorch's exporters' form, valid at every opset nbconv writes: Reshape to (N, G, -1),
    InstanceNormalization (statistics per group), Reshape back, then the per-channel affine
    as Mul and Add."""
    cfg = m._config
    G, C = cfg["num_groups"], cfg["num_channels"]
    x = xs[0]
    grouped = b.node("Reshape", [x, b.ints(f"{path}.groups", [0, G, -1])], f"{path}.group")
    normed = b.node("InstanceNormalization",
                    [grouped, b.const(f"{path}.ones", np.ones(G)),
                     b.const(f"{path}.zeros", np.zeros(G))], f"{path}.norm",
                    epsilon=cfg["eps"])
    # back to the traced shape with the batch copied (0): shape inference keeps every size
    out = b.node("Reshape", [normed, b.ints(f"{path}.shape", [0] + list(vs[0].shape[1:]))],
                 path if m.weight is None else f"{path}.ungroup")
    if m.weight is None:
        return out
    per_channel = (C,) + (1,) * (vs[0].ndim - 2)
    out = b.node("Mul", [out, b.const(f"{path}.weight", m.weight.data.reshape(per_channel))],
                 f"{path}.scale")
    return b.node("Add", [out, b.const(f"{path}.bias", m.bias.data.reshape(per_channel))],
                  path)


def _instancenorm(b, m, path, xs, vs, y):
    """InstanceNormalization; with tracked running statistics (which the exported, eval-mode
    layer normalises with) the per-channel affine of BatchNormalization."""
    cfg = m._config
    c = vs[0].shape[1]
    scale = m.weight.data if m.weight is not None else np.ones(c)
    shift = m.bias.data if m.bias is not None else np.zeros(c)
    ins = [xs[0], b.const(f"{path}.weight", scale), b.const(f"{path}.bias", shift)]
    if cfg["track_running_stats"]:
        ins += [b.const(f"{path}.running_mean", m._buffers["running_mean"]),
                b.const(f"{path}.running_var", m._buffers["running_var"])]
        return b.node("BatchNormalization", ins, path, epsilon=cfg["eps"])
    return b.node("InstanceNormalization", ins, path, epsilon=cfg["eps"])


def _layernorm(b, m, path, xs, vs, y):
    b.need_opset = max(b.need_opset, 17)  # LayerNormalization is new in opset 17
    shape = tuple(m.normalized_shape)
    scale = m.weight.data if m.weight is not None else np.ones(shape)
    ins = [xs[0], b.const(f"{path}.weight", scale)]
    if m.bias is not None:
        ins.append(b.const(f"{path}.bias", m.bias.data))
    return b.node("LayerNormalization", ins, path, axis=-len(shape), epsilon=m._config["eps"])


_WRITERS.update({_nn.GroupNorm: _groupnorm, _nn.InstanceNorm1d: _instancenorm,
                 _nn.InstanceNorm2d: _instancenorm, _nn.LayerNorm: _layernorm})


# -- nn.Upsample (and its fixed-mode forms) as Resize ------------------------------------------
def _resize_attrs(mode: str, align_corners) -> dict:
    """Resize attributes that place the samples where PyTorch's ``interpolate`` does."""
    if mode == "nearest":  # floor(i / scale)
        return dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
    if mode == "nearest-exact":  # floor((i + 0.5) / scale) = round half up of the centre
        return dict(mode="nearest", coordinate_transformation_mode="half_pixel",
                    nearest_mode="round_prefer_ceil")
    return dict(mode="linear", coordinate_transformation_mode="align_corners"
                if align_corners else "half_pixel")


def _upsample(b, m, path, xs, vs, y):
    cfg = m._args()
    mode, sf = cfg["mode"], cfg["scale_factor"]
    ins_, outs = vs[0].shape[2:], y.shape[2:]
    attrs = _resize_attrs(mode, cfg.get("align_corners"))
    # with align_corners PyTorch places the samples by the sizes alone, and Resize's
    # align_corners with scales divides by the unrounded ``in * scale``: write sizes
    if sf is not None and not cfg.get("recompute_scale_factor") and not cfg.get("align_corners"):
        sfs = [float(v) for v in (sf if isinstance(sf, (list, tuple)) else [sf] * len(ins_))]
        # PyTorch copies an axis whose size does not change, and its legacy nearest rule halves
        # the index of an axis that doubles, whatever the factor: Resize does that with the
        # factors 1 and 2
        eff = [1.0 if o == n else 2.0 if mode == "nearest" and o == 2 * n else s
               for n, o, s in zip(ins_, outs, sfs)]
        scales = b.const(f"{path}.scales", [1.0, 1.0] + eff, np.float32)
        return b.node("Resize", [xs[0], "", scales], path, **attrs)
    # explicit sizes: (N, C) read from the input when the graph runs, the spatial ones fixed
    nc_ = b.node("Slice", [b.node("Shape", xs[:1], f"{path}.shape"), b.ints(f"{path}.s0", [0]),
                           b.ints(f"{path}.s1", [2])], f"{path}.nc")
    sizes = b.node("Concat", [nc_, b.ints(f"{path}.hw", list(outs))], f"{path}.sizes", axis=0)
    return b.node("Resize", [xs[0], "", "", sizes], path, **attrs)


_WRITERS[_nn.Upsample] = _upsample


def _writer(m):
    for cls in type(m).__mro__:
        if cls in _WRITERS:
            return _WRITERS[cls]
    if type(m).__name__ == "Identity" and not m._params and not m._children:
        return _simple("Identity")
    return None


def _emit(b, module, path, ins):
    """Write ``module``'s nodes; ``ins`` are (ONNX name, traced value) pairs.  Returns the
    output's pair.  A module whose forward is recorded op by op (a PyTorch-style subclass)
    is traced into a ``Graph`` first (:mod:`nbconv.onnx._trace`)."""
    if _trace.is_traceable(module):
        if len(ins) != 1:
            raise ValueError(f"export: layer {path or '(the model)'!r} of type "
                             f"{type(module).__name__} takes {len(ins)} inputs; a traced "
                             "module must take one")
        return _emit(b, _trace.trace(module, ins[0][1]), path, ins)
    if isinstance(module, _nn.Sequential):
        cur = ins[0]
        for name, child in module._children.items():
            cur = _emit(b, child, f"{path}.{name}" if path else name, [cur])
        return cur
    if isinstance(module, _nn.Graph):
        env = {module.INPUT: ins[0]}
        paths = getattr(module, "_onnx_paths", {})  # a traced graph: the modules' paths
        for name, child, srcs in module.nodes:
            name_in_file = paths.get(name, name)
            env[name] = _emit(b, child, f"{path}.{name_in_file}" if path else name_in_file,
                              [env[s] for s in srcs])
        return env[module._output_name()]
    write = _writer(module)
    if write is None:
        raise ValueError(f"export: layer {path or '(the model)'!r} of type "
                         f"{type(module).__name__} has no ONNX counterpart; supported: "
                         f"{sorted(c.__name__ for c in _WRITERS)}, Sequential, Graph, and "
                         "Module subclasses without a hand-written backward (traced)")
    values = [v for _, v in ins]
    y = module.forward(*values)
    return write(b, module, path or type(module).__name__.lower(), [n for n, _ in ins],
                 values, y), y


def _model_dtype(model) -> np.dtype:
    for p in model.parameters():
        if p.data.dtype in (np.float32, np.float64):
            return np.dtype(p.data.dtype)
    return np.dtype(np.float32)


def _check_shape(model, input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"export: argument 'input_shape' must be a sequence of ints, got "
                        f"{input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"export: argument 'input_shape' must hold positive sizes, got {shape}")
    first = next((m for _, m in model.named_modules() if not m._children), None)
    # an unbatched (C, H, W) / (C, L) shape: export a batch of one, as the layers would run it
    if isinstance(first, (_nn.Conv2d, _nn.MaxPool2d, _nn.AvgPool2d)) and len(shape) == 3:
        shape = (1,) + shape
    elif isinstance(first, _nn.Conv1d) and len(shape) == 2:
        shape = (1,) + shape
    return shape


def _opset(onnx, opset, needed: int) -> int:
    top = onnx.defs.onnx_opset_version()
    if opset is None:
        return max(DEFAULT_OPSET, needed)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"export: argument 'opset' must be an int or None, got {opset!r}")
    if not MIN_OPSET <= opset <= top:
        raise ValueError(f"export: argument 'opset' must be in [{MIN_OPSET}, {top}] (this "
                         f"onnx {onnx.__version__}), got {opset}")
    if opset < needed:
        raise ValueError(f"export: the model needs opset >= {needed} (an operator it uses is "
                         "newer: circular padding is ONNX Pad mode 'wrap', new in opset 19; "
                         "LayerNorm is LayerNormalization, new in 17; HardSwish is new in 14, "
                         "Mish in 18, Gelu in 20, dilated AveragePool in 19), got "
                         f"opset={opset}")
    return int(opset)


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to a unique temporary file next to ``path``, fsync, then ``os.replace``:
    an existing file is never left half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def export(model, path, input_shape, opset=None, *, dynamic_batch=True):
    """Write ``model`` as an ONNX file that onnxruntime (or any ONNX runtime) can run.

    Parameters
    ----------
    model : nbconv.nn.Module
        A ``Sequential``/``Graph`` (nested freely) of nbconv layers: Conv2d/Conv1d (groups,
        dilation, padding ints/"same"/"valid"; the padding modes "reflect", "replicate",
        "circular" become a ``Pad`` node before the ``Conv``), MaxPool2d/AvgPool2d (ceil_mode,
        count_include_pad), AdaptiveAvgPool2d (``GlobalAveragePool``, an ``AveragePool``
        when the windows tile the input, else two ``MatMul`` with averaging matrices),
        GlobalAvgPool2d, Linear (``Gemm``; ``MatMul`` + ``Add`` on inputs of more than two
        axes), Flatten, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Dropout (the identity at
        inference), BatchNorm1d/2d (running statistics), LocalResponseNorm (odd sizes),
        Concat, Add, and the layers of :mod:`nbconv.onnx.layers`; MaxPool1d/AvgPool1d,
        AdaptiveAvgPool1d (as its 2-D form), GlobalMaxPool2d (``GlobalMaxPool``),
        AdaptiveMaxPool1d/2d (``GlobalMaxPool``, or ``MaxPool`` when the windows tile the
        input: ONNX has no adaptive max pooling), Dropout1d/Dropout2d (the identity);
        GroupNorm (PyTorch's Reshape/InstanceNormalization/Reshape/Mul/Add),
        InstanceNorm1d/2d (InstanceNormalization; BatchNormalization with tracked running
        statistics), LayerNorm (LayerNormalization, opset >= 17); PReLU, ELU, SELU, CELU,
        GELU (``Gelu``, opset 20), SiLU (``Sigmoid`` and ``Mul``), Mish (opset 18),
        Hardswish (opset 14), Hardsigmoid, ReLU6 (``Clip``), Softplus (``beta`` as ``Mul``
        and ``Div``; ONNX's has no linear region, within ``exp(-threshold)`` of PyTorch's).

        Or a PyTorch-style ``Module`` subclass whose ``forward`` has no hand-written
        ``backward`` (anywhere in the model, e.g. the blocks of a ``Sequential``): its
        forward pass is recorded once on zeros and rebuilt as a ``Graph`` (see Notes).
    path : str or os.PathLike
        Written atomically (temporary file, fsync, rename): an existing file is replaced
        whole or not at all.
    input_shape : tuple of int
        The input the model is traced with, batch included: ``(N, C, H, W)`` (or
        ``(N, C, L)``, ``(N, features)``).  ``(C, H, W)`` for a model that starts with a
        convolution or pool means one image.  H and W are fixed in the file.
    opset : int, optional
        ONNX opset of the default domain, in [13, the installed onnx's newest]; default 17
        (19 when the model has circular padding).
    dynamic_batch : bool, default True
        Name the batch axis ``"N"`` in the file so that any batch size runs.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        For a layer with no ONNX form, naming it (its path in the model) and its type, or an
        invalid ``input_shape``/``opset``; also when the model cannot run on ``input_shape``.
        For a traced forward pass: an operation with no ONNX form (naming it and what to
        do), several outputs, or a path that depends on the input's values.

    Notes
    -----
    The model runs forward once on zeros of ``input_shape`` in eval mode inside
    :func:`nbconv.no_grad` (its mode is restored afterwards); the file is checked with
    ``onnx.checker.check_model(full_check=True)`` before it is written -- without the shape
    inference part (and with the output's sizes after the batch left open) when a
    ``ceil_mode`` pool drops a last window that would start in the padding: PyTorch's rule,
    which onnxruntime follows and ONNX's shape inference does not.  Initialiser names
    are the state-dict keys (``"0.weight"``, ``"1.0.bn1.running_mean"``).  Float64 models
    export as DOUBLE tensors.

    A traced forward pass (a subclass without ``backward``) becomes one graph node per
    module call -- a module called several times (one ``ReLU``, one pool) is written once
    per call -- and per operation: ``nc.relu``/``nc.sigmoid``/``nc.tanh``/``nc.softmax``/
    ``nc.log_softmax``, the functional pools, ``nc.conv2d``/``nc.linear``/``nc.batch_norm``
    with parameter weights, ``a + b`` and ``out += identity`` (``Add``), ``-``, ``*``, ``/``,
    ``@`` (with a constant operand, such as ``0.5 * x`` or a parameter, or between two
    computed arrays), ``nc.cat``/``np.concatenate``/``np.stack``, ``reshape(N, -1)`` and
    ``nc.flatten`` (``Flatten``), other reshapes, transposes, basic slicing (``x[:, :16]``),
    ``sum`` and ``mean``.  Sizes are those of the traced input, the batch axis kept open.
    The graph is checked against the model on a random input before anything is written,
    so that a forward pass whose path depends on its input's values (an ``if`` on them)
    raises rather than giving a file that computes something else.
    """
    onnx = _deps.onnx()
    if not isinstance(model, _nn.Module):
        raise TypeError(f"export: argument 'model' must be an nbconv.nn.Module, got "
                        f"{type(model).__name__}")
    shape = _check_shape(model, input_shape)
    dtype = _model_dtype(model)
    b = _Builder(onnx, dtype)
    b.names.add("input")
    modes = [(m, m.training) for _, m in model.named_modules()]
    model.eval()
    try:
        with _nn.no_grad():
            out, y = _emit(b, model, "", [("input", np.zeros(shape, dtype))])
    finally:
        for m, mode in modes:
            m.training = mode
    if out == "input":
        out = b.node("Identity", ["input"], "identity")
    # the graph output is called "output"
    for node in b.nodes:
        for field in (node.input, node.output):
            renamed = ["output" if v == out else v for v in field]
            del field[:]
            field.extend(renamed)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    batch = "N" if dynamic_batch else shape[0]
    y = np.asarray(y)
    inp = onnx.helper.make_tensor_value_info("input", elem, [batch, *shape[1:]])
    out_shape = ([batch, *y.shape[1:]] if y.ndim and y.shape[0] == shape[0]
                 else list(y.shape))
    if b.shapes_disagree:
        out_shape = [out_shape[0]] + [None] * (len(out_shape) - 1)
    outp = onnx.helper.make_tensor_value_info("output", elem, out_shape)
    version = _opset(onnx, opset, b.need_opset)
    _axes_as_inputs(b, version)
    graph = onnx.helper.make_graph(b.nodes, type(model).__name__, [inp], [outp], b.inits)
    opsets = [onnx.helper.make_opsetid("", version)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="nbconv",
                                   producer_version=__version__)
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    # full_check adds ONNX shape inference, which gets the pools noted above wrong
    onnx.checker.check_model(proto, full_check=not b.shapes_disagree)
    path = os.fspath(path)
    _atomic_write(path, proto.SerializeToString())
    return path



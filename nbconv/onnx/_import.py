"""ONNX file -> trainable nbconv ``Graph``.

The file is parsed as protobuf data and checked with ``onnx.checker``; nothing in it is run
(no custom op, no Python).  Every node becomes an nbconv layer, or folds into one: a ``Pad``
into the ``Conv`` after it (padding mode), an ``Add`` of a constant into the ``MatMul``/``Conv``
before it (bias), ``Constant``/``Shape``/``Gather``/``Unsqueeze``/``Concat`` chains that only
compute a reshape target into that target; PyTorch's ``LocalResponseNorm`` node chains into one
layer (:mod:`._patterns`).
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter

import numpy as np

from .. import nn as _nn
from ..io import FormatError
from . import _deps
from . import layers as _ox
from ._patterns import GROUP_NORM, TORCH_LRN, fuse_group_norm, fuse_torch_lrn

__all__ = ["load", "UnsupportedOpError"]


class UnsupportedOpError(ValueError, NotImplementedError):
    """An ONNX node (or graph feature) nbconv cannot import.

    Attributes
    ----------
    node : str
        The node's name (``"#i"``, its position, when it has none).
    op_type : str
        Its operator type, e.g. ``"Resize"``.
    """

    def __init__(self, node: str, op_type: str, reason: str):
        self.node, self.op_type, self.reason = node, op_type, reason
        super().__init__(f"ONNX node {node!r} (op type {op_type!r}): {reason}")


# a batch size that a Shape node reads from a symbolic (or copied) batch axis; kept through
# Gather/Concat/Unsqueeze and turned into Reshape's "copy this axis" 0
_BATCH = np.int64(np.iinfo(np.int64).min + 1)
_PAD_MODES = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _label(node, index: int) -> str:
    return node.name if node.name else f"#{index}"


class _Importer:
    def __init__(self, onnx, model, path: str):
        self.onnx, self.path = onnx, path
        g = model.graph
        self.graph = g
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          None)
        if self.opset is None:
            raise FormatError(path, "the model imports no default-domain ('ai.onnx') opset")
        try:
            self.consts = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
        except Exception as e:  # a tensor whose bytes do not match its type and shape
            raise FormatError(path, f"unreadable initializer ({e})") from e
        inputs = [v for v in g.input if v.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UnsupportedOpError(
                "(graph)", "-", f"nbconv imports graphs with one input and one output; this "
                f"one has inputs {[v.name for v in inputs]} and outputs "
                f"{[v.name for v in g.output]}")
        self.input = inputs[0].name
        tt = inputs[0].type.tensor_type
        np_type = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}
        if tt.elem_type not in np_type:
            raise UnsupportedOpError(
                "(graph)", "-", f"input {self.input!r} has element type "
                f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; nbconv runs FLOAT and DOUBLE")
        self.dtype = np.dtype(np_type[tt.elem_type])
        self.shapes = self._infer_shapes(model)
        dims = self.shapes.get(self.input)
        self.batch = dims[0] if dims else None  # the static batch size the file was made with
        self.output = g.output[0].name
        self._prefold()
        self.node_list = fuse_torch_lrn(onnx, g, self.consts)
        self.node_list = fuse_group_norm(onnx, self.node_list, [o.name for o in g.output],
                                         self.consts, self.shapes)
        self.synthetic = {id(n) for n in self.node_list if n.op_type in (TORCH_LRN, GROUP_NORM)}
        self.uses = Counter(v for n in self.node_list for v in n.input if v)
        self.uses[self.output] += 1
        self.env = {self.input: _nn.Graph.INPUT}  # ONNX value -> nbconv node
        self.nodes: dict[str, list] = {}          # nbconv node -> [module, sources]

    def attrs(self, node) -> dict:
        out = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                for k, v in out.items()}

    def _prefold(self) -> None:
        """Fold the nodes that compute constants from constants (so that patterns can read
        them); the walk folds them again, and reports any that fail."""
        for i, node in enumerate(self.graph.node):
            fold = _FOLDERS.get(node.op_type)
            if fold is None or node.op_type == "Shape" or not all(
                    not v or v in self.consts for v in node.input):
                continue
            self.node, self.label = node, _label(node, i)
            try:
                fold(self, node, self.attrs(node))
            except Exception:  # reported by the walk
                pass

    def _infer_shapes(self, model) -> dict:
        """Value name -> tuple of int (None where symbolic), from ONNX shape inference."""
        onnx = self.onnx
        try:
            # data propagation: sizes computed by Shape nodes (PyTorch's GroupNorm chain
            # reshapes to Shape(x)) stay known downstream
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # shapes are a help, not a requirement
            inferred = model
        g = inferred.graph
        out = {}
        for v in list(g.input) + list(g.value_info) + list(g.output):
            t = v.type.tensor_type
            if t.HasField("shape"):
                out[v.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                    for d in t.shape.dim)
        return out

    # -- helpers for the converters -----------------------------------------------------------
    def rank(self, value: str):
        s = self.shapes.get(value)
        return None if s is None else len(s)

    def const(self, value: str):
        return self.consts.get(value) if value else None

    def source(self, value: str) -> str:
        if value in self.consts:
            raise self.fail(f"input {value!r} is a constant where nbconv needs a computed "
                            "tensor")
        return self.env[value]

    def fail(self, reason: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.label, self.node.op_type, reason)

    def needs_const(self, value: str, what: str) -> np.ndarray:
        if value not in self.consts:
            raise self.fail(f"its {what} ({value!r}) must be a constant initializer")
        return self.consts[value]

    def add(self, module, *sources: str, suffix: str = "") -> str:
        base = re.sub(r"\W", "_", self.node.name or self.node.op_type).strip("_") or "node"
        base = (base + suffix) if base != _nn.Graph.INPUT else f"{base}_{suffix or 'node'}"
        name, i = base, 1
        while name in self.nodes or name == _nn.Graph.INPUT:
            name, i = f"{base}_{i}", i + 1
        self.nodes[name] = [module, list(sources)]
        return name

    def emit(self, module, *sources: str) -> None:
        """Add ``module`` as the node computing this ONNX node's (first) output."""
        self.env[self.node.output[0]] = self.add(module, *sources)

    def alias(self, value: str) -> None:
        if value in self.consts:
            self.consts[self.node.output[0]] = self.consts[value]
        else:
            self.env[self.node.output[0]] = self.env[value]

    def sole_producer(self, value: str, *types):
        """The nbconv node computing ``value`` if it has one of ``types`` and nothing else uses
        ``value`` (so it may be merged into its consumer), else None."""
        name = self.env.get(value)
        if name is None or name == _nn.Graph.INPUT or self.uses[value] != 1:
            return None
        return name if isinstance(self.nodes[name][0], types) else None

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> _nn.Graph:
        for i, node in enumerate(self.node_list):
            self.node, self.label = node, _label(node, i)
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(f"operator domain {node.domain!r} is not supported (only the "
                                "default ONNX domain)")
            for extra in node.output[1:]:
                if extra and self.uses[extra]:
                    raise self.fail(f"its output {extra!r} is used; nbconv layers compute only "
                                    "the first output")
            attrs = self.attrs(node)
            convert = _CONVERTERS.get(node.op_type)
            if id(node) in self.synthetic:
                convert = _torch_lrn if node.op_type == TORCH_LRN else _fused_group_norm
            if node.op_type in _FOLDERS and (node.op_type == "Shape" or all(
                    not v or v in self.consts for v in node.input)):
                convert = _FOLDERS[node.op_type]
            if convert is None:
                raise self.fail(f"operator {node.op_type!r} is not supported; nbconv imports "
                                f"{sorted(set(_CONVERTERS) | set(_FOLDERS))}")
            try:
                convert(self, node, attrs)
            except (UnsupportedOpError, FormatError):
                raise
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise self.fail(f"cannot be converted: {e}") from e
        out = self.output
        if out in self.consts:
            raise UnsupportedOpError("(graph)", "-", f"the output {out!r} is a constant")
        if self.env[out] == _nn.Graph.INPUT:  # the identity model: one pass-through node
            self.node = self.graph.output[0]
            self.env[out] = self.add(_nn.Flatten(0, 0), _nn.Graph.INPUT, suffix="identity")
        g = _nn.Graph(output=self.env[out])
        for name, (module, sources) in self.nodes.items():
            if module is not None:
                g.add(name, module, *sources)
        return g.eval()


# -- converters: (importer, node, attributes) ---------------------------------------------------
def _set(param, value):
    param.data[...] = np.asarray(value).reshape(param.data.shape)


def _conv(im, node, attrs):
    w = im.needs_const(node.input[1], "weight")
    b = im.const(node.input[2]) if len(node.input) > 2 else None
    if len(node.input) > 2 and node.input[2] and b is None:
        raise im.fail(f"its bias ({node.input[2]!r}) must be a constant initializer")
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise im.fail(f"{nd}-D convolutions are not supported (weight shape {w.shape})")
    k = tuple(w.shape[2:])
    if tuple(attrs.get("kernel_shape", k)) != k:
        raise im.fail(f"kernel_shape {attrs['kernel_shape']} does not match the weight "
                      f"shape {w.shape}")
    stride = tuple(attrs.get("strides", [1] * nd))
    dil = tuple(attrs.get("dilations", [1] * nd))
    groups = int(attrs.get("group", 1))
    pads = list(attrs.get("pads", [0] * 2 * nd))
    begin, end = pads[:nd], pads[nd:]
    auto = attrs.get("auto_pad", "NOTSET")
    same = False
    if auto == "SAME_UPPER":
        same = True
    elif auto == "SAME_LOWER":
        if any(s != 1 for s in stride) or any(d * (n - 1) % 2 for d, n in zip(dil, k)):
            raise im.fail("auto_pad SAME_LOWER is supported only where it pads symmetrically "
                          "(stride 1, odd effective kernel)")
        same = True
    elif auto == "VALID":
        begin = end = [0] * nd
    elif auto != "NOTSET":
        raise im.fail(f"unknown auto_pad {auto!r}")
    src = im.source(node.input[0])
    mode = "zeros"
    pad_node = None if same else im.sole_producer(node.input[0], _ox.Pad)
    if pad_node is not None:  # fold Pad -> Conv into the convolution's padding
        pad = im.nodes[pad_node][0]._config
        spatial = pad["pads"][2:]
        if (len(pad["pads"]) == nd + 2 and pad["pads"][0] == pad["pads"][1] == [0, 0]
                and all(bf == af for bf, af in spatial)):
            extra = [bf for bf, _ in spatial]
            if pad["mode"] == "constant" and pad["value"] == 0.0:
                begin = [p + e for p, e in zip(begin, extra)]
                end = [p + e for p, e in zip(end, extra)]
            elif pad["mode"] in _PAD_MODES and not any(begin + end):
                mode, begin, end = _PAD_MODES[pad["mode"]], extra, list(extra)
            else:
                pad_node = None
            if pad_node is not None:
                src = im.nodes[pad_node][1][0]
                im.nodes[pad_node][0] = None  # folded
        else:
            pad_node = None
    if same:
        padding = "same"
    elif begin == end:
        padding = tuple(begin)
    else:  # asymmetric zero padding: a Pad layer of its own, then an unpadded convolution
        padding = (0,) * nd
        src = im.add(_ox.Pad([[0, 0], [0, 0]] + [[b_, e_] for b_, e_ in zip(begin, end)]),
                     src, suffix="_pad")
    cls = _nn.Conv2d if nd == 2 else _nn.Conv1d
    one = (lambda t: t) if nd == 2 else (lambda t: t if isinstance(t, str) else t[0])
    conv = cls(w.shape[1] * groups, w.shape[0], one(k), stride=one(stride),
               padding=one(padding), dilation=one(dil), groups=groups, bias=b is not None,
               padding_mode=mode, dtype=im.dtype)
    _set(conv.weight, w)
    if b is not None:
        _set(conv.bias, b)
    im.emit(conv, src)


def _conv_transpose(im, node, attrs):
    """ConvTranspose as ``nn.ConvTranspose2d``/``1d``: ONNX's pads (begin, end) and
    output_padding are nbconv's ``padding = begin`` and ``output_padding = output_padding +
    begin - end`` (a Slice crops the end where that is negative); ``output_shape`` and
    ``auto_pad`` SAME_* set the pads from the input size (ONNX's reference rule, the larger
    half first unless SAME_UPPER)."""
    w = im.needs_const(node.input[1], "weight")
    b = im.const(node.input[2]) if len(node.input) > 2 else None
    if len(node.input) > 2 and node.input[2] and b is None:
        raise im.fail(f"its bias ({node.input[2]!r}) must be a constant initializer")
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise im.fail(f"{nd}-D transposed convolutions are not supported (weight shape "
                      f"{w.shape})")
    k = tuple(w.shape[2:])
    if tuple(attrs.get("kernel_shape", k)) != k:
        raise im.fail(f"kernel_shape {attrs['kernel_shape']} does not match the weight "
                      f"shape {w.shape}")
    stride = tuple(attrs.get("strides", [1] * nd))
    dil = tuple(attrs.get("dilations", [1] * nd))
    groups = int(attrs.get("group", 1))
    out_pad = list(attrs.get("output_padding", [0] * nd))
    pads = list(attrs.get("pads", [0] * 2 * nd))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise im.fail(f"unknown auto_pad {auto!r}")
    if auto == "VALID":
        pads = [0] * 2 * nd
    shape = list(attrs.get("output_shape", []))[-nd:]
    if shape or auto.startswith("SAME"):
        size = im.shapes.get(node.input[0])
        if size is None or len(size) != nd + 2 or None in size[2:]:
            raise im.fail("output_shape and auto_pad SAME_* need the input's spatial size, "
                          "which shape inference did not give")
        size = size[2:]
        shape = shape or [n * s for n, s in zip(size, stride)]
        total = [s * (n - 1) + o + d * (kk - 1) + 1 - t
                 for n, s, o, d, kk, t in zip(size, stride, out_pad, dil, k, shape)]
        first = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        pads = first + [t - f for t, f in zip(total, first)]
    begin, end = pads[:nd], pads[nd:]
    extra = [o + bg - e for o, bg, e in zip(out_pad, begin, end)]
    # a larger end padding (SAME_UPPER's odd pixel) crops the end: a Slice after the layer
    crop = [(2 + i, e) for i, e in enumerate(extra) if e < 0]
    extra = [max(e, 0) for e in extra]
    if min(begin) < 0 or any(e >= s and e >= d for e, s, d in zip(extra, stride, dil)):
        raise im.fail(f"pads {pads} with output_padding {out_pad} are not supported: nbconv "
                      "pads both ends alike and adds output_padding (smaller than the stride "
                      "or the dilation) at the end")
    cls = _nn.ConvTranspose2d if nd == 2 else _nn.ConvTranspose1d
    one = (lambda t: tuple(t)) if nd == 2 else (lambda t: t[0])
    layer = cls(w.shape[0], w.shape[1] * groups, one(k), stride=one(stride),
                padding=one(begin), output_padding=one(extra), groups=groups,
                bias=b is not None, dilation=one(dil), dtype=im.dtype)
    _set(layer.weight, w)
    if b is not None:
        _set(layer.bias, b)
    if not crop:
        im.emit(layer, im.source(node.input[0]))
        return
    name = im.add(layer, im.source(node.input[0]))
    axes, ends = [a for a, _ in crop], [e for _, e in crop]
    im.env[node.output[0]] = im.add(_ox.Slice([0] * len(axes), ends, axes), name,
                                    suffix="_crop")


def _linear_from(im, weight, bias, source):
    lin = _nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=im.dtype)
    _set(lin.weight, weight)
    if bias is not None:
        _set(lin.bias, np.broadcast_to(np.asarray(bias).reshape(-1), (weight.shape[0],)))
    im.emit(lin, source)


def _gemm(im, node, attrs):
    """``alpha * A' B' + beta * C`` (``'`` a transpose where transA/transB ask for one): with a
    constant B, a Linear layer (after a Transpose for transA) whose bias is C where C is one
    value per output; with a constant A, a product with the fixed matrix on the left; any
    other C is added after (a constant broadcast, or a computed tensor of the output's
    shape, scaled by beta)."""
    a, b = node.input[0], node.input[1]
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    if (a in im.consts) == (b in im.consts):
        raise im.fail("exactly one of A and B must be a constant (a product of two computed "
                      "tensors is not supported)")
    x, trans, const = (a, ta, im.consts[b]) if b in im.consts else (b, tb, im.consts[a])
    if const.ndim != 2:
        raise im.fail(f"the constant operand must be 2-D, got shape {const.shape}")
    if im.rank(x) not in (2, None):
        raise im.fail(f"the computed operand must be 2-D, got rank {im.rank(x)}")
    c_name = node.input[2] if len(node.input) > 2 else ""
    c = im.consts.get(c_name) if c_name else None
    computed_c = bool(c_name) and c is None
    src = im.source(x)
    if trans:
        src = im.add(_ox.Transpose([1, 0]), src, suffix="_transposed")
    last = not c_name or beta == 0.0  # (beta 0: C does not count)
    if x == a:  # x @ B': a fully-connected layer, weight (outputs, features)
        weight = (const if tb else const.T) * alpha
        n = weight.shape[0]
        bias = None
        if c is not None and not last and c.size in (1, n) and (c.ndim < 2 or c.shape[0] == 1):
            bias, last = np.broadcast_to(np.asarray(c).reshape(-1) * beta, (n,)), True
        layer = _nn.Linear(weight.shape[1], n, bias=bias is not None, dtype=im.dtype)
        _set(layer.weight, weight)
        if bias is not None:
            _set(layer.bias, bias)
    else:  # A' @ x: a fixed matrix on the left
        m = (const.T if ta else const) * alpha
        layer = _ox.MatMul(m.shape, side="left", dtype=im.dtype)
        layer._buffers["matrix"][...] = m
    if last:
        im.emit(layer, src)
        return
    out = im.add(layer, src, suffix="_product")
    if not computed_c:
        _constant_operand(im, "add", np.asarray(c) * beta, "right", node.output[0], out)
        return
    shapes = im.shapes.get(c_name), im.shapes.get(node.output[0])
    if None in shapes or None in shapes[0] or tuple(shapes[0]) != tuple(shapes[1]):
        raise im.fail(f"a computed C must have the output's static shape; C has shape "
                      f"{shapes[0]}, the output {shapes[1]}")
    c_src = im.source(c_name)
    if beta != 1.0:
        scale = _ox.Arithmetic("mul", (), dtype=im.dtype)
        scale._buffers["constant"][...] = beta
        c_src = im.add(scale, c_src, suffix="_beta")
    im.emit(_nn.Add(), out, c_src)


def _matmul(im, node, attrs):
    a, b = node.input[0], node.input[1]
    for x, v, side in ((a, b, "right"), (b, a, "left")):
        if v in im.consts and x not in im.consts and im.consts[v].ndim == 1:
            # a vector operand: the product with it as a one-column (one-row) matrix, then
            # that axis dropped, as numpy.matmul does
            rank = im.rank(x)
            if rank is None:
                raise im.fail("a product with a 1-D constant needs the rank of the other "
                              "operand (unknown to ONNX shape inference)")
            m = im.consts[v][:, None] if side == "right" else im.consts[v][None, :]
            layer = _ox.MatMul(m.shape, side=side, dtype=im.dtype)
            layer._buffers["matrix"][...] = m
            src = im.add(layer, im.source(x), suffix="_product")
            im.emit(_ox.Squeeze([-2] if side == "left" and rank >= 2 else [-1]), src)
            return
    if b in im.consts and a not in im.consts:
        m = im.consts[b]
        # x @ W on (N, F) or (N, L, F) is a fully-connected layer; on an (N, C, H, W) feature
        # map it is a fixed linear map along W (how nbconv exports adaptive average pools)
        if m.ndim == 2 and im.rank(a) in (2, 3, None):
            _linear_from(im, m.T, None, im.source(a))
            return
        side, x = "right", a
    elif a in im.consts and b not in im.consts:
        m, side, x = im.consts[a], "left", b
    else:
        raise im.fail("a product of two computed tensors is not supported (one operand must "
                      "be a constant)")
    if m.ndim < 2:
        raise im.fail(f"the constant operand must have >= 2 axes, got shape {m.shape}")
    layer = _ox.MatMul(m.shape, side=side, dtype=im.dtype)
    layer._buffers["matrix"][...] = m
    im.emit(layer, im.source(x))


def _add(im, node, attrs):
    ins = [v for v in node.input if v]
    consts = [v for v in ins if v in im.consts]
    if not consts:
        if len(ins) == 1:
            im.alias(ins[0])
        else:
            im.emit(_nn.Add(), *[im.source(v) for v in ins])
        return
    computed = [v for v in ins if v not in im.consts]
    if len(ins) != 2 or len(consts) != 1:
        _sum_with_constants(im, node, computed, consts)
        return
    c = im.consts[consts[0]]
    x = computed[0]
    prev = im.sole_producer(x, _nn.Linear, _nn.Conv2d, _nn.Conv1d)
    layer = None if prev is None else im.nodes[prev][0]
    if layer is not None and layer.bias is None:
        n = layer.weight.data.shape[0]
        # one value per output channel, broadcast along every other axis and no further
        target = (1, n) + (1,) * (layer.weight.data.ndim - 2)
        try:
            fits = np.broadcast_shapes(c.shape, target) == target
        except ValueError:
            fits = False
        if fits:
            if isinstance(layer, _nn.Linear):
                new = _nn.Linear(layer.weight.data.shape[1], n, bias=True, dtype=im.dtype)
            else:
                new = type(layer)(**{**layer._config, "bias": True}, dtype=im.dtype)
            _set(new.weight, layer.weight.data)
            _set(new.bias, np.broadcast_to(c.reshape(-1), (n,)))
            im.nodes[prev][0] = new
            im.env[node.output[0]] = prev
            return
    _constant_operand(im, "add", c, "right", x, im.source(x))


def _sum_with_constants(im, node, computed, consts):
    """Sum (or Add) of computed tensors and constants: the constants added into one, then
    ``Add`` of the computed tensors (same shapes) and an ``Arithmetic`` add."""
    if not computed:
        raise im.fail("a sum of constants only")  # (folded before the walk)
    shapes = [im.shapes.get(v) for v in computed]
    if len(computed) > 1 and None not in shapes and any(
            not _broadcasts(shapes[0], sh, equal=True) for sh in shapes[1:]):
        raise im.fail(f"the computed operands have shapes {shapes}; nbconv adds computed "
                      "tensors of one shape")
    c = functools.reduce(np.add, [np.asarray(im.consts[v], im.dtype) for v in consts])
    src = im.source(computed[0])
    if len(computed) > 1:
        src = im.add(_nn.Add(), *[im.source(v) for v in computed], suffix="_computed")
    _constant_operand(im, "add", c, "right", computed[0], src)


def _broadcasts(shape, other, equal=False) -> bool:
    """Whether ``other`` broadcasts against ``shape`` as NumPy does (``equal``: whether the
    two are the same shape); None (a size unknown to shape inference) matches anything."""
    if equal and len(shape) != len(other):
        return False
    for a, b in zip(reversed(shape), reversed(other)):
        if a is None or b is None or a == b or (not equal and 1 in (a, b)):
            continue
        return False
    return True


def _constant_operand(im, op, c, side, x, src):
    """``x op c`` (or ``c op x``) as an Arithmetic layer reading node ``src``; refused at load
    where the known shape of ``x`` does not broadcast with ``c``."""
    shape = im.shapes.get(x)
    if shape is not None and not _broadcasts(shape, c.shape):
        raise im.fail(f"the constant of shape {c.shape} does not broadcast with the input "
                      f"{x!r} of shape {shape}")
    layer = _ox.Arithmetic(op, c.shape, side=side, dtype=im.dtype)
    layer._buffers["constant"][...] = c
    im.emit(layer, src)


def _arithmetic(im, node, attrs):
    """A binary node with one constant operand: an Arithmetic layer."""
    a, b = node.input[0], node.input[1]
    if (a in im.consts) == (b in im.consts):
        raise im.fail(f"{node.op_type} of two computed tensors is not supported (one operand "
                      "must be a constant)")
    c, side, x = (im.consts[b], "right", a) if b in im.consts else (im.consts[a], "left", b)
    _constant_operand(im, node.op_type.lower(), c, side, x, im.source(x))


def _simple(factory):
    def convert(im, node, attrs):
        im.emit(factory(attrs), im.source(node.input[0]))
    return convert


def _softmax(im, node, attrs):
    axis = int(attrs.get("axis", -1 if im.opset >= 13 else 1))
    rank = im.rank(node.input[0])
    if im.opset < 13 and (rank is None or axis % rank != rank - 1):
        raise im.fail(f"{node.op_type} before opset 13 normalises over all axes from {axis} "
                      "on; supported only when that is the last axis")
    layer = _nn.Softmax if node.op_type == "Softmax" else _ox.LogSoftmax
    im.emit(layer(dim=axis), im.source(node.input[0]))


def _scalar(im, value, what):
    if not value:
        return None
    v = im.needs_const(value, what)
    if v.size != 1:
        raise im.fail(f"its {what} must be a scalar, got shape {v.shape}")
    return float(v.reshape(()))


def _clip(im, node, attrs):
    if im.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo = _scalar(im, node.input[1] if len(node.input) > 1 else "", "min")
        hi = _scalar(im, node.input[2] if len(node.input) > 2 else "", "max")
    lo = None if lo is None or lo <= -3.4e38 else lo
    hi = None if hi is None or hi >= 3.4e38 else hi
    layer = (_nn.ReLU() if lo == 0.0 and hi is None
             else _nn.ReLU6() if (lo, hi) == (0.0, 6.0) else _ox.Clip(lo, hi))
    im.emit(layer, im.source(node.input[0]))


def _dropout(im, node, attrs):
    if im.opset < 12:
        p = float(attrs.get("ratio", 0.5))
    else:
        p = _scalar(im, node.input[1] if len(node.input) > 1 else "", "ratio")
        p = 0.5 if p is None else p
        mode = _scalar(im, node.input[2] if len(node.input) > 2 else "", "training_mode")
        if mode:
            raise im.fail("training_mode=True is not supported (an inference graph)")
    im.emit(_nn.Dropout(p), im.source(node.input[0]))


def _batchnorm(im, node, attrs):
    if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
        raise im.fail("only inference-mode, spatial batch normalisation is supported")
    scale, bias, mean, var = (im.needs_const(v, what) for v, what in
                              zip(node.input[1:5], ("scale", "B", "mean", "var")))
    rank = im.rank(node.input[0])
    if rank not in (2, 3, 4):
        raise im.fail(f"input rank {rank} is not supported (2, 3 or 4 axes)")
    cls = _nn.BatchNorm2d if rank == 4 else _nn.BatchNorm1d
    bn = cls(scale.size, eps=float(attrs.get("epsilon", 1e-5)),
             momentum=1.0 - float(attrs.get("momentum", 0.9)), dtype=im.dtype)
    _set(bn.weight, scale)
    _set(bn.bias, bias)
    bn._buffers["running_mean"][...] = mean.reshape(-1)
    bn._buffers["running_var"][...] = var.reshape(-1)
    im.emit(bn, im.source(node.input[0]))


def _lrn(im, node, attrs):
    size = int(attrs["size"])
    if size % 2 == 0:
        raise im.fail(f"even size {size} is not supported: ONNX centres even windows one "
                      "channel later than PyTorch's LocalResponseNorm")
    im.emit(_nn.LocalResponseNorm(size, alpha=float(attrs.get("alpha", 1e-4)),
                                  beta=float(attrs.get("beta", 0.75)),
                                  k=float(attrs.get("bias", 1.0))),
            im.source(node.input[0]))


def _torch_lrn(im, node, attrs):
    """PyTorch's LocalResponseNorm, recognised by :func:`._patterns.fuse_torch_lrn`."""
    im.emit(_nn.LocalResponseNorm(int(attrs["size"]), alpha=attrs["alpha"], beta=attrs["beta"],
                                  k=attrs["bias"]), im.source(node.input[0]))


def _pool_args(im, attrs):
    """PyTorch-style pool arguments for this node, or None where only ONNX's pooling layers
    (:class:`nbconv.onnx.layers.MaxPool`/``AveragePool``) express it."""
    k = list(attrs["kernel_shape"])
    nd = len(k)
    if nd not in (1, 2):
        raise im.fail(f"only 1-D and 2-D pooling is supported, got kernel_shape {k} (3-D "
                      "pooling is outside nbconv's CNN subset)")
    auto = attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        return None
    pads = [0] * 2 * nd if auto == "VALID" else list(attrs.get("pads", [0] * 2 * nd))
    if pads[:nd] != pads[nd:] or any(2 * p > n for p, n in zip(pads, k)):
        return None  # asymmetric, or more than half the kernel: PyTorch's pools refuse
    return dict(kernel_size=tuple(k), stride=tuple(attrs.get("strides", [1] * nd)),
                padding=tuple(pads[:nd]), ceil_mode=bool(attrs.get("ceil_mode", 0)))


def _onnx_pool(im, node, attrs, cls, **extra):
    """The node as an ONNX pooling layer (its attributes as they are)."""
    keys = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad")
    im.emit(cls(**{k: attrs[k] for k in keys if k in attrs}, **extra),
            im.source(node.input[0]))


def _maxpool(im, node, attrs):
    args = _pool_args(im, attrs)
    if args is None:
        _onnx_pool(im, node, attrs, _ox.MaxPool)
        return
    nd = len(args["kernel_size"])
    cls = _nn.MaxPool1d if nd == 1 else _nn.MaxPool2d
    im.emit(cls(dilation=tuple(attrs.get("dilations", [1] * nd)), **args),
            im.source(node.input[0]))


def _avgpool(im, node, attrs):
    args = _pool_args(im, attrs)
    include = bool(attrs.get("count_include_pad", 0))
    if args is None or any(d != 1 for d in attrs.get("dilations", [])):
        _onnx_pool(im, node, attrs, _ox.AveragePool, count_include_pad=include)
        return
    cls = _nn.AvgPool1d if len(args["kernel_size"]) == 1 else _nn.AvgPool2d
    im.emit(cls(count_include_pad=include, **args), im.source(node.input[0]))


def _gap(im, node, attrs):
    rank = im.rank(node.input[0])
    if rank == 3:  # (N, C, L)
        im.emit(_nn.AdaptiveAvgPool1d(1), im.source(node.input[0]))
        return
    if rank not in (4, None):
        raise im.fail("only 3-D (N, C, L) and 4-D (N, C, H, W) inputs are supported")
    im.emit(_nn.GlobalAvgPool2d(), im.source(node.input[0]))


def _gmp(im, node, attrs):
    rank = im.rank(node.input[0])
    if rank == 3:  # (N, C, L)
        im.emit(_nn.AdaptiveMaxPool1d(1), im.source(node.input[0]))
        return
    if rank not in (4, None):
        raise im.fail("only 3-D (N, C, L) and 4-D (N, C, H, W) inputs are supported")
    im.emit(_nn.GlobalMaxPool2d(), im.source(node.input[0]))


def _reduce_mean(im, node, attrs):
    if im.opset < 18 or len(node.input) < 2:
        axes = attrs.get("axes")
    else:
        axes = im.needs_const(node.input[1], "axes").reshape(-1).tolist() if node.input[1] \
            else None
    axes = None if axes is None or len(axes) == 0 else [int(a) for a in axes]
    if axes is None and attrs.get("noop_with_empty_axes", 0):
        im.alias(node.input[0])  # no axes and noop: the identity
        return
    rank = im.rank(node.input[0])
    keep = bool(attrs.get("keepdims", 1))
    if rank is not None and axes is not None:
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) < len(axes):
            raise im.fail(f"axes {axes} are invalid for an input of rank {rank}")
        if rank == 4 and sorted(a % 4 for a in axes) == [2, 3]:
            im.emit(_nn.GlobalAvgPool2d(keepdims=keep), im.source(node.input[0]))
            return
    im.emit(_ox.ReduceMean(axes, keepdims=keep), im.source(node.input[0]))


def _flatten(im, node, attrs):
    axis, rank = int(attrs.get("axis", 1)), im.rank(node.input[0])
    if rank is not None and not -rank <= axis <= rank:
        raise im.fail(f"axis {axis} is out of range for an input of rank {rank}")
    if rank is not None and axis < 0:
        axis += rank
    if axis == 1 and rank == 1:
        # (N,) -> (N, 1): nothing after the batch axis to flatten (torch's x.view(1, -1))
        im.emit(_ox.Unsqueeze([1]), im.source(node.input[0]))
    elif axis == 1 and rank is not None:
        im.emit(_nn.Flatten(), im.source(node.input[0]))  # keep the batch axis: PyTorch's
    else:
        im.emit(_ox.FlattenAxis(axis), im.source(node.input[0]))


def _concat(im, node, attrs):
    ins, axis = [v for v in node.input if v], int(attrs["axis"])
    if not any(v in im.consts for v in ins):
        im.emit(_nn.Concat(axis=axis), *[im.source(v) for v in ins])
        return
    # constant operands (all-constant Concats are folded): checked where the shapes are known,
    # so that what loads also runs
    shapes = [im.consts[v].shape if v in im.consts else im.shapes.get(v) for v in ins]
    if None not in shapes:
        rank = len(shapes[0])
        if any(len(sh) != rank for sh in shapes) or not -rank <= axis < rank or any(
                not _broadcasts(_drop(shapes[0], axis), _drop(sh, axis), equal=True)
                for sh in shapes[1:]):
            raise im.fail(f"operands of shapes {shapes} do not concatenate along axis {axis}")
    layer = _ox.ConcatConstant(axis, [list(im.consts[v].shape) if v in im.consts else None
                                      for v in ins], dtype=im.dtype)
    for k, v in enumerate(v for v in ins if v in im.consts):
        layer._buffers[f"constant{k}"][...] = im.consts[v]
    im.emit(layer, *[im.source(v) for v in ins if v not in im.consts])


def _drop(shape, axis):
    return tuple(n for i, n in enumerate(shape) if i != axis % len(shape))


def _identity(im, node, attrs):
    im.alias(node.input[0])


def _reshape(im, node, attrs):
    shape = [int(s) for s in im.needs_const(node.input[1], "shape").reshape(-1)]
    allowzero = bool(attrs.get("allowzero", 0)) and 0 in shape
    if any(s == _BATCH for s in shape[1:]):
        raise im.fail("a reshape target that moves the batch size off axis 0")
    if shape and shape[0] == _BATCH:
        shape[0] = 0
    elif shape and im.batch and shape[0] == im.batch and not allowzero:
        # the exporter wrote the example's batch size: keep whatever batch comes instead
        shape[0] = 0
    if allowzero and shape[0] == 0:
        raise im.fail("allowzero=1 with a zero-size axis")
    im.emit(_ox.Reshape(shape, allowzero=allowzero), im.source(node.input[0]))


def _axes_of(im, node, attrs):
    if im.opset < 13 or node.op_type == "Squeeze" and len(node.input) < 2:
        axes = attrs.get("axes")
    else:
        axes = im.needs_const(node.input[1], "axes") if len(node.input) > 1 else None
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _squeeze(im, node, attrs):
    im.emit(_ox.Squeeze(_axes_of(im, node, attrs)), im.source(node.input[0]))


def _unsqueeze(im, node, attrs):
    axes = _axes_of(im, node, attrs)
    if axes is None:
        raise im.fail("Unsqueeze needs axes")
    im.emit(_ox.Unsqueeze(axes), im.source(node.input[0]))


def _pad(im, node, attrs):
    if im.opset < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in im.needs_const(node.input[1], "pads").reshape(-1)]
        value = _scalar(im, node.input[2] if len(node.input) > 2 else "", "constant_value")
        value = 0.0 if value is None else value
        if len(node.input) > 3 and node.input[3]:
            pads = _pads_on_axes(im, node, pads)
    rank = im.rank(node.input[0])
    if len(pads) % 2 or (rank is not None and len(pads) != 2 * rank):
        raise im.fail(f"pads {pads} do not give a begin and an end for each of the "
                      f"{rank} axes of its input")
    mode = attrs.get("mode", "constant")
    n = len(pads) // 2
    if any(p < 0 for p in pads):
        raise im.fail(f"negative pads (cropping) {pads} are not supported")
    im.emit(_ox.Pad([[pads[i], pads[i + n]] for i in range(n)], mode=mode, value=value),
            im.source(node.input[0]))


def _pads_on_axes(im, node, pads):
    """Pad's ``axes`` input (opset 18): the pads of those axes spread over all of them."""
    axes = [int(a) for a in im.needs_const(node.input[3], "axes").reshape(-1)]
    rank = im.rank(node.input[0])
    if rank is None:
        raise im.fail("Pad with axes needs the rank of its input (unknown to ONNX shape "
                      "inference)")
    if (any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) < len(axes)
            or len(pads) != 2 * len(axes)):
        raise im.fail(f"axes {axes} with pads {pads} are invalid for an input of rank {rank}")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a % rank], full[rank + a % rank] = pads[i], pads[len(axes) + i]
    return full


def _slice(im, node, attrs):
    if im.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        def ints(i, what):
            if len(node.input) <= i or not node.input[i]:
                return None
            return [int(v) for v in im.needs_const(node.input[i], what).reshape(-1)]
        starts, ends = ints(1, "starts"), ints(2, "ends")
        axes, steps = ints(3, "axes"), ints(4, "steps")
    im.emit(_ox.Slice(starts, ends, axes, steps), im.source(node.input[0]))


def _norm_eps(attrs) -> float:
    return float(attrs.get("epsilon", 1e-5))


def _channels(im, value: str) -> int:
    shape = im.shapes.get(value)
    if shape is None or len(shape) < 2 or shape[1] is None:
        raise im.fail(f"the channel count of its input {value!r} is unknown (ONNX shape "
                      "inference)")
    return int(shape[1])


def _instancenorm(im, node, attrs):
    scale, shift = (im.needs_const(v, what) for v, what in zip(node.input[1:3], ("scale", "B")))
    c = scale.size
    rank = im.rank(node.input[0])
    # (N, C, L) and (N, C, H, W): the instance-norm layers; any other rank: GroupNorm(C, C),
    # the same normalisation
    if rank in (3, 4):
        cls = _nn.InstanceNorm2d if rank == 4 else _nn.InstanceNorm1d
        layer = cls(c, eps=_norm_eps(attrs), affine=True, dtype=im.dtype)
    else:
        layer = _nn.GroupNorm(c, c, eps=_norm_eps(attrs), dtype=im.dtype)
    _set(layer.weight, scale)
    _set(layer.bias, shift)
    im.emit(layer, im.source(node.input[0]))


def _group_norm_layer(im, G, C, eps, weight, bias):
    if C % G:
        raise im.fail(f"num_groups={G} does not divide the {C} channels of its input")
    layer = _nn.GroupNorm(G, C, eps=eps, affine=weight is not None or bias is not None,
                          dtype=im.dtype)
    if layer.weight is not None:
        _set(layer.weight, np.broadcast_to(np.ones(1) if weight is None else weight, (C,)))
        _set(layer.bias, np.broadcast_to(np.zeros(1) if bias is None else bias, (C,)))
    return layer


def _groupnorm(im, node, attrs):
    G = int(attrs["num_groups"])
    C = _channels(im, node.input[0])
    # (opset 21's per-channel scale and bias: onnx.checker refuses the deprecated opset-18
    # operator, which scaled per group)
    scale, shift = (im.needs_const(v, what).reshape(-1) for v, what in
                    zip(node.input[1:3], ("scale", "bias")))
    if scale.size != C or shift.size != C:
        raise im.fail(f"scale and bias of {scale.size} and {shift.size} values for {C} "
                      f"channels in {G} groups")
    im.emit(_group_norm_layer(im, G, C, _norm_eps(attrs), scale, shift),
            im.source(node.input[0]))


def _fused_group_norm(im, node, attrs):
    """PyTorch's GroupNorm chain, recognised by :func:`._patterns.fuse_group_norm`."""
    C = _channels(im, node.input[0])
    weight = im.consts[node.input[1]].reshape(-1) if node.input[1] else None
    bias = im.consts[node.input[2]].reshape(-1) if node.input[2] else None
    im.emit(_group_norm_layer(im, int(attrs["num_groups"]), C, _norm_eps(attrs), weight, bias),
            im.source(node.input[0]))


def _layernorm(im, node, attrs):
    scale = im.needs_const(node.input[1], "scale")
    bias = (im.needs_const(node.input[2], "B") if len(node.input) > 2 and node.input[2]
            else None)
    axis = int(attrs.get("axis", -1))
    rank = im.rank(node.input[0])
    if rank is None:
        raise im.fail(f"the rank of its input {node.input[0]!r} is unknown (ONNX shape "
                      "inference)")
    if not -rank <= axis < rank:
        raise im.fail(f"axis {axis} is out of range for an input of {rank} axes")
    # (axis 0 normalises the whole tensor, batch included: a LayerNorm over all its axes,
    # which runs on inputs of the file's static batch size)
    ns = im.shapes[node.input[0]][axis % rank:]
    if any(d is None for d in ns) and scale.ndim == len(ns):
        ns = scale.shape  # sizes unknown to shape inference: a full-size scale gives them
    if any(d is None for d in ns):
        raise im.fail(f"the normalised axes {ns} of its input must have static sizes")

    def full(v):  # broadcastable to normalized_shape, leading ones allowed
        while v.ndim > len(ns) and v.shape[0] == 1:
            v = v[0]
        return np.broadcast_to(v, ns)

    layer = _nn.LayerNorm(list(ns), eps=_norm_eps(attrs), bias=bias is not None, dtype=im.dtype)
    _set(layer.weight, full(scale))
    if bias is not None:
        _set(layer.bias, full(bias))
    im.emit(layer, im.source(node.input[0]))


_CONVERTERS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Sum": _add,
    "Sub": _arithmetic, "Mul": _arithmetic, "Div": _arithmetic,
    "Relu": _simple(lambda a: _nn.ReLU()),
    "LeakyRelu": _simple(lambda a: _nn.LeakyReLU(float(a.get("alpha", 0.01)))),
    "Sigmoid": _simple(lambda a: _nn.Sigmoid()), "Tanh": _simple(lambda a: _nn.Tanh()),
    "Softmax": _softmax, "LogSoftmax": _softmax, "Clip": _clip, "Dropout": _dropout,
    "BatchNormalization": _batchnorm, "LRN": _lrn, "MaxPool": _maxpool,
    "AveragePool": _avgpool, "GlobalAveragePool": _gap, "ReduceMean": _reduce_mean,
    "GlobalMaxPool": _gmp,
    "Flatten": _flatten,
    "Concat": _concat, "Identity": _identity, "Reshape": _reshape, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "Pad": _pad, "Slice": _slice,
    "Transpose": _simple(lambda a: _ox.Transpose(a.get("perm"))),
}
_CONVERTERS["ConvTranspose"] = _conv_transpose
_CONVERTERS.update(InstanceNormalization=_instancenorm, GroupNormalization=_groupnorm,
                   LayerNormalization=_layernorm)


def _resize_mode(im, attrs, rank):
    """The ``interpolate`` mode (and align_corners) that samples where this Resize does."""
    mode = attrs.get("mode", "nearest")
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    near = attrs.get("nearest_mode", "round_prefer_floor")
    for key, default in (("antialias", 0), ("exclude_outside", 0)):
        if int(attrs.get(key, default)) != default:
            raise im.fail(f"{key}={attrs[key]} is not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise im.fail(f"keep_aspect_ratio_policy={attrs['keep_aspect_ratio_policy']!r} is not "
                      "supported (only 'stretch')")
    if "axes" in attrs:
        raise im.fail("the 'axes' attribute is not supported (give scales or sizes for all "
                      "axes)")
    if mode == "nearest" and ctm == "asymmetric" and near == "floor":
        return "nearest", None
    if mode == "nearest" and ctm == "half_pixel" and near == "round_prefer_ceil":
        return "nearest-exact", None
    if mode == "linear" and ctm in ("half_pixel", "align_corners") and rank in (3, 4):
        return ("linear" if rank == 3 else "bilinear"), ctm == "align_corners"
    raise im.fail(f"mode={mode!r} with coordinate_transformation_mode={ctm!r} and "
                  f"nearest_mode={near!r} is not supported; nbconv imports PyTorch's nearest "
                  "(asymmetric, floor), nearest-exact (half_pixel, round_prefer_ceil) and "
                  "(bi)linear (half_pixel or align_corners) on 3-D and 4-D inputs")


def _resize(im, node, attrs):
    x = node.input[0]
    scales = im.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = im.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    for i, what in ((2, "scales"), (3, "sizes")):
        if len(node.input) > i and node.input[i] and im.const(node.input[i]) is None:
            raise im.fail(f"its {what} ({node.input[i]!r}) must be a constant (or computed "
                          "from the input's shape)")
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        raise im.fail("exactly one of scales and sizes must be given")
    given = np.asarray(scales if scales is not None else sizes).reshape(-1)
    rank, shape = im.rank(x), im.shapes.get(x)
    if rank is not None and rank != given.size:
        raise im.fail(f"{given.size} scales/sizes for a rank-{rank} input")
    rank = given.size
    if rank not in (3, 4):
        raise im.fail(f"a rank-{rank} input is not supported (nbconv resizes (N, C, L) and "
                      "(N, C, H, W))")
    mode, ac = _resize_mode(im, attrs, rank)
    if scales is not None:
        # the shortest decimal that gives each float32 factor (1.1, not 1.100000023841858):
        # what the writer of the file meant, and what PyTorch's exporter was given
        sc = [float(str(np.float32(v))) if given.dtype == np.float32 else float(v)
              for v in given]
        if sc[0] != 1.0 or sc[1] != 1.0:
            raise im.fail(f"scales {sc} resize the batch or channel axis")
        if min(sc[2:]) <= 0:
            raise im.fail(f"scales {sc} must be positive")
        spatial = None if shape is None else shape[2:]
        # PyTorch (and nbconv) copy an axis whose size does not change and halve the nearest
        # index of an axis that doubles, whatever the factor; Resize uses the factor
        for j, s in enumerate(sc[2:]):
            n = None if spatial is None else spatial[j]
            clean = s == 1.0 or (s >= 1 and s == int(s)) or (s < 1 and (1 / s) == int(1 / s))
            if n is None and not clean:
                raise im.fail(f"scale {s} on an axis of unknown size: nbconv cannot tell "
                              "whether it samples as Resize does")
            if ac and (n * s != int(n * s) if n is not None else s != int(s)):
                raise im.fail(f"scale {s} with align_corners on an axis of size {n}: Resize "
                              "divides by the unrounded output size, PyTorch by the rounded one")
            if n is not None:
                o = int(np.floor(n * s))
                if o < 1 or (o == n and s != 1.0) or (mode == "nearest" and o == 2 * n
                                                       and s != 2.0):
                    raise im.fail(f"scale {s} on an axis of size {n} gives output size {o}, "
                                  "where nbconv's (PyTorch's) sampling differs from Resize's")
        layer = _nn.Upsample(scale_factor=sc[2:], mode=mode, align_corners=ac)
    else:
        sz = [int(v) for v in given]
        if shape is None:
            raise im.fail("the input's shape is unknown (ONNX shape inference): nbconv cannot "
                          "check that sizes keep its batch and channel axes")
        for j in (0, 1):
            if sz[j] != _BATCH and shape[j] is not None and sz[j] != shape[j]:
                raise im.fail(f"sizes {sz} resize the batch or channel axis of an input of "
                              f"shape {shape}")
        if min(sz[2:]) < 1:
            raise im.fail(f"sizes {sz} must be positive")
        layer = _nn.Upsample(size=sz[2:], mode=mode, align_corners=ac)
    im.emit(layer, im.source(x))


_CONVERTERS["Resize"] = _resize


# -- issue 27's activations ------------------------------------------------------------------
def _prelu(im, node, attrs):
    slope = np.asarray(im.needs_const(node.input[1], "slope"))
    rank = im.rank(node.input[0])
    dims = list(slope.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    shape = im.shapes.get(node.input[0])
    channels = shape[1] if shape and len(shape) > 1 else None
    if slope.size == 1:
        n = 1
    elif im.opset < 7 and slope.ndim == 1 and slope.size == channels:
        n = slope.size  # PRelu-6: a slope per channel (broadcasting came with opset 7)
    elif rank is not None and rank >= 2 and len(dims) == rank - 1 and all(
            d == 1 for d in dims[1:]):
        n = dims[0]  # one slope per channel, (C, 1, ..., 1)
    else:
        raise im.fail(f"a slope of shape {slope.shape} on a rank-{rank} input is not one slope "
                      "or one per channel (axis 1), which is what nbconv's PReLU has")
    layer = _nn.PReLU(n, dtype=im.dtype)
    _set(layer.weight, slope.reshape(-1))
    im.emit(layer, im.source(node.input[0]))


def _hard_sigmoid(im, node, attrs):
    """PyTorch's constants: ``nn.Hardsigmoid``; others: ``clip(alpha * x + beta, 0, 1)`` as
    an Arithmetic multiply and add and a Clip."""
    # (ONNX attributes are float32: the default alpha is float32(0.2), as ONNX computes it)
    alpha = float(attrs.get("alpha", np.float32(0.2)))
    beta = float(attrs.get("beta", 0.5))
    if abs(alpha - 1.0 / 6.0) <= 1e-6 / 6.0 and beta == 0.5:
        im.emit(_nn.Hardsigmoid(), im.source(node.input[0]))
        return
    src = im.source(node.input[0])
    for op, c in (("mul", alpha), ("add", beta)):
        layer = _ox.Arithmetic(op, (), dtype=im.dtype)
        layer._buffers["constant"][...] = c
        src = im.add(layer, src, suffix=f"_{op}")
    im.emit(_ox.Clip(0.0, 1.0), src)


def _selu(im, node, attrs):
    """PyTorch's constants: ``nn.SELU``; others: ``gamma * ELU(x, alpha)``."""
    from ..functional.activation_ext import SELU_ALPHA, SELU_SCALE

    # (the defaults are ONNX's float32 attributes)
    alpha = float(attrs.get("alpha", 1.67326319217681884765625))
    gamma = float(attrs.get("gamma", 1.05070102214813232421875))
    if abs(alpha - SELU_ALPHA) <= 1e-6 * SELU_ALPHA and abs(gamma - SELU_SCALE) <= \
            1e-6 * SELU_SCALE:
        im.emit(_nn.SELU(), im.source(node.input[0]))
        return
    src = im.add(_nn.ELU(alpha=alpha), im.source(node.input[0]), suffix="_elu")
    scale = _ox.Arithmetic("mul", (), dtype=im.dtype)
    scale._buffers["constant"][...] = gamma
    im.emit(scale, src)


def _gelu(im, node, attrs):
    im.emit(_nn.GELU(approximate=attrs.get("approximate", "none")), im.source(node.input[0]))


def _mul(im, node, attrs):
    """PyTorch's exports of SiLU, ``x * Sigmoid(x)``, and of Mish, ``x * Tanh(Softplus(x))``
    (ONNX's Mul of two computed tensors), become one SiLU or Mish layer; anything else is the
    arithmetic converter's."""
    a, b = node.input[0], node.input[1]
    for x, s in ((a, b), (b, a)):
        src = im.env.get(x)
        if src is None:
            continue
        prev = im.sole_producer(s, _nn.Sigmoid)
        if prev is not None and im.nodes[prev][1] == [src]:
            im.nodes[prev][0] = _nn.SiLU()
            im.env[node.output[0]] = prev
            return
        prev = im.sole_producer(s, _nn.Tanh)
        inner = None if prev is None else im.nodes[prev][1][0]
        softplus = next((v for v, n in im.env.items() if n == inner), None)
        if softplus is not None and im.sole_producer(softplus, _nn.Softplus) == inner \
                and im.nodes[inner][1] == [src]:
            im.nodes[prev] = [_nn.Mish(), [src]]
            im.nodes[inner][0] = None  # (skipped when the graph is built)
            im.env[node.output[0]] = prev
            return
    _multiply(im, node, attrs)


def _register_activations():
    _CONVERTERS.update({
        "PRelu": _prelu,
        "Elu": _simple(lambda a: _nn.ELU(alpha=float(a.get("alpha", 1.0)))),
        "Selu": _selu,
        "Celu": _simple(lambda a: _nn.CELU(alpha=float(a.get("alpha", 1.0)))),
        "Gelu": _gelu, "Mish": _simple(lambda a: _nn.Mish()),
        "HardSwish": _simple(lambda a: _nn.Hardswish()),
        "HardSigmoid": _hard_sigmoid,
        "Softplus": _simple(lambda a: _nn.Softplus()),
        "Mul": _mul,
    })


_multiply = _CONVERTERS["Mul"]
_register_activations()


# -- constant folding of small shape computations --------------------------------------------
def _fold_constant(im, node, attrs):
    if "value" in attrs:
        v = im.onnx.numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs or "value_int" in attrs:
        v = np.asarray(attrs.get("value_float", attrs.get("value_int")))
    elif "value_floats" in attrs or "value_ints" in attrs:
        v = np.asarray(attrs.get("value_floats", attrs.get("value_ints")))
    else:
        raise im.fail(f"Constant with {sorted(attrs)} is not supported")
    im.consts[node.output[0]] = v


def _fold_shape(im, node, attrs):
    full = im.shapes.get(node.input[0])
    if full is None:
        raise im.fail(f"the shape of {node.input[0]!r} is unknown (ONNX shape inference)")
    out = []
    for i in range(len(full))[attrs.get("start", 0):attrs.get("end", len(full))]:
        if i == 0:  # the batch axis: whatever size the input has when the graph runs
            out.append(_BATCH)
        elif full[i] is None:
            raise im.fail(f"axis {i} of {node.input[0]!r} has no static size")
        else:
            out.append(full[i])
    im.consts[node.output[0]] = np.asarray(out, np.int64)


def _numpy_fold(fn):
    def convert(im, node, attrs):
        im.consts[node.output[0]] = np.asarray(fn(im, [im.consts.get(v) for v in node.input],
                                                  attrs, node))
    return convert


def _unsqueeze_np(im, ins, attrs, node):
    axes = _axes_of(im, node, attrs)
    out = ins[0]
    for a in sorted(a % (out.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze_np(im, ins, attrs, node):
    axes = _axes_of(im, node, attrs)
    return np.squeeze(ins[0], axis=None if axes is None else tuple(axes))


def _slice_np(im, ins, attrs, node):
    data = ins[0]
    if im.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = ins[1].tolist(), ins[2].tolist()
        axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else None
        steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for a, b, e, st in zip(axes, starts, ends, steps):
        index[a % data.ndim] = slice(b, e, st)
    return data[tuple(index)]


def _constant_of_shape_np(im, ins, attrs, node):
    value = attrs.get("value")
    fill = (im.onnx.numpy_helper.to_array(value).reshape(-1) if value is not None
            else np.zeros(1, np.float32))
    return np.full([int(s) for s in ins[0].reshape(-1)], fill[0], fill.dtype)


def _arith(fn):
    def fold(im, ins, attrs, node):
        if any(v is not None and v.dtype.kind in "iu" and np.any(v == _BATCH) for v in ins):
            raise im.fail("arithmetic on the batch size is not supported")
        out = fn(*ins)
        return out.astype(np.result_type(*ins), copy=False)
    return fold


def _int_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer division truncates
        return np.trunc(np.true_divide(a, b))
    return np.divide(a, b)


def _cast_np(im, ins, attrs, node):
    return ins[0].astype(im.onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))


_FOLDERS = {
    "Constant": _fold_constant,
    "Shape": _fold_shape,
    "Identity": _identity,
    "Gather": _numpy_fold(lambda im, i, a, n: np.take(i[0], i[1], axis=a.get("axis", 0))),
    "Concat": _numpy_fold(lambda im, i, a, n: np.concatenate(
        [np.atleast_1d(v) for v in i if v is not None], axis=a["axis"])),
    "Unsqueeze": _numpy_fold(_unsqueeze_np),
    "Squeeze": _numpy_fold(_squeeze_np),
    "Cast": _numpy_fold(_cast_np),
    "Reshape": _numpy_fold(lambda im, i, a, n: i[0].reshape([int(s) for s in i[1]])),
    "Slice": _numpy_fold(_slice_np),
    "Transpose": _numpy_fold(lambda im, i, a, n: np.transpose(i[0], a.get("perm"))),
    "ConstantOfShape": _numpy_fold(_constant_of_shape_np),
    "Add": _numpy_fold(_arith(np.add)), "Sub": _numpy_fold(_arith(np.subtract)),
    "Mul": _numpy_fold(_arith(np.multiply)), "Div": _numpy_fold(_arith(_int_div)),
}


def _check_external(onnx, model, path: str) -> None:
    """Load external tensor data that lies in the model's folder; refuse anything else."""
    external = [t for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return
    base = os.path.dirname(os.path.abspath(path))
    for t in external:
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        full = os.path.abspath(os.path.join(base, loc))
        if not loc or os.path.isabs(loc) or os.path.commonpath([base, full]) != base:
            raise FormatError(path, f"initializer {t.name!r} points at external data "
                              f"{loc!r} outside the model's folder")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, base)
    except Exception as e:
        raise FormatError(path, f"cannot read external tensor data ({e})") from e


def load(path) -> _nn.Graph:
    """Import an ONNX CNN as a trainable nbconv ``Graph`` (forward and backward).

    Parameters
    ----------
    path : str or os.PathLike
        An ``.onnx`` file, e.g. from ``torch.onnx.export`` (either exporter) or
        :func:`nbconv.onnx.export`.

    Returns
    -------
    nbconv.nn.Graph
        One node per layer, named after the ONNX nodes; input (N, C, H, W) as the file's
        graph input, any batch size.  It is in **eval mode** (a file describes inference:
        batch norm uses the stored statistics, dropout is off); call ``.train()`` to
        fine-tune.  Parameters are float32 for FLOAT files, float64 for DOUBLE.

    Supported operators: Conv (1-D/2-D, groups, dilation, pads, auto_pad), Gemm (transA,
    transB, alpha, beta; a constant B as a Linear layer, C its bias where it is one value per
    output, else added after), MatMul (a constant operand, 1-D included), Add/Sum (any
    constant operands, broadcast), Sub/Mul/Div with a constant operand (broadcast), Relu,
    LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax, Clip (ReLU6; min > max gives max),
    PRelu (one slope or one per channel), Elu, Selu and HardSigmoid (PyTorch's constants as
    ``nn.SELU``/``nn.Hardsigmoid``, others composed), Celu, Gelu, Mish, HardSwish, Softplus,
    ``x * Sigmoid(x)`` and ``x * Tanh(Softplus(x))`` (PyTorch's SiLU and Mish, as layers of
    those names), Dropout, BatchNormalization, LRN (odd sizes) and the node chains PyTorch
    writes for ``LocalResponseNorm`` (any size), InstanceNormalization, GroupNormalization
    (opset 21) and the node chain PyTorch writes for ``GroupNorm``, LayerNormalization (any
    axis), MaxPool and AveragePool (1-D and 2-D: PyTorch's pools where they express the node,
    else :class:`nbconv.onnx.layers.MaxPool`/``AveragePool`` for auto_pad ``SAME_*``,
    per-side or large pads, dilated averages), GlobalAveragePool, GlobalMaxPool
    (``GlobalMaxPool2d``, ``AdaptiveMaxPool1d(1)`` on (N, C, L) inputs), ReduceMean (any
    axes), Flatten (any axis), Reshape, Squeeze, Unsqueeze, Transpose, Slice, Pad (``axes``
    too), Concat (constant operands too), Identity, Resize (as ``nn.Upsample``: PyTorch's
    nearest, nearest-exact and (bi)linear sampling, constant scales or sizes), and
    computations on constants or static shapes (Constant, Shape, Gather, Unsqueeze, Concat,
    Cast, Slice, Transpose, ConstantOfShape, arithmetic), as ``x.view(x.size(0), -1)`` and
    the TorchScript exporter's padding write them. A Reshape target whose first size is the
    file's static batch size keeps the batch size of the actual input instead.  Where the
    input shapes are known (ONNX shape inference), a node that could not run on them is
    refused at load.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    nbconv.io.FormatError
        When the file is not a valid ONNX model (not protobuf, fails ``onnx.checker``,
        unreadable tensors, external data outside its folder).
    UnsupportedOpError
        (a ``ValueError`` and ``NotImplementedError``) naming the node and op type of the
        first node nbconv cannot import, and why.
    """
    onnx = _deps.onnx()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"nbconv.onnx.load: no such file: {path!r}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as e:
        raise FormatError(path, f"not an ONNX model: cannot parse it as protobuf ({e})") from e
    if not model.HasField("graph") or not model.graph.node:
        raise FormatError(path, "not an ONNX model: no graph with nodes")
    _check_external(onnx, model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise FormatError(path, f"invalid ONNX model ({str(e).strip().splitlines()[0]})") from e
    return _Importer(onnx, model, path).run()

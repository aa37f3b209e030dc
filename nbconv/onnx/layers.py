"""The few layers an imported ONNX graph needs beyond :mod:`nbconv.nn`.

``Clip`` (PyTorch's ``ReLU6`` is ``Clip(0, 6)``), ``LogSoftmax``, ``Pad`` (a ``Pad`` node that
cannot be folded into the convolution after it), ``Slice``, ``Reshape``/``Squeeze``/
``Unsqueeze``/``FlattenAxis``/``Transpose`` (ONNX's shape ops), ``ReduceMean``, ``MatMul`` (a
product with a fixed matrix), ``Arithmetic`` (``Add``/``Sub``/``Mul``/``Div`` with a
constant), ``ConcatConstant`` (a ``Concat`` with constant operands), ``MaxPool`` and
``AveragePool`` (ONNX's pooling where PyTorch's cannot express it: per-side or large pads,
``auto_pad``, dilated averages).  Each has a hand-written backward pass like every nbconv
layer and is registered (:func:`nbconv.nn.register`), so a graph holding them can be saved
with :func:`nbconv.save` and rebuilt by :func:`nbconv.load`.  They run on host arrays only;
none imports onnx.

>>> import numpy as np
>>> from nbconv.onnx.layers import Reshape
>>> Reshape([0, -1])(np.zeros((2, 3, 4, 4), np.float32)).shape
(2, 48)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import functional as F
from ..nn.config import register
from ..nn.module import Module

__all__ = ["Clip", "LogSoftmax", "Pad", "Slice", "Reshape", "Squeeze", "Unsqueeze", "MatMul",
           "Arithmetic", "MaxPool", "AveragePool", "FlattenAxis", "Transpose", "ReduceMean",
           "ConcatConstant"]


def _host(op: str, x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(f"{op}: runs on host arrays only, got a CUDA device array")
        x = np.asarray(x)
    return x


def _no_cache(op: str) -> RuntimeError:
    return RuntimeError(f"{op}.backward called without a cached forward pass (was forward run "
                        "inside nbconv.no_grad(), or backward called twice?)")


@register
class Clip(Module):
    """``min(max(x, min), max)``; ``Clip(0, 6)`` is PyTorch's ``ReLU6``.

    The gradient passes where ``min < x < max`` (PyTorch's ``hardtanh``/``ReLU6`` rule);
    ``None`` for a bound means unbounded.  NaN propagates.  With ``min > max`` every value
    is ``max`` (ONNX's formula, and ``torch.clamp``'s rule) and the gradient is zero.
    """

    def __init__(self, min=None, max=None):  # ONNX's and torch.clamp's names
        super().__init__()
        lo = None if min is None else float(min)
        hi = None if max is None else float(max)
        self._config = dict(min=lo, max=hi)
        self._x = None

    def forward(self, x):
        x = _host("Clip.forward", x)
        lo, hi = self._config["min"], self._config["max"]
        y = np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi)
        self._x = x if self._keep() else None
        return y.astype(x.dtype, copy=False)

    def backward(self, dy):
        if self._x is None:
            raise _no_cache("Clip")
        lo, hi = self._config["min"], self._config["max"]
        inside = np.ones(self._x.shape, bool)
        if lo is not None:
            inside &= self._x > lo
        if hi is not None:
            inside &= self._x < hi
        return np.where(inside, dy, 0).astype(dy.dtype, copy=False)


@register
class LogSoftmax(Module):
    """``log(softmax(x))`` along ``dim``, as ``torch.nn.LogSoftmax`` (the classic PyTorch MNIST
    network ends in ``F.log_softmax``); stable, backward from the output."""

    def __init__(self, dim=-1):
        super().__init__()
        self._config = dict(dim=int(dim))
        self._y = None

    def forward(self, x):
        y = F.log_softmax(x, axis=self._config["dim"])
        self._y = y if self._keep() else None
        return y

    def backward(self, dy):
        if self._y is None:
            raise _no_cache("LogSoftmax")
        return F.log_softmax_backward(dy, self._y, axis=self._config["dim"])


_NP_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@register
class Pad(Module):
    """``numpy.pad`` with ONNX's modes: ``constant`` (``value``), ``reflect``, ``edge``, ``wrap``.

    Parameters
    ----------
    pads : list of (int, int)
        ``(before, after)`` for each axis of the input, all >= 0.
    mode : {"constant", "reflect", "edge", "wrap"}
    value : float
        The fill of ``constant`` mode.

    The backward pass is the adjoint of the gather that padding is: the gradient of every
    padded position is added to the input position it copies (nothing for constant padding).
    """

    def __init__(self, pads, mode="constant", value=0.0):
        super().__init__()
        pads = [[int(b), int(a)] for b, a in pads]
        if any(v < 0 for p in pads for v in p):
            raise ValueError(f"Pad: argument 'pads' must be >= 0, got {pads}")
        if mode not in _NP_MODES:
            raise ValueError(f"Pad: argument 'mode' must be one of {sorted(_NP_MODES)}, "
                             f"got {mode!r}")
        self._config = dict(pads=pads, mode=mode, value=float(value))
        self._shape = None

    def forward(self, x):
        x = _host("Pad.forward", x)
        pads = self._config["pads"]
        if len(pads) != x.ndim:
            raise ValueError(f"Pad.forward: 'pads' has {len(pads)} axes, input x has shape "
                             f"{x.shape}")
        mode = self._config["mode"]
        kw = {"constant_values": self._config["value"]} if mode == "constant" else {}
        self._shape = x.shape
        return np.pad(x, [tuple(p) for p in pads], mode=_NP_MODES[mode], **kw)

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("Pad")
        dx = np.asarray(dy)
        mode = self._config["mode"]
        for axis, ((before, after), n) in enumerate(zip(self._config["pads"], self._shape)):
            if before == after == 0:
                continue
            if mode == "constant":
                dx = np.take(dx, np.arange(before, before + n), axis=axis)
                continue
            # index of the input element each padded position copies
            src = np.pad(np.arange(n), (before, after), mode=_NP_MODES[mode])
            moved = np.moveaxis(dx, axis, 0)
            acc = np.zeros((n,) + moved.shape[1:], dx.dtype)
            np.add.at(acc, src, moved)
            dx = np.moveaxis(acc, 0, axis)
        return np.ascontiguousarray(dx)


@register
class Slice(Module):
    """``x[starts:ends:steps]`` along ``axes``, as ONNX Slice (out-of-range bounds clamp).

    The TorchScript exporter writes circular padding as slices and a concatenation.  The
    backward pass scatters ``dy`` into zeros at the sliced positions.
    """

    def __init__(self, starts, ends, axes=None, steps=None):
        super().__init__()
        n = len(starts)
        axes = list(range(n)) if axes is None else [int(a) for a in axes]
        steps = [1] * n if steps is None else [int(s) for s in steps]
        if not len(ends) == len(axes) == len(steps) == n or 0 in steps:
            raise ValueError(f"Slice: 'starts', 'ends', 'axes', 'steps' must have one entry "
                             f"per sliced axis and steps must be non-zero, got {starts}, "
                             f"{ends}, {axes}, {steps}")
        self._config = dict(starts=[int(v) for v in starts], ends=[int(v) for v in ends],
                            axes=axes, steps=steps)
        self._shape = None

    def _index(self, ndim: int) -> tuple:
        cfg = self._config
        index = [slice(None)] * ndim
        for a, b, e, st in zip(cfg["axes"], cfg["starts"], cfg["ends"], cfg["steps"]):
            if not -ndim <= a < ndim:
                raise ValueError(f"Slice.forward: axis {a} is out of range for {ndim} axes")
            index[a % ndim] = slice(b, e, st)
        return tuple(index)

    def forward(self, x):
        x = _host("Slice.forward", x)
        self._shape = x.shape
        return np.ascontiguousarray(x[self._index(x.ndim)])

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("Slice")
        dx = np.zeros(self._shape, np.asarray(dy).dtype)
        dx[self._index(len(self._shape))] = dy
        return dx


class _Reshaping(Module):
    """A layer whose backward reshapes ``dy`` to the input's shape."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def _target(self, shape: tuple) -> tuple:
        raise NotImplementedError

    def forward(self, x):
        x = _host(f"{type(self).__name__}.forward", x)
        target = self._target(x.shape)
        try:
            y = x.reshape(target)
        except ValueError:
            raise ValueError(f"{type(self).__name__}.forward: cannot reshape input x of shape "
                             f"{x.shape} ({x.size} values) to {target}") from None
        self._shape = x.shape
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache(type(self).__name__)
        return np.asarray(dy).reshape(self._shape)


@register
class Reshape(_Reshaping):
    """Reshape to ``shape`` with ONNX's rules: 0 copies the input's size there (unless
    ``allowzero``), -1 is inferred.  ``Reshape([0, -1])`` flattens all but the batch axis."""

    def __init__(self, shape, allowzero=False):
        super().__init__()
        shape = [int(s) for s in shape]
        if sum(s == -1 for s in shape) > 1 or any(s < -1 for s in shape):
            raise ValueError(f"Reshape: argument 'shape' may hold one -1 and no other negative "
                             f"size, got {shape}")
        self._config = dict(shape=shape, allowzero=bool(allowzero))

    def _target(self, shape):
        out = []
        for i, s in enumerate(self._config["shape"]):
            if s == 0 and not self._config["allowzero"]:
                if i >= len(shape):
                    raise ValueError(f"Reshape.forward: target {self._config['shape']} copies "
                                     f"axis {i} of an input x of shape {shape}")
                s = shape[i]
            out.append(s)
        return tuple(out)


def _axes(op: str, axes, ndim: int) -> list[int]:
    out = sorted(a % ndim for a in axes)
    if any(not -ndim <= a < ndim for a in axes) or len(set(out)) != len(out):
        raise ValueError(f"{op}: argument 'axes' {list(axes)} is invalid for {ndim} dimensions")
    return out


@register
class Squeeze(_Reshaping):
    """Remove the size-1 ``axes`` (all size-1 axes when ``axes`` is None), as ONNX Squeeze."""

    def __init__(self, axes=None):
        super().__init__()
        self._config = dict(axes=None if axes is None else [int(a) for a in axes])

    def _target(self, shape):
        axes = self._config["axes"]
        if axes is None:
            return tuple(s for s in shape if s != 1)
        drop = _axes("Squeeze.forward", axes, len(shape))
        if any(shape[a] != 1 for a in drop):
            raise ValueError(f"Squeeze.forward: axes {axes} of input x of shape {shape} are "
                             "not all of size 1")
        return tuple(s for i, s in enumerate(shape) if i not in drop)


@register
class Unsqueeze(_Reshaping):
    """Insert size-1 ``axes`` (positions in the output), as ONNX Unsqueeze."""

    def __init__(self, axes):
        super().__init__()
        self._config = dict(axes=[int(a) for a in axes])

    def _target(self, shape):
        n = len(shape) + len(self._config["axes"])
        new = _axes("Unsqueeze.forward", self._config["axes"], n)
        it = iter(shape)
        return tuple(1 if i in new else next(it) for i in range(n))


@register
class FlattenAxis(_Reshaping):
    """ONNX ``Flatten``: ``(prod(shape[:axis]), prod(shape[axis:]))`` for ``axis`` in
    ``[-r, r]`` of a rank-``r`` input (``axis=0`` gives ``(1, size)``).  PyTorch's
    ``nn.Flatten`` keeps the axes before its start, so it is ONNX's Flatten only at axis 1."""

    def __init__(self, axis=1):
        super().__init__()
        self._config = dict(axis=int(axis))

    def _target(self, shape):
        axis, r = self._config["axis"], len(shape)
        if not -r <= axis <= r:
            raise ValueError(f"FlattenAxis.forward: axis {axis} is out of range for input x of "
                             f"shape {shape} (expected [{-r}, {r}])")
        axis += r if axis < 0 else 0
        return (math.prod(shape[:axis]), math.prod(shape[axis:]))


@register
class Transpose(Module):
    """``numpy.transpose(x, perm)`` (ONNX ``Transpose``; ``perm=None`` reverses the axes);
    the backward pass transposes ``dy`` by the inverse permutation."""

    def __init__(self, perm=None):
        super().__init__()
        self._config = dict(perm=None if perm is None else [int(p) for p in perm])
        if perm is not None and sorted(self._config["perm"]) != list(range(len(perm))):
            raise ValueError(f"Transpose: argument 'perm' must be a permutation of 0..n-1, got "
                             f"{self._config['perm']}")
        self._ndim = None

    def forward(self, x):
        x = _host("Transpose.forward", x)
        perm = self._config["perm"]
        if perm is not None and len(perm) != x.ndim:
            raise ValueError(f"Transpose.forward: 'perm' {perm} does not fit input x of shape "
                             f"{x.shape}")
        self._ndim = x.ndim
        return np.ascontiguousarray(np.transpose(x, perm))

    def backward(self, dy):
        if self._ndim is None:
            raise _no_cache("Transpose")
        perm = self._config["perm"]
        inverse = None if perm is None else np.argsort(perm)
        return np.ascontiguousarray(np.transpose(np.asarray(dy), inverse))


@register
class ReduceMean(Module):
    """Mean over ``axes`` (all when None), keeping them as size 1 with ``keepdims``, as ONNX
    ``ReduceMean``; the backward pass spreads ``dy / count`` over the reduced axes."""

    def __init__(self, axes=None, keepdims=True):
        super().__init__()
        self._config = dict(axes=None if axes is None else [int(a) for a in axes],
                            keepdims=bool(keepdims))
        self._shape = None

    def _axes(self, ndim: int) -> tuple:
        axes = self._config["axes"]
        return tuple(range(ndim)) if axes is None else tuple(
            _axes("ReduceMean.forward", axes, ndim))

    def forward(self, x):
        x = _host("ReduceMean.forward", x)
        y = np.mean(x, axis=self._axes(x.ndim), keepdims=self._config["keepdims"])
        self._shape = x.shape
        return np.asarray(y, dtype=x.dtype)

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("ReduceMean")
        axes = self._axes(len(self._shape))
        dy = np.asarray(dy)
        kept = tuple(1 if i in axes else n for i, n in enumerate(self._shape))
        count = math.prod(self._shape[a] for a in axes)
        dx = np.broadcast_to(dy.reshape(kept) / dy.dtype.type(max(count, 1)), self._shape)
        return np.ascontiguousarray(dx)


@register
class ConcatConstant(Module):
    """Concatenate computed inputs and fixed constants along ``axis`` (ONNX ``Concat`` with
    initializer operands).

    Parameters
    ----------
    axis : int
    slots : list of (list of int or None)
        One entry per operand, in order: ``None`` for the next computed input, or the shape of
        a constant (held in the buffers ``constant0``, ``constant1``, ... in slot order).
    dtype : numpy dtype

    The constants are buffers, not trained parameters; the backward pass splits ``dy`` and
    returns the computed inputs' parts (one array, or a tuple for several inputs).
    """

    def __init__(self, axis, slots, dtype=np.float32):
        super().__init__()
        slots = [None if v is None else [int(n) for n in v] for v in slots]
        if all(v is None for v in slots) or all(v is not None for v in slots):
            raise ValueError(f"ConcatConstant: argument 'slots' must mix computed inputs (None) "
                             f"and constant shapes, got {slots}")
        self._config = dict(axis=int(axis), slots=slots)
        k = 0
        for v in slots:
            if v is not None:
                self._buffer(f"constant{k}", np.zeros(v, dtype))
                k += 1
        self._sizes = None

    def forward(self, *xs):
        slots = self._config["slots"]
        if len(xs) != sum(v is None for v in slots):
            raise ValueError(f"ConcatConstant.forward: expected {sum(v is None for v in slots)} "
                             f"inputs, got {len(xs)}")
        xs = [_host("ConcatConstant.forward", x) for x in xs]
        it, k, parts = iter(xs), 0, []
        for v in slots:
            if v is None:
                parts.append(next(it))
            else:
                parts.append(self._buffers[f"constant{k}"].astype(xs[0].dtype, copy=False))
                k += 1
        axis = self._config["axis"]
        try:
            y = np.concatenate(parts, axis=axis)
        except ValueError:
            raise ValueError(f"ConcatConstant.forward: operands of shapes "
                             f"{[p.shape for p in parts]} do not concatenate along axis "
                             f"{axis}") from None
        self._sizes = [p.shape[axis] for p in parts]
        return y

    def backward(self, dy):
        if self._sizes is None:
            raise _no_cache("ConcatConstant")
        pieces = np.split(np.asarray(dy), np.cumsum(self._sizes)[:-1],
                          axis=self._config["axis"])
        grads = tuple(np.ascontiguousarray(p) for p, v in zip(pieces, self._config["slots"])
                      if v is None)
        return grads[0] if len(grads) == 1 else grads


@register
class MatMul(Module):
    """``x @ matrix`` (``side="right"``) or ``matrix @ x`` (``side="left"``) with a fixed
    matrix, broadcast as ``numpy.matmul``.

    The matrix is a buffer, not a trained parameter: nbconv exports an adaptive average pool
    as two such products, and an ONNX product with a constant matrix that is not a
    fully-connected layer is usually one of those.  ``backward`` returns ``dx`` only.
    """

    def __init__(self, shape, side="right", dtype=np.float32):
        super().__init__()
        if side not in ("left", "right"):
            raise ValueError(f"MatMul: argument 'side' must be 'left' or 'right', got {side!r}")
        shape = [int(s) for s in shape]
        if len(shape) < 2 or math.prod(shape) < 1:
            raise ValueError(f"MatMul: argument 'shape' must have >= 2 positive sizes, got "
                             f"{shape}")
        self._config = dict(shape=shape, side=side)
        self._buffer("matrix", np.zeros(shape, dtype))
        self._shape = None

    def forward(self, x):
        x = _host("MatMul.forward", x)
        m = self._buffers["matrix"].astype(x.dtype, copy=False)
        try:
            y = np.matmul(x, m) if self._config["side"] == "right" else np.matmul(m, x)
        except ValueError:
            raise ValueError(f"MatMul.forward: input x of shape {x.shape} does not fit the "
                             f"{self._config['side']} matrix of shape {m.shape}") from None
        self._shape = x.shape
        return y

    def backward(self, dy):
        if self._shape is None:
            raise _no_cache("MatMul")
        dy = np.asarray(dy)
        mt = np.swapaxes(self._buffers["matrix"].astype(dy.dtype, copy=False), -1, -2)
        dx = np.matmul(dy, mt) if self._config["side"] == "right" else np.matmul(mt, dy)
        # undo broadcasting over leading axes the input did not have
        while dx.ndim > len(self._shape):
            dx = dx.sum(axis=0)
        for axis, n in enumerate(self._shape):
            if n == 1 and dx.shape[axis] != 1:
                dx = dx.sum(axis=axis, keepdims=True)
        return dx


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the axes broadcasting added to an operand of ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


@register
class Arithmetic(Module):
    """``x op c`` (``side="right"``) or ``c op x`` (``side="left"``) with a fixed constant
    ``c`` broadcast as NumPy does (the output may be larger than ``x``; the backward pass
    sums the gradient back to ``x``'s shape); ``op`` in ``{"add", "sub", "mul", "div"}``.

    ONNX ``Add``/``Sub``/``Mul``/``Div`` nodes with one constant operand (an input
    normalisation written in a model's ``forward``, a scale) become this layer; the constant
    is a buffer, not a trained parameter.
    """

    _OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}

    def __init__(self, op, shape, side="right", dtype=np.float32):
        super().__init__()
        if op not in self._OPS or side not in ("left", "right"):
            raise ValueError(f"Arithmetic: 'op' must be one of {sorted(self._OPS)} and 'side' "
                             f"'left' or 'right', got {op!r}, {side!r}")
        self._config = dict(op=op, shape=[int(n) for n in shape], side=side)
        self._buffer("constant", np.zeros(self._config["shape"], dtype))
        self._x = None

    def forward(self, x):
        x = _host("Arithmetic.forward", x)
        c = self._buffers["constant"].astype(x.dtype, copy=False)
        fn = self._OPS[self._config["op"]]
        try:
            y = fn(x, c) if self._config["side"] == "right" else fn(c, x)
        except ValueError:
            raise ValueError(f"Arithmetic.forward: the constant of shape {c.shape} does not "
                             f"broadcast with input x of shape {x.shape}") from None
        self._x = x if self._keep() else None
        return y.astype(x.dtype, copy=False)

    def backward(self, dy):
        if self._x is None:
            raise _no_cache("Arithmetic")
        dy = np.asarray(dy)
        c = self._buffers["constant"].astype(dy.dtype, copy=False)
        op, right = self._config["op"], self._config["side"] == "right"
        if op == "add" or (op == "sub" and right):
            dx = dy
        elif op == "sub":
            dx = -dy
        elif op == "mul":
            dx = dy * c
        elif right:
            dx = dy / c
        else:
            dx = -dy * c / (self._x * self._x)
        return np.ascontiguousarray(_unbroadcast(dx, self._x.shape).astype(dy.dtype, copy=False))


# -- ONNX pooling beyond PyTorch's: per-side pads, auto_pad, dilated averages ----------------
_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _int_list(op: str, name: str, value, n: int, minimum: int) -> list[int]:
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: argument {name!r} must be a list of ints, got {value!r}") from None
    if len(out) != n or any(v < minimum for v in out):
        raise ValueError(f"{op}: argument {name!r} must hold {n} ints >= {minimum}, got {out}")
    return out


class _OnnxPool(Module):
    """Shared attributes, output-size rule and padding of :class:`MaxPool` and
    :class:`AveragePool` (ONNX's attribute names and semantics)."""

    _fill = 0.0

    def __init__(self, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=False,
                 auto_pad="NOTSET"):
        super().__init__()
        op = type(self).__name__
        try:
            nd = len(kernel_shape)
        except TypeError:
            raise TypeError(f"{op}: argument 'kernel_shape' must be a list of ints, got "
                            f"{kernel_shape!r}") from None
        if nd not in (1, 2):
            raise ValueError(f"{op}: only 1-D and 2-D pooling is supported, got kernel_shape "
                             f"{list(kernel_shape)}")
        k = _int_list(op, "kernel_shape", kernel_shape, nd, 1)
        s = _int_list(op, "strides", [1] * nd if strides is None else strides, nd, 1)
        d = _int_list(op, "dilations", [1] * nd if dilations is None else dilations, nd, 1)
        if auto_pad not in _AUTO_PADS:
            raise ValueError(f"{op}: argument 'auto_pad' must be one of {_AUTO_PADS}, got "
                             f"{auto_pad!r}")
        p = _int_list(op, "pads", [0] * 2 * nd if pads is None or auto_pad != "NOTSET"
                      else pads, 2 * nd, 0)
        if any(p[i] >= k[i] or p[nd + i] >= k[i] for i in range(nd)):
            # (ONNX Runtime's rule too) a first or last window would cover padding only
            raise ValueError(f"{op}: argument 'pads' {p} must be smaller than the kernel "
                             f"{k} on each side")
        if auto_pad.startswith("SAME") and (any(v != 1 for v in d) or ceil_mode):
            # ONNX's reference and ONNX Runtime disagree there (the reference refuses ceil_mode
            # with auto_pad; they place dilated "same" windows differently)
            raise ValueError(f"{op}: auto_pad {auto_pad!r} with dilations {d} and ceil_mode="
                             f"{bool(ceil_mode)} is not supported (only dilation 1, floor mode)")
        self._config = dict(kernel_shape=k, strides=s, pads=p, dilations=d,
                            ceil_mode=bool(ceil_mode), auto_pad=auto_pad)
        self._cache = None

    def plan(self, sizes) -> list[tuple[int, int, int, int]]:
        """``(out, begin, length, extent)`` per spatial axis of sizes ``sizes``: the output
        size, the padding before the input, the padded length the windows span, and where the
        padding given by the attributes ends (windows are clipped there, as ONNX's)."""
        cfg, op = self._config, type(self).__name__
        nd = len(cfg["kernel_shape"])
        out = []
        for i, n in enumerate(sizes):
            k, s, d = cfg["kernel_shape"][i], cfg["strides"][i], cfg["dilations"][i]
            ek = d * (k - 1) + 1
            if cfg["auto_pad"].startswith("SAME"):
                o = -(-n // s)
                total = max(0, (o - 1) * s + ek - n)
                begin = total // 2 if cfg["auto_pad"] == "SAME_UPPER" else total - total // 2
                end = total - begin
            else:
                begin, end = cfg["pads"][i], cfg["pads"][nd + i]
                span = n + begin + end - ek
                if span < 0:
                    raise ValueError(f"{op}.forward: spatial axis {i} of input x has size {n}, "
                                     f"smaller than the window ({ek}) with the padding "
                                     f"{(begin, end)}")
                o = span // s + 1
                if cfg["ceil_mode"]:
                    o = -(-span // s) + 1
                    if (o - 1) * s >= n + begin:  # the last window must start before the pads
                        o -= 1
            out.append((o, begin, (o - 1) * s + ek, n + begin + end))
        return out

    def _input(self, x) -> np.ndarray:
        x = _host(f"{type(self).__name__}.forward", x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)
        nd = len(self._config["kernel_shape"])
        if x.ndim != nd + 2 or 0 in x.shape[2:]:
            raise ValueError(f"{type(self).__name__}.forward: input x must have {nd + 2} axes "
                             f"(N, C, {'H, W' if nd == 2 else 'L'}) with a non-empty "
                             f"{'plane' if nd == 2 else 'row'}, got shape {x.shape}")
        return x

    @staticmethod
    def _overlap(plan, sizes) -> tuple[tuple, tuple]:
        """(slices into the padded array, slices into the input) of the input elements that
        the windows reach."""
        dst, src = [], []
        for (_, begin, length, _), n in zip(plan, sizes):
            m = min(n, length - begin)
            dst.append(slice(begin, begin + m))
            src.append(slice(0, m))
        return (Ellipsis, *dst), (Ellipsis, *src)

    def _padded(self, x, plan) -> np.ndarray:
        xp = np.full(x.shape[:2] + tuple(p[2] for p in plan), self._fill, x.dtype)
        dst, src = self._overlap(plan, x.shape[2:])
        xp[dst] = x[src]
        return xp

    def _crop(self, dxp, shape, plan) -> np.ndarray:
        dx = np.zeros(shape, dxp.dtype)
        dst, src = self._overlap(plan, shape[2:])
        dx[src] = dxp[dst]
        return dx


@register
class MaxPool(_OnnxPool):
    """ONNX ``MaxPool`` where PyTorch's ``MaxPool1d/2d`` cannot express it: pads that differ
    per side or exceed half the kernel, and ``auto_pad`` ``SAME_UPPER``/``SAME_LOWER``
    (computed for each input's size, as ONNX's).

    Parameters
    ----------
    kernel_shape : list of int
        One or two window sizes: input (N, C, L) or (N, C, H, W).
    strides, dilations : list of int, optional
        One per spatial axis; default 1.
    pads : list of int, optional
        ONNX's order ``[begin_0, begin_1, end_0, end_1]``, each smaller than the kernel;
        ignored unless ``auto_pad`` is ``"NOTSET"``.
    ceil_mode : bool
        Output size ``ceil((L + pads - d(k-1) - 1) / s) + 1``, minus one if the last window
        would start in the end padding (floor without it).
    auto_pad : {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
        ``SAME_*``: output ``ceil(L / s)``, the odd padding element at the end (UPPER) or
        the beginning (LOWER), no padding where a stride beyond the kernel would make it
        negative (TensorFlow's rule; ONNX Runtime raises there); dilation 1 and floor mode
        only.

    The input is padded with ``-inf`` and pooled without padding by
    :func:`nbconv.max_pool2d`; the backward pass routes ``dy`` to each window's maximum and
    crops the padding.  A window covering padding only (possible with dilation) gives
    ``-inf``.

    >>> import numpy as np
    >>> from nbconv.onnx.layers import MaxPool
    >>> MaxPool([2], auto_pad="SAME_UPPER")(np.array([[[1.0, 3.0, 2.0]]])).tolist()
    [[[3.0, 3.0, 2.0]]]
    """

    _fill = -np.inf

    def forward(self, x):
        x = self._input(x)
        plan = self.plan(x.shape[2:])
        xp = self._padded(x, plan)
        cfg = self._config
        one = len(plan) == 1  # (N, C, L) as the image (N, C, 1, L)
        img = xp[:, :, None, :] if one else xp
        pre = [1] if one else []
        out = F.max_pool2d(img, pre + cfg["kernel_shape"], pre + cfg["strides"], 0,
                           pre + cfg["dilations"], return_indices=self._keep())
        y, self._cache = (out[0], (out[1], img.shape, x.shape, plan)) if self._keep() else (
            out, None)
        return y[:, :, 0, :] if one else y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache("MaxPool")
        idx, img_shape, shape, plan = self._cache
        dy = np.asarray(dy)
        one = len(plan) == 1
        dxp = F.max_pool2d_backward(dy[:, :, None, :] if one else dy, idx, img_shape)
        return self._crop(dxp[:, :, 0, :] if one else dxp, shape, plan)


@register
class AveragePool(_OnnxPool):
    """ONNX ``AveragePool`` where PyTorch's ``AvgPool1d/2d`` cannot express it: pads that
    differ per side or exceed half the kernel, ``auto_pad`` ``SAME_UPPER``/``SAME_LOWER``,
    and ``dilations``.

    Parameters
    ----------
    kernel_shape, strides, pads, dilations, ceil_mode, auto_pad
        As :class:`MaxPool`.
    count_include_pad : bool
        Divide by the window's taps inside the input and the padding that ``pads`` (or
        ``auto_pad``) give (True), or inside the input only (False, ONNX's default); taps
        that ``ceil_mode`` adds beyond the padding never count.

    ``y = sum over the window's taps / count``, the taps summed as strided slices of the
    zero-padded input (one per kernel position); the backward pass adds ``dy / count`` back
    through the same slices.  A window with no tap in the input gives NaN when the padding
    does not count.

    >>> import numpy as np
    >>> from nbconv.onnx.layers import AveragePool
    >>> AveragePool([2], auto_pad="SAME_UPPER")(np.array([[[1.0, 3.0, 2.0]]])).tolist()
    [[[2.0, 2.5, 2.0]]]
    """

    def __init__(self, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=False,
                 auto_pad="NOTSET", count_include_pad=False):
        super().__init__(kernel_shape, strides, pads, dilations, ceil_mode, auto_pad)
        self._config["count_include_pad"] = bool(count_include_pad)

    def _taps(self, plan, sizes):
        """Each kernel position's strided slices of the padded input, and the divisor of
        every output (shape (OH, OW) or (OL,))."""
        cfg = self._config
        per_axis, counts = [], []
        for (o, begin, _, extent), k, s, d, n in zip(
                plan, cfg["kernel_shape"], cfg["strides"], cfg["dilations"], sizes):
            per_axis.append([slice(j * d, j * d + (o - 1) * s + 1, s) for j in range(k)])
            at = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d  # padded positions
            inside = (at < extent if cfg["count_include_pad"]
                      else (at >= begin) & (at < begin + n))
            counts.append(inside.sum(axis=1))
        count = counts[0]
        for c in counts[1:]:
            count = np.multiply.outer(count, c)
        return [(Ellipsis, *t) for t in itertools.product(*per_axis)], count

    def forward(self, x):
        x = self._input(x)
        plan = self.plan(x.shape[2:])
        xp = self._padded(x, plan)
        taps, count = self._taps(plan, x.shape[2:])
        total = np.zeros(x.shape[:2] + tuple(p[0] for p in plan), x.dtype)
        for t in taps:
            total += xp[t]
        with np.errstate(invalid="ignore", divide="ignore"):  # no tap inside: NaN, as ONNX
            y = total / count.astype(x.dtype)
        self._cache = (x.shape, plan, count.astype(x.dtype)) if self._keep() else None
        return y

    def backward(self, dy):
        if self._cache is None:
            raise _no_cache("AveragePool")
        shape, plan, count = self._cache
        dy = np.asarray(dy)
        taps, _ = self._taps(plan, shape[2:])
        g = dy / count
        dxp = np.zeros(shape[:2] + tuple(p[2] for p in plan), dy.dtype)
        for t in taps:
            dxp[t] += g
        return self._crop(dxp, shape, plan)

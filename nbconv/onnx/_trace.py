"""A PyTorch-style module -> an ``nn.Graph`` that the exporter can write.

A module whose ``forward`` has no hand-written ``backward`` is recorded as it runs
(:mod:`nbconv.recording`): every module call, functional op and array operation on a
recorded array becomes a record.  :func:`trace` runs the forward pass once in eval mode and
rebuilds those records as the nodes of a :class:`nbconv.nn.Graph`: a module call is a node
holding that module, an op is the nbconv layer that computes it (``nc.relu`` -> ``ReLU``,
``a + b`` -> ``Add``, ``np.concatenate(..., axis=1)`` -> ``Concat``, ``reshape(N, -1)`` ->
``Flatten``, ``0.5 * x`` -> :class:`~nbconv.onnx.layers.Arithmetic`, ...), and the few array
operations no layer performs (a product of two computed arrays, a transpose, a sum) are a
:class:`TracedOp`.  The graph is then checked against the module on a random input, so that a
forward pass whose path depends on its input's values (an ``if`` on them) raises instead of
giving a file that computes something else.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import nn as _nn
from ..nn import _recorded
from ..recording import Node, TrackedArray, enable_grad
from ..recording.graph import Boundary
from . import layers as _ox

__all__ = ["trace", "is_traceable", "TracedOp"]

_BIG = 2**63 - 1  # an open end of an ONNX Slice (clamped to the axis)


def is_traceable(module) -> bool:
    """Whether ``module``'s forward pass is recorded op by op (no hand-written ``backward``
    covers it), so that :func:`trace` can turn it into a graph."""
    cls = type(module)
    defining = _recorded.defining_class(cls, "forward")
    return (defining is not None and defining is not _nn.Module
            and not _recorded._has_own_backward(cls, defining))


class TracedOp(_nn.Module):
    """An array operation of a traced forward pass that no nbconv layer performs.

    Only the exporter uses it: ``forward`` computes the operation with NumPy, and the
    exporter writes the ONNX node of the same name.

    Parameters
    ----------
    op : {"Add", "Sub", "Mul", "Div", "MatMul", "Neg", "Transpose", "ReduceSum", "ReduceMean"}
        The ONNX operator; the binary ones broadcast as NumPy (and ONNX) do.
    **attrs
        ``perm`` (Transpose); ``axes``, ``keepdims`` (ReduceSum, ReduceMean).
    """

    _FUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide,
              "MatMul": np.matmul, "Neg": np.negative}

    def __init__(self, op, **attrs):
        super().__init__()
        if op not in self._FUNCS and op not in ("Transpose", "ReduceSum", "ReduceMean"):
            raise ValueError(f"TracedOp: unknown argument 'op' {op!r}")
        self._config = dict(op=op, **attrs)

    def forward(self, *xs):
        cfg = self._config
        op = cfg["op"]
        if op == "Transpose":
            return np.ascontiguousarray(np.transpose(xs[0], cfg["perm"]))
        if op in ("ReduceSum", "ReduceMean"):
            reduce = np.mean if op == "ReduceMean" else np.sum
            return np.asarray(reduce(xs[0], axis=tuple(cfg["axes"]), keepdims=cfg["keepdims"]))
        return self._FUNCS[op](*xs)

    def backward(self, dy):
        raise NotImplementedError("TracedOp only carries an operation to the ONNX exporter; "
                                  "it has no backward pass")


class _Value:
    """A traced value: the output of graph node ``name`` ("input" for the graph input), or a
    constant (``name`` None) such as a parameter's data."""

    __slots__ = ("value", "name")

    def __init__(self, value, name=None):
        self.value, self.name = value, name

    @property
    def const(self) -> bool:
        return self.name is None


class _Tracer:
    """Turns the records of one forward pass into the nodes of a graph."""

    def __init__(self, model, root, x):
        self.model_name = type(model).__name__
        self.root, self.x = root, x
        self.dtype = x.dtype
        self.graph = _nn.Graph()
        self.paths = {}  # graph node name -> what the exporter calls it (a dotted path)
        self.used = set()  # ids of the modules already in the graph
        self.module_paths = {id(m): p for p, m in model.named_modules() if p}
        self.values: dict = {}

    # -- errors --------------------------------------------------------------------
    def fail(self, node, why: str, hint: str = "") -> ValueError:
        where = f"the call of {node.name}" if isinstance(node.info, _nn.Module) else node.name
        return ValueError(f"export: {self.model_name}.forward: {where} {why}"
                          + (f"; {hint}" if hint else ""))

    # -- the walk --------------------------------------------------------------------
    def build(self, y) -> _nn.Graph:
        if isinstance(y, (tuple, list)):
            raise ValueError(f"export: {self.model_name}.forward returns {len(y)} values; "
                             "export writes a model with one output")
        node = getattr(y, "_node", None)
        if type(y) is not TrackedArray or not isinstance(node, Node):
            raise ValueError(
                f"export: the output of {self.model_name}.forward was not recorded (a plain "
                "array, or a value computed by something nbconv does not record), so the "
                "computation cannot be traced; return what nbconv's layers and ops computed")
        for n in _reachable(node):
            self.values[n] = self.convert(n)
        out = self.values[node]
        if out.const:
            raise ValueError(f"export: the output of {self.model_name}.forward does not "
                             "depend on its input")
        if out.name == _nn.Graph.INPUT:
            self.add("identity", _nn.Identity(), [out])
        self.graph.output = out.name if out.name != _nn.Graph.INPUT else "identity"
        self.graph._onnx_paths = self.paths
        return self.graph

    def operand(self, node, i, constants=None) -> _Value | None:
        """Parent ``i`` of ``node``: its traced value, a parameter's data, a constant operand
        kept in ``constants`` (a ufunc's), or None (a plain array the record does not keep)."""
        p = node.parents[i]
        if isinstance(p, Node):
            return self.values[p]
        if p is not None:
            return _Value(np.asarray(p.data))  # a parameter: its value now
        if constants is not None and constants[i] is not None:
            return _Value(np.asarray(constants[i]))
        return None

    def add(self, base: str, layer, ins, node=None) -> _Value:
        """Add ``layer`` reading ``ins`` as a node named after ``base``; all-constant inputs
        give a constant (computed now)."""
        try:
            with _nn.no_grad():
                y = layer(*[v.value for v in ins])
        except (ValueError, TypeError) as e:
            if node is None:
                raise
            raise self.fail(node, f"could not be rebuilt as {type(layer).__name__}: {e}") from e
        if all(v.const for v in ins):
            return _Value(y)
        if any(v.const for v in ins):
            raise self.fail(node, "mixes the model's input with a constant array",
                            "export writes constant operands only for +, -, *, / and @")
        name = _unique(base.replace(".", "_"), self.graph._inputs)
        display = base if base not in self.paths.values() else name
        self.graph.add(name, layer, *[v.name for v in ins])
        self.paths[name] = display
        self.used.add(id(layer))
        return _Value(y, name)

    def convert(self, node) -> _Value:
        if type(node) is Boundary:
            if node is self.root:
                return _Value(self.x, _nn.Graph.INPUT)
            src = self.operand(node, 0)
            if src is None:
                raise self.fail(node, "is a plain array, not computed from the model's input",
                                "export traces a model with one input")
            return src
        if isinstance(node.info, _nn.Module):
            return self.module_call(node)
        info = node.info if isinstance(node.info, dict) else {}
        handler = _handler(node.name, info)
        if handler is None:
            raise self.fail(node, "has no ONNX form in nbconv's exporter",
                            "use nbconv layers or the ops nc.relu, nc.sigmoid, nc.tanh, "
                            "nc.softmax, nc.log_softmax, nc.conv2d, nc.linear, the pools, "
                            "nc.cat, nc.flatten, + - * / @, reshape, transpose, slicing, "
                            "np.concatenate, sum and mean")
        return handler(self, node, info)

    # -- module calls ------------------------------------------------------------------
    def module_call(self, node) -> _Value:
        m = node.info
        ins = [self.operand(node, i) for i in range(len(node.parents))]
        if any(v is None for v in ins):
            raise self.fail(node, "has a plain array argument (not computed from the model's "
                            "input), whose value the record does not keep")
        if isinstance(m, _nn.Identity) and len(ins) == 1:
            return ins[0]
        layer = m
        if is_traceable(m):
            # a subclass that overrides only forward: the record is its super().forward,
            # the forward of the class whose backward covers it
            layer = copy.copy(m)
            layer.__class__ = _recorded.defining_class(type(m), "backward")
        elif id(m) in self.used:
            # the same module called again: a second handle on its parameters (a shallow
            # copy: the graph holds each instance once, the weights stay shared)
            layer = copy.copy(m)
        base = self.module_paths.get(id(m), type(m).__name__.lower())
        return self.add(base, layer, ins, node)

    # -- op records --------------------------------------------------------------------
    def one(self, node, layer, base=None) -> _Value:
        x = self.operand(node, 0)
        if x is None:
            raise self.fail(node, "reads a plain array whose value the record does not keep")
        return self.add(base or node.name, layer, [x], node)

    def weights(self, node, what) -> list:
        """The weight (and bias) operands of a conv/linear/batch-norm record as arrays
        (None where absent)."""
        out = []
        for i, label in ((1, "weight"), (2, "bias")):
            v = self.operand(node, i)
            if v is not None and not v.const:
                raise self.fail(node, f"has a {label} computed from the model's input",
                                "export writes fixed weights only")
            if v is None and i == 1 and what != "batch_norm":
                raise self.fail(node, "has a plain-array weight, whose value the record does "
                                "not keep", "make it an nn.Parameter (or call an nbconv layer)")
            out.append(None if v is None else v.value)
        return out

    def conv(self, node, info) -> _Value:
        w, b = self.weights(node, node.name)
        cls = _nn.Conv2d if node.name == "conv2d" else _nn.Conv1d
        groups = info["groups"]
        layer = cls(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=info["stride"],
                    padding=info["padding"], dilation=info["dilation"], groups=groups,
                    bias=b is not None, padding_mode=info["padding_mode"], dtype=w.dtype)
        _set(layer, w, b)
        return self.one(node, layer)

    def linear(self, node, info) -> _Value:
        w, b = self.weights(node, "linear")
        layer = _nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
        _set(layer, w, b)
        return self.one(node, layer)

    def batch_norm(self, node, info) -> _Value:
        if info["training"] or info["running_mean"] is None:
            raise self.fail(node, "normalises with the batch's statistics",
                            "pass training=False and the running statistics (eval mode)")
        w, b = self.weights(node, "batch_norm")
        x = self.operand(node, 0)
        mean = np.asarray(info["running_mean"])
        cls = _nn.BatchNorm2d if x is not None and np.ndim(x.value) == 4 else _nn.BatchNorm1d
        layer = cls(mean.size, eps=info["eps"], momentum=info["momentum"],
                    dtype=mean.dtype)
        _set(layer, w if w is not None else np.ones(mean.size, mean.dtype),
             b if b is not None else np.zeros(mean.size, mean.dtype))
        layer._buffers["running_mean"] = mean
        layer._buffers["running_var"] = np.asarray(info["running_var"])
        return self.one(node, layer)

    def dropout(self, node, info) -> _Value:
        if info["training"] and info["p"] > 0:
            raise self.fail(node, "drops values even in eval mode (training=True)",
                            "pass training=self.training to nc.dropout, or use nn.Dropout")
        return self.pass_through(node, info)

    def pass_through(self, node, info) -> _Value:
        x = self.operand(node, 0)
        if x is None:
            raise self.fail(node, "reads a plain array whose value the record does not keep")
        return x

    def join(self, node, info) -> _Value:
        axis = info["dim"] if "dim" in info else info["axis"]
        ins = [self.operand(node, i) for i in range(len(node.parents))]
        if any(v is None for v in ins):
            raise self.fail(node, "joins a plain array, whose value the record does not keep")
        if info.get("stack"):
            ins = [self.add("unsqueeze", _ox.Unsqueeze([axis]), [v], node) for v in ins]
        return self.add("concat", _nn.Concat(axis=axis), ins, node)

    def ufunc(self, node, info) -> _Value:
        constants = info.get("constants")
        ins = [self.operand(node, i, constants) for i in range(len(node.parents))]
        if any(v is None for v in ins):
            raise self.fail(node, "reads an operand whose value the record does not keep")
        op = _UFUNCS[node.name]
        if op == "Pos":
            return ins[0]
        if all(v.const for v in ins) or len(ins) == 1:
            return self.add(op.lower(), TracedOp(op), ins, node)
        a, b = ins
        if not a.const and not b.const:
            same = np.shape(a.value) == np.shape(b.value)
            layer = _nn.Add() if op == "Add" and same else TracedOp(op)
            return self.add(op.lower(), layer, ins, node)
        x, c = (a, b) if b.const else (b, a)
        side = "right" if b.const else "left"
        c = np.asarray(c.value, dtype=self.dtype)
        if op == "MatMul":
            layer = _ox.MatMul(c.shape, side, dtype=self.dtype)
            layer._buffers["matrix"] = c
        else:
            layer = _ox.Arithmetic(op.lower(), c.shape, side, dtype=self.dtype)
            layer._buffers["constant"] = c
        return self.add(op.lower(), layer, [x], node)

    def reshape(self, node, info) -> _Value:
        if info["order"] != "C":
            raise self.fail(node, f"reshapes in order {info['order']!r}",
                            "ONNX Reshape reads and writes in C order only")
        x = self.operand(node, 0)
        if x is None:
            raise self.fail(node, "reads a plain array whose value the record does not keep")
        shape, out = np.shape(x.value), tuple(info["shape"])
        if out == shape:
            return x
        if len(shape) >= 2 and len(out) == 2 and out[0] == shape[0]:
            return self.add("flatten", _nn.Flatten(), [x], node)
        # keep the batch axis open in the file: 0 copies it, -1 infers the leading size
        lead = 0 if out and shape and out[0] == shape[0] else -1
        target = [lead, *out[1:]] if out else []
        return self.add("reshape", _ox.Reshape(target), [x], node)

    def transpose(self, node, info) -> _Value:
        perm = [int(a) for a in info["axes"]]
        if perm == sorted(perm):
            return self.pass_through(node, info)
        return self.one(node, TracedOp("Transpose", perm=perm), "transpose")

    def reduce(self, node, info) -> _Value:
        x = self.operand(node, 0)
        axes, keep, mean = [int(a) for a in info["axes"]], bool(info["keepdims"]), info["mean"]
        if mean and x is not None and np.ndim(x.value) == 4 and sorted(axes) == [2, 3]:
            return self.one(node, _nn.GlobalAvgPool2d(keepdims=keep), "mean")
        op = "ReduceMean" if mean else "ReduceSum"
        return self.one(node, TracedOp(op, axes=axes, keepdims=keep), op[6:].lower())

    def getitem(self, node, info) -> _Value:
        x = self.operand(node, 0)
        if x is None:
            raise self.fail(node, "reads a plain array whose value the record does not keep")
        items = _index_items(info["key"], np.ndim(x.value))
        if items is None:
            raise self.fail(node, "uses advanced indexing (an array, a list or a boolean "
                            "index)", "export writes slices, integers, None and ... only")
        starts, ends, axes, steps, drop, new = [], [], [], [], [], []
        axis = out = 0
        for k in items:
            if k is None:
                new.append(out)
                out += 1
                continue
            if isinstance(k, slice):
                step = 1 if k.step is None else int(k.step)
                if (k.start, k.stop, step) != (None, None, 1):
                    starts.append((0 if step > 0 else -1) if k.start is None else int(k.start))
                    ends.append((_BIG if step > 0 else -_BIG - 1) if k.stop is None
                                else int(k.stop))
                    axes.append(axis)
                    steps.append(step)
                out += 1
            else:  # an integer: a slice of one, then that axis squeezed
                i = int(k)
                starts.append(i)
                ends.append(_BIG if i == -1 else i + 1)
                axes.append(axis)
                steps.append(1)
                drop.append(axis)
            axis += 1
        v = x
        if axes:
            v = self.add("slice", _ox.Slice(starts, ends, axes, steps), [v], node)
        if drop:
            v = self.add("squeeze", _ox.Squeeze(drop), [v], node)
        if new:
            v = self.add("unsqueeze", _ox.Unsqueeze(new), [v], node)
        return v

    def astype(self, node, info) -> _Value:
        if np.dtype(info["dtype"]) != self.dtype:
            raise self.fail(node, f"casts to {np.dtype(info['dtype']).name} in a "
                            f"{self.dtype.name} model", "export writes one float type")
        return self.pass_through(node, info)


def _set(layer, weight, bias) -> None:
    layer.weight.data = np.ascontiguousarray(weight)
    if bias is not None:
        layer.bias.data = np.ascontiguousarray(bias)


def _unique(base: str, taken) -> str:
    name, i = base, 1
    while name in taken or name == _nn.Graph.INPUT:
        name, i = f"{base}_{i}", i + 1
    return name


def _reachable(out) -> list:
    """The records ``out`` was computed from, in the order they ran (topological)."""
    seen, todo = set(), [out]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(p for p in n.parents if isinstance(p, Node) and p not in seen)
    return sorted(seen, key=lambda n: n.seq)


def _index_items(key, ndim):
    """``key`` as one item per input axis (None for a new axis), ``...`` expanded; None for
    an index that is not made of slices, integers, None and ``...``."""
    items = list(key) if isinstance(key, tuple) else [key]
    for k in items:
        if isinstance(k, (bool, np.bool_)) or not (
                k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))):
            return None
    used = sum(k is not None and k is not Ellipsis for k in items)
    if Ellipsis in items:
        i = items.index(Ellipsis)
        items[i:i + 1] = [slice(None)] * (ndim - used)
    else:
        items += [slice(None)] * (ndim - used)
    return items


#: ufunc records -> ONNX operators ("Pos": unary plus, nothing to write)
_UFUNCS = {"np.add": "Add", "np.subtract": "Sub", "np.multiply": "Mul", "np.true_divide": "Div",
           "np.divide": "Div", "np.matmul": "MatMul", "np.negative": "Neg", "np.positive": "Pos"}


def _activation(make):
    return lambda t, node, info: t.one(node, make(info))


_FUNCTIONAL = {
    "relu": _activation(lambda i: _nn.ReLU()),
    "leaky_relu": _activation(lambda i: _nn.LeakyReLU(i["negative_slope"])),
    "sigmoid": _activation(lambda i: _nn.Sigmoid()),
    "tanh": _activation(lambda i: _nn.Tanh()),
    "softmax": _activation(lambda i: _nn.Softmax(dim=i["axis"])),
    "log_softmax": _activation(lambda i: _ox.LogSoftmax(dim=i["axis"])),
    "max_pool2d": _activation(lambda i: _nn.MaxPool2d(
        i["kernel_size"], i["stride"], i["padding"], i["dilation"], ceil_mode=i["ceil_mode"])),
    "adaptive_avg_pool2d": _activation(lambda i: _nn.AdaptiveAvgPool2d(i["output_size"])),
    "global_avg_pool2d": _activation(lambda i: _nn.GlobalAvgPool2d(i["keepdims"])),
    "local_response_norm": _activation(lambda i: _nn.LocalResponseNorm(
        i["size"], i["alpha"], i["beta"], i["k"])),
    "flatten": _activation(lambda i: _nn.Flatten(i["start_dim"], i["end_dim"])),
    "conv2d": _Tracer.conv, "conv1d": _Tracer.conv, "linear": _Tracer.linear,
    "batch_norm": _Tracer.batch_norm, "dropout": _Tracer.dropout, "cat": _Tracer.join,
}


def _conv_transpose(t, node, info):
    w, b = t.weights(node, node.name)
    cls = _nn.ConvTranspose2d if node.name == "conv_transpose2d" else _nn.ConvTranspose1d
    groups = info["groups"]
    layer = cls(w.shape[0], w.shape[1] * groups, w.shape[2:], stride=info["stride"],
                padding=info["padding"], output_padding=info["output_padding"], groups=groups,
                bias=b is not None, dilation=info["dilation"], dtype=w.dtype)
    _set(layer, w, b)
    return t.one(node, layer)


_FUNCTIONAL.update(conv_transpose2d=_conv_transpose, conv_transpose1d=_conv_transpose)


def _avg_pool(t, node, info):
    if info["divisor_override"] is not None:
        raise t.fail(node, "has a divisor_override", "ONNX AveragePool has none")
    return t.one(node, _nn.AvgPool2d(info["kernel_size"], info["stride"], info["padding"],
                                     info["ceil_mode"], info["count_include_pad"]))


_FUNCTIONAL["avg_pool2d"] = _avg_pool

# the ops of nbconv.functional.pool1d / adaptive_pool / channel_dropout, as nbconv.nn.pooling
_FUNCTIONAL.update({
    "max_pool1d": _activation(lambda i: _nn.MaxPool1d(
        i["kernel_size"], i["stride"], i["padding"], i["dilation"], ceil_mode=i["ceil_mode"])),
    "avg_pool1d": _activation(lambda i: _nn.AvgPool1d(
        i["kernel_size"], i["stride"], i["padding"], i["ceil_mode"], i["count_include_pad"])),
    "adaptive_avg_pool1d": _activation(lambda i: _nn.AdaptiveAvgPool1d(i["output_size"])),
    "adaptive_max_pool1d": _activation(lambda i: _nn.AdaptiveMaxPool1d(i["output_size"])),
    "adaptive_max_pool2d": _activation(lambda i: _nn.AdaptiveMaxPool2d(i["output_size"])),
    "global_max_pool2d": _activation(lambda i: _nn.GlobalMaxPool2d(i["keepdims"])),
    "dropout1d": _Tracer.dropout, "dropout2d": _Tracer.dropout,
})

# nc.interpolate, as nn.Upsample (its recording rule keeps all the arguments in ``info``)
_FUNCTIONAL["interpolate"] = _activation(lambda i: _nn.Upsample(**i))


# the ops of nbconv.functional.norms, as the layers of nbconv.nn.norms
def _norm_affine(t, node, shape, dtype):
    """(weight, bias, affine) of a normalisation record: fixed arrays of ``shape`` (ones and
    zeros for an absent one), and whether it had either."""
    out = []
    for i, label in ((1, "weight"), (2, "bias")):
        v = t.operand(node, i)
        if v is not None and not v.const:
            raise t.fail(node, f"has a {label} computed from the model's input",
                         "export writes fixed weights only")
        out.append(None if v is None else np.asarray(v.value, dtype).reshape(shape))
    w, b = out
    affine = w is not None or b is not None
    return (np.ones(shape, dtype) if w is None else w,
            np.zeros(shape, dtype) if b is None else b, affine)


def _channels_of(t, node):
    x = t.operand(node, 0)
    if x is None:
        raise t.fail(node, "reads a plain array whose value the record does not keep")
    return np.shape(x.value), np.asarray(x.value).dtype


def _group_norm(t, node, info):
    shape, dtype = _channels_of(t, node)
    w, b, affine = _norm_affine(t, node, (shape[1],), dtype)
    layer = _nn.GroupNorm(info["num_groups"], shape[1], eps=info["eps"], affine=affine,
                          dtype=dtype)
    if affine:
        _set(layer, w, b)
    return t.one(node, layer)


def _instance_norm(t, node, info):
    shape, dtype = _channels_of(t, node)
    w, b, affine = _norm_affine(t, node, (shape[1],), dtype)
    if not info["use_input_stats"]:  # the running statistics: batch norm's inference form
        if info["running_mean"] is None or info["running_var"] is None:
            raise t.fail(node, "has use_input_stats=False without running statistics")
        cls = _nn.BatchNorm2d if len(shape) == 4 else _nn.BatchNorm1d
        layer = cls(shape[1], eps=info["eps"], dtype=dtype)
        layer._buffers["running_mean"] = np.asarray(info["running_mean"], dtype)
        layer._buffers["running_var"] = np.asarray(info["running_var"], dtype)
    elif len(shape) in (3, 4):
        cls = _nn.InstanceNorm2d if len(shape) == 4 else _nn.InstanceNorm1d
        layer = cls(shape[1], eps=info["eps"], affine=True, dtype=dtype)
    else:  # any other rank: the same normalisation
        layer = _nn.GroupNorm(shape[1], shape[1], eps=info["eps"], dtype=dtype)
    _set(layer, w, b)
    return t.one(node, layer)


def _layer_norm(t, node, info):
    ns = info["normalized_shape"]
    ns = (ns,) if isinstance(ns, (int, np.integer)) else tuple(ns)
    _, dtype = _channels_of(t, node)
    w, b, affine = _norm_affine(t, node, ns, dtype)
    layer = _nn.LayerNorm(ns, eps=info["eps"], elementwise_affine=affine, dtype=dtype)
    if affine:
        _set(layer, w, b)
    return t.one(node, layer)


_FUNCTIONAL.update({"group_norm": _group_norm, "instance_norm": _instance_norm,
                    "layer_norm": _layer_norm})

_FUNCTIONAL.update({
    "elu": _activation(lambda i: _nn.ELU(i["alpha"])),
    "selu": _activation(lambda i: _nn.SELU()),
    "celu": _activation(lambda i: _nn.CELU(i["alpha"])),
    "gelu": _activation(lambda i: _nn.GELU(i["approximate"])),
    "silu": _activation(lambda i: _nn.SiLU()),
    "mish": _activation(lambda i: _nn.Mish()),
    "hardswish": _activation(lambda i: _nn.Hardswish()),
    "hardsigmoid": _activation(lambda i: _nn.Hardsigmoid()),
    "relu6": _activation(lambda i: _nn.ReLU6()),
    "softplus": _activation(lambda i: _nn.Softplus(i["beta"], i["threshold"])),
})


def _handler(name: str, info: dict):
    """The method that rebuilds a record called ``name`` with ``info``, or None."""
    if name in _FUNCTIONAL and (name != "flatten" or "start_dim" in info):
        return _FUNCTIONAL[name]
    if "constants" in info:
        return _Tracer.ufunc if name in _UFUNCS else None
    for keys, handler in ((("shape", "order"), _Tracer.reshape), (("key",), _Tracer.getitem),
                          (("stack",), _Tracer.join), (("mean",), _Tracer.reduce),
                          (("axes",), _Tracer.transpose), (("dtype",), _Tracer.astype)):
        if all(k in info for k in keys):
            return handler
    if name in ("copy", "np.copy", "view"):
        return _Tracer.pass_through
    return None


def _restore(snapshot) -> None:
    """Put each module's attributes back exactly as they were (what the trace added goes)."""
    for m, d in snapshot:
        m.__dict__.clear()
        m.__dict__.update(d)


def _check(model, graph, shape, dtype) -> None:
    """Raise when ``graph`` and ``model`` disagree on a random input (a forward pass whose
    path depends on the values it reads)."""
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    with _nn.no_grad():
        want = np.asarray(model(x))
        got = np.asarray(graph(x))
    tol = float(np.sqrt(np.finfo(dtype).eps)) * max(1.0, float(np.nanmax(np.abs(want),
                                                                          initial=0.0)))
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=tol,
                                                  equal_nan=True):
        raise ValueError(
            f"export: the forward pass of {type(model).__name__} traced on zeros does not "
            "compute the same as on another input: its path depends on the input's values (an "
            "`if` or a loop on them, or values taken out with np.asarray), or it reads a plain "
            "array that its records do not keep (such as an nc.conv2d bias that is not an "
            "nn.Parameter); the file would compute something else, so nothing is written")


def _unrolled(container):
    """A forward for ``container`` (a Sequential or Graph) that calls its children one by one,
    so that each call is recorded on its own."""
    if isinstance(container, _nn.Sequential):
        def forward(x):
            for child in container._children.values():
                x = child(x)
            return x
    else:
        def forward(x):
            values = {container.INPUT: x}
            for name, child, srcs in container.nodes:
                values[name] = child(*[values[s] for s in srcs])
            return values[container._output_name()]
    return forward


def _unroll_containers(model) -> None:
    """Make the Sequential/Graph containers of ``model`` that hold a traced module call their
    children one by one (until :func:`_restore`).

    A container's call is one record, but when a module inside it is traced (its forward
    recorded) the container returns that module's recorded output instead of its own
    record's, which cuts the records off from the container's input.  Unrolled, every call
    is recorded in the container's place.
    """
    for _, m in model.named_modules():
        if (isinstance(m, (_nn.Sequential, _nn.Graph)) and not is_traceable(m)
                and any(is_traceable(c) for _, c in m.named_modules())):
            m.__dict__["forward"] = _unrolled(m)


def trace(model, x) -> _nn.Graph:
    """Rebuild the recorded forward pass of ``model`` on ``x`` as an :class:`nbconv.nn.Graph`.

    Parameters
    ----------
    model : nbconv.nn.Module
        A module whose ``forward`` has no hand-written ``backward`` (see
        :func:`is_traceable`); it runs once in eval mode, and its attributes (mode, caches,
        the last recorded forward pass) are restored afterwards.
    x : ndarray
        The input, batch included (the export uses zeros).

    Returns
    -------
    nbconv.nn.Graph
        One node per module call (a module called twice is two nodes; the second holds a
        shallow copy sharing its parameters) and per op, in the order they ran.  The graph
        is meant for :func:`nbconv.onnx.export` (it may hold :class:`TracedOp` nodes, which
        have no backward); its ``_onnx_paths`` maps node names to the modules' dotted paths.

    Raises
    ------
    ValueError
        For a record with no ONNX form (naming it and what to do), an output that was not
        recorded, several outputs, or a forward pass that computes differently on a random
        input than the traced graph does.
    """
    x = np.asarray(x)
    snapshot = _recorded.capture(model)
    try:
        model.eval()
        _unroll_containers(model)
        with enable_grad():
            y = model(x)
        call = model.__dict__.get("_recorded_call")
        root = call[0][0] if call and call[0] else None
        graph = _Tracer(model, root, x).build(y)
        graph.eval()
        _check(model, graph, x.shape, x.dtype)
    finally:
        _restore(snapshot)
    return graph

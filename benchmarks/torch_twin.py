"""The PyTorch twin of an nbconv model: the same architecture, layer for layer, same weights.

Not a benchmark itself: ``bench_models.py`` uses it to time every ``nbconv.models`` builder
against PyTorch CPU on exactly the same network.  The twin is built from the nbconv model's own
layers (their recorded constructor arguments), so the two cannot drift apart; ``Graph`` models
become a small ``torch.nn.Module`` that runs the same named nodes in the same order, summing
inputs at ``Add`` and concatenating at ``Concat``.  Weights and batch-norm buffers are copied
(``torch.from_numpy(...).clone()``), so the twin is independent of the nbconv arrays afterwards.
"""

from __future__ import annotations

import numpy as np

from nbconv import nn


def _copy(tm, layer, torch) -> None:
    """Copy ``layer``'s parameters and buffers into the torch module ``tm`` (same names)."""
    with torch.no_grad():
        for name, p in layer._params.items():
            getattr(tm, name).copy_(torch.from_numpy(np.array(p.data)))
        for name, b in layer._buffers.items():  # np.array keeps 0-d counters 0-d
            getattr(tm, name).copy_(torch.from_numpy(np.array(b)))


def _leaf(layer, torch):
    tnn = torch.nn
    c = layer._config
    kind = type(layer).__name__
    if kind in ("Conv2d", "Conv1d"):
        cls = tnn.Conv2d if kind == "Conv2d" else tnn.Conv1d
        tm = cls(c["in_channels"], c["out_channels"], _t(c["kernel_size"]), _t(c["stride"]),
                 _t(c["padding"]), _t(c["dilation"]), c["groups"], c["bias"],
                 c["padding_mode"])
    elif kind == "Linear":
        tm = tnn.Linear(c["in_features"], c["out_features"], c["bias"])
    elif kind == "MaxPool2d":
        tm = tnn.MaxPool2d(_t(c["kernel_size"]), _t(c["stride"]), _t(c["padding"]),
                           _t(c["dilation"]), ceil_mode=c["ceil_mode"])
    elif kind == "AvgPool2d":
        tm = tnn.AvgPool2d(_t(c["kernel_size"]), _t(c["stride"]), _t(c["padding"]),
                           ceil_mode=c["ceil_mode"], count_include_pad=c["count_include_pad"])
    elif kind == "AdaptiveAvgPool2d":
        tm = tnn.AdaptiveAvgPool2d(_t(c["output_size"]))
    elif kind == "GlobalAvgPool2d":
        tm = tnn.AdaptiveAvgPool2d(1)
        if not c["keepdims"]:
            tm = tnn.Sequential(tm, tnn.Flatten())
    elif kind == "Flatten":
        tm = tnn.Flatten(c["start_dim"], c["end_dim"])
    elif kind in ("ReLU", "Sigmoid", "Tanh"):
        tm = getattr(tnn, kind)()
    elif kind == "LeakyReLU":
        tm = tnn.LeakyReLU(c["negative_slope"])
    elif kind == "Softmax":
        tm = tnn.Softmax(c["dim"])
    elif kind == "Dropout":
        tm = tnn.Dropout(c["p"])
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        tm = getattr(tnn, kind)(c["num_features"], c["eps"], c["momentum"], c["affine"],
                                c["track_running_stats"])
    elif kind == "LocalResponseNorm":
        tm = tnn.LocalResponseNorm(c["size"], c["alpha"], c["beta"], c["k"])
    else:
        raise TypeError(f"torch_twin: no PyTorch twin for layer type {kind}")
    _copy(tm, layer, torch)
    return tm


def _t(v):
    """Constructor argument back as PyTorch takes it (lists from the JSON config -> tuples)."""
    return tuple(v) if isinstance(v, list) else v


def torch_twin(model, torch):
    """The PyTorch module computing exactly what the nbconv ``model`` computes.

    Parameters
    ----------
    model : nbconv.nn.Module
        A ``Sequential``, ``Graph`` or leaf layer of nbconv's built-in types.
    torch : module
        The imported ``torch``.

    Returns
    -------
    torch.nn.Module
        In the same train/eval mode as ``model``; ``twin_parameters(model, twin)`` pairs their
        parameters.
    """
    if isinstance(model, nn.Sequential):
        tm = torch.nn.Sequential(*(torch_twin(m, torch) for m in model))
    elif isinstance(model, nn.Graph):
        tm = _GraphTwin(model, torch)
    elif isinstance(model, (nn.Concat, nn.Add)):
        tm = _Merge(type(model).__name__, model._config.get("axis", 1), torch)
    else:
        tm = _leaf(model, torch)
    tm.train(model.training)
    return tm


def _Merge(kind, axis, torch):
    class Merge(torch.nn.Module):
        def forward(self, *xs):
            if kind == "Concat":
                return torch.cat(xs, dim=axis)
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out

    return Merge()


def _GraphTwin(graph, torch):
    class GraphTwin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nodes = torch.nn.ModuleDict()
            self.inputs = {}
            for name, m, ins in graph.nodes:
                self.nodes[name] = torch_twin(m, torch)
                self.inputs[name] = ins
            self.output = graph._output_name()

        def forward(self, x):
            values = {"input": x}
            for name, m in self.nodes.items():
                values[name] = m(*(values[i] for i in self.inputs[name]))
            return values[self.output]

    return GraphTwin()


def twin_parameters(model, twin) -> list:
    """``[(nbconv Parameter, torch Parameter)]`` in the same order: both walk their modules
    depth first in registration order, and every leaf registers its parameters in the same
    order (weight, then bias) in both libraries."""
    ours = model.parameters()
    theirs = list(twin.parameters())
    if len(ours) != len(theirs) or any(tuple(a.data.shape) != tuple(b.shape)
                                       for a, b in zip(ours, theirs)):
        raise ValueError("twin_parameters: the models' parameters do not line up")
    return list(zip(ours, theirs))

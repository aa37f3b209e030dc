"""Tracing a model into a flat list of steps: the planned network's program.

``Sequential`` and ``Graph`` containers (whose forward is their own, not a subclass's) are
opened up; the built-in layers this package runs itself become one step each, of a named
kind; every other module (a user subclass with its own ``forward``, a layer not handled here)
becomes one opaque step that calls the module.  Values are numbered: 0 is the network's input,
each step writes one new value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..nn import containers, layers
from ..nn.module import Module

__all__ = ["Step", "trace", "KINDS"]

#: the step kind of each layer type run by this package (exact types: a subclass may have its
#: own forward); everything else is "opaque"
KINDS = {
    layers.Conv2d: "conv",
    layers.Linear: "linear",
    layers.ReLU: "relu",
    layers.Sigmoid: "sigmoid",
    layers.Tanh: "tanh",
    layers.LeakyReLU: "leaky_relu",
    layers.MaxPool2d: "maxpool",
    layers.AvgPool2d: "avgpool",
    layers.AdaptiveAvgPool2d: "adaptive_avg",
    layers.GlobalAvgPool2d: "global_avg",
    layers.Flatten: "flatten",
    layers.Dropout: "identity",
    containers.Identity: "identity",
    layers.BatchNorm2d: "batchnorm",
    containers.Add: "add",
    containers.Concat: "concat",
}


@dataclass
class Step:
    """One step of a planned network.

    Attributes
    ----------
    name : str
        The module's dotted path in the model ("" for the model itself).
    kind : str
        "conv", "linear", "relu", "sigmoid", "tanh", "leaky_relu", "maxpool", "avgpool",
        "adaptive_avg", "global_avg", "flatten", "identity", "batchnorm", "add", "concat" or
        "opaque".
    module : Module
    inputs : list of int
        The values it reads.
    output : int
        The value it writes.
    fused : list of str
        What the fusion passes folded into it ("relu", "batchnorm bn1", ...).
    weight, bias : ndarray or None
        A convolution's or linear layer's arrays as the step uses them (the batch norm folded
        in, for instance); the layer's own until a pass replaces them.
    relu : bool
        Whether the step applies a ReLU to its result in the same pass.
    """

    name: str
    kind: str
    module: Module
    inputs: list
    output: int
    fused: list = field(default_factory=list)
    weight: object = None
    bias: object = None
    relu: bool = False


def _opens(m: Module) -> bool:
    """Whether ``m`` is a container this package opens up (its forward is the container's)."""
    t = type(m)
    return ((isinstance(m, containers.Sequential) and t.forward is containers.Sequential.forward)
            or (isinstance(m, containers.Graph) and t.forward is containers.Graph.forward))


def trace(model: Module) -> tuple[list[Step], int]:
    """The steps of ``model``'s forward pass in execution order, and the value it returns."""
    steps: list[Step] = []
    count = [0]

    def new_value() -> int:
        count[0] += 1
        return count[0]

    def visit(m: Module, name: str, ins: list) -> int:
        if _opens(m):
            if isinstance(m, containers.Sequential):
                (v,) = ins
                for child_name, child in m._children.items():
                    v = visit(child, _join(name, child_name), [v])
                return v
            values = {m.INPUT: ins[0]}
            for node, child, node_ins in m.nodes:
                values[node] = visit(child, _join(name, node), [values[i] for i in node_ins])
            return values[m._output_name()]
        kind = KINDS.get(type(m), "opaque")
        if kind == "maxpool" and m._config["return_indices"]:
            kind = "opaque"  # returns a pair
        step = Step(name, kind, m, list(ins), new_value())
        if kind in ("conv", "linear"):
            step.weight = m.weight.data
            step.bias = None if m.bias is None else m.bias.data
        steps.append(step)
        return step.output

    out = visit(model, "", [0])
    return steps, out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name

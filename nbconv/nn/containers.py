"""Containers: ``Sequential`` chains, ``Graph`` DAGs, and the ``Concat``/``Add`` merge nodes.

All of them pass host arrays or CUDA device arrays through unchanged in kind; the merge nodes'
arithmetic goes through :mod:`._arrays` (NumPy on the host, small kernels on the device).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .._checks import check_int
from . import _arrays
from .modes import bump_state_version
from .module import Module

__all__ = ["Sequential", "Graph", "Concat", "Add", "Identity", "ModuleList"]


class Sequential(Module):
    """Layers run in order forward and in reverse order backward.

    On host arrays two neighbours may run as one pass: ``Conv2d`` then ``ReLU`` (the ReLU in
    the convolution's store) and, backward, ``ReLU`` then ``MaxPool2d`` (one masked
    scatter).  The results are bitwise those of the layers one by one.  A layer instance may
    appear several times (``Sequential(conv1, relu, conv2, relu)``): each use keeps its own
    context for the backward pass.

    Parameters
    ----------
    *layers : Module
        Keys in the state dict are their positions: ``"0.weight"``, ``"3.bias"``.
        A single ``dict`` of ``name -> Module`` names them instead.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> net = nc.nn.Sequential(nc.nn.Linear(4, 3), nc.nn.ReLU(), nc.nn.Linear(3, 2))
    >>> y = net(np.ones((5, 4), np.float32)); y.shape
    (5, 2)
    >>> net.backward(np.ones_like(y)).shape
    (5, 4)
    >>> sorted(net.state_dict())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """

    _record_config = False  # described by to_config itself
    _backward_from_children = True

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            items = list(layers[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(layers)]
        for name, m in items:
            self._child(name, m)

    _supports_need_dx = True

    def __len__(self):
        return len(self._children)

    def __getitem__(self, i):
        """A layer by position; a slice is a ``Sequential`` of those layers (same names)."""
        if isinstance(i, slice):
            return Sequential(dict(list(self._children.items())[i]))
        return list(self._children.values())[i]

    def __iter__(self):
        return iter(self._children.values())

    def append(self, module) -> Sequential:
        """Add ``module`` at the end (named by its position), as ``torch.nn.Sequential``."""
        self._child(str(len(self._children)), module)
        return self

    def extend(self, modules) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> Sequential:
        """Insert ``module`` before position ``index``; the layers are renumbered."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.insert: argument 'module' must be a Module, got "
                            f"{type(module).__name__}")
        n = len(self._children)
        index = check_int("Sequential.insert", "index", index)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: argument 'index'={index} is out of range for "
                             f"{n} layers")
        layers = list(self._children.values())
        layers.insert(index + n if index < 0 else index, module)
        self._children.clear()
        for i, m in enumerate(layers):
            self._children[str(i)] = m
        bump_state_version()
        return self

    def forward(self, x):
        layers = list(self._children.values())
        repeated = _repeated(layers)
        i = 0
        while i < len(layers):
            # a layer may take the next one along in a single pass (convolution and ReLU);
            # a layer used twice in the chain runs alone, so that each use keeps its context
            fused = (layers[i]._forward_through(layers[i + 1], x)
                     if i + 1 < len(layers) and not (repeated and {layers[i], layers[i + 1]}
                                                     & repeated) else None)
            if fused is None:
                x = layers[i].forward(x)
                i += 1
            else:
                x = fused
                i += 2
        return x

    def backward(self, dy, need_dx=True):
        """Backward through every layer; ``need_dx=False`` lets the first layer skip its input
        gradient when it can (convolutions), and then returns None (``fit`` does this)."""
        layers = list(self._children.values())
        repeated = _repeated(layers)
        i = len(layers) - 1
        while i > 0:
            # a layer may take the one before it along in a single pass (max-pool after ReLU)
            fused = (layers[i]._backward_through(layers[i - 1], dy)
                     if i > 1 and not (repeated and {layers[i], layers[i - 1]} & repeated)
                     else None)
            if fused is None:
                dy = layers[i].backward(dy)
                i -= 1
            else:
                dy = fused
                i -= 2
        if not layers:
            return dy
        if not need_dx and getattr(layers[0], "_supports_need_dx", False):
            return layers[0].backward(dy, need_dx=False)
        return layers[0].backward(dy)


def _repeated(layers) -> set:
    """The layers that appear more than once in ``layers`` (empty almost always)."""
    if len(set(map(id, layers))) == len(layers):
        return set()
    seen, twice = set(), set()
    for m in layers:
        (twice if m in seen else seen).add(m)
    return twice


class Identity(Module):
    """Returns its input unchanged (and ``dy`` unchanged backward), as ``torch.nn.Identity``;
    extra constructor arguments are accepted and ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


class ModuleList(Module):
    """A list of modules whose parameters are registered (keys ``"0.weight"``, ...), as
    ``torch.nn.ModuleList``.  It has no forward pass: the owner's ``forward`` and ``backward``
    loop over it (the latter in reverse).

    Examples
    --------
    >>> import nbconv as nc
    >>> blocks = nc.nn.ModuleList([nc.nn.Linear(4, 4) for _ in range(3)])
    >>> _ = blocks.append(nc.nn.ReLU())
    >>> len(blocks), [k for k, _ in blocks.named_parameters()][:2]
    (4, ['0.weight', '0.bias'])
    """

    _record_config = False  # its modules are built by the owner

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def _check(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module, got {type(module).__name__}")
        return module

    def _renumber(self, modules):
        self._children.clear()
        for i, m in enumerate(modules):
            self._children[str(i)] = self._check(m)
        bump_state_version()

    def append(self, module: Module) -> ModuleList:
        self._children[str(len(self._children))] = self._check(module)
        bump_state_version()
        return self

    def extend(self, modules) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._children.values())
        items.insert(index, module)
        self._renumber(items)

    def __len__(self):
        return len(self._children)

    def __iter__(self):
        return iter(list(self._children.values()))

    def __getitem__(self, i):
        items = list(self._children.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __setitem__(self, i, module):
        items = list(self._children.values())
        items[i] = module
        self._renumber(items)

    def __delitem__(self, i):
        items = list(self._children.values())
        del items[i]
        self._renumber(items)

    def forward(self, *args):
        raise NotImplementedError(
            "ModuleList has no forward pass: call its modules in your own forward (and their "
            "backward, in reverse order, in your backward), or use nn.Sequential")

    def backward(self, dy):
        raise NotImplementedError(
            "ModuleList has no backward pass: call its modules' backward in reverse order in "
            "your own backward, or use nn.Sequential")


class Concat(Module):
    """Concatenate its inputs along ``axis`` (channels by default); backward splits ``dy``."""

    def __init__(self, axis=1):
        super().__init__()
        self._config = dict(axis=check_int("Concat", "axis", axis))
        self._sizes = None

    def forward(self, *xs):
        axis = self._config["axis"]
        self._sizes = [tuple(np.shape(x))[axis] for x in xs]
        return _arrays.concat(xs, axis, "Concat.forward")

    def backward(self, dy):
        return _arrays.split(dy, self._sizes, self._config["axis"], "Concat.backward", "dy")


class Add(Module):
    """Elementwise sum of its inputs (residual connections); backward passes ``dy`` to each."""

    def __init__(self):
        super().__init__()
        self._n = 0

    def forward(self, *xs):
        if len(xs) < 2:
            raise ValueError(f"Add: expected at least 2 inputs, got {len(xs)} (a sum of one "
                             "array is that array: use nn.Identity)")
        self._n = len(xs)
        shapes = {tuple(np.shape(x)) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"Add: all inputs must have the same shape, got {sorted(shapes)}")
        out = _arrays.copy(xs[0], "Add.forward", "inputs[0]")
        for i, x in enumerate(xs[1:], 1):
            if type(out) is np.ndarray and _arrays.is_device_array(x):
                raise TypeError(
                    f"Add.forward: argument 'inputs[{i}]' is a CUDA device array but "
                    "'inputs[0]' is a host array; move them to one side with nbconv.cuda")
            _arrays.accumulate(out, x, "Add.forward", ("inputs[0]", f"inputs[{i}]"))
        return out

    def backward(self, dy):
        return (dy,) * self._n


class Graph(Module):
    """A DAG of named nodes for Inception and ResNet blocks.

    Nodes are added in an order where every input already exists, which makes the insertion
    order a topological order.  The graph input is the node ``"input"``; the output is the node
    named by ``output`` (default: the last one added).  Backward visits the nodes in reverse,
    sums the gradients where an output fans out and splits them at ``Concat``.

    Examples
    --------
    A residual block ``relu(x + conv(x))``:

    >>> import numpy as np, nbconv as nc
    >>> g = nc.nn.Graph()
    >>> g.add("conv", nc.nn.Conv2d(2, 2, 3, padding=1), "input")
    'conv'
    >>> g.add("sum", nc.nn.Add(), "input", "conv")
    'sum'
    >>> g.add("out", nc.nn.ReLU(), "sum")
    'out'
    >>> x = np.ones((1, 2, 5, 5), np.float32)
    >>> g(x).shape, g.backward(np.ones((1, 2, 5, 5), np.float32)).shape
    ((1, 2, 5, 5), (1, 2, 5, 5))
    """

    INPUT = "input"
    _record_config = False  # described by to_config itself
    _backward_from_children = True
    _supports_need_dx = True

    def __init__(self, output: str | None = None):
        super().__init__()
        self._inputs: dict[str, tuple[str, ...]] = {}
        self._in_shape = None
        self.output = output

    def add(self, name: str, module: Module, *inputs: str) -> str:
        """Add node ``name`` computing ``module(*[value of each input])``; returns ``name``."""
        if not isinstance(name, str) or not name or "." in name or name == self.INPUT:
            raise ValueError(f"Graph.add: invalid node name {name!r} (non-empty, no '.', "
                             f"not {self.INPUT!r})")
        if name in self._inputs:
            raise ValueError(f"Graph.add: node {name!r} already exists")
        if not inputs:
            raise ValueError(f"Graph.add: node {name!r} needs at least one input")
        for src in inputs:
            if src != self.INPUT and src not in self._inputs:
                raise ValueError(
                    f"Graph.add: input {src!r} of node {name!r} is not defined yet "
                    f"(known: {[self.INPUT, *self._inputs]})"
                )
        if any(module is m for m in self._children.values()):
            raise ValueError(f"Graph.add: node {name!r} reuses a module instance already in "
                             "the graph; create a new layer (backward caches per instance)")
        self._child(name, module)
        self._inputs[name] = tuple(inputs)
        return name

    def __repr__(self) -> str:
        """The nodes with their wiring, one per line: ``(sum): Add() <- input, conv`` (a node
        spanning several lines has its inputs on its first line), and the output node when
        it is not the last one."""
        if not self._inputs:
            return "Graph()"
        lines = ["Graph("]
        for name, module, ins in self.nodes:
            head, *rest = repr(module).split("\n")
            lines.append(f"  ({name}): {head} <- {', '.join(ins)}")
            lines.extend(f"  {line}" for line in rest)
        last = list(self._inputs)[-1]
        if self.output is not None and self.output != last:
            lines.append(f"  output <- {self.output}")
        lines.append(")")
        return "\n".join(lines)

    @property
    def nodes(self) -> list[tuple[str, Module, tuple[str, ...]]]:
        """``(name, module, inputs)`` in topological order."""
        return [(n, self._children[n], ins) for n, ins in self._inputs.items()]

    def _output_name(self) -> str:
        if not self._inputs:
            raise ValueError("Graph: the graph has no nodes")
        out = self.output if self.output is not None else list(self._inputs)[-1]
        if out not in self._inputs:
            raise ValueError(f"Graph: output node {out!r} does not exist")
        return out

    def forward(self, x):
        self._in_shape = tuple(np.shape(x))
        values = {self.INPUT: x}
        nodes = self.nodes
        out = self._output_name()
        readers = Counter(i for _, _, ins in nodes for i in ins)
        k = 0
        while k < len(nodes):
            name, module, ins = nodes[k]
            args = [values[i] for i in ins]
            if k + 1 < len(nodes) and len(args) == 1:
                # a node whose only reader is the next node may take it along in a single
                # pass, as in Sequential (convolution and ReLU or inference batch norm)
                nxt, after, after_ins = nodes[k + 1]
                if after_ins == (name,) and readers[name] == 1 and name != out:
                    fused = module._forward_through(after, args[0])
                    if fused is not None:
                        values[nxt] = fused
                        k += 2
                        continue
            values[name] = module.forward(*args)
            k += 1
        return values[out]

    def backward(self, dy, need_dx=True):
        """Backward through the nodes in reverse order; ``need_dx=False`` lets the nodes that
        read only the graph input skip their input gradient when they can (convolutions),
        and then returns None (``fit`` does this)."""
        grads = {self._output_name(): dy}
        for name, module, ins in reversed(self.nodes):
            g = grads.pop(name, None)
            if g is None:  # the node does not reach the output
                continue
            if (not need_dx and ins == (self.INPUT,)
                    and getattr(module, "_supports_need_dx", False)):
                module.backward(g, need_dx=False)
                continue
            dxs = module.backward(g)
            if len(ins) == 1:
                dxs = (dxs,)
            for src, d in zip(ins, dxs):
                # A fresh array on fan-in: never modify a gradient another node handed us.
                grads[src] = (d if src not in grads
                              else _arrays.add(grads[src], d, "Graph.backward", ("dy", "dy")))
        if not need_dx:
            return None
        g = grads.get(self.INPUT)
        if g is not None:
            return g
        dtype = dy.dtype if _arrays.is_device_array(dy) else np.asarray(dy).dtype
        return _arrays.zeros(self._in_shape, dtype, like=dy)

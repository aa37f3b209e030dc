"""Records and the backward walk over them.

A :class:`Node` is one recorded call: a module call, a functional op or an array operation.
It holds the call's own context inside its ``backward`` closure (so a module used three
times has three nodes with three contexts) and its *parents*, one per differentiable input:
the node that made that input, a leaf parameter (anything with ``accumulate_grad``), or None
for a constant.  :func:`run_backward` visits the nodes reachable from the roots in reverse
order of creation (a topological order, since a node is created after its inputs), sums the
gradients where a value fans out and calls each node's hand-written backward once.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._dispatch import device

__all__ = ["Node", "Boundary", "Unfollowed", "run_backward", "needs_grad", "SecondBackwardError"]

_next_seq = itertools.count().__next__


class SecondBackwardError(RuntimeError):
    """A backward pass through records that an earlier backward pass already consumed."""


class Node:
    """One recorded call.

    Parameters
    ----------
    name : str
        What ran, for messages ("Conv2d", "relu", "add", "getitem").
    parents : tuple
        Per differentiable input: its :class:`Node`, a parameter (an object with
        ``accumulate_grad``) or None (a constant: no gradient is sent there).
    backward : callable
        ``backward(dy) -> tuple`` of one gradient per parent (None where there is none).
    info : object, optional
        What a reader of the graph needs to redo the call (the ONNX export traces with it):
        the module of a module call, else a dict of the op's non-array arguments.
    """

    __slots__ = ("name", "parents", "backward", "seq", "info", "__weakref__")

    def __init__(self, name: str, parents: tuple, backward, info=None):
        self.name = name
        self.parents = parents
        self.backward = backward
        self.seq = _next_seq()
        self.info = info

    @property
    def consumed(self) -> bool:
        """True once a backward pass ran through this record (its context is freed)."""
        return self.backward is None

    def __repr__(self) -> str:
        return f"<record {self.name}{' (consumed)' if self.consumed else ''}>"


class Unfollowed:
    """The origin of an array computed from a recorded one by something nbconv does not
    record: using it where a gradient is needed raises :meth:`error`."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def error(self, where: str) -> TypeError:
        return TypeError(
            f"{where}: this array was computed from a recorded array by {self.what}, which "
            "nbconv does not record, so no gradient can flow back through it. Use nbconv's "
            "ops (nc.relu, nc.sigmoid, nc.tanh, nc.softmax, nc.log_softmax, nc.cat, "
            "nc.flatten, the layers of nbconv.nn) and +, -, *, /, **, @, np.exp, np.log, "
            "np.sqrt, np.abs, reshape, transpose, slicing, np.concatenate, np.stack, sum and "
            "mean on recorded arrays; or compute "
            "it from np.asarray(x) (a plain array, out of the gradient) under nc.no_grad()")


class Boundary(Node):
    """The record of a transparent module's input: passes its gradient on, and is where
    that module's own ``backward`` collects the gradient of its input."""

    __slots__ = ("collect", "shape", "dtype")

    def __init__(self, name, parent, shape, dtype):
        super().__init__(name, (parent,), _pass)
        self.collect = False
        self.shape, self.dtype = shape, dtype


def _pass(g):
    return (g,)


def needs_grad(parent) -> bool:
    """Whether a gradient sent to ``parent`` would be used (a boundary of a plain input
    counts only while its module's backward collects it)."""
    t = type(parent)
    if t is Boundary:
        return parent.collect or needs_grad(parent.parents[0])
    return parent is not None and t is not Unfollowed


def _add(a, b):
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return a + b
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    return device.add(a, b, "backward", ("dy", "dy"))


def run_backward(roots, stop=(), retain_graph: bool = False) -> dict:
    """Send gradients from ``roots`` back through every record that reaches them.

    Parameters
    ----------
    roots : list of (Node, gradient)
    stop : collection of Node
        Records where the walk stops (a module's input boundary): their gradients are
        returned instead of being passed on.
    retain_graph : bool
        Keep every record's context, so that another backward pass may run through them.

    Returns
    -------
    dict
        ``{node: gradient}`` for the reached nodes of ``stop``.

    Raises
    ------
    SecondBackwardError
        When a reachable record was consumed by an earlier backward pass (checked before any
        gradient is computed).
    """
    stop = set(stop)
    seen = set()
    todo = [n for n, _ in roots]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in stop:
            continue
        if n.backward is None:
            raise SecondBackwardError(
                f"backward through the recorded graph a second time: the record of {n.name} "
                "was consumed by an earlier backward pass, which freed what it saved. Run the "
                "forward pass again before each backward (or pass retain_graph=True to the "
                "first backward to keep the records)")
        for p in n.parents:
            if isinstance(p, Node) and p not in seen:
                todo.append(p)
    grads: dict = {}
    for n, g in roots:
        grads[n] = g if n not in grads else _add(grads[n], g)
    reached = {}
    for n in sorted(seen, key=_seq, reverse=True):
        g = grads.pop(n, None)
        if g is None:
            continue
        if n in stop:
            reached[n] = g
            continue
        backward = n.backward
        if not retain_graph:
            n.backward = None  # frees the context as the walk goes
        gins = backward(g)
        for p, gi in zip(n.parents, gins):
            if gi is None or p is None:
                continue
            if isinstance(p, Node):
                grads[p] = gi if p not in grads else _add(grads[p], gi)
            elif getattr(p, "requires_grad", True):
                p.accumulate_grad(gi, f"{n.name} backward")
    return reached


def _seq(n: Node) -> int:
    return n.seq

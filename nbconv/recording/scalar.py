"""``LossValue``: the float a loss returns, which can also send its gradient back.

``loss = crit(pred, target)`` is a Python ``float`` (arithmetic, comparisons, formatting and
``float(loss)`` as before) that also holds the record of the loss, so ``loss.backward()``
walks back through the records of the forward pass.  Sums and scalings of losses
(``loss1 + 0.5 * loss2``) are recorded too.  Keep ``loss.item()`` (a plain float) when you
only need the number: a ``LossValue`` kept alive keeps its records alive.
"""

from __future__ import annotations

import numbers

from .graph import Node, Unfollowed, run_backward
from .state import state

__all__ = ["LossValue"]


def _parts(v):
    """``(float value, record or None)`` of an operand."""
    return float(v), getattr(v, "_loss_node", None)


class LossValue(float):
    """A float with the record of the loss that computed it (see the module docstring)."""

    __slots__ = ("_loss_node",)

    def __new__(cls, value, node=None):
        self = super().__new__(cls, value)
        self._loss_node = node
        return self

    def item(self) -> float:
        """The value as a plain float."""
        return float(self)

    def detach(self) -> float:
        """The value as a plain float, out of the gradient."""
        return float(self)

    @property
    def recorded(self) -> bool:
        """Whether ``backward`` has records to walk (False inside ``nc.no_grad()``)."""
        return isinstance(self._loss_node, Node)

    def backward(self, gradient: float = 1.0, retain_graph: bool = False) -> None:
        """Add d(loss)/d(parameter) to every parameter's ``.grad`` through the recorded
        forward pass.

        Raises
        ------
        RuntimeError
            When nothing was recorded (the loss was computed inside ``nc.no_grad()``, or from
            a prediction no recorded module or op made), or when the records were consumed
            by an earlier ``backward`` (a new forward pass is needed, as in PyTorch).
        """
        node = self._loss_node
        if type(node) is Unfollowed:
            raise node.error("backward")
        if node is None:
            raise RuntimeError(
                "backward: nothing was recorded for this loss: it was computed inside "
                "nc.no_grad(), or its prediction came from no recorded module or op (a plain "
                "array). Compute the prediction with gradients enabled, or call "
                "model.backward(crit.backward()) for a model with a hand-written backward")
        run_backward([(node, float(gradient))], retain_graph=retain_graph)

    def __repr__(self) -> str:
        return f"LossValue({float(self)!r})"

    def __str__(self) -> str:  # print(loss), f"{loss}": the number, as a float prints
        return float.__repr__(self)

    def __format__(self, spec: str) -> str:
        return float.__format__(float(self), spec)

    def __reduce__(self):  # pickles and copies as the plain float
        return (float, (float(self),))

    # -- arithmetic between losses and numbers, recorded ------------------------------
    def _combine(self, other, value, name, grads):
        """A new LossValue of ``value``; ``grads(g) -> (g_self, g_other)``."""
        if not isinstance(other, numbers.Real) or isinstance(other, bool):
            return NotImplemented
        a, b = _parts(self), _parts(other)
        parents = (a[1], b[1])
        if not state.grad or not any(isinstance(p, Node) for p in parents):
            unf = next((p for p in parents if type(p) is Unfollowed), None)
            return LossValue(value, unf)
        return LossValue(value, Node(name, parents, grads))

    def __add__(self, other):
        if not isinstance(other, numbers.Real):
            return NotImplemented
        return self._combine(other, float(self) + float(other), "loss +",
                             lambda g: (g, g))

    __radd__ = __add__

    def __sub__(self, other):
        if not isinstance(other, numbers.Real):
            return NotImplemented
        return self._combine(other, float(self) - float(other), "loss -",
                             lambda g: (g, -g))

    def __rsub__(self, other):
        if not isinstance(other, numbers.Real):
            return NotImplemented
        return self._combine(other, float(other) - float(self), "loss -",
                             lambda g: (-g, g))

    def __mul__(self, other):
        a, b = float(self), float(other) if isinstance(other, numbers.Real) else 0.0
        return self._combine(other, a * b, "loss *", lambda g: (g * b, g * a))

    __rmul__ = __mul__

    def __truediv__(self, other):
        a, b = float(self), float(other) if isinstance(other, numbers.Real) else 1.0
        return self._combine(other, a / b, "loss /", lambda g: (g / b, -g * a / (b * b)))

    def __neg__(self):
        return self._combine(0.0, -float(self), "loss -", lambda g: (-g, None))

    def __pos__(self):
        return self

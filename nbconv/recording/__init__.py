"""Recording a PyTorch-style forward pass as it runs, and walking it back (define-by-run).

While gradients are enabled, every call of a module or of a functional op on a recorded
array (and ``+ - * /``, reshapes, slicing, concatenation of recorded arrays) becomes one
record, a :class:`Node` holding *its own* saved context and the hand-written backward of
what ran.  ``loss.backward()`` walks the records in reverse.  Arrays stay NumPy arrays:
:class:`TrackedArray` is an ``ndarray`` subclass that remembers its record, and
``np.asarray(y)`` is its plain, detached value.  A loss is a :class:`LossValue`, a float.

The room sits between the functional ops (whose public calls route recorded arguments here
through :mod:`nbconv._dispatch`) and the layers (:mod:`nbconv.nn._recorded` records module
calls with the same nodes).
"""

from . import ops as _ops
from .array import TrackedArray, detach, is_tracked, origin, wrap
from .graph import Node, SecondBackwardError, Unfollowed, run_backward
from .scalar import LossValue
from .state import enable_grad, is_grad_enabled, is_recording, no_grad, state

__all__ = ["TrackedArray", "LossValue", "Node", "Unfollowed", "SecondBackwardError",
           "run_backward", "no_grad", "enable_grad", "is_grad_enabled", "is_recording",
           "detach", "is_tracked", "origin", "wrap", "register_leaf_type", "state"]


def register_leaf_type(cls) -> None:
    """Let objects of ``cls`` (with ``.data`` and ``accumulate_grad``, e.g. ``nn.Parameter``)
    be arguments of recorded ops and collect their gradients."""
    _ops.install((cls,))


_ops.install()

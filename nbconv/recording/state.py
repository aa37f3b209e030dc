"""The per-thread switches of recording: gradient mode, and where a forward or backward pass is.

* ``grad``: False inside :func:`no_grad` (nothing is recorded or cached anywhere).
* ``record``: whether ops on recorded arrays become records.  False inside the forward pass
  of a module with a hand-written ``backward`` (its backward will cover everything its
  forward does, so nothing inside is recorded: an *explicit zone*).
* ``zone``: the explicit zone being run (see :mod:`nbconv.nn._recorded`), or None.
* ``forwarding``: the modules whose forward is running, innermost last.
* ``cursor``: inside an explicit backward pass, the contexts of modules its forward used
  more than once (popped in reverse order); None outside one.
* ``backwarding``: the modules whose backward is running, innermost last.
* ``from_record``: set while a record calls its module's backward (not the user).
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["state", "no_grad", "enable_grad", "is_grad_enabled", "is_recording"]


class _State(threading.local):
    def __init__(self):
        self.grad = True
        self.record = True
        self.zone = None
        self.forwarding = []
        self.cursor = None
        self.backwarding = []
        self.from_record = False


state = _State()


def is_grad_enabled() -> bool:
    """False inside ``with nbconv.no_grad():``."""
    return state.grad


def is_recording() -> bool:
    """Whether an op on a recorded array is recorded now (gradients on, and not inside the
    forward pass of a module that brings its own backward)."""
    return state.grad and state.record


@contextlib.contextmanager
def no_grad():
    """Context manager: nothing is recorded, and layers keep nothing for a backward pass.

    Recorded arrays used inside give plain arrays.

    >>> import nbconv as nc
    >>> with nc.no_grad():
    ...     nc.nn.is_grad_enabled()
    False
    """
    before = state.grad
    state.grad = False
    try:
        yield
    finally:
        state.grad = before


@contextlib.contextmanager
def enable_grad():
    """Context manager: gradients on again (inside :func:`no_grad`), as ``torch.enable_grad``."""
    before = state.grad
    state.grad = True
    try:
        yield
    finally:
        state.grad = before

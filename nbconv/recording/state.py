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

import functools
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


class _GradMode:
    """Sets gradient mode inside a ``with`` block, or around every call of a function it
    decorates (``@nc.no_grad`` and ``@nc.no_grad()`` alike, as PyTorch's)."""

    _enabled = False

    def __new__(cls, func=None):
        if func is None:
            return super().__new__(cls)
        if not callable(func):
            raise TypeError(f"{cls.__name__}: expected a function to decorate (or no "
                            f"argument), got {type(func).__name__}")
        return cls()(func)

    def __enter__(self):
        self._before = state.grad
        state.grad = self._enabled
        return None

    def __exit__(self, *exc):
        state.grad = self._before
        return False

    def __call__(self, func):
        mode = type(self)

        @functools.wraps(func)
        def in_mode(*args, **kwargs):
            with mode():
                return func(*args, **kwargs)

        return in_mode


class no_grad(_GradMode):
    """Context manager (or decorator): nothing is recorded, and layers keep nothing for a
    backward pass.  Recorded arrays used inside give plain arrays.

    >>> import nbconv as nc
    >>> with nc.no_grad():
    ...     nc.nn.is_grad_enabled()
    False
    >>> @nc.no_grad
    ... def predict():
    ...     return nc.nn.is_grad_enabled()
    >>> predict(), nc.nn.is_grad_enabled()
    (False, True)
    """

    _enabled = False


class enable_grad(_GradMode):
    """Context manager (or decorator): gradients on again (inside :func:`no_grad`), as
    ``torch.enable_grad``."""

    _enabled = True

"""Process-wide modes of the layers: gradient recording (:func:`no_grad`, which lives with the
recording in :mod:`nbconv.recording.state`), the default random generator (:func:`manual_seed`)
and zero-memory placeholders while a model file is checked (:func:`placeholders`)."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..recording.state import enable_grad, is_grad_enabled, no_grad

__all__ = ["no_grad", "enable_grad", "is_grad_enabled", "placeholders", "building_placeholders",
           "placeholder", "manual_seed", "default_rng", "state_version", "bump_state_version"]

_state = threading.local()
_rng = [np.random.default_rng()]

#: a process-wide counter that every nbconv call changing a model's parameters, buffers, modes
#: or structure moves on (optimizer steps, load_state_dict, train/eval, assignments, nn.init):
#: a planned network (:func:`nbconv.compile`) compares it with one integer per call
_version = [0]


def state_version() -> int:
    """The current value of the model-state counter (see :func:`bump_state_version`)."""
    return _version[0]


def bump_state_version() -> None:
    """Say that some model's parameters, buffers, mode or structure changed (so that compiled
    models check theirs before the next call)."""
    _version[0] += 1


def building_placeholders() -> bool:
    """True inside :func:`placeholders`."""
    return getattr(_state, "placeholders", False)


@contextlib.contextmanager
def placeholders():
    """Context manager: layers built inside get read-only, zero-stride stand-ins of the right
    shape and dtype for their parameters and buffers (:func:`placeholder`): no memory and no
    random draws, whatever sizes their arguments ask for.  ``nbconv.load`` builds a file's
    architecture this way to check it against the file's datasets before allocating anything,
    then puts the file's arrays in place."""
    before = building_placeholders()
    _state.placeholders = True
    try:
        yield
    finally:
        _state.placeholders = before


def placeholder(shape, dtype) -> np.ndarray:
    """A read-only array of ``shape`` that takes no memory (every element is one zero)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def manual_seed(seed: int) -> None:
    """Seed the generator that layer initialisation and ``Dropout`` draw from (like torch)."""
    _rng[0] = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The library-wide generator reseeded by :func:`manual_seed`."""
    return _rng[0]

"""Host or device: the dispatch of every public op, and the table of device implementations.

Every public op in :mod:`nbconv.functional` is wrapped by :func:`dispatch`: when any of its
arguments is a CUDA device array (an object with ``__cuda_array_interface__`` that is not a
NumPy array, or a numba simulator array), the call goes to the device implementation registered
under the op's name, with the same arguments.  The device room (:mod:`nbconv.cuda`) fills the
table: it registers a loader at import, and the loader imports the device ops (which register
themselves with :func:`implements`) the first time a device array arrives.  So the host code
never imports the device code, and nothing imports numba's CUDA target before a device array
appears.

The layers', containers', losses' and optimizers' array arithmetic (``grad += g`` on the
device, concatenation, loss values) goes through the same table: :data:`device` ``.name(...)``
calls the device function registered as ``name``.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["dispatch", "implements", "is_device_array", "set_loader", "device", "set_recorder",
           "is_recorded", "record"]

_ndarray = np.ndarray


def is_device_array(a) -> bool:
    """True for CUDA device arrays (``__cuda_array_interface__``) and numba simulator arrays."""
    t = type(a)
    if t is _ndarray:
        return False
    return hasattr(a, "__cuda_array_interface__") or t.__name__ == "FakeCUDAArray"


#: argument types that are never device arrays (checked first: a set lookup per argument).
_HOST_TYPES = frozenset(
    {_ndarray, int, float, bool, str, tuple, list, dict, type(None), np.float32, np.float64}
)

#: types whose presence among the arguments routes a call to the recorder (recorded arrays
#: and parameters; :mod:`nbconv.recording` registers them), and the recorder itself
_RECORDED: set = set()
_recorder = None


def set_recorder(types, recorder) -> None:
    """Route calls with an argument of one of ``types`` to ``recorder(name, fn, args, kwargs)``
    (the recording room registers itself here, so the ops never import it)."""
    global _recorder
    _RECORDED.update(types)
    _recorder = recorder


def is_recorded(a) -> bool:
    """Whether ``a`` is a recorded array or a parameter (see :func:`set_recorder`)."""
    return type(a) in _RECORDED


def record(name, fn, args, kwargs):
    """Run ``fn(*args, **kwargs)`` through the recorder (it unwraps and records)."""
    return _recorder(name, fn, args, kwargs)


#: device implementations by name, filled by the device ops when the loader imports them
_IMPL: dict = {}
_loader = None


def set_loader(load) -> None:
    """Register ``load()``, which imports the device implementations (called once, lazily)."""
    global _loader
    _loader = load


def implements(fn):
    """Register ``fn`` as the device implementation of the op (or helper) of its name."""
    _IMPL[fn.__name__] = fn
    return fn


def implementation(name: str):
    """The device function registered as ``name``, importing the device ops first if needed."""
    fn = _IMPL.get(name)
    if fn is None:
        if _loader is None:  # pragma: no cover - nbconv/__init__ imports nbconv.cuda
            raise RuntimeError("nbconv: device arrays need nbconv.cuda (import nbconv.cuda)")
        _loader()
        fn = _IMPL.get(name)
        if fn is None:
            raise TypeError(f"{name}: CUDA device arrays are not supported by this op yet; "
                            "copy them to the host with nbconv.cuda.to_host first")
    return fn


class _Device:
    """``device.name(...)`` calls :func:`implementation` ``(name)(...)``."""

    __slots__ = ()

    def __getattr__(self, name):
        if name.startswith("__"):  # introspection (doctest, copy, pickle) loads nothing
            raise AttributeError(name)
        return implementation(name)


#: the device half of the array arithmetic, e.g. ``device.iadd(grad, g, op, names)``
device = _Device()


def dispatch(fn):
    """Route ``fn(...)`` to the recorder when an argument is a recorded array or a parameter,
    to the device implementation of the same name when one is a device array; otherwise call
    ``fn`` (a set lookup per argument of overhead on the host)."""
    name = fn.__name__

    host = _HOST_TYPES
    recorded = _RECORDED

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            t = type(a)
            if t not in host:
                if t in recorded:
                    return _recorder(name, wrapper, args, kwargs)
                if is_device_array(a):
                    return implementation(name)(*args, **kwargs)
        if kwargs:
            for a in kwargs.values():
                t = type(a)
                if t not in host:
                    if t in recorded:
                        return _recorder(name, wrapper, args, kwargs)
                    if is_device_array(a):
                        return implementation(name)(*args, **kwargs)
        return fn(*args, **kwargs)

    wrapper.__wrapped_host__ = fn
    return wrapper

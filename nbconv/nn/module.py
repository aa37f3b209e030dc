"""The layer base class: parameters, modes, state dicts, architecture descriptions.

Manual backprop (DLFS/Chainer style): ``forward`` keeps what ``backward`` needs (only in training
mode and outside :func:`no_grad`), ``backward(dy)`` returns ``dx`` and *accumulates* parameter
gradients into ``Parameter.grad``.  There is no global autograd tape.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import _arrays

__all__ = ["Module", "Parameter", "no_grad", "is_grad_enabled", "manual_seed", "default_rng"]

_state = threading.local()
_rng = [np.random.default_rng()]


def is_grad_enabled() -> bool:
    """False inside ``with nbconv.no_grad():``."""
    return getattr(_state, "grad", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: layers run forward without caching anything for backward.

    >>> import nbconv as nc
    >>> with nc.no_grad():
    ...     nc.nn.is_grad_enabled()
    False
    """
    before = is_grad_enabled()
    _state.grad = False
    try:
        yield
    finally:
        _state.grad = before


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


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray or CUDA device array
        The value; optimizers update it in place.  :func:`nbconv.cuda.to_device` replaces it
        (and ``grad``) by a device array.
    grad : ndarray or CUDA device array
        Same shape, dtype and place as ``data``; layers accumulate into it with ``+=``.
    name : str
        The key within the owning layer ("weight", "bias").
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: np.ndarray, name: str = ""):
        if building_placeholders():  # keep the stand-in as it is (see placeholders())
            self.data = self.grad = data
        else:
            self.data = np.ascontiguousarray(data)
            self.grad = np.zeros_like(self.data)
        self.name = name

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and container.

    Subclasses register parameters with :meth:`_param`, buffers (non-trained state such as batch
    norm's running statistics) with :meth:`_buffer` and sub-layers with :meth:`_child`, and
    record their constructor arguments in ``self._config`` so that the model file can rebuild
    them (``nbconv.io``).
    """

    def __init__(self):
        self.training = True
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._children: dict[str, Module] = {}
        self._config: dict = {}

    # -- registration -------------------------------------------------------------------
    def _param(self, name: str, data: np.ndarray) -> Parameter:
        p = Parameter(data, name)
        self._params[name] = p
        return p

    def _buffer(self, name: str, data: np.ndarray) -> np.ndarray:
        self._buffers[name] = data
        return data

    def _child(self, name: str, module: Module) -> Module:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: child {name!r} is not a Module: {module!r}")
        self._children[name] = module
        return module

    # -- computation --------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def _forward_through(self, after, x):
        """``after.forward(self.forward(x))`` as one fused pass, for ``Sequential``; None (the
        default) when this layer fuses nothing with ``after``."""
        return None

    def _backward_through(self, before, dy):
        """``before.backward(self.backward(dy))`` as one fused pass, for ``Sequential``; None
        (the default) when this layer fuses nothing with ``before``."""
        return None

    def __call__(self, *args):
        return self.forward(*args)

    def _keep(self) -> bool:
        """Whether forward should cache what backward needs."""
        return is_grad_enabled()

    # -- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """Yield ``(key, Parameter)`` with PyTorch-style dotted keys (``"0.weight"``)."""
        for prefix, m in self.named_modules():
            for name, p in m._params.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in a stable order."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            _arrays.zero_(p.grad)

    def train(self, mode: bool = True) -> Module:
        from .._shapes import check_bool

        mode = check_bool(f"{type(self).__name__}.train", "mode", mode)
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by dotted key, as host ``numpy.ndarray`` copies (also for a
        model on a CUDA device, so that saving it needs no explicit ``to_host``)."""
        out = {}
        for prefix, m in self.named_modules():
            for name, p in m._params.items():
                out[f"{prefix}.{name}" if prefix else name] = _arrays.host_copy(p.data)
            for name, b in m._buffers.items():
                out[f"{prefix}.{name}" if prefix else name] = _arrays.host_copy(b)
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (shapes must match exactly).

        Values may be host or device arrays; they are copied to wherever the model lives.

        Raises
        ------
        KeyError
            With ``strict``, on missing or unexpected keys (all listed).
        ValueError
            On a shape mismatch, naming the key and both shapes.
        """
        targets = {}
        for prefix, m in self.named_modules():
            for name in list(m._params) + list(m._buffers):
                targets[f"{prefix}.{name}" if prefix else name] = (m, name)
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, (m, name) in targets.items():
            if key not in state:
                continue
            value = state[key]
            value = (_arrays.host_copy(value) if _arrays.is_device_array(value)
                     else np.asarray(value))
            target = m._params[name].data if name in m._params else m._buffers[name]
            if value.shape != tuple(np.shape(target)):
                raise ValueError(
                    f"load_state_dict: {key!r} has shape {value.shape}, "
                    f"the model expects {tuple(np.shape(target))}"
                )
            _arrays.assign(target, value)

    def astype(self, dtype) -> Module:
        """Convert every parameter and floating buffer to ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        for _, m in self.named_modules():
            for p in m._params.values():
                p.data = _arrays.astype(p.data, dtype)
                p.grad = _arrays.zeros_like(p.data)
            for k, b in m._buffers.items():
                if b.dtype.kind == "f":
                    m._buffers[k] = _arrays.astype(b, dtype)
        return self

    def _apply(self, fn) -> Module:
        """Replace every parameter's ``data`` and ``grad`` and every buffer by ``fn(array)``
        (how :func:`nbconv.cuda.to_device` / ``to_host`` move a model); returns ``self``."""
        for _, m in self.named_modules():
            for p in m._params.values():
                p.data = fn(p.data)
                p.grad = fn(p.grad)
            for k, b in m._buffers.items():
                m._buffers[k] = fn(b)
        return self

    # -- description --------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items())

    def __repr__(self) -> str:
        if not self._children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)

    def save_weights(self, path) -> None:
        """Write the state dict to an HDF5 file (``nbconv.io`` format, weights only)."""
        from .. import io

        io.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Load a state dict written by :meth:`save_weights` or :func:`nbconv.save`."""
        from .. import io

        io.load_weights(self, path)

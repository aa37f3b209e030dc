"""The layer base class: parameters, modes, state dicts, architecture descriptions.

Manual backprop (DLFS/Chainer style): ``forward`` keeps what ``backward`` needs (only outside
:func:`no_grad`), ``backward(dy)`` returns ``dx`` and *accumulates* parameter gradients into
``Parameter.grad``.  A subclass without a hand-written ``backward`` has its forward recorded
as it runs (:mod:`nbconv.nn._recorded`, :mod:`nbconv.recording`): each call of a module or
op inside becomes a record with its own context, and ``loss.backward()`` or
``module.backward(dy)`` walks them back.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .. import recording
from ..recording.array import _function, _transpose, _ufunc
from . import _arrays, _recorded
from .modes import (  # noqa: F401  (re-exported: nbconv.nn.module.no_grad and friends)
    _rng,
    building_placeholders,
    bump_state_version,
    default_rng,
    enable_grad,
    is_grad_enabled,
    manual_seed,
    no_grad,
    placeholder,
    placeholders,
)
from .summary import summary

__all__ = ["Module", "Parameter", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed",
           "default_rng"]


class Parameter(NDArrayOperatorsMixin):
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray or CUDA device array
        The value; optimizers update it in place.  :func:`nbconv.cuda.to_device` replaces it
        (and ``grad``) by a device array.
    grad : ndarray or CUDA device array
        Same shape, dtype and place as ``data``; layers accumulate into it
        (:meth:`accumulate_grad`).  After :meth:`zero_grad` it reads as zeros, but nothing is
        written until it is read or accumulated into: the first gradient of a step then
        overwrites it (or becomes it), as PyTorch's ``zero_grad(set_to_none=True)`` saves the
        zeroing.  So hold ``p.grad`` afresh after each backward pass, not across steps.
    name : str
        The key within the owning layer ("weight", "bias").
    requires_grad : bool
        False freezes the parameter (as in PyTorch): no gradient is added to ``grad`` and
        optimizers leave it unchanged.

    Inside a recorded forward pass a parameter can be used as an array: ``x * self.scale``,
    ``nc.linear(x, self.fc.weight)`` (weight tying) and the other recorded ops send its
    gradient to ``grad``.  ``p.data`` is the plain array, out of the gradient (PyTorch's
    ``.data``).
    """

    __slots__ = ("data", "_grad", "_zero_pending", "name", "requires_grad")

    def __init__(self, data: np.ndarray, name: str = "", requires_grad: bool = True):
        self._zero_pending = False
        self.requires_grad = bool(requires_grad)
        if building_placeholders():  # keep the stand-in as it is (see placeholders())
            self.data = self.grad = data
        else:
            self.data = np.asarray(data, order="C")  # (ascontiguousarray makes 0-d 1-d)
            self.grad = np.zeros_like(self.data)
        self.name = name

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == "data":  # a compiled model holding the old array must see the new one
            bump_state_version()

    @property
    def grad(self):
        if self._zero_pending:  # zero_grad() deferred the zeroing to here
            self._zero_pending = False
            _arrays.zero_(self._grad)
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._zero_pending = False

    def zero_grad(self) -> None:
        """Make the gradient zero, lazily (see ``grad``)."""
        self._zero_pending = True

    def accumulate_grad(self, g, op: str = "backward", owned: bool = False) -> None:
        """``grad += g``.  Right after :meth:`zero_grad` this is ``grad = g``: the host array
        ``g`` itself becomes the gradient when ``owned`` (the caller hands over a fresh
        array of the gradient's shape and dtype: no copy at all), else it is copied in."""
        if not self.requires_grad:
            return
        if self._zero_pending and type(self._grad) is np.ndarray and type(g) is np.ndarray:
            self._zero_pending = False
            grad = self._grad
            if (owned and g.shape == grad.shape and g.dtype == grad.dtype
                    and g.flags.c_contiguous and g.flags.writeable and g.flags.owndata):
                self._grad = g
            else:
                np.copyto(grad, g)  # (broadcasting and casting as ``grad += g``)
            return
        _arrays.accumulate(self.grad, g, op, ("grad", "g"))

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"

    # A parameter is hashable by identity (sets and dict keys of parameters, as PyTorch's);
    # ==, like every operator here, is NumPy's elementwise one.
    __hash__ = object.__hash__

    # -- as an array in a recorded forward pass ----------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    def numel(self) -> int:
        """The number of elements (PyTorch's ``numel()``)."""
        return int(np.prod(self.data.shape, dtype=np.int64))

    @property
    def T(self):
        """The transpose, recorded (``x @ self.weight.T``)."""
        return _transpose(self, None, "T")

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _function(func, args, kwargs)


recording.register_leaf_type(Parameter)


class Module:
    """Base class of every layer and container.

    As in PyTorch, a :class:`Parameter` or a ``Module`` assigned as an attribute is registered
    under the attribute's name: ``self.conv1 = nn.Conv2d(1, 6, 5)`` in ``__init__`` (after
    ``super().__init__()``) puts ``conv1.weight`` and ``conv1.bias`` into :meth:`parameters`
    and :meth:`state_dict`.  Buffers (non-trained state such as batch norm's running
    statistics) are registered with :meth:`register_buffer`.

    A subclass implements ``forward``; its ``backward`` is optional.  Without one, the
    forward pass is recorded as it runs (each module call and op on a recorded array is one
    record with its own context; see the README's "PyTorch-style models"), and
    ``loss.backward()`` or ``module.backward(dy)`` walks the records back, calling each one's
    hand-written backward.  With one, it is used for every call of the module (each call's
    context is kept apart).  Built-in layers record their constructor arguments in
    ``self._config`` so that model files can rebuild them; for any other subclass the
    arguments of its constructor call are recorded there automatically (a constructor that
    sets ``self._config`` itself keeps its own).

    A model computes in its parameters' dtype: where the outermost module call is entered
    (``model(x)`` or ``model.forward(x)``), a floating positional input of another dtype, or
    an integer first input (uint8 images), is cast to that dtype once, with a ``UserWarning``
    naming both dtypes (PyTorch raises instead).  A module without parameters or floating
    buffers keeps its input's dtype.
    """

    def __init__(self):
        d = self.__dict__  # plain entries: __setattr__ needs the registries to exist
        d["training"] = True
        d["_params"] = {}
        d["_buffers"] = {}
        d["_children"] = {}
        d["_config"] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and getattr(cls, "_record_config", True):
            cls.__init__ = _recording_init(cls.__init__)
        # every forward and backward records, or keeps its contexts apart (nn._recorded)
        for name, wrap in (("forward", _recorded.wrap_forward),
                           ("backward", _recorded.wrap_backward)):
            fn = cls.__dict__.get(name)
            if callable(fn) and not hasattr(fn, "__nbconv_raw__"):
                setattr(cls, name, wrap(cls, fn))

    def __getstate__(self):
        """Copies and pickles leave out the records of the last forward pass."""
        return {k: v for k, v in self.__dict__.items() if k not in _recorded.TRANSIENT}

    # -- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_params")
        if params is None:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(
                    f"cannot assign {type(value).__name__} {name!r} before Module.__init__() "
                    f"is called: call super().__init__() first in {type(self).__name__}.__init__")
            object.__setattr__(self, name, value)
            return
        children, buffers = d["_children"], d["_buffers"]
        if (isinstance(value, (Parameter, Module)) or name in buffers or name in params
                or name in children):
            bump_state_version()  # a parameter, buffer or sub-module changes
        if isinstance(value, Parameter):
            children.pop(name, None)
            buffers.pop(name, None)
            if not value.name:
                value.name = name
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            children[name] = value
        elif name in buffers:
            buffers[name] = value  # the registry holds buffers (``_apply`` replaces them there)
            return
        elif value is None and (name in params or name in children):
            params.pop(name, None)
            children.pop(name, None)
        elif name in params:
            raise TypeError(
                f"{type(self).__name__}: cannot assign {type(value).__name__} to parameter "
                f"{name!r} (a Parameter or None expected); to change its value, assign to "
                f"self.{name}.data")
        elif name in children:
            children.pop(name)
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        d = self.__dict__
        for registry in ("_params", "_children", "_buffers"):
            if name in d.get(registry, ()):
                bump_state_version()
                del d[registry][name]
                d.pop(name, None)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` under ``name`` (as ``self.name = param`` does)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        setattr(self, name, param)

    def register_buffer(self, name: str, array) -> None:
        """Register non-trained state (in the state dict, moved and cast with the model, never
        given to optimizers); read it back as ``self.<name>``, update it by assignment."""
        if name in self.__dict__ and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        self._buffer(name, array)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` under ``name`` (as ``self.name = module`` does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got "
                            f"{type(module).__name__}")
        setattr(self, name, module)

    def _param(self, name: str, data: np.ndarray) -> Parameter:
        p = Parameter(data, name)
        self._params[name] = p
        bump_state_version()
        return p

    def _buffer(self, name: str, data: np.ndarray) -> np.ndarray:
        self._buffers[name] = data
        bump_state_version()
        return data

    def _child(self, name: str, module: Module) -> Module:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: child {name!r} is not a Module: {module!r}")
        self._children[name] = module
        bump_state_version()
        return module

    # -- computation --------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(
            f"{type(self).__name__}.forward is not defined: a Module subclass implements "
            "forward(self, x) -> y (its backward is recorded as it runs, or written by hand)")

    backward = _recorded.recorded_backward

    #: a container whose backward only calls its children's (Sequential, Graph): recorded op
    #: by op when it holds a module that is (see nn._recorded._holds_recorded)
    _backward_from_children = False

    @property
    def _supports_need_dx(self) -> bool:
        """Whether ``backward(dy, need_dx=False)`` skips the input gradient (the recorded
        backward does; layers that can say so themselves)."""
        return _recorded.uses_recorded_backward(type(self))

    def _forward_through(self, after, x):
        """``after.forward(self.forward(x))`` as one fused pass, for ``Sequential``; None (the
        default) when this layer fuses nothing with ``after``."""
        return None

    def _backward_through(self, before, dy):
        """``before.backward(self.backward(dy))`` as one fused pass, for ``Sequential``; None
        (the default) when this layer fuses nothing with ``before``."""
        return None

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _keep(self) -> bool:
        """Whether forward should cache what backward needs."""
        return is_grad_enabled()

    # -- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(dotted name, module)`` for this module (name ``prefix``) and every
        sub-module, depth first in registration order; a module registered twice is yielded
        once (as in PyTorch) unless ``remove_duplicate=False``."""
        seen = set() if remove_duplicate else None
        yield from self._named_modules(prefix, seen)

    def _named_modules(self, prefix, seen):
        if seen is not None:
            if id(self) in seen:
                return
            seen.add(id(self))
        yield prefix, self
        for name, child in self._children.items():
            yield from child._named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        """Yield this module and every sub-module (see :meth:`named_modules`)."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """Yield ``(name, module)`` for the direct sub-modules."""
        yield from self._children.items()

    def children(self):
        """Yield the direct sub-modules."""
        yield from self._children.values()

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yield ``(key, Parameter)`` with PyTorch-style dotted keys (``"0.weight"``,
        ``"conv1.bias"``); a parameter shared by several modules is yielded once."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        seen = set()
        for mprefix, m in mods:
            for name, p in m._params.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse: bool = True) -> list[Parameter]:
        """All trainable parameters, in a stable order (each once)."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """Yield ``(key, array)`` for the buffers (batch norm's running statistics, ...)."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self, recurse: bool = True) -> list:
        """The buffers' arrays (see :meth:`named_buffers`)."""
        return [b for _, b in self.named_buffers(recurse=recurse)]

    def num_parameters(self) -> int:
        """The number of trainable values (each shared parameter counted once)."""
        return sum(int(np.prod(np.shape(p.data))) for p in self.parameters())

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every sub-module and then on this one (PyTorch's order, e.g.
        for custom initialisation); returns ``self``."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    def summary(self, input_size=None, dtype=None):
        """:func:`nbconv.nn.summary` of this model: layers, output shapes, parameter counts."""
        return summary(self, input_size, dtype=dtype)

    def zero_grad(self) -> None:
        """Zero every parameter's gradient (lazily: see :attr:`Parameter.grad`)."""
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> Module:
        from .._checks import check_bool

        mode = check_bool(f"{type(self).__name__}.train", "mode", mode)
        changed = False
        for _, m in self.named_modules():
            changed = changed or m.training != mode
            m.training = mode
        if changed:
            bump_state_version()
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
        bump_state_version()

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
        bump_state_version()
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
        bump_state_version()
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
        from ..io import hdf5

        hdf5.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Load a state dict written by :meth:`save_weights` or :func:`nbconv.save`."""
        from ..io import hdf5

        hdf5.load_weights(self, path)


Module.backward = _recorded.wrap_backward(Module, Module.backward)
_recorded.BASE = Module


def _recording_init(init):
    """Wrap a subclass's ``__init__`` so that the outermost call records its arguments
    (defaults filled in) in ``self._config`` unless the constructor set ``_config`` itself:
    ``nbconv.save`` stores them and ``nbconv.load`` calls the class with them again."""
    sig = inspect.signature(init)
    names = list(sig.parameters)[1:]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        d = self.__dict__
        outermost = "_recording" not in d
        d["_recording"] = True
        try:
            init(self, *args, **kwargs)
        finally:
            if outermost:
                del d["_recording"]
        if outermost and not d.get("_config"):
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {}
            for name in names:
                kind = sig.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    if bound.arguments.get(name):
                        return  # positional-only extras cannot be replayed by keyword
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(bound.arguments.get(name, {}))
                elif name in bound.arguments:
                    config[name] = bound.arguments[name]
            d["_config"] = config

    return __init__

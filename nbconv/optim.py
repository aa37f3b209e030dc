"""Optimizers with PyTorch's update rules: ``opt.step()``, ``opt.zero_grad()``, state dicts.

Parameters may live on a CUDA device (:func:`nbconv.cuda.to_device` on the model): the update
then runs as the ``@cuda.jit`` twin of the fused CPU kernel (:mod:`nbconv.cuda.kernels.optim`)
and the optimizer state (momentum buffers, Adam moments) stays on the device beside its
parameter.  ``state_dict()`` always returns host copies; ``load_state_dict`` puts the state
wherever the parameters are.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _config
from ._checks import check_bool, check_int, check_real
from ._dispatch import device
from .kernels import optim as _k
from .nn import _arrays
from .nn.module import Module, Parameter

__all__ = ["SGD", "Adam"]


class Optimizer:
    """Base class: holds the parameters, hyperparameters and per-parameter state arrays."""

    def __init__(self, params, **hyper):
        self.params = _parameter_list(type(self).__name__, params)
        self.hyper = hyper
        self.step_count = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hyper["lr"] = float(value)

    def zero_grad(self) -> None:
        """Zero the parameters' gradients (lazily: see :attr:`nbconv.nn.Parameter.grad`)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """One update of every parameter (weight decay is folded into the fused kernels)."""
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            if not getattr(p, "requires_grad", True):
                continue  # frozen
            if type(p.data) is np.ndarray:
                if not (p.data.flags.c_contiguous and p.grad.flags.c_contiguous):
                    # the kernels update flat views in place
                    p.data = np.ascontiguousarray(p.data)
                    p.grad = np.ascontiguousarray(p.grad)
                if st and type(next(iter(st.values()))) is not np.ndarray:
                    _state_to(st, p.data)  # the model went back to the host
            elif st and not _arrays.is_device_array(next(iter(st.values()))):
                _state_to(st, p.data)  # the model went to the device after some steps
            self._update(p.data, p.grad, st)

    def state_dict(self) -> dict:
        """``{"type", "hyper", "step", "state": {"<i>.<name>": ndarray}}`` (all plain data,
        host copies also for parameters on a CUDA device)."""
        flat = {f"{i}.{k}": _arrays.host_copy(v)
                for i, st in enumerate(self.state) for k, v in st.items()}
        return {"type": type(self).__name__, "hyper": dict(self.hyper),
                "step": self.step_count, "state": flat}

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned; a malformed ``d`` raises ValueError or
        TypeError naming the bad entry and leaves the optimizer as it was."""
        op = f"{type(self).__name__}.load_state_dict"
        if not isinstance(d, dict):
            raise TypeError(f"{op}: argument 'state_dict' must be a dict, got {type(d).__name__}")
        missing = [k for k in ("type", "hyper", "step", "state") if k not in d]
        if missing:
            raise ValueError(f"{op}: argument 'state_dict' lacks the entries {missing} (expected "
                             "what state_dict() returns: 'type', 'hyper', 'step', 'state')")
        if d["type"] != type(self).__name__:
            raise ValueError(f"{op}: state is for {d['type']!r}")
        if not isinstance(d["hyper"], dict) or set(d["hyper"]) != set(self.hyper):
            raise ValueError(f"{op}: entry 'hyper' must be a dict with the keys "
                             f"{sorted(self.hyper)}, got {d['hyper']!r}")
        hyper = type(self)(self.params, **d["hyper"]).hyper  # validated as by the constructor
        step = check_int(op, "state_dict['step']", d["step"], 0)
        if not isinstance(d["state"], dict):
            raise TypeError(f"{op}: entry 'state' must be a dict, got {type(d['state']).__name__}")
        state = [{} for _ in self.params]
        for key, v in d["state"].items():
            i, _, name = str(key).partition(".")
            data = self.params[int(i)].data if i.isdigit() and int(i) < len(self.params) else None
            if (data is None or not name or not hasattr(v, "shape")
                    or tuple(v.shape) != tuple(data.shape)):
                raise ValueError(f"{op}: state {key!r} with shape {np.shape(v)} does not fit "
                                 f"the parameters (expected '<index>.<name>' and the shape of "
                                 "that parameter)")
            if _arrays.is_device_array(v):
                v = _arrays.host_copy(v)
            state[int(i)][name] = _place_like(np.array(v, dtype=data.dtype), data)
        self.hyper, self.step_count, self.state = hyper, step, state


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's rule: ``g = grad + wd*p``; ``b = g`` on the first step, else
    ``b = momentum*b + (1 - dampening)*g``; ``g = g + momentum*b`` (Nesterov) or ``g = b``;
    ``p -= lr*g``.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                 dampening=0.0):
        op = "SGD"
        hyper = dict(lr=check_real(op, "lr", lr, 0.0),
                     momentum=check_real(op, "momentum", momentum, 0.0),
                     weight_decay=check_real(op, "weight_decay", weight_decay, 0.0),
                     nesterov=check_bool(op, "nesterov", nesterov),
                     dampening=check_real(op, "dampening", dampening))
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening == 0")
        super().__init__(params, **hyper)

    def _update(self, p, g, st):
        h = self.hyper
        first = h["momentum"] != 0 and "momentum_buffer" not in st
        if first:
            st["momentum_buffer"] = _arrays.empty_like(p)
        buf = st.get("momentum_buffer", p)  # unused without momentum
        _kernel("_sgd_step", p)(p.reshape(-1), g.reshape(-1), buf.reshape(-1), h["lr"],
                                h["momentum"], h["dampening"], h["weight_decay"], h["nesterov"],
                                first)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias-corrected update and L2 weight decay."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        op = "Adam"
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{op}: argument 'betas' must be a pair of floats in [0, 1), "
                            f"got {betas!r}")
        betas = [check_real(op, "betas", b, 0.0, 1.0, high_open=True) for b in betas]
        super().__init__(params, lr=check_real(op, "lr", lr, 0.0), betas=betas,
                         eps=check_real(op, "eps", eps, 0.0),
                         weight_decay=check_real(op, "weight_decay", weight_decay, 0.0))

    def _update(self, p, g, st):
        h = self.hyper
        b1, b2 = h["betas"]
        if "exp_avg" not in st:
            st["exp_avg"] = _arrays.zeros_like(p)
            st["exp_avg_sq"] = _arrays.zeros_like(p)
        t = self.step_count
        _kernel("_adam_step", p)(p.reshape(-1), g.reshape(-1), st["exp_avg"].reshape(-1),
                                 st["exp_avg_sq"].reshape(-1), h["lr"], b1, b2, h["eps"],
                                 h["weight_decay"], 1 - b1**t, 1 - b2**t)


def _parameter_list(op: str, params) -> list:
    """``params`` as a non-empty list of :class:`~nbconv.nn.Parameter` (PyTorch's rule: an
    iterable of parameters, e.g. ``model.parameters()``)."""
    if isinstance(params, Module):
        raise TypeError(f"{op}: argument 'params' is a {type(params).__name__} module; pass "
                        "model.parameters()")
    if isinstance(params, (np.ndarray, Parameter, str, bytes)) or not hasattr(params, "__iter__"):
        raise TypeError(f"{op}: argument 'params' must be an iterable of Parameters (e.g. "
                        f"model.parameters()), got {type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError(f"{op}: argument 'params' is empty")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{op}: argument 'params' must hold nbconv Parameters (e.g. "
                            f"model.parameters()); item {i} is a {type(p).__name__}")
    return params


def _kernel(name, p):
    """The fused update ``name`` for parameter data ``p``: the numba CPU kernel (its parallel
    version for large parameters), or for a device array its CUDA twin configured to cover
    ``p.size`` elements."""
    if type(p) is np.ndarray:
        if p.size < _config.SERIAL_BELOW:
            return getattr(_k, name)
        parallel, chunks = getattr(_k, name + "_parallel"), 4 * numba.get_num_threads()
        return lambda *args: parallel(*args, chunks)
    return device.optim_kernel(name, p.size)


def _place_like(a, data):
    """Host array ``a`` moved next to ``data`` (to the device if ``data`` lives there)."""
    if _arrays.is_device_array(data):
        return device.to_device(a)
    return a


def _state_to(st, data):
    """Move every state array of one parameter to where its ``data`` now lives."""
    for k, v in st.items():
        st[k] = _place_like(_arrays.host_copy(v) if _arrays.is_device_array(v) else v, data)

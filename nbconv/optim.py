"""Optimizers with PyTorch's update rules: ``opt.step()``, ``opt.zero_grad()``, state dicts.

Parameters may live on a CUDA device (:func:`nbconv.cuda.to_device` on the model): the update
then runs as the ``@cuda.jit`` twin of the fused CPU kernel (:mod:`nbconv.kernels.cuda.optim`)
and the optimizer state (momentum buffers, Adam moments) stays on the device beside its
parameter.  ``state_dict()`` always returns host copies; ``load_state_dict`` puts the state
wherever the parameters are.
"""

from __future__ import annotations

import numpy as np

from .kernels import optim as _k
from .nn import _arrays

__all__ = ["SGD", "Adam"]


class Optimizer:
    """Base class: holds the parameters, hyperparameters and per-parameter state arrays."""

    def __init__(self, params, **hyper):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: argument 'params' is empty")
        for name in ("lr", "weight_decay"):
            if name in hyper and not float(hyper[name]) >= 0:
                raise ValueError(f"{type(self).__name__}: argument '{name}' must be >= 0, "
                                 f"got {hyper[name]!r}")
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
        for p in self.params:
            _arrays.zero_(p.grad)

    def step(self) -> None:
        """One update of every parameter (weight decay is folded into the fused kernels)."""
        self.step_count += 1
        for p, st in zip(self.params, self.state):
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
        if d.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is for "
                             f"{d.get('type')!r}")
        self.hyper.update(d["hyper"])
        self.step_count = int(d["step"])
        self.state = [{} for _ in self.params]
        for key, v in d["state"].items():
            i, name = key.split(".", 1)
            i = int(i)
            if (not 0 <= i < len(self.params)
                    or tuple(np.shape(v)) != tuple(self.params[i].data.shape)):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state {key!r} with "
                                 f"shape {np.shape(v)} does not fit the parameters")
            data = self.params[i].data
            if _arrays.is_device_array(v):
                v = _arrays.host_copy(v)
            v = np.array(v, dtype=data.dtype)
            self.state[i][name] = _place_like(v, data)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's rule: ``g = grad + wd*p``; ``b = g`` on the first step, else
    ``b = momentum*b + (1 - dampening)*g``; ``g = g + momentum*b`` (Nesterov) or ``g = b``;
    ``p -= lr*g``.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                 dampening=0.0):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening == 0")
        super().__init__(params, lr=float(lr), momentum=float(momentum),
                         weight_decay=float(weight_decay), nesterov=bool(nesterov),
                         dampening=float(dampening))

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
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"Adam: argument 'betas' must lie in [0, 1), got {betas!r}")
        super().__init__(params, lr=float(lr), betas=[float(b1), float(b2)], eps=float(eps),
                         weight_decay=float(weight_decay))

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


def _kernel(name, p):
    """The fused update ``name`` for parameter data ``p``: the numba CPU kernel, or for a
    device array its CUDA twin configured to cover ``p.size`` elements."""
    if type(p) is np.ndarray:
        return getattr(_k, name)
    from .kernels import cuda as kc
    from .kernels.cuda import optim as kco

    return getattr(kco, name)[kc.grid(p.size)]


def _place_like(a, data):
    """Host array ``a`` moved next to ``data`` (to the device if ``data`` lives there)."""
    if _arrays.is_device_array(data):
        from .cuda import to_device

        return to_device(a)
    return a


def _state_to(st, data):
    """Move every state array of one parameter to where its ``data`` now lives."""
    for k, v in st.items():
        st[k] = _place_like(_arrays.host_copy(v) if _arrays.is_device_array(v) else v, data)

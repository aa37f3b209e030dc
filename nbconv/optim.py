"""Optimizers with PyTorch's update rules: ``opt.step()``, ``opt.zero_grad()``, state dicts."""

from __future__ import annotations

import numpy as np

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
            p.grad[...] = 0

    def step(self) -> None:
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            g = p.grad
            if self.hyper.get("weight_decay", 0):
                g = g + self.hyper["weight_decay"] * p.data
            self._update(p.data, g, st)

    def state_dict(self) -> dict:
        """``{"type", "hyper", "step", "state": {"<i>.<name>": ndarray}}`` (all plain data)."""
        flat = {f"{i}.{k}": v.copy() for i, st in enumerate(self.state) for k, v in st.items()}
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
            if not 0 <= i < len(self.params) or np.shape(v) != self.params[i].data.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state {key!r} with "
                                 f"shape {np.shape(v)} does not fit the parameters")
            self.state[i][name] = np.array(v, dtype=self.params[i].data.dtype)


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
        if h["momentum"]:
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = np.array(g, copy=True)
            else:
                b = st["momentum_buffer"]
                b *= h["momentum"]
                b += (1 - h["dampening"]) * g
            b = st["momentum_buffer"]
            g = g + h["momentum"] * b if h["nesterov"] else b
        p -= h["lr"] * g


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
            st["exp_avg"] = np.zeros_like(p)
            st["exp_avg_sq"] = np.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.step_count
        step_size = h["lr"] / (1 - b1**t)
        denom = np.sqrt(v) / np.sqrt(1 - b2**t) + h["eps"]
        p -= (step_size * m / denom).astype(p.dtype, copy=False)

"""Optimizers with PyTorch's update rules, parameter groups and state dicts.

Every optimizer takes ``params`` as PyTorch does: an iterable of parameters
(``model.parameters()``), or of dicts, each a *parameter group* ``{"params": [...], "lr": ...}``
whose missing hyperparameters come from the constructor's arguments.  ``opt.param_groups`` is
that list of dicts (a learning-rate scheduler rewrites their ``"lr"``); ``opt.defaults`` holds
the constructor's hyperparameters.  ``opt.state[i]`` is the state of the ``i``-th parameter in
group order (momentum buffers, moments).

Parameters may live on a CUDA device (:func:`nbconv.cuda.to_device` on the model): SGD and
Adam (without ``amsgrad``) then update them with the ``@cuda.jit`` twin of their fused CPU
kernel (:mod:`nbconv.cuda.kernels.optim`) and keep their state on the device beside the
parameter; AdamW, RMSprop and ``amsgrad`` have no device twin and raise TypeError there.
``state_dict()`` always returns host copies; ``load_state_dict`` puts the state wherever the
parameters are.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _config
from .._checks import check_bool, check_int, check_real
from .._dispatch import device
from ..kernels import optim as _k
from ..nn import _arrays
from ..nn.modes import bump_state_version
from ..nn.module import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop"]

# the fused kernels with a CUDA twin in nbconv.cuda.kernels.optim
_DEVICE_KERNELS = ("_sgd_step", "_adam_step")


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``step``/``zero_grad``/state dicts.

    Subclasses define ``_check_hyper(op, hyper) -> dict`` (validate one group's
    hyperparameters, as the constructor does) and ``_update(p, g, state, hyper, index)``
    (update one parameter's data ``p`` in place from its gradient ``g``).

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``"params"`` (list of :class:`~nbconv.nn.Parameter`) and every
        hyperparameter, read afresh at each :meth:`step` (a scheduler or the user may change
        ``"lr"`` and the others between steps).
    defaults : dict
        The constructor's hyperparameters (``hyper`` is the same dict).
    params : list of Parameter
        All parameters, group after group; ``state[i]`` belongs to ``params[i]``.
    state : list of dict
        Per-parameter state arrays (``"momentum_buffer"``, ``"exp_avg"``, ...).
    step_count : int
        Calls of :meth:`step` so far.
    """

    _uses_step = False  # keeps a per-parameter step count (Adam's bias corrections)
    _added_keys: dict = {}  # hyperparameters newer than some saved files, with their defaults

    def __init__(self, params, defaults: dict):
        op = type(self).__name__
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.params: list[Parameter] = []
        self.state: list[dict] = []
        self._steps: list[int] = []
        self.step_count = 0
        for group in _group_list(op, params):
            self.add_param_group(group)

    @property
    def hyper(self) -> dict:
        """The constructor's hyperparameters (:attr:`defaults`)."""
        return self.defaults

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's (and the default of
        groups added later)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = check_real(type(self).__name__, "lr", value, 0.0)
        self.defaults["lr"] = value
        for group in self.param_groups:
            group["lr"] = value

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (PyTorch's ``add_param_group``).

        Parameters
        ----------
        param_group : dict
            ``"params"``: a Parameter or an iterable of them; the other entries override
            :attr:`defaults` for this group (keys that are no hyperparameter of this optimizer
            are kept as they are, as in PyTorch).

        Raises
        ------
        TypeError, ValueError
            A malformed group, a bad hyperparameter (named), or a parameter that already is
            in a group.
        """
        op = f"{type(self).__name__}.add_param_group"
        if not isinstance(param_group, dict):
            raise TypeError(f"{op}: argument 'param_group' must be a dict with 'params', got "
                            f"{type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{op}: argument 'param_group' lacks the entry 'params'")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        params = _parameter_list(op, params, allow_empty=True)
        known = {id(p) for p in self.params}
        seen = set()
        for p in params:
            if id(p) in known:
                raise ValueError(f"{op}: some parameters appear in more than one parameter "
                                 f"group ({p!r})")
            if id(p) in seen:
                raise ValueError(f"{op}: parameter {p!r} appears twice in one group")
            seen.add(id(p))
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        where = f"{type(self).__name__} (param group {len(self.param_groups)})"
        hyper = self._check_hyper(where, {k: merged[k] for k in self.defaults})
        self.param_groups.append({"params": params, **merged, **hyper})
        self.params.extend(params)
        self.state.extend({} for _ in params)
        self._steps.extend(0 for _ in params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the parameters' gradients (lazily: see :attr:`nbconv.nn.Parameter.grad`;
        ``set_to_none`` is accepted for PyTorch's signature and changes nothing)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """One update of every parameter that does not have ``requires_grad = False``."""
        bump_state_version()  # compiled models (nbconv.compile) holding copies look again
        self.step_count += 1
        i = 0
        for group in self.param_groups:
            h = None
            for p in group["params"]:
                st = self.state[i]
                i += 1
                if not getattr(p, "requires_grad", True):
                    continue  # frozen
                if h is None:
                    h = self._values(group)
                if type(p.data) is np.ndarray:
                    if not (p.data.flags.c_contiguous and p.grad.flags.c_contiguous):
                        # the kernels update flat views in place
                        p.data = np.ascontiguousarray(p.data)
                        p.grad = np.ascontiguousarray(p.grad)
                    if st and type(next(iter(st.values()))) is not np.ndarray:
                        _state_to(st, p.data)  # the model went back to the host
                elif st and not _arrays.is_device_array(next(iter(st.values()))):
                    _state_to(st, p.data)  # the model went to the device after some steps
                if self._uses_step:
                    self._steps[i - 1] += 1
                self._update(p.data, p.grad, st, h, i - 1)

    def _values(self, group: dict) -> dict:
        """The group's hyperparameters as plain Python numbers for the kernels."""
        out = {}
        for k in self.defaults:
            v = group[k]
            if isinstance(v, (bool, np.bool_)):
                out[k] = bool(v)
            elif isinstance(v, (tuple, list)):
                out[k] = tuple(float(x) for x in v)
            else:
                out[k] = float(v)
        return out

    def state_dict(self) -> dict:
        """The optimizer's state as plain data (host copies also for device parameters).

        Returns
        -------
        dict
            ``"type"`` (class name), ``"hyper"`` (:attr:`defaults`), ``"step"``
            (:attr:`step_count`), ``"state"`` (``{"<i>.<name>": ndarray}``, ``i`` indexing
            :attr:`params`; Adam's per-parameter step counts are 0-d int64 ``"<i>.step"``)
            and ``"param_groups"`` (one dict per group: its hyperparameters and other
            entries, and ``"params"``: the indices of its parameters).  JSON-able apart from
            the arrays of ``"state"``.
        """
        flat = {f"{i}.{k}": _arrays.host_copy(v)
                for i, st in enumerate(self.state) for k, v in st.items()}
        if self._uses_step:
            flat.update({f"{i}.step": np.array(n, np.int64)
                         for i, n in enumerate(self._steps) if n})
        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: _plain(v) for k, v in g.items() if k != "params"},
                           "params": list(range(start, start + n))})
            start += n
        return {"type": type(self).__name__, "hyper": {k: _plain(v) for k, v in
                                                         self.defaults.items()},
                "step": self.step_count, "state": flat, "param_groups": groups}

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (or an older nbconv's state without
        ``"param_groups"``, whose ``"hyper"`` then applies to every group).

        A malformed ``d`` raises ValueError or TypeError naming the bad entry and leaves the
        optimizer as it was.  The groups must hold as many parameters as when ``d`` was
        saved; each group's hyperparameters (and other entries, such as a scheduler's
        ``"initial_lr"``) are replaced by the saved ones.
        """
        op = f"{type(self).__name__}.load_state_dict"
        if not isinstance(d, dict):
            raise TypeError(f"{op}: argument 'state_dict' must be a dict, got {type(d).__name__}")
        missing = [k for k in ("type", "hyper", "step", "state") if k not in d]
        if missing:
            raise ValueError(f"{op}: argument 'state_dict' lacks the entries {missing} (expected "
                             "what state_dict() returns: 'type', 'hyper', 'step', 'state', "
                             "'param_groups')")
        if d["type"] != type(self).__name__:
            raise ValueError(f"{op}: state is for {d['type']!r}")
        defaults = self._saved_hyper(op, "hyper", d["hyper"])
        if set(defaults) != set(self.defaults):
            raise ValueError(f"{op}: entry 'hyper' must be a dict with the keys "
                             f"{sorted(self.defaults)}, got {d['hyper']!r}")
        defaults = self._check_hyper(op, defaults)
        step = check_int(op, "state_dict['step']", d["step"], 0)
        groups = self._saved_groups(op, d.get("param_groups"), defaults)
        if not isinstance(d["state"], dict):
            raise TypeError(f"{op}: entry 'state' must be a dict, got {type(d['state']).__name__}")
        state = [{} for _ in self.params]
        steps = [0] * len(self.params)
        for key, v in d["state"].items():
            i, _, name = str(key).partition(".")
            data = self.params[int(i)].data if i.isdigit() and int(i) < len(self.params) else None
            if self._uses_step and name == "step" and data is not None:
                steps[int(i)] = _saved_step(op, key, v)
                continue
            if (data is None or not name or not hasattr(v, "shape")
                    or tuple(v.shape) != tuple(data.shape)):
                raise ValueError(f"{op}: state {key!r} with shape {np.shape(v)} does not fit "
                                 f"the parameters (expected '<index>.<name>' and the shape of "
                                 "that parameter)")
            if _arrays.is_device_array(v):
                v = _arrays.host_copy(v)
            state[int(i)][name] = _place_like(np.array(v, dtype=data.dtype), data)
        if self._uses_step:  # files from before per-parameter steps: all moved together
            steps = [n or (step if st else 0) for n, st in zip(steps, state)]
        for g, saved in zip(self.param_groups, groups):
            params = g["params"]
            g.clear()
            g.update({"params": params, **saved})
        self.defaults.clear()
        self.defaults.update(defaults)
        self.step_count, self.state, self._steps = step, state, steps

    def _saved_hyper(self, op: str, where: str, h) -> dict:
        """Validated hyperparameters ``h`` of a saved state (keys added since some files were
        written take their defaults)."""
        if not isinstance(h, dict):
            raise ValueError(f"{op}: entry {where!r} must be a dict with the keys "
                             f"{sorted(self.defaults)}, got {h!r}")
        full = {**{k: v for k, v in self._added_keys.items() if k not in h}, **h}
        if not set(self.defaults) <= set(full):
            raise ValueError(f"{op}: entry {where!r} must be a dict with the keys "
                             f"{sorted(self.defaults)}, got {h!r}")
        return full

    def _saved_groups(self, op: str, groups, defaults: dict) -> list[dict]:
        """Validated saved groups: one dict of entries (without "params") per group."""
        if groups is None:  # an older file: one set of hyperparameters for every group
            return [dict(defaults) for _ in self.param_groups]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            n = len(groups) if isinstance(groups, (list, tuple)) else groups
            raise ValueError(f"{op}: entry 'param_groups' has {n!r} groups, this optimizer "
                             f"has {len(self.param_groups)}")
        out, start = [], 0
        for j, (g, mine) in enumerate(zip(groups, self.param_groups)):
            n = len(mine["params"])
            where = f"param_groups[{j}]"
            if not isinstance(g, dict) or list(g.get("params", ())) != list(range(start,
                                                                                 start + n)):
                raise ValueError(f"{op}: entry {where} must be a dict whose 'params' are the "
                                 f"indices {start}..{start + n - 1} (a group of {n} "
                                 f"parameters), got {g!r:.200}")
            h = self._saved_hyper(op, where, {k: v for k, v in g.items() if k != "params"})
            hyper = self._check_hyper(f"{op} ({where})", {k: h[k] for k in self.defaults})
            out.append({**h, **hyper})
            start += n
        return out


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's rule: ``g = grad + wd*p``; ``b = g`` on the first step, else
    ``b = momentum*b + (1 - dampening)*g``; ``g = g + momentum*b`` (Nesterov) or ``g = b``;
    ``p -= lr*g``.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    momentum, weight_decay, dampening : float, default 0
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.

    Examples
    --------
    >>> import nbconv as nc
    >>> net = nc.nn.Sequential(nc.nn.Linear(4, 3), nc.nn.ReLU(), nc.nn.Linear(3, 2))
    >>> opt = nc.optim.SGD([{"params": net[0].parameters()},
    ...                     {"params": net[2].parameters(), "lr": 0.01}], lr=0.1, momentum=0.9)
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.01]
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, weight_decay=0.0, nesterov=False,
                 dampening=0.0):
        defaults = self._check_hyper("SGD", dict(lr=lr, momentum=momentum,
                                                 weight_decay=weight_decay, nesterov=nesterov,
                                                 dampening=dampening))
        super().__init__(params, defaults)

    @staticmethod
    def _check_hyper(op, h):
        out = dict(lr=check_real(op, "lr", h["lr"], 0.0),
                   momentum=check_real(op, "momentum", h["momentum"], 0.0),
                   weight_decay=check_real(op, "weight_decay", h["weight_decay"], 0.0),
                   nesterov=check_bool(op, "nesterov", h["nesterov"]),
                   dampening=check_real(op, "dampening", h["dampening"]))
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(f"{op}: nesterov needs momentum > 0 and dampening == 0")
        return out

    def _update(self, p, g, st, h, i):
        first = h["momentum"] != 0 and "momentum_buffer" not in st
        if first:
            st["momentum_buffer"] = _arrays.empty_like(p)
        buf = st.get("momentum_buffer", p)  # unused without momentum
        _kernel("SGD", "_sgd_step", p)(p.reshape(-1), g.reshape(-1), buf.reshape(-1), h["lr"],
                                       h["momentum"], h["dampening"], h["weight_decay"],
                                       h["nesterov"], first)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias-corrected update, L2 weight decay and AMSGrad.

    ``g = grad + wd*p``; ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g*g``;
    ``v_max = max(v_max, v)`` with ``amsgrad``; ``p -= lr/(1-b1**t) * m /
    (sqrt(v or v_max)/sqrt(1-b2**t) + eps)``, ``t`` counting this parameter's steps.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.Adam(nc.nn.Linear(4, 2).parameters(), lr=3e-3, amsgrad=True)
    >>> opt.param_groups[0]["betas"], opt.param_groups[0]["amsgrad"]
    ((0.9, 0.999), True)
    """

    _uses_step = True
    _added_keys = {"amsgrad": False}
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        defaults = self._check_hyper(type(self).__name__, dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))
        super().__init__(params, defaults)

    @staticmethod
    def _check_hyper(op, h):
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{op}: argument 'betas' must be a pair of floats in [0, 1), "
                            f"got {betas!r}")
        return dict(lr=check_real(op, "lr", h["lr"], 0.0),
                    betas=tuple(check_real(op, "betas", b, 0.0, 1.0, high_open=True)
                                for b in betas),
                    eps=check_real(op, "eps", h["eps"], 0.0),
                    weight_decay=check_real(op, "weight_decay", h["weight_decay"], 0.0),
                    amsgrad=check_bool(op, "amsgrad", h["amsgrad"]))

    def _update(self, p, g, st, h, i):
        b1, b2 = h["betas"]
        if "exp_avg" not in st:
            st["exp_avg"] = _arrays.zeros_like(p)
            st["exp_avg_sq"] = _arrays.zeros_like(p)
        t = self._steps[i]
        args = (h["lr"], b1, b2, h["eps"], h["weight_decay"])
        if not (h["amsgrad"] or self._decoupled):
            _kernel(type(self).__name__, "_adam_step", p)(
                p.reshape(-1), g.reshape(-1), st["exp_avg"].reshape(-1),
                st["exp_avg_sq"].reshape(-1), *args, 1 - b1**t, 1 - b2**t)
            return
        if h["amsgrad"] and "max_exp_avg_sq" not in st:
            st["max_exp_avg_sq"] = _arrays.zeros_like(p)
        vmax = st.get("max_exp_avg_sq", st["exp_avg_sq"])  # unused without amsgrad
        _kernel(type(self).__name__, "_adam_ext_step", p)(
            p.reshape(-1), g.reshape(-1), st["exp_avg"].reshape(-1),
            st["exp_avg_sq"].reshape(-1), vmax.reshape(-1), *args, self._decoupled,
            h["amsgrad"], 1 - b1**t, 1 - b2**t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's ``AdamW``.

    ``p *= 1 - lr*wd`` first, then Adam's update without the L2 term (see :class:`Adam`).

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
    amsgrad : bool, default False

    Examples
    --------
    >>> import nbconv as nc
    >>> net = nc.nn.Linear(4, 2)
    >>> opt = nc.optim.AdamW([{"params": [net.weight]},
    ...                       {"params": [net.bias], "weight_decay": 0.0}])
    >>> [g["weight_decay"] for g in opt.param_groups]
    [0.01, 0.0]
    """

    _added_keys = {}
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop with PyTorch's update: optional momentum, centring and weight decay.

    ``g = grad + wd*p``; ``s = alpha*s + (1-alpha)*g*g``; centred: ``a = lerp(a, g, 1-alpha)``
    and ``d = sqrt(s - a*a) + eps``, else ``d = sqrt(s) + eps``; with momentum
    ``b = momentum*b + g/d`` and ``p -= lr*b``, else ``p -= lr*g/d``.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-2
    alpha : float, default 0.99
        Smoothing constant, >= 0.
    eps : float, default 1e-8
    weight_decay, momentum : float, default 0
    centered : bool, default False

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.RMSprop(nc.nn.Linear(4, 2).parameters(), momentum=0.9, centered=True)
    >>> opt.defaults["alpha"], opt.defaults["centered"]
    (0.99, True)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        defaults = self._check_hyper("RMSprop", dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered))
        super().__init__(params, defaults)

    @staticmethod
    def _check_hyper(op, h):
        return dict(lr=check_real(op, "lr", h["lr"], 0.0),
                    alpha=check_real(op, "alpha", h["alpha"], 0.0),
                    eps=check_real(op, "eps", h["eps"], 0.0),
                    weight_decay=check_real(op, "weight_decay", h["weight_decay"], 0.0),
                    momentum=check_real(op, "momentum", h["momentum"], 0.0),
                    centered=check_bool(op, "centered", h["centered"]))

    def _update(self, p, g, st, h, i):
        if "square_avg" not in st:
            st["square_avg"] = _arrays.zeros_like(p)
        if h["centered"] and "grad_avg" not in st:
            st["grad_avg"] = _arrays.zeros_like(p)
        if h["momentum"] > 0 and "momentum_buffer" not in st:
            st["momentum_buffer"] = _arrays.zeros_like(p)
        sq = st["square_avg"]
        ga, buf = st.get("grad_avg", sq), st.get("momentum_buffer", sq)  # unused when absent
        _kernel("RMSprop", "_rmsprop_step", p)(
            p.reshape(-1), g.reshape(-1), sq.reshape(-1), ga.reshape(-1), buf.reshape(-1),
            h["lr"], h["alpha"], h["eps"], h["weight_decay"], h["momentum"], h["centered"])


def _group_list(op: str, params) -> list[dict]:
    """``params`` as a list of group dicts: an iterable of Parameters is one group."""
    if isinstance(params, Module):
        raise TypeError(f"{op}: argument 'params' is a {type(params).__name__} module; pass "
                        "model.parameters()")
    if isinstance(params, (np.ndarray, Parameter, str, bytes, dict)) or not hasattr(
            params, "__iter__"):
        raise TypeError(f"{op}: argument 'params' must be an iterable of Parameters (e.g. "
                        f"model.parameters()) or of dicts (parameter groups), got "
                        f"{type(params).__name__}")
    items = list(params)
    if not items:
        raise ValueError(f"{op}: argument 'params' is empty")
    if all(isinstance(g, dict) for g in items):
        return items
    if any(isinstance(g, dict) for g in items):
        raise TypeError(f"{op}: argument 'params' mixes dicts (parameter groups) and other "
                        "items; pass either Parameters or dicts")
    return [{"params": _parameter_list(op, items)}]


def _parameter_list(op: str, params, allow_empty: bool = False) -> list:
    """``params`` as a list of :class:`~nbconv.nn.Parameter` (PyTorch's rule: an iterable of
    parameters, e.g. ``model.parameters()``)."""
    if isinstance(params, Module):
        raise TypeError(f"{op}: argument 'params' is a {type(params).__name__} module; pass "
                        "model.parameters()")
    if isinstance(params, (np.ndarray, Parameter, str, bytes, dict)) or not hasattr(
            params, "__iter__"):
        raise TypeError(f"{op}: argument 'params' must be an iterable of Parameters (e.g. "
                        f"model.parameters()), got {type(params).__name__}")
    params = list(params)
    if not params and not allow_empty:
        raise ValueError(f"{op}: argument 'params' is empty")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{op}: argument 'params' must hold nbconv Parameters (e.g. "
                            f"model.parameters()); item {i} is a {type(p).__name__}")
    return params


def _plain(v):
    """A group entry as JSON data (tuples as lists, NumPy scalars as Python numbers)."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _saved_step(op: str, key, v) -> int:
    """A saved per-parameter step count: a 0-d integer array or an int, >= 0."""
    a = np.asarray(v)
    if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
        raise ValueError(f"{op}: state {key!r} must be a non-negative integer (a 0-d array), "
                         f"got {v!r:.80}")
    return int(a)


def _kernel(op, name, p):
    """The fused update ``name`` for parameter data ``p``: the numba CPU kernel (its parallel
    version for large parameters), or for a device array its CUDA twin configured to cover
    ``p.size`` elements."""
    if type(p) is np.ndarray:
        if p.size < _config.SERIAL_BELOW:
            return getattr(_k, name)
        parallel, chunks = getattr(_k, name + "_parallel"), 4 * numba.get_num_threads()
        return lambda *args: parallel(*args, chunks)
    if name not in _DEVICE_KERNELS:
        raise TypeError(f"{op}.step: this update (AdamW, RMSprop, amsgrad) has no CUDA twin; "
                        "move the model to the host (nbconv.cuda.to_host) or use SGD or Adam")
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


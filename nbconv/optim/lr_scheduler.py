"""Learning-rate schedulers with PyTorch's names, arguments and learning-rate sequences.

A scheduler rewrites the ``"lr"`` of its optimizer's parameter groups each time its
:meth:`~LRScheduler.step` is called (once per epoch, or per batch for :class:`OneCycleLR`), after
``optimizer.step()``.  Like PyTorch's, the schedulers are *chainable*: each step multiplies or
moves the groups' current learning rates, so two schedulers on one optimizer compose, and the
sequences equal PyTorch's to float rounding.  Constructing one already sets the learning rate
of step 0 (and records each group's ``"initial_lr"``).

``state_dict()`` returns plain JSON data (the constructor's arguments and the counters);
``load_state_dict`` restores it: build the optimizer and the scheduler as before, load the
optimizer's state (which holds the groups' learning rates), then the scheduler's.
:func:`nbconv.train.fit` does this for its checkpoints (``scheduler=``).

>>> import nbconv as nc
>>> from nbconv.optim import SGD, lr_scheduler
>>> opt = SGD(nc.nn.Linear(2, 2).parameters(), lr=0.1)
>>> warmup = lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
>>> decay = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
>>> sched = lr_scheduler.SequentialLR(opt, [warmup, decay], milestones=[2])
>>> lrs = []
>>> for epoch in range(6):
...     lrs.append(round(sched.get_last_lr()[0], 6))
...     opt.step()
...     sched.step()
>>> lrs
[0.05, 0.075, 0.1, 0.1, 0.01, 0.01]
"""

from __future__ import annotations

import math
from bisect import bisect_right

from .._checks import check_bool, check_int, check_real
from .optimizers import Optimizer

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
           "LinearLR", "OneCycleLR", "SequentialLR", "ReduceLROnPlateau", "ConstantLR",
           "PolynomialLR", "CosineAnnealingWarmRestarts"]


def _check_optimizer(op: str, optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{op}: argument 'optimizer' must be an nbconv.optim optimizer, got "
                        f"{type(optimizer).__name__}")


def _per_group(op: str, name: str, v, optimizer, **limits) -> list[float]:
    """A number, or a list of one number per parameter group, as a list per group."""
    n = len(optimizer.param_groups)
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"{op}: argument '{name}' must have one value per parameter group "
                             f"({n}), got {len(v)}")
        return [check_real(op, name, x, **limits) for x in v]
    return [check_real(op, name, v, **limits)] * n


# What each saved entry must be: "int", "real" (finite), "real_inf" (inf allowed), "bool",
# "reals" (list of finite reals, one per parameter group), "ints" (list of ints),
# or a tuple of allowed strings.
def _check_entry(op: str, key: str, kind, v, groups: int):
    where = f"state_dict[{key!r}]"
    if kind == "int":
        return check_int(op, where, v)
    if kind == "real":
        return check_real(op, where, v)
    if kind == "real_inf":
        return check_real(op, where, v, finite=False)
    if kind == "bool":
        return check_bool(op, where, v)
    if kind == "real_or_none":
        return None if v is None else check_real(op, where, v)
    if kind in ("reals", "ints"):
        if not isinstance(v, (list, tuple)) or (kind == "reals" and len(v) != groups):
            raise ValueError(f"{op}: entry {key!r} must be a list"
                             + (f" of {groups} numbers" if kind == "reals" else " of ints")
                             + f", got {v!r:.100}")
        return [check_real(op, where, x) if kind == "reals" else check_int(op, where, x, 0)
                for x in v]
    if isinstance(kind, tuple):
        if v not in kind:
            raise ValueError(f"{op}: entry {key!r} must be one of {list(kind)}, got {v!r:.100}")
        return v
    raise AssertionError(kind)  # pragma: no cover


class LRScheduler:
    """Base class of the epoch-indexed schedulers (PyTorch's ``LRScheduler``).

    Subclasses define ``_chained()`` (the groups' next learning rates from their current ones,
    PyTorch's ``get_lr``) and, where one exists, ``_closed()`` (the learning rates of epoch
    ``last_epoch`` from ``base_lrs`` alone), and list their constructor arguments in
    ``_saved``.

    Attributes
    ----------
    optimizer : nbconv.optim.Optimizer
    base_lrs : list of float
        Each group's ``"initial_lr"``.
    last_epoch : int
        Steps taken (0 right after construction).
    """

    _saved: dict = {}  # the constructor's arguments kept in state_dict, with their kinds

    def __init__(self, optimizer, last_epoch: int = -1):
        op = type(self).__name__
        _check_optimizer(op, optimizer)
        last_epoch = check_int(op, "last_epoch", last_epoch, -1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"{op}: last_epoch={last_epoch} resumes a schedule, but param_groups[{i}]"
                        " has no 'initial_lr' (load the optimizer's state first, or leave "
                        "last_epoch at -1)")
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        """Advance one epoch (or batch) and set the groups' learning rates for it."""
        self._step_count += 1
        self.last_epoch += 1
        self._apply(self._chained())

    def _jump(self, epoch: int) -> None:
        """Set epoch ``epoch``'s learning rates from the closed form (PyTorch's
        ``_update_lr(epoch)``, which :class:`SequentialLR` uses at its milestones)."""
        self.last_epoch = epoch
        self._apply(self._closed() if hasattr(self, "_closed") else self._chained())

    def _apply(self, lrs) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _lrs(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rate of every group after the latest :meth:`step`."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The constructor's arguments and the counters, as JSON data."""
        keys = list(self._saved) + ["base_lrs", "last_epoch", "_step_count", "_last_lr"]
        return {k: _plain(getattr(self, k)) for k in keys}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`'s output; a malformed one raises ValueError or
        TypeError naming the entry and changes nothing."""
        self._assign(self._parse_state(state_dict))

    def _assign(self, values: dict) -> None:
        self.__dict__.update(values)

    def _spec(self) -> dict:
        return {**self._saved, "base_lrs": "reals", "last_epoch": "int", "_step_count": "int",
                "_last_lr": "reals"}

    def _parse_state(self, d) -> dict:
        op = f"{type(self).__name__}.load_state_dict"
        if not isinstance(d, dict):
            raise TypeError(f"{op}: argument 'state_dict' must be a dict, got "
                            f"{type(d).__name__}")
        spec = self._spec()
        if set(d) != set(spec):
            raise ValueError(f"{op}: argument 'state_dict' must have the keys {sorted(spec)}, "
                             f"got {sorted(map(str, d))}")
        groups = len(self.optimizer.param_groups)
        out = {k: _check_entry(op, k, kind, d[k], groups) for k, kind in spec.items()}
        self._check_state(op, out)
        return out

    def _check_state(self, op: str, values: dict) -> None:
        """Further checks of a parsed state (the constructor's rules)."""


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    step_size : int
        >= 1.
    gamma : float, default 0.1
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> out = []
    >>> for _ in range(5):
    ...     out.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> out
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    _saved = {"step_size": "int", "gamma": "real"}

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = check_int("StepLR", "step_size", step_size, 1)
        self.gamma = check_real("StepLR", "gamma", gamma, 0.0)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        check_int(op, "step_size", v["step_size"], 1)

    def _chained(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _closed(self):
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone epoch (a milestone listed
    twice multiplies twice).

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    milestones : iterable of int
    gamma : float, default 0.1
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
    >>> out = []
    >>> for _ in range(4):
    ...     out.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> out
    [1.0, 0.5, 0.5, 0.25]
    """

    _saved = {"milestones": "ints", "gamma": "real"}

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        op = "MultiStepLR"
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{op}: argument 'milestones' must be an iterable of ints, got "
                            f"{type(milestones).__name__}")
        self.milestones = sorted(check_int(op, "milestones", m, 0) for m in milestones)
        self.gamma = check_real(op, "gamma", gamma, 0.0)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        v["milestones"] = sorted(v["milestones"])

    def _chained(self):
        count = self.milestones.count(self.last_epoch)
        if count == 0:
            return self._lrs()
        return [lr * self.gamma ** count for lr in self._lrs()]

    def _closed(self):
        k = bisect_right(self.milestones, self.last_epoch)
        return [b * self.gamma ** k for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    gamma : float
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    >>> opt.step(); sched.step(); opt.step(); sched.step()
    >>> sched.get_last_lr()
    [0.25]
    """

    _saved = {"gamma": "real"}

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = check_real("ExponentialLR", "gamma", gamma, 0.0)
        super().__init__(optimizer, last_epoch)

    def _chained(self):
        if self._is_initial:  # a resumed schedule must not advance one epoch ahead
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _closed(self):
        return [b * self.gamma ** self.last_epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial learning rate to ``eta_min`` over ``T_max`` epochs
    (SGDR without restarts; past ``T_max`` the cosine goes on, back up, as PyTorch's does).

    :math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))/2`, applied
    in PyTorch's recursive form, so that it composes with other changes to the rate.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    T_max : int
        Half period, >= 1.
    eta_min : float, default 0
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    >>> out = []
    >>> for _ in range(5):
    ...     out.append(round(sched.get_last_lr()[0], 6)); opt.step(); sched.step()
    >>> out
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """

    _saved = {"T_max": "int", "eta_min": "real"}

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = check_real("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        check_int(op, "T_max", v["T_max"], 1)

    def _chained(self):
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._lrs()
        if self._step_count == 1 and e > 0:
            return self._closed()
        if (e - 1 - T) % (2 * T) == 0:  # the trough: the recursive ratio would be 0/0
            return [lr + (b - lo) * (1 - math.cos(math.pi / T)) / 2
                    for lr, b in zip(self._lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
        return [ratio * (lr - lo) + lo for lr in self._lrs()]

    def _closed(self):
        c = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (b - self.eta_min) * c / 2 for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the learning rate linearly from ``start_factor`` to ``end_factor`` times the
    initial one over ``total_iters`` epochs (a warm-up), then keep it.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    start_factor : float, default 1/3
        In (0, 1].
    end_factor : float, default 1.0
        In [0, 1].
    total_iters : int, default 5
        >= 1.
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
    >>> out = []
    >>> for _ in range(5):
    ...     out.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> out
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    _saved = {"start_factor": "real", "end_factor": "real", "total_iters": "int"}

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        op = "LinearLR"
        self.start_factor = check_real(op, "start_factor", start_factor, 0.0, 1.0,
                                       low_open=True)
        self.end_factor = check_real(op, "end_factor", end_factor, 0.0, 1.0)
        self.total_iters = check_int(op, "total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        check_real(op, "start_factor", v["start_factor"], 0.0, 1.0, low_open=True)
        check_int(op, "total_iters", v["total_iters"], 1)

    def _chained(self):
        e, s, f, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if e == 0:
            return [lr * s for lr in self._lrs()]
        if self._is_initial or e > n:
            return self._lrs()
        ratio = 1.0 + (f - s) / (n * s + (e - 1) * (f - s))
        return [lr * ratio for lr in self._lrs()]

    def _closed(self):
        s, f, n = self.start_factor, self.end_factor, self.total_iters
        return [b * (s + (f - s) * min(n, self.last_epoch) / n) for b in self.base_lrs]


class ConstantLR(LRScheduler):
    """Multiply the learning rate by ``factor`` for the first ``total_iters`` epochs.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    factor : float, default 1/3
        In (0, 1].
    total_iters : int, default 5
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2)
    >>> out = []
    >>> for _ in range(4):
    ...     out.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> out
    [0.5, 0.5, 1.0, 1.0]
    """

    _saved = {"factor": "real", "total_iters": "int"}

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        self.factor = check_real("ConstantLR", "factor", factor, 0.0, 1.0, low_open=True)
        self.total_iters = check_int("ConstantLR", "total_iters", total_iters, 0)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        check_real(op, "factor", v["factor"], 0.0, 1.0, low_open=True)

    def _chained(self):
        if self.last_epoch == 0:
            return [lr * self.factor for lr in self._lrs()]
        if self.last_epoch != self.total_iters:
            return self._lrs()
        return [lr * (1.0 / self.factor) for lr in self._lrs()]

    def _closed(self):
        f = self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor)
        return [b * f for b in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Decay the learning rate as ``(1 - t/total_iters)**power`` to 0 at ``total_iters``.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    total_iters : int, default 5
        >= 1.
    power : float, default 1.0
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.PolynomialLR(opt, total_iters=4, power=2.0)
    >>> out = []
    >>> for _ in range(6):
    ...     out.append(sched.get_last_lr()[0]); opt.step(); sched.step()
    >>> out
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """

    _saved = {"total_iters": "int", "power": "real"}

    def __init__(self, optimizer, total_iters=5, power=1.0, last_epoch=-1):
        self.total_iters = check_int("PolynomialLR", "total_iters", total_iters, 1)
        self.power = check_real("PolynomialLR", "power", power)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        check_int(op, "total_iters", v["total_iters"], 1)

    def _chained(self):
        e, n = self.last_epoch, self.total_iters
        if self._is_initial or e > n:
            return self._lrs()
        decay = ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** self.power
        return [lr * decay for lr in self._lrs()]

    def _closed(self):
        n = self.total_iters
        return [b * (1.0 - min(n, self.last_epoch) / n) ** self.power for b in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR): the cosine from the initial learning rate
    to ``eta_min`` restarts after ``T_0`` epochs, each period ``T_mult`` times longer.

    ``step(epoch)`` also takes a fractional epoch (``epoch + i / iters`` after batch ``i``),
    as in PyTorch.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    T_0 : int
        The first period, >= 1.
    T_mult : int, default 1
        >= 1.
    eta_min : float, default 0
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2)
    >>> out = []
    >>> for _ in range(5):
    ...     out.append(round(sched.get_last_lr()[0], 6)); opt.step(); sched.step()
    >>> out
    [1.0, 0.5, 1.0, 0.5, 1.0]
    """

    _saved = {"T_0": "int", "T_i": "int", "T_mult": "int", "eta_min": "real", "T_cur": "real"}

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        op = "CosineAnnealingWarmRestarts"
        self.T_0 = self.T_i = check_int(op, "T_0", T_0, 1)
        self.T_mult = check_int(op, "T_mult", T_mult, 1)
        self.eta_min = check_real(op, "eta_min", eta_min)
        self.T_cur = check_int(op, "last_epoch", last_epoch, -1)
        super().__init__(optimizer, last_epoch)

    def _check_state(self, op, v):
        for k in ("T_0", "T_i", "T_mult"):
            check_int(op, k, v[k], 1)

    def step(self, epoch=None) -> None:
        """Advance one epoch, or go to ``epoch`` (a float >= 0 for a point within one)."""
        op = "CosineAnnealingWarmRestarts.step"
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            epoch = check_real(op, "epoch", epoch, 0.0)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self._step_count += 1
        self.last_epoch = math.floor(epoch)
        self._apply(self._chained())

    def _chained(self):
        c = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (b - self.eta_min) * c / 2 for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin): the learning rate rises from ``max_lr/div_factor`` to
    ``max_lr`` over ``pct_start`` of ``total_steps``, then anneals to
    ``max_lr/(div_factor*final_div_factor)``; momentum (or Adam's ``beta1``) moves the
    other way between ``max_momentum`` and ``base_momentum``.  Step it after every batch.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    max_lr : float or list of float (one per group)
    total_steps : int, optional
        Or ``epochs`` and ``steps_per_epoch`` (their product).  Stepping past it raises
        ValueError, as in PyTorch.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
        Needs an optimizer with ``momentum`` (SGD, RMSprop) or ``betas`` (Adam, AdamW).
    base_momentum, max_momentum : float or list of float, default 0.85, 0.95
    div_factor : float, default 25
    final_div_factor : float, default 1e4
    three_phase : bool, default False
        Rise, fall back to the initial rate, then anneal to the minimum.
    last_epoch : int, default -1

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    >>> sched = nc.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    >>> round(sched.get_last_lr()[0], 12), opt.param_groups[0]["momentum"]
    (0.04, 0.95)
    """

    _saved = {"total_steps": "int", "pct_start": "real", "anneal_strategy": ("cos", "linear"),
              "three_phase": "bool", "cycle_momentum": "bool", "use_beta1": "bool"}

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        op = "OneCycleLR"
        _check_optimizer(op, optimizer)
        if total_steps is not None:
            self.total_steps = check_int(op, "total_steps", total_steps, 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (check_int(op, "epochs", epochs, 1)
                                * check_int(op, "steps_per_epoch", steps_per_epoch, 1))
        else:
            raise ValueError(f"{op}: pass argument 'total_steps', or 'epochs' and "
                             "'steps_per_epoch'")
        self.pct_start = check_real(op, "pct_start", pct_start, 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{op}: argument 'anneal_strategy' must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.three_phase = check_bool(op, "three_phase", three_phase)
        self.cycle_momentum = check_bool(op, "cycle_momentum", cycle_momentum)
        div_factor = check_real(op, "div_factor", div_factor, 0.0, low_open=True)
        final_div_factor = check_real(op, "final_div_factor", final_div_factor, 0.0,
                                      low_open=True)
        max_lrs = _per_group(op, "max_lr", max_lr, optimizer, low=0.0)
        groups = optimizer.param_groups
        if check_int(op, "last_epoch", last_epoch, -1) == -1:
            for g, m in zip(groups, max_lrs):
                g["initial_lr"] = m / div_factor
                g["max_lr"] = m
                g["min_lr"] = g["initial_lr"] / final_div_factor
        self.use_beta1 = "betas" in optimizer.defaults
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and not self.use_beta1:
                raise ValueError(f"{op}: cycle_momentum needs an optimizer with 'momentum' or "
                                 f"'betas'; {type(optimizer).__name__} has neither")
            highs = _per_group(op, "max_momentum", max_momentum, optimizer, low=0.0)
            lows = _per_group(op, "base_momentum", base_momentum, optimizer, low=0.0)
            if last_epoch == -1:
                for g, hi, lo in zip(groups, highs, lows):
                    self._set_momentum(g, hi)
                    g["max_momentum"], g["base_momentum"] = hi, lo
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, m):
        if self.use_beta1:
            group["betas"] = (m, *group["betas"][1:])
        else:
            group["momentum"] = m

    def _phases(self):
        """``(end_step, start key, end key, start momentum key, end momentum key)``."""
        n, p = self.total_steps, self.pct_start
        if self.three_phase:
            return [(float(p * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                    (float(2 * p * n) - 2, "max_lr", "initial_lr", "base_momentum",
                     "max_momentum"),
                    (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        return [(float(p * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _chained(self):
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {t} times, past total_steps="
                             f"{self.total_steps}")
        phases = self._phases()
        lrs = []
        for g in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
                if t <= end or i == len(phases) - 1:
                    # a phase of no steps (tiny total_steps) starts and ends at once
                    pct = (t - start) / (end - start) if end != start else 0.0
                    lrs.append(self._anneal(g[lr0], g[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(g, self._anneal(g[m0], g[m1], pct))
                    break
                start = end
        return lrs


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the ``milestones`` epochs (e.g. a
    :class:`LinearLR` warm-up, then :class:`CosineAnnealingLR`).

    At each milestone the next scheduler starts from its epoch 0 (its closed form: the
    initial learning rate), as in PyTorch.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    schedulers : list of LRScheduler
        All built on ``optimizer``; not :class:`ReduceLROnPlateau`.
    milestones : list of int
        One fewer than ``schedulers``, increasing.
    last_epoch : int, default -1

    Examples
    --------
    See the module's example.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        op = "SequentialLR"
        _check_optimizer(op, optimizer)
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise ValueError(f"{op}: argument 'schedulers' must be a non-empty list of "
                             "schedulers")
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"{op}: argument 'schedulers' holds a ReduceLROnPlateau (item "
                                 f"{i}), whose step needs a metric")
            if not isinstance(s, LRScheduler):
                raise TypeError(f"{op}: argument 'schedulers' must hold nbconv schedulers; item "
                                f"{i} is a {type(s).__name__}")
            if s.optimizer is not optimizer:
                raise ValueError(f"{op}: scheduler {i} ({type(s).__name__}) belongs to another "
                                 "optimizer")
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{op}: argument 'milestones' must be a list of ints")
        milestones = [check_int(op, "milestones", m, 0) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"{op}: argument 'milestones' must have one entry fewer than "
                             f"'schedulers' ({len(schedulers)}), got {len(milestones)}")
        if milestones != sorted(milestones):
            raise ValueError(f"{op}: argument 'milestones' must be increasing, got {milestones}")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = milestones
        self.last_epoch = check_int(op, "last_epoch", last_epoch, -1) + 1
        for g in optimizer.param_groups:  # back to the start, undoing the others' first steps
            g["lr"] = g["initial_lr"]
        self._undo(self)
        i = bisect_right(self._milestones, 0)
        self._schedulers[i]._initial_step()
        self._last_lr = self._schedulers[i].get_last_lr()

    @staticmethod
    def _undo(s):
        """Take back the step that the constructor of every scheduler inside ``s`` took."""
        if isinstance(s, SequentialLR):
            for inner in s._schedulers:
                SequentialLR._undo(inner)
        else:
            s.last_epoch -= 1

    def step(self) -> None:
        self.last_epoch += 1
        i = bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[i]
        if i > 0 and self._milestones[i - 1] == self.last_epoch:
            s._jump(0)
        else:
            s.step()
        self._last_lr = s.get_last_lr()

    def _jump(self, epoch: int) -> None:
        self.last_epoch = epoch - 1
        self.step()

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "_milestones": list(self._milestones),
                "_last_lr": _plain(self._last_lr),
                "_schedulers": [s.state_dict() for s in self._schedulers]}

    def _parse_state(self, d) -> dict:
        op = "SequentialLR.load_state_dict"
        keys = {"last_epoch", "_milestones", "_last_lr", "_schedulers"}
        if not isinstance(d, dict) or set(d) != keys:
            raise ValueError(f"{op}: argument 'state_dict' must be a dict with the keys "
                             f"{sorted(keys)}, got {d!r:.200}")
        groups = len(self.optimizer.param_groups)
        subs = d["_schedulers"]
        if not isinstance(subs, (list, tuple)) or len(subs) != len(self._schedulers):
            raise ValueError(f"{op}: entry '_schedulers' must hold {len(self._schedulers)} "
                             f"states, got {subs!r:.200}")
        milestones = _check_entry(op, "_milestones", "ints", d["_milestones"], groups)
        if len(milestones) != len(self._milestones):
            raise ValueError(f"{op}: entry '_milestones' must hold {len(self._milestones)} "
                             f"ints, got {milestones}")
        return {"last_epoch": _check_entry(op, "last_epoch", "int", d["last_epoch"], groups),
                "_milestones": milestones,
                "_last_lr": _check_entry(op, "_last_lr", "reals", d["_last_lr"], groups),
                "_schedulers": [s._parse_state(x) for s, x in zip(self._schedulers, subs)]}

    def _assign(self, values: dict) -> None:
        values = dict(values)
        for s, v in zip(self._schedulers, values.pop("_schedulers")):
            s._assign(v)
        self.__dict__.update(values)


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a metric has stopped improving for
    ``patience`` epochs.

    Parameters
    ----------
    optimizer : nbconv.optim.Optimizer
    mode : {"min", "max"}, default "min"
        Whether the metric should fall (a loss) or rise (an accuracy).
    factor : float, default 0.1
        In [0, 1).
    patience : int, default 10
        Epochs without improvement that are tolerated; the next one reduces the rate.
    threshold : float, default 1e-4
    threshold_mode : {"rel", "abs"}, default "rel"
        Improvement means ``metric < best*(1 - threshold)`` (rel) or
        ``metric < best - threshold`` (abs), mirrored for ``"max"``.
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted.
    min_lr : float or list of float, default 0
    eps : float, default 1e-8
        Reductions smaller than this are skipped.

    Examples
    --------
    >>> import nbconv as nc
    >>> opt = nc.optim.SGD(nc.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = nc.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    >>> for val_loss in [1.0, 0.9, 0.95, 0.95, 0.95]:
    ...     sched.step(val_loss)
    >>> sched.get_last_lr()
    [0.5]
    """

    _saved = {"mode": ("min", "max"), "factor": "real", "patience": "int",
              "threshold": "real", "threshold_mode": ("rel", "abs"), "cooldown": "int",
              "min_lrs": "reals", "default_min_lr": "real_or_none", "eps": "real",
              "best": "real_inf", "num_bad_epochs": "int", "cooldown_counter": "int",
              "last_epoch": "int", "_last_lr": "reals"}

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        op = "ReduceLROnPlateau"
        _check_optimizer(op, optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"{op}: argument 'mode' must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{op}: argument 'threshold_mode' must be 'rel' or 'abs', got "
                             f"{threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = check_real(op, "factor", factor, 0.0, 1.0, high_open=True)
        self.patience = check_int(op, "patience", patience, 0)
        self.threshold = check_real(op, "threshold", threshold, 0.0)
        self.cooldown = check_int(op, "cooldown", cooldown, 0)
        self.eps = check_real(op, "eps", eps, 0.0)
        self.min_lrs = _per_group(op, "min_lr", min_lr, optimizer, low=0.0)
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.last_epoch = 0
        self._last_lr = self._lrs()
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _spec(self) -> dict:
        return dict(self._saved)

    def state_dict(self) -> dict:
        return {k: _plain(getattr(self, k)) for k in self._saved}

    def _check_state(self, op, v):
        check_real(op, "factor", v["factor"], 0.0, 1.0, high_open=True)
        for k in ("patience", "cooldown", "num_bad_epochs", "cooldown_counter"):
            check_int(op, k, v[k], 0)

    def _is_better(self, a: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return a < best * (1.0 - th) if self.threshold_mode == "rel" else a < best - th
        return a > best * (th + 1.0) if self.threshold_mode == "rel" else a > best + th

    def step(self, metrics) -> None:
        """Record this epoch's ``metrics`` (a number: validation loss, accuracy, ...) and
        reduce the learning rates if it has not improved for more than ``patience`` epochs."""
        try:
            current = float(metrics)
        except (TypeError, ValueError) as e:
            raise TypeError(f"ReduceLROnPlateau.step: argument 'metrics' must be a number, got "
                            f"{metrics!r:.80}") from e
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._lrs()

    def _reduce(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):  # a group was added since
            if self.default_min_lr is None:
                raise ValueError(f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter "
                                 f"groups, min_lr has {len(self.min_lrs)} values")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for g, low in zip(groups, self.min_lrs):
            old = float(g["lr"])
            new = max(old * self.factor, low)
            if old - new > self.eps:
                g["lr"] = new


def _plain(v):
    """JSON data: tuples as lists, NumPy scalars as Python numbers."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (int, float, str, bool)):
        return v.item()
    return v

"""Loss functions, in two forms.

* PyTorch's: ``loss = crit(pred, target)`` is a :class:`~nbconv.recording.LossValue`, a
  float with ``.item()`` and ``.backward()``, which walks back through the recorded forward
  pass that made ``pred`` (each call of ``crit`` keeps its own context, so ``crit(a, y) +
  crit(b, y)`` backpropagates both).
* The explicit one: ``loss = crit.forward(pred, target)`` (a plain float), then ``dpred =
  crit.backward()``, the gradient of the last ``forward`` with respect to ``pred``.

With CUDA device arrays (both arguments on the device; a host argument next to a device one
raises TypeError naming it) the loss is computed by kernels, only a short vector of partial
results is copied to the host to form the float, and ``backward()`` returns a device array.
"""

from __future__ import annotations

import numpy as np

from . import functional as F
from ._checks import as_float_array
from ._dispatch import device, is_device_array
from .recording import LossValue, Node, Unfollowed, detach, is_recording, origin
from .recording.graph import needs_grad

__all__ = ["CrossEntropyLoss", "MSELoss", "L1Loss"]

_REDUCTIONS = ("mean", "sum")


def _mean(total: float, n: int) -> float:
    """``total / n``; NaN for an empty batch, as PyTorch's mean of nothing."""
    return total / n if n else float("nan")


class _Loss:
    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: argument 'reduction' must be one of "
                             f"{_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def __call__(self, pred, target) -> LossValue:
        """The loss as a float that can ``backward()`` (see the module docstring)."""
        name = type(self).__name__
        (pv, pp), (tv, tp) = origin(pred), origin(target)
        value = self.forward(pv, tv)
        if not is_recording():
            return LossValue(value)
        for p in (pp, tp):
            if type(p) is Unfollowed:
                raise p.error(name)
        tp = tp if self._target_differentiable else None
        if pp is None and tp is None:
            return LossValue(value)
        cache = self._cache

        def backward(g):
            before, self._cache = self._cache, cache
            try:
                d = self._grad()
            finally:
                self._cache = before
            if float(g) != 1.0:
                d = d * float(g)
            return (d if needs_grad(pp) else None,
                    -d if tp is not None and needs_grad(tp) else None)

        return LossValue(value, Node(name, (pp, tp), backward))

    #: whether a recorded target gets a gradient (regression losses: it is -d pred)
    _target_differentiable = False

    def _reduce(self, per_element: np.ndarray) -> float:
        total = float(np.sum(per_element, dtype=np.float64))
        return _mean(total, per_element.size) if self.reduction == "mean" else total

    def _scale(self, n: int) -> float:
        # an empty batch has an empty gradient: any finite scale will do
        return 1.0 / max(n, 1) if self.reduction == "mean" else 1.0

    def backward(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad()


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against integer class labels (PyTorch's).

    ``loss = -mean_n log_softmax(logits)[n, target[n]]``, computed through a stable
    log-softmax, so logits of ±1e4 give finite results.

    Parameters
    ----------
    reduction : {"mean", "sum"}

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> crit = nc.losses.CrossEntropyLoss()
    >>> round(crit.forward(np.zeros((2, 4), np.float32), np.array([1, 3])), 6)
    1.386294
    >>> crit.backward().shape
    (2, 4)
    """

    def forward(self, logits, target):
        """logits (N, C) float, target (N,) ints in [0, C) -> float."""
        logits, target = detach(logits), detach(target)  # the explicit form records nothing
        if is_device_array(logits) or is_device_array(target):
            return self._forward_device(logits, target)
        logits = as_float_array("CrossEntropyLoss", "logits", logits)
        t = np.asarray(target)
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss: argument 'logits' must be 2-D (N, C), got shape "
                             f"{logits.shape}")
        if t.dtype.kind not in "iu" or t.shape != (logits.shape[0],):
            raise ValueError(
                f"CrossEntropyLoss: argument 'target' must be integer labels of shape "
                f"({logits.shape[0]},), got dtype {t.dtype} shape {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= logits.shape[1]):
            raise ValueError(f"CrossEntropyLoss: argument 'target' has labels outside "
                             f"[0, {logits.shape[1]}): min {t.min()}, max {t.max()}")
        logp = F.log_softmax(logits, axis=1)
        rows = np.arange(t.size)
        self._cache = (logp, t)
        return self._reduce(-logp[rows, t])

    def _forward_device(self, logits, target):
        rows, logp, t = device.cross_entropy(logits, target, type(self).__name__)
        self._cache = (logp, t)
        return self._reduce(rows)

    def _grad(self):
        logp, t = self._cache
        if is_device_array(logp):

            return device.cross_entropy_backward(logp, t, self._scale(t.size))
        d = np.exp(logp)
        d[np.arange(t.size), t] -= 1
        d *= self._scale(t.size)
        return d


class _Elementwise(_Loss):
    #: what the loss sums over ``pred - target``: "square" or "abs" (the device kernels' kind)
    _kind = "square"
    _target_differentiable = True

    def forward(self, pred, target):
        name = type(self).__name__
        pred, target = detach(pred), detach(target)  # the explicit form records nothing
        if is_device_array(pred) or is_device_array(target):
            return self._forward_device(pred, target)
        pred = as_float_array(name, "pred", pred)
        target = as_float_array(name, "target", target, dtype=pred.dtype)
        if pred.shape != target.shape:
            raise ValueError(f"{name}: arguments 'pred' {pred.shape} and 'target' "
                             f"{target.shape} must have the same shape")
        diff = pred - target
        self._cache = diff
        return self._reduce(self._value(diff))

    def _forward_device(self, pred, target):
        total, diff = device.elementwise_loss(pred, target, self._kind, type(self).__name__)
        self._cache = diff
        return _mean(total, diff.size) if self.reduction == "mean" else total

    def _grad(self):
        if is_device_array(self._cache):

            return device.elementwise_loss_backward(self._cache, self._factor(), self._kind)
        return self._grad_host()


class MSELoss(_Elementwise):
    """Mean squared error ``mean((pred - target)**2)``."""

    def _value(self, diff):
        return diff * diff

    def _factor(self):
        return 2 * self._scale(self._cache.size)

    def _grad_host(self):
        return self._factor() * self._cache


class L1Loss(_Elementwise):
    """Mean absolute error ``mean(|pred - target|)``; the gradient at 0 is 0 (PyTorch)."""

    _kind = "abs"

    def _value(self, diff):
        return np.abs(diff)

    def _factor(self):
        return self._scale(self._cache.size)

    def _grad_host(self):
        return self._factor() * np.sign(self._cache)

"""Loss functions (PyTorch's names, arguments and semantics), in two forms.

* PyTorch's: ``loss = crit(pred, target)`` is a :class:`~nbconv.recording.LossValue`, a
  float with ``.item()`` and ``.backward()``, which walks back through the recorded forward
  pass that made ``pred`` (each call of ``crit`` keeps its own context, so ``crit(a, y) +
  crit(b, y)`` backpropagates both).  With ``reduction="none"`` it is a recorded array of
  the per-element losses (a :class:`~nbconv.recording.TrackedArray`): ``loss.sum().backward()``,
  ``loss.mean().backward()`` or ``loss.backward(gradient)`` send the gradient back.
* The explicit one: ``loss = crit.forward(pred, target)`` (a plain float; the array of
  per-element losses with ``reduction="none"``), then ``dpred = crit.backward()``, the
  gradient of the last ``forward`` with respect to ``pred`` (with ``reduction="none"``, of
  the *sum* of the per-element losses unless ``crit.backward(gradient)`` is given).

A float ``target`` that was itself recorded (computed by a model: MSE between two outputs,
the soft labels of a teacher) gets its gradient too, as in PyTorch: every loss here with a
float target has one (see each class).  Integer class labels carry no gradient.  ``weight``
and ``pos_weight`` are constants, copied when the loss is made (no gradient).

``reduction`` is ``"mean"`` (PyTorch's default: the weighted mean for the class-label
losses with ``weight``), ``"sum"`` or ``"none"``; the mean over an empty batch is NaN, as
in PyTorch.  Values are summed in float64 and returned as Python floats; per-element
losses and gradients have the prediction's dtype (float32 or float64; integer and bool
predictions are cast to float32).

With CUDA device arrays (both arguments on the device; a host argument next to a device one
raises TypeError naming it) ``CrossEntropyLoss`` (integer labels), ``MSELoss`` and ``L1Loss``
with ``reduction="mean"`` or ``"sum"`` are computed by kernels: only a short vector of partial
results is copied to the host to form the float, and ``backward()`` returns a device array.
The other losses and options run on host arrays only and raise TypeError for device arrays.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import functional as F
from ._checks import as_float_array, check_bool, check_int, check_real
from ._dispatch import device, is_device_array
from .recording import LossValue, Node, Unfollowed, detach, is_recording, origin, wrap
from .recording.graph import needs_grad

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
           "SmoothL1Loss", "HuberLoss", "KLDivLoss"]

_REDUCTIONS = ("none", "mean", "sum")


class _LabelError(ValueError, IndexError):
    """A class label outside ``[0, C)``: a ValueError as nbconv's argument errors are, and an
    IndexError as PyTorch's "Target 5 is out of bounds"."""


#: where IEEE results are PyTorch's too (log(0) = -inf, 0 * inf = NaN): no NumPy warnings
_quiet = np.errstate(invalid="ignore", divide="ignore", over="ignore")


def _divide(total: float, n: float) -> float:
    """``total / n`` with IEEE rules: NaN for the mean of an empty batch (PyTorch's)."""
    if n:
        return total / n
    return float("nan") if total == 0 or total != total else math.copysign(math.inf, total)


def _as_constant(op: str, name: str, v, ndim: int | None = None):
    """A loss's constant array argument (``weight``, ``pos_weight``) as a float64 array, or
    None; TypeError/ValueError naming it."""
    if v is None:
        return None
    if is_device_array(v):
        raise TypeError(f"{op}: argument '{name}' is a CUDA device array; the losses' "
                        f"'{name}' runs on the host only (pass a NumPy array)")
    a = np.asarray(detach(v))
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{op}: argument '{name}' must be an array of real numbers, got dtype "
                        f"{a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: argument '{name}' must be {ndim}-D, got shape {a.shape}")
    a = a.astype(np.float64)  # a private copy: later changes to the caller's array don't leak
    a.flags.writeable = False
    return a


def _broadcast_constant(op: str, name: str, c, shape, dtype, against: str = "pred"):
    """``c`` (or None) in ``dtype``, checked to broadcast to ``shape``."""
    if c is None:
        return None
    try:
        np.broadcast_shapes(c.shape, shape)
    except ValueError:
        raise ValueError(f"{op}: argument '{name}' of shape {c.shape} does not broadcast to "
                         f"'{against}' of shape {tuple(shape)}") from None
    if np.broadcast_shapes(c.shape, shape) != tuple(shape):
        raise ValueError(f"{op}: argument '{name}' of shape {c.shape} would enlarge "
                         f"'{against}' of shape {tuple(shape)}")
    return c.astype(dtype)


def _rows(a: np.ndarray) -> np.ndarray:
    """``(N, C, d1, ...)``, ``(N, C)`` or ``(C,)`` as ``(M, C)`` rows, the class axis last."""
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim == 2:
        return a
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unrows(d: np.ndarray, shape) -> np.ndarray:
    """Inverse of :func:`_rows`: ``(M, C)`` back to ``shape``, C-contiguous."""
    if len(shape) <= 2:
        return d.reshape(shape)
    moved = d.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 1))


def _row_grad(g, m: int, dtype):
    """The upstream gradient per row, shape ``(m,)``, from a scalar or a per-element array."""
    if np.ndim(g) == 0:
        return np.full(m, float(g), dtype)
    return np.asarray(g, dtype).reshape(m)


class _Saved(NamedTuple):
    """What a forward pass keeps for its backward pass."""

    on_device: bool
    ctx: object  # the loss's own context (see _Loss)
    shape: tuple  # of the per-element losses
    dtype: np.dtype
    denom: float  # of the mean
    reduction: str


class _Loss:
    """What every loss shares: reductions, the two forms, the recorded node.

    A subclass implements ``_compute(pred, target) -> (per, denom, ctx)`` (the per-element
    losses in ``reduction="none"``'s shape, the mean's denominator, what the gradient needs)
    and ``_grads(ctx, g, need_pred, need_target) -> (dpred, dtarget)``, where ``g`` is the
    upstream gradient of each per-element loss (a Python float, or an array of ``per``'s
    shape) already divided by the denominator for ``"mean"``.
    """

    #: the reductions this loss accepts
    _reductions = _REDUCTIONS
    #: the name of the prediction argument in messages
    _pred_name = "pred"

    def __init__(self, reduction="mean"):
        if not isinstance(reduction, str) or reduction not in self._reductions:
            raise ValueError(f"{type(self).__name__}: argument 'reduction' must be one of "
                             f"{self._reductions}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    # -- the explicit form -------------------------------------------------------------
    def forward(self, pred, target):
        """The loss of ``pred`` against ``target``: a float (``reduction`` "mean"/"sum") or
        the per-element losses (``"none"``); keeps what :meth:`backward` needs."""
        pred, target = detach(pred), detach(target)  # the explicit form records nothing
        if is_device_array(pred) or is_device_array(target):
            return self._forward_device(pred, target)
        per, denom, ctx = self._compute(pred, target)
        self._cache = _Saved(False, ctx, per.shape, per.dtype, denom, self.reduction)
        if self.reduction == "none":
            return per
        total = float(np.sum(per, dtype=np.float64))
        return _divide(total, denom) if self.reduction != "sum" else total

    def backward(self, gradient=None):
        """d(loss)/d(pred) of the last :meth:`forward`.

        Parameters
        ----------
        gradient : float or ndarray, optional
            d(something)/d(loss): a number (default 1), or with ``reduction="none"`` an array
            shaped like the per-element losses (default ones: the gradient of their sum).

        Returns
        -------
        ndarray, shape and dtype of ``pred`` (a device array for device inputs)
        """
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        saved = self._cache
        if gradient is None:
            gradient = 1.0
        elif saved.reduction == "none" and np.ndim(gradient):
            g = np.asarray(detach(gradient))
            if g.shape != saved.shape:
                raise ValueError(f"{type(self).__name__}.backward: argument 'gradient' has "
                                 f"shape {g.shape}, the losses have shape {saved.shape}")
        elif np.ndim(gradient):
            raise ValueError(f"{type(self).__name__}.backward: argument 'gradient' must be a "
                             f"number for reduction={saved.reduction!r}, got shape "
                             f"{np.shape(gradient)}")
        return self._backward_from(self._cache, gradient, True, False)[0]

    def _backward_from(self, saved: _Saved, g, need_pred, need_target):
        """``(dpred, dtarget)`` of the forward pass ``saved`` for the upstream gradient
        ``g`` of its result (a number, or an array of the per-element losses' shape)."""
        if saved.reduction == "none":
            if np.ndim(g) == 0:
                g = np.full(saved.shape, float(g), saved.dtype)
            else:
                g = np.asarray(detach(g), saved.dtype)
        else:
            g = float(detach(g))
            if saved.reduction != "sum":
                g = _divide(g, saved.denom)
        if saved.on_device:
            return self._grads_device(saved.ctx, g, need_target)
        return self._grads(saved.ctx, g, need_pred, need_target)

    # -- PyTorch's form ----------------------------------------------------------------
    def __call__(self, pred, target):
        """The loss as a float that can ``backward()`` (a recorded array with
        ``reduction="none"``); see the module docstring."""
        name = type(self).__name__
        (pv, pp), (tv, tp) = origin(pred), origin(target)
        value = self.forward(pv, tv)
        none = self.reduction == "none"
        if not is_recording():
            return value if none else LossValue(value)
        for p in (pp, tp):
            if type(p) is Unfollowed:
                raise p.error(name)
        if pp is None and tp is None:
            return value if none else LossValue(value)
        saved = self._cache
        # the gradients come in the dtype of what they are the gradients of
        p_dtype = np.result_type(pv) if pp is not None else None
        t_dtype = np.result_type(tv) if tp is not None else None

        def backward(g):
            need_p = needs_grad(pp)
            need_t = needs_grad(tp)
            dp, dt = self._backward_from(saved, g, need_p, need_t)
            return (_cast(dp, p_dtype) if need_p else None,
                    _cast(dt, t_dtype) if need_t else None)

        node = Node(name, (pp, tp), backward, self._info())
        return wrap(value, node) if none else LossValue(value, node)

    def _info(self) -> dict:
        """The loss's non-array arguments (for readers of the graph)."""
        return {"reduction": self.reduction}

    def _forward_device(self, pred, target):
        raise TypeError(f"{type(self).__name__}: CUDA device arrays are not supported by this "
                        "loss (it runs on host arrays only); use nbconv.cuda.to_host")

    def _check_device_reduction(self):
        if self.reduction == "none":
            raise TypeError(f"{type(self).__name__}: reduction='none' runs on host arrays "
                            "only; use nbconv.cuda.to_host, or 'mean'/'sum' on the device")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._info().items()
                         if not (k == "reduction" and v == "mean"))
        return f"{type(self).__name__}({args})"


def _cast(g, dtype):
    if g is None or is_device_array(g) or g.dtype == dtype:
        return g
    return g.astype(dtype)


# ------------------------------------------------------------------------ class labels

def _check_labels(op, t, C, ignore_index):
    """Raise :class:`_LabelError` unless every label not equal to ``ignore_index`` is in
    ``[0, C)``; return the mask of the kept labels (None when all are kept)."""
    if t.size == 0:
        return None
    lo, hi = t.min(), t.max()
    if 0 <= lo and hi < C and not lo <= ignore_index <= hi:
        return None  # the common case: every label valid, none ignored (no mask to build)
    keep = t != ignore_index
    kept = t[keep]
    if kept.size and (kept.min() < 0 or kept.max() >= C):
        raise _LabelError(f"{op}: argument 'target' has labels outside [0, {C}): min "
                          f"{kept.min()}, max {kept.max()} (ignore_index={ignore_index})")
    return None if kept.size == t.size else keep


def _class_terms(op, scores, t, weight, ignore_index, smoothing):
    """The class-label loss of rows ``scores`` (M, C) (log-probabilities) against labels ``t``
    (M,): ``per[m] = -a[m] * scores[m, t[m]] - sum_c b[c] * scores[m, c]`` for kept labels,
    0 for ignored ones, with ``a = (1 - smoothing) * w[t]`` and ``b = smoothing / C * w``
    (PyTorch's label smoothing); the mean's denominator is the sum of ``w[t]`` over the kept
    labels.  Returns ``(per, denom, (t_safe, keep, a, b))``."""
    M, C = scores.shape
    dtype = scores.dtype
    keep = _check_labels(op, t, C, ignore_index)
    ts = t if keep is None else np.where(keep, t, 0)
    rows = np.arange(M)
    picked = scores[rows, ts]
    w = None if weight is None else weight.astype(dtype)
    if w is None:
        wt = None
        denom = float(M if keep is None else np.count_nonzero(keep))
    else:
        wt = w[ts] if keep is None else np.where(keep, w[ts], dtype.type(0))
        denom = float(np.sum(wt, dtype=np.float64))
    if w is None and smoothing == 0.0:
        a = None  # the common case: coefficient 1 where kept
        per = -picked
    else:
        a = (1.0 - smoothing) * (wt if wt is not None else np.ones(M, dtype))
        per = -(a * picked)
    b = None
    if smoothing:
        b = (smoothing / C) * (w if w is not None else np.ones(C, dtype))
        per = per - scores @ b
    if keep is not None:
        per = np.where(keep, per, dtype.type(0))
        if a is not None:
            a = np.where(keep, a, dtype.type(0))
    return per.astype(dtype, copy=False), denom, (ts, keep, a, b)


def _class_grad_picked(d, g, ts, keep, a):
    """``d[m, t[m]] -= g[m] * a[m]`` (coefficient 1 where ``a`` is None), kept rows only."""
    coef = g if a is None else g * a
    if keep is not None:
        coef = np.where(keep, coef, 0)
    d[np.arange(d.shape[0]), ts] -= coef.astype(d.dtype, copy=False)


def _label_grad(logp, terms, g):
    """d(loss)/d(logits) of :func:`_class_terms` on log-softmax rows ``logp`` (M, C), for the
    upstream gradient ``g`` of each row (a number or an array); shape (M, C)."""
    ts, keep, a, b = terms
    if a is None and b is None and keep is None and np.ndim(g) == 0:
        # the common case: softmax minus one-hot, times the scalar upstream gradient
        d = np.exp(logp)
        d[np.arange(logp.shape[0]), ts] -= 1
        if g != 1.0:
            d *= g
        return d
    return _label_grad_general(logp, terms, g)


@_quiet
def _label_grad_general(logp, terms, g):
    ts, keep, a, b = terms
    M = logp.shape[0]
    g = _row_grad(g, M, logp.dtype)
    if a is None and b is None and keep is None:
        s = g  # the target coefficients sum to 1 on every row
    else:
        s = g * ((np.ones(M, logp.dtype) if a is None else a) + (0 if b is None else np.sum(b)))
        if keep is not None:  # after the product: g is inf where the kept weights sum to 0
            s = np.where(keep, s, 0)
    d = np.exp(logp) * s[:, None]
    _class_grad_picked(d, g, ts, keep, a)
    if b is not None:
        gb = g if keep is None else np.where(keep, g, 0)
        d -= gb[:, None] * b[None, :]
    return d


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class labels or class probabilities
    (PyTorch's ``nn.CrossEntropyLoss``).

    With integer labels ``y``: ``loss[n] = -w[y[n]] * log_softmax(x)[n, y[n]]`` (0 where
    ``y[n] == ignore_index``); ``"mean"`` divides the sum by ``sum(w[y[n]])`` over the labels
    not ignored (the weighted mean), so it is NaN when every label is ignored.  With
    ``label_smoothing`` ``e`` the loss of a kept label is ``(1 - e)`` times that plus
    ``e / C * sum_c w[c] * -log_softmax(x)[n, c]``, with the same denominator (PyTorch's).

    With float class probabilities ``p`` (shape of the logits):
    ``loss[n] = -sum_c w[c] * q[n, c] * log_softmax(x)[n, c]`` with ``q = (1 - e) p + e / C``;
    ``"mean"`` divides by the number of positions N*d1*..., as PyTorch (weights do not enter
    the denominator; an ``ignore_index`` other than the default raises ValueError, as
    PyTorch refuses it).  A recorded probability target
    gets its gradient ``-(1 - e) w log_softmax(x)``.

    The log-softmax is stable: logits of ±1e4 give finite results.

    Parameters
    ----------
    weight : array_like, shape (C,), optional
        Rescaling weight of each class.
    ignore_index : int, default -100
        Labels equal to it add nothing to the loss, the denominator and the gradient.
    reduction : {"mean", "sum", "none"}
    label_smoothing : float in [0, 1], default 0

    Shapes
    ------
    logits (N, C), (N, C, d1, ...) or unbatched (C,); target: integer labels (N,),
    (N, d1, ...) or () with values in [0, C) or ``ignore_index``, or float probabilities of
    the logits' shape.  ``reduction="none"`` gives the losses of shape (N,), (N, d1, ...) or ().

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> crit = nc.losses.CrossEntropyLoss()
    >>> round(crit.forward(np.zeros((2, 4), np.float32), np.array([1, 3])), 6)
    1.386294
    >>> crit.backward().shape
    (2, 4)
    >>> nc.losses.CrossEntropyLoss(reduction="none", ignore_index=3).forward(
    ...     np.zeros((2, 4)), np.array([1, 3]))
    array([1.38629436, 0.        ])
    """

    _pred_name = "logits"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        op = type(self).__name__
        self.weight = _as_constant(op, "weight", weight, ndim=1)
        self.ignore_index = check_int(op, "ignore_index", ignore_index)
        self.label_smoothing = check_real(op, "label_smoothing", label_smoothing, 0.0, 1.0)

    def _info(self):
        info = {"reduction": self.reduction}
        if self.weight is not None:
            info["weight"] = self.weight.tolist()
        if self.ignore_index != -100:
            info["ignore_index"] = self.ignore_index
        if self.label_smoothing:
            info["label_smoothing"] = self.label_smoothing
        return info

    def _compute(self, logits, target):
        op = type(self).__name__
        logits = as_float_array(op, "logits", logits)
        if logits.ndim == 0:
            raise ValueError(f"{op}: argument 'logits' must be (C,), (N, C) or (N, C, d1, ...), "
                             "got a 0-D array")
        C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
        label_shape = () if logits.ndim == 1 else logits.shape[:1] + logits.shape[2:]
        if self.weight is not None and self.weight.shape != (C,):
            raise ValueError(f"{op}: argument 'weight' must have one entry per class ({C} for "
                             f"'logits' of shape {logits.shape}), got shape {self.weight.shape}")
        t = np.asarray(target)
        kind = t.dtype.kind
        if kind == "f" and t.shape == logits.shape:
            if self.ignore_index != -100:
                raise ValueError(f"{op}: argument 'ignore_index' ({self.ignore_index}) does not "
                                 "apply to class-probability targets (float 'target' of the "
                                 "logits' shape); PyTorch refuses it too")
            return self._compute_probs(op, logits, as_float_array(op, "target", t,
                                                                  dtype=logits.dtype))
        if kind not in "iu" or t.shape != label_shape:
            raise ValueError(
                f"{op}: argument 'target' must be integer labels of shape {label_shape} or "
                f"float class probabilities of shape {logits.shape} (for 'logits' of shape "
                f"{logits.shape}), got dtype {t.dtype} shape {t.shape}")
        logp = F.log_softmax(_rows(logits), axis=1)
        per, denom, terms = _class_terms(op, logp, t.reshape(-1), self.weight,
                                         self.ignore_index, self.label_smoothing)
        return per.reshape(label_shape), denom, ("labels", logp, terms, logits.shape)

    def _compute_probs(self, op, logits, target):
        logp = F.log_softmax(_rows(logits), axis=1)
        C = logp.shape[1]
        e = self.label_smoothing
        q = _rows(target)
        if e:
            q = q * (1.0 - e) + e / C
        w = None if self.weight is None else self.weight.astype(logits.dtype)
        coef = q if w is None else q * w
        per = -np.sum(coef * logp, axis=1)
        label_shape = () if logits.ndim == 1 else logits.shape[:1] + logits.shape[2:]
        return (per.reshape(label_shape), float(logp.shape[0]),
                ("probs", logp, (coef, w, e), logits.shape))

    def _grads(self, ctx, g, need_pred, need_target):
        kind, logp, terms, shape = ctx
        if kind == "labels":
            return (_unrows(_label_grad(logp, terms, g), shape) if need_pred else None), None
        M = logp.shape[0]
        g = _row_grad(g, M, logp.dtype)
        coef, w, e = terms
        d = dt = None
        if need_pred:
            d = _unrows(np.exp(logp) * (g * np.sum(coef, axis=1))[:, None] - g[:, None] * coef,
                        shape)
        if need_target:
            dt = -(1.0 - e) * g[:, None] * logp
            if w is not None:
                dt = dt * w
            dt = _unrows(dt, shape)
        return d, dt

    # -- the device path (integer labels, no weight or smoothing) -------------------------
    def _forward_device(self, logits, target):
        op = type(self).__name__
        self._check_device_reduction()
        if self.weight is not None or self.label_smoothing:
            raise TypeError(f"{op}: 'weight' and 'label_smoothing' run on host arrays only; "
                            "use nbconv.cuda.to_host for this loss")
        shape = getattr(logits, "shape", None)
        if (getattr(target, "dtype", None) is not None
                and np.dtype(target.dtype).kind == "f" and tuple(target.shape) == tuple(shape)):
            raise TypeError(f"{op}: class-probability targets run on host arrays only; use "
                            "nbconv.cuda.to_host for this loss")
        if shape is not None and len(shape) == 2 and 0 <= self.ignore_index < shape[1]:
            raise TypeError(f"{op}: ignore_index={self.ignore_index} (a valid class) runs on "
                            "host arrays only; use nbconv.cuda.to_host for this loss")
        rows, logp, t = device.cross_entropy(logits, target, op)
        n = rows.size
        self._cache = _Saved(True, (logp, t), (n,), logp.dtype, float(n), self.reduction)
        total = float(np.sum(rows, dtype=np.float64))
        return _divide(total, n) if self.reduction == "mean" else total

    def _grads_device(self, ctx, g, need_target):
        logp, t = ctx
        return device.cross_entropy_backward(logp, t, g), None


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities against class labels (PyTorch's
    ``nn.NLLLoss``): ``loss[n] = -w[y[n]] * input[n, y[n]]``, 0 where ``y[n] ==
    ignore_index``; ``"mean"`` divides by ``sum(w[y[n]])`` over the labels not ignored.

    ``CrossEntropyLoss()(x, y)`` equals ``NLLLoss()(nc.log_softmax(x, axis=1), y)``.

    Parameters
    ----------
    weight : array_like, shape (C,), optional
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}

    Shapes
    ------
    input (N, C), (N, C, d1, ...) or (C,); target integer labels (N,), (N, d1, ...) or ().

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    >>> round(nc.losses.NLLLoss().forward(logp, np.array([0, 1])), 6)
    0.458145
    """

    _pred_name = "input"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        op = type(self).__name__
        self.weight = _as_constant(op, "weight", weight, ndim=1)
        self.ignore_index = check_int(op, "ignore_index", ignore_index)

    def _info(self):
        info = {"reduction": self.reduction}
        if self.weight is not None:
            info["weight"] = self.weight.tolist()
        if self.ignore_index != -100:
            info["ignore_index"] = self.ignore_index
        return info

    def _compute(self, pred, target):
        op = type(self).__name__
        x = as_float_array(op, "input", pred)
        if x.ndim == 0:
            raise ValueError(f"{op}: argument 'input' must be (C,), (N, C) or (N, C, d1, ...), "
                             "got a 0-D array")
        C = x.shape[0] if x.ndim == 1 else x.shape[1]
        label_shape = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
        if self.weight is not None and self.weight.shape != (C,):
            raise ValueError(f"{op}: argument 'weight' must have one entry per class ({C} for "
                             f"'input' of shape {x.shape}), got shape {self.weight.shape}")
        t = np.asarray(target)
        if t.dtype.kind not in "iu" or t.shape != label_shape:
            raise ValueError(f"{op}: argument 'target' must be integer labels of shape "
                             f"{label_shape} (for 'input' of shape {x.shape}), got dtype "
                             f"{t.dtype} shape {t.shape}")
        per, denom, terms = _class_terms(op, _rows(x), t.reshape(-1), self.weight,
                                         self.ignore_index, 0.0)
        return per.reshape(label_shape), denom, (terms, x.shape, x.dtype)

    @_quiet
    def _grads(self, ctx, g, need_pred, need_target):
        (ts, keep, a, _), shape, dtype = ctx
        if not need_pred:
            return None, None
        M = ts.size
        d = np.zeros((M, shape[0] if len(shape) == 1 else shape[1]), dtype)
        _class_grad_picked(d, _row_grad(g, M, dtype), ts, keep, a)
        return _unrows(d, shape), None


# ------------------------------------------------------------------------ elementwise

class _Pointwise(_Loss):
    """Losses of ``pred`` and ``target`` of the same shape, element by element.

    A subclass implements ``_values(x, t) -> (per, ctx)`` and ``_point_grads(ctx, g,
    need_pred, need_target)``; the mean is over all elements.
    """

    def _compute(self, pred, target):
        op = type(self).__name__
        x = as_float_array(op, self._pred_name, pred)
        t = as_float_array(op, "target", target, dtype=x.dtype)
        if x.shape != t.shape:
            raise ValueError(f"{op}: arguments '{self._pred_name}' {x.shape} and 'target' "
                             f"{t.shape} must have the same shape")
        per, ctx = self._values(x, t)
        # np.asarray: arithmetic on 0-d arrays gives NumPy scalars
        return np.asarray(per, x.dtype), self._denominator(x), (ctx, x.dtype)

    def _denominator(self, x) -> float:
        return float(x.size)

    def _grads(self, ctx, g, need_pred, need_target):
        ctx, dtype = ctx
        d, dt = self._point_grads(ctx, g, need_pred, need_target)
        return (None if d is None else np.asarray(d, dtype),
                None if dt is None else np.asarray(dt, dtype))


class _Difference(_Pointwise):
    """Losses of ``pred - target``: the target's gradient is minus the prediction's."""

    #: the device kernels' kind ("square", "abs"), None where there is no device path
    _kind = None

    def _values(self, x, t):
        diff = x - t
        return self._of(diff), diff

    def _point_grads(self, diff, g, need_pred, need_target):
        d = self._slope(diff, g)
        return d, (-d if need_target else None)

    def _forward_device(self, pred, target):
        if self._kind is None:
            return super()._forward_device(pred, target)
        self._check_device_reduction()
        total, diff = device.elementwise_loss(pred, target, self._kind, type(self).__name__)
        n = diff.size
        self._cache = _Saved(True, diff, tuple(diff.shape), diff.dtype, float(n), self.reduction)
        return _divide(total, n) if self.reduction == "mean" else total

    def _grads_device(self, diff, g, need_target):
        c = self._device_factor() * g
        d = device.elementwise_loss_backward(diff, c, self._kind)
        dt = device.elementwise_loss_backward(diff, -c, self._kind) if need_target else None
        return d, dt


class MSELoss(_Difference):
    """Mean squared error ``(pred - target)**2`` (PyTorch's ``nn.MSELoss``); a recorded
    target gets the opposite of the prediction's gradient.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}

    Shapes
    ------
    pred and target of the same shape (any); ``"none"`` gives that shape.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.losses.MSELoss().forward(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    2.5
    """

    _kind = "square"

    def _of(self, diff):
        return diff * diff

    def _slope(self, diff, g):
        return 2.0 * g * diff

    def _device_factor(self):
        return 2.0


class L1Loss(_Difference):
    """Mean absolute error ``|pred - target|`` (PyTorch's ``nn.L1Loss``); the gradient at 0
    is 0, as PyTorch's; a recorded target gets the opposite of the prediction's gradient.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.losses.L1Loss(reduction="sum").forward(np.array([1.0, -2.0]), np.zeros(2))
    3.0
    """

    _kind = "abs"

    def _of(self, diff):
        return np.abs(diff)

    def _slope(self, diff, g):
        return g * np.sign(diff)

    def _device_factor(self):
        return 1.0


class SmoothL1Loss(_Difference):
    """Smooth L1 loss (PyTorch's ``nn.SmoothL1Loss``): with ``z = |pred - target|``,
    ``0.5 z**2 / beta`` where ``z < beta``, else ``z - 0.5 beta``; ``beta=0`` is the L1 loss.
    A recorded target gets the opposite of the prediction's gradient.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
    beta : float >= 0, default 1.0

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.losses.SmoothL1Loss(reduction="none").forward(np.array([0.5, 3.0]), np.zeros(2))
    array([0.125, 2.5  ])
    """

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = check_real(type(self).__name__, "beta", beta, 0.0)

    def _info(self):
        return {"reduction": self.reduction, "beta": self.beta}

    def _of(self, diff):
        z, beta = np.abs(diff), self.beta
        if beta == 0.0:
            return z
        return np.where(z < beta, (0.5 / beta) * diff * diff, z - 0.5 * beta)

    def _slope(self, diff, g):
        beta = self.beta
        if beta == 0.0:
            return g * np.sign(diff)
        return g * np.where(diff < -beta, -1.0, np.where(diff > beta, 1.0, diff / beta)
                            ).astype(diff.dtype, copy=False)


class HuberLoss(_Difference):
    """Huber loss (PyTorch's ``nn.HuberLoss``): with ``z = |pred - target|``, ``0.5 z**2``
    where ``z < delta``, else ``delta * (z - 0.5 delta)`` (``delta`` times
    :class:`SmoothL1Loss` with ``beta=delta``).  A recorded target gets the opposite of the
    prediction's gradient.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
    delta : float > 0, default 1.0

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.losses.HuberLoss(reduction="none", delta=2.0).forward(np.array([1.0, 3.0]),
    ...                                                          np.zeros(2))
    array([0.5, 4. ])
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = check_real(type(self).__name__, "delta", delta, 0.0, low_open=True)

    def _info(self):
        return {"reduction": self.reduction, "delta": self.delta}

    def _of(self, diff):
        z, delta = np.abs(diff), self.delta
        return np.where(z < delta, 0.5 * diff * diff, delta * (z - 0.5 * delta))

    def _slope(self, diff, g):
        delta = self.delta
        return g * np.where(diff < -delta, -delta, np.where(diff > delta, delta, diff)
                            ).astype(diff.dtype, copy=False)


class BCELoss(_Pointwise):
    """Binary cross-entropy of probabilities (PyTorch's ``nn.BCELoss``):
    ``-w * (t * log(p) + (1 - t) * log(1 - p))``, each log clamped at -100 as PyTorch's (so
    ``p = 0`` or 1 give finite losses).

    Predictions must lie in [0, 1]: anything else (NaN included) raises ValueError, as
    PyTorch refuses them.  The gradient is PyTorch's ``w (p - t) / max(p (1 - p), 1e-12)``
    (finite at 0 and 1);
    a recorded target gets ``w log((1 - p) / p)`` (unclamped: ±inf at 0 and 1, as PyTorch's).

    Parameters
    ----------
    weight : array_like, optional
        Rescaling weight, broadcast against ``pred`` (e.g. shape (N, 1) per sample).
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> round(nc.losses.BCELoss().forward(np.array([0.5, 0.9]), np.array([1.0, 1.0])), 6)
    0.399254
    """

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _as_constant(type(self).__name__, "weight", weight)

    def _info(self):
        info = {"reduction": self.reduction}
        if self.weight is not None:
            info["weight"] = self.weight.tolist()
        return info

    @_quiet
    def _values(self, x, t):
        op = type(self).__name__
        if x.size and not np.all((x >= 0) & (x <= 1)):
            bad = x[~((x >= 0) & (x <= 1))]
            raise ValueError(f"{op}: argument 'pred' must hold probabilities in [0, 1] (use "
                             f"BCEWithLogitsLoss for logits), got {bad.size} outside, e.g. "
                             f"{bad.flat[0]!r}")
        w = _broadcast_constant(op, "weight", self.weight, x.shape, x.dtype)
        log_p = np.maximum(np.log(x), -100)
        log_q = np.maximum(np.log1p(-x), -100)
        per = (t - 1) * log_q - t * log_p
        if w is not None:
            per = per * w
        return per, (x, t, w)

    @_quiet
    def _point_grads(self, ctx, g, need_pred, need_target):
        x, t, w = ctx
        d = dt = None
        if need_pred:
            # PyTorch's floor of p (1 - p) is the float32 number nearest 1e-12
            d = g * (x - t) / np.maximum((1 - x) * x, x.dtype.type(np.float32(1e-12)))
            if w is not None:
                d = d * w
        if need_target:
            dt = g * (np.log1p(-x) - np.log(x))
            if w is not None:
                dt = dt * w
        return d, dt


def _log_sigmoid(x):
    """``log(sigmoid(x))``, stable for large ``|x|``."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


class BCEWithLogitsLoss(_Pointwise):
    """Binary cross-entropy of logits (PyTorch's ``nn.BCEWithLogitsLoss``), computed stably:
    ``-w * (pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))``, written as
    ``w * ((1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x))`` so logits of ±1e4 give
    finite losses and gradients.

    A recorded target gets its gradient ``w * (log_sigmoid(-x) - pos_weight log_sigmoid(x))``
    (``-w x`` without ``pos_weight``), as PyTorch's.

    Parameters
    ----------
    weight : array_like, optional
        Rescaling weight, broadcast against ``pred``.
    reduction : {"mean", "sum", "none"}
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against ``pred`` (shape (C,) weighs each of the
        C classes of (N, C) predictions).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> round(nc.losses.BCEWithLogitsLoss().forward(np.array([0.0, 1e4]), np.array([1., 1.])), 6)
    0.346574
    """

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        op = type(self).__name__
        self.weight = _as_constant(op, "weight", weight)
        self.pos_weight = _as_constant(op, "pos_weight", pos_weight)

    def _info(self):
        info = {"reduction": self.reduction}
        for k in ("weight", "pos_weight"):
            if getattr(self, k) is not None:
                info[k] = getattr(self, k).tolist()
        return info

    @_quiet
    def _values(self, x, t):
        op = type(self).__name__
        w = _broadcast_constant(op, "weight", self.weight, x.shape, x.dtype)
        pw = _broadcast_constant(op, "pos_weight", self.pos_weight, x.shape, x.dtype)
        ls = _log_sigmoid(x)
        per = (1 - t) * x - (ls if pw is None else ((pw - 1) * t + 1) * ls)
        if w is not None:
            per = per * w
        return per, (x, t, w, pw, ls)

    @_quiet
    def _point_grads(self, ctx, g, need_pred, need_target):
        x, t, w, pw, ls = ctx
        d = dt = None
        if need_pred:
            s = np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))  # sigmoid, stable
            if pw is None:
                d = g * (s - t)
            else:
                pt = pw * t
                d = g * ((pt + 1 - t) * s - pt)
            if w is not None:
                d = d * w
        if need_target:
            if pw is None:
                dt = g * -x
            else:
                dt = g * (_log_sigmoid(-x) - pw * ls)
            if w is not None:
                dt = dt * w
        return d, dt


class KLDivLoss(_Pointwise):
    """Kullback-Leibler divergence (PyTorch's ``nn.KLDivLoss``), with ``pred`` the
    log-probabilities: ``t * (log(t) - pred)`` (0 where ``t == 0``, NaN where ``t < 0``, as
    PyTorch's ``xlogy``), or ``exp(t) * (t - pred)`` with ``log_target=True``.

    ``reduction="batchmean"`` divides the sum by the batch size (``pred.shape[0]``), the
    mathematical KL divergence per sample; ``"mean"`` (the default, as PyTorch's) divides by
    the number of elements.  A recorded target gets its gradient, as PyTorch's:
    ``log(t) + 1 - pred`` (NaN at ``t == 0``) or ``exp(t) * (t - pred + 1)``.

    Parameters
    ----------
    reduction : {"mean", "batchmean", "sum", "none"}
    log_target : bool, default False

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> p = np.array([[0.5, 0.5]])
    >>> round(nc.losses.KLDivLoss(reduction="batchmean").forward(np.log([[0.25, 0.75]]), p), 6)
    0.143841
    """

    _reductions = ("none", "mean", "batchmean", "sum")

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = check_bool(type(self).__name__, "log_target", log_target)

    def _info(self):
        return {"reduction": self.reduction, "log_target": self.log_target}

    def _denominator(self, x):
        if self.reduction == "batchmean":
            return float(x.shape[0]) if x.ndim else 1.0
        return float(x.size)

    @_quiet
    def _values(self, x, t):
        if self.log_target:
            et = np.exp(t)
            return et * (t - x), (x, t, et)
        xlogy = np.where(t == 0, x.dtype.type(0), t * np.log(t))
        return xlogy - t * x, (x, t, None)

    @_quiet
    def _point_grads(self, ctx, g, need_pred, need_target):
        x, t, et = ctx
        d = dt = None
        if need_pred:
            d = g * -(t if et is None else et)
        if need_target:
            if et is None:
                # xlogy's two partial derivatives, as PyTorch: log(t) (0 at t = 0) + t / t
                dt = g * (np.where(t == 0, x.dtype.type(0), np.log(t)) + t / t - x)
            else:
                dt = g * (et * (t - x + 1))
        return d, dt

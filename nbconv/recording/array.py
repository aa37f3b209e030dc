"""``TrackedArray``: a NumPy array that remembers which record made it.

It *is* a ``numpy.ndarray`` (a subclass), so every NumPy function reads it; what a recorded
array adds is ``_node``, the :class:`~nbconv.recording.graph.Node` that made it, and the
operations that keep that link:

* ``+ - * / ** @`` and unary ``-`` (with broadcasting), ``np.exp``/``log``/``sqrt``/
  ``abs``/``square``/``tanh``, ``sum``/``mean``, ``reshape``/
  ``flatten``/``ravel``/``squeeze``, ``transpose``/``.T``, ``copy``, ``astype`` between float
  dtypes, indexing (``x[:, :16]``), ``np.concatenate``/``np.stack``, and nbconv's functional
  ops (:mod:`nbconv.recording.ops`) are recorded with their backward;
* ``a += b`` (and ``-=``, ``*=``, ``/=``) on a recorded array computes a *new* array and
  rebinds the name, as PyTorch's residual ``out += identity`` reads; the old array is left as
  it was, because the records of the ops that read it may need its values;
* results that carry no gradient (comparisons, ``argmax``, integer casts) are plain;
* anything else that computes floats from a recorded array raises inside a module's forward
  pass, naming the operation; outside one its result is marked *unfollowed* and raises where
  a gradient would be needed (a module, a loss, ``backward``), so that printing
  ``np.abs(out).max()`` still works;
* assigning into a recorded array (``y[0] = 0``, ``out=`` arguments) raises.

``np.asarray(y)`` (and ``np.array(y)``, ``y.view(np.ndarray)``) give the values as a plain
array, detached from the record, as PyTorch's ``y.detach().numpy()``.
"""

from __future__ import annotations

import numpy as np

from .graph import Node, Unfollowed, run_backward
from .state import state

__all__ = ["TrackedArray", "origin", "wrap", "is_tracked", "detach"]

_ndarray = np.ndarray
_view = np.ndarray.view  # ndarray's own (TrackedArray.view is recorded)
#: classes of leaf parameters (``.data``, ``accumulate_grad``; nbconv.nn.Parameter registers
#: itself through nbconv.recording.register_leaf_type)
_LEAF_TYPES: set = set()


def _in_forward() -> bool:
    """Inside a recorded module's forward pass, where an unrecorded op raises at once."""
    return bool(state.forwarding)


def origin(a):
    """``(value, parent)`` of an operand: a recorded array gives its plain view and record,
    a parameter its data and itself, a loss value its float and record; anything else is a
    constant (parent None)."""
    t = type(a)
    if t is TrackedArray:
        return _view(a, _ndarray), a._node
    if t in _LEAF_TYPES:
        return a.data, a
    node = getattr(a, "_loss_node", None) if isinstance(a, float) else None
    if node is not None:
        return float(a), node
    return a, None


def is_tracked(a) -> bool:
    """Whether ``a`` carries a gradient link (a recorded array, a parameter, a loss)."""
    return origin(a)[1] is not None


def detach(a):
    """The plain value of a recorded array (``np.asarray``), a parameter (``.data``) or a loss
    value (``float``); anything else unchanged."""
    return origin(a)[0]


def wrap(y, node):
    """``y`` as a recorded array made by ``node`` (a host float array; anything else, such as
    a device array, is returned unchanged)."""
    if type(y) is not _ndarray:
        if isinstance(y, np.floating):
            y = np.asarray(y)
        elif not isinstance(y, _ndarray):
            return y
    t = y.view(TrackedArray)
    t._node = node
    return t


def _is_float(v) -> bool:
    return isinstance(v, (_ndarray, np.floating)) and v.dtype.kind == "f"


def _differentiable(parent) -> bool:
    return parent is not None and type(parent) is not Unfollowed


def _unfollowed(parents):
    for p in parents:
        if type(p) is Unfollowed:
            return p
    return None


def _untracked_result(result, what: str, where: str):
    """The result of an unrecorded computation on recorded arrays: an error inside a forward
    pass, else float arrays marked unfollowed (raising where a gradient is needed)."""
    if isinstance(result, (tuple, list)):
        return type(result)(_untracked_result(r, what, where) for r in result)
    if not _is_float(result):
        return result
    if _in_forward():
        raise Unfollowed(what).error(where)
    return wrap(result, Unfollowed(what))


def _unbroadcast(g, like):
    """Sum ``g`` down to the shape of operand ``like`` and cast it to ``like``'s dtype."""
    if isinstance(like, float):
        return float(np.sum(g))
    shape = np.shape(like)
    g = np.asarray(g)
    if g.shape != shape:
        lead = g.ndim - len(shape)
        if lead:
            g = g.sum(axis=tuple(range(lead)))
        axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    dtype = np.result_type(like)
    return g.astype(dtype) if g.dtype != dtype else g


# --------------------------------------------------------------------------- ufunc rules
# Each rule takes the operands' values and which of them need a gradient and returns
# ``backward(g) -> tuple``; only the gradients that are needed are computed.

def _rule_add(v, need):
    a, b = v
    return lambda g: (_unbroadcast(g, a) if need[0] else None,
                      _unbroadcast(g, b) if need[1] else None)


def _rule_subtract(v, need):
    a, b = v
    return lambda g: (_unbroadcast(g, a) if need[0] else None,
                      _unbroadcast(-g, b) if need[1] else None)


def _rule_multiply(v, need):
    a, b = v
    return lambda g: (_unbroadcast(g * b, a) if need[0] else None,
                      _unbroadcast(g * a, b) if need[1] else None)


def _rule_divide(v, need):
    a, b = v
    return lambda g: (_unbroadcast(g / b, a) if need[0] else None,
                      _unbroadcast(-g * a / (b * b), b) if need[1] else None)


def _rule_negative(v, need):
    (a,) = v
    return lambda g: (_unbroadcast(-g, a),)


def _rule_positive(v, need):
    (a,) = v
    return lambda g: (_unbroadcast(g, a),)


def _rule_matmul(v, need):
    a, b = v
    if np.ndim(a) < 2 or np.ndim(b) < 2:
        return None  # vector products: not recorded (their transposes differ)
    return lambda g: (_unbroadcast(g @ np.swapaxes(b, -1, -2), a) if need[0] else None,
                      _unbroadcast(np.swapaxes(a, -1, -2) @ g, b) if need[1] else None)


def _rule_power(v, need):
    a, b = v
    if need[1]:
        return None  # a recorded exponent: not recorded
    return lambda g: (_unbroadcast(g * b * np.power(a, b - 1), a),)


def _elementwise(derivative):
    """A rule for a one-operand ufunc whose derivative is ``derivative(x, y)``."""
    def rule(v, need):
        (a,) = v
        return lambda g, y: (_unbroadcast(g * derivative(a, y), a),)
    rule.uses_output = True
    return rule


_UFUNC_RULES = {
    np.add: _rule_add, np.subtract: _rule_subtract, np.multiply: _rule_multiply,
    np.true_divide: _rule_divide, np.negative: _rule_negative, np.positive: _rule_positive,
    np.matmul: _rule_matmul, np.power: _rule_power,
    np.square: _elementwise(lambda x, y: 2 * x),
    np.exp: _elementwise(lambda x, y: y),
    np.log: _elementwise(lambda x, y: 1 / x),
    np.sqrt: _elementwise(lambda x, y: 0.5 / y),
    np.abs: _elementwise(lambda x, y: np.sign(x)),  # 0 at 0, as PyTorch
    np.tanh: _elementwise(lambda x, y: 1 - y * y),
}


def _ufunc(ufunc, method, inputs, kwargs):
    """What a ufunc does when an operand is recorded (a TrackedArray or a parameter)."""
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    out = kwargs.get("out")
    values, parents = zip(*(origin(a) for a in inputs)) if inputs else ((), ())
    if out is not None:
        if any((type(o) is TrackedArray and o._node is not None) or type(o) in _LEAF_TYPES
               for o in out):
            raise TypeError(
                f"{name}(..., out=...): writing into a recorded array (or a parameter) in "
                "place is not recorded and would change values that a backward pass needs; "
                "write y = a + b instead of np.add(a, b, out=y) (or a += b, which nbconv "
                "records as a new array), or work on np.asarray(y) under nc.no_grad()")
        if state.grad and state.record and any(map(_differentiable, parents)):
            raise TypeError(
                f"{name}(..., out=...): writing a recorded result into a plain array would "
                "drop its gradient; write acc = acc + y (a new recorded array) instead of "
                "acc += y on a plain acc")
    if method == "reduce" and ufunc is np.add:
        return _sum(inputs[0], name, kwargs.get("axis"), kwargs.get("dtype"),
                    kwargs.get("keepdims", False), kwargs.get("where", True),
                    kwargs.get("initial", np._NoValue))
    result = getattr(ufunc, method)(*values, **kwargs)
    if not (state.grad and state.record) or not _is_float(result) or ufunc in _STEP_UFUNCS:
        return result
    unf = _unfollowed(parents)
    if unf is not None:
        return _untracked_result(result, unf.what, name)
    need = tuple(map(_differentiable, parents))
    if not any(need):
        return result
    rule = _UFUNC_RULES.get(ufunc) if method == "__call__" and len(kwargs) == 0 else None
    backward = rule(values, need) if rule is not None else None
    if backward is None:
        return _untracked_result(result, name, name)
    if getattr(rule, "uses_output", False):
        y, by = np.asarray(result), backward
        backward = lambda g: by(g, y)  # noqa: E731
    constants = tuple(None if p is not None else v for v, p in zip(values, parents))
    return wrap(result, Node(name, parents, backward, {"constants": constants}))


# --------------------------------------------------------------------------- shape ops

def _record1(x, name, compute, backward, info=None):
    """Record a one-input op: ``compute(value)`` forward, ``backward(g) -> dx``."""
    value, parent = origin(x)
    result = compute(value)
    if not (state.grad and state.record) or not _is_float(result):
        return result
    if type(parent) is Unfollowed:
        return _untracked_result(result, parent.what, name)
    if parent is None:
        return result
    return wrap(result, Node(name, (parent,), lambda g: (backward(g),),
                             {} if info is None else info))


def _reshape(x, shape, order="C", name="reshape"):
    in_shape = np.shape(origin(x)[0])
    out_shape = np.empty(in_shape, bool).reshape(shape, order=order).shape
    return _record1(x, name, lambda v: np.reshape(v, shape, order=order),
                    lambda g: np.reshape(g, in_shape, order=order),
                    {"shape": out_shape, "order": order})


def _transpose(x, axes=None, name="transpose"):
    nd = np.ndim(origin(x)[0])
    axes = tuple(range(nd))[::-1] if axes is None else tuple(a % nd for a in axes)
    inverse = tuple(np.argsort(axes))
    return _record1(x, name, lambda v: np.transpose(v, axes),
                    lambda g: np.ascontiguousarray(np.transpose(g, inverse)), {"axes": axes})


def _sum(x, name, axis=None, dtype=None, keepdims=False, where=True, initial=np._NoValue,
         mean=False):
    value, parent = origin(x)
    if where is not True or initial is not np._NoValue:
        result = (np.mean if mean else np.sum)(value, axis=axis, dtype=dtype, keepdims=keepdims,
                                               where=where)
        if not (state.grad and state.record) or parent is None:
            return result
        return _untracked_result(result, f"{name} with where= or initial=", name)
    result = (np.mean if mean else np.sum)(value, axis=axis, dtype=dtype, keepdims=keepdims)
    if not (state.grad and state.record) or parent is None or not _is_float(result):
        return result
    if type(parent) is Unfollowed:
        return _untracked_result(result, parent.what, name)
    shape, in_dtype = value.shape, value.dtype
    axes = (tuple(range(value.ndim)) if axis is None
            else tuple(a % value.ndim for a in np.atleast_1d(axis)))
    count = int(np.prod([shape[a] for a in axes])) if mean else 1

    def backward(g):
        g = np.asarray(g)
        if not keepdims:
            g = np.expand_dims(g, axes)
        if mean:
            g = g / max(count, 1)
        return np.ascontiguousarray(np.broadcast_to(g, shape), dtype=in_dtype)

    return wrap(result, Node(name, (parent,), lambda g: (backward(g),),
                             {"axes": axes, "keepdims": keepdims, "mean": mean}))


def _concatenate(arrays, axis=0, name="np.concatenate", stack=False, **kwargs):
    if kwargs.get("out") is not None:
        raise TypeError(f"{name}(..., out=...): write the result to a new array instead "
                        "(out= is not recorded)")
    arrays = list(arrays)
    values, parents = zip(*(origin(a) for a in arrays)) if arrays else ((), ())
    join = np.stack if stack else np.concatenate
    result = join(values, axis=axis, **kwargs)
    if not (state.grad and state.record) or not _is_float(result):
        return result
    unf = _unfollowed(parents)
    if unf is not None:
        return _untracked_result(result, unf.what, name)
    if not any(map(_differentiable, parents)):
        return result
    ax = axis % result.ndim
    if stack:
        sizes = [1] * len(values)
    else:
        sizes = [np.shape(v)[ax] for v in values]
    cuts = np.cumsum(sizes)[:-1]
    dtypes = [np.result_type(v) for v in values]

    def backward(g):
        pieces = np.split(g, cuts, axis=ax)
        return tuple(None if p is None else
                     np.ascontiguousarray(np.squeeze(piece, ax) if stack else piece, dtype=dt)
                     for p, piece, dt in zip(parents, pieces, dtypes))

    return wrap(result, Node(name, tuple(parents), backward, {"axis": ax, "stack": stack}))


def _basic_index(key) -> bool:
    """Whether indexing with ``key`` makes a view in which each element appears once."""
    items = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))
               for k in items)


def _getitem(x, key):
    value, parent = origin(x)
    shape, dtype = value.shape, value.dtype
    basic = _basic_index(key)

    def backward(g):
        dx = np.zeros(shape, dtype)
        if basic:
            dx[key] = g
        else:
            np.add.at(dx, key, g)  # an index repeated gets the sum of its gradients
        return dx

    return _record1(x, "getitem", lambda v: v[key], backward, {"key": key})


def _astype(x, dtype, **kwargs):
    value, _ = origin(x)
    src = value.dtype
    result_dtype = np.dtype(dtype)
    if result_dtype.kind != "f":
        return value.astype(dtype, **kwargs)  # integer or bool values carry no gradient
    return _record1(x, f"astype({result_dtype.name})", lambda v: v.astype(dtype, **kwargs),
                    lambda g: np.asarray(g).astype(src), {"dtype": result_dtype})


def _squeeze_shape(shape, axis):
    if axis is None:
        return tuple(s for s in shape if s != 1)
    axes = {a % len(shape) for a in np.atleast_1d(axis)}
    return tuple(s for i, s in enumerate(shape) if i not in axes)


# --------------------------------------------------------------------------- NumPy functions

def _fn_reshape(a, *args, **kwargs):
    shape = kwargs.pop("shape", kwargs.pop("newshape", args[0] if args else None))
    order = kwargs.pop("order", args[1] if len(args) > 1 else "C")
    return _reshape(a, shape, order, "np.reshape")


def _fn_squeeze(a, axis=None):
    return _reshape(a, _squeeze_shape(np.shape(a), axis), "C", "np.squeeze")


def _fn_expand_dims(a, axis):
    return _reshape(a, np.expand_dims(np.empty(np.shape(a), bool), axis).shape, "C",
                    "np.expand_dims")


_FUNCTION_RULES = {
    np.concatenate: lambda arrays, axis=0, **kw: _concatenate(arrays, axis, **kw),
    np.stack: lambda arrays, axis=0, **kw: _concatenate(arrays, axis, "np.stack", True, **kw),
    np.reshape: _fn_reshape,
    np.transpose: lambda a, axes=None: _transpose(a, axes, "np.transpose"),
    np.squeeze: _fn_squeeze,
    np.expand_dims: _fn_expand_dims,
    np.ravel: lambda a, order="C": _reshape(a, (-1,), order, "np.ravel"),
    np.sum: lambda a, axis=None, dtype=None, out=None, keepdims=False, **kw: (
        _no_out(out, "np.sum") or _sum(a, "np.sum", axis, dtype, keepdims, **kw)),
    np.mean: lambda a, axis=None, dtype=None, out=None, keepdims=False, **kw: (
        _no_out(out, "np.mean") or _sum(a, "np.mean", axis, dtype, keepdims, mean=True, **kw)),
    np.copy: lambda a, order="K", subok=False: (
        _record1(a, "np.copy", lambda v: np.copy(v, order), lambda g: g)),
}


def _no_out(out, name):
    if out is not None:
        raise TypeError(f"{name}(..., out=...): out= is not recorded; use the result")
    return None


def _plain_args(args):
    """Arguments with recorded arrays replaced by their plain views (one level of lists and
    tuples looked into), and the parents found."""
    parents = []

    def plain(a):
        if isinstance(a, (list, tuple)):
            return type(a)(plain(b) for b in a)
        v, p = origin(a)
        if p is not None:
            parents.append(p)
        return v

    return [plain(a) for a in args], parents


#: functions whose result carries no gradient: only shapes matter (``zeros_like``), or the
#: derivative is zero wherever it exists (rounding, as PyTorch's): constants
_SHAPE_ONLY_FUNCTIONS = {np.zeros_like, np.ones_like, np.empty_like, np.full_like, np.round,
                         np.around, np.fix}
#: ufuncs whose derivative is zero wherever it exists (PyTorch's rule): constants
_STEP_UFUNCS = {np.sign, np.floor, np.ceil, np.trunc, np.rint}


def _function(func, args, kwargs):
    rule = _FUNCTION_RULES.get(func)
    if rule is not None:
        return rule(*args, **kwargs)
    if func in _SHAPE_ONLY_FUNCTIONS:
        plain, _ = _plain_args(args)
        kplain, _ = _plain_args(list(kwargs.values()))
        return func(*plain, **dict(zip(kwargs, kplain)))
    plain, parents = _plain_args(args)
    kplain, kparents = _plain_args(list(kwargs.values()))
    result = func(*plain, **dict(zip(kwargs, kplain)))
    parents += kparents
    if not (state.grad and state.record) or not any(map(_differentiable, parents)) and \
            _unfollowed(parents) is None:
        return result
    unf = _unfollowed(parents)
    name = f"np.{func.__name__}"
    return _untracked_result(result, unf.what if unf is not None else name, name)


# --------------------------------------------------------------------------- the class

class TrackedArray(np.ndarray):
    """A ``numpy.ndarray`` made by a recorded call; ``backward`` sends a gradient back
    through the records that made it.  See the module docstring for what is recorded.

    Its methods keep NumPy's signatures (``x.flatten()``, ``x.sum(axis=1)``), not PyTorch's,
    so that a ``forward`` runs the same on the plain arrays of ``nc.no_grad()``."""

    _node = None  # Node, Unfollowed (computed by something unrecorded) or None (a constant)

    def __array_finalize__(self, obj):
        # Views and copies NumPy makes by itself (methods nbconv does not override): they
        # carry floats derived from a recorded array along an unknown path.
        node = getattr(obj, "_node", None)
        if node is not None and self.dtype.kind == "f":
            self._node = node if type(node) is Unfollowed else Unfollowed("a NumPy method")
        else:
            self._node = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _function(func, args, kwargs)

    def __reduce__(self):  # pickles and deep copies are plain arrays (no record travels)
        return np.asarray(self).__reduce__()

    def __deepcopy__(self, memo):
        return np.array(self)

    # -- recorded methods ------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return _reshape(self, shape, order)

    def flatten(self, order="C"):
        return _reshape(self, (-1,), order, "flatten")

    def ravel(self, order="C"):
        return _reshape(self, (-1,), order, "ravel")

    def squeeze(self, axis=None):
        return _reshape(self, _squeeze_shape(self.shape, axis), "C", "squeeze")

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return _transpose(self, axes or None)

    @property
    def T(self):
        return _transpose(self, None, "T")

    def swapaxes(self, axis1, axis2):
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return _transpose(self, axes, "swapaxes")

    def copy(self, order="C"):
        return _record1(self, "copy", lambda v: v.copy(order), lambda g: g)

    def astype(self, dtype, *args, **kwargs):
        return _astype(self, dtype, *args, **kwargs)

    def view(self, *args, **kwargs):
        if not args and not kwargs:
            return _record1(self, "view", lambda v: v.view(), lambda g: g)
        target = kwargs.get("type", args[0] if args else None)
        if isinstance(target, type) and issubclass(target, np.ndarray):
            return super().view(*args, **kwargs)  # np.ndarray: the plain values, detached
        if not (state.grad and state.record) or not _differentiable(self._node):
            return np.asarray(self).view(*args, **kwargs)
        raise TypeError("view(dtype) of a recorded array reinterprets its bytes, which has "
                        "no gradient; use astype (recorded) or np.asarray(x).view(...)")

    def round(self, decimals=0, out=None):
        """Rounded values, a constant (zero gradient, as PyTorch's ``round``)."""
        _no_out(out, "round")
        return np.round(self.view(_ndarray), decimals)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        _no_out(out, "sum")
        return _sum(self, "sum", axis, dtype, keepdims, **kwargs)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        _no_out(out, "mean")
        return _sum(self, "mean", axis, dtype, keepdims, mean=True, **kwargs)

    def __getitem__(self, key):
        if type(key) is TrackedArray:
            key = key.view(_ndarray)
        elif isinstance(key, tuple) and any(type(k) is TrackedArray for k in key):
            key = tuple(k.view(_ndarray) if type(k) is TrackedArray else k for k in key)
        return _getitem(self, key)

    def __setitem__(self, key, value):
        if self._node is not None or is_tracked(value):
            raise TypeError(
                "assigning into a recorded array is not recorded (and would change values "
                "that its backward pass may need); build the array with nc.cat / "
                "np.concatenate, or assign into a plain copy: y = np.array(x) (detached)")
        super().__setitem__(key, value)

    def fill(self, value):
        if self._node is not None:
            raise TypeError("fill on a recorded array is not recorded; use a plain array "
                            "(np.full) or np.asarray(x) under nc.no_grad()")
        super().fill(value)

    # ``a += b`` rebinds ``a`` to a new recorded array (see the module docstring).
    def __iadd__(self, other):
        return np.add(self, other) if self._node is not None else super().__iadd__(other)

    def __isub__(self, other):
        return np.subtract(self, other) if self._node is not None else super().__isub__(other)

    def __imul__(self, other):
        return np.multiply(self, other) if self._node is not None else super().__imul__(other)

    def __itruediv__(self, other):
        return (np.true_divide(self, other) if self._node is not None
                else super().__itruediv__(other))

    # -- gradients ---------------------------------------------------------------------
    @property
    def recorded_by(self) -> str | None:
        """The name of the record that made this array (None for a constant)."""
        node = self._node
        return node.name if isinstance(node, Node) else None

    def detach(self) -> np.ndarray:
        """The values as a plain array (shares memory), out of the gradient."""
        return self.view(_ndarray)

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Send ``gradient`` (d loss / d self; ones for a one-element array) back through
        the records that made this array: every parameter they used adds its gradient to
        ``Parameter.grad``.

        Raises
        ------
        RuntimeError
            When the records were consumed by an earlier backward pass
            (:class:`~nbconv.recording.graph.SecondBackwardError`), or nothing was recorded.
        TypeError
            When the array was computed by an unrecorded operation.
        ValueError
            When ``gradient`` is missing for an array of several elements, or has the wrong
            shape.
        """
        node = self._node
        if type(node) is Unfollowed:
            raise node.error("backward")
        if node is None:
            raise RuntimeError("backward: this array was not recorded (it was computed "
                               "inside nc.no_grad(), or from no recorded array or parameter)")
        if gradient is None:
            if self.size != 1:
                raise ValueError(
                    f"backward: argument 'gradient' is needed for an output of shape "
                    f"{self.shape} (only a one-element output defaults to ones)")
            g = np.ones(self.shape, self.dtype)
        else:
            g = np.asarray(detach(gradient))
            if g.shape != self.shape:
                raise ValueError(f"backward: argument 'gradient' has shape {g.shape}, the "
                                 f"output has shape {self.shape}")
            if g.dtype != self.dtype:
                g = g.astype(self.dtype)
        run_backward([(node, g)], retain_graph=retain_graph)

"""How nbconv's functional ops are recorded: each op's forward on the plain values, and a
record whose backward is the op's own ``*_backward`` (the kernels nbconv has; nothing is
differentiated numerically).

:func:`record_op` is what :mod:`nbconv._dispatch` calls when an argument of a public op is a
recorded array or a parameter.  A rule has the op's signature (after ``fn``, the op itself),
so arguments bind as in the op; ops without a rule (``correlate2d``, the ``*_backward``
functions) compute on plain values and their float results are treated as unrecorded.
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import _dispatch
from .. import functional as F
from .array import (
    _LEAF_TYPES,
    TrackedArray,
    _differentiable,
    _unfollowed,
    _untracked_result,
    detach,
    origin,
    wrap,
)
from .graph import Node, needs_grad
from .state import state

__all__ = ["record_op"]


def _cast(g, like):
    """``g`` in the dtype of the operand it is the gradient of (None stays None)."""
    if g is None:
        return None
    dtype = np.result_type(like)
    return g if g.dtype == dtype else g.astype(dtype)


def _finish(name, y, parents, backward, **info):
    """``y`` recorded with ``backward`` when an input needs a gradient; ``info`` holds the
    op's non-array arguments (for readers of the graph)."""
    unf = _unfollowed(parents)
    if unf is not None:
        return _untracked_result(y, unf.what, name)
    if not any(map(_differentiable, parents)):
        return y
    return wrap(y, Node(name, tuple(parents), backward, info))


# --------------------------------------------------------------------------- activations

def _relu(fn, x):
    xv, px = origin(x)
    return _finish("relu", fn(xv), (px,), lambda g: (F.relu_backward(g, xv),))


def _leaky_relu(fn, x, negative_slope=0.01):
    xv, px = origin(x)
    return _finish("leaky_relu", fn(xv, negative_slope), (px,),
                   lambda g: (F.leaky_relu_backward(g, xv, negative_slope),),
                   negative_slope=negative_slope)


def _sigmoid(fn, x):
    xv, px = origin(x)
    y = fn(xv)
    return _finish("sigmoid", y, (px,), lambda g: (F.sigmoid_backward(g, y),))


def _tanh(fn, x):
    xv, px = origin(x)
    y = fn(xv)
    return _finish("tanh", y, (px,), lambda g: (F.tanh_backward(g, y),))


def _softmax(fn, x, axis=-1):
    xv, px = origin(x)
    y = fn(xv, axis)
    return _finish("softmax", y, (px,), lambda g: (F.softmax_backward(g, y, axis),), axis=axis)


def _log_softmax(fn, x, axis=-1):
    xv, px = origin(x)
    y = fn(xv, axis)
    return _finish("log_softmax", y, (px,), lambda g: (F.log_softmax_backward(g, y, axis),),
                   axis=axis)


def _dropout(fn, x, p=0.5, training=True, rng=None, return_mask=False):
    xv, px = origin(x)
    y, mask = fn(xv, p, training, rng, return_mask=True)
    out = _finish("dropout", y, (px,), lambda g: (F.dropout_backward(g, mask),), p=p,
                  training=training)
    return (out, mask) if return_mask else out


# --------------------------------------------------------------------------- conv, linear

def _conv(name, backward_op):
    def rule(fn, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
             padding_mode="zeros", **kwargs):
        (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
        geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                        padding_mode=padding_mode)
        y = fn(xv, wv, bv, **geometry, **kwargs)

        def backward(g):
            dx, dw, db = backward_op(g, xv, wv, bias=bv is not None,
                                     need_dx=needs_grad(px), **geometry)
            return dx, _cast(dw, wv), None if bv is None else _cast(db, bv)

        return _finish(name, y, (px, pw, pb), backward, **geometry, **kwargs)

    return rule


def _conv_transpose(name, backward_op):
    def rule(fn, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
             dilation=1, **kwargs):
        (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
        geometry = dict(stride=stride, padding=padding, output_padding=output_padding,
                        groups=groups, dilation=dilation)
        y = fn(xv, wv, bv, **geometry, **kwargs)

        def backward(g):
            dx, dw, db = backward_op(g, xv, wv, bias=bv is not None,
                                     need_dx=needs_grad(px), **geometry)
            return dx, _cast(dw, wv), None if bv is None else _cast(db, bv)

        return _finish(name, y, (px, pw, pb), backward, **geometry, **kwargs)

    return rule


def _linear(fn, x, weight, bias=None):
    (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
    y = fn(xv, wv, bv)

    def backward(g):
        dx, dw, db = F.linear_backward(g, xv, wv, bias=bv is not None)
        return dx, _cast(dw, wv), None if bv is None else _cast(db, bv)

    return _finish("linear", y, (px, pw, pb), backward)


# --------------------------------------------------------------------------- pooling

def _max_pool2d(fn, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
    xv, px = origin(x)
    y, idx = fn(xv, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    shape = np.shape(xv)
    out = _finish("max_pool2d", y, (px,), lambda g: (F.max_pool2d_backward(g, idx, shape),),
                  kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=ceil_mode)
    return (out, idx) if return_indices else out


def _avg_pool2d(fn, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    xv, px = origin(x)
    args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    y = fn(xv, *args)
    shape = np.shape(xv)
    return _finish("avg_pool2d", y, (px,),
                   lambda g: (F.avg_pool2d_backward(g, shape, *args),),
                   **dict(zip(("kernel_size", "stride", "padding", "ceil_mode",
                               "count_include_pad", "divisor_override"), args)))


def _adaptive_avg_pool2d(fn, x, output_size):
    xv, px = origin(x)
    y = fn(xv, output_size)
    shape = np.shape(xv)
    return _finish("adaptive_avg_pool2d", y, (px,),
                   lambda g: (F.adaptive_avg_pool2d_backward(g, shape),), output_size=output_size)


def _global_avg_pool2d(fn, x, keepdims=True):
    xv, px = origin(x)
    y = fn(xv, keepdims)
    shape = np.shape(xv)
    return _finish("global_avg_pool2d", y, (px,),
                   lambda g: (F.global_avg_pool2d_backward(g, shape),), keepdims=keepdims)


# --------------------------------------------------------------------------- normalisation

def _batch_norm(fn, x, running_mean, running_var, weight=None, bias=None, training=False,
                momentum=0.1, eps=1e-5, return_stats=False):
    (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
    y, mean, invstd = fn(xv, detach(running_mean), detach(running_var), wv, bv, training,
                         momentum, eps, return_stats=True)

    def backward(g):
        dx, dw, db = F.batch_norm_backward(g, xv, mean, invstd, wv, training)
        return dx, None if wv is None else _cast(dw, wv), None if bv is None else _cast(db, bv)

    out = _finish("batch_norm", y, (px, pw, pb), backward, running_mean=running_mean,
                  running_var=running_var, training=training, momentum=momentum, eps=eps)
    return (out, mean, invstd) if return_stats else out


def _local_response_norm(fn, x, size, alpha=1e-4, beta=0.75, k=1.0):
    xv, px = origin(x)
    return _finish("local_response_norm", fn(xv, size, alpha, beta, k), (px,),
                   lambda g: (F.local_response_norm_backward(g, xv, size, alpha, beta, k),),
                   size=size, alpha=alpha, beta=beta, k=k)


def _norm_grads(backward_op, g, xv, wv, bv, *args):
    """``backward_op``'s gradients for the parents (x, weight, bias): the affine ones only
    where the op had a weight or a bias."""
    dx, dw, db = backward_op(g, xv, *args, affine=wv is not None or bv is not None)
    return dx, None if wv is None else _cast(dw, wv), None if bv is None else _cast(db, bv)


def _group_norm(fn, x, num_groups, weight=None, bias=None, eps=1e-5, return_stats=False):
    (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
    y, mean, rstd = fn(xv, num_groups, wv, bv, eps, return_stats=True)
    out = _finish("group_norm", y, (px, pw, pb),
                  lambda g: _norm_grads(F.group_norm_backward, g, xv, wv, bv, num_groups, mean,
                                        rstd, wv),
                  num_groups=num_groups, eps=eps)
    return (out, mean, rstd) if return_stats else out


def _instance_norm(fn, x, running_mean=None, running_var=None, weight=None, bias=None,
                   use_input_stats=True, momentum=0.1, eps=1e-5, return_stats=False):
    (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
    y, mean, rstd = fn(xv, detach(running_mean), detach(running_var), wv, bv, use_input_stats,
                       momentum, eps, return_stats=True)
    out = _finish("instance_norm", y, (px, pw, pb),
                  lambda g: _norm_grads(F.instance_norm_backward, g, xv, wv, bv, mean, rstd,
                                        wv, use_input_stats),
                  running_mean=running_mean, running_var=running_var,
                  use_input_stats=use_input_stats, momentum=momentum, eps=eps)
    return (out, mean, rstd) if return_stats else out


def _layer_norm(fn, x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    (xv, px), (wv, pw), (bv, pb) = origin(x), origin(weight), origin(bias)
    y, mean, rstd = fn(xv, normalized_shape, wv, bv, eps, return_stats=True)
    out = _finish("layer_norm", y, (px, pw, pb),
                  lambda g: _norm_grads(F.layer_norm_backward, g, xv, wv, bv, normalized_shape,
                                        mean, rstd, wv),
                  normalized_shape=normalized_shape, eps=eps)
    return (out, mean, rstd) if return_stats else out


# --------------------------------------------------------------------------- shapes

def _cat(fn, tensors, dim=0):
    values, parents = zip(*(origin(t) for t in tensors))
    y = fn(list(values), dim)
    d = dim % y.ndim
    cuts = np.cumsum([np.shape(v)[d] for v in values])[:-1]

    def backward(g):
        return tuple(None if p is None else _cast(np.ascontiguousarray(piece), v)
                     for p, v, piece in zip(parents, values, np.split(g, cuts, axis=d)))

    return _finish("cat", y, parents, backward, dim=d)


def _flatten(fn, x, start_dim=0, end_dim=-1):
    xv, px = origin(x)
    shape = np.shape(xv)
    return _finish("flatten", fn(xv, start_dim, end_dim), (px,),
                   lambda g: (np.reshape(g, shape),), start_dim=start_dim, end_dim=end_dim)


_RULES = {
    "relu": _relu, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid, "tanh": _tanh,
    "softmax": _softmax, "log_softmax": _log_softmax, "dropout": _dropout,
    "conv2d": _conv("conv2d", F.conv2d_backward), "conv1d": _conv("conv1d", F.conv1d_backward),
    "linear": _linear, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d, "global_avg_pool2d": _global_avg_pool2d,
    "batch_norm": _batch_norm, "local_response_norm": _local_response_norm,
    "cat": _cat, "flatten": _flatten,
}
_RULES.update(group_norm=_group_norm, instance_norm=_instance_norm, layer_norm=_layer_norm)
_RULES.update(conv_transpose2d=_conv_transpose("conv_transpose2d", F.conv_transpose2d_backward),
              conv_transpose1d=_conv_transpose("conv_transpose1d", F.conv_transpose1d_backward))


# --------------------------------------------------------------------------- 1-D, adaptive and
# global max pooling, channel dropout

def _max_pool1d(fn, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
    xv, px = origin(x)
    y, idx = fn(xv, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    shape = np.shape(xv)
    out = _finish("max_pool1d", y, (px,), lambda g: (F.max_pool1d_backward(g, idx, shape),),
                  kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=ceil_mode)
    return (out, idx) if return_indices else out


def _avg_pool1d(fn, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True):
    xv, px = origin(x)
    args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
    shape = np.shape(xv)
    return _finish("avg_pool1d", fn(xv, *args), (px,),
                   lambda g: (F.avg_pool1d_backward(g, shape, *args),),
                   **dict(zip(("kernel_size", "stride", "padding", "ceil_mode",
                               "count_include_pad"), args)))


def _adaptive_avg_pool1d(fn, x, output_size):
    xv, px = origin(x)
    shape = np.shape(xv)
    return _finish("adaptive_avg_pool1d", fn(xv, output_size), (px,),
                   lambda g: (F.adaptive_avg_pool1d_backward(g, shape),), output_size=output_size)


def _adaptive_max(name, backward_op):
    def rule(fn, x, output_size, return_indices=False):
        xv, px = origin(x)
        y, idx = fn(xv, output_size, return_indices=True)
        shape = np.shape(xv)
        out = _finish(name, y, (px,), lambda g: (backward_op(g, idx, shape),),
                      output_size=output_size)
        return (out, idx) if return_indices else out

    return rule


def _global_max_pool2d(fn, x, keepdims=True, return_indices=False):
    xv, px = origin(x)
    y, idx = fn(xv, keepdims, return_indices=True)
    shape = np.shape(xv)
    out = _finish("global_max_pool2d", y, (px,),
                  lambda g: (F.global_max_pool2d_backward(g, idx, shape),), keepdims=keepdims)
    return (out, idx) if return_indices else out


def _channel_dropout(name, backward_op):
    def rule(fn, x, p=0.5, training=True, rng=None, return_mask=False):
        xv, px = origin(x)
        y, mask = fn(xv, p, training, rng, return_mask=True)
        out = _finish(name, y, (px,), lambda g: (backward_op(g, mask),), p=p, training=training)
        return (out, mask) if return_mask else out

    return rule


_RULES.update({
    "max_pool1d": _max_pool1d, "avg_pool1d": _avg_pool1d,
    "adaptive_avg_pool1d": _adaptive_avg_pool1d,
    "adaptive_max_pool1d": _adaptive_max("adaptive_max_pool1d", F.adaptive_max_pool1d_backward),
    "adaptive_max_pool2d": _adaptive_max("adaptive_max_pool2d", F.adaptive_max_pool2d_backward),
    "global_max_pool2d": _global_max_pool2d,
    "dropout1d": _channel_dropout("dropout1d", F.dropout1d_backward),
    "dropout2d": _channel_dropout("dropout2d", F.dropout2d_backward),
})


# --------------------------------------------------------------------------- issue 27 activations

def _elementwise(name):
    """The rule of the elementwise op ``name(x, **hyper)`` whose backward is
    ``name_backward(dy, x, **hyper)``; ``info`` holds the hyperparameters (defaults filled)."""
    op, backward = getattr(F, name), getattr(F, f"{name}_backward")
    sig = inspect.signature(op)

    def rule(fn, x, *args, **kwargs):
        xv, px = origin(x)
        bound = sig.bind(xv, *args, **kwargs)
        bound.apply_defaults()
        hyper = dict(list(bound.arguments.items())[1:])
        return _finish(name, fn(xv, **hyper), (px,), lambda g: (backward(g, xv, **hyper),),
                       **hyper)

    return rule


def _prelu(fn, x, weight):
    (xv, px), (wv, pw) = origin(x), origin(weight)

    def backward(g):
        dx, dw = F.prelu_backward(g, xv, wv)
        return dx, _cast(dw, wv)

    return _finish("prelu", fn(xv, wv), (px, pw), backward)


_RULES.update({name: _elementwise(name) for name in (
    "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "relu6",
    "softplus")})
_RULES["prelu"] = _prelu


def _interpolate(fn, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
    xv, px = origin(x)
    hyper = dict(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners,
                 recompute_scale_factor=recompute_scale_factor)
    shape = np.shape(xv)
    return _finish("interpolate", fn(xv, **hyper), (px,),
                   lambda g: (F.interpolate_backward(g, shape, **hyper),), **hyper)


_RULES["interpolate"] = _interpolate

def _plain(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_plain(b) for b in a)
    return detach(a)


def record_op(name, fn, args, kwargs):
    """Call op ``name`` (``fn``) whose arguments hold recorded arrays or parameters."""
    rule = _RULES.get(name)
    if rule is not None and state.grad and state.record:
        return rule(fn, *args, **kwargs)
    plain_args = [_plain(a) for a in args]
    plain_kwargs = {k: _plain(v) for k, v in kwargs.items()}
    result = fn(*plain_args, **plain_kwargs)
    if not (state.grad and state.record):
        return result
    parents = [origin(a)[1] for a in list(args) + list(kwargs.values())]
    unf = _unfollowed(parents)
    if unf is None and not any(map(_differentiable, parents)):
        return result
    what = unf.what if unf is not None else f"nc.{name} (it has no recorded backward)"
    return _untracked_result(result, what, f"nc.{name}")


def install(leaf_types=()) -> None:
    """Make the public ops route recorded arguments here."""
    _LEAF_TYPES.update(leaf_types)
    _dispatch.set_recorder({TrackedArray, *_LEAF_TYPES}, record_op)

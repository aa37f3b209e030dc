"""Resizing by interpolation (PyTorch's ``interpolate``) and its backward pass.

Inputs are ``(N, C, H, W)`` (modes ``"nearest"``, ``"nearest-exact"``, ``"bilinear"``) or
``(N, C, L)`` (``"nearest"``, ``"nearest-exact"``, ``"linear"``); as in PyTorch a 3-D input is
batched 1-D data, not an unbatched image.  The output size is ``size``, or
``floor(in * scale_factor)`` per axis.  Source positions follow PyTorch, per axis of input
length ``n`` and output length ``o``, with ``r = 1 / scale_factor`` when a scale factor is given
(and ``recompute_scale_factor`` is not True), else ``r = n / o``:

* ``"nearest"``: output ``i`` reads ``min(floor(i * r), n - 1)``; on 4-D inputs an axis
  whose size is kept (``o == n``) is copied and one that doubles reads ``i // 2``, whatever
  the scale factor (PyTorch's 2-D kernel; its 1-D one does not);
* ``"nearest-exact"``: ``min(floor((i + 0.5) * r), n - 1)``;
* ``"linear"``/``"bilinear"``: the source coordinate is ``s = i * (n - 1) / (o - 1)`` with
  ``align_corners=True`` (0 when ``o == 1``), else ``s = max((i + 0.5) * r - 0.5, 0)``; the
  output mixes ``floor(s)`` and the next index (clamped to ``n - 1``) with weights
  ``1 - f`` and ``f``, ``f = s - floor(s)``; bilinear is this along H and along W.  An axis
  whose size is kept is copied, as ``1 * x[i] + 0 * x[i]`` (so an inf there gives NaN, as in
  PyTorch).

The index tables are built here in NumPy (O(OH + OW)); the kernels in
:mod:`nbconv.kernels.interpolate` run over rows of the ``(n, c)`` planes.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _config, _dispatch
from .._checks import as_float_array, check_bool, check_int, check_real
from .._checks.pool import shape_tuple
from ..kernels import interpolate as _ki

__all__ = ["interpolate", "interpolate_backward"]

_MODES = {3: ("nearest", "nearest-exact", "linear"), 4: ("nearest", "nearest-exact", "bilinear")}
_LINEAR = ("linear", "bilinear")


def _per_axis(op, name, v, d, check):
    """``v`` (a scalar or a sequence of ``d``) as a tuple of ``d`` checked values."""
    if isinstance(v, (tuple, list)):
        if len(v) != d:
            raise ValueError(f"{op}: argument '{name}' must be a number or a sequence of {d} "
                             f"for a {d + 2}-D input, got {v!r}")
        return tuple(check(x) for x in v)
    return (check(v),) * d


def _resolve(op, in_sizes, size, scale_factor, mode, align_corners, recompute_scale_factor):
    """Checked ``(out_sizes, scales, mode, align_corners)``; ``scales`` holds ``1/scale_factor``
    per axis, or None where PyTorch uses ``in / out``."""
    d = len(in_sizes)
    if not isinstance(mode, str):
        raise TypeError(f"{op}: argument 'mode' must be a string, got {mode!r}")
    if mode not in _MODES[d + 2]:
        others = [n for n, modes in _MODES.items() if mode in modes]
        hint = (f" ({mode!r} needs a {others[0]}-D input)" if others else "")
        raise ValueError(f"{op}: argument 'mode' must be one of {_MODES[d + 2]} for a "
                         f"{d + 2}-D input, got {mode!r}{hint}")
    if mode in _LINEAR:
        align_corners = False if align_corners is None else check_bool(
            op, "align_corners", align_corners)
    elif align_corners is not None:
        raise ValueError(f"{op}: argument 'align_corners' can only be set with the "
                         f"interpolating modes 'linear' and 'bilinear', got mode {mode!r}")
    if recompute_scale_factor is not None:
        recompute_scale_factor = check_bool(op, "recompute_scale_factor", recompute_scale_factor)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: argument 'size' or argument 'scale_factor' must be given, one "
                         f"and not both; got size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{op}: argument 'recompute_scale_factor' is not meaningful with "
                             "an explicit 'size'")
        out = _per_axis(op, "size", size, d, lambda v: check_int(op, "size", v, 1))
        return out, (None,) * d, mode, align_corners
    sf = _per_axis(op, "scale_factor", scale_factor, d,
                   lambda v: check_real(op, "scale_factor", v, 0.0, low_open=True))
    out = tuple(math.floor(float(n) * s) for n, s in zip(in_sizes, sf))
    if min(out) < 1:
        raise ValueError(f"{op}: argument 'scale_factor' {scale_factor!r} gives an empty "
                         f"output size {out} for input size {tuple(in_sizes)}")
    scales = (None,) * d if recompute_scale_factor else tuple(1.0 / s for s in sf)
    return out, scales, mode, align_corners


def _ratio(n, o, scale, dt):
    """PyTorch's source-per-output ratio in the op's arithmetic type ``dt``."""
    return dt.type(scale) if scale is not None else dt.type(n) / dt.type(o)


def _nearest_table(n, o, scale, exact, legacy):
    """Source index of each output position along an axis of input length ``n``."""
    if legacy and not exact and o in (n, 2 * n):
        # PyTorch's 2-D nearest kernel copies (o == n) or halves (o == 2n) the index whatever
        # the scale factor says (its 1-D kernel does not)
        return np.arange(o, dtype=np.int64) // (o // n)
    dt = np.dtype(np.float32)  # PyTorch's nearest index is float arithmetic for every dtype
    r = _ratio(n, o, scale, dt)
    i = np.arange(o, dtype=dt)
    src = np.floor((i + dt.type(0.5)) * r if exact else i * r)
    return np.minimum(src.astype(np.int64), n - 1)


def _linear_table(n, o, scale, align_corners, dt):
    """``(i0, i1, l0, l1)``: the two source indices and weights of each output position."""
    i = np.arange(o, dtype=np.float64)
    if o == n:
        # PyTorch copies an axis whose size does not change (whatever the scale factor or
        # align_corners say), as ``1 * x[i] + 0 * x[i]``: an inf there gives NaN, and only there
        i0 = np.arange(o, dtype=np.int64)
        return i0, i0, np.ones(o, dt), np.zeros(o, dt)
    if align_corners:
        r = dt.type(n - 1) / dt.type(o - 1) if o > 1 else dt.type(0)
        src = (r * i).astype(dt)
    else:
        # PyTorch evaluates ``r * (i + 0.5) - 0.5`` in double, then rounds to the op's type
        src = np.maximum(np.float64(_ratio(n, o, scale, dt)) * (i + 0.5) - 0.5, 0.0).astype(dt)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    l1 = np.clip(src - i0.astype(dt), 0, 1).astype(dt)
    l0 = (dt.type(1) - l1).astype(dt)
    i1 = i0 + (i0 < n - 1)
    return i0, i1, l0, l1


def _tables(in_sizes, out, scales, mode, align_corners, dt):
    """Per-axis tables: ``[(i0, i1, l0, l1), ...]`` (nearest: ``i1 = i0``, weights 1 and 0)."""
    res = []
    for n, o, s in zip(in_sizes, out, scales):
        if mode in _LINEAR:
            res.append(_linear_table(n, o, s, align_corners, dt))
        else:
            i0 = _nearest_table(n, o, s, mode == "nearest-exact", len(out) == 2)
            res.append((i0, i0, np.ones(o, dt), np.zeros(o, dt)))
    return res


def _csr(table, n, linear):
    """The transpose of an axis table as CSR: for each input index, the output positions that
    read it and their weights, in increasing output order."""
    i0, i1, l0, l1 = table
    o = len(i0)
    pos = np.arange(o, dtype=np.int64)
    if linear:
        tgt, src = np.concatenate([i0, i1]), np.concatenate([pos, pos])
        wt = np.concatenate([l0, l1])
    else:
        tgt, src, wt = i0, pos, l0
    order = np.lexsort((src, tgt))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(tgt, minlength=n), out=ptr[1:])
    return ptr, np.ascontiguousarray(src[order]), np.ascontiguousarray(wt[order])


def _planes(a, d):
    """View (N, C, H, W) as (N*C, H, W) and (N, C, L) as (N*C, 1, L)."""
    return a.reshape((-1,) + (a.shape[-2:] if d == 2 else (1, a.shape[-1])))


def _input(op, x):
    x = as_float_array(op, "x", x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: argument 'x' must be 3-D (N, C, L) or 4-D (N, C, H, W), got "
                         f"shape {tuple(x.shape)}")
    if 0 in x.shape[2:]:
        raise ValueError(f"{op}: argument 'x' has an empty spatial size, shape {tuple(x.shape)}")
    return x


@_dispatch.dispatch
def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize ``x`` by nearest or (bi)linear interpolation (PyTorch's ``interpolate``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (N, C, L)
        float32/float64 (kept); integer/bool inputs are cast to float32.
    size : int or sequence of int, optional
        Output spatial size ``(OH, OW)`` (``(OL,)``); exactly one of ``size`` and
        ``scale_factor`` is given.
    scale_factor : float or sequence of float, optional
        Output size ``floor(in * scale_factor)`` per axis; the source positions then use
        ``1 / scale_factor`` as PyTorch does (unless ``recompute_scale_factor=True``).
    mode : {"nearest", "nearest-exact", "bilinear", "linear"}
        ``"bilinear"`` for 4-D inputs, ``"linear"`` for 3-D ones.
    align_corners : bool, optional
        Linear modes only (default False): map the corner pixels' centres onto each other.
    recompute_scale_factor : bool, optional
        True: position by ``in / out`` even when ``scale_factor`` is given.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW) or (N, C, OL), dtype of ``x``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1., 2.], [3., 4.]]]])
    >>> nc.interpolate(x, scale_factor=2)[0, 0].tolist()
    [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
    >>> nc.interpolate(x, size=(2, 3), mode="bilinear", align_corners=True)[0, 0].tolist()
    [[1.0, 1.5, 2.0], [3.0, 3.5, 4.0]]
    """
    op = "interpolate"
    x = _input(op, x)
    d = x.ndim - 2
    out, scales, mode, ac = _resolve(op, x.shape[2:], size, scale_factor, mode, align_corners,
                                     recompute_scale_factor)
    y = np.empty(x.shape[:2] + out, dtype=x.dtype)
    if y.size == 0:
        return y
    tabs = _tables(x.shape[2:], out, scales, mode, ac, x.dtype)
    xp, yp = _planes(x, d), _planes(y, d)
    serial = max(x.size, y.size) < _config.SERIAL_BELOW
    if mode in _LINEAR:
        kernel = _ki._linear_fwd_serial if serial else _ki._linear_fwd
        w0, w1, lw0, lw1 = tabs[-1]
        if d == 2:
            h0, h1, lh0, lh1 = tabs[0]
        else:
            h0 = h1 = np.empty(0, np.int64)
            lh0 = lh1 = np.empty(0, x.dtype)
        kernel(xp, yp, h0, h1, lh0, lh1, w0, w1, lw0, lw1)
    else:
        kernel = _ki._nearest_fwd_serial if serial else _ki._nearest_fwd
        ih = tabs[0][0] if d == 2 else np.zeros(1, np.int64)
        kernel(xp, yp, ih, tabs[-1][0])
    return y


@_dispatch.dispatch
def interpolate_backward(dy, input_shape, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None):
    """Gradient of :func:`interpolate` with respect to its input.

    Each input element receives the sum of ``dy`` over the output positions that read it,
    times the weights they read it with.  The pass is two race-free gathers (along W, then H).

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW) or (N, C, OL)
        Upstream gradient, the shape of the forward output.
    input_shape : tuple of int
        ``(N, C, H, W)`` or ``(N, C, L)``, the shape of the forward input.
    size, scale_factor, mode, align_corners, recompute_scale_factor
        As given to :func:`interpolate`.

    Returns
    -------
    dx : ndarray, shape ``input_shape``, dtype of ``dy``

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dy = np.ones((1, 1, 4, 4))
    >>> nc.interpolate_backward(dy, (1, 1, 2, 2), scale_factor=2)[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    op = "interpolate_backward"
    dy = as_float_array(op, "dy", dy)
    if dy.ndim not in (3, 4):
        raise ValueError(f"{op}: argument 'dy' must be 3-D (N, C, OL) or 4-D (N, C, OH, OW), "
                         f"got shape {tuple(dy.shape)}")
    shape = _backward_shape(op, input_shape, dy.ndim)
    d = dy.ndim - 2
    out, scales, mode, ac = _resolve(op, shape[2:], size, scale_factor, mode, align_corners,
                                     recompute_scale_factor)
    if tuple(dy.shape) != shape[:2] + out:
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)} but interpolating "
                         f"input_shape {shape} gives {shape[:2] + out}")
    dx = np.empty(shape, dtype=dy.dtype)
    if dx.size == 0:
        return dx
    tabs = _tables(shape[2:], out, scales, mode, ac, dy.dtype)
    linear = mode in _LINEAR
    dyp, dxp = _planes(dy, d), _planes(dx, d)
    P, OH, H, W = dxp.shape[0], dyp.shape[1], dxp.shape[1], dxp.shape[2]
    ptr_w, src_w, wt_w = _csr(tabs[-1], W, linear)
    if d == 2:
        ptr_h, src_h, wt_h = _csr(tabs[0], H, linear)
    else:
        ptr_h, src_h, wt_h = np.array([0, 1]), np.zeros(1, np.int64), np.ones(1, dy.dtype)
    t = np.empty((P, OH, W), dtype=dy.dtype)
    serial = max(dy.size, dx.size) < _config.SERIAL_BELOW
    (_ki._gather_w_serial if serial else _ki._gather_w)(dyp, t, ptr_w, src_w, wt_w)
    (_ki._gather_h_serial if serial else _ki._gather_h)(t, dxp, ptr_h, src_h, wt_h)
    return dx


def _backward_shape(op, input_shape, ndim):
    shape = shape_tuple(op, input_shape, (ndim,)) if ndim == 4 else _shape3(op, input_shape)
    return shape


def _shape3(op, input_shape):
    """A 3-D ``input_shape`` (N, C, L) with L >= 1."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{op}: argument 'input_shape' must be a tuple of ints, "
                        f"got {input_shape!r}") from None
    if not all(isinstance(v, (numbers.Integral, np.integer))
               and not isinstance(v, (bool, np.bool_)) for v in shape):
        raise TypeError(f"{op}: argument 'input_shape' must be a tuple of ints, got {shape!r}")
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3:
        raise ValueError(f"{op}: argument 'input_shape' must have 3 entries (N, C, L) like dy, "
                         f"got {shape}")
    if min(shape) < 0 or shape[2] < 1:
        raise ValueError(f"{op}: argument 'input_shape' must have non-negative sizes and "
                         f"L >= 1, got {shape}")
    return shape

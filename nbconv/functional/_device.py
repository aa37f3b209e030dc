"""CUDA device implementations of the public ops, and the dispatch that selects them.

Every public op in :mod:`nbconv.functional` is wrapped by :func:`dispatch`: when any of its
arguments is a CUDA device array (an object with ``__cuda_array_interface__`` that is not a
NumPy array, or a numba simulator array), the call goes to the function of the same name here,
with the same arguments.  The device version validates exactly like the host op (it reuses the
host modules' pure-Python helpers and raises the same ValueError/TypeError messages), allocates
its outputs with ``cuda.device_array`` in the input's dtype and launches the ``@cuda.jit`` twins
in :mod:`nbconv.kernels.cuda`.  Results are device arrays; no data goes through the host.

Host arrays mixed with device arrays raise TypeError (move them with
:func:`nbconv.cuda.to_device`).  Device inputs follow the host dtype policy (float32/float64
kept, integer/bool cast to float32 on the device, float16/complex rejected) and may be
non-contiguous (copied to a contiguous array on the device first).

Differences from the host ops, all documented in :mod:`nbconv.cuda`:

* ``conv2d``/``conv1d``: ``algorithm="direct"`` runs the direct CUDA kernels, ``"im2col"`` and
  ``"winograd"`` the implicit-GEMM kernels, ``"auto"`` picks between those two (:func:`_tiled`).
* ``dropout``: the keep/drop decisions are drawn on the host with the same NumPy ``Generator``
  as the CPU op (so a seed gives the same mask on both) and the mask is copied to the device.
* ``max_pool2d_backward``: out-of-range ``indices`` are ignored instead of raising (checking
  them would need a device reduction and a synchronisation).
* ``correlate2d``/``convolve2d``: float32/float64 only on the device.

The end of the module holds the device halves of the layers', containers', losses' and
optimizers' array arithmetic (``grad += dw``, sums at fan-in, concatenation, loss values);
:mod:`nbconv.nn._arrays` calls them for device arrays and keeps the NumPy code for host ones.

Nothing here imports numba's CUDA target until a device array actually arrives, so the host
path never needs it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._shapes import check_bool, check_int, check_ndim, check_real

__all__ = ["dispatch", "is_device_array"]

_ndarray = np.ndarray


def is_device_array(a) -> bool:
    """True for CUDA device arrays (``__cuda_array_interface__``) and numba simulator arrays."""
    t = type(a)
    if t is _ndarray:
        return False
    return hasattr(a, "__cuda_array_interface__") or t.__name__ == "FakeCUDAArray"


#: argument types that are never device arrays (checked first: a set lookup per argument).
_HOST_TYPES = frozenset(
    {_ndarray, int, float, bool, str, tuple, list, dict, type(None), np.float32, np.float64}
)


def dispatch(fn):
    """Route ``fn(...)`` to the device implementation of the same name when any argument is a
    device array; otherwise call ``fn`` (a few attribute checks of overhead on the host)."""
    name = fn.__name__

    host = _HOST_TYPES

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            if type(a) not in host and is_device_array(a):
                return _IMPL[name](*args, **kwargs)
        if kwargs:
            for a in kwargs.values():
                if type(a) not in host and is_device_array(a):
                    return _IMPL[name](*args, **kwargs)
        return fn(*args, **kwargs)

    wrapper.__wrapped_host__ = fn
    return wrapper


_IMPL: dict = {}


def _impl(fn):
    _IMPL[fn.__name__] = fn
    return fn


# --------------------------------------------------------------------------- device plumbing


def _cuda():
    from .._cuda_target import cuda

    return cuda


def _kernels(name):
    import importlib

    return importlib.import_module(f"nbconv.kernels.cuda.{name}")


def _grid(n):
    from ..kernels.cuda import grid

    return grid(n)


def _block():
    from ..kernels.cuda import block

    return block()


def _empty(shape, dtype):
    return _cuda().device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def _fill(a, v):
    """``a[...] = v`` on the device (``a`` C-contiguous)."""
    if a.size:
        _kernels("_copy")._fill[_grid(min(a.size, 1 << 20))](a.reshape(a.size), a.dtype.type(v))
    return a


def _zeros(shape, dtype):
    return _fill(_empty(shape, dtype), 0)


def _is_c_contiguous(a) -> bool:
    f = getattr(a, "is_c_contiguous", None)
    return bool(f()) if f is not None else bool(a.flags["C_CONTIGUOUS"])


def _copy(a, dtype):
    """C-contiguous device copy of device array ``a`` cast to ``dtype``."""
    out = _empty(a.shape, dtype)
    if a.size == 0:
        return out
    if a.ndim == 0:
        src, dst = a.reshape(1), out.reshape(1)
    else:
        src, dst = a, out
    kern = _kernels("_copy").COPY.get(src.ndim)
    if kern is None:
        raise TypeError(
            f"nbconv: non-contiguous or cast device arrays with {a.ndim} > 5 dimensions are not "
            "supported; pass a C-contiguous float32/float64 array"
        )
    kern[_grid(a.size)](src, dst)
    return out


def _as_numba(op, name, a):
    """``a`` as a numba device array (zero-copy view of a foreign CUDA array)."""
    if not is_device_array(a):
        what = "a host array" if isinstance(a, np.ndarray) else f"a {type(a).__name__}"
        raise TypeError(
            f"{op}: argument '{name}' is {what} but other inputs are CUDA device arrays; "
            "move it with nbconv.cuda.to_device (a model: nbconv.cuda.to_device(model)), or "
            "everything with nbconv.cuda.to_host"
        )
    if hasattr(a, "_numba_type_") or type(a).__name__ == "FakeCUDAArray":
        return a
    return _cuda().as_cuda_array(a)


def _dev(op, name, a, dtype=None):
    """The device counterpart of ``nbconv._shapes.as_float_array``."""
    a = _as_numba(op, name, a)
    dt = np.dtype(a.dtype)
    kind = dt.kind
    if kind == "c":
        raise TypeError(f"{op}: argument '{name}' is complex ({dt}); nbconv ops are real")
    if kind == "f" and dt.itemsize < 4:
        raise TypeError(
            f"{op}: argument '{name}' has dtype {dt}; use float32 or float64 "
            "(float16 is not supported)"
        )
    if kind not in "fiub":
        raise TypeError(f"{op}: argument '{name}' has unsupported dtype {dt}")
    if dtype is None:
        dtype = dt if kind == "f" and dt.itemsize in (4, 8) else np.dtype(np.float32)
        if kind == "f" and dt.itemsize > 8:
            raise TypeError(f"{op}: argument '{name}' has dtype {dt}; use float32/float64")
    dtype = np.dtype(dtype)
    if dt == dtype and _is_c_contiguous(a):
        return a
    return _copy(a, dtype)


def _astype(a, dtype):
    dtype = np.dtype(dtype)
    return a if np.dtype(a.dtype) == dtype else _copy(a, dtype)


def _to_dev(host):
    return _cuda().to_device(np.ascontiguousarray(host))


class _Meta:
    """Shape/ndim/dtype of a device array as plain Python values, for the host helpers (the
    simulator's shapes refuse negative indices)."""

    __slots__ = ("shape", "ndim", "dtype")

    def __init__(self, a):
        self.shape = tuple(a.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(a.dtype)


def _zero(dtype):
    return np.dtype(dtype).type(0)


# --------------------------------------------------------------------------- convolution


def _pad_maps(x_hw, g):
    from .conv import _NP_PAD_MODE

    mode = _NP_PAD_MODE[g.mode]
    H, W = x_hw
    src_h = np.pad(np.arange(H, dtype=np.int64), (g.pt, g.pb), mode=mode)
    src_w = np.pad(np.arange(W, dtype=np.int64), (g.pl, g.pr), mode=mode)
    return _to_dev(src_h), _to_dev(src_w)


def _pad_input(x, g):
    if g.mode == "zeros":
        return x, g.pt, g.pl, None
    N, C, H, W = x.shape
    maps = _pad_maps((H, W), g)
    xp = _empty((N, C, H + g.pt + g.pb, W + g.pl + g.pr), x.dtype)
    _kernels("conv2d_direct")._pad_gather[_grid(xp.size)](x, maps[0], maps[1], xp)
    return xp, 0, 0, maps


def _tiled(algorithm, w, g):
    """True where the device convolution runs the implicit-GEMM (tiled) kernels of
    :mod:`nbconv.kernels.cuda.conv2d_im2col` rather than the direct ones.

    ``"direct"`` runs the direct kernels, ``"im2col"`` and ``"winograd"`` (no Winograd
    kernels on the device) the tiled ones.  The ``"auto"`` rule (from the kernels' shapes, not
    yet from GPU timings): tiled when every group's GEMM is big enough to fill a tile, i.e.
    at least 8 filters and 8 input channels per group (the rows of the forward and weight-
    gradient products, the data gradient's rows and its per-tap reduction) and a reduction
    ``(C/groups)*kh*kw`` of at least 32 terms.  Depthwise and narrow grouped layers and the
    first layers of a network (1-3 input channels, LeNet's 6 -> 16) stay on the direct kernels,
    whose thread-per-output loops waste nothing on such shapes while a 64x64 tile would sit
    mostly empty.
    """
    if algorithm == "direct" or g.groups > 65535:  # the grid's z axis holds the groups
        return False
    if algorithm != "auto":
        return True
    F, Cg, kh, kw = w.shape
    return min(F // g.groups, Cg) >= 8 and Cg * kh * kw >= 32


def _conv_fwd(x, w, bias, g, algorithm="auto"):
    xp, pt, pl, _ = _pad_input(x, g)
    y = _empty((x.shape[0], w.shape[0], g.OH, g.OW), x.dtype)
    b = bias if bias is not None else _zeros((w.shape[0],), x.dtype)
    if not y.size:
        return y
    if _tiled(algorithm, w, g):
        F, Cg, kh, kw = w.shape
        wt = _empty((kh, kw, Cg, F), x.dtype)  # the weights tap-major, for coalesced loads
        _kernels("conv2d_im2col")._conv2d_im2col_fwd(xp, w, wt, b, y, g.sy, g.sx, pt, pl,
                                                     g.dh, g.dw, g.groups)
    else:
        _kernels("conv2d_direct")._conv2d_direct_fwd[_grid(y.size)](
            xp, w, b, y, g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    return y


def _conv_bwd(dy, x, w, g, want_bias, need_dx, algorithm="auto"):
    k = _kernels("conv2d_direct")
    tiled = _tiled(algorithm, w, g)
    kt = _kernels("conv2d_im2col") if tiled else None
    xp, pt, pl, maps = _pad_input(x, g)
    dt = x.dtype
    dx = None
    if need_dx:
        dxp = _empty(xp.shape, dt)
        if dxp.size and tiled:
            F, Cg, kh, kw = w.shape
            wt = _empty((kh, kw, F, Cg), dt)
            kt._conv2d_im2col_bwd_data(dy, w, wt, dxp, g.sy, g.sx, pt, pl, g.dh, g.dw,
                                       g.groups)
        elif dxp.size:
            k._conv2d_direct_bwd_data[_grid(dxp.size)](dy, w, dxp, g.sy, g.sx, pt, pl, g.dh,
                                                       g.dw, g.groups, _zero(dt))
        dx = dxp
        if maps is not None:
            dx = _empty(x.shape, dt)
            k._pad_fold[_grid(dx.size)](dxp, maps[0], maps[1], dx, _zero(dt))
    gw = _empty(w.shape, dt)
    F = w.shape[0]
    gb = _empty((F,), dt) if want_bias else _empty((1,), dt)
    if tiled:
        # split-K partials (S, F, P), the bias gradient as column P - 1 (see the kernels)
        K = dy.shape[0] * g.OH * g.OW
        P = gw.size // F + int(want_bias)
        part = _empty((kt.wgrad_splits(K, F, P, g.groups), F, P), dt)
        kt._conv2d_im2col_bwd_weight(dy, xp, part, gw, gb, g.sy, g.sx, pt, pl, g.dh, g.dw,
                                     g.groups)
        return dx, gw, (gb if want_bias else None)
    nblocks = gw.size + (F if want_bias else 0)
    if nblocks:
        k._conv2d_direct_bwd_weight[nblocks, _block()](dy, xp, gw, gb, int(want_bias), g.sy,
                                                        g.sx, pt, pl, g.dh, g.dw, g.groups)
    return dx, gw, (gb if want_bias else None)


def _check_algorithm(op, algorithm, w, g):
    """The host's checks of ``algorithm`` (a known name; Winograd's geometry).  Which kernels
    run on the GPU is :func:`_tiled`'s choice."""
    from .conv import _choose_algorithm

    _choose_algorithm(op, algorithm, w.shape[1] * g.groups, w.shape[2], w.shape[3], g,
                      w.shape[0])


def _conv_bias(op, bias, dtype, F, desc):
    if bias is None:
        return None
    bias = _dev(op, "bias", bias, dtype)
    if tuple(bias.shape) != (F,):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({F},) (one value per output channel), got "
            f"shape {tuple(bias.shape)} ({desc})"
        )
    return bias


@_impl
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", algorithm="auto"):
    from . import conv as c

    op = "conv2d"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 4, c._X_LAYOUT)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 4, c._W_LAYOUT)
    desc = f"x shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    g = c._geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                    desc)
    bias = _conv_bias(op, bias, x.dtype, weight.shape[0], desc)
    _check_algorithm(op, algorithm, weight, g)
    return _conv_fwd(x, weight, bias, g, algorithm)


@_impl
def conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    from . import conv as c

    op = "conv2d_backward"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 4, c._X_LAYOUT)
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 4, c._W_LAYOUT)
    dy = _dev(op, "dy", dy, x.dtype)
    check_ndim(op, "dy", dy, 4, "(N, F, OH, OW)")
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x.shape)}, "
            f"weight shape {tuple(weight.shape)}")
    g = c._geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                    desc)
    c._check_dy(op, dy, (x.shape[0], weight.shape[0], g.OH, g.OW), desc)
    _check_algorithm(op, algorithm, weight, g)
    want_bias = c._want_bias(bias) if not is_device_array(bias) else True
    return _conv_bwd(dy, x, weight, g, want_bias, bool(need_dx), algorithm)


def _as4(a):
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2])


def _as3(a):
    return a.reshape(a.shape[0], a.shape[1], a.shape[3])


@_impl
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    from . import conv as c

    op = "conv1d"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 3, "(N, C, L)")
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    desc = f"x shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    s2, p2, d2 = c._conv1d_args(op, stride, padding, dilation)
    x4, w4 = _as4(x), _as4(weight)
    g = c._geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                    axes=("(height 1)", "L"))
    bias = _conv_bias(op, bias, x.dtype, weight.shape[0], desc)
    _check_algorithm(op, algorithm, w4, g)
    return _as3(_conv_fwd(x4, w4, bias, g, algorithm))


@_impl
def conv1d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    from . import conv as c

    op = "conv1d_backward"
    x = _dev(op, "x", x)
    check_ndim(op, "x", x, 3, "(N, C, L)")
    weight = _dev(op, "weight", weight, x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    dy = _dev(op, "dy", dy, x.dtype)
    check_ndim(op, "dy", dy, 3, "(N, F, OL)")
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x.shape)}, "
            f"weight shape {tuple(weight.shape)}")
    s2, p2, d2 = c._conv1d_args(op, stride, padding, dilation)
    x4, w4 = _as4(x), _as4(weight)
    g = c._geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                    axes=("(height 1)", "L"))
    c._check_dy(op, dy, (x.shape[0], weight.shape[0], g.OW), desc)
    _check_algorithm(op, algorithm, w4, g)
    want_bias = c._want_bias(bias) if not is_device_array(bias) else True
    dx, gw, gb = _conv_bwd(_as4(dy), x4, w4, g, want_bias, bool(need_dx), algorithm)
    return (None if dx is None else _as3(dx)), _as3(gw), gb


# --------------------------------------------------------------------------- pooling


def _pool_input(op, x):
    x = _dev(op, "x", x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'x' must be 4-D (N, C, H, W) or 3-D (C, H, W), "
            f"got shape {tuple(x.shape)}"
        )
    if 0 in x.shape[-2:]:
        raise ValueError(f"{op}: argument 'x' has an empty spatial size, shape {tuple(x.shape)}")
    return x


def _pool_grad(op, dy):
    dy = _dev(op, "dy", dy)
    if dy.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'dy' must be 4-D (N, C, OH, OW) or 3-D (C, OH, OW), "
            f"got shape {tuple(dy.shape)}"
        )
    return dy


def _planes(a):
    s = tuple(a.shape)
    return a.reshape(math.prod(s[:-2]), s[-2], s[-1])


@_impl
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    from .pool import _window_args

    op = "max_pool2d"
    x = _pool_input(op, x)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), (dh, dw) = _window_args(
        op, x.shape, kernel_size, stride, padding, dilation, ceil_mode
    )
    shape = tuple(x.shape[:-2]) + (oh, ow)
    y = _empty(shape, x.dtype)
    idx = _empty(shape, np.int64)
    if y.size:
        _kernels("pool2d")._max_pool2d_fwd[_grid(y.size)](
            _planes(x), _planes(y), _planes(idx), kh, kw, sy, sx, ph, pw, dh, dw
        )
    return (y, idx) if check_bool(op, "return_indices", return_indices) else y


@_impl
def max_pool2d_backward(dy, indices, input_shape):
    from .pool import _input_shape

    op = "max_pool2d_backward"
    dy = _pool_grad(op, dy)
    ind = _as_numba(op, "indices", indices)
    if np.dtype(ind.dtype).kind not in "iu":
        raise TypeError(
            f"{op}: argument 'indices' must be an integer array (int64 from max_pool2d), "
            f"got dtype {ind.dtype}"
        )
    if tuple(ind.shape) != tuple(dy.shape):
        raise ValueError(
            f"{op}: argument 'indices' shape {tuple(ind.shape)} does not match "
            f"dy shape {tuple(dy.shape)}"
        )
    shape = _input_shape(op, input_shape, dy)
    if np.dtype(ind.dtype) != np.int64 or not _is_c_contiguous(ind):
        ind = _copy(ind, np.int64)
    W = shape[-1]
    hw = shape[-2] * W
    p = math.prod(shape[:-2])
    k = math.prod(tuple(dy.shape)[-2:])
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._max_pool2d_bwd[_grid(p * shape[-2])](
            dy.reshape(p, k), ind.reshape(p, k), dx.reshape(p, hw), W, _zero(dy.dtype)
        )
    return dx


@_impl
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    from .pool import _divisor, _window_args

    op = "avg_pool2d"
    x = _pool_input(op, x)
    div = _divisor(op, divisor_override)
    (oh, ow), (kh, kw), (sy, sx), (ph, pw), _ = _window_args(
        op, x.shape, kernel_size, stride, padding, 1, ceil_mode
    )
    y = _empty(tuple(x.shape[:-2]) + (oh, ow), x.dtype)
    if y.size:
        _kernels("pool2d")._avg_pool2d_fwd[_grid(y.size)](
            _planes(x), _planes(y), kh, kw, sy, sx, ph, pw,
            int(check_bool(op, "count_include_pad", count_include_pad)), div
        )
    return y


@_impl
def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    from .pool import _avg_backward_args

    op = "avg_pool2d_backward"
    dy = _pool_grad(op, dy)
    shape, div, (kh, kw), (sy, sx), (ph, pw) = _avg_backward_args(
        op, dy, input_shape, kernel_size, stride, padding, ceil_mode, divisor_override)
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._avg_pool2d_bwd[_grid(dx.size)](
            _planes(dy), _planes(dx), kh, kw, sy, sx, ph, pw,
            int(check_bool(op, "count_include_pad", count_include_pad)), div,
            _zero(dy.dtype)
        )
    return dx


def _adaptive_fwd(x, oh, ow):
    y = _empty(tuple(x.shape[:-2]) + (oh, ow), x.dtype)
    if y.size:
        _kernels("pool2d")._adaptive_avg_pool2d_fwd[_grid(y.size)](_planes(x), _planes(y))
    return y


def _adaptive_bwd(dy, shape):
    dx = _empty(shape, dy.dtype)
    if dx.size:
        _kernels("pool2d")._adaptive_avg_pool2d_bwd[_grid(dx.size)](
            _planes(dy), _planes(dx), _zero(dy.dtype)
        )
    return dx


@_impl
def adaptive_avg_pool2d(x, output_size):
    from .pool import _adaptive_size

    op = "adaptive_avg_pool2d"
    x = _pool_input(op, x)
    oh, ow = _adaptive_size(op, output_size, x.shape[-2:])
    return _adaptive_fwd(x, oh, ow)


@_impl
def adaptive_avg_pool2d_backward(dy, input_shape):
    from .pool import _input_shape

    op = "adaptive_avg_pool2d_backward"
    dy = _pool_grad(op, dy)
    shape = _input_shape(op, input_shape, dy)
    if 0 in dy.shape[-2:]:
        raise ValueError(f"{op}: argument 'dy' has an empty spatial size {tuple(dy.shape)}")
    return _adaptive_bwd(dy, shape)


@_impl
def global_avg_pool2d(x, keepdims=True):
    op = "global_avg_pool2d"
    x = _pool_input(op, x)
    y = _adaptive_fwd(x, 1, 1)
    return y if check_bool(op, "keepdims", keepdims) else y.reshape(*x.shape[:-2])


@_impl
def global_avg_pool2d_backward(dy, input_shape):
    from .pool import _shape_tuple

    op = "global_avg_pool2d_backward"
    dy = _dev(op, "dy", dy)
    shape = _shape_tuple(op, input_shape, (3, 4))
    lead = shape[:-2]
    if tuple(dy.shape) not in (lead, lead + (1, 1)):
        raise ValueError(
            f"{op}: argument 'dy' must have shape {lead + (1, 1)} or {lead} for "
            f"input_shape {shape}, got {tuple(dy.shape)}"
        )
    return _adaptive_bwd(dy.reshape(*(lead + (1, 1))), shape)


# --------------------------------------------------------------------------- activations


def _unary(name, op, x, *args):
    x = _dev(op, "x", x)
    y = _empty(x.shape, x.dtype)
    if x.size:
        getattr(_kernels("activations"), name)[_grid(x.size)](
            x.reshape(x.size), y.reshape(y.size), *args
        )
    return y


def _pair_same_shape(op, dy, other, other_name):
    other = _dev(op, other_name, other)
    dy = _dev(op, "dy", dy, other.dtype)
    if tuple(dy.shape) != tuple(other.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but '{other_name}' has shape "
            f"{tuple(other.shape)}; they must be equal"
        )
    return dy, other


def _binary(name, op, dy, other, other_name, *args):
    dy, other = _pair_same_shape(op, dy, other, other_name)
    dx = _empty(other.shape, other.dtype)
    if dx.size:
        n = dx.size
        getattr(_kernels("activations"), name)[_grid(n)](
            dy.reshape(n), other.reshape(n), dx.reshape(n), *args
        )
    return dx


@_impl
def relu(x):
    return _unary("_relu_fwd", "relu", x)


@_impl
def relu_backward(dy, x):
    return _binary("_relu_bwd", "relu_backward", dy, x, "x")


@_impl
def leaky_relu(x, negative_slope=0.01):
    from .activation import _slope

    op = "leaky_relu"
    return _unary("_leaky_relu_fwd", op, x, _slope(op, negative_slope))


@_impl
def leaky_relu_backward(dy, x, negative_slope=0.01):
    from .activation import _slope

    op = "leaky_relu_backward"
    return _binary("_leaky_relu_bwd", op, dy, x, "x", _slope(op, negative_slope))


@_impl
def sigmoid(x):
    return _unary("_sigmoid_fwd", "sigmoid", x)


@_impl
def sigmoid_backward(dy, y):
    return _binary("_sigmoid_bwd", "sigmoid_backward", dy, y, "y")


@_impl
def tanh(x):
    return _unary("_tanh_fwd", "tanh", x)


@_impl
def tanh_backward(dy, y):
    return _binary("_tanh_bwd", "tanh_backward", dy, y, "y")


def _as3d(a, axis):
    shape = tuple(a.shape)
    return a.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


def _softmax_fwd(op, x, axis, log):
    from .activation import _axis

    x = _dev(op, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{op}: argument 'x' must be at least 1-D, got shape ()")
    axis = _axis(op, axis, x.ndim, x.shape)
    y = _empty(x.shape, x.dtype)
    if x.size:
        x3, y3 = _as3d(x, axis), _as3d(y, axis)
        _kernels("activations")._softmax_fwd[_grid(x3.shape[0] * x3.shape[2])](x3, y3, log)
    return y


def _softmax_bwd(op, dy, y, axis, log):
    from .activation import _axis

    dy, y = _pair_same_shape(op, dy, y, "y")
    if y.ndim == 0:
        raise ValueError(f"{op}: argument 'y' must be at least 1-D, got shape ()")
    axis = _axis(op, axis, y.ndim, y.shape)
    dx = _empty(y.shape, y.dtype)
    if y.size:
        y3 = _as3d(y, axis)
        _kernels("activations")._softmax_bwd[_grid(y3.shape[0] * y3.shape[2])](
            _as3d(dy, axis), y3, _as3d(dx, axis), log
        )
    return dx


@_impl
def softmax(x, axis=-1):
    return _softmax_fwd("softmax", x, axis, 0)


@_impl
def softmax_backward(dy, y, axis=-1):
    return _softmax_bwd("softmax_backward", dy, y, axis, 0)


@_impl
def log_softmax(x, axis=-1):
    return _softmax_fwd("log_softmax", x, axis, 1)


@_impl
def log_softmax_backward(dy, y, axis=-1):
    return _softmax_bwd("log_softmax_backward", dy, y, axis, 1)


def _copy_same(x):
    return _copy(x, x.dtype)


@_impl
def dropout(x, p=0.5, training=True, rng=None, return_mask=False):
    from .activation import _generator

    op = "dropout"
    x = _dev(op, "x", x)
    p = check_real(op, "p", p, 0.0, 1.0)
    training = check_bool(op, "training", training)
    return_mask = check_bool(op, "return_mask", return_mask)
    dt = np.dtype(x.dtype)
    if not training or p == 0.0:
        y = _copy_same(x)
        mask = _fill(_empty(x.shape, dt), 1) if return_mask else None
    elif p == 1.0:
        _generator(op, rng)
        mask = _zeros(x.shape, dt)
        y = _empty(x.shape, dt)
        if x.size:  # x * 0, not zeros: NaN and inf give NaN (as the host version)
            n = x.size
            _kernels("activations")._mul_fwd[_grid(n)](x.reshape(n), mask.reshape(n),
                                                       y.reshape(n))
        mask = mask if return_mask else None
    else:
        gen = _generator(op, rng)
        keep = gen.random(tuple(x.shape)) >= p
        host_mask = keep.astype(dt)
        host_mask *= dt.type(1.0 / (1.0 - p))
        mask = _to_dev(host_mask)
        y = _empty(x.shape, dt)
        if x.size:
            n = x.size
            _kernels("activations")._mul_fwd[_grid(n)](x.reshape(n), mask.reshape(n),
                                                       y.reshape(n))
    return (y, mask) if return_mask else y


@_impl
def dropout_backward(dy, mask):
    return _binary("_mul_fwd", "dropout_backward", dy, mask, "mask")


# --------------------------------------------------------------------------- linear


def _matmul(a, b, c, ta, tb):
    _kernels("linear")._matmul(a, b, c, ta, tb)


@_impl
def linear(x, weight, bias=None):
    from .linear import _check_x_weight

    op = "linear"
    x = _dev(op, "x", x)
    weight = _dev(op, "weight", weight, x.dtype)
    _check_x_weight(op, _Meta(x), _Meta(weight))
    out_f, in_f = weight.shape
    if bias is not None:
        bias = _dev(op, "bias", bias, x.dtype)
        if tuple(bias.shape) != (out_f,):
            raise ValueError(
                f"{op}: argument 'bias' must have shape ({out_f},) = (out_features,), got "
                f"{tuple(bias.shape)} (weight shape {tuple(weight.shape)})"
            )
    M = math.prod(x.shape[:-1])
    x2 = x.reshape(M, in_f)
    y2 = _empty((M, out_f), x.dtype)
    _matmul(x2, weight, y2, False, True)
    if bias is not None and y2.size:
        _kernels("linear")._linear_bias_fwd(y2, bias)
    return y2.reshape(*(tuple(x.shape[:-1]) + (out_f,)))


@_impl
def linear_backward(dy, x, weight, bias=True):
    from .linear import _check_backward

    op = "linear_backward"
    x = _dev(op, "x", x)
    weight = _dev(op, "weight", weight, x.dtype)
    dy = _dev(op, "dy", dy, x.dtype)
    want_bias = _check_backward(op, dy, _Meta(x), _Meta(weight), bias)
    out_f, in_f = weight.shape
    M = math.prod(x.shape[:-1])
    x2 = x.reshape(M, in_f)
    dy2 = dy.reshape(M, out_f)
    dx2 = _empty((M, in_f), x.dtype)
    dweight = _empty((out_f, in_f), x.dtype)
    _matmul(dy2, weight, dx2, False, False)
    _matmul(dy2, x2, dweight, True, False)
    dbias = None
    if want_bias:
        dbias = _zeros((out_f,), x.dtype)
        if M and out_f:
            _kernels("linear")._linear_bias_bwd(dy2, dbias)
    return dx2.reshape(*tuple(x.shape)), dweight, dbias


# --------------------------------------------------------------------------- normalisation


def _bn_x(op, name, x, dtype=None):
    from .norm import _check_bn_x

    return _check_bn_x(op, name, _dev(op, name, x, dtype))


def _channel_vec(op, name, v, x):
    from .norm import _check_channel_vec

    return _check_channel_vec(op, name, _dev(op, name, v, x.dtype), x.shape[1], x.shape)


def _running_buffer(op, name, v, C, x_shape):
    """The device twin of ``norm._running_buffer``: a contiguous device array instead of a
    writeable ndarray; the dtype and shape checks are shared."""
    from .norm import _check_running

    if not is_device_array(v):
        raise TypeError(
            f"{op}: argument '{name}' must be a CUDA device array like 'x' (it is updated in "
            f"place when training), got {type(v).__name__}"
        )
    v = _check_running(op, name, _as_numba(op, name, v), C, x_shape)
    if not _is_c_contiguous(v):
        raise ValueError(f"{op}: argument '{name}' must be contiguous (it is updated in place)")
    return v


def _bn3(a):
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


@_impl
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, return_stats=False):
    from .norm import _bn_hyper

    op = "batch_norm"
    x = _bn_x(op, "x", x)
    N, C = x.shape[:2]
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x)
    if bias is not None:
        bias = _channel_vec(op, "bias", bias, x)
    momentum, eps, training = _bn_hyper(op, momentum, eps, training)
    x3 = _bn3(x)
    cnt = N * x3.shape[2]
    k = _kernels("norm")
    mean = _empty((C,), np.float64)
    var = _empty((C,), np.float64)
    flags = 0
    if training:
        if running_mean is not None:
            running_mean = _running_buffer(op, "running_mean", running_mean, C, x.shape)
            flags |= 1
        if running_var is not None:
            running_var = _running_buffer(op, "running_var", running_var, C, x.shape)
            flags |= 2
        if cnt <= 1:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got argument 'x' "
                f"of shape {tuple(x.shape)}"
            )
        if C:
            k._batch_norm_stats[C, _block()](x3, mean, var)
    else:
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if v is None:
                raise ValueError(
                    f"{op}: argument '{name}' is None but training=False needs the running "
                    "statistics"
                )
        running_mean = _channel_vec(op, "running_mean", running_mean, x)
        running_var = _channel_vec(op, "running_var", running_var, x)
        flags |= 16
    dummy = _empty((1,), x.dtype)
    if weight is not None:
        flags |= 4
    if bias is not None:
        flags |= 8
    invstd = _empty((C,), np.float64)
    scale = _empty((C,), np.float64)
    shift = _empty((C,), np.float64)
    if C:
        k._batch_norm_vectors[_grid(C)](
            mean, var,
            running_mean if running_mean is not None else dummy,
            running_var if running_var is not None else dummy,
            weight if weight is not None else dummy,
            bias if bias is not None else dummy,
            flags, momentum, eps, float(cnt), invstd, scale, shift,
        )
    y = _empty(x.shape, x.dtype)
    if y.size:
        k._batch_norm_fwd[_grid(y.size)](x3, mean, scale, shift, _bn3(y))
    if return_stats:
        return y, _astype(mean, x.dtype), _astype(invstd, x.dtype)
    return y


@_impl
def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True):
    op = "batch_norm_backward"
    training = check_bool(op, "training", training)
    x = _bn_x(op, "x", x)
    dy = _bn_x(op, "dy", dy, x.dtype)
    if tuple(x.shape) != tuple(dy.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    C = x.shape[1]
    mean = _channel_vec(op, "mean", mean, x)
    invstd = _channel_vec(op, "invstd", invstd, x)
    if weight is not None:
        weight = _channel_vec(op, "weight", weight, x)
    x3 = _bn3(x)
    dy3 = _bn3(dy)
    cnt = x3.shape[0] * x3.shape[2]
    k = _kernels("norm")
    sum_dy = _zeros((C,), np.float64)
    sum_dy_xhat = _zeros((C,), np.float64)
    if cnt and C and (training or weight is not None):
        k._batch_norm_bwd_reduce[C, _block()](dy3, x3, mean, invstd, sum_dy, sum_dy_xhat)
    dx = _empty(dy.shape, x.dtype)
    if dx.size:
        k._batch_norm_bwd_data[_grid(dx.size)](
            dy3, x3, mean, invstd, weight if weight is not None else invstd,
            int(weight is not None), sum_dy, sum_dy_xhat, float(cnt), int(bool(training)),
            _bn3(dx),
        )
    if weight is None:
        return dx, None, None
    return dx, _astype(sum_dy_xhat, x.dtype), _astype(sum_dy, x.dtype)


def _lrn_args(op, x, size, alpha, beta, k):
    x = _dev(op, "x", x)
    if x.ndim < 3:
        raise ValueError(
            f"{op}: argument 'x' must be at least 3-D (N, C, L) or (N, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    size = check_int(op, "size", size, 1)
    return (x, size, check_real(op, "alpha", alpha), check_real(op, "beta", beta),
            check_real(op, "k", k))


@_impl
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    y = _empty(x.shape, x.dtype)
    if x.size:
        _kernels("norm")._local_response_norm_fwd[_grid(x.size)](_bn3(x), _bn3(y), size, alpha,
                                                                 beta, k)
    return y


@_impl
def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    op = "local_response_norm_backward"
    x, size, alpha, beta, k = _lrn_args(op, x, size, alpha, beta, k)
    dy = _dev(op, "dy", dy, x.dtype)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but 'x' has shape "
            f"{tuple(x.shape)}; they must be equal"
        )
    dx = _empty(x.shape, x.dtype)
    if dx.size:
        _kernels("norm")._local_response_norm_bwd[_grid(x.size)](_bn3(dy), _bn3(x), _bn3(dx),
                                                                 size, alpha, beta, k)
    return dx


# --------------------------------------------------------------------------- correlate2d


def _corr_inputs(op, in1, in2):
    a = _as_numba(op, "in1", in1)
    b = _as_numba(op, "in2", in2)
    if a.ndim != 2 or b.ndim != 2:
        bad = "in1" if a.ndim != 2 else "in2"
        raise ValueError(
            f"{op}: argument '{bad}' must be 2-D: in1 and in2 must both be 2-D arrays "
            f"(in1 shape {tuple(a.shape)}, in2 shape {tuple(b.shape)})"
        )
    rt = np.result_type(np.dtype(a.dtype), np.dtype(b.dtype))
    if rt not in (np.float32, np.float64):
        name = "in1" if np.dtype(a.dtype) == rt else "in2"
        raise TypeError(
            f"{op}: argument '{name}': on a CUDA device only float32/float64 inputs are "
            f"supported, got the common dtype {rt} (in1 {a.dtype}, in2 {b.dtype}); cast them "
            "or use host arrays"
        )
    return _astype_c(a, rt), _astype_c(b, rt), rt


def _astype_c(a, dtype):
    if np.dtype(a.dtype) == np.dtype(dtype) and _is_c_contiguous(a):
        return a
    return _copy(a, dtype)


def _index_vec(start, length, n, boundary):
    from .correlate import _gather_index

    if boundary == "fill":
        j = np.arange(start, start + length, dtype=np.int64)
        return np.where((j >= 0) & (j < n), j, -1)
    return _gather_index(start, length, n, boundary)


def _flip(a):
    out = _empty(a.shape, a.dtype)
    if a.size:
        _kernels("_copy")._flip2[_grid(a.size)](a, out)
    return out


def _corr_run(op, in1, in2, mode, boundary, fillvalue, conj):
    from .correlate import _axis_plan, _check_fillvalue, _check_mode_boundary, _swap_needed

    a, b, rt = _corr_inputs(op, in1, in2)
    swapped = _swap_needed(op, mode, tuple(a.shape), tuple(b.shape))
    boundary = _check_mode_boundary(op, mode, boundary)
    fv = _check_fillvalue(op, fillvalue, rt) if boundary == "fill" else np.zeros((), rt)
    if swapped:
        a, b = b, a
    flip = not conj
    (n0, n1), (k0, k1) = tuple(a.shape), tuple(b.shape)
    o0, s0 = _axis_plan(n0, k0, mode, flip)
    o1, s1 = _axis_plan(n1, k1, mode, flip)
    if o0 < 0 or o1 < 0:
        raise ValueError(
            f"{op}: arguments 'in1' and 'in2' give a negative output size for mode={mode!r} "
            f"(in1 shape {tuple(a.shape)}, in2 shape {tuple(b.shape)})"
        )
    if o0 == 0 or o1 == 0 or b.size == 0:
        return _zeros((o0, o1), rt)
    if a.size == 0 and boundary != "fill":
        raise ValueError(
            f"{op}: argument 'in1' is empty (shape {tuple(a.shape)}); boundary={boundary!r} has "
            f"nothing to repeat (in2 shape {tuple(b.shape)}; SciPy crashes here)"
        )
    if flip:
        b = _flip(b)
    out = _empty((o0, o1), rt)
    k = _kernels("correlate")
    if mode == "valid":
        k._correlate2d_valid_fwd[_grid(out.size)](a, b, out, _zero(rt))
    else:
        rows = _to_dev(_index_vec(s0, o0 + k0 - 1, n0, boundary))
        cols = _to_dev(_index_vec(s1, o1 + k1 - 1, n1, boundary))
        if a.size == 0:  # all fill: any 1x1 array will do, it is never read
            a = _zeros((1, 1), rt)
        k._correlate2d_gather_fwd[_grid(out.size)](a, rows, cols, b, out, rt.type(fv),
                                                   _zero(rt))
    if swapped and conj:
        out = _flip(out)
    return out


@_impl
def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    return _corr_run("correlate2d", in1, in2, mode, boundary, fillvalue, conj=True)


@_impl
def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    return _corr_run("convolve2d", in1, in2, mode, boundary, fillvalue, conj=False)


# --------------------------------------------------------------------------- array helpers
# Device versions of the NumPy expressions that layers, containers, losses and optimizers
# apply to their arrays (``grad += dw``, ``a + b``, ``np.concatenate``, ...).  They are called
# through the host/device-agnostic helpers of :mod:`nbconv.nn._arrays`, only for device arrays.
# ``op`` and the argument names only label the TypeError raised for a host array.


def _flat(a):
    return a.reshape(a.size)


def _contiguous(op, name, a):
    """``a`` as a C-contiguous numba device array (copied only if strided)."""
    a = _as_numba(op, name, a)
    return a if _is_c_contiguous(a) else _copy(a, a.dtype)


def _same_shape(op, names, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{op}: arguments '{names[0]}' {tuple(a.shape)} and '{names[1]}' {tuple(b.shape)} "
            "must have the same shape"
        )


def empty_like(a):
    """Uninitialised C-contiguous device array with ``a``'s shape and dtype."""
    return _empty(a.shape, a.dtype)


def zeros(shape, dtype):
    """Device array of zeros."""
    return _zeros(shape, dtype)


def zero_(a):
    """``a[...] = 0`` in place (``a`` C-contiguous: parameters, gradients, optimizer state)."""
    if not _is_c_contiguous(a):
        raise ValueError(f"zero_: the device array must be contiguous, got shape {tuple(a.shape)}")
    _fill(a.reshape(a.size), 0)
    return a


def copy(a, op="copy", name="a"):
    """C-contiguous device copy of device array ``a`` (same dtype)."""
    a = _as_numba(op, name, a)
    return _copy(a, a.dtype)


def astype(a, dtype):
    """C-contiguous device copy of ``a`` cast to ``dtype`` (always a copy, as
    ``ndarray.astype``)."""
    return _copy(a, dtype)


def reshape(a, shape, op="reshape", name="a"):
    """``a`` viewed with ``shape`` (no copy if ``a`` is C-contiguous; numba's device arrays
    reshape only contiguous data)."""
    return _contiguous(op, name, a).reshape(*(int(s) for s in shape))


def iadd(a, b, op="iadd", names=("a", "b")):
    """``a += b`` in place on the device (``a`` C-contiguous, ``b`` of the same shape)."""
    b = _contiguous(op, names[1], b)
    _same_shape(op, names, a, b)
    if a.size:
        _kernels("_arrays")._add_inplace[_grid(a.size)](_flat(a), _flat(b))
    return a


def add(a, b, op="add", names=("a", "b")):
    """``a + b`` as a new device array (same shapes and dtypes)."""
    a = _contiguous(op, names[0], a)
    b = _contiguous(op, names[1], b)
    _same_shape(op, names, a, b)
    out = _empty(a.shape, a.dtype)
    if a.size:
        _kernels("_arrays")._add[_grid(a.size)](_flat(a), _flat(b), _flat(out))
    return out


def increment(a, v=1):
    """``a += v`` for every element of the C-contiguous device array ``a`` (0-d counters)."""
    if a.size:
        flat = a.reshape(a.size)
        _kernels("_arrays")._add_scalar[_grid(a.size)](flat, np.dtype(a.dtype).type(v))
    return a


def _slabs(a, axis):
    """``a`` (C-contiguous) viewed as (before ``axis``, along ``axis``, after ``axis``)."""
    s = tuple(a.shape)
    return a.reshape(math.prod(s[:axis]), s[axis], math.prod(s[axis + 1:]))


def concat(xs, axis, op="concat"):
    """``numpy.concatenate(xs, axis)`` for device arrays of one dtype."""
    xs = [_contiguous(op, f"inputs[{i}]", x) for i, x in enumerate(xs)]
    first = tuple(xs[0].shape)
    axis = axis % len(first)
    for i, x in enumerate(xs):
        s = tuple(x.shape)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ValueError(
                f"{op}: input {i} has shape {s}, which does not match input 0 {first} "
                f"outside axis {axis}"
            )
    dtypes = {np.dtype(x.dtype) for x in xs}
    if len(dtypes) != 1:
        raise TypeError(f"{op}: inputs have different dtypes {sorted(map(str, dtypes))}")
    total = sum(int(x.shape[axis]) for x in xs)
    out = _empty(first[:axis] + (total,) + first[axis + 1:], xs[0].dtype)
    o3 = _slabs(out, axis)
    off = 0
    for x in xs:
        c = int(x.shape[axis])
        if x.size:
            _kernels("_arrays")._slab_copy[_grid(x.size)](_slabs(x, axis), o3, 0, off, c)
        off += c
    return out


def split(a, sizes, axis, op="split", name="dy"):
    """Split ``a`` along ``axis`` into C-contiguous pieces of ``sizes`` (the inverse of
    :func:`concat`)."""
    a = _contiguous(op, name, a)
    shape = tuple(a.shape)
    axis = axis % len(shape)
    if sum(sizes) != shape[axis]:
        raise ValueError(
            f"{op}: argument '{name}' has size {shape[axis]} along axis {axis}, the pieces "
            f"{list(sizes)} add up to {sum(sizes)}"
        )
    a3 = _slabs(a, axis)
    parts, off = [], 0
    for c in sizes:
        p = _empty(shape[:axis] + (int(c),) + shape[axis + 1:], a.dtype)
        if p.size:
            _kernels("_arrays")._slab_copy[_grid(p.size)](a3, _slabs(p, axis), off, 0, int(c))
        parts.append(p)
        off += int(c)
    return parts


# --------------------------------------------------------------------------- losses


def cross_entropy(logits, target, op="CrossEntropyLoss"):
    """Device half of cross-entropy: ``logp = log_softmax(logits)`` stays on the device, the
    per-row losses ``-logp[n, target[n]]`` come back as one float64 host vector.

    Returns
    -------
    rows : ndarray, shape (N,), float64, on the host
    logp : device array, shape (N, C), logits' dtype
    target : device array, shape (N,), integer
    """
    logits = _dev(op, "logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"{op}: argument 'logits' must be 2-D (N, C), got shape "
                         f"{tuple(logits.shape)}")
    t = _as_numba(op, "target", target)
    N, C = tuple(logits.shape)
    if np.dtype(t.dtype).kind not in "iu" or tuple(t.shape) != (N,):
        raise ValueError(
            f"{op}: argument 'target' must be integer labels of shape ({N},), got dtype "
            f"{t.dtype} shape {tuple(t.shape)}")
    logp = log_softmax(logits, axis=1)
    rows = _empty((N,), np.float64)
    if N:
        _kernels("_losses")._cross_entropy_rows[_grid(N)](logp, t, rows)
    rows = rows.copy_to_host()
    if np.isnan(rows).any():  # a bad label, or NaN logits: only then look at the labels
        th = t.copy_to_host()
        if th.min() < 0 or th.max() >= C:
            raise ValueError(f"{op}: argument 'target' has labels outside [0, {C}): min "
                             f"{th.min()}, max {th.max()}")
    return rows, logp, t


def cross_entropy_backward(logp, target, scale):
    """``(softmax - one_hot(target)) * scale`` as a new device array shaped like ``logp``."""
    d = _empty(logp.shape, logp.dtype)
    if d.size:
        _kernels("_losses")._cross_entropy_bwd[_grid(d.size)](logp, target, float(scale), d)
    return d


#: ``kind`` of the elementwise losses: the per-element value summed by ``_sum_partials``.
LOSS_KINDS = {"square": 0, "abs": 1}


def elementwise_loss(pred, target, kind, op):
    """``(sum of f(pred - target), pred - target)``: the sum as a Python float (one copy of
    the per-block partial sums to the host), the difference as a device array.

    ``f`` is the square (``kind="square"``, MSE) or the absolute value (``kind="abs"``, L1).
    """
    pred = _dev(op, "pred", pred)
    target = _dev(op, "target", target, pred.dtype)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"{op}: arguments 'pred' {tuple(pred.shape)} and 'target' "
                         f"{tuple(target.shape)} must have the same shape")
    diff = _empty(pred.shape, pred.dtype)
    n = diff.size
    if n == 0:
        return 0.0, diff
    k = _kernels("_losses")
    k._sub[_grid(n)](_flat(pred), _flat(target), _flat(diff))
    blocks = min(_grid(n)[0], 1024)
    partial = _empty((blocks,), np.float64)
    k._sum_partials[blocks, _block()](_flat(diff), LOSS_KINDS[kind], partial)
    return float(np.sum(partial.copy_to_host())), diff


def elementwise_loss_backward(diff, c, kind):
    """``c * diff`` (square) or ``c * sign(diff)`` (abs) as a new device array."""
    d = _empty(diff.shape, diff.dtype)
    if d.size:
        name = "_mse_bwd" if kind == "square" else "_l1_bwd"
        getattr(_kernels("_losses"), name)[_grid(d.size)](_flat(diff), float(c), _flat(d))
    return d

"""Public 1-D and 2-D convolutions (cross-correlation, as in every deep-learning framework).

Layout is NCHW (NCL in 1-D); weights are ``(out_channels, in_channels // groups, kh, kw)``.
The output size along each axis is PyTorch's::

    out = floor((n + p_before + p_after - dilation*(k - 1) - 1) / stride) + 1

where ``p_before``/``p_after`` are the paddings on the two sides of the axis (equal for an int or
a pair; with ``padding="same"`` the TensorFlow rule below).

Four algorithms compute the same thing up to float rounding: ``"direct"`` (loop-nest numba
kernels, :mod:`nbconv.conv.direct`), ``"im2col"`` (patches unfolded into columns, BLAS,
:mod:`nbconv.conv.im2col`) and ``"winograd"`` (F(2x2, 3x3) on transformed tiles, BLAS,
:mod:`nbconv.conv.winograd`) and ``"tapgemm"`` (one BLAS product per kernel tap,
:mod:`nbconv.conv.tapgemm`); ``"auto"`` picks by the table in :mod:`nbconv.conv.plan`.
Here the arguments are validated (:mod:`nbconv._checks.conv`) and handed to the engine
(:mod:`nbconv.conv.engine`).  The layers (``nn.Conv2d``, ``nn.Conv1d``) validate their
hyperparameters once, when they are built, and call the internal entries ``_conv2d_layer``
and the like, which check only what depends on the arrays.
"""

from __future__ import annotations

from .. import _dispatch
from .._checks import check_bool
from .._checks.conv import backward_call, conv_call, want_bias
from ..conv import engine, plan

__all__ = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward"]


# --------------------------------------------------------------------------- argument handling


# --------------------------------------------------------------------------- 2-D


@_dispatch.dispatch
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", algorithm="auto"):
    """2-D convolution (cross-correlation, no kernel flip) of a batch of images.

    ``y[n, f, i, j] = bias[f] + sum_{c, p, q} weight[f, c, p, q] *
    xpad[n, g*C/groups + c, i*sy + p*dh, j*sx + q*dw]`` where ``g = f // (F / groups)`` and
    ``xpad`` is ``x`` padded according to ``padding`` and ``padding_mode``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) or (C, H, W)
        Input batch, or one unbatched image (as PyTorch takes it: the result is then
        (F, OH, OW)). float32/float64 are kept; integer/bool inputs are cast to float32;
        float16/complex raise TypeError. Any memory layout is accepted.
    weight : ndarray, shape (F, C // groups, kh, kw)
        Filters; cast to ``x.dtype``.
    bias : ndarray, shape (F,), optional
        Added to every output pixel of channel ``f``.
    stride : int or (int, int)
        Step ``(sy, sx)`` of the window, >= 1.
    padding : int, (int, int), "valid" or "same"
        Rows/columns added on each side (``(ph, pw)``: ``ph`` on top and bottom, ``pw`` left
        and right). ``"valid"`` is no padding. ``"same"`` follows TensorFlow, also for
        stride > 1 (which PyTorch refuses): the output has ``ceil(n / stride)`` pixels along each
        axis and the total padding ``max((out - 1)*stride + dilation*(k - 1) + 1 - n, 0)`` is
        split in two with the odd pixel at the bottom/right.
    dilation : int or (int, int)
        Spacing ``(dh, dw)`` between kernel taps, >= 1 (1 = ordinary convolution).
    groups : int
        Channels are split into ``groups`` independent groups; ``groups == C == F`` is a
        depthwise convolution. Must divide ``C`` and ``F``.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        As in PyTorch: ``"reflect"`` mirrors without repeating the edge (``np.pad`` "reflect",
        padding must be < the input size), ``"replicate"`` repeats the edge (``np.pad`` "edge"),
        ``"circular"`` wraps around (``np.pad`` "wrap", padding <= the input size).
    algorithm : {"auto", "direct", "im2col", "winograd", "tapgemm"}
        ``"direct"``: numba loop nests; ``"im2col"``: patches unfolded into columns and
        multiplied by BLAS in bounded chunks; ``"winograd"``: Winograd F(2x2, 3x3), 16 BLAS
        products on transformed tiles (stride 1, dilation 1, groups 1, kernels of 2 to 9 taps a
        side, larger ones as 3x3 pieces; inputs or weights holding inf/NaN are computed
        directly, so that such values reach exactly the outputs they reach in a direct
        convolution); ``"tapgemm"``: one BLAS product per kernel tap over the whole batch, only
        on the taps that read the input (groups 1; small feature maps). ``"auto"`` takes the
        first of these rules that applies (``C`` input channels, ``F`` filters; "stride 1" on
        both axes; see :mod:`nbconv.conv.plan` for the measurements behind them):

{AUTO_RULE}

        benchmarks/bench_conv.py measures them. All algorithms give the same result up to
        float rounding.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW) (or (F, OH, OW) for an unbatched ``x``), dtype of ``x``
        With ``OH = floor((H + pt + pb - dh*(kh - 1) - 1) / sy) + 1`` (``pt``/``pb`` the top and
        bottom padding) and likewise ``OW``.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty channel/spatial dimensions, channels not divisible by
        ``groups``, mismatched ``weight``/``bias`` shapes, non-positive stride/dilation, negative
        or unknown padding, unknown ``padding_mode``/``algorithm``, padding too large for the
        padding mode, or a kernel larger than the padded input.
    TypeError
        Non-integer hyperparameters, float16 or complex arrays.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> nc.conv2d(x, w)[0, 0]
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]])
    >>> nc.conv2d(x, w, stride=2, padding="same").shape
    (1, 1, 2, 2)
    >>> nc.conv2d(np.ones((2, 3, 7, 9), np.float32), np.ones((6, 1, 3, 3), np.float32),
    ...           groups=3, padding=1, padding_mode="reflect").shape
    (2, 6, 7, 9)
    """
    return _conv2d_checked(x, weight, bias, (stride, padding, dilation, groups, padding_mode),
                           algorithm)


conv2d.__doc__ = conv2d.__doc__.replace("{AUTO_RULE}", plan.auto_rule_text(" " * 8))


def _conv2d_layer(x, weight, bias, *, hyper):
    """:func:`conv2d` on host arrays for ``nn.Conv2d``, whose ``hyper``
    (:class:`~nbconv._checks.conv.Hyper`) it validated when it was built: the geometry is not
    validated again."""
    return _conv2d_checked(x, weight, bias, hyper, "auto")


def _conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", algorithm="auto", *, hyper=None):
    """``relu(conv2d(...))`` on host arrays, the ReLU fused into the store of the direct
    kernels where they can (``Conv2d`` followed by ``ReLU`` in a ``Sequential``; the layer
    passes its validated ``hyper`` instead of the hyperparameters)."""
    return _conv2d_checked(x, weight, bias, hyper or (stride, padding, dilation, groups,
                                                      padding_mode), algorithm, relu=True)


def _conv2d_scaled(x, weight, scale, shift, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", algorithm="auto", *, hyper=None):
    """``conv2d(x, weight) * scale[f] + shift[f]`` on host arrays: an inference batch norm
    (``scale``/``shift`` float64, shape (F,), from its running statistics) folded into the
    convolution, in the pass that writes the output where the algorithm allows
    (``Conv2d`` followed by ``BatchNorm2d`` in eval mode under ``no_grad``; ``hyper`` as for
    :func:`_conv2d_relu`)."""
    return _conv2d_checked(x, weight, shift, hyper or (stride, padding, dilation, groups,
                                                       padding_mode), algorithm, scale=scale)


def _conv2d_checked(x, weight, bias, hyper, algorithm, relu=False, scale=None):
    """The checks of :func:`nbconv._checks.conv.conv_call` (``hyper`` validated already, or
    the raw hyperparameters), then the engine."""
    op = "conv2d"
    x, weight, bias, unbatched, g = conv_call(op, x, weight, bias, hyper,
                                              with_bias=scale is None)
    y = engine.forward(op, x, weight, bias, g, algorithm, relu, scale=scale)
    return y[0] if unbatched else y


@_dispatch.dispatch
def conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    """Gradients of :func:`conv2d` with respect to ``x``, ``weight`` and ``bias``.

    For ``y = conv2d(x, weight, b, stride, padding, dilation, groups, padding_mode)`` and an
    upstream gradient ``dy = dL/dy``, returns ``dL/dx``, ``dL/dweight`` and ``dL/db``. With a
    non-zero ``padding_mode`` the gradient that reaches padded pixels is added back to the input
    pixels they copy.

    Parameters
    ----------
    dy : ndarray, shape (N, F, OH, OW) or (F, OH, OW)
        Upstream gradient; must have exactly the shape of the forward output. Cast to
        ``x.dtype``.
    x : ndarray, shape (N, C, H, W) or (C, H, W)
        The forward input (unbatched inputs give an unbatched ``dx``).
    weight : ndarray, shape (F, C // groups, kh, kw)
        The forward filters.
    stride, padding, dilation, groups, padding_mode
        As in :func:`conv2d`.
    bias : bool
        Whether to compute the bias gradient (an array counts as True: "the layer has a bias").
    algorithm : {"auto", "direct", "im2col", "winograd", "tapgemm"}, keyword-only
        As in :func:`conv2d`.
    need_dx : bool, keyword-only
        ``False`` skips the data gradient (e.g. for a network's first layer); ``dx`` is then
        None.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
    dweight : ndarray, shape (F, C // groups, kh, kw)
    dbias : ndarray, shape (F,), or None when ``bias`` is False
        All in the dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.ones((2, 1, 4, 4)); w = np.ones((3, 1, 3, 3))
    >>> dy = np.ones((2, 3, 2, 2))
    >>> dx, dw, db = nc.conv2d_backward(dy, x, w)
    >>> dx.shape, dw.shape, db
    ((2, 1, 4, 4), (3, 1, 3, 3), array([8., 8., 8.]))
    >>> dx[0, 0]
    array([[ 3.,  6.,  6.,  3.],
           [ 6., 12., 12.,  6.],
           [ 6., 12., 12.,  6.],
           [ 3.,  6.,  6.,  3.]])
    """
    return _backward_checked(dy, x, weight, (stride, padding, dilation, groups, padding_mode),
                             bias, need_dx, algorithm)


def _conv2d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    """:func:`conv2d_backward` on host arrays for ``nn.Conv2d`` (``hyper`` validated when the
    layer was built, see :func:`_conv2d_layer`)."""
    return _backward_checked(dy, x, weight, hyper, bias, need_dx, "auto")


def _backward_checked(dy, x, weight, hyper, bias, need_dx, algorithm, nd=2):
    """The checks of :func:`nbconv._checks.conv.backward_call`, then the engine; ``nd=1``:
    the 1-D op."""
    op = "conv2d_backward" if nd == 2 else "conv1d_backward"
    dy, x, weight, unbatched, g = backward_call(op, dy, x, weight, hyper, nd)
    dx, gw, gb = engine.backward(op, dy, x, weight, g, want_bias(bias),
                                 check_bool(op, "need_dx", need_dx), algorithm)
    if nd == 1:
        dx = None if dx is None else dx[:, :, 0, :]
        gw = gw[:, :, 0, :]
    return (dx[0] if unbatched and dx is not None else dx), gw, gb


# --------------------------------------------------------------------------- 1-D


@_dispatch.dispatch
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto"):
    """1-D convolution (cross-correlation) of a batch of sequences.

    ``y[n, f, i] = bias[f] + sum_{c, q} weight[f, c, q] * xpad[n, g*C/groups + c, i*s + q*d]``.
    Computed as :func:`conv2d` on images of height 1.

    Parameters
    ----------
    x : ndarray, shape (N, C, L) or unbatched (C, L)
    weight : ndarray, shape (F, C // groups, k)
    bias : ndarray, shape (F,), optional
    stride, dilation : int
        >= 1 (a 1-tuple is accepted).
    padding : int, "valid" or "same"
        Elements added at both ends; ``"same"`` as in :func:`conv2d` (TensorFlow rule, odd
        element at the end).
    groups : int
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
    algorithm : {"auto", "direct", "im2col"}, keyword-only

    Returns
    -------
    y : ndarray, shape (N, F, OL) (or (F, OL) for an unbatched ``x``), dtype of ``x``
        ``OL = floor((L + p_before + p_after - d*(k - 1) - 1) / s) + 1``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.conv1d(np.arange(5.0).reshape(1, 1, 5), np.array([[[1.0, -1.0]]]))
    array([[[-1., -1., -1., -1.]]])
    >>> nc.conv1d(np.ones((2, 4, 10)), np.ones((8, 2, 3)), groups=2, stride=2,
    ...           padding="same").shape
    (2, 8, 5)
    """
    return _conv1d_checked(x, weight, bias, (stride, padding, dilation, groups, padding_mode),
                           algorithm)


def _conv1d_layer(x, weight, bias, *, hyper):
    """:func:`conv1d` on host arrays for ``nn.Conv1d`` (``hyper`` validated when the layer was
    built, see :func:`_conv2d_layer`)."""
    return _conv1d_checked(x, weight, bias, hyper, "auto")


def _conv1d_checked(x, weight, bias, hyper, algorithm):
    op = "conv1d"
    x4, w4, bias, unbatched, g = conv_call(op, x, weight, bias, hyper, nd=1)
    y = engine.forward(op, x4, w4, bias, g, algorithm)[:, :, 0, :]
    return y[0] if unbatched else y


@_dispatch.dispatch
def conv1d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True, *, algorithm="auto", need_dx=True):
    """Gradients of :func:`conv1d` with respect to ``x``, ``weight`` and ``bias``.

    Parameters
    ----------
    dy : ndarray, shape (N, F, OL) or (F, OL)
        Upstream gradient, exactly the shape of the forward output.
    x : ndarray, shape (N, C, L) or (C, L)
    weight : ndarray, shape (F, C // groups, k)
    stride, padding, dilation, groups, padding_mode
        As in :func:`conv1d`.
    bias : bool
        Whether to compute the bias gradient.
    algorithm : {"auto", "direct", "im2col"}, keyword-only
    need_dx : bool, keyword-only
        ``False`` skips the data gradient (``dx`` is then None).

    Returns
    -------
    dx : ndarray, shape (N, C, L), or None
    dweight : ndarray, shape (F, C // groups, k)
    dbias : ndarray, shape (F,), or None

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dx, dw, db = nc.conv1d_backward(np.ones((1, 1, 4)), np.arange(5.0).reshape(1, 1, 5),
    ...                                 np.array([[[1.0, -1.0]]]))
    >>> dx, dw, db
    (array([[[ 1.,  0.,  0.,  0., -1.]]]), array([[[ 6., 10.]]]), array([4.]))
    """
    return _backward_checked(dy, x, weight, (stride, padding, dilation, groups, padding_mode),
                             bias, need_dx, algorithm, nd=1)


def _conv1d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    """:func:`conv1d_backward` on host arrays for ``nn.Conv1d`` (see :func:`_conv2d_layer`)."""
    return _backward_checked(dy, x, weight, hyper, bias, need_dx, "auto", nd=1)

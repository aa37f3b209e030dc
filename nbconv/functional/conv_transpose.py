"""Public 1-D and 2-D transposed convolutions ("deconvolutions"), as PyTorch's.

The transposed convolution of ``x`` with ``weight`` ``(C_in, C_out // groups, kh, kw)`` is
the data gradient of the convolution with the same weight (``C_in`` filters over ``C_out``
channels): each input pixel scatters ``x[n, c, i, j] * weight[c, :, :, :]`` into the output
at ``(i*sy - ph + p*dh, j*sx - pw + q*dw)``.  So the engine runs it with the convolution's
backward plan, data gradient only (:func:`nbconv.conv.engine.data_gradient`), and its
gradients are the convolution's forward pass (``dx``) and weight gradient (``dweight``, with
the roles of the two arrays swapped).  Arguments are validated by
:mod:`nbconv._checks.conv_transpose`.
"""

from __future__ import annotations

from .. import _dispatch
from .._checks import as_float_array, check_bool, check_ndim, single
from .._checks.conv import AXES, AXES_1D, batched, batched_grad, check_bias, want_bias
from .._checks.conv_transpose import TransposeHyper, transpose_hyper, transpose_shaped
from ..conv import engine

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv_transpose1d",
           "conv_transpose1d_backward"]

_X2 = "(N, C_in, H, W) or unbatched (C_in, H, W)"
_W2 = "(C_in, C_out // groups, kh, kw)"
_X1 = "(N, C_in, L) or unbatched (C_in, L)"
_W1 = "(C_in, C_out // groups, k)"


@_dispatch.dispatch
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    ``y[n, g*Fg + f, i*sy - ph + p*dh, j*sx - pw + q*dw] += x[n, c, i, j] * weight[c, f, p, q]``
    for every input channel ``c`` of group ``g = c // (C_in / groups)``, ``Fg = C_out /
    groups``, then ``y += bias[f]``; positions outside ``y`` are dropped.  It is the gradient
    of :func:`conv2d` with respect to its input (for a convolution with the same ``weight``,
    stride, padding, dilation and groups from ``y``'s shape to ``x``'s).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W) or (C_in, H, W)
        Input batch, or one unbatched image (the result is then (C_out, H_out, W_out)).
        float32/float64 are kept; integer/bool inputs are cast to float32; float16/complex
        raise TypeError. Any memory layout is accepted.
    weight : ndarray, shape (C_in, C_out // groups, kh, kw)
        PyTorch's layout for transposed convolutions; cast to ``x.dtype``.
    bias : ndarray, shape (C_out,), optional
    stride : int or (int, int)
        ``(sy, sx)`` >= 1: the output step between neighbouring input pixels.
    padding : int or (int, int)
        ``(ph, pw)`` >= 0: ``dilation * (kernel_size - 1) - padding`` zeros of implicit
        padding, i.e. ``ph`` rows removed from the top and bottom of the full output.
    output_padding : int or (int, int)
        ``(oph, opw)`` >= 0, added at the bottom/right of the output (it picks among the
        output sizes that a strided convolution maps to the same input size); each must be
        smaller than the stride or the dilation along its axis.
    groups : int
        Must divide ``C_in``; ``C_out = weight.shape[1] * groups``.
    dilation : int or (int, int)
        Spacing ``(dh, dw)`` >= 1 between kernel taps.
    algorithm : {"auto", "direct", "im2col", "winograd", "tapgemm"}, keyword-only
        The algorithm of the convolution's data gradient that computes it (see
        :func:`conv2d`; ``"auto"`` plans it as that backward pass).

    Returns
    -------
    y : ndarray, shape (N, C_out, H_out, W_out) (or (C_out, H_out, W_out)), dtype of ``x``
        ``H_out = (H - 1)*sy - 2*ph + dh*(kh - 1) + oph + 1``, likewise ``W_out``.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty channel/spatial dimensions, ``weight.shape[0]``
        not equal to the channels of ``x``, channels not divisible by ``groups``, a bias not
        of shape (C_out,), non-positive stride/dilation/groups, negative padding or
        output_padding, output_padding not smaller than the stride or the dilation, an output
        size < 1.
    TypeError
        Non-integer hyperparameters, float16 or complex arrays.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> nc.conv_transpose2d(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]])
    >>> nc.conv_transpose2d(np.ones((2, 8, 4, 4), np.float32), np.ones((8, 3, 4, 4), np.float32),
    ...                     stride=2, padding=1, output_padding=1).shape
    (2, 3, 9, 9)
    """
    return _checked(x, weight, bias, (stride, padding, output_padding, groups, dilation),
                    algorithm)


def _conv_transpose2d_layer(x, weight, bias, *, hyper):
    """:func:`conv_transpose2d` on host arrays for ``nn.ConvTranspose2d``, whose ``hyper``
    (:class:`~nbconv._checks.conv_transpose.TransposeHyper`) it validated when it was built:
    the geometry is not validated again."""
    return _checked(x, weight, bias, hyper, "auto")


def _conv_transpose1d_layer(x, weight, bias, *, hyper):
    """:func:`conv_transpose1d` for ``nn.ConvTranspose1d`` (``hyper`` of the images of height
    1 it runs on; see :func:`_conv_transpose2d_layer`)."""
    return _checked(x, weight, bias, hyper, "auto", nd=1)


def _hyper_of(op, hyper, nd, desc):
    """``hyper`` itself when validated already, else the raw hyperparameters validated (the
    1-D ones as those of images of height 1)."""
    if isinstance(hyper, TransposeHyper):
        return hyper
    stride, padding, output_padding, groups, dilation = hyper
    if nd == 1:
        stride, padding, output_padding, dilation = _args_1d(op, stride, padding,
                                                             output_padding, dilation)
    return transpose_hyper(op, stride, padding, output_padding, groups, dilation, desc)


def _checked(x, weight, bias, hyper, algorithm, nd=2):
    """The checks of the transposed convolution (``hyper`` validated or raw; ``nd=1``: the
    1-D op, on images of height 1), then the engine."""
    op = "conv_transpose2d" if nd == 2 else "conv_transpose1d"
    x = as_float_array(op, "x", x)
    x, unbatched = batched(op, x, nd + 2, _X2 if nd == 2 else _X1)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, nd + 2, _W2 if nd == 2 else _W1)
    desc = f"x shape {tuple(x.shape[unbatched:])}, weight shape {tuple(weight.shape)}"
    if nd == 1:
        x, weight = x[:, :, None, :], weight[:, :, None, :]
    g, y_shape = transpose_shaped(op, x.shape, weight.shape, _hyper_of(op, hyper, nd, desc),
                                  desc, AXES if nd == 2 else AXES_1D)
    bias = check_bias(op, bias, x.dtype, y_shape[1], desc)
    y = _forward(op, x, weight, bias, g, y_shape, algorithm)
    if nd == 1:
        y = y[:, :, 0, :]
    return y[0] if unbatched else y


def _forward(op, x, weight, bias, g, y_shape, algorithm):
    y = engine.data_gradient(op, x, weight, g, y_shape, algorithm)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def _check_dy(op, dy, expected, desc):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)} but the transposed "
                         f"convolution's output has shape {tuple(expected)} ({desc})")


def _backward(op, dy, x, weight, g, with_bias, need_dx, algorithm):
    """``(dx, dweight, dbias)``: the convolution's forward pass of ``dy`` and its weight
    gradient with ``x`` in the place of the output gradient and ``dy`` in that of the input."""
    dx = engine.forward(op, dy, weight, None, g, algorithm) if need_dx else None
    _, gw, _ = engine.backward(op, x, dy, weight, g, False, False, algorithm)
    gb = None
    if with_bias:
        N, C, H, W = dy.shape
        gb = dy.reshape(N, C, H * W).sum(axis=(0, 2))
    return dx, gw, gb


@_dispatch.dispatch
def conv_transpose2d_backward(dy, x, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, bias=True, *, algorithm="auto", need_dx=True):
    """Gradients of :func:`conv_transpose2d` with respect to ``x``, ``weight`` and ``bias``.

    ``dx`` is :func:`conv2d` of ``dy`` with ``weight`` (same stride, padding, dilation and
    groups; ``output_padding`` only marks rows and columns it does not read), ``dweight`` the
    weight gradient of that convolution with ``x`` as its output gradient, ``dbias`` the sum
    of ``dy`` over (N, H_out, W_out).

    Parameters
    ----------
    dy : ndarray, shape (N, C_out, H_out, W_out) or (C_out, H_out, W_out)
        Upstream gradient, exactly the shape of the forward output; cast to ``x.dtype``.
    x : ndarray, shape (N, C_in, H, W) or (C_in, H, W)
        The forward input (an unbatched one gives an unbatched ``dx``).
    weight : ndarray, shape (C_in, C_out // groups, kh, kw)
    stride, padding, output_padding, groups, dilation
        As in :func:`conv_transpose2d`.
    bias : bool
        Whether to compute the bias gradient (an array counts as True).
    algorithm : {"auto", "direct", "im2col", "winograd", "tapgemm"}, keyword-only
    need_dx : bool, keyword-only
        ``False`` skips the input gradient (``dx`` is then None).

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W), or None
    dweight : ndarray, shape (C_in, C_out // groups, kh, kw)
    dbias : ndarray, shape (C_out,), or None when ``bias`` is False
        All in the dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]]); w = np.ones((1, 1, 2, 2))
    >>> dx, dw, db = nc.conv_transpose2d_backward(np.ones((1, 1, 4, 4)), x, w, stride=2)
    >>> dx[0, 0], dw[0, 0], db
    (array([[4., 4.],
           [4., 4.]]), array([[10., 10.],
           [10., 10.]]), array([16.]))
    """
    return _backward_checked(dy, x, weight, (stride, padding, output_padding, groups, dilation),
                             bias, need_dx, algorithm)


def _conv_transpose2d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    """:func:`conv_transpose2d_backward` on host arrays for ``nn.ConvTranspose2d`` (see
    :func:`_conv_transpose2d_layer`)."""
    return _backward_checked(dy, x, weight, hyper, bias, need_dx, "auto")


def _conv_transpose1d_backward_layer(dy, x, weight, *, hyper, bias, need_dx):
    """:func:`conv_transpose1d_backward` on host arrays for ``nn.ConvTranspose1d``."""
    return _backward_checked(dy, x, weight, hyper, bias, need_dx, "auto", nd=1)


def _backward_checked(dy, x, weight, hyper, bias, need_dx, algorithm, nd=2):
    """The checks of the transposed convolution's backward pass (as :func:`_checked`), then
    :func:`_backward`."""
    op = "conv_transpose2d_backward" if nd == 2 else "conv_transpose1d_backward"
    x = as_float_array(op, "x", x)
    x_shape = x.shape
    x, unbatched = batched(op, x, nd + 2, _X2 if nd == 2 else _X1)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, nd + 2, _W2 if nd == 2 else _W1)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    desc = (f"dy shape {tuple(dy.shape)}, x shape {tuple(x_shape)}, weight shape "
            f"{tuple(weight.shape)}")
    dy = batched_grad(op, dy, unbatched, nd + 2,
                      "(N, C_out, H_out, W_out)" if nd == 2 else "(N, C_out, L_out)", x_shape)
    if nd == 1:
        x, weight = x[:, :, None, :], weight[:, :, None, :]
    g, y_shape = transpose_shaped(op, x.shape, weight.shape, _hyper_of(op, hyper, nd, desc),
                                  desc, AXES if nd == 2 else AXES_1D)
    if nd == 1:
        _check_dy(op, dy, (y_shape[0], y_shape[1], y_shape[3]), desc)
        dy = dy[:, :, None, :]
    else:
        _check_dy(op, dy, y_shape, desc)
    dx, gw, gb = _backward(op, dy, x, weight, g, want_bias(bias),
                           check_bool(op, "need_dx", need_dx), algorithm)
    if nd == 1:
        dx = None if dx is None else dx[:, :, 0, :]
        gw = gw[:, :, 0, :]
    return (dx[0] if unbatched and dx is not None else dx), gw, gb


# --------------------------------------------------------------------------- 1-D


def _args_1d(op, stride, padding, output_padding, dilation):
    """The 1-D hyperparameters as the 2-D ones of an image of height 1."""
    return ((1, single(op, "stride", stride, 1)), (0, single(op, "padding", padding, 0)),
            (0, single(op, "output_padding", output_padding, 0)),
            (1, single(op, "dilation", dilation, 1)))


@_dispatch.dispatch
def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    """1-D transposed convolution, as ``torch.nn.functional.conv_transpose1d``: computed as
    :func:`conv_transpose2d` on images of height 1.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, L) or unbatched (C_in, L)
    weight : ndarray, shape (C_in, C_out // groups, k)
    bias : ndarray, shape (C_out,), optional
    stride, padding, output_padding, dilation : int
        As in :func:`conv_transpose2d` along the one axis (a 1-tuple is accepted).
    groups : int
    algorithm : {"auto", "direct", "im2col", "tapgemm"}, keyword-only

    Returns
    -------
    y : ndarray, shape (N, C_out, L_out) (or (C_out, L_out)), dtype of ``x``
        ``L_out = (L - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.conv_transpose1d(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[1.0, 10.0]]]))
    array([[[ 1., 12., 23., 30.]]])
    """
    return _checked(x, weight, bias, (stride, padding, output_padding, groups, dilation),
                    algorithm, nd=1)


@_dispatch.dispatch
def conv_transpose1d_backward(dy, x, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, bias=True, *, algorithm="auto", need_dx=True):
    """Gradients of :func:`conv_transpose1d` with respect to ``x``, ``weight`` and ``bias``.

    Parameters
    ----------
    dy : ndarray, shape (N, C_out, L_out) or (C_out, L_out)
    x : ndarray, shape (N, C_in, L) or (C_in, L)
    weight : ndarray, shape (C_in, C_out // groups, k)
    stride, padding, output_padding, groups, dilation
        As in :func:`conv_transpose1d`.
    bias : bool
        Whether to compute the bias gradient.
    algorithm : keyword-only
    need_dx : bool, keyword-only
        ``False`` skips the input gradient (``dx`` is then None).

    Returns
    -------
    dx : ndarray, shape (N, C_in, L), or None
    dweight : ndarray, shape (C_in, C_out // groups, k)
    dbias : ndarray, shape (C_out,), or None

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dx, dw, db = nc.conv_transpose1d_backward(np.ones((1, 1, 4)),
    ...                                           np.array([[[1.0, 2.0, 3.0]]]),
    ...                                           np.array([[[1.0, 10.0]]]))
    >>> dx, dw, db
    (array([[[11., 11., 11.]]]), array([[[6., 6.]]]), array([4.]))
    """
    return _backward_checked(dy, x, weight, (stride, padding, output_padding, groups, dilation),
                             bias, need_dx, algorithm, nd=1)

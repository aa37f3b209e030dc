"""Fully connected (affine) layer: ``y = x @ weight.T + bias``.

The matrix products are BLAS calls (:func:`nbconv._blas.matmul`: small ones on one BLAS thread);
numba kernels add the bias and reduce its gradient.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _config, _dispatch
from .._blas import SMALL_MACS, matmul
from .._checks import as_float_array
from .._checks.linear import check_linear_backward, check_x_weight
from ..kernels import linear as _k
from ..kernels import panels as _panels
from ..kernels._ir import VECTOR_BYTES, lanes

__all__ = ["linear", "linear_backward"]

#: a product with at least this many outputs per row runs transposed (``W @ x.T``); at 16 per
#: row (256 rows, 4096 outputs) both orders took the same time
_FEW_ROWS = 32


@_dispatch.dispatch
def linear(x, weight, bias=None):
    """Affine map of the last axis: ``y = x @ weight.T + bias`` (PyTorch's ``F.linear``).

    Parameters
    ----------
    x : ndarray, shape (..., in_features)
        Any number of leading dimensions (at least 1-D).
    weight : ndarray, shape (out_features, in_features)
    bias : ndarray, shape (out_features,), optional

    Returns
    -------
    y : ndarray, shape (..., out_features), dtype of ``x``

    Raises
    ------
    ValueError
        If ``weight`` is not 2-D, its ``in_features`` differ from ``x.shape[-1]``, or ``bias``
        does not have shape ``(out_features,)``.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> x = np.ones((2, 3)); w = np.arange(6.0).reshape(2, 3)
    >>> nc.linear(x, w, np.array([0.5, -0.5]))
    array([[ 3.5, 11.5],
           [ 3.5, 11.5]])
    """
    op = "linear"
    x = as_float_array(op, "x", x)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_x_weight(op, x, weight)
    out_f, in_f = weight.shape
    if bias is not None:
        bias = as_float_array(op, "bias", bias, dtype=x.dtype)
        if bias.shape != (out_f,):
            raise ValueError(
                f"{op}: argument 'bias' must have shape ({out_f},) = (out_features,), got "
                f"{tuple(bias.shape)} (weight shape {tuple(weight.shape)})"
            )
    x2 = x.reshape(math.prod(x.shape[:-1]), in_f)  # -1 is ambiguous when in_f == 0
    y2 = np.empty((x2.shape[0], out_f), dtype=x.dtype)
    return _linear_into(x2, weight, bias, y2).reshape(x.shape[:-1] + (out_f,))


def _linear_into(x2, weight, bias, y2, relu=False):
    """``y2 = x2 @ weight.T + bias`` (then ``relu`` in place when asked) for checked host
    arrays of one dtype: ``x2`` (M, in_features), ``y2`` (M, out_features) C-contiguous, the
    planned network's buffer (:mod:`nbconv.inference`) or :func:`linear`'s.  Returns ``y2``."""
    rows, out_f = y2.shape
    if weight.shape[1] == 0:
        y2.fill(0)
    elif rows * _FEW_ROWS <= out_f and y2.size * weight.shape[1] > SMALL_MACS:
        # few rows, many outputs: OpenBLAS runs the transposed product W @ x.T faster
        # (a classifier's 4096 outputs at batch 8-128), and the transpose back is cheap
        yt = np.empty((out_f, rows), y2.dtype)
        matmul(weight, x2.T, yt)
        y2[...] = yt.T
    else:
        matmul(x2, weight.T, y2)
    if bias is not None and y2.size:
        if y2.size < _config.SERIAL_BELOW:
            np.add(y2, bias, out=y2)  # waking the threads would cost more than the sum
        else:
            _k._linear_bias_fwd(y2, bias)
    if relu:
        np.maximum(y2, 0, out=y2)  # (NaN stays NaN, as in relu)
    return y2


def panels_apply(rows, out_f, terms, vector_bytes=VECTOR_BYTES) -> bool:
    """Whether a planned network's product of ``rows`` rows, ``out_f`` outputs and ``terms``
    reduction terms (a linear layer's input features; a tap-GEMM layer's taps times input
    channels) runs on weights packed once into panels (:mod:`nbconv.kernels.panels`) rather
    than BLAS: at least two panels of outputs to share among threads, and few rows.  With
    AVX-512's vectors (``vector_bytes`` 64): at most 256 rows, or 1024 with 512 terms or
    more (BLAS's own packing is then the larger cost; fewer terms leave the panels' extra
    passes over their accumulators the larger one); with AVX2's, where a block has half the
    accumulators: at most 64 rows.  A pure function of the shape and the vector width."""
    panel = _panels.PANEL_VECTORS * vector_bytes // 4  # float32 outputs per panel
    if vector_bytes >= 64:
        limit = 1024 if terms >= 512 else 256
    else:
        limit = 64
    return 0 < rows <= limit and out_f >= 2 * panel


def pack_panels(weight):
    """``weight`` as the panels of :mod:`nbconv.kernels.panels`: (ceil(F / FB), K, FB)
    C-contiguous, ``FB`` outputs a panel, zeros past ``F``.  ``weight`` is (F, K), or a
    convolution's (F, C, kh, kw) whose ``K = kh*kw*C`` terms go tap by tap, channels
    within a tap (tap-GEMM's order).  Packed panel by panel: no full-size temporary copy
    (a classifier's weights can be hundreds of megabytes)."""
    F = weight.shape[0]
    K = math.prod(weight.shape[1:])
    FB = _panels.PANEL_VECTORS * lanes(weight.itemsize)
    panels = np.zeros((-(-F // FB), K, FB), dtype=weight.dtype)
    for i, P in enumerate(panels):
        block = weight[i * FB:(i + 1) * FB]
        if block.ndim == 4:  # (nf, C, kh, kw) -> (kh, kw, C, nf)
            block = block.transpose(2, 3, 1, 0)
        else:
            block = block.T
        P[:, :block.shape[-1]] = block.reshape(K, block.shape[-1])
    return panels


@_dispatch.dispatch
def linear_backward(dy, x, weight, bias=True):
    """Gradients of :func:`linear` with respect to its input, weight and bias.

    Parameters
    ----------
    dy : ndarray, shape (..., out_features)
        Upstream gradient; its leading dimensions equal those of ``x``.
    x : ndarray, shape (..., in_features)
        The forward input.
    weight : ndarray, shape (out_features, in_features)
    bias : bool, default True
        Whether the forward pass had a bias (then ``dbias`` is computed, else it is ``None``).
        Passing the bias array itself counts as True.

    Returns
    -------
    dx : ndarray, shape of ``x``
        ``dy @ weight``.
    dweight : ndarray, shape (out_features, in_features)
        ``dy.T @ x`` summed over all leading dimensions.
    dbias : ndarray, shape (out_features,), or None
        ``dy`` summed over all leading dimensions.

    All outputs have the dtype of ``x`` (``dy`` and ``weight`` are cast to it).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> dx, dw, db = nc.linear_backward(np.ones((4, 2)), np.ones((4, 3)), np.ones((2, 3)))
    >>> dx.shape, dw.shape, db.tolist()
    ((4, 3), (2, 3), [4.0, 4.0])
    """
    op = "linear_backward"
    x = as_float_array(op, "x", x)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    want_bias = check_linear_backward(op, dy, x, weight, bias)
    dweight = np.zeros(weight.shape, dtype=x.dtype)
    dbias = np.zeros(weight.shape[0], dtype=x.dtype) if want_bias else None
    return _backward_into(dy, x, weight, dweight, dbias), dweight, dbias


def _linear_backward_into(dy, x, weight, gw, gb):
    """``dx`` of :func:`linear_backward`, *adding* the weight gradient into ``gw`` and the bias
    gradient into ``gb`` (None: no bias) in place -- the ``Linear`` layer's accumulation as
    one GEMM with beta = 1, without a temporary of the weight's size (VGG-11's 25088 x 4096
    layer: a fresh 400 MB array per step, then a pass adding it to the gradient).  ``gw`` and
    ``gb`` must be writeable C-contiguous host arrays of ``x``'s dtype."""
    op = "Linear.backward"
    x = as_float_array(op, "x", x)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    check_linear_backward(op, dy, x, weight, gb is not None)
    return _backward_into(dy, x, weight, gw, gb)


def _backward_into(dy, x, weight, gw, gb):
    """``dx``; ``gw += dy.T @ x`` and ``gb += sum(dy)`` over the leading axes."""
    out_f, in_f = weight.shape
    rows = math.prod(x.shape[:-1])
    x2 = x.reshape(rows, in_f)
    dy2 = dy.reshape(rows, out_f)
    dx2 = np.empty((rows, in_f), dtype=x.dtype)
    if rows == 0 or out_f == 0:
        dx2.fill(0)
    elif in_f:
        matmul(dy2, weight, dx2)
        matmul(dy2.T, x2, gw, accumulate=True)
    if gb is not None and rows and out_f:
        if dy2.size < _config.SERIAL_BELOW:
            gb += dy2.sum(axis=0, dtype=np.float64).astype(gb.dtype)
        else:
            db = np.zeros(out_f, dtype=x.dtype)
            _k._linear_bias_bwd(dy2, db)
            gb += db
    return dx2.reshape(x.shape)

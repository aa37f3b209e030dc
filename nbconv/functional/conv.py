"""Public 1-D and 2-D convolutions (cross-correlation, as in every deep-learning framework).

Layout is NCHW (NCL in 1-D); weights are ``(out_channels, in_channels // groups, kh, kw)``.
The output size along each axis is PyTorch's::

    out = floor((n + p_before + p_after - dilation*(k - 1) - 1) / stride) + 1

where ``p_before``/``p_after`` are the paddings on the two sides of the axis (equal for an int or
a pair; with ``padding="same"`` the TensorFlow rule below).

Three algorithms compute the same thing up to float rounding:

``"direct"``
    Loop-nest numba kernels, picked by shape: register blocks with filters in the vector
    lanes (``kernels/conv2d_regblock.py``) or, for fewer than 16 filters and for strided
    layers (on the input's stride phases), with output pixels in the lanes
    (``kernels/conv2d_pixvec.py``), depthwise planes
    (``kernels/conv2d_depthwise.py``), wide rows (``kernels/conv2d_wide.py``) or the general
    strided kernel (``kernels/conv2d_direct.py``).
``"im2col"``
    Unfold patches into columns and multiply with BLAS (:mod:`nbconv.functional._im2col`).
``"winograd"``
    Winograd F(2x2, 3x3) on transformed tiles, BLAS for the products
    (:mod:`nbconv.functional._winograd`; stride 1, groups 1).

All are called through the same two drivers (``conv2d_forward``/``conv2d_backward``) that take
normalised arguments, implicit zero padding on the top/left only (the bottom/right padding is
implied by the output size) and write into preallocated outputs.  Non-zero padding modes
(``"reflect"``, ``"replicate"``, ``"circular"``) are applied here by padding ``x`` explicitly; the
backward pass folds the gradient of the padded input back onto ``x`` (the adjoint of padding).
"""

from __future__ import annotations

import functools
import textwrap
from typing import NamedTuple

import numba
import numpy as np

from .. import _config
from .._shapes import (
    as_float_array,
    check_bool,
    check_int,
    check_ndim,
    check_padding_mode,
    conv_padding,
    out_size,
    pair,
    single,
)
from ..kernels import conv2d_pixvec as _pixvec
from . import _device

__all__ = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward"]

ALGORITHMS = ("auto", "direct", "im2col", "winograd")

#: numpy.pad mode of each non-zero padding mode (PyTorch semantics).
_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

_X_LAYOUT = "(N, C, H, W)"
_X_LAYOUTS = "(N, C, H, W) or unbatched (C, H, W)"  # host arrays; the device path takes 4-D
_W_LAYOUT = "(F, C // groups, kh, kw)"


# --------------------------------------------------------------------------- direct driver


def _pad_into(src, dst, pt, pl):
    """``dst`` (A, B, Hp, Wp) = zeros with ``src`` (A, B, H, W) placed at (pt, pl), cropped to
    fit; both may be strided views.  Large C-contiguous arrays take the threaded one-pass
    kernel; strided views (the weight gradient's transposed layouts) stay with NumPy, whose
    strided copies beat numba's non-contiguous loops."""
    if (dst.size < _config.SERIAL_BELOW or not src.flags.c_contiguous
            or not dst.flags.c_contiguous):
        H, W = src.shape[2], src.shape[3]
        Hp, Wp = dst.shape[2], dst.shape[3]
        dst[...] = 0
        r0, r1 = max(pt, 0), min(pt + H, Hp)
        c0, c1 = max(pl, 0), min(pl + W, Wp)
        if r1 > r0 and c1 > c0:
            dst[:, :, r0:r1, c0:c1] = src[:, :, r0 - pt:r1 - pt, c0 - pl:c1 - pl]
        return
    from ..kernels.conv2d_wide import _pad_planes

    _pad_planes(src, dst, pt, pl)


def _zero_padded(x, pt, pl, Hp, Wp):
    """``x`` (N, C, H, W) placed at (pt, pl) in zeros of (N, C, Hp, Wp), cropped to fit."""
    N, C, H, W = x.shape
    if pt == 0 and pl == 0 and (H, W) == (Hp, Wp):
        return x
    out = np.empty((N, C, Hp, Wp), dtype=x.dtype)
    _pad_into(x, out, pt, pl)
    return out


def _zero_padded_shared(x, pt, pl, Hp, Wp):
    """Like :func:`_zero_padded`, for the wide-row kernels: when the left padding is at least as
    wide as the right one, rows are stored with pitch ``Wp - right`` and a wide row reads its
    missing right padding from the next row's left padding (zeros), with zero rows appended
    for the last one.  LeNet c2's data gradient: rows of 12 instead of 16 values, a quarter less
    work.  Falls back to :func:`_zero_padded` otherwise."""
    N, C, H, W = x.shape
    rows, pitch = _shared_planes(H, W, pt, pl, Hp, Wp)
    if pitch == Wp:
        return _zero_padded(x, pt, pl, Hp, Wp)
    out = np.empty((N, C, rows, pitch), dtype=x.dtype)
    _pad_into(x, out, pt, pl)
    return out


def _shared_planes(H, W, pt, pl, Hp, Wp):
    """``(rows, pitch)`` of :func:`_zero_padded_shared`'s planes (``(Hp, Wp)`` when the
    padding cannot be shared)."""
    right = Wp - pl - W
    if not (0 < right <= pl and pt >= 0 and pt + H <= Hp):
        return Hp, Wp
    pitch = Wp - right
    return Hp + -(-right // pitch), pitch


def _direct_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, groups, relu=False):
    """Driver of the direct algorithm (see ``conv_interface``): ``y[:] = conv(x, w) + b``,
    or ``relu(conv(x, w) + b)`` with ``relu`` (in the register-blocked kernels' stores; a
    pass over ``y`` after the others).

    Groups-1 layers with enough filters and small weights take the register-blocked kernel,
    except strided ones that run faster on the pixel-vector blocks over the input's stride
    phases (:func:`_strided_regblock`); stride-1 groups-1 layers with fewer filters the
    pixel-vector blocks; depthwise layers the plane kernels; other stride-1 layers the
    wide-row kernels on an explicitly padded input; the rest the row kernel
    (``kernels/conv2d_direct.py``).
    """
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    stride1 = sy == 1 and sx == 1
    if (not stride1 and groups == 1 and w.shape[2] * w.shape[3] > 1
            and not _strided_regblock(*w.shape, y.shape[3], w.itemsize)):
        _phase_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, relu)
        return
    if not stride1 and groups > 1 and not _depthwise(x, w, groups) and w.shape[2:] != (1, 1):
        _phase_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, relu, groups)
        return
    if groups == 1 and _regblock_fits(*w.shape, w.itemsize):
        _regblock_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, relu)
        return
    F, C, kh, kw = w.shape
    if stride1 and _pixvec_fits(F, C, y.shape[2] + dh * (kh - 1), y.shape[3] + dw * (kw - 1),
                                kh, kw, groups, y.itemsize):
        _pixvec_forward(x, w, b, y, pt, pl, dh, dw, relu)
        return
    if _depthwise(x, w, groups):
        from ..kernels.conv2d_depthwise import _conv2d_depthwise_fwd

        _conv2d_depthwise_fwd(x, w, b, y, sy, sx, pt, pl, dh, dw)
    elif stride1:
        from ..kernels.conv2d_wide import _conv2d_wide_fwd

        OH, OW = y.shape[2], y.shape[3]
        xp = _zero_padded(x, pt, pl, OH + dh * (kh - 1), OW + dw * (kw - 1))
        wq, bq = _round_up_filters(w, b, groups)
        _conv2d_wide_fwd(xp, wq, bq, y, dh, dw, groups, numba.get_num_threads())
    else:
        from ..kernels.conv2d_direct import _conv2d_direct_fwd

        _conv2d_direct_fwd(x, w, b, y, sy, sx, pt, pl, dh, dw, groups, numba.get_num_threads())
    if relu:
        _relu_in_place(y)


#: largest weight matrix of the register-blocked kernel: every block re-reads all of it, which
#: pays while it stays in L2 (AlexNet c1's 93 KiB: 10.0 ms vs im2col 11.2; VGG's 590 KiB:
#: 91 ms vs Winograd 30)
_REGBLOCK_MAX_WEIGHT_BYTES = 128 * 1024


def _regblock_vectors(F, itemsize):
    """``(nvec, block, Fpad)`` of the register-blocked kernels: filter vectors per block (one
    for up to a vector's lanes, else two), filters per block, filters rounded up to blocks."""
    lanes = 8 if itemsize == 4 else 4
    nvec = 1 if F <= lanes else 2
    block = nvec * lanes
    return nvec, block, -(-F // block) * block


def _regblock_padded(x, OH, OW, kh, kw, sy, sx, pt, pl, dh, dw):
    """``(xp, Hp, Wp)``: ``x`` zero-padded to exactly the rows and columns the windows of an
    ``OH x OW`` output read (the register-blocked kernels address it by raw offsets)."""
    Hp = (OH - 1) * sy + dh * (kh - 1) + 1
    Wp = (OW - 1) * sx + dw * (kw - 1) + 1
    return _zero_padded(x, pt, pl, Hp, Wp), Hp, Wp


@functools.lru_cache(maxsize=64)
def _term_offsets(C, kh, kw, dh, dw, rows, pitch):
    """``off[(c*kh + p)*kw + q] = (c*rows + p*dh)*pitch + q*dw``: where the reduction terms of
    a window lie from its origin in a padded input of planes ``rows x pitch`` (int64, cached,
    read-only)."""
    off = np.add.outer(np.add.outer(np.arange(C) * rows, np.arange(kh) * dh) * pitch,
                       np.arange(kw) * dw).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


def _regblock_fits(F, C, kh, kw, itemsize) -> bool:
    """Whether the register-blocked kernel takes these (groups 1) filters: at least 16 of
    them (fewer leave vector lanes idle: LeNet c1's 6 ran 0.49 vs 0.23 ms on wide rows), a
    kernel larger than 1x1, and a weight matrix (filters padded to whole blocks) that stays
    in L2."""
    Fpad = _regblock_vectors(F, itemsize)[2]
    return F >= 16 and kh * kw > 1 and C * kh * kw * Fpad * itemsize <= _REGBLOCK_MAX_WEIGHT_BYTES


def _strided_regblock(F, C, kh, kw, OW, itemsize) -> bool:
    """Whether a strided groups-1 layer runs on the register-blocked kernel rather than on
    the stride phases: where it fits (:func:`_regblock_fits`) and either the output rows are
    short (fewer than 16 columns: the phases' wide rows and whole blocks waste more) or there
    are at most 32 filters with a reduction of at least 128 terms.  Ratios to PyTorch,
    phases / register blocks, 3x3 stride 2 (N, C -> F, H): (128, 16 -> 32, 32) 1.7 / 1.2,
    (16, 16 -> 32, 56) 1.58 / 1.30, (128, 32 -> 64, 16) 1.7 / 1.5, but (16, 16 -> 64, 56)
    1.27 / 1.59, (32, 32 -> 64, 32) 1.41 / 1.52, (16, 3 -> 64, 56) 1.2 / 1.9, (32, 3 -> 32,
    32) 1.49 / 1.81; NNlib's 7x7 stride 2 1.08 / 1.41, AlexNet c1 0.8 / 0.9."""
    return _regblock_fits(F, C, kh, kw, itemsize) and (
        OW < 16 or (F <= 32 and C * kh * kw >= 128))


def _regblock_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, relu=False):
    """Register-blocked direct forward (groups 1, float32/float64): pads ``x`` explicitly,
    lays the weights out as (C*kh*kw, filters rounded up to whole vectors) and the term
    offsets, then runs :func:`nbconv.kernels.conv2d_regblock._conv2d_regblock_fwd`."""
    from ..kernels.conv2d_regblock import _conv2d_regblock_fwd

    F, C, kh, kw = w.shape
    xp, Hp, Wp = _regblock_padded(x, y.shape[2], y.shape[3], kh, kw, sy, sx, pt, pl, dh, dw)
    nvec, _, Fpad = _regblock_vectors(F, y.itemsize)
    wt = np.zeros((C * kh * kw, Fpad), dtype=y.dtype)
    wt[:, :F] = w.reshape(F, -1).T
    _conv2d_regblock_fwd(xp, wt, b, _term_offsets(C, kh, kw, dh, dw, Hp, Wp), y, sy, sx, nvec,
                         relu)


#: most bytes of the output gradient (filters last) that the register-blocked weight gradient
#: may stream in all, every task reading all of it: LeNet c2 (30 tasks x 256 KiB = 7.5 MiB,
#: 0.51 -> 0.28 ms) pays; NNlib3 (3072 tasks x 392 KiB) took 2.5x PyTorch's backward
_REGBLOCK_MAX_DY_TRAFFIC = 32 * 2**20


def _regblock_dw_fits(N, OH, OW, F, C, kh, itemsize) -> bool:
    """Whether the register-blocked weight gradient takes this layer (groups 1): at least 16
    filters, enough (channel, kernel row) tasks for the threads, and little ``dy`` traffic.
    LeNet c1's 6 filters of one channel (5 tasks) ran 0.73 vs 0.35 ms on the wide-row kernel."""
    _, block, Fpad = _regblock_vectors(F, itemsize)
    tasks = C * kh * (Fpad // block)
    return (F >= 16 and tasks >= 4 * numba.get_num_threads()
            and tasks * N * OH * OW * Fpad * itemsize <= _REGBLOCK_MAX_DY_TRAFFIC)


def _regblock_weight_grad(dy, x, gw, sy, sx, pt, pl, dh, dw):
    """Register-blocked weight gradient (groups 1): ``dy`` with the filters last, the pixels'
    window origins in the padded input, then
    :func:`nbconv.kernels.conv2d_regblock._conv2d_regblock_bwd_weight`."""
    from ..kernels.conv2d_regblock import _conv2d_regblock_bwd_weight

    N, C = x.shape[:2]
    F, _, kh, kw = gw.shape
    OH, OW = dy.shape[2], dy.shape[3]
    xp, Hp, Wp = _regblock_padded(x, OH, OW, kh, kw, sy, sx, pt, pl, dh, dw)
    nvec, _, Fpad = _regblock_vectors(F, dy.itemsize)
    dyt = np.empty((N, OH, OW, Fpad), dtype=dy.dtype)
    if Fpad > F:
        dyt[..., F:] = 0
    dyt[..., :F] = dy.transpose(0, 2, 3, 1)
    _conv2d_regblock_bwd_weight(xp, dyt.reshape(N * OH * OW, Fpad),
                                _pixel_origins(N, OH, OW, C * Hp * Wp, sy * Wp, sx), gw, kh, kw,
                                dh, dw, nvec)


@functools.lru_cache(maxsize=64)
def _pixel_origins(N, OH, OW, image, row, col):
    """``off[(n*OH + i)*OW + j] = n*image + i*row + j*col``: the window origins of every
    output pixel of a batch in a padded input (int64, cached, read-only)."""
    off = (np.arange(N)[:, None, None] * image + np.arange(OH)[None, :, None] * row
           + np.arange(OW)[None, None, :] * col).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


#: fewest filters of the filter-vector register blocks (:func:`_regblock_fits`); fewer take the
#: pixel-vector blocks (:func:`_pixvec_forward`)
_PIXVEC_BELOW_FILTERS = 16
#: scratch of one pixel-vector task (its outputs, all filters): stays in L1
_PIXVEC_TASK_BYTES = 32 * 1024
#: largest padded image that a pixel-vector task pads itself (in L2) when the batch has two
#: images per thread; larger ones (or fewer) are padded in a pass of their own first
_PIXVEC_STAGE_BYTES = 256 * 1024
#: largest padded input image (all channels) of the pixel-vector blocks: every block reads
#: all of its channels, which pays while they stay in L2 (64 -> 3 channels at 224x224, 13 MiB:
#: 6.9 vs 3.7 ms on wide rows; 32 -> 12 at 28x28, 128 KiB: 1.1 vs 1.5 ms)
_PIXVEC_MAX_IMAGE_BYTES = 512 * 1024
#: most filters of the pixel-vector weight gradient (12, three groups of four, ran 1.6x slower
#: than the wide rows at 32 channels 28x28; 8 and fewer won up to 3.5x)
_PIXVEC_GRAD_MAX_FILTERS = 8


def _pixvec_fits(F, C, Hp, Wp, kh, kw, groups, itemsize, weight_grad=False) -> bool:
    """Whether a stride-1 layer takes the pixel-vector blocks: groups 1, fewer than 16
    filters (8 for the weight gradient), a kernel larger than 1x1 and a padded input image
    ``C x Hp x Wp`` small enough for L2.  For the data gradient ``F`` is the layer's input
    channels and the image is the padded ``dy``."""
    return (groups == 1 and kh * kw > 1
            and F < _PIXVEC_BELOW_FILTERS and (F <= _PIXVEC_GRAD_MAX_FILTERS or not weight_grad)
            and C * Hp * Wp * itemsize <= _PIXVEC_MAX_IMAGE_BYTES)


def _pixvec_forward(x, w, b, y, pt, pl, dh, dw, relu=False):
    """Stride-1 forward (groups 1, few filters) with pixel-vector register blocks: pads ``x``
    (sharing left and right padding where it can) in a pass of its own, or leaves that to
    each task when the images are small and the batch has two per thread; then
    :func:`_pixvec_run`."""
    F, C, kh, kw = w.shape
    N, _, OH, OW = y.shape
    Hp, Wp = OH + dh * (kh - 1), OW + dw * (kw - 1)
    rows, pitch = _shared_planes(x.shape[2], x.shape[3], pt, pl, Hp, Wp)
    padded = (rows, pitch) != x.shape[2:] or pt or pl
    if padded and not (N >= 2 * numba.get_num_threads()
                       and C * rows * pitch * y.itemsize <= _PIXVEC_STAGE_BYTES):
        x = _zero_padded_shared(x, pt, pl, Hp, Wp)  # else each task pads its own image
        pt = pl = 0
    _pixvec_run(x, pt, pl, rows, pitch, w, b, y, _term_offsets(C, kh, kw, dh, dw, rows, pitch),
                relu)


def _phase_planes(OH, OW, kh, kw, sy, sx, dh, dw):
    """``(Hq, Wq)``: the rows and columns of the stride-phase planes that an ``OH x OW``
    output reads (output pixel ``(i, j)``, tap ``(p, q)``: row ``i + p*dh // sy``, column
    ``j + q*dw // sx`` of phase ``(p*dh % sy, q*dw % sx)``)."""
    return OH + dh * (kh - 1) // sy, OW + dw * (kw - 1) // sx


@functools.lru_cache(maxsize=64)
def _phase_offsets(C, kh, kw, sy, sx, dh, dw, Hq, Wq):
    """The term offsets (as :func:`_term_offsets`) of a window in the stride-phase planes of
    :func:`nbconv.kernels.conv2d_pixvec._stride_phases` (int64, cached, read-only)."""
    p, q = np.arange(kh) * dh, np.arange(kw) * dw
    plane = (np.arange(C)[:, None, None] * sy + (p % sy)[None, :, None]) * sx \
        + (q % sx)[None, None, :]
    off = ((plane * Hq + (p // sy)[None, :, None]) * Wq
           + (q // sx)[None, None, :]).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


def _phase_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, relu=False, groups=1):
    """Strided forward with pixel-vector register blocks: splits the zero-padded input into
    its stride phases (a parallel pass), which makes the layer a stride-1 one over
    ``C*sy*sx`` planes, then :func:`_pixvec_run` (once per group, on copies of the group's
    planes and filters: grouped layers on the strided row kernel ran 24-30x PyTorch's time,
    3x3 stride 2, groups 2, (16, 64 -> 128, 56))."""
    F, Cg, kh, kw = w.shape
    N, _, OH, OW = y.shape
    Hq, Wq = _phase_planes(OH, OW, kh, kw, sy, sx, dh, dw)
    xq = np.empty((N, Cg * groups * sy * sx, Hq, Wq), dtype=y.dtype)
    _pixvec._stride_phases(np.ascontiguousarray(x), pt, pl, sy, sx, xq)
    off = _phase_offsets(Cg, kh, kw, sy, sx, dh, dw, Hq, Wq)
    if groups == 1:
        _pixvec_run(xq, 0, 0, Hq, Wq, w, b, y, off, relu)
        return
    Fg, planes = F // groups, Cg * sy * sx
    yg = np.empty((N, Fg, OH, OW), dtype=y.dtype)
    for g in range(groups):
        xg = np.ascontiguousarray(xq[:, g * planes:(g + 1) * planes])
        _pixvec_run(xg, 0, 0, Hq, Wq, w[g * Fg:(g + 1) * Fg], b[g * Fg:(g + 1) * Fg], yg, off,
                    relu)
        y[:, g * Fg:(g + 1) * Fg] = yg


def _pixvec_run(x, pt, pl, rows, pitch, w, b, y, off, relu):
    """Lays the filters out in groups of at most six, sizes the tasks and runs
    :func:`nbconv.kernels.conv2d_pixvec._conv2d_pixvec_fwd` on planes of ``rows x pitch``
    (``x`` placed at ``(pt, pl)``) with term offsets ``off``."""
    F = w.shape[0]
    K = off.shape[0]
    N, _, OH, OW = y.shape
    G = -(-F // _pixvec.MAX_FILTERS)
    NF = -(-F // G)
    B = _pixvec.block_positions(NF, y.itemsize)
    wt = np.zeros((G * NF, K), dtype=y.dtype)
    wt[:F] = w.reshape(F, K)
    wt = np.ascontiguousarray(wt.reshape(G, NF, K).transpose(0, 2, 1))
    # tasks of at most _PIXVEC_TASK_BYTES of scratch, at least four per thread
    nblk = -(-((OH - 1) * pitch + OW) // B)
    per = min(max(1, _PIXVEC_TASK_BYTES // (NF * B * y.itemsize)),
              max(1, N * nblk // (4 * numba.get_num_threads())))
    _pixvec._conv2d_pixvec_fwd(x, pt, pl, rows, pitch, wt, b, off, y, per, relu)


def _pixvec_weight_grad(dy, x, gw, pt, pl, dh, dw):
    """Stride-1 weight gradient (groups 1, few filters) as lane-wise dot products along
    output rows: pads ``x`` (sharing left and right padding where it can), then runs
    :func:`nbconv.kernels.conv2d_pixvec._conv2d_pixvec_bwd_weight` with one run of images
    per task (two per thread)."""
    N, C = x.shape[:2]
    F, _, kh, kw = gw.shape
    OH, OW = dy.shape[2], dy.shape[3]
    xp = _zero_padded_shared(x, pt, pl, OH + dh * (kh - 1), OW + dw * (kw - 1))
    K = C * kh * kw
    off = np.zeros(K + _pixvec.TERM_PAD, dtype=np.int64)
    off[:K] = _term_offsets(C, kh, kw, dh, dw, xp.shape[2], xp.shape[3])
    tasks = min(N, 2 * numba.get_num_threads())
    _pixvec._conv2d_pixvec_bwd_weight(xp, dy, off, gw.reshape(F, K), tasks)


def _depthwise(x, w, groups) -> bool:
    """One input channel per filter (``groups == C``): the plane-in-L1 kernels."""
    return groups > 1 and groups == x.shape[1] and w.shape[1] == 1


def _round_up_filters(w, b, groups):
    """``w``/``b`` with zero filters appended up to a multiple of the wide kernels' block of
    output channels (groups == 1 only): LeNet's 6 channels then run as two full blocks of 4
    instead of a full block and a slow partial one (c1 forward 1.3x faster)."""
    from ..kernels.conv2d_wide import FB

    F = w.shape[0]
    if groups != 1 or F % FB == 0 or F == 1:
        return w, b
    Fq = F + FB - F % FB
    wq = np.zeros((Fq,) + w.shape[1:], dtype=w.dtype)
    wq[:F] = w
    bq = np.zeros(Fq, dtype=b.dtype)
    bq[:F] = b
    return wq, bq


def _flip_transpose(w, groups):
    """(F, Cg, kh, kw) -> (C, Fg, kh, kw) with both kernel axes reversed, per group: the
    kernel of the data gradient seen as a forward convolution."""
    F, Cg, kh, kw = w.shape
    Fg = F // groups
    t = w.reshape(groups, Fg, Cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(t.reshape(groups * Cg, Fg, kh, kw))


def _direct_backward(dy, x, w, dx, gw, gb, sy, sx, pt, pl, dh, dw, groups):
    """Driver of the direct algorithm: overwrite ``dx`` (unless None), ``gw`` and ``gb``.

    A strided layer's gradients are those of the stride-1 layer whose output gradient holds
    ``dy`` at every ``sy``-th row and ``sx``-th column and zeros between: the stride-1
    kernels do ``sy*sx`` times the multiplications and still beat the strided loops (3x3
    stride 2, (16, 16 -> 64, 56): 147 -> 19 ms), up to strides of 3x3 (the spread ``dy`` is
    up to ``sy*sx`` times larger than ``dy``).  Where ``x`` or ``w`` holds an inf or NaN the
    zeros make NaN of gradients that never see it; the caller's check of the results then
    recomputes them with the strided loops (:func:`_exact_backward`)."""
    if (sy > 1 or sx > 1) and sy * sx <= 9:
        N, F, OH, OW = dy.shape
        spread = np.zeros((N, F, (OH - 1) * sy + 1, (OW - 1) * sx + 1), dtype=dy.dtype)
        spread[:, :, ::sy, ::sx] = dy
        dy, sy, sx = spread, 1, 1
    if sy == 1 and sx == 1 and _depthwise(x, w, groups):
        _depthwise_backward(dy, x, w, dx, gw, gb, pt, pl, dh, dw, groups)
        return
    if sy == 1 and sx == 1:
        _wide_backward(dy, x, w, dx, gw, gb, pt, pl, dh, dw, groups)
        return
    from ..kernels.conv2d_direct import _conv2d_direct_bwd_data, _conv2d_direct_bwd_weight

    if dx is not None:
        _conv2d_direct_bwd_data(dy, w, dx, sy, sx, pt, pl, dh, dw, groups)
    with_bias = gb is not None
    gbuf = gb if with_bias else np.empty(w.shape[0], dtype=x.dtype)
    _conv2d_direct_bwd_weight(dy, x, gw, gbuf, int(with_bias), sy, sx, pt, pl, dh, dw, groups)


def _finite_array(a) -> bool:
    """Whether every value of ``a`` is finite (on all threads unless ``a`` is small)."""
    from ..kernels._finite import _all_finite, _finite_flat

    flat = a.reshape(-1)  # the drivers' outputs are C-contiguous: a view
    if a.size < _config.SERIAL_BELOW:
        return _finite_flat(flat)
    return _all_finite(flat, 4 * numba.get_num_threads())


def _exact_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, groups):
    """``y`` by the row loops of :mod:`nbconv.kernels.conv2d_direct`, which read only the
    taps that land inside ``x`` (the definition of zero padding: padded positions add no
    term).  The fast kernels multiply explicit zeros of the padding (0 * inf is NaN) and
    Winograd's transforms mix neighbouring values, so where their result is not finite it is
    recomputed here: inf/NaN then reach exactly the outputs whose windows hold them, whatever
    the algorithm."""
    from ..kernels.conv2d_direct import _conv2d_direct_fwd

    bias = np.zeros(w.shape[0], dtype=x.dtype) if b is None else b
    _conv2d_direct_fwd(x, w, bias, y, sy, sx, pt, pl, dh, dw, groups, numba.get_num_threads())


def _exact_backward(dy, x, w, dx, gw, gb, sy, sx, pt, pl, dh, dw, groups):
    """The gradients the fast kernels left non-finite, recomputed by the row loops (see
    :func:`_exact_forward`): ``dx`` gathers only the taps that read ``x``, ``gw`` sums only
    products of ``dy`` with input values (never with zero padding)."""
    from ..kernels.conv2d_direct import _conv2d_direct_bwd_data, _conv2d_direct_bwd_weight

    if dx is not None and not _finite_array(dx):
        _conv2d_direct_bwd_data(dy, w, dx, sy, sx, pt, pl, dh, dw, groups)
    if not _finite_array(gw):
        gbuf = gb if gb is not None else np.empty(w.shape[0], dtype=x.dtype)
        _conv2d_direct_bwd_weight(dy, x, gw, gbuf, int(gb is not None), sy, sx, pt, pl, dh,
                                  dw, groups)


def _depthwise_backward(dy, x, w, dx, gw, gb, pt, pl, dh, dw, groups):
    """Stride-1 depthwise backward: the data gradient is a depthwise convolution of ``dy``
    with the flipped kernel when every channel has one filter (otherwise each input channel
    sums several filters: the wide-row kernel); the weight gradient one task per channel."""
    from ..kernels.conv2d_depthwise import _conv2d_depthwise_bwd_weight, _conv2d_depthwise_fwd

    kh, kw = w.shape[2], w.shape[3]
    if dx is not None and w.shape[0] == x.shape[1]:
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1])
        _conv2d_depthwise_fwd(dy, flipped, np.zeros(w.shape[0], dtype=x.dtype), dx, 1, 1,
                              dh * (kh - 1) - pt, dw * (kw - 1) - pl, dh, dw)
    elif dx is not None:
        _wide_backward(dy, x, w, dx, None, None, pt, pl, dh, dw, groups, need_weight=False)
    with_bias = gb is not None
    gbuf = gb if with_bias else np.empty(w.shape[0], dtype=x.dtype)
    _conv2d_depthwise_bwd_weight(dy, x, gw, gbuf, with_bias, pt, pl, dh, dw)


def _wide_backward(dy, x, w, dx, gw, gb, pt, pl, dh, dw, groups, need_weight=True):
    """Stride-1 backward with the wide-row kernels (``need_weight=False``: ``dx`` only)."""
    from ..kernels.conv2d_wide import FB, _conv2d_wide_bwd_weight, _conv2d_wide_fwd

    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    if dx is not None and _pixvec_fits(C, F, H + ekh, W + ekw, kh, kw, groups, x.itemsize):
        # dx = stride-1 convolution of dy, padded so that the output is (H, W), with the
        # flipped, transposed kernel: C "filters", few enough for the pixel-vector blocks
        _pixvec_forward(dy, _flip_transpose(w, groups), np.zeros(C, dtype=x.dtype), dx,
                        ekh - pt, ekw - pl, dh, dw)
    elif dx is not None:
        dyp = _zero_padded_shared(dy, ekh - pt, ekw - pl, H + ekh, W + ekw)
        wq, bq = _round_up_filters(_flip_transpose(w, groups), np.zeros(C, dtype=x.dtype),
                                   groups)
        _conv2d_wide_fwd(dyp, wq, bq, dx, dh, dw, groups, numba.get_num_threads())
    if not need_weight:
        return
    few = _pixvec_fits(F, C, OH + ekh, OW + ekw, kh, kw, groups, x.itemsize, weight_grad=True)
    if few or (groups == 1 and _regblock_dw_fits(N, OH, OW, F, C, kh, x.itemsize)):
        from ..kernels.conv2d_im2col import _conv2d_im2col_bwd_bias

        if few:
            _pixvec_weight_grad(dy, x, gw, pt, pl, dh, dw)
        else:
            _regblock_weight_grad(dy, x, gw, 1, 1, pt, pl, dh, dw)
        if gb is not None:
            _conv2d_im2col_bwd_bias(dy, gb)
        return
    # (the wide rows multiply dy's zero padding by input values too: an inf in x makes NaN
    # of taps that never see it, which the caller's check recomputes, _exact_backward)
    Hp, Wp = OH + ekh, OW + ekw
    # channel-major, batch-long layouts of the padded input and of dy (see the kernel)
    plane = N * Hp * Wp
    xl = np.empty((C, plane + ekh * Wp + ekw), dtype=x.dtype)
    xl[:, plane:] = 0
    _pad_into(x.transpose(1, 0, 2, 3), xl[:, :plane].reshape(C, N, Hp, Wp), pt, pl)
    # groups == 1: zero filters up to whole blocks of FB keep every task on the unrolled path
    Fq = F if groups != 1 or F % FB == 0 else F + FB - F % FB
    dyl = np.empty((Fq, N, Hp, Wp), dtype=dy.dtype)
    dyl[F:] = 0
    _pad_into(dy.transpose(1, 0, 2, 3), dyl[:F], 0, 0)
    gwq = gw if Fq == F else np.empty((Fq,) + gw.shape[1:], dtype=gw.dtype)
    gbq = np.empty(Fq, dtype=x.dtype) if gb is None or Fq != F else gb
    # chunks of 4 KiB per dy row: four rows plus the input windows stay in L1
    _conv2d_wide_bwd_weight(dyl.reshape(Fq, plane), xl, gwq, gbq, gb is not None,
                            x.dtype.type(0), dh, dw, groups, Wp, 4096 // x.dtype.itemsize)
    if Fq != F:
        gw[...] = gwq[:F]
        if gb is not None:
            gb[...] = gbq[:F]


def _winograd_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, groups):
    """Winograd, or the direct algorithm when ``x`` or ``w`` holds an inf or NaN (so that
    non-finite values reach exactly the outputs they reach in a direct convolution)."""
    from . import _winograd

    if not _winograd.conv2d_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, groups):
        _direct_forward(x, w, b, y, sy, sx, pt, pl, dh, dw, groups)


def _winograd_backward(dy, x, w, dx, gw, gb, sy, sx, pt, pl, dh, dw, groups):
    """The data gradient of a stride-1 convolution is one too (of ``dy`` with the flipped,
    transposed kernel): Winograd (direct when ``dy`` or ``w`` is not finite); the weight
    gradient: the wide-row direct kernel."""
    from . import _winograd

    kh, kw = w.shape[2], w.shape[3]
    if dx is not None and not _winograd.conv2d_forward(
            dy, _flip_transpose(w, 1), None, dx, 1, 1, kh - 1 - pt, kw - 1 - pl, 1, 1, 1):
        _wide_backward(dy, x, w, dx, None, None, pt, pl, dh, dw, groups, need_weight=False)
    _wide_backward(dy, x, w, None, gw, gb, pt, pl, dh, dw, groups)


def _drivers(algorithm: str):
    if algorithm == "direct":
        return _direct_forward, _direct_backward
    if algorithm == "winograd":
        return _winograd_forward, _winograd_backward
    from . import _im2col

    return _im2col.conv2d_forward, _im2col.conv2d_backward


# --------------------------------------------------------------------------- argument handling


#: padded inputs of up to this many values are always accepted (see _geometry's size check)
_PADDED_SLACK = 1 << 26


class _Geom(NamedTuple):
    sy: int
    sx: int
    dh: int
    dw: int
    groups: int
    pt: int
    pb: int
    pl: int
    pr: int
    mode: str
    OH: int
    OW: int


def _geometry(op, x_shape, w_shape, stride, padding, dilation, groups, padding_mode, desc,
              axes=("H", "W")) -> _Geom:
    """Validate and normalise everything but the arrays' dtypes; ``desc`` lists user shapes."""
    try:
        groups = check_int(op, "groups", groups, 1)
        sy, sx = pair(op, "stride", stride, 1)
        dh, dw = pair(op, "dilation", dilation, 1)
    except ValueError as e:
        raise ValueError(f"{e} ({desc})") from None
    check_padding_mode(op, padding_mode)
    N, C, H, W = x_shape
    F, Cg, kh, kw = w_shape
    if C == 0 or H == 0 or W == 0:
        raise ValueError(f"{op}: argument 'x' has an empty channel or spatial dimension ({desc})")
    if 0 in w_shape:
        raise ValueError(f"{op}: argument 'weight' has an empty dimension ({desc})")
    if C % groups:
        raise ValueError(
            f"{op}: argument 'groups'={groups} does not divide the {C} input channels of 'x' "
            f"({desc})"
        )
    if F % groups:
        raise ValueError(
            f"{op}: argument 'groups'={groups} does not divide the {F} output channels of "
            f"'weight' ({desc})"
        )
    if Cg != C // groups:
        raise ValueError(
            f"{op}: argument 'weight' has {Cg} input channels per group but 'x' has "
            f"{C} channels / groups={groups} = {C // groups} ({desc})"
        )
    try:
        pt, pb, pl, pr = conv_padding(op, padding, (H, W), (kh, kw), (sy, sx), (dh, dw))
    except ValueError as e:
        raise ValueError(f"{e} ({desc})") from None
    if padding_mode != "zeros":
        for name, n, pads in ((axes[0], H, (pt, pb)), (axes[1], W, (pl, pr))):
            limit_ok = (
                max(pads) < n if padding_mode == "reflect"
                else max(pads) <= n if padding_mode == "circular" else True
            )
            if not limit_ok:
                rule = "< the input size" if padding_mode == "reflect" else "<= the input size"
                raise ValueError(
                    f"{op}: argument 'padding' {pads} along {name} is too large for "
                    f"padding_mode={padding_mode!r} (needs padding {rule} {n}; {desc})"
                )
    OH = out_size(H, kh, sy, pt, pb, dh, False)
    OW = out_size(W, kw, sx, pl, pr, dw, False)
    for name, n, k, d, p0, p1, o in ((axes[0], H, kh, dh, pt, pb, OH),
                                     (axes[1], W, kw, dw, pl, pr, OW)):
        if o < 1:
            raise ValueError(
                f"{op}: argument 'weight' is too large: along {name} the effective kernel "
                f"{d * (k - 1) + 1} (kernel {k}, dilation {d}) exceeds the padded input "
                f"{n + p0 + p1} (input {n}, padding {(p0, p1)}), output size would be {o} < 1 "
                f"({desc})"
            )
    padded = N * C * (H + pt + pb) * (W + pl + pr)
    if padded > 16 * (N * C * H * W + N * F * OH * OW) + _PADDED_SLACK:
        # some drivers pad explicitly: refuse padding that would dwarf the input and output
        raise ValueError(
            f"{op}: argument 'padding' {(pt, pb, pl, pr)} (top, bottom, left, right) is too "
            f"large: the padded input ({N}, {C}, {H + pt + pb}, {W + pl + pr}) would hold "
            f"{padded} values, more than 16 times the input and output together ({desc})"
        )
    return _Geom(sy, sx, dh, dw, groups, pt, pb, pl, pr, padding_mode, OH, OW)


def _winograd_fits(kh, kw, g: _Geom) -> bool:
    from ._winograd import supports

    return supports(kh, kw, g.sy, g.sx, g.dh, g.dw, g.groups)


def _choose_algorithm(op, algorithm, C, kh, kw, g: _Geom, F, backward=False) -> str:
    """The ``"auto"`` rule (see :func:`conv2d`), from benchmarks/bench_conv.py's numbers and
    a sweep of other shapes (2 cores, float32, forward / backward ms).

    * 3x3, stride 1, dilation 1, groups 1 with at least 32 input and output channels (48 for
      the backward pass): Winograd F(2x2, 3x3).  VGG 27.3 / 102 vs direct 55.2 / 113, ResNet
      18.8 / 58.7 vs 28.9 / 61.1, 64 -> 64 on 8x8 1.9 / 5.9 vs 5.5 / 9.5; with 32 channels
      forward 3.64 vs 3.84 but backward 9.1 vs 8.2; with 16 channels, or 3 (VGG's first
      layer: 45 vs 18 ms), direct wins.  Backward passes on outputs smaller than 10x10 take
      im2col (ResNet's last stage, 512 channels at 7x7, batch 16: 1.02 vs 1.53-2.01 x
      PyTorch; at 14x14 Winograd still wins, 1.05 vs 1.13).  Forward passes on outputs
      smaller than 3x3 take im2col too (resnet18 on 32x32 input, 512 channels at 1x1, batch
      32: 3.9 vs 12.8 ms; NiN's 256 -> 384 at 2x2: 2.11 vs 3.19; at 4x4 Winograd wins, 192
      channels 2.43 vs 2.72), and 5x5 forward passes on outputs smaller than 6x6 (NiN's 96 ->
      256 at 3x3: 4.23 vs 5.58 ms; 64 -> 192 at 4x4: 2.39 vs 2.68; a tie at 6x6).
    * 5x5 forward likewise with at least 32 channels: Winograd on four 3x3 pieces.  AlexNet c2
      21.1 vs im2col 26.6 vs direct 31.8; 64 -> 64 9.0 vs direct 10.5; 32 -> 64 4.9 vs 5.3;
      16 -> 32 1.8 vs 1.4 (direct).  Its backward pass (Winograd data gradient, wide-row weight
      gradient) does not win: 61.7 vs im2col 55.1 on AlexNet c2.  7x7 (nine pieces) loses to
      direct: 11.0 vs 9.3 ms at 64 -> 64.
    * Other stride-1 kernels larger than 1x1: the wide-row direct kernels, except for
      ``groups == 1`` with ``C >= 64`` and ``F >= 128``, where im2col+BLAS wins (AlexNet c2
      5x5 64 -> 192: 26.0 / 53 vs 31.7 / 67; 128 -> 128 5x5: 12.7 / 24 vs 14.0 / 31; but
      64 -> 64 5x5 10.8 / 24 vs 13.5 / 29 and LeNet's few channels stay direct).
    * Strided forward passes (groups 1, kernels larger than 1x1, at least 16 terms): the
      direct algorithm (its pixel-vector blocks on stride phases or its filter-vector blocks,
      see :func:`_strided_regblock`), except again for ``C >= 64`` and ``F >= 128`` (a tie).
      With fewer terms im2col: 3x3 stride 2 1 -> 32 at 28x28 1.3 vs 2.4 x PyTorch.  Grouped
      strided forward passes with fewer than 64 terms per group also run direct (the stride
      phases group by group): groups 32, (16, 128 -> 128, 56) 1.13-1.45 vs 1.70-1.75; with
      more, im2col (groups 4, 64 -> 128: 2.2-2.4 vs 2.1; groups 2: 1.86 vs 1.3-1.7).
      NNlib's 7x7 stride 2 3 -> 64: 3.3 vs im2col 4.6 ms (PyTorch 3.5 in the same run);
      AlexNet c1 0.78-0.93 vs 1.04-1.25 x PyTorch on the filter-vector blocks; 5x5 stride 2
      32 -> 64 at 64x64 1.2-1.3 vs 2.1-2.3 x PyTorch on im2col; 3x3 stride 2 64 -> 128 at
      56x56 1.39-1.43 vs 1.33-1.41.
    * Every other strided pass (backward passes, grouped layers, 1x1 kernels), however small
      the GEMMs, and the forward pass of stride-1 1x1 kernels (groups 1): im2col+BLAS.  The
      direct kernels' strided gradients loop over every output pixel.  Ratios to PyTorch,
      direct / im2col, 3x3 stride 2: backward (128, 3 -> 16, 32) 6.0 / 0.7, (16, 3 -> 64, 56)
      12 / 0.8, (64, 8 -> 16, 28) 12.6 / 1.2; groups 2 (16, 64 -> 128, 56) forward 28 / 1.7,
      backward 30 / 1.2; groups 32 (16, 128 -> 128, 56) 2.9 / 1.7 and 2.5 / 1.0; 1x1 stride 2
      (64, 16 -> 32, 28) 11 / 1.5 and 8 / 0.7; 1x1 stride 1 forward (64, 16 -> 32, 28) 1.9 /
      0.9, (64, 8 -> 16, 28) 1.04 / 0.94.
    * The backward pass of stride-1 1x1 kernels: im2col once the GEMM is big enough in both
      the input (``C >= 64``) and output channels (``F >= 32``), else direct ((64, 8 -> 16,
      28) 0.47 / 0.69, (64, 16 -> 32, 28) 1.31 / 1.48).
    * Depthwise layers (one input channel per group, groups > 1) always run direct (3x3
      stride 2 forward 1.15 / 3.7, backward 1.5 / 5.7).
    * Backward passes on tiny output planes (CIFAR-sized GoogLeNet and NiN at batch 32, im2col
      / direct ms): at most 4 pixels with ``C*kh*kw >= 64`` (512 -> 24 1x1 at 2x2 1.29 / 2.7;
      32 -> 128 5x5 at 2x2 1.04 / 2.2; 24 -> 64 5x5 0.78 / 0.92), at most 16 pixels with
      ``C*kh*kw >= 512`` (32 -> 96 5x5 at 4x4 3.28 / 7.71; 16 -> 32 5x5 at 4x4, 400 terms,
      stays direct: 1.29 / 1.10) take im2col.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{op}: argument 'algorithm' must be one of {ALGORITHMS}, got {algorithm!r}"
        )
    if algorithm == "winograd" and not _winograd_fits(kh, kw, g):
        raise ValueError(
            f"{op}: algorithm 'winograd' needs a kernel of 2 to 9 taps a side, stride 1, "
            f"dilation 1 and groups 1; got kernel {(kh, kw)}, stride {(g.sy, g.sx)}, dilation "
            f"{(g.dh, g.dw)}, groups {g.groups}"
        )
    if algorithm != "auto":
        return algorithm
    case = _Case(C, F, kh, kw, g.groups, g.sy == 1 and g.sx == 1, backward,
                 min(g.OH, g.OW), _winograd_fits(kh, kw, g), g.OH * g.OW)
    for _, applies, algo in _AUTO_RULES:
        if applies(case):
            return algo
    raise AssertionError("unreachable: the last rule always applies")


class _Case(NamedTuple):
    """What the ``"auto"`` rule looks at: channels ``C`` -> filters ``F``, the kernel, the
    groups, whether both strides are 1, the pass, the output's smaller side, whether Winograd
    can run it (kernel of 2-9 taps a side, stride 1, dilation 1, groups 1), and the pixels of
    one output plane."""

    C: int
    F: int
    kh: int
    kw: int
    groups: int
    stride1: bool
    backward: bool
    out: int
    winograd: bool
    pixels: int  # of one output plane

    def winograd_wins(self) -> bool:
        """Rows 2 and 3 of the table below (3x3; 5x5 forward), before the output size."""
        return self.winograd and (
            ((self.kh, self.kw) == (3, 3) and min(self.C, self.F) >= (48 if self.backward
                                                                       else 32))
            or ((self.kh, self.kw) == (5, 5) and not self.backward and min(self.C, self.F) >= 32))


# The "auto" rule as one table: the first row that applies picks the algorithm.  conv2d's
# docstring is generated from the texts; tests/test_pytorch_habits.py checks each row's claim.
_AUTO_RULES = (
    ("the passes of rows 2 and 3 on small outputs: backward passes on outputs smaller than "
     "10x10, forward passes on outputs smaller than 3x3 (3x3 kernels) or 6x6 (5x5 kernels)",
     lambda c: c.winograd_wins() and c.out < (10 if c.backward else 3 if c.kh == 3 else 6),
     "im2col"),
    ("3x3 kernels with stride 1, dilation 1, groups 1 and C, F >= 32 (>= 48 for the backward "
     "pass)",
     lambda c: c.winograd_wins() and (c.kh, c.kw) == (3, 3), "winograd"),
    ("the forward pass of 5x5 kernels with stride 1, dilation 1, groups 1 and C, F >= 32",
     lambda c: c.winograd_wins() and (c.kh, c.kw) == (5, 5), "winograd"),
    ("depthwise layers (groups == C > 1)",
     lambda c: c.groups > 1 and c.C == c.groups, "direct"),
    ("backward passes of stride-1 groups-1 layers on output planes of at most 4 pixels with "
     "C*kh*kw >= 64, or at most 16 pixels with C*kh*kw >= 512",
     lambda c: (c.backward and c.stride1 and c.groups == 1 and c.pixels <= 16
                and c.C * c.kh * c.kw >= (64 if c.pixels <= 4 else 512)), "im2col"),
    ("kernels larger than 1x1 with groups 1, C >= 64 and F >= 128, at stride 1 or in a "
     "forward pass with C*kh*kw >= 16",
     lambda c: (c.kh * c.kw > 1 and c.groups == 1 and c.C >= 64 and c.F >= 128
                and (c.stride1 or (not c.backward and c.C * c.kh * c.kw >= 16))), "im2col"),
    ("other stride-1 kernels larger than 1x1, and strided forward passes of groups-1 kernels "
     "larger than 1x1 with C*kh*kw >= 16",
     lambda c: (c.kh * c.kw > 1 and (c.stride1 or (c.groups == 1 and not c.backward
                                                   and c.C * c.kh * c.kw >= 16))), "direct"),
    ("strided forward passes of grouped kernels larger than 1x1 with (C/groups)*kh*kw < 64",
     lambda c: (c.kh * c.kw > 1 and not c.stride1 and not c.backward and c.groups > 1
                and c.C // c.groups * c.kh * c.kw < 64), "direct"),
    ("every other strided pass (backward passes, other grouped layers, 1x1 kernels, "
     "C*kh*kw < 16), and the forward pass of stride-1 1x1 kernels with groups 1",
     lambda c: not c.stride1 or (c.groups == 1 and not c.backward), "im2col"),
    ("the backward pass of stride-1 1x1 kernels with groups 1, C >= 64 and F >= 32",
     lambda c: c.groups == 1 and c.C >= 64 and c.F >= 32, "im2col"),
    ("everything else (stride-1 1x1 kernels of grouped layers, smaller 1x1 backward passes)",
     lambda c: True, "direct"),
)


def _auto_rule_text(indent: str) -> str:
    """The ``"auto"`` rows as a numbered list for a docstring."""
    lines = []
    for i, (text, _, algo) in enumerate(_AUTO_RULES, 1):
        item = textwrap.wrap(f"{i}. {text}: ``\"{algo}\"``", 88 - len(indent),
                             subsequent_indent="   ", break_on_hyphens=False)
        lines += [indent + line for line in item]
    return "\n".join(lines)


def _want_bias(bias) -> bool:
    if bias is None:
        return False
    if isinstance(bias, (bool, np.bool_)):
        return bool(bias)
    return True  # e.g. the bias array itself: "this layer has a bias"


def _pad_input(x, g: _Geom):
    """Explicitly padded ``x`` and the driver's (pt, pl) for the padding mode."""
    if g.mode == "zeros":
        return x, g.pt, g.pl
    xp = np.pad(x, ((0, 0), (0, 0), (g.pt, g.pb), (g.pl, g.pr)), mode=_NP_PAD_MODE[g.mode])
    return np.ascontiguousarray(xp), 0, 0


def _fold_padding(dxp, H, W, g: _Geom):
    """Adjoint of ``np.pad(x, ..., mode)``: add each padded pixel's gradient to its source."""
    np_mode = _NP_PAD_MODE[g.mode]
    # src[i] = index of the input pixel that padded position i copies (the pad of an arange).
    src_h = np.pad(np.arange(H), (g.pt, g.pb), mode=np_mode)
    src_w = np.pad(np.arange(W), (g.pl, g.pr), mode=np_mode)
    t = dxp[:, :, g.pt:g.pt + H, :].copy()
    for i in [*range(g.pt), *range(g.pt + H, g.pt + H + g.pb)]:
        t[:, :, src_h[i], :] += dxp[:, :, i, :]
    dx = t[:, :, :, g.pl:g.pl + W].copy()
    for j in [*range(g.pl), *range(g.pl + W, g.pl + W + g.pr)]:
        dx[:, :, :, src_w[j]] += t[:, :, :, j]
    return dx


def _tap_reads_input(n, o, s, p, t) -> bool:
    """Whether kernel tap ``t`` (dilation 1) reads a real input pixel for some output
    ``i < o``: ``0 <= i*s - p + t < n``."""
    a = p - t
    i = max(0, -(-a // s))  # the first output whose tap lands at or after input index 0
    return i < o and i * s < a + n


def _trim_taps(op, weight, g: _Geom, H, W, algorithm, auto, backward):
    """Drop the kernel rows and columns that read only zero padding, whatever the output
    pixel (small maps: a 3x3 layer on 1x1 maps is a 1x1 layer, nine times less work; resnet18
    on 32x32 input has three such 512-channel layers).  Exact: with zero padding those taps
    add no term (SPEC section 2), and their weight gradient is 0.

    Returns ``(weight, g, algorithm, (r0, r1, c0, c1))`` -- the kept tap ranges -- or None when
    every tap reads the input somewhere (or the padding is not zeros, or the layer dilated).
    With ``auto`` the algorithm is chosen again for the smaller kernel (NiN's 3x3 384 -> 10
    layer on 1x1 maps: a 1x1 layer, which im2col runs 4x faster than the 3x3 one's direct).
    """
    kh, kw = weight.shape[2], weight.shape[3]
    if g.mode != "zeros" or g.dh != 1 or g.dw != 1 or kh * kw == 1:
        return None
    rows = [t for t in range(kh) if _tap_reads_input(H, g.OH, g.sy, g.pt, t)]
    cols = [t for t in range(kw) if _tap_reads_input(W, g.OW, g.sx, g.pl, t)]
    if not rows or not cols or (rows[0], rows[-1], cols[0], cols[-1]) == (0, kh - 1, 0, kw - 1):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # tap r0 - 1 misses every output, so the new top padding pt - r0 is >= 0 (likewise below)
    pt, pl = g.pt - r0, g.pl - c0
    pb = (g.OH - 1) * g.sy + (r1 - r0) - H - pt
    pr = (g.OW - 1) * g.sx + (c1 - c0) - W - pl
    g = g._replace(pt=pt, pb=pb, pl=pl, pr=pr)
    if auto:
        algorithm = _choose_algorithm(op, "auto", weight.shape[1] * g.groups, r1 - r0, c1 - c0,
                                      g, weight.shape[0], backward=backward)
    elif algorithm == "winograd" and not _winograd_fits(r1 - r0, c1 - c0, g):
        algorithm = "im2col"
    return np.ascontiguousarray(weight[:, :, r0:r1, c0:c1]), g, algorithm, (r0, r1, c0, c1)


def _conv2d_impl(op, x, weight, bias, g: _Geom, algorithm, relu=False, auto=False):
    """Forward on validated 4-D arrays of one dtype (then ``y = relu(y)`` with ``relu``).

    An empty batch gives an empty output without calling a driver.  Non-finite values go
    through :func:`_exact_forward`: inputs holding inf or NaN skip the fast drivers when the
    inputs are smaller to check than the output (LeNet's first layer: 4.4x fewer values), else
    a fast result holding inf or NaN is recomputed (ReLU keeps NaN, so the check may follow
    it).  Winograd always has its result checked: huge finite inputs can overflow in its
    transforms.
    """
    y = np.empty((x.shape[0], weight.shape[0], g.OH, g.OW), dtype=x.dtype)
    if y.size == 0:
        return y
    trimmed = _trim_taps(op, weight, g, x.shape[2], x.shape[3], algorithm, auto, False)
    if trimmed is not None:
        weight, g, algorithm, _ = trimmed
    forward, _ = _drivers(algorithm)
    xp, pt, pl = _pad_input(x, g)
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    check_inputs = algorithm != "winograd" and x.size + weight.size < y.size
    relu_done = False
    if check_inputs and not all(_finite_array(a) for a in (x, weight, bias) if a is not None):
        _exact_forward(xp, weight, bias, y, *args)
    elif algorithm == "direct":
        forward(xp, weight, bias, y, *args, relu=relu)
        relu_done = relu
    else:
        forward(xp, weight, bias, y, *args)
    if not check_inputs and not _finite_array(y):
        _exact_forward(xp, weight, bias, y, *args)
        relu_done = False
    if relu and not relu_done:
        _relu_in_place(y)
    return y


def _relu_in_place(y):
    from ..kernels.activations import _relu_fwd

    flat = y.reshape(-1)
    _relu_fwd(flat, flat)


def _conv2d_backward_impl(op, dy, x, weight, g: _Geom, want_bias, need_dx, algorithm,
                          auto=False):
    """Backward on validated arrays; an empty batch gives an empty ``dx`` and zero weight
    and bias gradients, non-finite results are recomputed by :func:`_exact_backward`."""
    if x.shape[0] == 0:
        return (np.empty(x.shape, dtype=x.dtype) if need_dx else None,
                np.zeros(weight.shape, dtype=x.dtype),
                np.zeros(weight.shape[0], dtype=x.dtype) if want_bias else None)
    full_shape = weight.shape
    trimmed = _trim_taps(op, weight, g, x.shape[2], x.shape[3], algorithm, auto, True)
    if trimmed is not None:
        weight, g, algorithm, _ = trimmed
    _, backward = _drivers(algorithm)
    xp, pt, pl = _pad_input(x, g)
    dxp = np.empty(xp.shape, dtype=x.dtype) if need_dx else None
    gw = np.empty(weight.shape, dtype=x.dtype)
    gb = np.empty(weight.shape[0], dtype=x.dtype) if want_bias else None
    args = (g.sy, g.sx, pt, pl, g.dh, g.dw, g.groups)
    backward(dy, xp, weight, dxp, gw, gb, *args)
    _exact_backward(dy, xp, weight, dxp, gw, gb, *args)
    if trimmed is not None:  # the dropped taps never read the input: zero gradient
        r0, r1, c0, c1 = trimmed[3]
        gw_full = np.zeros(full_shape, dtype=x.dtype)
        gw_full[:, :, r0:r1, c0:c1] = gw
        gw = gw_full
    dx = dxp
    if need_dx and g.mode != "zeros":
        dx = _fold_padding(dxp, x.shape[2], x.shape[3], g)
    return dx, gw, gb


def _check_bias(op, bias, dtype, F, desc):
    if bias is None:
        return None
    bias = as_float_array(op, "bias", bias, dtype=dtype)
    if bias.shape != (F,):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({F},) (one value per output channel), got "
            f"shape {tuple(bias.shape)} ({desc})"
        )
    return bias


def _check_dy(op, dy, expected, desc):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(
            f"{op}: argument 'dy' has shape {tuple(dy.shape)} but the convolution output has "
            f"shape {tuple(expected)} ({desc})"
        )


def _batched(op, x, ndim, layout):
    """``x`` with a batch axis (``(x, False)`` when it has one, ``(x[None], True)`` for the
    unbatched input PyTorch also takes); any other ndim raises ValueError naming ``x``."""
    if x.ndim == ndim - 1:
        return x[None], True
    check_ndim(op, "x", x, ndim, layout)
    return x, False


def _batched_grad(op, dy, unbatched, ndim, layout):
    """``dy`` with the batch axis that :func:`_batched` gave ``x`` (dy must match x)."""
    if unbatched:
        check_ndim(op, "dy", dy, ndim - 1, f"({layout[len('(N, '):]} like the unbatched x")
        return dy[None]
    check_ndim(op, "dy", dy, ndim, layout)
    return dy


# --------------------------------------------------------------------------- 2-D


@_device.dispatch
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
    algorithm : {"auto", "direct", "im2col", "winograd"}
        ``"direct"``: numba loop nests; ``"im2col"``: patches unfolded into columns and
        multiplied by BLAS in bounded chunks; ``"winograd"``: Winograd F(2x2, 3x3), 16 BLAS
        products on transformed tiles (stride 1, dilation 1, groups 1, kernels of 2 to 9 taps
        a side, larger ones as 3x3 pieces; inputs or weights holding inf/NaN are computed
        directly, so that such values reach exactly the outputs they reach in a direct
        convolution).  ``"auto"`` takes the first of these rules that applies (``C`` input
        channels, ``F`` filters; "stride 1" on both axes; see :func:`_choose_algorithm` for
        the measurements behind them):

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
    return _conv2d_checked("conv2d", x, weight, bias, stride, padding, dilation, groups,
                           padding_mode, algorithm)


conv2d.__doc__ = conv2d.__doc__.replace("{AUTO_RULE}", _auto_rule_text(" " * 8))


def _conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", algorithm="auto"):
    """``relu(conv2d(...))`` on host arrays, the ReLU fused into the store of the direct
    kernels where they can (``Conv2d`` followed by ``ReLU`` in a ``Sequential``)."""
    return _conv2d_checked("conv2d", x, weight, bias, stride, padding, dilation, groups,
                           padding_mode, algorithm, relu=True)


def _conv2d_checked(op, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                    algorithm, relu=False):
    x = as_float_array(op, "x", x)
    x, unbatched = _batched(op, x, 4, _X_LAYOUTS)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, 4, _W_LAYOUT)
    desc = f"x shape {tuple(x.shape[unbatched:])}, weight shape {tuple(weight.shape)}"
    g = _geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                  desc)
    bias = _check_bias(op, bias, x.dtype, weight.shape[0], desc)
    algo = _choose_algorithm(op, algorithm, x.shape[1], weight.shape[2], weight.shape[3], g,
                              weight.shape[0])
    y = _conv2d_impl(op, x, weight, bias, g, algo, relu, auto=algorithm == "auto")
    return y[0] if unbatched else y


@_device.dispatch
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
    algorithm : {"auto", "direct", "im2col", "winograd"}, keyword-only
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
    op = "conv2d_backward"
    x = as_float_array(op, "x", x)
    desc = f"x shape {tuple(x.shape)}"
    x, unbatched = _batched(op, x, 4, _X_LAYOUTS)
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, 4, _W_LAYOUT)
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    desc = f"dy shape {tuple(dy.shape)}, {desc}, weight shape {tuple(weight.shape)}"
    dy = _batched_grad(op, dy, unbatched, 4, "(N, F, OH, OW)")
    g = _geometry(op, x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                  desc)
    _check_dy(op, dy, (x.shape[0], weight.shape[0], g.OH, g.OW), desc)
    algo = _choose_algorithm(op, algorithm, x.shape[1], weight.shape[2], weight.shape[3], g,
                              weight.shape[0], backward=True)
    dx, gw, gb = _conv2d_backward_impl(op, dy, x, weight, g, _want_bias(bias),
                                       check_bool(op, "need_dx", need_dx), algo,
                                       auto=algorithm == "auto")
    return (dx[0] if unbatched and dx is not None else dx), gw, gb


# --------------------------------------------------------------------------- 1-D


def _conv1d_args(op, stride, padding, dilation):
    s = single(op, "stride", stride, 1)
    d = single(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(
                f"{op}: argument 'padding' must be an int, 'same' or 'valid', got {padding!r}"
            )
        p = padding
    else:
        p = (0, single(op, "padding", padding, 0))
    return (1, s), p, (1, d)


@_device.dispatch
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
    op = "conv1d"
    x = as_float_array(op, "x", x)
    desc = f"x shape {tuple(x.shape)}"
    x, unbatched = _batched(op, x, 3, "(N, C, L) or unbatched (C, L)")
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    desc = f"{desc}, weight shape {tuple(weight.shape)}"
    s2, p2, d2 = _conv1d_args(op, stride, padding, dilation)
    x4, w4 = x[:, :, None, :], weight[:, :, None, :]
    g = _geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                  axes=("(height 1)", "L"))
    bias = _check_bias(op, bias, x.dtype, weight.shape[0], desc)
    algo = _choose_algorithm(op, algorithm, x.shape[1], 1, weight.shape[2], g, weight.shape[0])
    y = _conv2d_impl(op, x4, w4, bias, g, algo, auto=algorithm == "auto")[:, :, 0, :]
    return y[0] if unbatched else y


@_device.dispatch
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
    op = "conv1d_backward"
    x = as_float_array(op, "x", x)
    desc = f"x shape {tuple(x.shape)}"
    x, unbatched = _batched(op, x, 3, "(N, C, L) or unbatched (C, L)")
    weight = as_float_array(op, "weight", weight, dtype=x.dtype)
    check_ndim(op, "weight", weight, 3, "(F, C // groups, k)")
    dy = as_float_array(op, "dy", dy, dtype=x.dtype)
    desc = f"dy shape {tuple(dy.shape)}, {desc}, weight shape {tuple(weight.shape)}"
    dy = _batched_grad(op, dy, unbatched, 3, "(N, F, OL)")
    s2, p2, d2 = _conv1d_args(op, stride, padding, dilation)
    x4, w4 = x[:, :, None, :], weight[:, :, None, :]
    g = _geometry(op, x4.shape, w4.shape, s2, p2, d2, groups, padding_mode, desc,
                  axes=("(height 1)", "L"))
    _check_dy(op, dy, (x.shape[0], weight.shape[0], g.OW), desc)
    algo = _choose_algorithm(op, algorithm, x.shape[1], 1, weight.shape[2], g, weight.shape[0])
    dx, gw, gb = _conv2d_backward_impl(op, dy[:, :, None, :], x4, w4, g, _want_bias(bias),
                                       check_bool(op, "need_dx", need_dx), algo,
                                       auto=algorithm == "auto")
    if dx is not None:
        dx = dx[0, :, 0, :] if unbatched else dx[:, :, 0, :]
    return dx, gw[:, :, 0, :], gb

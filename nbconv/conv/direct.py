"""The direct algorithm's driver: loop-nest numba kernels, one family per kind of layer.

:func:`conv2d_forward` and :func:`conv2d_backward` take the engine's normalised arguments
(C-contiguous arrays of one dtype, outputs preallocated, the layer's
:class:`~nbconv._checks.conv.Geom` with zero padding) and run the family that
:mod:`nbconv.conv.plan` names for the shape:

* ``regblock``: filter-vector register blocks (``kernels/conv/register_blocks.py``);
* ``pixvec`` and ``phases``: pixel-vector register blocks, on the input itself or on its
  stride phases (``kernels/conv/pixel_vectors.py``);
* ``depthwise``: one plane per task (``kernels/conv/depthwise.py``);
* ``wide``: wide rows on an explicitly padded input (``kernels/conv/wide.py``);
* ``rows``: the general strided row loops (``kernels/conv/rows.py``), which are also the
  exact reference for non-finite values (:mod:`nbconv.conv.exact`).

Here the inputs are padded and laid out as each family's kernels expect (weights transposed or
rounded up to whole register blocks, term and pixel offsets); the kernels do the arithmetic.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from .. import _config
from .._checks.conv import Geom
from ..kernels.activations import _relu_fwd
from ..kernels.conv import pixel_vectors as _pixvec
from ..kernels.conv import register_blocks as _regblock
from ..kernels.conv.depthwise import _conv2d_depthwise_bwd_weight, _conv2d_depthwise_fwd
from ..kernels.conv.layout import FB, _conv2d_im2col_bwd_bias, _pad_planes
from ..kernels.conv.register_blocks import _conv2d_regblock_bwd_weight
from ..kernels.conv.rows import (
    _conv2d_direct_bwd_data,
    _conv2d_direct_bwd_weight,
    _conv2d_direct_fwd,
)
from ..kernels.conv.wide import _conv2d_wide_bwd_weight, _conv2d_wide_fwd
from . import plan

__all__ = ["conv2d_forward", "conv2d_backward", "relu_in_place", "prepare_forward",
           "writes_rows", "block_note"]


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


def conv2d_forward(x, w, b, y, g: Geom, kernels, relu=False):
    """Driver of the direct algorithm: ``y[:] = conv(x, w) + b``, or ``relu(conv(x, w) + b)``
    with ``relu`` (in the register-blocked and pixel-vector kernels' stores; a pass over
    ``y`` after the others), in geometry ``g`` (zero padding), by the plan's kernel family
    ``kernels[0]`` (:func:`nbconv.conv.plan.direct_forward_kernel`)."""
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    F, Cg, kh, kw = w.shape
    family = kernels[0]
    if family == "phases":
        _phase_forward(x, w, b, y, g, relu)
        return
    if family == "regblock":
        _regblock_forward(x, w, b, y, g, relu)
        return
    if family == "pixvec":
        _pixvec_forward(x, w, b, y, g, relu)
        return
    if family == "depthwise":
        _conv2d_depthwise_fwd(x, w, b, y, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw)
    elif family == "wide":
        OH, OW = y.shape[2], y.shape[3]
        xp = _zero_padded(x, g.pt, g.pl, OH + g.dh * (kh - 1), OW + g.dw * (kw - 1))
        wq, bq = _round_up_filters(w, b, g.groups)
        _conv2d_wide_fwd(xp, wq, bq, y, g.dh, g.dw, g.groups, numba.get_num_threads())
    else:
        _conv2d_direct_fwd(x, w, b, y, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups,
                           numba.get_num_threads())
    if relu:
        relu_in_place(y)


def relu_in_place(y):
    """``y = max(y, 0)`` in place (NaN kept), for the drivers that cannot fuse the ReLU."""
    flat = y.reshape(-1)
    _relu_fwd(flat, flat)


def _regblock_padded(x, OH, OW, kh, kw, g: Geom):
    """``(xp, Hp, Wp)``: ``x`` zero-padded to exactly the rows and columns the windows of an
    ``OH x OW`` output read (the register-blocked kernels address it by raw offsets)."""
    Hp = (OH - 1) * g.sy + g.dh * (kh - 1) + 1
    Wp = (OW - 1) * g.sx + g.dw * (kw - 1) + 1
    return _zero_padded(x, g.pt, g.pl, Hp, Wp), Hp, Wp


@functools.lru_cache(maxsize=64)
def _term_offsets(C, kh, kw, dh, dw, rows, pitch):
    """``off[(c*kh + p)*kw + q] = (c*rows + p*dh)*pitch + q*dw``: where the reduction terms of
    a window lie from its origin in a padded input of planes ``rows x pitch`` (int64, cached,
    read-only)."""
    off = np.add.outer(np.add.outer(np.arange(C) * rows, np.arange(kh) * dh) * pitch,
                       np.arange(kw) * dw).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


def _forward_kernel(parallel, N, weight_shape, OH, OW):
    """The forward kernel ``parallel`` or its serial twin (:data:`SERIAL_TWINS`), as
    :func:`~nbconv.conv.plan.serial_forward` decides for the thread count at hand (another
    count later still computes the same result)."""
    if not plan.serial_forward(N, weight_shape, OH, OW, numba.get_num_threads()):
        return parallel
    return SERIAL_TWINS[parallel]


#: the serial twin of each forward kernel of the register-block and pixel-vector families
SERIAL_TWINS = {_regblock._conv2d_regblock_fwd: _regblock._conv2d_regblock_fwd_serial,
                _pixvec._conv2d_pixvec_fwd: _pixvec._conv2d_pixvec_fwd_serial}


def _regblock_forward(x, w, b, y, g: Geom, relu=False):
    """Register-blocked direct forward (groups 1, float32/float64): pads ``x`` explicitly,
    lays the weights out as (C*kh*kw, filters rounded up to whole vectors) and the term
    offsets, then runs :func:`nbconv.kernels.conv.register_blocks._conv2d_regblock_fwd` (row
    taps where :func:`~nbconv.kernels.conv.register_blocks.row_taps` names the layer)."""
    _prepared_regblock(x.shape[0], w, g)(x, b, y, relu)


def _prepared_regblock(N, w, g: Geom, rows=False):
    """:func:`_regblock_forward`'s weight layout, offsets and kernel (on the calling thread
    for layers of at most :data:`~nbconv.conv.plan.SERIAL_MACS`) made once for batches of
    ``N``: ``run(x, b, y, relu)`` (``b`` not None); with ``rows`` ``y`` is rows of channels
    (OH, OW, N, F)."""
    F, C, kh, kw = w.shape
    OH, OW = g.OH, g.OW
    Hp = (OH - 1) * g.sy + g.dh * (kh - 1) + 1
    Wp = (OW - 1) * g.sx + g.dw * (kw - 1) + 1
    nvec, _, Fpad = plan.regblock_vectors(F, w.itemsize)
    wt = np.zeros((C * kh * kw, Fpad), dtype=w.dtype)
    wt[:, :F] = w.reshape(F, -1).T
    off = _term_offsets(C, kh, kw, g.dh, g.dw, Hp, Wp)
    taps = _regblock.row_taps(kw, g.sx, g.dw)
    roff = _term_offsets(C, kh, 1, g.dh, 1, Hp, Wp)  # each kernel row's first tap
    pt, pl, sy, sx = g.pt, g.pl, g.sy, g.sx
    kernel = _forward_kernel(_regblock._conv2d_regblock_fwd, N, w.shape, OH, OW)

    def run(x, b, y, relu):
        if rows and not y.flags.c_contiguous:  # the kernel stores rows by address
            raise ValueError(f"rows output must be C-contiguous, got strides {y.strides}")
        kernel(_zero_padded(x, pt, pl, Hp, Wp), wt, b, off, y, sy, sx, nvec, relu, rows, roff,
               taps)

    return run


def prepare_forward(x_shape, w, g: Geom, kernels, out_rows=False):
    """:func:`conv2d_forward` for inputs of ``x_shape`` with the weight layout and the
    per-call decisions of the register-block and pixel-vector families made once: a closure
    ``run(x, b, y, relu)`` (``b`` may be None), or None for the other families (then call
    :func:`conv2d_forward`).  With ``out_rows`` (register blocks only: see
    :func:`writes_rows`) ``y`` is rows of channels (OH, OW, N, F).  Sized for the thread
    count at hand; another count later still computes the same result."""
    family = kernels[0]
    if g.groups != 1 or family not in ("regblock", "pixvec") or (out_rows
                                                                  and family != "regblock"):
        return None
    zeros = np.zeros(w.shape[0], dtype=w.dtype)
    inner = (_prepared_regblock(x_shape[0], w, g, out_rows) if family == "regblock"
             else _prepared_pixvec(x_shape, w, g))

    def run(x, b, y, relu):
        inner(x, zeros if b is None else b, y, relu)

    return run


def _regblock_weight_grad(dy, x, gw, g: Geom):
    """Register-blocked weight gradient (groups 1): ``dy`` with the filters last, the pixels'
    window origins in the padded input, then
    :func:`nbconv.kernels.conv.register_blocks._conv2d_regblock_bwd_weight`."""

    N, C = x.shape[:2]
    F, _, kh, kw = gw.shape
    OH, OW = dy.shape[2], dy.shape[3]
    xp, Hp, Wp = _regblock_padded(x, OH, OW, kh, kw, g)
    nvec, _, Fpad = plan.regblock_vectors(F, dy.itemsize)
    dyt = np.empty((N, OH, OW, Fpad), dtype=dy.dtype)
    if Fpad > F:
        dyt[..., F:] = 0
    dyt[..., :F] = dy.transpose(0, 2, 3, 1)
    _conv2d_regblock_bwd_weight(xp, dyt.reshape(N * OH * OW, Fpad),
                                _pixel_origins(N, OH, OW, C * Hp * Wp, g.sy * Wp, g.sx), gw, kh,
                                kw, g.dh, g.dw, nvec)


@functools.lru_cache(maxsize=64)
def _pixel_origins(N, OH, OW, image, row, col):
    """``off[(n*OH + i)*OW + j] = n*image + i*row + j*col``: the window origins of every
    output pixel of a batch in a padded input (int64, cached, read-only)."""
    off = (np.arange(N)[:, None, None] * image + np.arange(OH)[None, :, None] * row
           + np.arange(OW)[None, None, :] * col).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


def block_note(family, weight_shape, g: Geom, itemsize, N=1, threads=1) -> str:
    """How the forward kernel family ``family`` blocks this layer of ``N`` images, for
    :func:`nbconv.conv.explain`: the register blocks' pixels and filter vectors (and row
    taps), the pixel-vector blocks' lanes, and whether the kernel stays on the calling thread
    (:func:`~nbconv.conv.plan.serial_forward` for ``threads``); "" for the other families."""
    F, _, kh, kw = weight_shape
    serial = (", on the calling thread" if plan.serial_forward(N, weight_shape, g.OH, g.OW,
                                                                threads) else "")
    if family == "regblock":
        nvec = plan.regblock_vectors(F, itemsize)[0]
        taps = ", row taps" if _regblock.row_taps(kw, g.sx, g.dw) else ""
        return (f"{_regblock.NP}-pixel blocks x {nvec} filter vector{'s' * (nvec > 1)}{taps}"
                + serial)
    if family in ("pixvec", "phases"):
        lanes = _pixvec._block_shape(1, family == "pixvec")[0] // itemsize  # phases: narrow
        return (f"{lanes}-lane pixel vectors" + (" on stride phases" if family == "phases"
                                                 else "") + serial)
    return ""


def writes_rows(g: Geom, kernels) -> bool:
    """Whether :func:`prepare_forward` can write rows of channels for this plan: the
    register-block family (groups 1)."""
    return g.groups == 1 and kernels[0] == "regblock"


def _pixvec_forward(x, w, b, y, g: Geom, relu=False):
    """Stride-1 forward (groups 1, few filters) with pixel-vector register blocks: pads ``x``
    (sharing left and right padding where it can) in a pass of its own, or leaves that to
    each task when the images are small and the batch has two per thread; then
    :func:`_pixvec_run`."""
    _prepared_pixvec(x.shape, w, g)(x, b, y, relu)


def _prepared_pixvec(x_shape, w, g: Geom):
    """:func:`_pixvec_forward`'s decisions, weight layout, offsets and kernel (on the calling
    thread for layers of at most :data:`~nbconv.conv.plan.SERIAL_MACS`) made once for inputs
    of ``x_shape``: ``run(x, b, y, relu)`` (``b`` not None)."""
    F, C, kh, kw = w.shape
    N, _, H, W = x_shape
    OH, OW = g.OH, g.OW
    pt, pl = g.pt, g.pl
    Hp, Wp = OH + g.dh * (kh - 1), OW + g.dw * (kw - 1)
    rows, pitch = _shared_planes(H, W, pt, pl, Hp, Wp)
    padded = (rows, pitch) != (H, W) or pt or pl
    pad_pass = padded and not (N >= 2 * numba.get_num_threads()
                               and C * rows * pitch * w.itemsize <= plan.PIXVEC_STAGE_BYTES)
    kt, kl = (0, 0) if pad_pass else (pt, pl)  # else each task pads its own image
    off = _term_offsets(C, kh, kw, g.dh, g.dw, rows, pitch)
    wt, per = _pixvec_layout(w, off.shape[0], N, OH, OW, pitch, wide=True)
    kernel = _forward_kernel(_pixvec._conv2d_pixvec_fwd, N, w.shape, OH, OW)

    def run(x, b, y, relu):
        if pad_pass:
            x = _zero_padded_shared(x, pt, pl, Hp, Wp)
        kernel(x, kt, kl, rows, pitch, wt, b, off, y, per, relu, True)

    return run


def _phase_planes(OH, OW, kh, kw, g: Geom):
    """``(Hq, Wq)``: the rows and columns of the stride-phase planes that an ``OH x OW``
    output reads (output pixel ``(i, j)``, tap ``(p, q)``: row ``i + p*dh // sy``, column
    ``j + q*dw // sx`` of phase ``(p*dh % sy, q*dw % sx)``)."""
    return OH + g.dh * (kh - 1) // g.sy, OW + g.dw * (kw - 1) // g.sx


@functools.lru_cache(maxsize=64)
def _phase_offsets(C, kh, kw, sy, sx, dh, dw, Hq, Wq):
    """The term offsets (as :func:`_term_offsets`) of a window in the stride-phase planes of
    :func:`nbconv.kernels.conv.pixel_vectors._stride_phases` (int64, cached, read-only)."""
    p, q = np.arange(kh) * dh, np.arange(kw) * dw
    plane = (np.arange(C)[:, None, None] * sy + (p % sy)[None, :, None]) * sx \
        + (q % sx)[None, None, :]
    off = ((plane * Hq + (p // sy)[None, :, None]) * Wq
           + (q // sx)[None, None, :]).ravel().astype(np.int64)
    off.flags.writeable = False
    return off


def _phase_forward(x, w, b, y, g: Geom, relu=False):
    """Strided forward with pixel-vector register blocks: splits the zero-padded input into
    its stride phases (a parallel pass), which makes the layer a stride-1 one over
    ``C*sy*sx`` planes, then :func:`_pixvec_run` (once per group, on copies of the group's
    planes and filters: grouped layers on the strided row kernel ran 24-30x PyTorch's time,
    3x3 stride 2, groups 2, (16, 64 -> 128, 56))."""
    F, Cg, kh, kw = w.shape
    N, _, OH, OW = y.shape
    groups, sy, sx = g.groups, g.sy, g.sx
    Hq, Wq = _phase_planes(OH, OW, kh, kw, g)
    xq = np.empty((N, Cg * groups * sy * sx, Hq, Wq), dtype=y.dtype)
    _pixvec._stride_phases(np.ascontiguousarray(x), g.pt, g.pl, sy, sx, xq)
    off = _phase_offsets(Cg, kh, kw, sy, sx, g.dh, g.dw, Hq, Wq)
    if groups == 1:
        _pixvec_run(xq, 0, 0, Hq, Wq, w, b, y, off, relu)
        return
    Fg, planes = F // groups, Cg * sy * sx
    yg = np.empty((N, Fg, OH, OW), dtype=y.dtype)
    for k in range(groups):
        xg = np.ascontiguousarray(xq[:, k * planes:(k + 1) * planes])
        _pixvec_run(xg, 0, 0, Hq, Wq, w[k * Fg:(k + 1) * Fg], b[k * Fg:(k + 1) * Fg], yg, off,
                    relu)
        y[:, k * Fg:(k + 1) * Fg] = yg


def _pixvec_run(x, pt, pl, rows, pitch, w, b, y, off, relu):
    """Lays the filters out in groups of at most six, sizes the tasks and runs
    :func:`nbconv.kernels.conv.pixel_vectors._conv2d_pixvec_fwd` (or its serial twin: see
    :func:`~nbconv.conv.plan.serial_forward`) on planes of ``rows x pitch`` (``x`` placed at
    ``(pt, pl)``) with term offsets ``off``."""
    N, _, OH, OW = y.shape
    wt, per = _pixvec_layout(w, off.shape[0], N, OH, OW, pitch)
    kernel = _forward_kernel(_pixvec._conv2d_pixvec_fwd, N, w.shape, OH, OW)
    kernel(x, pt, pl, rows, pitch, wt, b, off, y, per, relu)


def _pixvec_layout(w, K, N, OH, OW, pitch, wide=False):
    """``(wt, per)`` of the pixel-vector forward kernel (blocks of native vectors with
    ``wide``): the weights as ``G`` groups of at most six filters (G, K, NF), zeros past
    ``F``, and the blocks per task (at most ``plan.PIXVEC_TASK_BYTES`` of scratch; four tasks
    per thread, or as many whole rounds of one per thread as hold ``plan.PIXVEC_TASK_MACS``
    each when there is less work)."""
    F = w.shape[0]
    G = -(-F // _pixvec.MAX_FILTERS)
    NF = -(-F // G)
    B = _pixvec.block_positions(NF, w.itemsize, wide)
    wt = np.zeros((G * NF, K), dtype=w.dtype)
    wt[:F] = w.reshape(F, K)
    wt = np.ascontiguousarray(wt.reshape(G, NF, K).transpose(0, 2, 1))
    nblk = -(-((OH - 1) * pitch + OW) // B)
    threads = numba.get_num_threads()
    rounds = min(4, max(1, N * nblk * K * NF * B * G // (plan.PIXVEC_TASK_MACS * threads)))
    per = min(max(1, plan.PIXVEC_TASK_BYTES // (NF * B * w.itemsize)),
              max(1, -(-N * nblk // (rounds * threads))))
    return wt, per


def _pixvec_weight_grad(dy, x, gw, g: Geom):
    """Stride-1 weight gradient (groups 1, few filters) as lane-wise dot products along
    output rows: pads ``x`` (sharing left and right padding where it can), then runs
    :func:`nbconv.kernels.conv.pixel_vectors._conv2d_pixvec_bwd_weight` with one run of images
    per task (two per thread)."""
    N, C = x.shape[:2]
    F, _, kh, kw = gw.shape
    OH, OW = dy.shape[2], dy.shape[3]
    xp = _zero_padded_shared(x, g.pt, g.pl, OH + g.dh * (kh - 1), OW + g.dw * (kw - 1))
    K = C * kh * kw
    off = np.zeros(K + _pixvec.TERM_PAD, dtype=np.int64)
    off[:K] = _term_offsets(C, kh, kw, g.dh, g.dw, xp.shape[2], xp.shape[3])
    tasks = min(N, 2 * numba.get_num_threads())
    _pixvec._conv2d_pixvec_bwd_weight(xp, dy, off, gw.reshape(F, K), tasks)


def _round_up_filters(w, b, groups):
    """``w``/``b`` with zero filters appended up to a multiple of the wide kernels' block of
    output channels (groups == 1 only): LeNet's 6 channels then run as two full blocks of 4
    instead of a full block and a slow partial one (c1 forward 1.3x faster)."""

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


def conv2d_backward(dy, x, w, dx, gw, gb, g: Geom, kernels, spread):
    """Driver of the direct algorithm: overwrite ``dx`` (unless None), ``gw`` (unless None;
    ``x`` may then be None) and ``gb`` (unless None), with the plan's kernel families
    ``kernels = (data, weight)``, on ``dy`` spread to stride 1 first when ``spread``
    (:func:`nbconv.conv.plan.direct_backward_kernels`).
    Where ``x`` or ``w`` holds an inf or NaN the zeros of a spread ``dy`` or of explicit
    padding make NaN of gradients that never see it; the engine's check of the results then
    recomputes them with the row loops (:func:`nbconv.conv.exact.exact_backward`)."""
    if spread:
        H, W = (dx if x is None else x).shape[2:]
        dy, g = spread_dy(dy, g.sy, g.sx), g.spread(w.shape[2], w.shape[3], H, W)
    if dx is not None:
        _DATA_GRADIENT[kernels[0]](dy, w, dx, g)
    if gw is not None:
        weight_gradient(kernels[1], dy, x, gw, gb, g)


def spread_dy(dy, sy, sx):
    """``dy`` with ``sy - 1`` zero rows and ``sx - 1`` zero columns between its own: the
    output gradient of the stride-1 layer whose gradients are the strided layer's."""
    N, F, OH, OW = dy.shape
    spread = np.zeros((N, F, (OH - 1) * sy + 1, (OW - 1) * sx + 1), dtype=dy.dtype)
    spread[:, :, ::sy, ::sx] = dy
    return spread


def weight_gradient(family, dy, x, gw, gb, g: Geom):
    """Overwrite ``gw`` (and ``gb`` unless None) by the weight-gradient kernels of
    ``family``: ``"depthwise"``, ``"pixvec"``, ``"regblock"`` and ``"wide"`` at stride 1,
    ``"rows"`` at any stride."""
    _WEIGHT_GRADIENT[family](dy, x, gw, gb, g)

# The gradient kernels by family (the plan's names), stride 1 except "rows":
# data(dy, w, dx, g), weight(dy, x, gw, gb, g).


def _depthwise_data(dy, w, dx, g: Geom):
    """The data gradient of a stride-1 depthwise layer with one filter per channel (a strided
    layer's ``dy`` arrives spread to stride 1): the depthwise forward kernel on ``dy`` with the
    flipped kernel, stride 1 and padding ``dh*(kh-1) - pt`` on top, ``dw*(kw-1) - pl`` on the
    left (negative values crop), which makes the output ``dx``'s (H, W)."""
    t = g.data_gradient(w.shape[2], w.shape[3], dx.shape[2], dx.shape[3])
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    _conv2d_depthwise_fwd(dy, flipped, np.zeros(w.shape[0], dtype=dx.dtype), dx, 1, 1,
                          t.pt, t.pl, t.dh, t.dw)


def _pixvec_data(dy, w, dx, g: Geom):
    """``dx`` = stride-1 convolution of ``dy``, padded so that the output is (H, W), with the
    flipped, transposed kernel: C "filters", few enough for the pixel-vector blocks."""
    t = g.data_gradient(w.shape[2], w.shape[3], dx.shape[2], dx.shape[3])
    _pixvec_forward(dy, _flip_transpose(w, g.groups), np.zeros(dx.shape[1], dtype=dx.dtype), dx,
                    t)


def _wide_data(dy, w, dx, g: Geom):
    """The data gradient as a wide-row forward pass over the padded ``dy``."""
    C, H, W = dx.shape[1:]
    kh, kw = w.shape[2], w.shape[3]
    t = g.data_gradient(kh, kw, H, W)
    dyp = _zero_padded_shared(dy, t.pt, t.pl, H + t.dh * (kh - 1), W + t.dw * (kw - 1))
    wq, bq = _round_up_filters(_flip_transpose(w, g.groups), np.zeros(C, dtype=dx.dtype),
                               g.groups)
    _conv2d_wide_fwd(dyp, wq, bq, dx, t.dh, t.dw, t.groups, numba.get_num_threads())


def _rows_data(dy, w, dx, g: Geom):
    _conv2d_direct_bwd_data(dy, w, dx, g.sy, g.sx, g.pt, g.pl, g.dh, g.dw, g.groups)


def _depthwise_weight(dy, x, gw, gb, g: Geom):
    """One task per channel."""
    with_bias = gb is not None
    gbuf = gb if with_bias else np.empty(gw.shape[0], dtype=x.dtype)
    _conv2d_depthwise_bwd_weight(dy, x, gw, gbuf, with_bias, g.pt, g.pl, g.dh, g.dw)


def _pixvec_weight(dy, x, gw, gb, g: Geom):
    _pixvec_weight_grad(dy, x, gw, g)
    if gb is not None:
        _conv2d_im2col_bwd_bias(dy, gb)


def _regblock_weight(dy, x, gw, gb, g: Geom):
    _regblock_weight_grad(dy, x, gw, g)
    if gb is not None:
        _conv2d_im2col_bwd_bias(dy, gb)


def _wide_weight(dy, x, gw, gb, g: Geom):
    """The weight gradient on the wide rows: channel-major, batch-long layouts of the padded
    input and of ``dy``.  (The wide rows multiply dy's zero padding by input values too: an
    inf in x makes NaN of taps that never see it, which the engine's check recomputes.)"""
    N, C = x.shape[:2]
    F, _, kh, kw = gw.shape
    OH, OW = dy.shape[2], dy.shape[3]
    dh, dw, groups = g.dh, g.dw, g.groups
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    Hp, Wp = OH + ekh, OW + ekw
    plane = N * Hp * Wp
    xl = np.empty((C, plane + ekh * Wp + ekw), dtype=x.dtype)
    xl[:, plane:] = 0
    _pad_into(x.transpose(1, 0, 2, 3), xl[:, :plane].reshape(C, N, Hp, Wp), g.pt, g.pl)
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


def _rows_weight(dy, x, gw, gb, g: Geom):
    with_bias = gb is not None
    gbuf = gb if with_bias else np.empty(gw.shape[0], dtype=x.dtype)
    _conv2d_direct_bwd_weight(dy, x, gw, gbuf, int(with_bias), g.sy, g.sx, g.pt, g.pl, g.dh,
                              g.dw, g.groups)


_DATA_GRADIENT = {"depthwise": _depthwise_data, "pixvec": _pixvec_data, "wide": _wide_data,
                  "rows": _rows_data}
_WEIGHT_GRADIENT = {"depthwise": _depthwise_weight, "pixvec": _pixvec_weight,
                    "regblock": _regblock_weight, "wide": _wide_weight, "rows": _rows_weight}

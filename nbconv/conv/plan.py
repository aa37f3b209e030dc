"""The rules of the convolution engine: which algorithm, and which kernels within it, run a
layer of a given shape -- the one place where the thresholds behind those choices live.
:mod:`nbconv.conv.convplan` applies them once per shape into a :class:`~.convplan.ConvPlan`.

* :data:`AUTO_RULES` is the ``algorithm="auto"`` table: named rules, exactly one of which
  applies to any layer, each picking ``"tapgemm"``, ``"winograd"``, ``"im2col"`` or
  ``"direct"``; :func:`choose_algorithm` applies it and :func:`auto_rule_text` renders it
  for :func:`nbconv.conv2d`'s docstring and the README.
* :func:`direct_forward_kernel` and :func:`direct_backward_kernels` pick the family of direct
  kernels (register blocks, pixel vectors, stride phases, depthwise planes, wide rows, the
  general row loops); :func:`im2col_forward_path` im2col's way through a forward pass.
* A section holds the drivers' tuning constants (buffer and task sizes), each with its
  reason.  The drivers read them at call time, so tests may patch them here.
* :data:`DEVICE_RULES`, the last section, picks the CUDA kernels (direct or implicit GEMM) of
  a layer on the device, again as named rules exactly one of which applies.

The measurements behind the thresholds (from an AVX2-only AMD EPYC, 2 cores, float32) are in
``benchmarks/results/conv_plan_measurements.csv``, under each rule's or constant's name.

Everything here is pure Python on shapes: no arrays, no kernels.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

from .. import _config
from .._checks.conv import Geom, check_algorithm, winograd_supports
from ..kernels._ir import lanes as vector_lanes

# --------------------------------------------------------------------------- the algorithm


def winograd_fits(kh, kw, g: Geom) -> bool:
    """Whether the Winograd kernels cover this kernel size and geometry."""
    return winograd_supports(kh, kw, g.sy, g.sx, g.dh, g.dw, g.groups)


class Case(NamedTuple):
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
    stride: int  # the larger of the two
    dilated: bool

    # The named conditions the rules are made of (each rule below states all it needs).

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def terms(self) -> int:
        """Terms of one output value's sum within a group: ``(C/groups)*kh*kw``."""
        return self.C // self.groups * self.taps

    def small_maps(self) -> bool:
        """Tap-GEMM's ground: groups 1, no dilation, strides up to 2, ``C >= 16``, and small
        output planes -- backward passes up to 8x8 (16x16 for kernels larger than 1x1 with
        ``C >= 32``); forward passes of kernels larger than 1x1 up to 2x2, 4x4 with ``C >= 32``
        or 8x8 with ``C <= 96``; forward 1x1 passes with ``C >= 64`` up to 4x4, 6x6 with
        ``F >= 64`` or 8x8 with ``F <= 64``."""
        if not (self.groups == 1 and not self.dilated and self.stride <= 2 and self.C >= 16):
            return False
        if self.backward:
            return self.pixels <= 64 or (self.pixels <= 256 and self.taps > 1 and self.C >= 32)
        if self.taps > 1:
            return (self.pixels <= 4 or (self.pixels <= 16 and self.C >= 32)
                    or (self.pixels <= 64 and self.C <= 96))
        return self.C >= 64 and (self.pixels <= 16 or (self.pixels <= 36 and self.F >= 64)
                                 or (self.pixels <= 64 and self.F <= 64))

    def winograd_shape(self) -> bool:
        """Winograd's ground before the output size: it can run the layer, and either a 3x3
        kernel with ``C, F >= 32`` (``>= 48`` backward) or a 5x5 forward pass with
        ``C, F >= 32``."""
        if not self.winograd:
            return False
        if (self.kh, self.kw) == (3, 3):
            return min(self.C, self.F) >= (48 if self.backward else 32)
        return (self.kh, self.kw) == (5, 5) and not self.backward and min(self.C, self.F) >= 32

    def small_output(self) -> bool:
        """An output too small for Winograd's tiles to pay: smaller than 10x10 backward, than
        3x3 forward with a 3x3 kernel, than 6x6 forward with a 5x5 one."""
        return self.out < (10 if self.backward else 3 if self.kh == 3 else 6)

    def depthwise(self) -> bool:
        """One input channel per group: ``groups == C > 1``."""
        return self.groups > 1 and self.C == self.groups

    def tiny_backward(self) -> bool:
        """A stride-1 groups-1 backward pass on at most 4 output pixels with ``C*kh*kw >= 64``,
        or at most 16 with ``C*kh*kw >= 512``."""
        return (self.backward and self.stride1 and self.groups == 1 and self.pixels <= 16
                and self.C * self.taps >= (64 if self.pixels <= 4 else 512))

    def many_channels(self) -> bool:
        """A groups-1 kernel larger than 1x1 with ``C >= 64`` and ``F >= 128``, at stride 1 or
        in a forward pass with ``C*kh*kw >= 16``."""
        return (self.taps > 1 and self.groups == 1 and self.C >= 64 and self.F >= 128
                and (self.stride1 or (not self.backward and self.C * self.taps >= 16)))

    def direct_kernels(self) -> bool:
        """A kernel larger than 1x1 at stride 1, or in a strided groups-1 forward pass with
        ``C*kh*kw >= 16``."""
        return self.taps > 1 and (self.stride1 or (self.groups == 1 and not self.backward
                                                   and self.C * self.taps >= 16))

    def grouped_strided_few_terms(self) -> bool:
        """A strided forward pass of a grouped (not depthwise) kernel larger than 1x1 with
        ``(C/groups)*kh*kw < 64``."""
        return (self.taps > 1 and not self.stride1 and not self.backward and self.groups > 1
                and not self.depthwise() and self.terms < 64)

    def pointwise_backward(self) -> bool:
        """The backward pass of a stride-1 1x1 kernel."""
        return self.taps == 1 and self.stride1 and self.backward


class AutoRule(NamedTuple):
    """One rule of the ``"auto"`` table: its name, its text, its complete condition and the
    algorithm it picks."""

    name: str
    text: str
    applies: object  # Case -> bool
    algorithm: str


def _general(c: Case) -> bool:
    """Outside the grounds of the first rules (tap-GEMM, Winograd, depthwise)."""
    return not c.small_maps() and not c.winograd_shape() and not c.depthwise()


# The "auto" rule as one table of named rules, exactly one of which applies to any layer
# (tests/test_conv_plan.py checks it over a grid of shapes).  conv2d's docstring and the README
# list are generated from the texts; the measurements behind each threshold are in
# benchmarks/results/conv_plan_measurements.csv under the rule's name.
AUTO_RULES = (
    AutoRule("small-maps",
             "small output planes (tap-GEMM's ground, see `Case.small_maps`): groups 1, no "
             "dilation, strides up to 2, C >= 16; backward passes on up to 8x8 outputs (16x16 "
             "for kernels larger than 1x1 with C >= 32); forward passes of kernels larger than "
             "1x1 on up to 2x2, on 4x4 with C >= 32 or on 8x8 with C <= 96; 1x1 forward passes "
             "with C >= 64 on up to 4x4, on 6x6 with F >= 64 or on 8x8 with F <= 64",
             Case.small_maps, "tapgemm"),
    AutoRule("winograd-small-output",
             "outside small-maps, 3x3 kernels with stride 1, dilation 1, groups 1 and C, F >= 32 "
             "(48 backward) and 5x5 forward passes with C, F >= 32, on outputs smaller than "
             "10x10 (backward), 3x3 (3x3 forward) or 6x6 (5x5 forward)",
             lambda c: not c.small_maps() and c.winograd_shape() and c.small_output(), "im2col"),
    AutoRule("winograd-3x3",
             "outside small-maps, 3x3 kernels with stride 1, dilation 1, groups 1 and C, F >= 32 "
             "(48 backward) on outputs of at least 10x10 (backward) or 3x3 (forward)",
             lambda c: (not c.small_maps() and c.winograd_shape() and not c.small_output()
                        and (c.kh, c.kw) == (3, 3)), "winograd"),
    AutoRule("winograd-5x5-forward",
             "outside small-maps, forward passes of 5x5 kernels with stride 1, dilation 1, "
             "groups 1 and C, F >= 32 on outputs of at least 6x6",
             lambda c: (not c.small_maps() and c.winograd_shape() and not c.small_output()
                        and (c.kh, c.kw) == (5, 5)), "winograd"),
    AutoRule("depthwise", "depthwise layers (groups == C > 1)", Case.depthwise, "direct"),
    AutoRule("tiny-backward",
             "outside small-maps and the Winograd shapes, backward passes of stride-1 groups-1 "
             "layers on output planes of at most 4 pixels with C*kh*kw >= 64, or at most 16 "
             "pixels with C*kh*kw >= 512",
             lambda c: _general(c) and c.tiny_backward(), "im2col"),
    AutoRule("many-channels",
             "outside small-maps, the Winograd shapes and tiny-backward, groups-1 kernels "
             "larger than 1x1 with C >= 64 and F >= 128, at stride 1 or in a forward pass with "
             "C*kh*kw >= 16",
             lambda c: _general(c) and not c.tiny_backward() and c.many_channels(), "im2col"),
    AutoRule("direct-kernels",
             "outside small-maps, the Winograd shapes, depthwise, tiny-backward and "
             "many-channels, kernels larger than 1x1 at stride 1, and strided forward passes of "
             "groups-1 kernels larger than 1x1 with C*kh*kw >= 16",
             lambda c: (_general(c) and not c.tiny_backward() and not c.many_channels()
                        and c.direct_kernels()), "direct"),
    AutoRule("grouped-strided-few-terms",
             "strided forward passes of grouped (not depthwise) kernels larger than 1x1 with "
             "(C/groups)*kh*kw < 64",
             Case.grouped_strided_few_terms, "direct"),
    AutoRule("strided-or-pointwise",
             "outside small-maps, the Winograd shapes, depthwise, tiny-backward, many-channels, "
             "direct-kernels and grouped-strided-few-terms, every strided pass (backward "
             "passes, other grouped layers, 1x1 kernels, C*kh*kw < 16) and the forward pass of "
             "stride-1 1x1 kernels with groups 1",
             lambda c: (_general(c) and not c.tiny_backward() and not c.many_channels()
                        and not c.direct_kernels() and not c.grouped_strided_few_terms()
                        and (not c.stride1 or (c.groups == 1 and not c.backward))), "im2col"),
    AutoRule("pointwise-backward-many-channels",
             "outside small-maps and tiny-backward, the backward pass of stride-1 1x1 kernels "
             "with groups 1, C >= 64 and F >= 32",
             lambda c: (_general(c) and not c.tiny_backward() and c.pointwise_backward()
                        and c.groups == 1 and c.C >= 64 and c.F >= 32), "im2col"),
    AutoRule("pointwise-else",
             "outside small-maps, depthwise and tiny-backward, stride-1 1x1 kernels of grouped "
             "layers and the backward pass of stride-1 1x1 kernels with groups 1 and C < 64 or "
             "F < 32",
             lambda c: (_general(c) and not c.tiny_backward() and c.taps == 1 and c.stride1
                        and (c.groups > 1 or (c.backward and (c.C < 64 or c.F < 32)))),
             "direct"),
)


def case_of(C, kh, kw, g: Geom, F, backward=False) -> Case:
    """The :class:`Case` the ``"auto"`` rule sees for a layer of this geometry."""
    return Case(C, F, kh, kw, g.groups, g.sy == 1 and g.sx == 1, backward, min(g.OH, g.OW),
                winograd_fits(kh, kw, g), g.OH * g.OW, max(g.sy, g.sx), g.dh > 1 or g.dw > 1)


def auto_rule(case: Case) -> AutoRule:
    """The one rule of :data:`AUTO_RULES` that applies to ``case``."""
    found = [rule for rule in AUTO_RULES if rule.applies(case)]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} auto rules apply to {case}: "
                             f"{[r.name for r in found]}")
    return found[0]


def choose_algorithm(op, algorithm, C, kh, kw, g: Geom, F, backward=False) -> str:
    """``algorithm`` itself when it was named (checked against the geometry), else the pick of
    the ``"auto"`` rule that applies (:data:`AUTO_RULES`)."""
    check_algorithm(op, algorithm, kh, kw, g)
    if algorithm != "auto":
        return algorithm
    return auto_rule(case_of(C, kh, kw, g, F, backward)).algorithm


def auto_rule_text(indent: str, code: str = "``") -> str:
    """The ``"auto"`` rules as a list: for a docstring (``code="``"``, reST) or for the README
    (``code="`"``, Markdown; tests/test_pytorch_habits.py checks it is there)."""
    lines = []
    for rule in AUTO_RULES:
        text = rule.text.replace("`Case.small_maps`", f"{code}Case.small_maps{code}")
        if code == "`":  # Markdown: C*kh*kw must not turn kh italic
            text = text.replace("*", "\\*")
        item = textwrap.wrap(f"* {code}{rule.name}{code}: {text}: {code}\"{rule.algorithm}\""
                             f"{code}", 88 - len(indent), subsequent_indent="  ",
                             break_on_hyphens=False)
        lines += [indent + line for line in item]
    return "\n".join(lines)


# ------------------------------------------------------------------------- the direct kernel family
# Each threshold keeps the reason in a sentence; the measurements behind it are in
# benchmarks/results/conv_plan_measurements.csv under the constant's or function's name.


#: largest weight matrix of the register-blocked kernel: every block re-reads all of it, which
#: pays while it stays in L2
REGBLOCK_MAX_WEIGHT_BYTES = 128 * 1024


def regblock_vectors(F, itemsize):
    """``(nvec, block, Fpad)`` of the register-blocked kernels: filter vectors per block (one
    for up to a vector's lanes, else two), filters per block, filters rounded up to blocks."""
    lanes = vector_lanes(itemsize)
    nvec = 1 if F <= lanes else 2
    block = nvec * lanes
    return nvec, block, -(-F // block) * block


def regblock_fits(F, C, kh, kw, itemsize) -> bool:
    """Whether the register-blocked kernel takes these (groups 1) filters: at least 16 of
    them (fewer leave vector lanes idle), a kernel larger than 1x1, and a weight matrix
    (filters padded to whole blocks) that stays in L2."""
    Fpad = regblock_vectors(F, itemsize)[2]
    return F >= 16 and kh * kw > 1 and C * kh * kw * Fpad * itemsize <= REGBLOCK_MAX_WEIGHT_BYTES


def strided_regblock(F, C, kh, kw, OW, itemsize, lanes=None) -> bool:
    """Whether a strided groups-1 layer runs on the register-blocked kernel rather than on
    the stride phases: where it fits (:func:`regblock_fits`) and either the output rows are
    short (fewer than 16 columns: the phases' wide rows and whole blocks waste more) or the
    reduction has at least 128 terms -- with vectors of 64 bytes (AVX-512) at any number of
    filters, with narrower ones (AVX2) at most 32 filters.  ``lanes``: the vector lanes of
    ``itemsize``-byte floats (default: the host's), so the rule of either ISA can be asked
    on any host."""
    lanes = vector_lanes(itemsize) if lanes is None else lanes
    if not regblock_fits(F, C, kh, kw, itemsize):
        return False
    if OW < 16:
        return True
    return C * kh * kw >= 128 and (F <= 32 or lanes * itemsize >= 64)


#: most bytes of the output gradient (filters last) that the register-blocked weight gradient
#: may stream in all, every task reading all of it
REGBLOCK_MAX_DY_TRAFFIC = 32 * 2**20


def regblock_dw_fits(N, OH, OW, F, C, kh, itemsize, threads) -> bool:
    """Whether the register-blocked weight gradient takes this layer (groups 1): at least 16
    filters, enough (channel, kernel row) tasks for the ``threads``, and little ``dy``
    traffic."""
    _, block, Fpad = regblock_vectors(F, itemsize)
    tasks = C * kh * (Fpad // block)
    return (F >= 16 and tasks >= 4 * threads
            and tasks * N * OH * OW * Fpad * itemsize <= REGBLOCK_MAX_DY_TRAFFIC)


#: fewest filters of the filter-vector register blocks (:func:`regblock_fits`); fewer take the
#: pixel-vector blocks
PIXVEC_BELOW_FILTERS = 16


#: largest padded input image (all channels) of the pixel-vector blocks: every block reads
#: all of its channels, which pays while they stay in L2
PIXVEC_MAX_IMAGE_BYTES = 512 * 1024


#: most filters of the pixel-vector weight gradient (more ran slower than the wide rows)
PIXVEC_GRAD_MAX_FILTERS = 8


def pixvec_fits(F, C, Hp, Wp, kh, kw, groups, itemsize, weight_grad=False) -> bool:
    """Whether a stride-1 layer takes the pixel-vector blocks: groups 1, fewer than 16
    filters (8 for the weight gradient), a kernel larger than 1x1 and a padded input image
    ``C x Hp x Wp`` small enough for L2.  For the data gradient ``F`` is the layer's input
    channels and the image is the padded ``dy``."""
    return (F < PIXVEC_BELOW_FILTERS and (F <= PIXVEC_GRAD_MAX_FILTERS or not weight_grad)
            and _pixvec_takes(C, Hp, Wp, kh, kw, groups, itemsize))


def _pixvec_takes(C, Hp, Wp, kh, kw, groups, itemsize) -> bool:
    """What every pixel-vector layer needs: groups 1, a kernel larger than 1x1 and a padded
    input image ``C x Hp x Wp`` within :data:`PIXVEC_MAX_IMAGE_BYTES`."""
    return groups == 1 and kh * kw > 1 and C * Hp * Wp * itemsize <= PIXVEC_MAX_IMAGE_BYTES


#: longest reduction (``C*kh*kw`` terms) for which the forward pass and the weight gradient
#: take the pixel-vector blocks whatever the number of filters: with few terms the register
#: blocks' per-block work (accumulators filled and stored one value at a time) outweighs their
#: arithmetic, and the wide rows read every plane once per filter block
PIXVEC_MAX_TERMS = 75


def pixvec_few_terms(C, Hp, Wp, kh, kw, groups, itemsize) -> bool:
    """Whether a stride-1 forward pass or weight gradient takes the pixel-vector blocks for
    its short reduction (:data:`PIXVEC_MAX_TERMS`), any number of filters; the image bound
    of :func:`pixvec_fits` applies."""
    return C * kh * kw <= PIXVEC_MAX_TERMS and _pixvec_takes(C, Hp, Wp, kh, kw, groups, itemsize)


def depthwise(C, Cg, groups) -> bool:
    """One input channel per filter (``groups == C > 1``, ``Cg = C // groups == 1``): the
    plane-in-L1 kernels."""
    return groups > 1 and groups == C and Cg == 1


#: largest stride area (sy*sx) whose gradients run on the stride-1 kernels over a spread dy
SPREAD_MAX_STRIDE_AREA = 9


def direct_forward_kernel(F, C, kh, kw, OH, OW, sy, sx, dh, dw, groups, itemsize) -> str:
    """The direct kernel family of a forward pass (``C`` input channels, ``F`` filters):

    * ``"phases"``: pixel-vector blocks over the input's stride phases -- strided layers
      with groups 1 that the register blocks do not take (:func:`strided_regblock`), and
      strided grouped layers (not depthwise, not 1x1);
    * ``"pixvec"``: pixel-vector blocks for stride-1 layers with a short reduction
      (:func:`pixvec_few_terms`: first layers);
    * ``"regblock"``: filter-vector register blocks, groups-1 layers that fit
      (:func:`regblock_fits`);
    * ``"pixvec"`` also for the other stride-1 layers with few filters (:func:`pixvec_fits`);
    * ``"depthwise"``: one plane per task (:func:`depthwise`);
    * ``"wide"``: wide rows on an explicitly padded input, the other stride-1 layers;
    * ``"rows"``: the general strided row loops, the rest.
    """
    stride1 = sy == 1 and sx == 1
    dwise = depthwise(C, C // groups, groups)
    if not stride1 and groups == 1 and kh * kw > 1 and not strided_regblock(F, C, kh, kw, OW,
                                                                             itemsize):
        return "phases"
    if not stride1 and groups > 1 and not dwise and (kh, kw) != (1, 1):
        return "phases"
    Hp, Wp = OH + dh * (kh - 1), OW + dw * (kw - 1)
    if stride1 and pixvec_few_terms(C, Hp, Wp, kh, kw, groups, itemsize):
        return "pixvec"
    if groups == 1 and regblock_fits(F, C, kh, kw, itemsize):
        return "regblock"
    if stride1 and pixvec_fits(F, C, Hp, Wp, kh, kw, groups, itemsize):
        return "pixvec"
    if dwise:
        return "depthwise"
    return "wide" if stride1 else "rows"


class DirectBackward(NamedTuple):
    """The direct kernels of a backward pass: whether ``dy`` is spread to stride 1 first, the
    family of the data gradient and that of the weight (and bias) gradient."""

    spread: bool
    data: str    # "depthwise", "pixvec", "wide" or "rows"
    weight: str  # "depthwise", "pixvec", "regblock", "wide" or "rows"


def direct_backward_kernels(N, C, H, W, F, kh, kw, OH, OW, sy, sx, dh, dw, groups,
                            itemsize, threads) -> DirectBackward:
    """The direct kernels of a backward pass.

    A strided layer's gradients are those of the stride-1 layer whose output gradient holds
    ``dy`` at every ``sy``-th row and ``sx``-th column and zeros between: the stride-1
    kernels do ``sy*sx`` times the multiplications and still beat the strided row loops, up
    to a stride area of :data:`SPREAD_MAX_STRIDE_AREA`.  Stride-1 depthwise layers take the
    plane kernels (the data gradient too when every channel has one filter); other stride-1
    layers the pixel-vector blocks where few channels receive the data gradient or few
    filters (or, unspread, few terms: :func:`pixvec_few_terms`) the weight gradient, the
    register blocks for the weight gradient where they fit (:func:`regblock_dw_fits`), else
    the wide rows; the rest the row loops.
    """
    spread = (sy > 1 or sx > 1) and sy * sx <= SPREAD_MAX_STRIDE_AREA
    if spread:
        OH, OW, sy, sx = (OH - 1) * sy + 1, (OW - 1) * sx + 1, 1, 1
    if sy != 1 or sx != 1:
        return DirectBackward(False, "rows", "rows")
    ekh, ekw = dh * (kh - 1), dw * (kw - 1)
    if depthwise(C, C // groups, groups):
        return DirectBackward(spread, "depthwise" if F == C else "wide", "depthwise")
    data = "pixvec" if pixvec_fits(C, F, H + ekh, W + ekw, kh, kw, groups, itemsize) else "wide"
    if (pixvec_fits(F, C, OH + ekh, OW + ekw, kh, kw, groups, itemsize, weight_grad=True)
            or (not spread and pixvec_few_terms(C, OH + ekh, OW + ekw, kh, kw, groups,
                                                itemsize))):
        weight = "pixvec"
    elif groups == 1 and regblock_dw_fits(N, OH, OW, F, C, kh, itemsize, threads):
        weight = "regblock"
    else:
        weight = "wide"
    return DirectBackward(spread, data, weight)


# -------------------------------------------------------------------------------- the im2col path


def im2col_forward_path(N, C, H, W, F, kh, kw, OH, OW, sy, sx, pt, pl, groups, itemsize,
                        blas, dh=1, dw=1) -> str:
    """How im2col runs a forward pass: ``"pointwise"`` (a stride-1 1x1 layer without padding
    is one product per image, no columns), ``"fused"`` (groups 1, a weight matrix within
    :data:`FUSED_MAX_WEIGHT_BYTES` and bands of at least :data:`FUSED_MIN_COLS` pixels: each
    task builds its band's columns and multiplies them on its own thread; needs a CBLAS gemm,
    ``blas``) or ``"columns"`` (chunks of columns, then the products).  Patch layers (kernel
    = stride, no padding or dilation) take ``"columns"``: their columns are one fast
    rearrangement of the input (:mod:`nbconv.kernels.conv.patches`)."""
    if (kh, kw, sy, sx, pt, pl, groups) == (1, 1, 1, 1, 0, 0, 1) and (OH, OW) == (H, W):
        return "pointwise"
    if ((kh, kw, pt, pl) == (sy, sx, 0, 0) and (dh == 1 or kh == 1) and (dw == 1 or kw == 1)
            and OH * kh <= H and OW * kw <= W):
        return "columns"
    band = fused_band(C // groups * kh * kw, OH, OW, itemsize)
    if (blas and groups == 1 and F * C * kh * kw * itemsize <= FUSED_MAX_WEIGHT_BYTES
            and band and band * OW >= FUSED_MIN_COLS):
        return "fused"
    return "columns"


def fused_band(K, OH, OW, itemsize):
    """Output rows per task of the fused forward pass: as many as fit
    :data:`FUSED_COLS_BYTES` of columns (``K`` numbers per pixel), and never more than
    ``IM2COL_MAX_BYTES``; 0 when one row does not fit (then the chunked path runs).

    >>> from nbconv.conv.plan import fused_band
    >>> fused_band(363, 55, 55, 4), fused_band(4608, 1024, 1024, 4)
    (6, 0)
    """
    limit = min(FUSED_COLS_BYTES, _config.IM2COL_MAX_BYTES)
    return min(OH, limit // (K * OW * itemsize))


# --------------------------------------------------------------------------- tuning of the drivers
# The drivers read these at call time, so tests may patch them here.


#: scratch of one pixel-vector task (its outputs, all filters): stays in L1
PIXVEC_TASK_BYTES = 32 * 1024

#: largest direct forward (multiply-adds) that runs on the calling thread: waking the
#: others costs more than they save (LeNet's layers at batch 1)
SERIAL_MACS = 1 << 17


def serial_forward(N, weight_shape, OH, OW, threads) -> bool:
    """Whether a direct register-block or pixel-vector forward of ``N`` images runs on the
    calling thread: at most :data:`SERIAL_MACS` multiply-adds, or a single thread of
    ``threads``, where the parallel kernel only adds the cost of its launch."""
    F, Cg, kh, kw = weight_shape
    return threads == 1 or N * F * OH * OW * Cg * kh * kw <= SERIAL_MACS


#: fewest multiply-adds worth a pixel-vector task of its own: below it a task's scratch,
#: bias fill and copy-out cost more than spreading the work gains (LeNet c1 at batch 1)
PIXVEC_TASK_MACS = 1 << 15


#: largest padded image that a pixel-vector task pads itself (in L2) when the batch has two
#: images per thread; larger ones (or fewer) are padded in a pass of their own first
PIXVEC_STAGE_BYTES = 256 * 1024


#: target size of one task's column buffer in the fused forward pass (one core's L2)
FUSED_COLS_BYTES = 512 * 1024


#: largest weight matrix for the fused pass: every task's small product re-reads (packs) all
#: of it, which pays only while it stays in L2
FUSED_MAX_WEIGHT_BYTES = 256 * 1024


#: fewest output pixels per task of the fused pass: smaller products cost more in BLAS's
#: per-call work than the fusion saves
FUSED_MIN_COLS = 256


#: output rows narrower than this build their columns per (image, channel), see _columns
NARROW_ROWS = 16


#: output planes with fewer pixels than this are multiplied as one GEMM per chunk and copied
#: into place, instead of one GEMM per image written in place
BATCHED_BELOW = 1024


#: target size of one chunk's V and M buffers together (never above IM2COL_MAX_BYTES): large
#: enough for BLAS's products, small enough to stay in the last-level cache
WINOGRAD_CHUNK_BYTES = 8 * 2**20


#: fewest output columns (filters or channels) per task of a tap-GEMM product: narrower
#: products cost BLAS more in per-call work than the second core gives back
TAPGEMM_MIN_SLAB = 16


def tapgemm_row_slabs(plane_rows, rows, cols, threads, weight_grad=False) -> bool:
    """Whether the tap-GEMM products of a pass are cut into slabs of output rows (``rows``,
    over ``plane_rows`` rows of pixels) rather than of the ``cols`` columns (filters or
    channels): with several threads and at least two rows of pixels, when the rows outnumber
    the columns; for the weight gradient, which then sums each slab's (F, C) products apart,
    when ``cols = F*C`` is at most 8 times the rows.  Column slabs made the concurrent BLAS
    calls each pack the whole input block, and two threads ran no faster than one."""
    if threads < 2 or plane_rows < 2:
        return False
    return cols <= 8 * rows if weight_grad else rows > cols


# ------------------------------------------------------------------------------- the CUDA device
# Device plans (``device="cuda"``) run one of two algorithms: ``"implicit-gemm"``, the kernels of
# nbconv.cuda.kernels.conv2d_im2col (the im2col columns gathered into shared-memory tiles, never
# written out), or ``"direct"``, those of nbconv.cuda.kernels.conv2d_direct (a thread per output
# or input element, a block per weight element).  Their thresholds come from the kernels' tile
# shapes, not yet from GPU timings.

#: the algorithms of device plans
DEVICE_ALGORITHMS = ("direct", "implicit-gemm")

#: the device algorithm that runs each host name of ``algorithm``: there are no Winograd or
#: tap-GEMM kernels on the device, and every GEMM-based name takes the implicit-GEMM kernels
DEVICE_ALGORITHM_OF = {"direct": "direct", "im2col": "implicit-gemm",
                       "winograd": "implicit-gemm", "tapgemm": "implicit-gemm"}

#: most groups the implicit-GEMM kernels take: the grid's z axis (at most 65535 blocks) holds
#: one group each
DEVICE_MAX_GROUPS = 65535

#: fewest filters and input channels per group for the implicit-GEMM kernels: fewer leave most
#: rows of a tile empty (the forward and weight-gradient rows are filters, the data
#: gradient's rows are channels and its reduction runs over filters)
DEVICE_MIN_GROUP_CHANNELS = 8

#: fewest terms ``(C/groups)*kh*kw`` of an output's sum for the implicit-GEMM kernels: shorter
#: reductions spend more on staging tiles than on multiplying them
DEVICE_MIN_TERMS = 32


class DeviceCase(NamedTuple):
    """What the device rule looks at (after tap trimming): filters ``F``, input channels per
    group ``Cg``, the kernel and the groups."""

    F: int
    Cg: int
    kh: int
    kw: int
    groups: int

    def grid_holds_groups(self) -> bool:
        """At most :data:`DEVICE_MAX_GROUPS` groups: the implicit-GEMM grid can launch it."""
        return self.groups <= DEVICE_MAX_GROUPS

    def fills_tiles(self) -> bool:
        """Every group's products fill a tile: at least :data:`DEVICE_MIN_GROUP_CHANNELS`
        filters and input channels per group and :data:`DEVICE_MIN_TERMS` terms
        ``(C/groups)*kh*kw``."""
        return (min(self.F // self.groups, self.Cg) >= DEVICE_MIN_GROUP_CHANNELS
                and self.Cg * self.kh * self.kw >= DEVICE_MIN_TERMS)


# The device's "auto" rule: exactly one of these applies to any layer (tests/test_device_plan.py
# checks it over a grid of shapes); both passes of a layer take the same one.
DEVICE_RULES = (
    AutoRule("device-tiled",
             "at most 65535 groups, at least 8 filters and 8 input channels per group and "
             "(C/groups)*kh*kw >= 32: every group's products fill the shared-memory tiles",
             lambda c: c.grid_holds_groups() and c.fills_tiles(), "implicit-gemm"),
    AutoRule("device-direct",
             "more than 65535 groups (the implicit-GEMM grid cannot hold them), or fewer than "
             "8 filters or 8 input channels per group, or (C/groups)*kh*kw < 32: depthwise, "
             "narrow grouped and first layers, whose tiles would sit mostly empty",
             lambda c: not c.grid_holds_groups() or not c.fills_tiles(), "direct"),
)


def device_case(F, Cg, kh, kw, g: Geom) -> DeviceCase:
    """The :class:`DeviceCase` of a layer of ``F`` filters, ``Cg`` input channels per group and
    a ``kh x kw`` kernel (the one that runs, after trimming) in geometry ``g``."""
    return DeviceCase(F, Cg, kh, kw, g.groups)


def device_rule(case: DeviceCase) -> AutoRule:
    """The one rule of :data:`DEVICE_RULES` that applies to ``case``."""
    found = [rule for rule in DEVICE_RULES if rule.applies(case)]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} device rules apply to {case}: "
                             f"{[r.name for r in found]}")
    return found[0]


def device_algorithm(algorithm, case: DeviceCase) -> tuple[str, str]:
    """``(device algorithm, rule)`` for the ``algorithm`` argument (already checked):
    ``"auto"`` takes the pick of :data:`DEVICE_RULES` (the rule is its name); a host name runs
    :data:`DEVICE_ALGORITHM_OF` it (rule ``"requested"``), except that more than
    :data:`DEVICE_MAX_GROUPS` groups always run on the direct kernels."""
    if algorithm == "auto":
        rule = device_rule(case)
        return rule.algorithm, rule.name
    chosen = DEVICE_ALGORITHM_OF[algorithm]
    if chosen == "implicit-gemm" and not case.grid_holds_groups():
        return "direct", (f"requested {algorithm}; the direct kernels run more than "
                          f"{DEVICE_MAX_GROUPS} groups, which the implicit-GEMM grid cannot "
                          "hold")
    return chosen, "requested"


#: the CUDA kernels of each device algorithm (in nbconv.cuda.kernels): forward, then the data
#: and the weight (and bias) gradients
DEVICE_KERNELS = {
    "direct": ("conv2d_direct._conv2d_direct_fwd", "conv2d_direct._conv2d_direct_bwd_data",
               "conv2d_direct._conv2d_direct_bwd_weight"),
    "implicit-gemm": ("conv2d_im2col._conv2d_im2col_fwd", "conv2d_im2col._conv2d_im2col_bwd_data",
                      "conv2d_im2col._conv2d_im2col_bwd_weight"),
}


def device_kernels(algorithm, backward) -> tuple:
    """The kernels a device plan runs: ``(forward,)`` or ``(data gradient, weight gradient)``."""
    kernels = DEVICE_KERNELS[algorithm]
    return kernels[1:] if backward else kernels[:1]

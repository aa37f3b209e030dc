"""The plan of the convolution engine: which algorithm, and which direct kernel family, runs a
layer of a given shape -- the one place where the thresholds behind those choices live.

* :data:`AUTO_RULES` is the ``algorithm="auto"`` table (the first row that applies picks
  ``"direct"``, ``"im2col"`` or ``"winograd"``); :func:`choose_algorithm` applies it and
  :func:`auto_rule_text` renders it for :func:`nbconv.conv2d`'s docstring and the README.
* :func:`direct_forward_kernel` and :func:`direct_backward_kernels` pick the family of direct
  kernels (register blocks, pixel vectors, stride phases, depthwise planes, wide rows, the
  general row loops) that :mod:`nbconv.conv.direct` runs.
* The last section holds the drivers' tuning constants (buffer and task sizes), each with the
  measurement behind it.  The drivers read them at call time, so tests may patch them here.

Everything here is pure Python on shapes: no arrays, no kernels.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

import numba

from .._checks.conv import Geom, check_algorithm, winograd_supports
from ..kernels._ir import lanes as vector_lanes

# --------------------------------------------------------------------------- the algorithm


def winograd_fits(kh, kw, g: Geom) -> bool:
    """Whether the Winograd kernels cover this kernel size and geometry."""
    return winograd_supports(kh, kw, g.sy, g.sx, g.dh, g.dw, g.groups)


def choose_algorithm(op, algorithm, C, kh, kw, g: Geom, F, backward=False) -> str:
    """The ``"auto"`` rule (see :func:`conv2d`), from benchmarks/bench_conv.py's numbers and
    a sweep of other shapes (2 cores, float32, forward / backward ms).

    * Small feature maps (groups 1, no dilation, strides up to 2, C >= 16): tap-GEMM, one
      BLAS product per kernel tap over the whole batch that reads only real input
      (benchmarks/bench_tapgemm.py, the small-map layers of resnet18, googlenet, nin and
      vgg11 at batch 32 and 128, time tap / previous choice).  Backward passes on planes of
      up to 8x8: 0.05-0.86 on every layer, mostly 0.25-0.6 (resnet18 128 -> 128 at 4x4
      0.42; 256 -> 256 at 2x2 0.46 / 0.27 at batch 128; vgg11 256 -> 256 at 8x8 0.69); at
      14x14 and 16x16, 3x3 kernels with 32-512 channels 0.56-0.86 (ImageNet-sized ResNet's
      256 -> 256 at 14x14, batch 16: 33 vs 59 ms on Winograd) but 1x1 kernels 1.11.  Forward
      passes of larger-than-1x1 kernels on up to 2x2 outputs 0.26-0.61, on 4x4 outputs
      0.57-0.90 against Winograd with C >= 32 (googlenet's 16 -> 32 5x5 at 4x4: 1.16, left
      out).  On 8x8 outputs, since the products are cut into slabs of rows (see
      :func:`tapgemm_row_slabs`), it beats Winograd up to 96 channels: 3x3 32 -> 32 0.31 vs
      0.57 ms, 64 -> 64 0.81 vs 1.25 (4.2 -> 2.8 at batch 128), 96 -> 96 1.48 vs 1.67; 5x5
      64 -> 64 1.67 vs 3.15; 3x3 stride 2 64 -> 128 from 16x16 1.64 vs im2col 2.27; but 128
      -> 256 4.86 vs 4.42 and 256 -> 256 9.45 vs 8.11 (and 3x3 on 16x16 ties at 64
      channels).  1x1 forward passes, tap-GEMM / im2col at batch 32 (128): 0.62-0.88 on up
      to 6x6 outputs with at least 64 channels and filters (NiN's 96 -> 96 on 6x6 0.82
      (0.88), 256 -> 256 on 3x3 0.68 (0.57), 384 -> 384 on 2x2 0.75 (0.75); GoogLeNet's 832
      -> 256 on 1x1 0.62, 192 -> 64 on 4x4 0.81 (1.02)) but 1.03-1.21 with 16-32 filters and
      at 8x8 0.88 (1.17); at stride 2 on 4x4 outputs, which im2col must gather first, 64 ->
      128 0.16 vs 0.21 ms, 1.13 vs 1.30 for 128 -> 256 at batch 128 (on 8x8 outputs 0.55 vs
      0.42).

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
      see :func:`strided_regblock`), except again for ``C >= 64`` and ``F >= 128`` (a tie).
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
    check_algorithm(op, algorithm, kh, kw, g)
    if algorithm != "auto":
        return algorithm
    case = Case(C, F, kh, kw, g.groups, g.sy == 1 and g.sx == 1, backward,
                min(g.OH, g.OW), winograd_fits(kh, kw, g), g.OH * g.OW, max(g.sy, g.sx),
                g.dh > 1 or g.dw > 1)
    for _, applies, algo in AUTO_RULES:
        if applies(case):
            return algo
    raise AssertionError("unreachable: the last rule always applies")


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

    def tapgemm_fits(self) -> bool:
        """Rows 1-3 of the table below apply only to what tap-GEMM was measured on: groups
        1, no dilation, strides up to 2, at least 16 input channels."""
        return self.groups == 1 and not self.dilated and self.stride <= 2 and self.C >= 16

    def winograd_wins(self) -> bool:
        """Rows 5 and 6 of the table below (3x3; 5x5 forward), before the output size."""
        return self.winograd and (
            ((self.kh, self.kw) == (3, 3) and min(self.C, self.F) >= (48 if self.backward
                                                                       else 32))
            or ((self.kh, self.kw) == (5, 5) and not self.backward and min(self.C, self.F) >= 32))


# The "auto" rule as one table: the first row that applies picks the algorithm.  conv2d's
# docstring is generated from the texts; tests/test_pytorch_habits.py checks each row's claim.
AUTO_RULES = (
    ("backward passes with groups 1, no dilation, strides up to 2 and C >= 16 on output "
     "planes of at most 64 pixels (8x8), or of at most 256 (16x16) for kernels larger than "
     "1x1 with C >= 32",
     lambda c: (c.tapgemm_fits() and c.backward
                and (c.pixels <= 64 or (c.pixels <= 256 and c.kh * c.kw > 1 and c.C >= 32))),
     "tapgemm"),
    ("the same forward passes of kernels larger than 1x1 on outputs of at most 4 pixels, "
     "of at most 16 pixels with C >= 32, or of at most 64 pixels (8x8) with C <= 96",
     lambda c: (c.tapgemm_fits() and not c.backward and c.kh * c.kw > 1
                and (c.pixels <= 4 or (c.pixels <= 16 and c.C >= 32)
                     or (c.pixels <= 64 and c.C <= 96))), "tapgemm"),
    ("the same forward passes of 1x1 kernels with C >= 64 on outputs of at most 9 pixels, "
     "of at most 16 pixels at stride 2, or of at most 36 pixels (6x6) with F >= 64",
     lambda c: (c.tapgemm_fits() and not c.backward and c.kh * c.kw == 1 and c.C >= 64
                and (c.pixels <= 9 or (c.pixels <= 16 and not c.stride1)
                     or (c.pixels <= 36 and c.F >= 64))), "tapgemm"),
    ("the passes of rows 5 and 6 on small outputs: backward passes on outputs smaller than "
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


def auto_rule_text(indent: str, code: str = "``") -> str:
    """The ``"auto"`` rows as a numbered list: for a docstring (``code="``"``, reST) or for
    the README (``code="`"``, Markdown; tests/test_pytorch_habits.py checks it is there)."""
    lines = []
    for i, (text, _, algo) in enumerate(AUTO_RULES, 1):
        if code == "`":  # Markdown: C*kh*kw must not turn kh italic
            text = text.replace("*", "\\*")
        item = textwrap.wrap(f"{i}. {text}: {code}\"{algo}\"{code}", 88 - len(indent),
                             subsequent_indent="   ", break_on_hyphens=False)
        lines += [indent + line for line in item]
    return "\n".join(lines)


# ------------------------------------------------------------------------- the direct kernel family


#: largest weight matrix of the register-blocked kernel: every block re-reads all of it, which
#: pays while it stays in L2 (AlexNet c1's 93 KiB: 10.0 ms vs im2col 11.2; VGG's 590 KiB:
#: 91 ms vs Winograd 30)
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
    them (fewer leave vector lanes idle: LeNet c1's 6 ran 0.49 vs 0.23 ms on wide rows), a
    kernel larger than 1x1, and a weight matrix (filters padded to whole blocks) that stays
    in L2."""
    Fpad = regblock_vectors(F, itemsize)[2]
    return F >= 16 and kh * kw > 1 and C * kh * kw * Fpad * itemsize <= REGBLOCK_MAX_WEIGHT_BYTES


def strided_regblock(F, C, kh, kw, OW, itemsize) -> bool:
    """Whether a strided groups-1 layer runs on the register-blocked kernel rather than on
    the stride phases: where it fits (:func:`regblock_fits`) and either the output rows are
    short (fewer than 16 columns: the phases' wide rows and whole blocks waste more) or there
    are at most 32 filters with a reduction of at least 128 terms.  Ratios to PyTorch,
    phases / register blocks, 3x3 stride 2 (N, C -> F, H): (128, 16 -> 32, 32) 1.7 / 1.2,
    (16, 16 -> 32, 56) 1.58 / 1.30, (128, 32 -> 64, 16) 1.7 / 1.5, but (16, 16 -> 64, 56)
    1.27 / 1.59, (32, 32 -> 64, 32) 1.41 / 1.52, (16, 3 -> 64, 56) 1.2 / 1.9, (32, 3 -> 32,
    32) 1.49 / 1.81; NNlib's 7x7 stride 2 1.08 / 1.41, AlexNet c1 0.8 / 0.9."""
    return regblock_fits(F, C, kh, kw, itemsize) and (
        OW < 16 or (F <= 32 and C * kh * kw >= 128))


#: most bytes of the output gradient (filters last) that the register-blocked weight gradient
#: may stream in all, every task reading all of it: LeNet c2 (30 tasks x 256 KiB = 7.5 MiB,
#: 0.51 -> 0.28 ms) pays; NNlib3 (3072 tasks x 392 KiB) took 2.5x PyTorch's backward
REGBLOCK_MAX_DY_TRAFFIC = 32 * 2**20


def regblock_dw_fits(N, OH, OW, F, C, kh, itemsize) -> bool:
    """Whether the register-blocked weight gradient takes this layer (groups 1): at least 16
    filters, enough (channel, kernel row) tasks for the threads, and little ``dy`` traffic.
    LeNet c1's 6 filters of one channel (5 tasks) ran 0.73 vs 0.35 ms on the wide-row kernel."""
    _, block, Fpad = regblock_vectors(F, itemsize)
    tasks = C * kh * (Fpad // block)
    return (F >= 16 and tasks >= 4 * numba.get_num_threads()
            and tasks * N * OH * OW * Fpad * itemsize <= REGBLOCK_MAX_DY_TRAFFIC)


#: fewest filters of the filter-vector register blocks (:func:`regblock_fits`); fewer take the
#: pixel-vector blocks (:func:`_pixvec_forward`)
PIXVEC_BELOW_FILTERS = 16


#: largest padded input image (all channels) of the pixel-vector blocks: every block reads
#: all of its channels, which pays while they stay in L2 (64 -> 3 channels at 224x224, 13 MiB:
#: 6.9 vs 3.7 ms on wide rows; 32 -> 12 at 28x28, 128 KiB: 1.1 vs 1.5 ms)
PIXVEC_MAX_IMAGE_BYTES = 512 * 1024


#: most filters of the pixel-vector weight gradient (12, three groups of four, ran 1.6x slower
#: than the wide rows at 32 channels 28x28; 8 and fewer won up to 3.5x)
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
#: blocks' per-block work (accumulators filled and stored one value at a time, filters apart
#: in ``y``) outweighs their arithmetic, and the wide rows read every plane once per filter
#: block.  First layers on 3x32x32 input at batch 32 (regblock / wide / pixvec ms): forward
#: 3 -> 64 3x3 4.13 / 1.16 / 1.15, 3 -> 192 5x5 13.7 / 7.0 / 7.7, 8 -> 64 3x3 on 16x16 0.97 /
#: 0.83 / 0.68; weight gradient (wide / pixvec) 3 -> 64 3x3 2.42 / 1.24 (batch 128: 14.6 /
#: 4.7), 3 -> 30 5x5 1.72 / 1.17, 3 -> 192 5x5 14.1 / 7.0, 4 -> 64 3x3 2.82 / 1.49, 8 -> 64
#: 3x3 on 16x16 1.25 / 0.87.  Past it the register blocks win or tie (LeNet c2, 150 terms:
#: forward 0.20 vs 0.24 ms; 16 -> 64 3x3, 144 terms: 1.49 vs 1.52) and the wide rows too
#: (6 -> 32 5x5 weight gradient 0.91 vs 1.00).
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
                            itemsize) -> DirectBackward:
    """The direct kernels of a backward pass.

    A strided layer's gradients are those of the stride-1 layer whose output gradient holds
    ``dy`` at every ``sy``-th row and ``sx``-th column and zeros between: the stride-1
    kernels do ``sy*sx`` times the multiplications and still beat the strided row loops (3x3
    stride 2, (16, 16 -> 64, 56): 147 -> 19 ms), up to a stride area of
    :data:`SPREAD_MAX_STRIDE_AREA`.  Stride-1 depthwise layers take the plane kernels (the
    data gradient too when every channel has one filter); other stride-1 layers the
    pixel-vector blocks where few channels receive the data gradient or few filters (or,
    unspread, few terms: :func:`pixvec_few_terms`) the weight gradient, the register blocks
    for the weight gradient where they fit (:func:`regblock_dw_fits`), else the wide rows;
    the rest the row loops.
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
    elif groups == 1 and regblock_dw_fits(N, OH, OW, F, C, kh, itemsize):
        weight = "regblock"
    else:
        weight = "wide"
    return DirectBackward(spread, data, weight)


# --------------------------------------------------------------------------- tuning of the drivers


#: scratch of one pixel-vector task (its outputs, all filters): stays in L1
PIXVEC_TASK_BYTES = 32 * 1024


#: largest padded image that a pixel-vector task pads itself (in L2) when the batch has two
#: images per thread; larger ones (or fewer) are padded in a pass of their own first
PIXVEC_STAGE_BYTES = 256 * 1024


#: target size of one task's column buffer in the fused forward pass (one core's L2; AlexNet
#: c1 forward with 128 KiB / 256 KiB / 512 KiB / 1 MiB: 15.6 / 12.4 / 12.0 / 12.0 ms)
FUSED_COLS_BYTES = 512 * 1024


#: largest weight matrix for the fused pass: every task's small product re-reads (packs) all
#: of it, which paid off for AlexNet c1's 93 KiB (forward 18.5 -> 12.0 ms) but not for
#: AlexNet c2's 1.2 MiB (32 -> 37 ms)
FUSED_MAX_WEIGHT_BYTES = 256 * 1024


#: fewest output pixels per task of the fused pass: smaller products cost more in BLAS's
#: per-call work than the fusion saves (LeNet c2 has 64 per image)
FUSED_MIN_COLS = 256


#: output rows narrower than this build their columns per (image, channel), see _columns
NARROW_ROWS = 16


#: output planes with fewer pixels than this are multiplied as one GEMM per chunk and copied
#: into place, instead of one GEMM per image written in place
BATCHED_BELOW = 1024


#: target size of one chunk's V and M buffers together (never above IM2COL_MAX_BYTES).
#: Forward ms at 4 / 8 / 16 / 32 MiB, same process: VGG 34.2 / 31.6 / 31.6 / 33.4, ResNet
#: 22.5 / 20.1 / 22.1 / 24.2, NNlib2 1.78 / 1.31 / 1.37 / 1.38, AlexNet c2 23.8 / 22.9 / 23.8
#: / 24.0 (PyTorch 44.6, 23.8, 1.59, 21.0)
WINOGRAD_CHUNK_BYTES = 8 * 2**20


#: fewest output columns (filters or channels) per task of a tap-GEMM product: narrower
#: products cost BLAS more in per-call work than the second core gives back
TAPGEMM_MIN_SLAB = 16


def tapgemm_row_slabs(plane_rows, rows, cols, threads, weight_grad=False) -> bool:
    """Whether the tap-GEMM products of a pass are cut into slabs of output rows (``rows``,
    over ``plane_rows`` rows of pixels) rather than of the ``cols`` columns (filters or
    channels): with several threads and at least two rows of pixels, when the rows outnumber
    the columns; for the weight gradient, which then sums each slab's (F, C) products apart,
    when ``cols = F*C`` is at most 8 times the rows.

    Column slabs of 32-64 filters made the concurrent BLAS calls each pack the whole input
    block, and two threads ran no faster than one.  Forward / data-and-weight-gradient ms,
    2 threads, batch 32 unless said, column -> row slabs (PyTorch forward): 64 -> 64 3x3 on
    8x8 1.40 -> 0.79 / 1.88 -> 1.48 (0.55); 32 -> 32 on 16x16 1.50 -> 1.04 (0.56); 128 -> 128
    on 8x8 3.50 -> 2.46 (1.92); on 4x4 batch 128 2.87 -> 2.00 (1.80); 64 -> 128 3x3 stride 2
    on 8x8 0.68 -> 0.49 (0.32); but 256 -> 256 on 2x2 (128 rows) 0.68 -> 0.77.  Weight
    gradient alone: 64 -> 64 on 8x8 0.83 -> 0.65, at batch 128 4.29 -> 3.05; 128 -> 128 on
    4x4 0.60 -> 0.63 (a tie; 2.30 -> 2.00 at batch 128); 256 -> 256 on 2x2 0.63 -> 0.75."""
    if threads < 2 or plane_rows < 2:
        return False
    return cols <= 8 * rows if weight_grad else rows > cols

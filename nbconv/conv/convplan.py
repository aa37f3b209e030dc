"""One immutable plan per convolution pass and shape: what the engine runs, decided once.

A :class:`ConvPlan` holds everything :mod:`nbconv.conv.plan`'s rules decide for one pass of one
layer shape -- the algorithm and the rule that chose it, the taps kept after trimming the ones
that read only zero padding, the padding treatment, the kernel families, the GEMM backend and
how the batch is cut -- so that the drivers only execute it.  :func:`forward_plan` and
:func:`backward_plan` build plans and cache them by shape; :func:`explain` shows both plans of
a layer without running it (printing a plan shows every field):

>>> import nbconv
>>> plans = nbconv.conv.explain((32, 64, 8, 8), (64, 64, 3, 3), padding=1)
>>> plans.forward.algorithm, plans.forward.rule, plans.backward.kernels
('tapgemm', 'small-maps', ('tapgemm', 'tapgemm'))
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from .._checks.conv import ALGORITHMS, Geom, geometry
from . import plan
from .im2col import plan_chunks
from .winograd import winograd_chunks

__all__ = ["ConvPlan", "Explanation", "forward_plan", "backward_plan", "explain",
           "trim_taps", "clear_cache"]


@dataclass(frozen=True)
class ConvPlan:
    """What the engine runs for one pass of one convolution shape.

    Attributes
    ----------
    pass_name : {"forward", "backward"}
    x_shape : tuple of int
        ``(N, C, H, W)``.
    weight_shape : tuple of int
        The layer's ``(F, C // groups, kh, kw)``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    device : str
        ``"cpu"``.
    geometry : Geom
        Strides, dilation, groups and padding of the layer the driver runs (after trimming).
    algorithm : str
        ``"direct"``, ``"im2col"``, ``"winograd"`` or ``"tapgemm"``.
    rule : str
        The name of the ``"auto"`` rule that chose the algorithm (``plan.AUTO_RULES``), or
        ``"requested"`` when the caller named it.
    taps : tuple of int or None
        ``(r0, r1, c0, c1)``: the kernel rows ``r0:r1`` and columns ``c0:c1`` the driver runs,
        the others reading only zero padding; None: every tap.
    padding : str
        ``"implicit zeros"`` (the drivers skip the padding) or ``"explicit <mode>"`` (the
        engine pads ``x`` with numpy.pad first).
    kernels : tuple of str
        The kernel families: ``(forward,)``, or ``(data gradient, weight gradient)``.
    spread : bool
        Backward passes of the direct kernels: ``dy`` spread to stride 1 first.
    gemm : str
        The product that runs the algorithm's matrix products ("" for none).
    chunks : str
        How the batch is cut ("" when it runs whole).
    threads : int
        The thread count the plan was made for.
    """

    pass_name: str
    x_shape: tuple
    weight_shape: tuple
    dtype: str
    device: str
    geometry: Geom
    algorithm: str
    rule: str
    taps: tuple | None
    padding: str
    kernels: tuple
    spread: bool = False
    gemm: str = ""
    chunks: str = ""
    threads: int = 1

    def __str__(self) -> str:
        how = "requested" if self.rule == "requested" else f"auto rule {self.rule}"
        lines = [f"{self.pass_name:<8} x {self.x_shape}  weight {self.weight_shape}  "
                 f"{self.dtype}  {self.device}",
                 f"  algorithm  {self.algorithm} ({how})"]
        names = ("data", "weight") if self.pass_name == "backward" else ("",)
        kernels = ", ".join(f"{n} {k}".strip() for n, k in zip(names, self.kernels))
        if self.spread:
            kernels += " (dy spread to stride 1)"
        lines.append(f"  kernels    {kernels}")
        if self.taps is not None:
            r0, r1, c0, c1 = self.taps
            kh, kw = self.weight_shape[2:]
            lines.append(f"  taps       rows {r0}:{r1} of {kh}, columns {c0}:{c1} of {kw} "
                         "(the others read only zero padding)")
        lines.append(f"  padding    {self.padding}")
        if self.gemm:
            lines.append(f"  gemm       {self.gemm}")
        if self.chunks:
            lines.append(f"  chunks     {self.chunks}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Explanation:
    """The forward and backward plans of one convolution layer (see :func:`explain`)."""

    forward: ConvPlan
    backward: ConvPlan

    def __str__(self) -> str:
        return f"{self.forward}\n{self.backward}"


# ------------------------------------------------------------------------------- tap trimming


def _tap_reads_input(n, o, s, p, t) -> bool:
    """Whether kernel tap ``t`` (dilation 1) reads a real input pixel for some output
    ``i < o``: ``0 <= i*s - p + t < n``."""
    a = p - t
    i = max(0, -(-a // s))  # the first output whose tap lands at or after input index 0
    return i < o and i * s < a + n


def trim_taps(kh, kw, g: Geom, H, W):
    """The kernel rows and columns that read some input pixel, and the geometry of the
    smaller layer they make, as ``((r0, r1, c0, c1), g)``; None when every tap does (or the
    padding is not zeros, or the layer dilated, or 1x1).

    Exact: with zero padding the dropped taps add no term (SPEC section 2) and their weight
    gradient is 0.  Small maps gain most: a 3x3 layer on 1x1 maps is a 1x1 layer, nine times
    less work.
    """
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
    return (r0, r1, c0, c1), g._replace(pt=pt, pb=pb, pl=pl, pr=pr)


# ------------------------------------------------------------------------------------ planning


_cache: dict = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 4096  # plans kept; past it the cache starts over (a plan takes microseconds)


def clear_cache() -> None:
    """Forget every plan (after changing a threshold of :mod:`nbconv.conv.plan`)."""
    with _cache_lock:
        _cache.clear()


def forward_plan(op, x_shape, weight_shape, g: Geom, dtype, algorithm="auto") -> ConvPlan:
    """The cached plan of a forward pass (``algorithm`` as given to :func:`nbconv.conv2d`,
    checked against the geometry; ``op`` names the caller in errors)."""
    return _cached("forward", op, x_shape, weight_shape, g, dtype, algorithm)


def backward_plan(op, x_shape, weight_shape, g: Geom, dtype, algorithm="auto") -> ConvPlan:
    """The cached plan of a backward pass (both gradients; see :func:`forward_plan`)."""
    return _cached("backward", op, x_shape, weight_shape, g, dtype, algorithm)


def _cached(pass_name, op, x_shape, weight_shape, g, dtype, algorithm) -> ConvPlan:
    threads = numba.get_num_threads()
    key = (pass_name, tuple(x_shape), tuple(weight_shape), g, np.dtype(dtype).name, algorithm,
           threads)
    found = _cache.get(key)
    if found is None:
        found = _make(pass_name, op, *key[1:])
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[key] = found
    return found


def _make(pass_name, op, x_shape, weight_shape, g, dtype, algorithm, threads) -> ConvPlan:
    backward = pass_name == "backward"
    N, C, H, W = x_shape
    F, Cg, kh, kw = weight_shape
    chosen = plan.choose_algorithm(op, algorithm, C, kh, kw, g, F, backward=backward)
    rule = "requested" if algorithm != "auto" else None
    taps = None
    trimmed = trim_taps(kh, kw, g, H, W)
    if trimmed is not None:
        taps, tg = trimmed
        tkh, tkw = taps[1] - taps[0], taps[3] - taps[2]
        if algorithm == "auto":  # the smaller kernel is planned again
            chosen = plan.choose_algorithm(op, "auto", C, tkh, tkw, tg, F, backward=backward)
        elif chosen == "winograd" and not plan.winograd_fits(tkh, tkw, tg):
            chosen = "im2col"
            rule = "requested; im2col runs the trimmed kernel, which Winograd does not cover"
        if chosen == "tapgemm":
            # tap-GEMM skips the taps that read only padding by itself: it runs the whole
            # layer, whose weights need no copy
            taps = None
        else:
            g, kh, kw = tg, tkh, tkw
    if rule is None:
        rule = plan.auto_rule(plan.case_of(C, kh, kw, g, F, backward)).name
    itemsize = np.dtype(dtype).itemsize
    kernels, spread = _kernels(chosen, backward, N, C, H, W, F, kh, kw, g, itemsize, threads)
    return ConvPlan(
        pass_name=pass_name, x_shape=tuple(x_shape), weight_shape=tuple(weight_shape),
        dtype=np.dtype(dtype).name, device="cpu", geometry=g, algorithm=chosen, rule=rule,
        taps=taps, padding="implicit zeros" if g.mode == "zeros" else f"explicit {g.mode}",
        kernels=kernels, spread=spread, gemm=_gemm(chosen, kernels),
        chunks=_chunks(chosen, kernels, N, C, F, kh, kw, g, itemsize), threads=threads)


def _kernels(algorithm, backward, N, C, H, W, F, kh, kw, g, itemsize, threads):
    """``(kernels, spread)`` of a pass: the families the drivers run."""
    Hp, Wp = H + g.pt + g.pb, W + g.pl + g.pr  # the driver's input, padded when explicit
    if algorithm == "im2col" and not backward:
        blas = _blas_gemm_available(itemsize)
        return (plan.im2col_forward_path(N, C, Hp, Wp, F, kh, kw, g.OH, g.OW, g.sy, g.sx,
                                         g.pt if g.mode == "zeros" else 0,
                                         g.pl if g.mode == "zeros" else 0, g.groups,
                                         itemsize, blas, g.dh, g.dw),), False
    if algorithm in ("im2col", "tapgemm"):
        return ((algorithm,) * (2 if backward else 1)), False
    if algorithm == "winograd" and not backward:
        return ("winograd",), False
    d = plan.direct_backward_kernels(N, C, Hp, Wp, F, kh, kw, g.OH, g.OW, g.sy, g.sx, g.dh,
                                     g.dw, g.groups, itemsize, threads)
    if algorithm == "winograd":  # the data gradient is a Winograd convolution of dy
        return ("winograd", d.weight), d.spread
    if not backward:
        return (plan.direct_forward_kernel(F, C, kh, kw, g.OH, g.OW, g.sy, g.sx, g.dh, g.dw,
                                           g.groups, itemsize),), False
    return (d.data, d.weight), d.spread


def _blas_gemm_available(itemsize) -> bool:
    from .._blas import gemm_for

    return gemm_for(np.float32 if itemsize == 4 else np.float64) is not None


def _gemm(algorithm, kernels) -> str:
    """The product behind the algorithm's matrix products."""
    if algorithm == "direct":
        return ""
    from .._blas import gemm_description

    return gemm_description()


def _chunks(algorithm, kernels, N, C, F, kh, kw, g, itemsize) -> str:
    """How the batch is cut into bounded buffers, in words."""
    if algorithm == "im2col" and kernels[0] == "columns":
        mode, chunks, _ = plan_chunks(N, g.OH, g.OW, max(C * kh * kw, F), itemsize)
        return f"{len(chunks)} chunk{'s' * (len(chunks) > 1)} of {mode}"
    if algorithm == "winograd":
        n = len(winograd_chunks(N, C, F, kh, kw, g.OH, g.OW, itemsize))
        return f"{n} chunk{'s' * (n > 1)} of tiles"
    return ""


def explain(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
            padding_mode="zeros", algorithm="auto", dtype="float32") -> Explanation:
    """The plans :func:`nbconv.conv2d` and :func:`nbconv.conv2d_backward` run for a layer,
    without running it.

    Parameters
    ----------
    x_shape : tuple of int
        ``(N, C, H, W)`` (or an unbatched ``(C, H, W)``).
    weight_shape : tuple of int
        ``(F, C // groups, kh, kw)``.
    stride, padding, dilation, groups, padding_mode, algorithm
        As in :func:`nbconv.conv2d`.
    dtype : {"float32", "float64"}

    Returns
    -------
    Explanation
        ``.forward`` and ``.backward``, each a :class:`ConvPlan`; printing shows both.

    Raises
    ------
    ValueError
        Shapes or arguments that :func:`nbconv.conv2d` would refuse.
    TypeError
        A dtype other than float32/float64, or non-integer shapes.
    """
    op = "explain"
    x_shape, weight_shape = _shape(op, "x_shape", x_shape, (3, 4)), _shape(
        op, "weight_shape", weight_shape, (4,))
    if len(x_shape) == 3:
        x_shape = (1, *x_shape)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{op}: argument 'dtype' must be float32 or float64, got {dtype!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{op}: argument 'algorithm' must be one of {ALGORITHMS}, "
                         f"got {algorithm!r}")
    desc = f"x shape {x_shape}, weight shape {weight_shape}"
    g = geometry(op, x_shape, weight_shape, stride, padding, dilation, groups, padding_mode,
                 desc)
    return Explanation(forward_plan(op, x_shape, weight_shape, g, dt, algorithm),
                       backward_plan(op, x_shape, weight_shape, g, dt, algorithm))


def _shape(op, name, shape, ranks) -> tuple:
    """``shape`` as a tuple of non-negative ints of one of the ``ranks``."""
    try:
        out = tuple(shape)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be a tuple of ints, got "
                        f"{type(shape).__name__}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out):
        raise TypeError(f"{op}: argument '{name}' must be a tuple of ints, got {shape!r}")
    if len(out) not in ranks or any(v < 0 for v in out):
        raise ValueError(f"{op}: argument '{name}' must have {' or '.join(map(str, ranks))} "
                         f"non-negative sizes, got {shape!r}")
    return tuple(int(v) for v in out)

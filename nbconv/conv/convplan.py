"""One immutable plan per convolution pass and shape: what the engine runs, decided once.

A :class:`ConvPlan` holds everything :mod:`nbconv.conv.plan`'s rules decide for one pass of one
layer shape -- the algorithm and the rule that chose it, the taps kept after trimming the ones
that read only zero padding, the padding treatment, the kernel families, the GEMM backend and
how the batch is cut -- so that the drivers only execute it.  :func:`forward_plan` and
:func:`backward_plan` build plans and cache them by shape; :func:`explain` shows both plans of
a layer without running it (printing a plan shows every field).  Plans of CUDA device arrays
(``device="cuda"``) come from the device rule (``plan.DEVICE_RULES``) and name the CUDA kernels
that run; they are pure shape logic too, so ``explain(..., device="cuda")`` needs no GPU:

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

from .._checks.conv import ALGORITHMS, Geom, check_algorithm, geometry
from . import direct, plan
from .im2col import plan_chunks
from .winograd import winograd_chunks

__all__ = ["ConvPlan", "Explanation", "forward_plan", "backward_plan", "explain",
           "trim_taps", "clear_cache", "DEVICES"]

#: the devices a plan is made for: host arrays, CUDA device arrays
DEVICES = ("cpu", "cuda")


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
        ``"cpu"`` (host arrays) or ``"cuda"`` (CUDA device arrays).
    geometry : Geom
        Strides, dilation, groups and padding of the layer the driver runs (after trimming).
    algorithm : str
        On the host ``"direct"``, ``"im2col"``, ``"winograd"`` or ``"tapgemm"``; on the
        device ``"direct"`` or ``"implicit-gemm"`` (``plan.DEVICE_ALGORITHMS``).
    rule : str
        The name of the ``"auto"`` rule that chose the algorithm (``plan.AUTO_RULES``, on the
        device ``plan.DEVICE_RULES``), ``"requested"`` when the caller named it, or
        ``"tuned on this machine; ..."`` when :func:`nbconv.tune` stored a choice for this
        shape.
    taps : tuple of int or None
        ``(r0, r1, c0, c1)``: the kernel rows ``r0:r1`` and columns ``c0:c1`` the driver runs,
        the others reading only zero padding; None: every tap.
    padding : str
        ``"implicit zeros"`` (the drivers skip the padding) or ``"explicit <mode>"`` (the
        engine pads ``x`` first: with numpy.pad, on the device with a gather kernel).
    kernels : tuple of str
        The kernel families: ``(forward,)``, or ``(data gradient, weight gradient)``; on the
        device the CUDA kernels of :mod:`nbconv.cuda.kernels` (``module.function``).
    spread : bool
        Backward passes of the direct kernels: ``dy`` spread to stride 1 first.
    gemm : str
        The product that runs the algorithm's matrix products ("" for none).
    chunks : str
        How the batch is cut ("" when it runs whole).
    threads : int
        The host thread count the plan was made for (0 on the device).
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
        how = (self.rule if self.rule.startswith(("requested", "tuned"))
               else f"auto rule {self.rule}")
        lines = [f"{self.pass_name:<8} x {self.x_shape}  weight {self.weight_shape}  "
                 f"{self.dtype}  {self.device}",
                 f"  algorithm  {self.algorithm} ({how})"]
        names = ("data", "weight") if self.pass_name == "backward" else ("",)
        kernels = ", ".join(f"{n} {k}".strip() for n, k in zip(names, self.kernels))
        if self.spread:
            kernels += " (dy spread to stride 1)"
        if self.device == "cpu" and self.pass_name == "forward" and self.algorithm == "direct":
            note = direct.block_note(self.kernels[0], self.weight_shape, self.geometry,
                                     np.dtype(self.dtype).itemsize, self.x_shape[0],
                                     self.threads)
            kernels += f" ({note})" if note else ""
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


def forward_plan(op, x_shape, weight_shape, g: Geom, dtype, algorithm="auto",
                 device="cpu") -> ConvPlan:
    """The cached plan of a forward pass (``algorithm`` as given to :func:`nbconv.conv2d`,
    checked against the geometry; ``op`` names the caller in errors) on ``device``
    (``"cpu"`` or ``"cuda"``)."""
    if device == "cpu":
        return _cached("forward", op, x_shape, weight_shape, g, dtype, algorithm)
    return _cached("forward", op, x_shape, weight_shape, g, dtype, algorithm, device=device)


def backward_plan(op, x_shape, weight_shape, g: Geom, dtype, algorithm="auto",
                  device="cpu") -> ConvPlan:
    """The cached plan of a backward pass (both gradients; see :func:`forward_plan`)."""
    if device == "cpu":
        return _cached("backward", op, x_shape, weight_shape, g, dtype, algorithm)
    return _cached("backward", op, x_shape, weight_shape, g, dtype, algorithm, device=device)


def _cached(pass_name, op, x_shape, weight_shape, g, dtype, algorithm,
            device="cpu") -> ConvPlan:
    # device plans do not depend on the host's thread count
    threads = numba.get_num_threads() if device == "cpu" else 0
    key = (pass_name, tuple(x_shape), tuple(weight_shape), g, np.dtype(dtype).name, algorithm,
           threads, device)
    found = _cache.get(key)
    if found is None:
        make = _make if device == "cpu" else _make_device
        found = make(pass_name, op, *key[1:-1])
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[key] = found
    return found


def rules_choice(C, kh, kw, g: Geom, F, H, W, backward) -> plan.AutoRule:
    """The ``"auto"`` rule that applies to a layer, after tap trimming (the smaller kernel is
    what runs: NiN's 3x3 layer on 1x1 maps is a 1x1 layer)."""
    trimmed = trim_taps(kh, kw, g, H, W)
    if trimmed is not None:
        (r0, r1, c0, c1), g = trimmed
        kh, kw = r1 - r0, c1 - c0
    return plan.auto_rule(plan.case_of(C, kh, kw, g, F, backward))


def _make(pass_name, op, x_shape, weight_shape, g, dtype, algorithm, threads) -> ConvPlan:
    backward = pass_name == "backward"
    N, C, H, W = x_shape
    F, Cg, kh, kw = weight_shape
    chosen = plan.choose_algorithm(op, algorithm, C, kh, kw, g, F, backward=backward)
    if algorithm == "auto":
        ruled = rules_choice(C, kh, kw, g, F, H, W, backward)
        chosen, rule = ruled.algorithm, ruled.name
        tuned = _tuned(pass_name, x_shape, weight_shape, g, dtype, chosen)
        if tuned is not None:
            chosen = tuned
            rule = f"tuned on this machine; rule {ruled.name} picks {ruled.algorithm}"
    else:
        rule = "requested"
    taps = None
    trimmed = trim_taps(kh, kw, g, H, W)
    if trimmed is not None:
        taps, tg = trimmed
        tkh, tkw = taps[1] - taps[0], taps[3] - taps[2]
        if chosen == "winograd" and not plan.winograd_fits(tkh, tkw, tg):
            chosen = "im2col"
            rule += "; im2col runs the trimmed kernel, which Winograd does not cover"
        if chosen == "tapgemm":
            # tap-GEMM skips the taps that read only padding by itself: it runs the whole
            # layer, whose weights need no copy
            taps = None
        else:
            g, kh, kw = tg, tkh, tkw
    itemsize = np.dtype(dtype).itemsize
    kernels, spread = _kernels(chosen, backward, N, C, H, W, F, kh, kw, g, itemsize, threads)
    return ConvPlan(
        pass_name=pass_name, x_shape=tuple(x_shape), weight_shape=tuple(weight_shape),
        dtype=np.dtype(dtype).name, device="cpu", geometry=g, algorithm=chosen, rule=rule,
        taps=taps, padding="implicit zeros" if g.mode == "zeros" else f"explicit {g.mode}",
        kernels=kernels, spread=spread, gemm=_gemm(chosen, kernels),
        chunks=_chunks(chosen, kernels, N, C, F, kh, kw, g, itemsize), threads=threads)


def _make_device(pass_name, op, x_shape, weight_shape, g, dtype, algorithm, threads) -> ConvPlan:
    """The plan of a pass on CUDA device arrays: the taps trimmed as on the host, then the
    device rule (``plan.DEVICE_RULES``) on the kernel that runs, for both passes alike."""
    N, C, H, W = x_shape
    F, Cg, kh, kw = weight_shape
    check_algorithm(op, algorithm, kh, kw, g)
    taps = None
    trimmed = trim_taps(kh, kw, g, H, W)
    if trimmed is not None:
        taps, g = trimmed
        kh, kw = taps[1] - taps[0], taps[3] - taps[2]
    chosen, rule = plan.device_algorithm(algorithm, plan.device_case(F, Cg, kh, kw, g))
    padding = "implicit zeros"
    if g.mode != "zeros":
        padding = f"explicit {g.mode} (conv2d_direct._pad_gather" + (
            ", the gradient folded back by conv2d_direct._pad_fold)"
            if pass_name == "backward" else ")")
    return ConvPlan(
        pass_name=pass_name, x_shape=tuple(x_shape), weight_shape=tuple(weight_shape),
        dtype=np.dtype(dtype).name, device="cuda", geometry=g, algorithm=chosen, rule=rule,
        taps=taps, padding=padding,
        kernels=plan.device_kernels(chosen, pass_name == "backward"), threads=threads)


def _tuned(pass_name, x_shape, weight_shape, g, dtype, rule_choice):
    """The algorithm :func:`nbconv.tune` stored for this pass and shape on this machine
    (tuning it now with ``NBCONV_AUTOTUNE=1``), or None."""
    from . import tune

    found = tune.tuned_algorithm(pass_name, x_shape, weight_shape, g, dtype)
    if found is None and tune.autotune_enabled():
        found = tune.autotune(pass_name, x_shape, weight_shape, g, dtype, rule_choice)
    return found


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
            padding_mode="zeros", algorithm="auto", dtype="float32", *,
            device="cpu") -> Explanation:
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
    device : {"cpu", "cuda"}
        The plans for host arrays, or for CUDA device arrays (``algorithm="direct"`` then
        runs the direct CUDA kernels, ``"im2col"``, ``"winograd"`` and ``"tapgemm"`` the
        implicit-GEMM ones, ``"auto"`` the device rule).  No GPU is needed: plans are
        computed from shapes alone.

    Returns
    -------
    Explanation
        ``.forward`` and ``.backward``, each a :class:`ConvPlan`; printing shows both.

    Raises
    ------
    ValueError
        Shapes or arguments that :func:`nbconv.conv2d` would refuse, or an unknown
        ``device``.
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
    if device not in DEVICES:
        raise ValueError(f"{op}: argument 'device' must be one of {DEVICES}, got {device!r}")
    desc = f"x shape {x_shape}, weight shape {weight_shape}"
    g = geometry(op, x_shape, weight_shape, stride, padding, dilation, groups, padding_mode,
                 desc)
    return Explanation(forward_plan(op, x_shape, weight_shape, g, dt, algorithm, device),
                       backward_plan(op, x_shape, weight_shape, g, dt, algorithm, device))


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
